"""The ``sampletopo`` command line.

Each subcommand lives in its own module under :mod:`sampletopo.commands` and exposes
``register(subparsers)``; this file only discovers and dispatches them, so adding a command never
touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from sampletopo._errors import SampletopoError


def build_parser() -> argparse.ArgumentParser:
    from sampletopo import commands

    parser = argparse.ArgumentParser(
        prog="sampletopo",
        description="Topology of neural-network training: per-sample losses, merge trees, landscapes.",
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


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SampletopoError as exc:
        print(f"sampletopo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
