"""The ``sampletopo`` command line.

Each subcommand lives in its own module under :mod:`sampletopo.commands` and exposes
``register(subparsers)``; this file only discovers and dispatches them, so adding a command never
touches this file. It also turns bad input (a :class:`SampletopoError`, or a path the operating
system refuses) into one ``sampletopo COMMAND: error: ...`` line with exit code 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
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


# OS errors that mean "this path is wrong here", and what to do about it. Other OSErrors (a full
# disk, a broken pipe) and other exceptions are not the user's input and keep their traceback.
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
    where = " -> ".join(repr(p) for p in paths) if paths else str(exc)
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
        for kind, fix in _PATH_ERRORS:
            if isinstance(exc, kind):
                msg = _path_error_message(exc, fix)
                print(f"sampletopo {args.command}: error: {msg}", file=sys.stderr)
                return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
