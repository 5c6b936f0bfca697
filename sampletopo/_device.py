"""Device names as the user gives them (``"auto"``, ``"cpu"``, ``"cuda:1"``) checked once.

``torch.device`` accepts names of devices this machine does not have (``"cuda"`` without a GPU,
``"meta"``, ``"xla"``) and fails on typos with a message about its own parser. Every entry point
that takes a device (the training config, ``LossRecorder``, ``record_checkpoints``,
``evaluate_losses`` and the ``--device`` flags) resolves it here instead, so a wrong one gets
one :class:`~sampletopo._errors.SampletopoError` that lists what this machine offers, before any
file is written. This module does not move models or data.
"""

from __future__ import annotations

from typing import Any

import torch

from sampletopo._errors import ParameterError
from sampletopo._validation import invalid

__all__ = ["resolve_device", "available_devices", "model_device"]


def available_devices() -> list[str]:
    """The device names usable here, e.g. ``['auto', 'cpu', 'cuda', 'cuda:0', 'cuda:1']``."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        out.append("mps")
    return out


def _cuda_missing() -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    return f"no CUDA GPU is visible (torch {torch.__version__}, CUDA {torch.version.cuda})"


def resolve_device(
    device: Any,
    *,
    where: str,
    param: str = "device",
    allow_none: bool = True,
    kind: str | None = None,
) -> torch.device | None:
    """The :class:`torch.device` that ``device`` names, checked to exist on this machine.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (the GPU when CUDA is available, else the CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` with ``N`` below the number of visible GPUs, or ``"mps"`` where available.
        Other device types (``"meta"``, ``"xla"``, ...) are refused: losses computed there would
        not be real numbers on this machine.
    where, param : str
        The function (or command) and the parameter (or flag) named in the error.
    kind : str, optional
        What ``param`` is called in the error: default ``"flag"`` for ``--name``, else
        ``"parameter"`` (the training config passes ``"setting"``).
    allow_none : bool
        Whether ``None`` (the caller's own default, returned as ``None``) is accepted.

    Raises
    ------
    ParameterError
        An unknown name, a device type other than cpu/cuda/mps, CUDA (or MPS) asked for where
        it is not available, or a GPU index beyond the visible GPUs.
    """
    if device is None and allow_none:
        return None
    allowed = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    kind = kind or ("flag" if param.startswith("--") else "parameter")
    usable = f"Usable here: {', '.join(available_devices())}."

    def refuse(got: str, fix: str = usable, also: str = "") -> ParameterError:
        return invalid(param, allowed + also, where=where, got=got, fix=fix, kind=kind)

    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise refuse(f"{device!r} ({type(device).__name__})")
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, ValueError, TypeError):
        raise refuse(repr(str(device))) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise refuse(
                f"{str(device)!r} ({str(device)!r} needs CUDA, but {_cuda_missing()})",
                "Use 'cpu' or 'auto' (the GPU when there is one).",
                " on a machine with CUDA",
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise refuse(
                f"{str(device)!r}, but only {count} GPU(s) are visible here (cuda:0 .. "
                f"cuda:{count - 1})",
                "Pick one of those, or set CUDA_VISIBLE_DEVICES.",
            )
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise refuse("'mps', which is not available here", "Use 'cpu' or 'auto'.")
        return dev
    raise refuse(
        f"{str(device)!r}, a device type ({dev.type}) sampletopo does not compute losses on"
    )


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model without any."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")
