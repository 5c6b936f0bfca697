"""Recording under ``torch.distributed`` (torchrun): who evaluates what, and how results meet.

Holds the pieces :mod:`sampletopo.recorder` and :mod:`sampletopo.from_checkpoints` use when they
run in several processes: the :class:`World` a process belongs to, :func:`process_group` (joins
the group torchrun describes in the environment; gloo on the CPU, NCCL on GPUs),
:func:`shard_bounds` (each rank's disjoint, batch-aligned slice of a split),
:func:`check_same_dataset` (every rank must hold the same data), collective error handling
(:func:`on_main`, :func:`everywhere`: an error on one rank is raised on every rank instead of
leaving the others waiting forever), the gathers of per-sample results to rank 0, and a listing
of a checkpoint folder taken once (:func:`snapshot_checkpoints`, :func:`read_listed_checkpoint`)
so that a folder changing while it is read is noticed.

It writes no files and builds no models: rank 0 writes through the recorder, atomically.
Nothing here is needed in a single process; every helper is a no-op there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from sampletopo._errors import (
    CheckpointChangedError,
    ParameterError,
    RankFailedError,
    SampletopoError,
)
from sampletopo._validation import invalid

__all__ = [
    "World",
    "current_world",
    "process_group",
    "rank_device",
    "shard_bounds",
    "check_same_dataset",
    "check_world_size",
    "on_main",
    "everywhere",
    "error_status",
    "raise_status",
    "broadcast_from_main",
    "gather_shards",
    "merge_by_index",
    "gather_to_main",
    "gather_all",
    "sync_model",
    "ListedCheckpoint",
    "CheckpointChangedError",
    "snapshot_checkpoints",
    "read_listed_checkpoint",
]

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Who am I


@dataclass(frozen=True)
class World:
    """This process's place in the process group.

    Attributes
    ----------
    rank : int
        0 .. ``size - 1``; rank 0 writes every file.
    size : int
        Number of processes (1 when there is no process group).
    local_rank : int
        Rank on this machine (picks the GPU).
    backend : str or None
        ``"gloo"``, ``"nccl"``, ... or ``None`` without a process group.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """More than one process takes part."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """This is rank 0, the one that writes."""
        return self.rank == 0


def current_world(*, distributed: bool | None = None, where: str = "sampletopo") -> World:
    """The :class:`World` of this process.

    Parameters
    ----------
    distributed : bool, optional
        ``None`` (default): use the initialised default process group if there is one with
        more than one process, else a single process. ``True``: require such a group.
        ``False``: act as a single process whatever the group.
    where : str
        Name used in error messages.
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise invalid("distributed", "None, True or False", distributed, where=where)
    up = dist.is_available() and dist.is_initialized()
    if distributed is False or (distributed is None and not up):
        return World()
    if not up:
        raise invalid(
            "distributed",
            "None or False here",
            distributed,
            where=where,
            fix="True needs a torch.distributed process group, and no torch.distributed process "
            "group is initialised. Call torch.distributed.init_process_group() first (or start "
            "under torchrun and use sampletopo.distributed.process_group()), or pass "
            "distributed=None.",
        )
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        backend=str(dist.get_backend()),
    )


@contextlib.contextmanager
def process_group(
    *, device: str | torch.device | None = None, timeout_s: float = 600.0
) -> Iterator[World]:
    """Join the process group torchrun describes in the environment, for the ``with`` block.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the default process group is
    initialised with NCCL when ``device`` is a CUDA device and gloo otherwise, and destroyed on
    exit. A group the caller already initialised is used as is and left alone; without
    torchrun this yields a single-process :class:`World`.

    Parameters
    ----------
    device : str or torch.device, optional
        The device the ranks compute on; picks the backend.
    timeout_s : float
        How long a rank waits for the others in one collective before failing (so a rank that
        died is reported instead of hanging forever).
    """
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    created = False
    if size > 1 and dist.is_available() and not dist.is_initialized():
        cuda = device is not None and torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(
            backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=float(timeout_s))
        )
        created = True
    try:
        yield current_world()
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def default_device(world: World) -> torch.device:
    """The device to evaluate on when none is given: this rank's GPU when CUDA is available and
    the process group (if any) can move CUDA tensors (NCCL), else the CPU."""
    if torch.cuda.is_available() and (not world.distributed or world.backend == "nccl"):
        return torch.device("cuda", world.local_rank) if world.distributed else torch.device("cuda")
    return torch.device("cpu")


def rank_device(device: str | torch.device | None, world: World) -> torch.device | None:
    """``device`` with a plain ``"cuda"`` turned into ``cuda:<local rank>`` under several ranks."""
    if device is None:
        return None
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and world.distributed:
        return torch.device("cuda", world.local_rank)
    return dev


# ---------------------------------------------------------------------------------------------
# Shards and checks


def shard_bounds(n: int, *, rank: int, world_size: int, align: int = 1) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of ``n`` samples that ``rank`` evaluates.

    The slices of ranks ``0 .. world_size - 1`` are disjoint and cover ``0 .. n - 1`` (no
    padding duplicates). Boundaries fall on multiples of ``align`` (the evaluation batch size),
    so every sample is evaluated in the very batch a single process would put it in and the
    tables do not depend on the number of ranks; whole batches are dealt out as evenly as
    possible, so with fewer batches than ranks some ranks get an empty slice.

    Examples
    --------
    >>> [shard_bounds(10, rank=r, world_size=3) for r in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    >>> [shard_bounds(10, rank=r, world_size=2, align=4) for r in range(2)]
    [(0, 4), (4, 10)]
    """
    if world_size < 1 or not 0 <= rank < world_size or align < 1:
        raise invalid(
            "rank",
            "in [0, world_size) with world_size >= 1 and align >= 1",
            where="shard_bounds",
            got=f"rank={rank!r}, world_size={world_size!r}, align={align!r}",
        )
    check_world_size(n, world_size, what="the split")
    batches = -(-n // align)

    def edge(r: int) -> int:
        return min(n, align * ((batches * r) // world_size))

    return edge(rank), edge(rank + 1)


def check_world_size(n: int, world_size: int, *, what: str) -> None:
    """Refuse more ranks than samples: each rank must own at least a possible sample."""
    if world_size > n:
        raise ParameterError(
            f"The world size {world_size} is larger than the number of samples of {what} ({n}): "
            f"a rank would have nothing to evaluate. Start at most {n} processes "
            f"(torchrun --nproc_per_node={n}) or record more samples.",
            parameter="world_size",
        )


def gather_all(world: World, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` alone."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def _refuse_disagreement(world: World, value: Any, message: Callable[[int, Any, Any], str]) -> None:
    """Raise on every rank, with ``message(rank, its value, rank 0's value)``, unless every rank
    holds a ``value`` equal to rank 0's."""
    seen = gather_all(world, value)
    for r, theirs in enumerate(seen):
        if theirs != seen[0]:
            raise SampletopoError(message(r, theirs, seen[0]))


def check_same_dataset(
    dataset: Any, splits: Sequence[str], world: World, *, where: str = "LossRecorder"
) -> None:
    """Raise on every rank unless all ranks hold the same data (name and split fingerprints)."""
    if not world.distributed:
        return
    mine = f"{dataset.name}: " + ", ".join(f"{s}={dataset.fingerprint(s)}" for s in splits)
    _refuse_disagreement(
        world,
        mine,
        lambda r, theirs, first: (
            f"{where}: the ranks disagree about the dataset: rank 0 has {first!r}, rank {r} "
            f"has {theirs!r}. Every rank must load the same data (same files, data_root, "
            "data seed, val fraction and max_samples)."
        ),
    )


# ---------------------------------------------------------------------------------------------
# Errors that every rank sees


def error_status(exc: BaseException) -> tuple[str, Any, str]:
    """``(kind, payload, type name)`` of an exception: picklable, and enough for
    :func:`raise_status` to raise the same error on another rank.

    A :class:`SampletopoError` travels whole (pickled, every subclass keeps its attributes);
    anything else, a bug, travels as its type, message and the place it was raised.
    """
    if isinstance(exc, SampletopoError):
        try:
            return "sampletopo", pickle.dumps(exc), type(exc).__name__
        except Exception:  # noqa: BLE001 -- an unpicklable subclass: its message still travels
            return "message", str(exc), type(exc).__name__
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" (raised at {last.filename}:{last.lineno} in {last.name})"
    return "other", f"{type(exc).__name__}: {exc}{where}", type(exc).__name__


def raise_status(status: tuple[str, Any, str], *, rank: int) -> None:
    """Raise the error :func:`error_status` described on ``rank``: the same
    :class:`SampletopoError`, or a :class:`RankFailedError` for any other error."""
    kind, payload, name = status
    if kind == "sampletopo":
        raise pickle.loads(payload)
    if kind == "message":
        raise SampletopoError(payload)
    raise RankFailedError(
        f"rank {rank} failed: {payload}. Its traceback is in that process's output.",
        rank=rank,
        kind=name,
    )


def on_main(world: World, fn: Callable[[], T], *, share: bool = False) -> T | None:
    """Run ``fn`` on rank 0 only; if it raises, raise on every rank.

    Returns ``fn()`` on rank 0 and, with ``share=True``, the same (picklable) value on every
    rank; else ``None`` elsewhere. Every rank must call this at the same point (it is a
    collective: it also makes the other ranks wait for rank 0).
    """
    if not world.distributed:
        return fn()
    status: list[Any] = [None, None]
    result: T | None = None
    failure: BaseException | None = None
    if world.is_main:
        try:
            result = fn()
            status[1] = result if share else None
        except BaseException as exc:  # noqa: BLE001 -- reported to the other ranks, re-raised
            failure = exc
            status[0] = error_status(exc)
    dist.broadcast_object_list(status, src=0)
    if failure is not None:
        raise failure
    if status[0] is not None:
        raise_status(status[0], rank=0)
    return result if world.is_main else status[1]


def everywhere(world: World, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it raises on any rank, raise on every rank.

    The error of the lowest failing rank is raised (its own exception on that rank).
    """
    if not world.distributed:
        return fn()
    result: Any = None
    failure: BaseException | None = None
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001 -- reported to the other ranks, re-raised
        failure = exc
    statuses = gather_all(world, None if failure is None else error_status(failure))
    for r, st in enumerate(statuses):
        if st is not None:
            if r == world.rank and failure is not None:
                raise failure
            raise_status(st, rank=r)
    return result  # type: ignore[no-any-return]


def broadcast_from_main(world: World, obj: T) -> T:
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not world.distributed:
        return obj
    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Gathering per-sample results


def _comm_device(world: World) -> torch.device:
    if world.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_shards(world: World, values: np.ndarray, *, n: int, align: int = 1) -> np.ndarray | None:
    """Put every rank's slice (from :func:`shard_bounds`) of a per-sample array together.

    Returns the whole array of length ``n``, in sample order, on rank 0, and ``None`` elsewhere.
    ``values`` is this rank's slice, float64 or int64.
    """
    values = np.asarray(values)
    if not world.distributed:
        return values
    bounds = [
        shard_bounds(n, rank=r, world_size=world.size, align=align) for r in range(world.size)
    ]
    lo, hi = bounds[world.rank]
    if values.shape != (hi - lo,):
        raise SampletopoError(
            f"gather_shards: rank {world.rank} owns samples [{lo}, {hi}) but gave "
            f"{values.shape[0] if values.ndim else 0} values."
        )
    width = max(1, max(b - a for a, b in bounds))
    dev = _comm_device(world)
    mine = torch.zeros(width, dtype=torch.from_numpy(values[:0]).dtype, device=dev)
    mine[: hi - lo] = torch.from_numpy(values).to(dev)
    parts = [torch.empty_like(mine) for _ in range(world.size)]
    dist.all_gather(parts, mine)
    if not world.is_main:
        return None
    return np.concatenate([p[: b - a].cpu().numpy() for p, (a, b) in zip(parts, bounds)])


def merge_by_index(
    world: World, seen: torch.Tensor, columns: dict[str, torch.Tensor]
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Merge per-sample buffers that each rank filled for the samples it saw.

    ``seen`` (bool, length ``n``) marks the samples this rank holds values for; ``columns``
    are length-``n`` tensors. A sample seen by several ranks (a sampler's padding duplicates)
    takes the values of the lowest such rank, so duplicates are removed by sample index.

    Returns ``(seen_anywhere, merged columns)`` as numpy arrays on rank 0, ``None`` elsewhere.
    """
    if not world.distributed:
        return seen.cpu().numpy(), {k: v.cpu().numpy() for k, v in columns.items()}
    dev = _comm_device(world)
    seen = seen.to(dev)
    owner = torch.where(
        seen,
        torch.full_like(seen, world.rank, dtype=torch.long),
        torch.full_like(seen, world.size, dtype=torch.long),
    )
    dist.all_reduce(owner, op=dist.ReduceOp.MIN)
    mine = owner == world.rank
    merged = {}
    for key, col in columns.items():
        part = torch.where(mine, col.to(dev), torch.zeros_like(col, device=dev))
        dist.reduce(part, dst=0, op=dist.ReduceOp.SUM)
        merged[key] = part
    if not world.is_main:
        return None
    return (owner < world.size).cpu().numpy(), {k: v.cpu().numpy() for k, v in merged.items()}


def gather_to_main(world: World, obj: Any) -> list[Any] | None:
    """Every rank's picklable ``obj``, in rank order, on rank 0; ``None`` elsewhere."""
    if not world.distributed:
        return [obj]
    out: list[Any] | None = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def sync_model(world: World, model: torch.nn.Module, *, where: str = "LossRecorder") -> None:
    """Make every rank evaluate rank 0's model: copy its buffers, check the weights agree.

    Buffers (batch-norm running statistics) are broadcast from rank 0 in place, as
    ``DistributedDataParallel`` itself does at the next forward pass: each DDP rank updates its
    own statistics during the last batches of an epoch, so they differ at the epoch's end.
    Parameters are not copied but compared (a checksum per rank), since different weights mean
    the ranks are not training one model.
    """
    if not world.distributed:
        return
    dev = _comm_device(world)
    with torch.no_grad():
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for buf in model.buffers():
            by_dtype.setdefault(buf.dtype, []).append(buf)
        for bufs in by_dtype.values():  # one broadcast per dtype, not one per buffer
            flat = torch.cat([b.detach().reshape(-1).to(dev) for b in bufs])
            dist.broadcast(flat, src=0)
            start = 0
            for b in bufs:
                b.copy_(flat[start : start + b.numel()].view_as(b))
                start += b.numel()
        sums = np.array([float(p.double().sum()) for p in model.parameters()], dtype=np.float64)
    _refuse_disagreement(
        world,
        hashlib.sha256(sums.tobytes()).hexdigest()[:16],
        lambda r, d, first: (
            f"{where}: rank {r} holds other model weights than rank 0 (checksum {d} vs "
            f"{first}). Every rank must evaluate the same model: wrap it in "
            "DistributedDataParallel, or load the same checkpoint on every rank."
        ),
    )


# ---------------------------------------------------------------------------------------------
# A checkpoint folder listed once


@dataclass(frozen=True)
class ListedCheckpoint:
    """A checkpoint file as it was when its folder was listed."""

    path: Path
    size: int
    mtime_ns: int


def snapshot_checkpoints(files: Sequence[str | Path]) -> list[ListedCheckpoint]:
    """Size and modification time of each file, taken once at the start of a recording."""
    out = []
    for f in files:
        st = Path(f).stat()
        out.append(ListedCheckpoint(Path(f), int(st.st_size), int(st.st_mtime_ns)))
    return out


def _changed(entry: ListedCheckpoint) -> str | None:
    try:
        st = entry.path.stat()
    except FileNotFoundError:
        return f"Checkpoint {str(entry.path)!r} vanished after the folder was listed"
    if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
        return (
            f"Checkpoint {str(entry.path)!r} changed after the folder was listed (size "
            f"{entry.size} -> {st.st_size} bytes, modification time changed "
            f"{'yes' if st.st_mtime_ns != entry.mtime_ns else 'no'})"
        )
    return None


def read_listed_checkpoint(entry: ListedCheckpoint) -> Any:
    """Load a listed checkpoint, refusing one that vanished or changed since it was listed.

    The file is checked before and after loading, so a file rewritten while it is read is
    noticed too.

    Raises
    ------
    CheckpointChangedError
        The file is gone, or its size or modification time differ from the listing.
    """
    from sampletopo.checkpoints import read_checkpoint

    fix = (
        ". Something is writing into the checkpoint folder: record when training is done, or "
        "pass on_change='skip' (--on-change skip) to skip such files with a warning."
    )
    why = _changed(entry)
    if why is None:
        try:
            obj = read_checkpoint(entry.path)
        except SampletopoError:
            why = _changed(entry)
            if why is None:
                raise
        else:
            why = _changed(entry)
            if why is None:
                return obj
    raise CheckpointChangedError(why, fix)
