"""The command line as a new user meets it: one-line errors for bad input, and --help that
documents every option without markup, duplicate or empty defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from sampletopo.cli import build_parser, main
from sampletopo.data import list_datasets
from sampletopo.models import list_models
from sampletopo.record import read_run_config
from sampletopo.train import TrainConfig, train_run

torch.set_num_threads(1)

TINY = dict(
    data="synthetic", model="cnn", model_kwargs={"width": 4}, lr=0.05, batch_size=64, epochs=2
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """A two-epoch run whose topology was computed: ``<exp>/run``."""
    exp = tmp_path_factory.mktemp("cli") / "exp"
    train_run(TrainConfig(**TINY), exp / "run", progress=False)
    assert main(["topology", str(exp)]) == 0
    return exp


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


def error_line(capsys, command: str) -> str:
    """The one error line a failed command printed; no traceback, no Python reprs."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and "PosixPath" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"sampletopo {command}: error: "), err
    return line


# --- one-line errors ------------------------------------------------------------------------


def test_topology_reference_takes_final_last_first_or_an_epoch(experiment, capsys):
    wdist = experiment / "run" / "topology" / "wasserstein.parquet"
    for word, epoch in [("last", 2), ("first", 0), ("1", 1), ("final", 2)]:
        assert main(["topology", str(experiment), "--reference", word]) == 0, word
        assert pl.read_parquet(wdist)["reference_epoch"].unique().to_list() == [epoch], word
    capsys.readouterr()
    for bad in ("latest", "-1", "1.5"):
        assert main(["topology", str(experiment), "--reference", bad]) == 2
        line = error_line(capsys, "topology")
        assert f"Got {bad!r}" in line and "'final' (or 'last'), 'first'" in line


def test_bad_reference_is_refused_before_any_work(tmp_path, capsys):
    run = train_run(TrainConfig(**TINY), tmp_path / "exp" / "run", progress=False)
    assert main(["topology", str(run), "--reference", "latest"]) == 2
    assert "'latest'" in error_line(capsys, "topology")
    assert not (run / "topology").exists()


def test_figures_formats_are_checked_against_matplotlib(experiment, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", str(experiment), "--out", str(out), "--formats", "png", "jpgg"]) == 2
    line = error_line(capsys, "figures")
    assert "Got 'jpgg' instead" in line and "png" in line and "svg" in line
    assert not out.exists()
    assert main(["figures", str(experiment), "--out", str(out), "--formats", "SVG"]) == 0
    assert list(out.glob("*.svg"))


def test_figures_scale_bins_range_and_columns_reach_the_drawn_figures(experiment, tmp_path, capsys):
    from sampletopo.plotting._topology import read_caption

    out = tmp_path / "look"
    args = ["figures", str(experiment), "--out", str(out), "--formats", "png", "--no-progress"]
    look = ["--scale", "linear", "--bins", "7", "--range", "0", "7", "--columns", "1"]
    assert main(args + look) == 0
    heat = pl.read_parquet(out / "heatmap-val-split.parquet")
    # 7 bins of width 1 from 0 to 7 on linear axes; every pair of this run lies inside.
    assert heat.height and not heat["overflow"].any()
    assert heat["birth_lo"].min() >= 0.0 and heat["birth_hi"].max() <= 7 + 1e-12
    for col in ("birth", "persistence"):
        edges = np.concatenate([heat[f"{col}_lo"], heat[f"{col}_hi"]])
        assert np.allclose(edges, np.round(edges))  # on the 0, 1, ..., 7 grid
    caption = read_caption(out / "heatmap-val-split.png")
    assert "birth axis linear, persistence axis linear" in caption
    with pytest.raises(SystemExit):  # argparse refuses a scale it does not list
        main(args + ["--scale", "loglog"])
    assert "invalid choice: 'loglog'" in capsys.readouterr().err
    assert main(args + ["--bins", "1"]) == 2
    assert "'bins' parameter of write_figure_set must be an int" in capsys.readouterr().err


def test_figures_and_report_without_diagrams_say_so_with_plain_paths(tmp_path, capsys):
    exp = tmp_path / "exp"
    train_run(TrainConfig(**TINY), exp / "run", progress=False)
    for cmd in ("figures", "report"):
        assert main([cmd, str(exp)]) == 2
        line = error_line(capsys, cmd)
        assert f"No stored diagrams under {str(exp)!r}" in line
        assert f"sampletopo topology {exp}" in line
    assert [p.name for p in exp.iterdir()] == ["run"]  # no figures/ or report/ made


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["report", "{exp}", "--out", "{file}"], "'--out' folder '{file}' is an existing file"),
        (["figures", "{exp}", "--out", "{file}"], "'--out' folder '{file}' is an existing file"),
        (
            ["samples", "{exp}/run", "--epoch", "2", "--out", "{file}/x.parquet"],
            "'{file}' is a file, not a folder",
        ),
        (
            ["samples", "{exp}/run", "--epoch", "2", "--out", "{exp}"],
            "'--out' file '{exp}' is an existing folder",
        ),
        (
            ["samples", "{exp}/run", "--epoch", "2", "--figures", "{file}"],
            "'--figures' folder '{file}' is an existing file",
        ),
        (
            ["landscape", "{exp}/run", "--epoch", "2", "--out", "{file}/x.npz"],
            "'{file}' is a file, not a folder",
        ),
        (
            ["train", "--data", "synthetic", "--out", "{file}/exp"],
            "'{file}' is a file, not a folder",
        ),
        (
            ["record", "--checkpoints", "{exp}/run/checkpoints", "--model", "cnn", "--data",
             "synthetic", "--out", "{file}"],
            "'--out' folder '{file}' is an existing file",
        ),
    ],
    ids=["report", "figures", "samples-parent", "samples-folder", "samples-figures", "landscape",
         "train", "record"],
)  # fmt: skip
def test_out_where_a_file_or_folder_is_in_the_way(experiment, a_file, capsys, argv, needle):
    def fill(s: str) -> str:
        return s.format(exp=experiment, file=a_file)

    assert main([fill(a) for a in argv]) == 2
    assert fill(needle) in error_line(capsys, argv[0])
    assert a_file.read_text() == "not a folder"


def test_train_config_that_is_not_toml(tmp_path, capsys):
    ckpt = tmp_path / "some.pt"
    torch.save({"w": torch.zeros(3)}, ckpt)
    assert main(["train", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    line = error_line(capsys, "train")
    assert f"Training config {str(ckpt)!r} is not a TOML file" in line
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "is a folder" in error_line(capsys, "train")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "unknownname"],
        ["--model", "unknownname", "--lr", "0.1", "0.01"],  # variants
        ["--data", "imagenet"],
        ["--model", "cnn", "--model-kw", "widen=2"],  # an option the model does not have
    ],
)
def test_bad_train_settings_leave_no_folder(tmp_path, capsys, argv):
    out = tmp_path / "runs" / "um"
    assert main(["train", *argv, "--out", str(out), "--no-progress"]) == 2
    error_line(capsys, "train")
    assert not (tmp_path / "runs").exists()


def test_path_errors_are_one_line_other_errors_keep_their_traceback(monkeypatch, capsys):
    from sampletopo.commands import report

    def raising(exc: BaseException):
        def run(args: argparse.Namespace) -> int:
            raise exc

        return run

    for exc, needle in [
        (NotADirectoryError(20, "Not a directory", "a/b/c"), "Not a directory: 'a/b/c'"),
        (FileExistsError(17, "File exists", "out"), "File exists: 'out'"),
        (IsADirectoryError(21, "Is a directory", "x.parquet"), "Is a directory: 'x.parquet'"),
        (PermissionError(13, "Permission denied", "/root"), "Permission denied: '/root'"),
        # writes the system refuses: one line naming the path and the fix
        (OSError(28, "No space left on device", "r/x.pt"), "device: 'r/x.pt'. Fix: the disk is"),
        (
            OSError(122, "Disk quota exceeded", "q"),
            "Disk quota exceeded: 'q'. Fix: your disk quota",
        ),
        (OSError(27, "File too large", "big"), "File too large: 'big'. Fix: a file would exceed"),
        (OSError(30, "Read-only file system", "ro"), "Read-only file system: 'ro'. Fix: that file"),
        (OSError(28, "No space left on device"), "device: (the system named no file). Fix:"),
    ]:
        monkeypatch.setattr(report, "_run", raising(exc))
        assert main(["report", "exp"]) == 2
        assert needle in error_line(capsys, "report")
    for exc in (KeyError("bug"), OSError(5, "Input/output error")):
        monkeypatch.setattr(report, "_run", raising(exc))
        with pytest.raises(type(exc)):
            main(["report", "exp"])


# --- --help ---------------------------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


def test_every_option_of_every_command_has_help():
    commands = _subparsers()
    assert {"train", "record", "topology", "figures", "report", "samples", "landscape"} <= set(
        commands
    )
    for name, parser in commands.items():
        for action in parser._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings}"


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_help_shows_each_default_once_and_no_markup(capsys, command):
    text = _help(capsys, command)
    assert "(default: None)" not in text
    for markup in ("``", ":func:", ":class:", ":mod:", ":meth:"):
        assert markup not in text
    parser = _subparsers()[command]
    for option in parser._actions:
        shown = parser._get_formatter()._expand_help(option)  # as --help prints it
        # at most once: a default the help describes gets no "(default: ...)" from argparse
        assert shown.lower().count("default") <= 1, shown
        if option.required:  # a required flag has no default to show
            assert "default" not in shown, shown


def test_help_lists_models_datasets_and_the_milestone_schedule(capsys):
    models, datasets = ", ".join(list_models()), ", ".join(list_datasets())
    for command in ("train", "record"):
        text = _help(capsys, command)
        assert models in text and datasets in text, command
        assert "sampletopo record --help" not in text
    text = _help(capsys, "train")
    assert "60 125 150 of 200 epochs" in text and "drop after nearly every epoch" in text
    assert "(default: resnet20)" in text and "(default: 30)" in text  # TrainConfig's
    text = _help(capsys, "figures")
    assert "(default: png pdf)" in text
    text = _help(capsys, "samples")
    assert "sampletopo.samples.top_regions" in text and "(default: val)" in text


# The command line's own defaults: the demo's output folder (run_demo takes it as an argument).
_CLI_ONLY_DEFAULTS = {("demo", "out")}
# The positional arguments and required flags of each command, nothing else.
_MINIMAL_ARGV = {
    "compare": ["EXP"],
    "demo": [],
    "export": ["EXP", "--what", "summaries", "--out", "x.csv"],
    "figures": ["RUN"],
    "landscape": ["RUN", "--epoch", "1"],
    "record": ["--checkpoints", "C", "--model", "mlp", "--data", "digits", "--out", "O"],
    "audit": ["RUN"],
    "report": ["EXP"],
    "samples": ["RUN", "--epoch", "1"],
    "topology": ["RUN"],
    "train": ["--out", "O"],
}


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_flag_leaves_its_default_to_the_library(command):
    # Issue 12: every command repeated the library's defaults, and they drifted (top was 10 in
    # top_regions, 5 in sample_figures). A flag not given is now not in the namespace at all
    # (or None, for train's settings, filtered before TrainConfig), so the library's applies.
    parser = _subparsers()[command]
    for action in parser._actions:
        if not action.option_strings or action.required or action.dest == "help":
            continue
        if (command, action.dest) in _CLI_ONLY_DEFAULTS:
            continue
        assert action.default in (argparse.SUPPRESS, None), (command, action.option_strings)
    args = parser.parse_args(_MINIMAL_ARGV[command])
    shown = {k for k, v in vars(args).items() if v is not None and k != "func"}
    assert shown <= {"run", "runs", "experiments", "epoch", "out", "checkpoints", "model", "data",
                     "config", "what"}, shown  # fmt: skip


@pytest.mark.parametrize(
    ("command", "flag", "function", "param"),
    [
        ("samples", "--top", "sampletopo.samples:top_regions", "top"),
        ("audit", "--top", "sampletopo.audit:audit_run", "top"),
        ("audit", "--figures", "sampletopo.audit:write_audit", "figures"),
        ("samples", "--split", "sampletopo.samples:top_regions", "split"),
        ("samples", "--k", "sampletopo.samples:top_regions", "k"),
        ("topology", "--k", "sampletopo.analysis:compute_topology", "k"),
        ("topology", "--jobs", "sampletopo.analysis:compute_topology", "jobs"),
        ("topology", "--pca-components", "sampletopo.analysis:compute_topology", "pca_components"),
        ("compare", "--metric", "sampletopo.replicates:compare", "metric"),
        ("compare", "--n-boot", "sampletopo.replicates:compare", "n_boot"),
        ("topology", "--reference", "sampletopo.analysis:wasserstein_to_reference", "reference"),
        ("topology", "--orders", "sampletopo.analysis:wasserstein_to_reference", "orders"),
        ("topology", "--w-solver", "sampletopo.analysis:wasserstein_to_reference", "backend"),
        ("topology", "--delta", "sampletopo.analysis:wasserstein_to_reference", "delta"),
        (
            "topology",
            "--min-persistence",
            "sampletopo.analysis:wasserstein_to_reference",
            "min_persistence",
        ),
        ("figures", "--formats", "sampletopo.figures:write_figure_set", "formats"),
        ("figures", "--scale", "sampletopo.figures:write_figure_set", "scale"),
        ("figures", "--bins", "sampletopo.figures:write_figure_set", "bins"),
        ("figures", "--columns", "sampletopo.figures:write_figure_set", "columns"),
        ("report", "--title", "sampletopo.report:write_report", "title"),
        ("landscape", "--steps", "sampletopo.landscape:landscape_for_run", "steps"),
        ("landscape", "--connectivity", "sampletopo.landscape:landscape_for_run", "connectivity"),
        ("landscape", "--trace-rtol", "sampletopo.landscape:landscape_for_run", "trace_rtol"),
        ("record", "--batch-size", "sampletopo.from_checkpoints:record_checkpoints", "batch_size"),
        ("record", "--data-root", "sampletopo.from_checkpoints:record_checkpoints", "data_root"),
        ("record", "--shard", "sampletopo.from_checkpoints:record_checkpoints", "shard"),
    ],
)
def test_help_shows_the_default_of_the_library_function(command, flag, function, param):
    import importlib
    import inspect

    module, name = function.split(":")
    default = (
        inspect.signature(getattr(importlib.import_module(module), name)).parameters[param].default
    )
    parser = _subparsers()[command]
    [action] = [a for a in parser._actions if flag in a.option_strings]
    shown = " ".join(parser._get_formatter()._expand_help(action).split())
    text = " ".join(str(v) for v in default) if isinstance(default, tuple) else str(default)
    assert shown.endswith(f"(default: {text})"), shown


def test_region_options_have_one_default_for_table_tracks_and_figures():
    import inspect

    from sampletopo.plotting._samples import sample_figures
    from sampletopo.samples import top_regions, track_members

    assert inspect.signature(top_regions).parameters["top"].default == 10
    # track_members and sample_figures pass the options on: no default of their own.
    for fn in (track_members, sample_figures):
        assert "top" not in inspect.signature(fn).parameters
        assert inspect.signature(fn).parameters["options"].kind is inspect.Parameter.VAR_KEYWORD


def test_milestones_without_a_value_keep_the_lr_constant(tmp_path):
    out = tmp_path / "flat"
    argv = ["train", "--data", "synthetic", "--model", "cnn", "--width", "4", "--epochs", "3"]
    assert main([*argv, "--milestones", "--out", str(out), "--no-progress"]) == 0
    assert read_run_config(out / "run")["milestones"] == []


# --- landscape --no-hessian (last: the library option is new) --------------------------------


def test_landscape_no_hessian(experiment, tmp_path, capsys):
    from sampletopo.landscape import read_landscape

    out = tmp_path / "quick.npz"
    args = ["landscape", str(experiment / "run"), "--epoch", "2", "--steps", "5"]
    args += ["--n-samples", "64", "--no-progress", "--out", str(out)]
    assert main([*args, "--no-hessian"]) == 0
    printed = capsys.readouterr().out
    assert "Hessian: skipped" in printed and "loss range" in printed
    land, extra = read_landscape(out)
    assert land.loss.shape == (5, 5) and np.isfinite(land.loss).all()
    assert "hessian_eigenvalues" not in extra and "density_nodes" not in extra
    assert main([*args, "--no-hessian", "--dirs", "hessian"]) == 2
    line = error_line(capsys, "landscape")
    assert "--no-hessian" in line and "--dirs random" in line


def test_topology_of_two_experiments_whose_runs_share_a_name(tmp_path, capsys):
    """`train` without variants names its run "run": two such experiments in one call work."""
    for exp in ("f", "b"):
        args = ["train", "--data", "synthetic", "--model", "mlp", "--epochs", "1"]
        assert main([*args, "--out", str(tmp_path / exp), "--no-progress"]) == 0
    capsys.readouterr()
    assert (
        main(["topology", str(tmp_path / "f"), str(tmp_path / "b"), "--k", "5", "--no-progress"])
        == 0
    )
    out = capsys.readouterr().out
    assert "f/run" in out and "b/run" in out
    for exp in ("f", "b"):
        assert (tmp_path / exp / "run" / "topology" / "wasserstein.parquet").is_file()
    from sampletopo import analysis
    from sampletopo._errors import SampletopoError

    with pytest.raises(SampletopoError, match=r"share the folder name.*separate calls"):
        analysis.summarize([tmp_path / "f", tmp_path / "b"])


def test_out_files_must_carry_the_suffix_of_their_format(tmp_path, capsys):
    rc = main(["landscape", str(tmp_path), "--epoch", "1", "--out", str(tmp_path / "afile")])
    assert rc == 2 and "must end in .npz" in error_line(capsys, "landscape")
    rc = main(["samples", str(tmp_path), "--epoch", "1", "--out", str(tmp_path / "t.csv")])
    assert rc == 2 and "'--out' file" in error_line(capsys, "samples")
