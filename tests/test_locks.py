"""One writer per folder, names and paths that stay inside their folder, and writes the system
refuses (full disk, read-only file system, no permission): real processes, real files."""

from __future__ import annotations

import errno
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampletopo._errors import SampletopoError
from sampletopo._folders import (
    LOCK_NAME,
    FolderLockedError,
    StaleLockWarning,
    check_inside,
    check_name,
    lock_folder,
    lock_output,
)
from sampletopo._io import write_atomic
from sampletopo.analysis import compute_topology
from sampletopo.cli import main
from sampletopo.data import Dataset
from sampletopo.readers import loss_epochs, read_loss_matrix
from sampletopo.record import (
    LossRecorder,
    read_run_config,
    record_checkpoints,
)
from sampletopo.train import TrainConfig, resolve_variants, train_experiment, train_run

torch.set_num_threads(1)

# A tiny digits run; --threads 1 everywhere so that runs in other processes are bit-identical.
TRAIN = ["train", "--data", "digits", "--model", "mlp", "--model-kw", "hidden=[16]",
         "--max-samples", "100", "--threads", "1", "--no-progress"]  # fmt: skip
TINY = dict(data="synthetic", model="mlp", model_kwargs={"hidden": [8]}, epochs=1, threads=1)


def _toy() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 2, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    return Dataset.from_arrays("toy", train=(x[:30], y[:30]), val=(x[30:], y[30:]))


def _forked(conn, fn, args) -> None:  # noqa: ANN001
    try:
        conn.send(fn(*args))
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent
        conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def _in_other_process(fn, *args) -> str:  # noqa: ANN001, ANN002
    """``fn(*args)`` in a forked process (no re-import: it takes a moment): its return value, or
    its error as ``"ErrorType: message"``."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_forked, args=(child, fn, args))
    proc.start()
    child.close()
    try:
        if not parent.poll(120):
            raise AssertionError("the other process did not answer in 120 s")
        return parent.recv()
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _take(folder: Path) -> str:
    with lock_folder(folder, what="probing"):
        return "free"


def _take_output(path: Path) -> str:
    with lock_output(path, what="probing"):
        return "free"


def _probe(folder: Path) -> str:
    """Whether another process can take the lock of ``folder`` now: "free", or its error."""
    return _in_other_process(_take, folder).replace("FolderLockedError: ", "locked: ")


def _python(script: str, *args: str, **kw) -> subprocess.Popen:  # noqa: ANN003
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _one_error_line(stderr: str, command: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"sampletopo {command}: error: "), stderr
    return lines[0]


# -- the lock itself -------------------------------------------------------------------------------

HOLDER = """
    import sys, time
    from sampletopo._folders import lock_folder
    lock = lock_folder(sys.argv[1], what="recording losses", role="run folder")
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_process_is_refused_by_name_and_a_killed_holders_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = _python(HOLDER, str(run), "--marker")
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(FolderLockedError) as info:
            lock_folder(run, what="training", role="run folder")
        msg = str(info.value)
        assert "\n" not in msg
        assert msg.startswith(f"Run folder {str(run)!r} is in use by another sampletopo process")
        assert f"pid {holder.pid} on host" in msg and "recording losses since" in msg
        assert "--marker" in msg and "Wait until it ends" in msg
        assert info.value.holder["pid"] == holder.pid
        assert _probe(run).startswith("locked: ")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert (run / LOCK_NAME).is_file()  # kill -9: no clean-up ran, the kernel dropped the flock
    with pytest.warns(StaleLockWarning) as caught:
        lock = lock_folder(run, what="training", role="run folder")
    (w,) = caught
    assert f"pid {holder.pid} on host" in str(w.message) and "recording losses" in str(w.message)
    assert "ended without releasing it" in str(w.message)
    assert _probe(run).startswith(f"locked: Folder {str(run)!r} is in use")
    assert f"pid {os.getpid()} on host" in _probe(run)
    lock.release()
    assert not (run / LOCK_NAME).exists() and _probe(run) == "free"


def test_a_holder_that_ends_normally_leaves_no_lock_and_no_warning(tmp_path):
    run = tmp_path / "run"
    script = HOLDER.replace("time.sleep(120)", "raise SystemExit(0)")
    holder = _python(script, str(run))
    holder.communicate(timeout=60)
    assert holder.returncode == 0
    assert not (run / LOCK_NAME).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no StaleLockWarning
        lock_folder(run, what="training").release()


def test_one_process_shares_its_lock_and_releases_it_with_the_last_holder(tmp_path):
    outer = lock_folder(tmp_path / "exp", what="training", role="experiment folder")
    inner = lock_folder(tmp_path / "exp", what="recording losses")
    assert outer.held and inner.held
    outer.release()
    outer.release()  # a second release of one handle does nothing
    assert "training" in _probe(tmp_path / "exp")  # the first holder's description stays
    inner.release()
    assert _probe(tmp_path / "exp") == "free"
    assert not (tmp_path / "exp" / LOCK_NAME).exists()


def test_a_failed_start_leaves_no_folder_behind(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with lock_folder(tmp_path / "a" / "b" / "c", what="training"):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # every folder that locking made is gone again
    with lock_folder(tmp_path / "a" / "b", what="training"):
        (tmp_path / "a" / "b" / "kept.txt").write_text("x")
    assert (tmp_path / "a" / "b" / "kept.txt").is_file()
    assert not (tmp_path / "a" / "b" / LOCK_NAME).exists()


def test_output_file_locks_guard_one_file_not_the_folder(tmp_path):
    target = tmp_path / "landscapes" / "run-epoch=0002.npz"
    with lock_output(target, what="computing the landscape of epoch 2"):
        assert (tmp_path / "landscapes" / ".run-epoch=0002.npz.lock").is_file()
        with lock_output(tmp_path / "landscapes" / "run-epoch=0003.npz", what="x"):
            pass  # another file of the same folder: free
        answer = _in_other_process(_take_output, target)
        assert answer.startswith(f"FolderLockedError: Output file {str(target)!r} is written by")
        assert "computing the landscape of epoch 2" in answer


# -- who takes the lock ------------------------------------------------------------------------


def test_a_recorder_holds_its_run_folder_until_closed(tmp_path):
    ds, run = _toy(), tmp_path / "run"
    rec = LossRecorder(run, ds)
    assert "recording losses" in _probe(run)
    rec.close()
    assert _probe(run) == "free"
    with pytest.raises(SampletopoError, match="is closed .* Make a new LossRecorder"):
        rec.on_train_epoch_end(0, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)))
    with LossRecorder(run, ds) as rec:
        assert "recording losses" in _probe(run)
    assert _probe(run) == "free"
    rec = LossRecorder(run, ds)
    rec.on_train_end()
    assert _probe(run) == "free"
    rec = LossRecorder(run, ds)
    del rec  # garbage-collected: released
    assert _probe(run) == "free"


def _second_recorder(run: Path) -> str:
    LossRecorder(run, _toy())
    return "made"


def test_a_second_writer_neither_records_nor_deletes_the_first_ones_temporary_files(tmp_path):
    ds, run = _toy(), tmp_path / "run"
    first = LossRecorder(run, ds)
    half = run / "losses" / "val" / ".epoch=0001.parquet.abc.tmp"  # the first one's write
    half.parent.mkdir(parents=True)
    half.write_bytes(b"PAR1 half")
    answer = _in_other_process(_second_recorder, run)
    assert answer.startswith(f"FolderLockedError: Run folder {str(run)!r} is in use")
    assert "recording losses" in answer
    assert half.read_bytes() == b"PAR1 half"
    first.close()
    # the folder free again, a new writer starts and clears what an earlier writer left
    LossRecorder(run, ds).close()
    assert not half.exists()


def _train(exp: Path) -> str:
    train_experiment(TrainConfig(**TINY), exp, progress=False)
    return "trained"


def _record(run: Path) -> str:
    record_checkpoints(
        run / "checkpoints", run, model="mlp", data="synthetic", model_kwargs={"hidden": [8]},
        progress=False,
    )  # fmt: skip
    return "recorded"


def test_training_and_recording_lock_their_folders(tmp_path):
    exp = tmp_path / "exp"
    with lock_folder(exp / "run", what="recording losses", role="run folder"):
        answer = _in_other_process(_train, exp)
    assert answer.startswith(f"FolderLockedError: Run folder {str(exp / 'run')!r} is in use")
    assert not (exp / "run" / "losses").exists()
    (run,) = train_experiment(TrainConfig(**TINY), exp, progress=False)
    assert not list(tmp_path.rglob(".*.lock"))  # every lock released and its file removed
    with lock_folder(run, what="training", role="run folder"):
        answer = _in_other_process(_record, run)
    assert answer.startswith(f"FolderLockedError: Run folder {str(run)!r} is in use")
    assert "training since" in answer


ANALYST = """
    import sys
    from pathlib import Path
    from sampletopo._folders import FolderLockedError
    from sampletopo.analysis import compute_topology, summarize
    from sampletopo.figures import write_figure_set
    from sampletopo.landscape import landscape_for_run
    from sampletopo.report import write_report

    run = Path(sys.argv[1])
    writers = {
        "topology": lambda: compute_topology(run, k=5, overwrite=True, progress=False),
        "summarize": lambda: summarize(run),
        "landscape": lambda: landscape_for_run(
            run, 1, steps=3, n_samples=16, hessian=False, progress=False
        ),
        "figures": lambda: write_figure_set(run, run.parent / "figures", progress=False),
        "report": lambda: write_report(run.parent, run.parent / "report", progress=False),
        "samples": lambda: samples_command(run),
    }

    def samples_command(run):
        import contextlib, io
        from sampletopo.cli import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            if main(["samples", str(run), "--epoch", "1", "--k", "5"]) == 2:
                raise FolderLockedError(err.getvalue().strip(), holder={})
    for names in (["topology"], list(writers)):
        input()  # the test process has taken the locks of this round
        for name in names:
            try:
                writers[name]()
                print(name, "done", flush=True)
            except FolderLockedError as exc:
                print(name, "refused", exc, flush=True)
"""


def test_analysis_goes_on_while_a_run_records_but_two_analyses_are_refused(tmp_path):
    run = tmp_path / "exp" / "run"
    train_run(TrainConfig(**TINY), run, progress=False)
    compute_topology(run, k=5, progress=False)
    analyst = _python(ANALYST, str(run), stdin=subprocess.PIPE)
    assert analyst.stdin is not None and analyst.stdout is not None
    with lock_folder(run, what="recording losses", role="run folder"):  # what a recorder holds
        analyst.stdin.write("go\n")
        analyst.stdin.flush()
        assert analyst.stdout.readline() == "topology done\n"
    held = {
        "topology": lock_folder(run / "topology", what="computing topology"),
        "landscape": lock_output(run.parent / "landscapes" / "run-epoch=0001.npz", what="lands"),
        "figures": lock_folder(run.parent / "figures", what="drawing figures"),
        "report": lock_folder(run.parent / "report", what="writing a report"),
        "samples": lock_output(run / "samples" / "val-epoch=0001.parquet", what="regions"),
    }
    analyst.stdin.write("go\n")
    analyst.stdin.flush()
    lines = [analyst.stdout.readline() for _ in range(6)]
    for lock in held.values():
        lock.release()
    analyst.communicate(timeout=60)
    whose = {"topology": "computing topology", "summarize": "computing topology",
             "landscape": "lands", "figures": "drawing figures", "report": "writing a report",
             "samples": "regions"}  # fmt: skip
    assert [ln.split()[0] for ln in lines] == list(whose), lines
    for line, what in zip(lines, whose.values(), strict=True):
        assert line.split()[1] == "refused", line
        assert f"pid {os.getpid()} on host" in line and f", {what} since" in line, line
    assert not list(tmp_path.rglob(".*.lock"))


# -- two `sampletopo train` on one --out -----------------------------------------------------------

SLOW_TRAIN = """
    import os, sys, time
    import sampletopo._writer as W
    from sampletopo.cli import main

    started, go = sys.argv[1], sys.argv[2]
    original = W._write_table

    def held_write(df, path):
        # The first table: leave a temporary file as a half-written table would, and wait.
        if not os.path.exists(started):
            tmp = path.parent / f".{path.name}.mine.tmp"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(b"PAR1 half")
            open(started, "w").close()
            deadline = time.time() + 120
            while not os.path.exists(go) and time.time() < deadline:
                time.sleep(0.02)
            tmp.unlink()
        original(df, path)

    W._write_table = held_write
    sys.exit(main(sys.argv[3:]))
"""


def test_two_train_commands_on_one_out_the_second_fails_naming_the_first(tmp_path):
    out, started, go = tmp_path / "exp", tmp_path / "started", tmp_path / "go"
    first = _python(SLOW_TRAIN, str(started), str(go), *TRAIN, "--epochs", "2", "--lr", "0.05",
                    "--out", str(out))  # fmt: skip
    try:
        deadline = time.time() + 120
        while not started.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert started.exists(), first.communicate()
        half = out / "run" / "losses" / "train" / ".epoch=0000.parquet.mine.tmp"
        assert half.is_file()
        second = subprocess.run(
            [sys.executable, "-m", "sampletopo", *TRAIN, "--epochs", "2", "--lr", "0.2", "--out",
             str(out)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        line = _one_error_line(second.stderr, "train")
        assert f"Experiment folder {str(out)!r} is in use by another sampletopo process" in line
        assert f"pid {first.pid} on host" in line and "training since" in line
        assert "--lr 0.05" in line and "Wait until it ends" in line
        assert half.read_bytes() == b"PAR1 half"  # the second one's start-up left it alone
    finally:
        go.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    # One run's data only: the first's, equal to the same training done alone.
    assert read_run_config(out / "run")["lr"] == 0.05
    assert "lr = 0.05" in (out / "config.toml").read_text()
    alone = tmp_path / "alone"
    assert main([*TRAIN, "--epochs", "2", "--lr", "0.05", "--out", str(alone)]) == 0
    for split in ("train", "val"):
        assert loss_epochs(out / "run", split=split) == [0, 1, 2]
        np.testing.assert_array_equal(
            read_loss_matrix(out / "run", split=split)[1],
            read_loss_matrix(alone / "run", split=split)[1],
        )
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.lock"))


# -- a folder path that is a file ----------------------------------------------------------------


def test_a_run_folder_that_is_a_file_is_one_clear_error(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    ds = _toy()
    for path in (afile, afile / "run"):
        with pytest.raises(SampletopoError, match=r"(is an existing file|is a file), not a folder"):
            LossRecorder(path, ds)
        with pytest.raises(SampletopoError, match=r"The run folder .*(existing file|is a file)"):
            train_run(TrainConfig(**TINY), path, progress=False)
        with pytest.raises(
            SampletopoError, match=r"The experiment folder .*(existing file|a file)"
        ):
            train_experiment(TrainConfig(**TINY), path, progress=False)
        with pytest.raises(SampletopoError, match=r"The run folder .*(existing file|is a file)"):
            record_checkpoints(tmp_path, path, model="mlp", data=ds, progress=False)
    assert afile.read_text() == "not a folder"


# -- names and paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["lr=0.1", "lr=0.1,skip=false", "run", "hidden=32-16", "lr=1e-05", "wide-slow", "ünï"]
)
def test_automatic_and_ordinary_names_are_valid(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "it is empty"),
        (".", "starts with a dot"),
        ("..", "starts with a dot"),
        (".hidden", "starts with a dot"),
        ("a/b", "holds '/'"),
        ("..\\x", "holds '\\\\'"),
        ("a b", "holds ' '"),
        ("x\x00", "holds '\\x00'"),
        ("Graphs", "uses that name itself"),
        ("config.toml", "uses that name itself"),
        ("x" * 129, "longer than 128 bytes"),
    ],
)
def test_names_that_cannot_be_folder_names_are_refused(name, why):
    with pytest.raises(SampletopoError, match="cannot be a folder name") as info:
        check_name(name)
    assert why in str(info.value) and "Try '" in str(info.value)
    suggestion = str(info.value).rsplit("Try ", 1)[1].rstrip(".").strip("'")
    assert check_name(suggestion) == suggestion  # the suggested fix is itself valid


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab.=/\\ -_,+é\x00")), max_size=8))
def test_a_valid_name_is_one_folder_directly_inside(name):
    root = Path("/exp/data")
    try:
        check_name(name)
    except SampletopoError:
        return
    joined = os.path.normpath(os.path.join(root, name))
    assert Path(joined).parent == root and Path(joined).name == name
    assert check_inside(root / name, root) == root / name


def test_check_inside_refuses_parents_and_the_folder_itself_but_follows_no_links(tmp_path):
    exp = tmp_path / "exp"
    for bad in (exp / "..", exp / ".", exp / "a" / ".." / ".." / "x", tmp_path / "other"):
        with pytest.raises(SampletopoError, match="would be written outside"):
            check_inside(bad, exp)
    assert check_inside(exp / "a" / "b", exp) == exp / "a" / "b"
    exp.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (exp / "linked").symlink_to(tmp_path / "elsewhere")  # a run kept on another disk
    assert check_inside(exp / "linked" / "f", exp) == exp / "linked" / "f"


def test_variant_names_are_checked_and_compared_without_case():
    names = [n for n, _, _ in resolve_variants(TrainConfig(), {"lr": [0.1, 0.01], "skip": [True]})]
    assert names == ["lr=0.1,skip=true", "lr=0.01,skip=true"]
    names = [n for n, _, _ in resolve_variants(TrainConfig(), {"data_root": ["a/b", "../c"]})]
    assert names == ["data_root=a_b", "data_root=.._c"]  # made from overrides: '/' becomes '_'
    for bad in ("..", ".", "a/b", "report"):
        with pytest.raises(SampletopoError, match=f"The variant name {bad!r} cannot be a folder"):
            resolve_variants(TrainConfig(), [{"name": bad, "lr": 0.1}])
    with pytest.raises(SampletopoError, match="share the name 'Fast'.*without case"):
        resolve_variants(TrainConfig(), [{"name": "fast"}, {"name": "Fast"}])


@pytest.mark.parametrize("name", ["..", ".", "../evil", "datasets"])
def test_a_toml_variant_name_cannot_escape_or_overwrite(tmp_path, capsys, name):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "config.toml").write_text("mine = true\n")
    toml = tmp_path / "exp.toml"
    toml.write_text(
        f'data = "synthetic"\nmodel = "mlp"\nepochs = 1\n\n[[variants]]\nname = "{name}"\n'
        "lr = 0.1\n"
    )
    out = parent / "exp"
    assert main(["train", str(toml), "--out", str(out), "--no-progress"]) == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert f"The variant name {name!r} cannot be a folder name" in line
    assert (parent / "config.toml").read_text() == "mine = true\n"
    assert [p.name for p in parent.iterdir()] == ["config.toml"]


def test_a_saved_in_memory_dataset_stays_in_the_experiments_datasets_folder(tmp_path):
    x = np.zeros((10, 1, 2, 2), dtype=np.float32)
    y = np.arange(10) % 2
    ds = Dataset.from_arrays("../../evil/name", train=(x, y), val=(x[:4], y[:4]))
    LossRecorder(tmp_path / "exp" / "run", ds).close()
    (saved,) = (tmp_path / "exp" / "datasets").iterdir()
    assert saved.name.endswith(".npz") and "/" not in saved.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    assert (tmp_path / "exp" / "run" / read_run_config(tmp_path / "exp" / "run")["data_file"]
            ).resolve() == saved.resolve()  # fmt: skip


def test_the_landscape_of_the_current_folder_goes_to_its_experiment(tmp_path, monkeypatch):
    from sampletopo.landscape import landscape_path

    run = tmp_path / "exp" / "run"
    run.mkdir(parents=True)
    monkeypatch.chdir(run)
    assert landscape_path(".", 2) == tmp_path / "exp" / "landscapes" / "run-epoch=0002.npz"


# -- writes the system refuses -----------------------------------------------------------------


@pytest.fixture
def file_size_limit():
    """Limit the size of any file this process writes (``ulimit -f``); SIGXFSZ ignored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def limit(n: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, old)


@pytest.mark.parametrize("kind", ["parquet", "torch", "numpy"])
def test_a_write_past_the_file_size_limit_names_the_file_and_keeps_the_old_one(
    tmp_path, file_size_limit, kind
):
    big = np.random.default_rng(0).random(50_000)
    writers = {
        "parquet": pl.DataFrame({"x": big}).write_parquet,
        "torch": lambda fh: torch.save({"x": torch.from_numpy(big)}, fh),
        "numpy": lambda fh: np.savez(fh, x=big),
    }
    target = tmp_path / f"table.{kind}"
    write_atomic(target, lambda fh: fh.write(b"the old file"))
    file_size_limit(20_000)
    with pytest.raises(OSError) as info:
        write_atomic(target, writers[kind])
    assert info.value.errno == errno.EFBIG and info.value.filename == str(target)
    assert target.read_bytes() == b"the old file"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


FULL_DISK = """
    import resource, signal, sys
    import sampletopo.train, sampletopo.record
    from sampletopo.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    sys.exit(main(sys.argv[2:]))
"""


def test_train_into_a_full_disk_is_one_line_and_loses_nothing(tmp_path):
    out = tmp_path / "exp"
    # 8 kB: the loss tables (~4 kB) fit, the first checkpoint (~13 kB) does not.
    child = _python(FULL_DISK, "8000", *TRAIN, "--epochs", "2", "--out", str(out))
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2, err
    line = _one_error_line(err, "train")
    ckpt = out / "run" / "checkpoints" / "epoch=0000.pt"
    assert f"File too large: {str(ckpt)!r}. Fix: a file would exceed" in line
    assert "what was written before is intact" in line
    for split in ("train", "val"):  # epoch 0 was recorded before the checkpoint: whole
        epochs, losses = read_loss_matrix(out / "run", split=split)
        assert epochs.tolist() == [0] and np.isfinite(losses).all()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.lock"))
    # room again: the same command continues and ends with every epoch once
    assert main([*TRAIN, "--epochs", "2", "--out", str(out)]) == 0
    for split in ("train", "val"):
        assert loss_epochs(out / "run", split=split) == [0, 1, 2]


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    d = tempfile.mkdtemp()
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount --bind {d} {d} && mount -o remount,bind,ro {d} {d}"],
            capture_output=True,
        )  # fmt: skip
        return probe.returncode == 0
    finally:
        os.rmdir(d)


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and mount namespaces")
def test_a_read_only_checkpoint_folder_is_one_line_and_loses_nothing(tmp_path):
    out = tmp_path / "exp"
    ckpts = out / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    # In a mount namespace of its own, the checkpoint folder is a read-only file system.
    args = " ".join(f"'{a}'" for a in [*TRAIN, "--epochs", "2", "--out", str(out)])
    cmd = (
        f"mount --bind {ckpts} {ckpts} && mount -o remount,bind,ro {ckpts} {ckpts} && "
        f"exec {sys.executable} -m sampletopo {args}"
    )
    child = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True)
    assert child.returncode == 2, child.stderr
    line = _one_error_line(child.stderr, "train")
    assert f"Read-only file system: {str(ckpts / 'epoch=0000.pt')!r}" in line
    assert "Fix: that file system is read-only" in line
    for split in ("train", "val"):  # epoch 0 was recorded before the checkpoint: whole
        epochs, losses = read_loss_matrix(out / "run", split=split)
        assert epochs.tolist() == [0] and np.isfinite(losses).all()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.lock"))


NO_PERMISSION = """
    import os, sys
    import matplotlib, sampletopo.train, sampletopo.record
    from sampletopo.cli import build_parser, main
    build_parser()
    matplotlib.use("Agg")
    if os.geteuid() == 0:  # root may write anywhere: become nobody (everything is imported)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # ~7 s; the one-line permission message itself is older than the locks
def test_training_in_a_folder_one_may_not_write_is_one_line(tmp_path):
    base = Path(tempfile.mkdtemp())  # pytest's tmp_path is private to root: nobody can enter
    try:
        os.chmod(base, 0o755)
        out = base / "exp"
        assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
        if os.geteuid() != 0:
            for p in [out, *out.rglob("*")]:
                if p.is_dir():
                    p.chmod(0o555)
        env = {**os.environ, "MPLCONFIGDIR": str(base), "MPLBACKEND": "Agg"}
        # one more variant of the experiment: it would write into the folder
        child = _python(
            NO_PERMISSION,
            *TRAIN,
            "--epochs",
            "1",
            "--lr",
            "0.1",
            "0.05",
            "--out",
            str(out),
            env=env,
        )
        _, err = child.communicate(timeout=120)
        assert child.returncode == 2, err
        line = _one_error_line(err, "train")
        assert f"Permission denied: {str(out / LOCK_NAME)!r}" in line
        assert "Fix: pick a location you may use" in line
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
        assert loss_epochs(out / "run", split="train") == [0, 1]
    finally:
        for p in base.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(base)


@pytest.fixture(scope="module")
def small_experiment(tmp_path_factory) -> Path:
    """Two runs of two epochs with their topology computed (never modified: copy it)."""
    exp = tmp_path_factory.mktemp("small") / "exp"
    assert main([*TRAIN, "--epochs", "2", "--lr", "0.1", "0.05", "--out", str(exp)]) == 0
    assert main(["topology", str(exp), "--k", "5", "--no-progress"]) == 0
    return exp


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and mount namespaces")
def test_figures_and_report_of_a_read_only_experiment_write_only_to_out(small_experiment, tmp_path):
    # N4: both rewrote every run's summary.parquet and wasserstein.parquet (under a lock in the
    # run's topology folder), so a read-only experiment could not be reported on (exit 2).
    exp = tmp_path / "exp"
    shutil.copytree(small_experiment, exp)
    before = {p: p.read_bytes() for p in exp.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    for argv in (
        ["figures", str(exp), "--out", str(out / "figs"), "--formats", "png", "--no-progress"],
        ["report", str(exp), "--out", str(out / "report"), "--no-progress"],
    ):
        args = " ".join(f"'{a}'" for a in argv)
        cmd = (
            f"mount --bind {exp} {exp} && mount -o remount,bind,ro {exp} {exp} && "
            f"exec {sys.executable} -m sampletopo {args}"
        )
        child = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True)
        assert child.returncode == 0, child.stderr
        assert "Traceback" not in child.stderr
        notes = [ln for ln in child.stderr.splitlines() if "read-only" in ln]
        assert len(notes) == 1, child.stderr  # one note, not one per run or table
        assert "computed in memory" in notes[0]
    assert (out / "figs" / "total_persistence.png").is_file()
    assert (out / "report" / "index.html").is_file()
    assert {p: p.read_bytes() for p in exp.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("command", ["figures", "report", "landscape"])
def test_a_full_disk_under_figures_report_and_landscape_names_the_file(
    small_experiment, tmp_path, command
):
    # N7: matplotlib's and numpy's writes failed with an OSError naming no file, so the line
    # said "(the system named no file)".
    exp = tmp_path / "exp"
    shutil.copytree(small_experiment, exp)
    out = tmp_path / "out"
    argv = {
        "figures": ["figures", str(exp), "--out", str(out), "--formats", "png", "--no-progress"],
        "report": ["report", str(exp), "--out", str(out), "--no-progress"],
        "landscape": ["landscape", str(exp / "lr=0.1"), "--epoch", "2", "--steps", "3",
                      "--no-hessian", "--figures", "--out", str(out / "l.npz"), "--no-progress"],
    }[command]  # fmt: skip
    # 6 kB: the cached summary tables fit, a figure does not.
    child = _python(FULL_DISK, "6000", *argv)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2, err
    line = _one_error_line(err, command)
    assert "(the system named no file)" not in line
    assert f"File too large: {str(out)}" in line.replace("'", ""), line
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and mount namespaces")
def test_topology_on_a_read_only_folder_does_not_suggest_a_flag_it_lacks(
    small_experiment, tmp_path
):
    # N7: the hint said "write to a writable folder (--out)"; topology has no --out.
    exp = tmp_path / "exp"
    shutil.copytree(small_experiment, exp)
    cmd = (
        f"mount --bind {exp} {exp} && mount -o remount,bind,ro {exp} {exp} && "
        f"exec {sys.executable} -m sampletopo topology '{exp}' --k 5 --overwrite --no-progress"
    )
    child = subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True)
    assert child.returncode == 2, child.stderr
    line = _one_error_line(child.stderr, "topology")
    assert "Read-only file system" in line and "--out" not in line
    assert "copy the folder" in line
