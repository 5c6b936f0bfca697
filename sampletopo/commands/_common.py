"""What every subcommand shares: the help formatter and the checks on output paths.

Private to :mod:`sampletopo.commands` (the command discovery skips ``_`` modules). Imports stay
light so that building the parser, and ``--help``, never loads torch or matplotlib.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sampletopo._errors import ParameterError, RunFolderError
from sampletopo._validation import MAX_SEED, invalid

if TYPE_CHECKING:
    from sampletopo.runs import PathLike

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_PARAGRAPH = re.compile(r"\n\s*\n")
_TRAIN_DEFAULT = re.compile(r"\{train:(\w+)\}")


def strip_markup(text: str) -> str:
    """Drop the reStructuredText markup of a docstring so it reads as plain terminal text.

    >>> strip_markup("see :func:`sampletopo.samples.top_regions` and ``--out``")
    'see sampletopo.samples.top_regions and --out'
    """
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


def _fill_placeholders(text: str) -> str:
    """Fill ``{models}``, ``{datasets}`` and ``{train:FIELD}`` (a TrainConfig default).

    Done only when help is shown: these modules import torch, which building the parser for
    every other command must not pay for.
    """
    if _TRAIN_DEFAULT.search(text):
        from sampletopo.train import TrainConfig

        defaults = TrainConfig()
        text = _TRAIN_DEFAULT.sub(lambda m: _show_default(getattr(defaults, m.group(1))), text)
    if "{models}" in text:
        from sampletopo.models import list_models

        text = text.replace("{models}", ", ".join(list_models()))
    if "{datasets}" in text:
        from sampletopo.data import list_datasets

        text = text.replace("{datasets}", ", ".join(list_datasets()))
    return text


def _show_default(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Plain-text help: paragraphs kept, markup stripped, one ``(default: ...)`` where it helps.

    The default is appended only to optional flags whose default is a real value (not ``None``,
    not an on/off switch) and whose help does not already describe it.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paras = _PARAGRAPH.split(strip_markup(text).strip())
        return "\n\n".join(super(HelpFormatter, self)._fill_text(p, width, indent) for p in paras)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = _fill_placeholders(strip_markup(action.help or ""))
        spec = getattr(action, "default_of", None)
        default = library_default(spec) if spec is not None else action.default
        if (
            action.option_strings
            and not action.required
            and default is not None
            and default is not argparse.SUPPRESS
            and not isinstance(default, bool)
            and "default" not in text.lower()
        ):
            text += f" (default: {_show_default(default).replace('%', '%%')})"
        return text


def add_command(sub: Any, name: str, *, help: str, description: str) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with the shared formatter (``description`` may be a docstring)."""
    return sub.add_parser(name, help=help, description=description, formatter_class=HelpFormatter)


# ---------------------------------------------------------------------------------------------
# Defaults live in the library
#
# Every optional flag is added with ``default=argparse.SUPPRESS``: a flag the user did not give
# is not in the parsed namespace at all, so a command passes on only what was given
# (:func:`given`) and the library function's own default applies. ``--help`` reads that default
# from the function's signature (or the dataclass field) named by ``default_of``, when help is
# shown: building the parser imports nothing heavy.


def library_default(spec: str) -> Any:
    """The default of ``"module:function.param"`` (or ``"module:Class.field"`` of a dataclass),
    read from the signature; ``None`` when it has none.

    >>> library_default("sampletopo.samples:top_regions.top")
    10
    """
    module, _, rest = spec.partition(":")
    owner, _, param = rest.rpartition(".")
    obj: Any = importlib.import_module(module)
    for part in owner.split("."):
        obj = getattr(obj, part)
    if dataclasses.is_dataclass(obj):
        field = {f.name: f for f in dataclasses.fields(obj)}[param]
        if field.default is not dataclasses.MISSING:
            return field.default
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return None
    value = inspect.signature(obj).parameters[param].default
    return None if value is inspect.Parameter.empty else value


def option(
    p: argparse.ArgumentParser, *flags: str, default_of: str | None = None, **kw: Any
) -> argparse.Action:
    """Add an optional flag that is left out of the namespace when not given.

    ``default_of`` (``"module:function"``, or ``"module:function.param"`` when the flag's name
    differs from the parameter's) names where its default lives, for ``--help``.
    """
    action = p.add_argument(*flags, default=argparse.SUPPRESS, **kw)
    if default_of is not None:
        spec = default_of if "." in default_of.partition(":")[2] else f"{default_of}.{action.dest}"
        action.default_of = spec  # type: ignore[attr-defined]
    return action


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags among ``names`` (namespace names) that the user gave, by name; with
    ``--no-progress`` given, also ``progress=False``."""
    out = {n: getattr(args, n) for n in names if hasattr(args, n)}
    if hasattr(args, "no_progress"):
        out["progress"] = False
    return out


def progress_option(p: argparse.ArgumentParser, *, bars: bool = False) -> None:
    """``--no-progress``: hide the progress bar(s) (the library shows them by default)."""
    option(p, "--no-progress", action="store_true", help=f"hide the progress bar{'s' * bars}")


def graph_options(p: argparse.ArgumentParser, *, default_of: str, several: bool = False) -> None:
    """``--k`` and ``--features``: the kNN graph of a split (defaults of ``default_of``); with
    ``several``, each takes one or more values (every combination is a graph setting)."""
    more = {"nargs": "+"} if several else {}
    also = "; several values: each is computed and stored apart" if several else ""
    option(
        p,
        "--k",
        type=int,
        default_of=default_of,
        help=f"neighbours per sample (20 in the thesis){also}",
        **more,
    )
    option(
        p,
        "--features",
        default_of=default_of,
        help=f"graph features: raw, standardized, pca or the path of a .npy file{also}",
        **more,
    )


def heatmap_epochs_option(p: argparse.ArgumentParser) -> None:
    """``--epochs``: the heatmap epochs of a figure set (the library chooses when not given)."""
    option(
        p,
        "--epochs",
        type=int,
        nargs="+",
        help="heatmap epochs (default: the first trained epoch, the epochs on each side of every LR drop, the final one; first, middle, final without drops)",
    )


def figure_look_options(p: argparse.ArgumentParser) -> None:
    """``--scale``, ``--bins``, ``--range`` and ``--columns``: how a figure set's axes and
    heatmap grids are drawn (defaults of :func:`sampletopo.figures.write_figure_set`)."""
    spec = "sampletopo.figures:write_figure_set"
    option(
        p,
        "--scale",
        choices=["auto", "linear", "log", "symlog"],
        default_of=spec,
        help="y axes of the curves and both heatmap axes: auto is log when the values shown span "
        "more than 100x (symlog with values <= 0), linear otherwise; ranges leave out outlying "
        "epochs, which are drawn as marked overflow",
    )
    option(p, "--bins", type=int, default_of=spec, help="heatmap bins per axis")
    option(
        p,
        "--range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        dest="value_range",
        default_of=f"{spec}.value_range",
        help="fix both heatmap axes (birth and persistence, both loss values) to [LO, HI]; pairs "
        "beyond go in the marked overflow bins (default: robust, from the epochs shown)",
    )
    option(
        p,
        "--columns",
        type=int,
        default_of=spec,
        help="heatmap panels per row; more epochs wrap onto further rows",
    )


def metrics_option(p: argparse.ArgumentParser) -> None:
    """``--metrics``: named metrics drawn against epoch beside total persistence."""
    option(
        p,
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help="also draw these metrics of every diagram against epoch, one figure each: "
        "total_persistence_2, n_pairs, max_persistence, pairs_above:T, "
        "pairs_above_relative:F, quantile:Q (see `sampletopo compare --help`)",
    )


def check_seed_flag(value: int | None, flag: str) -> None:
    """Refuse a seed flag outside ``[0, 2**63 - 1]`` (run configs store seeds as 64-bit ints;
    numpy refuses negative seeds) before anything runs; ``None`` means the flag was not given."""
    if value is not None and not 0 <= value <= MAX_SEED:
        raise invalid(
            flag, f"a seed in [0, {MAX_SEED}] (2**63 - 1)", value, where=None, kind="flag"
        )


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a folder that exists or can be made: refuse a file in the way, naming it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ParameterError(
            f"The '{flag}' folder {str(p)!r} is an existing file. Pass a folder path (it is "
            "created if missing), or move the file away."
        )
    _check_parents(p, flag)
    return p


def check_out_file(
    path: str | Path, flag: str = "--out", *, example: str = "out", suffix: str | None = None
) -> Path:
    """``path`` as a file that can be written: refuse a folder there or a file among its parents,
    and (with ``suffix``) a name that does not end in it.

    ``example`` is a file name suggested inside the folder when ``path`` is one.
    """
    p = Path(path)
    if suffix is not None and p.suffix != suffix and not p.is_dir():
        raise ParameterError(
            f"The '{flag}' file {str(p)!r} must end in {suffix} (that is the format written). "
            f"Try {str(p.with_name(p.name + suffix))!r}."
        )
    if p.is_dir():
        raise ParameterError(
            f"The '{flag}' file {str(p)!r} is an existing folder. Pass a file path, e.g. "
            f"{str(p / example)!r}."
        )
    _check_parents(p, flag)
    return p


def _check_parents(p: Path, flag: str) -> None:
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ParameterError(
                    f"The '{flag}' path {str(p)!r} cannot be written: {str(parent)!r} is a file, "
                    "not a folder. Pick a path under a folder."
                )
            return


def require_diagrams(
    runs: Sequence[PathLike], *, given: list[str], graph: dict[str, Any] | None = None
) -> None:
    """Refuse, before any output folder is made, runs none of which has stored diagrams; with
    ``graph`` (:func:`chosen_graph`), runs without that graph setting's diagrams, naming the
    setting asked and those stored (:func:`sampletopo.runs.require_graph_setting`).

    ``given`` are the folders as the user typed them (experiments or runs), for the message.
    """
    from sampletopo.runs import SPLITS, as_run, require_graph_setting

    if graph is not None:
        require_graph_setting(runs, **graph)
        return
    if not any(as_run(rd).diagram_epochs(s) for rd in runs for s in SPLITS):
        where = ", ".join(repr(str(g)) for g in given)
        raise RunFolderError(
            f"No stored diagrams under {where}. Run `sampletopo topology {' '.join(given)}` first."
        )


def chosen_graph_options(p: argparse.ArgumentParser, *, several: str = "") -> None:
    """``--k``, ``--features``, ``--pca-components`` of a command that reads topology: which
    graph setting's results to read (default: those in ``<run>/topology/`` itself). With
    ``several`` (the flag that allows it), each takes several values."""
    more = f"; several values with {several}" if several else ""
    option(
        p,
        "--k",
        type=int,
        nargs="+",
        help="neighbours per sample of the graph setting read (default: the setting in "
        f"<run>/topology/){more}",
    )
    option(
        p,
        "--features",
        nargs="+",
        help="graph features of the setting read: raw, standardized, pca or a .npy path "
        f"(default: raw when --k is given){more}",
    )
    option(
        p,
        "--pca-components",
        type=int,
        default_of="sampletopo.runs:graph_runs",
        help="principal axes of the setting read with --features pca",
    )


def chosen_graph(
    args: argparse.Namespace, *, where: str, several: str = ""
) -> dict[str, Any] | None:
    """The one graph setting of ``chosen_graph_options`` (``None``: none given, read
    ``<run>/topology/`` itself); several values are refused, naming ``several``."""
    from sampletopo.runs import GRAPH_DEFAULTS

    ks = getattr(args, "k", None)
    fs = getattr(args, "features", None)
    for flag, values in (("--k", ks), ("--features", fs)):
        if values is not None and len(values) > 1:
            raise invalid(
                flag,
                "one value (the graph setting read)",
                " ".join(map(str, values)),
                where=where,
                kind="flag",
                fix=f"Add {several} to use several settings." if several else "",
            )
    check_graph_flags(args, where=where)
    check_pca_flag(args, fs or [], where=where)
    if ks is None and fs is None:
        return None
    return {
        "k": ks[0] if ks else GRAPH_DEFAULTS["k"],
        "features": fs[0] if fs else GRAPH_DEFAULTS["features"],
        "pca_components": getattr(args, "pca_components", GRAPH_DEFAULTS["pca_components"]),
    }


def check_pca_flag(args: argparse.Namespace, features: Sequence[str], *, where: str) -> None:
    """Refuse a ``--pca-components`` given without ``pca`` among ``features``: it would be
    ignored, and another graph setting read or built than the one meant."""
    if hasattr(args, "pca_components") and "pca" not in features:
        raise invalid(
            "--pca-components",
            "given with --features pca (the PCA size of the graph)",
            args.pca_components,
            where=where,
            kind="flag",
            fix="Add --features pca, or leave --pca-components out.",
        )


def check_graph_flags(args: argparse.Namespace, *, where: str, exists: bool = False) -> None:
    """Refuse, before anything is read or computed, a ``--k`` below 1, a ``--features`` that is
    none of raw, standardized, pca or a .npy path (one that exists, with ``exists``: to compute
    from it) and a ``--pca-components`` below 1: the same errors in every command."""
    from sampletopo._validation import check_int
    from sampletopo.runs import check_features, check_k

    for k in getattr(args, "k", None) or []:
        check_k(k, where=where, kind="flag", name="--k")
    for f in getattr(args, "features", None) or []:
        check_features(f, where=where, kind="flag", name="--features", exists=exists)
    if hasattr(args, "pca_components"):
        check_int("--pca-components", args.pca_components, 1, None, where=where, kind="flag")
