"""Output folders: one writer at a time, and names and paths that stay inside them.

Holds the advisory folder lock every writer takes (:func:`lock_folder`, :func:`lock_output`),
the check that a folder path is not a file (:func:`check_folder`), the check that a path built
from a user-given name stays inside the folder it was given (:func:`check_inside`) and the rule
for names that become folder names (:func:`check_name`). It knows nothing about what is written.

Locks
-----
A lock is an exclusive ``fcntl.flock`` on a lock file: ``<folder>/.sampletopo.lock`` for a
folder, ``<folder>/.<file>.lock`` for one output file. The file holds JSON about the holder
(pid, host, command line, what it does, since when), so a second writer gets one error that
names the holder (:class:`FolderLockedError`). The kernel drops a flock when its process ends,
however it ends (``kill -9`` included): a lock file that still holds a holder's description but
can be locked was left by a process that died, and is taken over with a
:class:`StaleLockWarning` naming that process. A holder that ends normally deletes the file, and
also removes the folders that locking created when nothing else was written into them, so a
writer that fails at its start leaves nothing behind.

A lock belongs to a process, not to a thread or an object: within one process, taking the same
lock again (``train_experiment`` -> ``train_run``, or a notebook cell that makes a second
:class:`~sampletopo.recorder.LossRecorder` on a folder before the first is collected) shares it,
and the lock is released when its last holder in the process releases it, or at the process's
exit. Locks guard against other processes, not against threads of one process. Under
``torch.distributed`` only the rank that writes (rank 0) locks. A process forked while holding a
lock shares it (``DataLoader`` workers): it stays held until those children end too.

The lock is advisory: it stops sampletopo writers, not ``rm`` or other programs. It works on
local file systems and on NFS (Linux emulates flock with NFS locks); on a file system that cannot
lock at all, writing goes on unlocked with a warning. Without ``fcntl`` (Windows) nothing is
locked.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import errno
import json
import os
import socket
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from sampletopo._errors import (
    FolderLockedError,
    ParameterError,
    RunFolderError,
    StaleLockWarning,
    UnlockedFolderWarning,
)

try:
    import fcntl
except ImportError:  # pragma: no cover -- Windows: nothing is locked (see the module docstring)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FolderLock",
    "FolderLockedError",
    "StaleLockWarning",
    "NAME_CHARACTERS",
    "check_folder",
    "check_inside",
    "check_name",
    "lock_folder",
    "lock_output",
]

LOCK_NAME = ".sampletopo.lock"


# ---------------------------------------------------------------------------------------------
# Names and paths

#: Characters allowed in a name that becomes a folder name, besides letters and digits.
NAME_CHARACTERS = "=.,-_+"
_NAME_MAX_BYTES = 128


def _reserved() -> tuple[str, ...]:
    # The experiment folder's own file and folder names: the run-folder module knows them
    # (imported here, not at the top, because it imports this module).
    from sampletopo.runs import RESERVED_NAMES

    return RESERVED_NAMES


def _name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    bad = sorted({ch for ch in name if not (ch.isalnum() or ch in NAME_CHARACTERS)})
    if bad:
        return f"it holds {''.join(bad)!r}"
    if name.startswith("."):
        return "it starts with a dot ('.' and '..' are this folder and its parent)"
    if name.casefold() in _reserved():
        return "the experiment folder uses that name itself"
    if len(name.encode()) > _NAME_MAX_BYTES:
        return f"it is longer than {_NAME_MAX_BYTES} bytes"
    return None


def check_name(name: Any, *, what: str = "variant name") -> str:
    """Return ``name`` if it can be a folder name inside an experiment folder, else raise.

    A name is letters and digits (any script) and the characters ``= . , - _ +``, at most 128
    bytes in UTF-8; it does not start with a dot (so never ``.`` or ``..``) and is not one of
    :data:`sampletopo.runs.RESERVED_NAMES` (compared without case). The automatic variant names
    (``lr=0.1``, ``lr=0.1,skip=false``, ``run``) are such names.

    Examples
    --------
    >>> check_name("lr=0.1,skip=false")
    'lr=0.1,skip=false'
    >>> check_name("..")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sampletopo._errors.ParameterError: The variant name '..' cannot be a folder name: it starts with a dot ('.' and '..' are this folder and its parent). ...
    """
    text = name if isinstance(name, str) else str(name)
    why = _name_problem(text)
    if why is None:
        return text
    fixed = "".join(ch if (ch.isalnum() or ch in NAME_CHARACTERS) else "_" for ch in text)
    fixed = fixed.lstrip(".")[:64] or "run"
    if fixed.casefold() in _reserved():
        fixed = f"{fixed}-run"
    raise ParameterError(
        f"The {what} {text!r} cannot be a folder name: {why}. Names use letters, digits and "
        f"{' '.join(NAME_CHARACTERS)}, at most {_NAME_MAX_BYTES} bytes, do not start with a dot "
        f"and are none of {', '.join(_reserved())}. Try {fixed!r}."
    )


def check_inside(path: str | Path, folder: str | Path, *, what: str = "path") -> Path:
    """Return ``path`` if it lies strictly inside ``folder``, else raise.

    Both are made absolute and their ``..`` parts collapsed before comparing; symbolic links are
    not followed, so a link the user placed in the folder on purpose (a run folder kept on
    another disk) is honoured, while a name such as ``..`` or ``../x`` is refused. The folder
    itself does not count as inside it.

    Examples
    --------
    >>> check_inside("exp/lr=0.1", "exp").name
    'lr=0.1'
    >>> check_inside("exp/..", "exp")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sampletopo._errors.ParameterError: The path 'exp/..' would be written outside the folder 'exp' it belongs in. ...
    """
    root = os.path.abspath(folder)
    full = os.path.abspath(path)
    if os.path.commonpath([root, full]) != root or full == root:
        raise ParameterError(
            f"The {what} {str(path)!r} would be written outside the folder {str(folder)!r} it "
            "belongs in. Use a plain name (no separators, not '.' or '..')."
        )
    return Path(path)


def check_folder(folder: str | os.PathLike[str], *, role: str = "folder") -> Path:
    """Return ``folder`` as a Path if it is a folder or can be made one, else raise.

    Refuses an existing file at ``folder`` and a file in place of one of its parents, naming it.
    """
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise RunFolderError(
            f"The {role} {str(p)!r} is an existing file, not a folder. Pass a folder path (it is "
            "created if missing), or move the file away."
        )
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(
                    f"The {role} {str(p)!r} cannot be made: {str(parent)!r} is a file, not a "
                    "folder. Pick a path under a folder."
                )
            break
    return p


# ---------------------------------------------------------------------------------------------
# Locks


@dataclass
class _Held:
    fd: int
    path: str
    pid: int
    count: int = 1
    created: list[Path] = field(default_factory=list)  # folders made for the lock, deepest first


_HELD: dict[str, _Held] = {}
_GUARD = threading.RLock()


def _holder_info(what: str) -> dict[str, Any]:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    command = " ".join(argv).replace("\n", " ")
    if len(command) > 300:
        command = command[:297] + "..."
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "what": what,
        "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _read_info(fd: int) -> dict[str, Any] | None:
    """The holder description in a lock file; ``None`` when empty, ``{}`` when unreadable."""
    try:
        raw = os.pread(fd, 1 << 16, 0)
    except OSError:
        return {}
    if not raw.strip():
        return None
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _alive(info: dict[str, Any]) -> bool | None:
    """Whether the holder's process still runs; ``None`` if that cannot be told from here."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return None
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "a process that has not said who it is yet"
    return (
        f"pid {info.get('pid', '?')} on host {info.get('host', '?')!r}, {info.get('what', '?')} "
        f"since {info.get('since', '?')} (command: {info.get('command', '?')})"
    )


class FolderLock:
    """A held lock on a folder or output file; see the module docstring for the guarantees.

    Made by :func:`lock_folder` and :func:`lock_output`, already held. Release it with
    :meth:`release` or by leaving a ``with`` block; it is also released when the handle is
    garbage-collected and at interpreter exit, and by the kernel if the process dies.

    Attributes
    ----------
    target : Path
        The folder or file this lock guards.
    lock_file : Path
        The lock file.
    """

    def __init__(self, target: Path, lock_file: Path, *, what: str, role: str) -> None:
        self.target = target
        self.lock_file = lock_file
        self._what = what
        self._role = role
        self._key: str | None = None
        self._acquire()

    @property
    def held(self) -> bool:
        """Whether this handle still holds the lock."""
        return self._key is not None

    def _acquire(self) -> None:
        created: list[Path] = []
        folder = Path(os.path.abspath(self.lock_file.parent))  # a later chdir changes nothing
        if not folder.is_dir():
            missing = [folder, *(p for p in folder.parents if not p.exists())]
            folder.mkdir(parents=True, exist_ok=True)
            created = [p for p in missing if p.is_dir()]
        key = os.path.realpath(self.lock_file)
        with _GUARD:
            held = _HELD.get(key)
            if held is not None and held.pid == os.getpid():
                held.count += 1
                self._key = key
                return
            if held is not None:  # inherited through fork: the parent's, not ours
                del _HELD[key]
            if fcntl is None:  # pragma: no cover -- Windows
                return
            try:
                fd = self._lock_fd(key)
            except BaseException:
                _remove_empty(created)
                raise
            if fd is None:
                return
            old = _read_info(fd)
            if old is not None:
                warnings.warn(
                    StaleLockWarning(
                        f"Took over the lock of {str(self.target)!r}: its holder, "
                        f"{_describe(old)}, ended without releasing it (killed or crashed). What "
                        "it finished writing is kept; its half-written temporary files are "
                        "ignored."
                    ),
                    stacklevel=4,
                )
            data = json.dumps({**_holder_info(self._what), "target": str(self.target)}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            _HELD[key] = _Held(fd=fd, path=key, pid=os.getpid(), created=created)
            self._key = key

    def _lock_fd(self, key: str) -> int | None:
        """Open and flock the lock file; the open descriptor, or ``None`` when the file system
        cannot lock. Raises :class:`FolderLockedError` when another process holds it."""
        assert fcntl is not None
        for _ in range(50):
            try:
                fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:
                # A releasing holder removed the folder it had made: make it again.
                Path(key).parent.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _read_info(fd) or {}
                os.close(fd)
                raise self._locked_error(info) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    Path(key).unlink(missing_ok=True)
                    warnings.warn(
                        f"The file system of {str(self.target)!r} cannot lock files ({exc.strerror}): "
                        "a second sampletopo process writing there at the same time would not be "
                        "stopped.",
                        UnlockedFolderWarning,
                        stacklevel=5,
                    )
                    return None
                raise
            # A holder deletes the file when it releases: the file locked must still be the one
            # at the path, or a third process could lock a new file there at the same time.
            try:
                same = os.path.samestat(os.stat(key), os.fstat(fd))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)
        # Another process deletes and re-creates the lock file faster than this one can lock
        # it: as good as held.
        raise FolderLockedError(
            f"Could not lock {str(self.target)!r}: its lock file {key!r} was replaced 50 times "
            "in a row by other processes. Wait for them to finish, or write elsewhere.",
            holder={},
        )

    def _locked_error(self, info: dict[str, Any]) -> FolderLockedError:
        alive = _alive(info) if info else None
        gone = (
            " (that process has ended; a process it started still holds the lock, e.g. a "
            "DataLoader worker: end it)"
            if alive is False
            else ""
        )
        verb = "written" if self._role.endswith("file") else "in use"
        return FolderLockedError(
            f"{self._role.capitalize()} {str(self.target)!r} is {verb} by another sampletopo "
            f"process: {_describe(info)}{gone}. Two writers would mix their files. Wait until it "
            "ends (or stop it), or write to another folder.",
            holder=info,
        )

    def release(self) -> None:
        """Give up this handle's share of the lock (again: nothing happens)."""
        key, self._key = self._key, None
        if key is None:
            return
        with _GUARD:
            held = _HELD.get(key)
            if held is None or held.pid != os.getpid():
                return
            held.count -= 1
            if held.count <= 0:
                _release(held)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 -- interpreter shutdown: the kernel releases it anyway
            pass

    def __getstate__(self) -> dict[str, Any]:
        # A copy (pickle, copy.deepcopy of a callback) does not hold the lock, or releasing it
        # would release the original's.
        return {**self.__dict__, "_key": None}

    def __repr__(self) -> str:
        return f"FolderLock({str(self.target)!r}, held={self.held})"


def _release(held: _Held) -> None:
    """Delete the lock file, then unlock (closing the descriptor), then remove empty folders
    that locking made."""
    _HELD.pop(held.path, None)
    try:
        os.unlink(held.path)
    except OSError:
        pass
    try:
        os.close(held.fd)
    except OSError:
        pass
    _remove_empty(held.created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


@atexit.register
def _release_all() -> None:
    with _GUARD:
        for held in list(_HELD.values()):
            if held.pid == os.getpid():
                _release(held)


def lock_folder(folder: str | os.PathLike[str], *, what: str, role: str = "folder") -> FolderLock:
    """Take the lock of ``folder`` (made if missing) and return it, held.

    Parameters
    ----------
    folder : str or Path
        The folder to write into; a file in its place is refused (:func:`check_folder`).
    what : str
        What the holder does there, for other processes' error messages (``"training"``).
    role : str
        What the folder is, for messages (``"run folder"``, ``"experiment folder"``).

    Raises
    ------
    FolderLockedError
        Another process holds it; the message names that process.
    """
    p = check_folder(folder, role=role)
    return FolderLock(p, p / LOCK_NAME, what=what, role=role)


def lock_output(path: str | os.PathLike[str], *, what: str) -> FolderLock:
    """Take the lock of one output file (``<folder>/.<name>.lock``) and return it, held.

    For writers of a single file (a landscape, a regions table) so that several of them may
    write other files of the same folder at once.
    """
    p = Path(path)
    check_folder(p.parent, role="folder")
    return FolderLock(p, p.parent / f".{p.name}.lock", what=what, role="output file")
