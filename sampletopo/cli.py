"""The ``sampletopo`` command line.

Each subcommand lives in its own module under :mod:`sampletopo.commands` and exposes
``register(subparsers)``; this file only discovers and dispatches them, so adding a command never
touches this file. It also turns bad input (a :class:`SampletopoError`, or a path the operating
system refuses) and a write the operating system refuses (a full disk or quota, a file-size
limit, a read-only file system, a name too long) into one ``sampletopo COMMAND: error: ...``
line that names the path and the fix, with exit code 2; any other exception is a bug and keeps
its traceback. Every file is written atomically (:func:`sampletopo._io.write_atomic`), so such
a failure leaves what was written before whole and no temporary file behind.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys
import warnings

from sampletopo._errors import SampletopoError


def build_parser() -> argparse.ArgumentParser:
    from sampletopo import commands
    from sampletopo.commands._common import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="sampletopo",
        description="Topology of neural-network training: per-sample losses, merge trees, landscapes.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"sampletopo.commands.{info.name}")
        module.register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    # Users of the command line want the message, not the library line that raised it.
    return f"sampletopo: {category.__name__}: {message}\n"


_AGAIN = (
    "what was written before is intact; run the same command again then (recorded epochs and "
    "computed diagrams are kept and skipped)"
)
# Writes the system refuses for lack of room or rights, by errno, and what to do about them.
# "{out}" is " (--out)" for a command that has that flag, "" for one that writes into the
# folders it is given (topology, samples' default).
_WRITE_ERRORS: dict[int, str] = {
    errno.ENOSPC: f"the disk is full: free space or write to another disk{{out}}; {_AGAIN}",
    errno.EDQUOT: f"your disk quota is used up: free space or write elsewhere{{out}}; {_AGAIN}",
    errno.EFBIG: "a file would exceed the largest file size allowed here (see `ulimit -f`): raise "
    f"the limit or write to another file system; {_AGAIN}",
    errno.EROFS: "that file system is read-only: write to a writable folder{out}, or copy the "
    "folder to a writable disk and run the command there",
    errno.ENAMETOOLONG: "a file or folder name is too long: use shorter folder or variant names",
}


def _has_out(parser: argparse.ArgumentParser, command: str) -> bool:
    """Whether ``command`` has an ``--out`` flag (the hints name it only then)."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:  # noqa: SLF001
        sub = getattr(action, "choices", {}).get(command)
        if sub is not None:
            return any("--out" in a.option_strings for a in sub._actions)  # noqa: SLF001
    return False


# OS errors that mean "this path is wrong here", and what to do about it. Other OSErrors (a broken
# pipe, an I/O error of the disk) and other exceptions are not the user's input and keep their
# traceback.
_PATH_ERRORS: tuple[tuple[type[OSError], str], ...] = (
    (NotADirectoryError, "part of that path is a file, not a folder; pick a path under a folder"),
    (IsADirectoryError, "that is a folder where a file is needed; pass a file path"),
    (FileExistsError, "something is already there; pick another path or move it away"),
    (PermissionError, "pick a location you may use, or change its permissions"),
    (FileNotFoundError, "check the path"),
)


def _path_error_message(exc: OSError, fix: str) -> str:
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    what = exc.strerror or type(exc).__name__
    where = " -> ".join(repr(p) for p in paths) if paths else "(the system named no file)"
    return f"{what}: {where}. Fix: {fix}."


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    parser = build_parser()
    args = parser.parse_args(argv)
    if "MPLBACKEND" not in os.environ:
        # The command line only writes figure files: never open a GUI backend (a stale DISPLAY
        # over ssh would fail). The library itself leaves the backend alone (notebooks).
        import matplotlib

        matplotlib.use("Agg")
    try:
        return int(args.func(args) or 0)
    except SampletopoError as exc:
        print(f"sampletopo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno in _WRITE_ERRORS:
            out = " (--out)" if _has_out(parser, args.command) else ""
            msg = _path_error_message(exc, _WRITE_ERRORS[exc.errno].format(out=out))
            print(f"sampletopo {args.command}: error: {msg}", file=sys.stderr)
            return 2
        for kind, fix in _PATH_ERRORS:
            if isinstance(exc, kind):
                msg = _path_error_message(exc, fix)
                print(f"sampletopo {args.command}: error: {msg}", file=sys.stderr)
                return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
