"""Damaged run files: one clear error naming the file and the fix, or a re-record / recompute
with a warning that names it, never a traceback from polars, pyarrow or json.

One real run (an MLP on digits, 4 epochs, topology computed) is made per module and copied for
each damage.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tomli_w
import torch
from polars.testing import assert_frame_equal

from sampletopo import analysis
from sampletopo._errors import SampletopoError
from sampletopo._runfiles import DamagedFileError, DamagedFileWarning, parquet_problem
from sampletopo.cli import main
from sampletopo.data import Dataset, load_dataset
from sampletopo.models import create_model
from sampletopo.readers import (
    diagram_epochs,
    loss_epochs,
    read_diagram,
    read_diagrams,
    read_loss_matrix,
    read_losses,
    scan_losses,
)
from sampletopo.record import (
    LOSS_SCHEMA,
    LossRecorder,
    epoch_file,
    record_checkpoints,
)
from sampletopo.runs import Run
from sampletopo.samples import top_regions
from sampletopo.train import TrainConfig, train_experiment

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

torch.set_num_threads(1)

CFG = TrainConfig(
    model="mlp",
    model_kwargs={"hidden": [16]},
    epochs=4,
    data="digits",
    device="cpu",
    milestones=[2],
    threads=1,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """An experiment folder with one run, its losses and topology; never modified."""
    out = tmp_path_factory.mktemp("pristine") / "exp"
    [run] = train_experiment(CFG, out, progress=False)
    analysis.compute_topology(run, k=10, progress=False)
    return out


@pytest.fixture
def exp(pristine, tmp_path) -> Path:
    """A copy of the pristine experiment, to damage."""
    dst = tmp_path / "exp"
    shutil.copytree(pristine, dst)
    return dst


# ---------------------------------------------------------------------------------------------
# Ways to damage a file


def _truncate(p: Path) -> None:
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).bytes(max(p.stat().st_size, 64)))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _wrong_schema(p: Path) -> None:
    pl.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]}).write_parquet(p)


def _wrong_type(p: Path) -> None:
    df = pl.read_parquet(p)
    # The last column of the table's schema (a loss table's optional margin column is not in it).
    col = [c for c in df.columns if c != "margin"][-1]
    df.with_columns(pl.col(col).cast(pl.String)).write_parquet(p)


def _too_few_rows(p: Path) -> None:
    pl.read_parquet(p).head(10).write_parquet(p)


def _flip_page(p: Path) -> None:
    """One byte changed in the data pages, footer intact: the last byte of the largest float
    column (losses, persistences), which the footer places, is always page data and reads back
    as another number."""
    import pyarrow.parquet as pq

    group = pq.read_metadata(p).row_group(0)
    col = max(
        (group.column(c) for c in range(group.num_columns)),
        key=lambda c: (c.physical_type == "DOUBLE", c.total_compressed_size),
    )
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    raw = bytearray(p.read_bytes())
    raw[start + col.total_compressed_size - 1] ^= 0x40
    p.write_bytes(bytes(raw))


PARQUET_DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "garbage": _garbage,
    "empty": _empty,
    "wrong schema": _wrong_schema,
    "wrong type": _wrong_type,
    "data page": _flip_page,
}
LOSS_DAMAGE = {**PARQUET_DAMAGE, "too few rows": _too_few_rows}


# Forgeries: whole Parquet files without sampletopo's checksum (as polars writes them, and as
# tables of earlier versions are), of the right schema and size, whose rows say something else
# than where they lie. Findings N3 and N7 of the issue-11 check.
def _rows_of_one_tree(p: Path) -> None:
    pl.read_parquet(p).filter(pl.col("tree") == "join").write_parquet(p)


def _other_epoch(p: Path) -> None:
    pl.read_parquet(p).with_columns(pl.col("epoch") + 1).write_parquet(p)


def _other_split(p: Path) -> None:
    df = pl.read_parquet(p)
    df.with_columns(split=pl.lit("val" if df["split"][0] == "train" else "train")).write_parquet(p)


def _duplicate_samples(p: Path) -> None:
    df = pl.read_parquet(p)
    df = df.with_columns(sample=pl.when(pl.col("sample") == 1).then(0).otherwise(pl.col("sample")))
    df.write_parquet(p)


DIAGRAM_FORGERY: dict[str, Callable[[Path], None]] = {
    "one tree's rows": _rows_of_one_tree,
    "other epoch": _other_epoch,
    "other split": _other_split,
}
LOSS_FORGERY: dict[str, Callable[[Path], None]] = {
    "duplicate samples": _duplicate_samples,
    "other epoch": _other_epoch,
    "other split": _other_split,
}

JSON_DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "garbage": _garbage,
    "empty": _empty,
    "invalid": lambda p: p.write_text("{not json"),
    "a list": lambda p: p.write_text("[1, 2]"),
}
MANIFEST_DAMAGE = {
    **JSON_DAMAGE,
    "splits not objects": lambda p: p.write_text('{"mode": "eval", "splits": {"train": 5}}'),
}


def _cli_error(capsys, argv: list[str]) -> str:
    """Run the command line; it must exit 2 with exactly one line on stderr and no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sampletopo {argv[0]}: error: ")
    return lines[0]


def _commands(exp: Path, out: Path) -> dict[str, list[str]]:
    run = str(exp / "run")
    return {
        "topology": ["topology", run, "--k", "10", "--no-progress"],
        "samples": ["samples", run, "--split", "train", "--epoch", "2", "--k", "10"],
        "figures": [
            "figures",
            run,
            "--out",
            str(out / "figs"),
            "--formats",
            "png",
            "--no-progress",
        ],
        "report": ["report", str(exp), "--out", str(out / "report"), "--no-progress"],
    }


def _tables(run: Path, sub: str) -> dict[str, pl.DataFrame]:
    return {
        str(p.relative_to(run)): pl.read_parquet(p) for p in sorted((run / sub).rglob("*.parquet"))
    }


# ---------------------------------------------------------------------------------------------
# The footer check


def test_the_footer_check_tells_whole_tables_from_damaged_ones(pristine, tmp_path):
    path = epoch_file(pristine / "run", "train", 2)
    n = pl.read_parquet(path).height
    assert parquet_problem(path, LOSS_SCHEMA, rows=n) is None
    assert "rows where" in str(parquet_problem(path, LOSS_SCHEMA, rows=n + 1))
    for name, damage in LOSS_DAMAGE.items():
        p = tmp_path / f"{name}.parquet"
        shutil.copy(path, p)
        damage(p)
        assert parquet_problem(p, LOSS_SCHEMA, rows=n) is not None, name


def test_the_error_survives_a_worker_process():
    err = DamagedFileError("/x/epoch=0001.parquet", "it is empty", "Record it again.")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.path == err.path


# ---------------------------------------------------------------------------------------------
# A damaged loss table: reported where it cannot be recomputed


@pytest.mark.parametrize("damage", list(LOSS_DAMAGE))
@pytest.mark.parametrize("command", ["topology", "samples", "figures", "report"])
def test_a_damaged_loss_table_is_one_error_naming_it(exp, tmp_path, capsys, command, damage):
    path = epoch_file(exp / "run", "train", 2)
    LOSS_DAMAGE[damage](path)
    line = _cli_error(capsys, _commands(exp, tmp_path)[command])
    assert repr(str(path)) in line
    assert "Record that epoch again" in line


@pytest.mark.parametrize("forgery", list(LOSS_FORGERY))
@pytest.mark.parametrize("command", ["topology", "samples", "figures", "report"])
def test_a_forged_loss_table_is_one_error_naming_it(exp, tmp_path, capsys, command, forgery):
    # N7: duplicate sample ids or an epoch column other than the file name's were accepted by
    # figures and report (they read the tables lazily, unchecked).
    path = epoch_file(exp / "run", "train", 2)
    LOSS_FORGERY[forgery](path)
    line = _cli_error(capsys, _commands(exp, tmp_path)[command])
    assert repr(str(path)) in line
    assert "Record that epoch again" in line


@pytest.mark.parametrize("forgery", list(LOSS_FORGERY))
def test_train_resume_records_a_forged_table_again(pristine, exp, forgery):
    path = epoch_file(exp / "run", "train", 2)
    LOSS_FORGERY[forgery](path)
    with pytest.warns(DamagedFileWarning, match=r"epoch=0002\.parquet' is damaged"):
        train_experiment(CFG, exp, progress=False)
    assert_frame_equal(
        pl.read_parquet(path), pl.read_parquet(epoch_file(pristine / "run", "train", 2))
    )


@pytest.mark.parametrize("damage", ["truncated", "wrong schema", "too few rows", "data page"])
@pytest.mark.parametrize(
    "read",
    [
        lambda run: read_losses(run),
        lambda run: scan_losses(run),
        lambda run: read_loss_matrix(run, split="train"),
        lambda run: analysis.compute_topology(run, k=10, progress=False),
        lambda run: analysis.summarize(run, write=False),
        lambda run: top_regions(run, split="train", epoch=2, k=10),
    ],
    ids=[
        "read_losses",
        "scan_losses",
        "read_loss_matrix",
        "compute_topology",
        "summarize",
        "top_regions",
    ],
)
def test_the_python_api_raises_one_error_naming_the_table(exp, read, damage):
    path = epoch_file(exp / "run", "train", 2)
    LOSS_DAMAGE[damage](path)
    with pytest.raises(DamagedFileError) as info:
        read(exp / "run")
    assert info.value.path == path
    assert repr(str(path)) in str(info.value)


# ---------------------------------------------------------------------------------------------
# A damaged loss table: recorded again where it can be


@pytest.mark.parametrize("damage", ["truncated", "data page"])
def test_train_resume_records_a_damaged_table_again(pristine, exp, damage):
    run = exp / "run"
    path = epoch_file(run, "train", 2)
    LOSS_DAMAGE[damage](path)
    with pytest.warns(DamagedFileWarning, match=r"epoch=0002\.parquet' is damaged") as rec:
        train_experiment(CFG, exp, progress=False)
    assert any(repr(str(path)) in str(w.message) for w in rec)
    assert (path.parent / "epoch=0002.parquet.damaged").is_file()  # kept, not deleted
    before, after = _tables(pristine / "run", "losses"), _tables(run, "losses")
    assert list(after) == list(before)
    for name, df in before.items():
        assert_frame_equal(after[name], df)


def test_record_checkpoints_records_a_damaged_table_again(pristine, tmp_path):
    ckpts = pristine / "run" / "checkpoints"
    kw = dict(model="mlp", model_kwargs={"hidden": [16]}, data="digits", progress=False)
    ref = tmp_path / "ref"
    assert record_checkpoints(ckpts, ref, **kw) == [0, 1, 2, 3, 4]
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    _garbage(epoch_file(out, "val", 3))
    _flip_page(epoch_file(out, "train", 1))
    with pytest.warns(DamagedFileWarning) as rec:
        assert record_checkpoints(ckpts, out, **kw) == [1, 3]
    msgs = sorted(str(w.message) for w in rec)
    assert len(msgs) == 2
    assert "train/epoch=0001.parquet' is damaged: its bytes do not match the CRC-32" in msgs[0]
    assert "val/epoch=0003.parquet' is damaged" in msgs[1]
    before, after = _tables(ref, "losses"), _tables(out, "losses")
    assert list(after) == list(before)
    for name, df in before.items():
        assert_frame_equal(after[name], df)


def _toy() -> Dataset:
    rng = np.random.default_rng(3)
    return Dataset.from_arrays(
        "toy",
        train=(rng.random((40, 1, 4, 4)), rng.integers(0, 3, 40)),
        val=(rng.random((12, 1, 4, 4)), rng.integers(0, 3, 12)),
    )


def _toy_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", num_classes=3, in_channels=1, input_size=4, hidden=[8])


def test_the_recorder_sets_aside_a_damaged_table_and_records_it_again(tmp_path):
    ds, run = _toy(), tmp_path / "run"
    rec = LossRecorder(run, ds)
    for e in range(3):
        rec.on_train_epoch_end(e, _toy_model(e))
    original = pl.read_parquet(epoch_file(run, "train", 1))
    _wrong_type(epoch_file(run, "train", 1))
    with pytest.warns(DamagedFileWarning, match=r"epoch 1 of split 'train' counts as not recorded"):
        rec = LossRecorder(run, ds)
    assert rec.recorded_epochs("train") == [0, 2]
    assert rec.last_complete_epoch() == 0
    assert rec.on_train_epoch_end(1, _toy_model(1)) == {
        "train": epoch_file(run, "train", 1),
        "val": None,
    }
    assert_frame_equal(pl.read_parquet(epoch_file(run, "train", 1)), original)
    assert rec.last_complete_epoch() == 2

    # Damaged while the recorder lives: found when that epoch is asked for again.
    _truncate(epoch_file(run, "val", 2))
    with pytest.warns(DamagedFileWarning, match=r"val.epoch=0002\.parquet' is damaged"):
        written = rec.on_train_epoch_end(2, _toy_model(2))
    assert written == {"train": None, "val": epoch_file(run, "val", 2)}
    assert sorted(p.name for p in (run / "losses" / "val").iterdir()) == [
        "epoch=0000.parquet",
        "epoch=0001.parquet",
        "epoch=0002.parquet",
        "epoch=0002.parquet.damaged",
    ]


# ---------------------------------------------------------------------------------------------
# Diagram tables: derived, so topology recomputes them; readers name them


@pytest.mark.parametrize("damage", list(PARQUET_DAMAGE))
def test_topology_recomputes_a_damaged_diagram_table(pristine, exp, capsys, damage):
    path = exp / "run" / "topology" / "val" / "epoch=0003.parquet"
    PARQUET_DAMAGE[damage](path)
    with pytest.warns(DamagedFileWarning) as caught:
        assert main(_commands(exp, exp)["topology"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    [msg] = [str(w.message) for w in caught if issubclass(w.category, DamagedFileWarning)]
    assert msg.startswith(f"{str(path)!r} is damaged") and msg.endswith("it is computed again.")
    before = _tables(pristine / "run", "topology")
    after = _tables(exp / "run", "topology")
    for name in ("topology/val/epoch=0003.parquet", "topology/train/epoch=0003.parquet"):
        assert_frame_equal(after[name], before[name])


@pytest.mark.parametrize("damage", list(PARQUET_DAMAGE))
@pytest.mark.parametrize("command", ["figures", "report"])
def test_figures_and_report_name_a_damaged_diagram_table(exp, tmp_path, capsys, command, damage):
    path = exp / "run" / "topology" / "train" / "epoch=0001.parquet"
    PARQUET_DAMAGE[damage](path)
    line = _cli_error(capsys, _commands(exp, tmp_path)[command])
    assert repr(str(path)) in line
    assert "run `sampletopo topology` on this run again" in line


@pytest.mark.parametrize("forgery", list(DIAGRAM_FORGERY))
def test_topology_recomputes_a_forged_diagram_table(pristine, exp, capsys, forgery):
    # N3: a diagram table without the split tree's rows (a whole file, no checksum) gave a
    # KeyError traceback from wasserstein_to_reference.
    path = exp / "run" / "topology" / "val" / "epoch=0002.parquet"
    DIAGRAM_FORGERY[forgery](path)
    with pytest.warns(DamagedFileWarning) as caught:
        assert main(_commands(exp, exp)["topology"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    [msg] = [str(w.message) for w in caught if issubclass(w.category, DamagedFileWarning)]
    assert msg.startswith(f"{str(path)!r} is damaged") and msg.endswith("it is computed again.")
    before, after = _tables(pristine / "run", "topology"), _tables(exp / "run", "topology")
    assert_frame_equal(
        after["topology/val/epoch=0002.parquet"], before["topology/val/epoch=0002.parquet"]
    )


@pytest.mark.parametrize("forgery", list(DIAGRAM_FORGERY))
@pytest.mark.parametrize("command", ["figures", "report"])
def test_figures_and_report_name_a_forged_diagram_table(exp, tmp_path, capsys, command, forgery):
    path = exp / "run" / "topology" / "val" / "epoch=0002.parquet"
    DIAGRAM_FORGERY[forgery](path)
    line = _cli_error(capsys, _commands(exp, tmp_path)[command])
    assert repr(str(path)) in line
    assert "run `sampletopo topology` on this run again" in line


@pytest.mark.parametrize(
    "read",
    [
        lambda run: read_diagrams(run),
        lambda run: read_diagram(run, split="train", tree="join", epoch=1),
        lambda run: analysis.wasserstein_to_reference(run, write=False),
    ],
    ids=["read_diagrams", "read_diagram", "wasserstein_to_reference"],
)
def test_diagram_readers_raise_one_error_naming_the_table(exp, read):
    path = exp / "run" / "topology" / "train" / "epoch=0001.parquet"
    _truncate(path)
    with pytest.raises(DamagedFileError) as info:
        read(exp / "run")
    assert info.value.path == path


# ---------------------------------------------------------------------------------------------
# manifest.json and topology/meta.json


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
@pytest.mark.parametrize("command", ["topology", "samples", "figures", "report"])
def test_a_damaged_manifest_is_one_error_naming_it(exp, tmp_path, capsys, command, damage):
    path = exp / "run" / "losses" / "manifest.json"
    MANIFEST_DAMAGE[damage](path)
    line = _cli_error(capsys, _commands(exp, tmp_path)[command])
    assert f"{str(path)!r} is damaged" in line
    assert "delete it" in line


@pytest.mark.parametrize("damage", ["invalid", "splits not objects"])
def test_recording_into_a_run_with_a_damaged_manifest_is_refused(pristine, exp, damage):
    path = exp / "run" / "losses" / "manifest.json"
    MANIFEST_DAMAGE[damage](path)
    with pytest.raises(DamagedFileError, match="manifest.json' is damaged") as info:
        train_experiment(CFG, exp, progress=False)
    assert info.value.path == path
    # Nothing recorded is lost, nothing is moved
    assert _tables(exp / "run", "losses").keys() == _tables(pristine / "run", "losses").keys()
    with pytest.raises(DamagedFileError, match="manifest.json' is damaged"):
        LossRecorder(exp / "run", load_dataset("digits"))


@pytest.mark.parametrize("damage", list(JSON_DAMAGE))
def test_topology_recomputes_after_a_damaged_meta_json(pristine, exp, capsys, damage):
    path = exp / "run" / "topology" / "meta.json"
    JSON_DAMAGE[damage](path)
    with pytest.warns(DamagedFileWarning) as caught:
        assert main(_commands(exp, exp)["topology"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    [msg] = [str(w.message) for w in caught if issubclass(w.category, DamagedFileWarning)]
    assert msg.startswith(f"{str(path)!r} is damaged") and "are computed again" in msg
    assert json.loads(path.read_text()) == json.loads(
        (pristine / "run" / "topology" / "meta.json").read_text()
    )
    before, after = _tables(pristine / "run", "topology"), _tables(exp / "run", "topology")
    for name, df in before.items():
        if "epoch=" in name:
            assert_frame_equal(after[name], df)


def test_the_report_leaves_out_the_graph_settings_of_a_damaged_meta_json(exp, tmp_path, capsys):
    path = exp / "run" / "topology" / "meta.json"
    _garbage(path)
    with pytest.warns(UserWarning, match=r"meta\.json' is damaged .*leaves the kNN graph"):
        assert main(_commands(exp, tmp_path)["report"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert "kNN graph settings unknown" in (tmp_path / "report" / "index.html").read_text()


# ---------------------------------------------------------------------------------------------
# config.toml


def _edit_config(run: Path, edit: Callable[[dict], None]) -> Path:
    path = run / "config.toml"
    cfg = tomllib.loads(path.read_text())
    edit(cfg)
    path.write_text(tomli_w.dumps(cfg))
    return path


def _drop(key: str) -> Callable[[dict], None]:
    return lambda cfg: cfg.pop(key)


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda cfg: cfg.update({key: value})


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_drop("data"), "has no 'data' entry"),
        (_set("data_seed", "abc"), "The 'data_seed' entry of"),
        (_set("data", 3), "The 'data' entry of"),
        (_set("max_samples", -1), "The 'max_samples' entry of"),
    ],
    ids=["no data", "data_seed a string", "data a number", "max_samples negative"],
)
@pytest.mark.parametrize("command", ["topology", "samples"])
def test_a_run_config_without_data_or_with_wrong_types(
    exp, tmp_path, capsys, command, edit, needle
):
    path = _edit_config(exp / "run", edit)
    line = _cli_error(capsys, _commands(exp, tmp_path)[command])
    assert needle in line and repr(str(path)) in line


@pytest.mark.parametrize("command", ["topology", "samples"])
def test_a_minimal_run_config_takes_the_documented_defaults(exp, tmp_path, capsys, command):
    # N2: with only name, model and data, int(None) (data_seed) and a None path (data_root)
    # failed with TypeError tracebacks, though this is what the "no 'data' entry" error asks for.
    (exp / "run" / "config.toml").write_text('name = "x"\nmodel = "mlp"\ndata = "digits"\n')
    assert main(_commands(exp, tmp_path)[command]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_train_resume_names_a_wrong_typed_config_entry(exp):
    path = _edit_config(exp / "run", _set("data_seed", "abc"))
    with pytest.raises(SampletopoError, match="The 'data_seed' entry of") as info:
        train_experiment(CFG, exp, progress=False)
    assert repr(str(path)) in str(info.value)


def test_figures_warn_about_a_config_they_cannot_read_and_draw_the_rest(exp, tmp_path, capsys):
    # A run without a stored schedule (recorded before schedules were): figures read the
    # config's milestones instead.
    Run(exp / "run").schedule_file.unlink()
    _edit_config(exp / "run", _set("milestones", "two"))
    with pytest.warns(UserWarning, match="LR changes of run run are not marked: The 'milestones'"):
        assert main(_commands(exp, tmp_path)["figures"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "figs" / "total_persistence.png").is_file()


def test_the_report_shows_a_config_that_is_not_text(exp, tmp_path, capsys):
    Run(exp / "run").schedule_file.unlink()  # so the LR marks come from the config
    _garbage(exp / "run" / "config.toml")
    with pytest.warns(UserWarning, match=r"LR changes of run run are not marked: .* not a valid"):
        assert main(_commands(exp, tmp_path)["report"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert "run: resolved run config" in (tmp_path / "report" / "index.html").read_text()


# ---------------------------------------------------------------------------------------------
# Every table carries the checksum; a damaged regions table is left out of the report


def test_every_table_a_run_holds_carries_the_checksum(exp, tmp_path):
    import pyarrow.parquet as pq

    run = exp / "run"
    analysis.summarize(run)
    analysis.wasserstein_to_reference(run)
    assert main(_commands(exp, tmp_path)["samples"]) == 0
    tables = sorted(exp.rglob("*.parquet"))
    where = {
        str(p.relative_to(run).parent if p.name.startswith("epoch=") else p.relative_to(run))
        for p in tables
    }
    assert where == {
        "losses/train",
        "losses/val",
        "losses/schedule.parquet",
        "topology/train",
        "topology/val",
        "topology/summary.parquet",
        "topology/wasserstein.parquet",
        "samples/train-epoch=0002.parquet",
    }
    for p in tables:
        assert b"sampletopo.crc32" in (pq.read_metadata(p).metadata or {}), p
        assert parquet_problem(p, {}) is None, p

    # The report's regions section (the whole report is drawn in the tests above): a damaged
    # table is left out with a warning naming it, never shown with other numbers.
    from sampletopo.report import _run_samples

    assert _run_samples([run])[1] is not None
    regions = run / "samples" / "train-epoch=0002.parquet"
    _flip_page(regions)
    with pytest.warns(UserWarning, match=r"Regions table .* left out of the report: .*is damaged"):
        assert _run_samples([run])[1] is None


# ---------------------------------------------------------------------------------------------
# Tables written before checksums (polars' writer)


def test_a_run_written_before_checksums_reads_and_resumes_as_before(pristine, exp):
    run = exp / "run"
    for p in sorted(run.rglob("epoch=*.parquet")):
        pl.read_parquet(p).write_parquet(p)  # the writer used before: no checksums
    before = _tables(pristine / "run", "losses")
    assert_frame_equal(
        read_losses(run).drop("run"),
        read_losses(pristine / "run").drop("run"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedFileWarning)
        done = analysis.compute_topology(run, k=10, progress=False)
        assert set(done["status"]) == {"cached"}
        assert_frame_equal(
            read_diagrams(run).sort(["split", "tree", "epoch", "birth"]),
            read_diagrams(pristine / "run").sort(["split", "tree", "epoch", "birth"]),
        )
        train_experiment(CFG, exp, progress=False)  # nothing set aside, nothing recorded again
    after = _tables(run, "losses")
    assert list(after) == list(before)
    for name, df in before.items():
        assert_frame_equal(after[name], df)


# ---------------------------------------------------------------------------------------------
# A missing middle epoch


def test_topology_names_a_missing_middle_epoch(exp, capsys):
    run = exp / "run"
    epoch_file(run, "train", 2).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", analysis.TopologyWarning)
        with pytest.raises(
            analysis.TopologyWarning,
            match=r"train losses are recorded for epochs 0-1, 3-4; epoch\(s\) 2 are missing",
        ):
            analysis.compute_topology(run, k=10, progress=False)
    shutil.rmtree(run / "topology")
    with pytest.warns(analysis.TopologyWarning) as caught:
        assert main(_commands(exp, exp)["topology"]) == 0
    [msg] = [str(w.message) for w in caught if "recorded for epochs" in str(w.message)]
    assert "train losses are recorded for epochs 0-1, 3-4; epoch(s) 2 are missing" in msg
    assert diagram_epochs(run, split="train") == [0, 1, 3, 4]
    assert loss_epochs(run, split="val") == [0, 1, 2, 3, 4]


def test_topology_recomputes_diagrams_whose_meta_json_was_deleted(pristine, exp):
    (exp / "run" / "topology" / "meta.json").unlink()
    with pytest.warns(DamagedFileWarning, match=r"meta\.json' is missing or has no entry for"):
        done = analysis.compute_topology(exp / "run", k=10, progress=False)
    assert set(done["status"]) == {"computed"}
    before, after = _tables(pristine / "run", "topology"), _tables(exp / "run", "topology")
    for name, df in before.items():
        if "epoch=" in name:
            assert_frame_equal(after[name], df)
