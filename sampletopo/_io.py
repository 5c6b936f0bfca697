"""Atomic file writes: the commit point of every file sampletopo stores.

A writer gets an open binary file in the target's folder; the file is flushed, synced and then
renamed over the target, so a reader (or a killed run) only ever sees the old file or the whole
new one, never a part. Nothing here knows about formats.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Tracked(io.RawIOBase):
    """The temporary file as writers see it: it keeps the first OS error of a write.

    Writers that hit a full disk or a file-size limit often re-raise it as their own error
    (polars' ``ComputeError``, torch's ``RuntimeError``: "unexpected pos 704 vs 598"); the kept
    error lets :func:`write_atomic` raise the real cause, with the target's path. It has no
    ``fileno()``, so writers (polars) cannot go around it to the file descriptor.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.error: OSError | None = None
        self.discard = False  # set once writing failed: a later flush (at collection) is dropped

    def writable(self) -> bool:
        return True

    # Seeking is passed on, so zip-based writers (numpy, torch) write the same bytes as to a file.
    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.discard:
            return len(b)
        try:
            return self._raw.write(b)
        except OSError as exc:
            if self.error is None:
                self.error = exc
            raise


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets the permissions of any newly created file (``0o666`` less the umask), not the
    owner-only ``0o600`` of a temporary file, so others who share the run folders can read it.

    Raises
    ------
    OSError
        When the operating system refuses the write (a full disk, a quota, a file-size limit,
        a read-only file system), as an ``OSError`` with that ``errno`` whose ``filename`` is
        ``path``, whatever error the writer turned it into. The temporary file is removed and
        the old ``path``, if any, is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file asked for, not a temporary name that never existed
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    tracked: _Tracked | None = None
    try:
        with os.fdopen(fd, "wb", buffering=0) as raw:
            tracked = _Tracked(raw)
            fh = io.BufferedWriter(tracked, buffer_size=1 << 20)  # type: ignore[type-var]
            write(fh)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if tracked is not None:
            tracked.discard = True
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass
        cause = tracked.error if tracked is not None and tracked.error is not None else None
        if cause is None and isinstance(exc, OSError) and exc.filename is None:
            cause = exc  # flush, fsync and close name no file
        if cause is not None:
            raise OSError(cause.errno, cause.strerror, str(path)) from exc
        raise
    return path
