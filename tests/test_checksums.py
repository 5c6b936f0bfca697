"""Changed bytes inside stored files: the Parquet whole-file checksum and the CRC-32 of .npz
entries.

The oracles: the data read back (a file that passes the check must read back exactly as
written) and pyarrow's own page-checksum verification (a flip it rejects must be caught). Where
the pages and the footer are comes from the footer metadata, not from the code under test.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sampletopo._runfiles import (
    DamagedFileError,
    DamagedFileWarning,
    _bytes_problem,
    parquet_problem,
    read_npz,
    read_parquet,
    scan_parquet,
    write_parquet,
)
from sampletopo._writer import loss_table
from sampletopo.data import Dataset
from sampletopo.graph import Graph, knn_graph
from sampletopo.landscape import Directions, Landscape, read_landscape
from sampletopo.record import LOSS_SCHEMA, data_config, dataset_from_config

N = 3000
FIX = "Test fix."
KEY = b"sampletopo.crc32"


def _loss_table(n: int = N, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return loss_table(3, "train", rng.integers(0, 10, n), rng.integers(0, 10, n), rng.random(n) * 4)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    """A loss table written by sampletopo's writer; never modified."""
    df = _loss_table()
    path = tmp_path_factory.mktemp("checksums") / "epoch=0003.parquet"
    write_parquet(df, path)
    return path, df


def _chunks(path: Path) -> list[tuple[str, int, int]]:
    """(column, first byte, end) of every column chunk (its pages), from the footer."""
    meta = pq.read_metadata(path)
    out = []
    for r in range(meta.num_row_groups):
        group = meta.row_group(r)
        for c in range(group.num_columns):
            col = group.column(c)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            out.append((col.path_in_schema, start, start + col.total_compressed_size))
    return out


def _flipped(src: Path, dst: Path, offset: int, mask: int = 0xFF) -> Path:
    raw = bytearray(src.read_bytes())
    raw[offset] ^= mask
    dst.write_bytes(bytes(raw))
    return dst


def _pyarrow_rejects(path: Path) -> bool:
    try:
        pq.read_table(path, page_checksum_verification=True)
    except OSError:
        return True
    return False


def _reads_as(path: Path, df: pl.DataFrame) -> bool:
    try:
        return pl.read_parquet(path).equals(df)
    except Exception:  # noqa: BLE001 -- any failure counts as not reading back the same
        return False


def _assert_named(path: Path, df: pl.DataFrame) -> str:
    """The damaged file gives one DamagedFileError naming it, from every reader."""
    why = parquet_problem(path, LOSS_SCHEMA, rows=df.height)
    assert why is not None
    for read in (
        lambda: read_parquet(path, LOSS_SCHEMA, rows=df.height, fix=FIX),
        lambda: scan_parquet([path], LOSS_SCHEMA, rows=df.height, fix=FIX),
    ):
        with pytest.raises(DamagedFileError) as info:
            read()
        assert info.value.path == path and str(info.value).endswith(FIX)
    return why


# ---------------------------------------------------------------------------------------------
# Parquet


def test_the_writer_round_trips_with_both_checksums(written):
    path, df = written
    assert parquet_problem(path, LOSS_SCHEMA, rows=N) is None
    assert_frame_equal(read_parquet(path, LOSS_SCHEMA, rows=N, fix=FIX), df)
    assert_frame_equal(scan_parquet([path], LOSS_SCHEMA, rows=N, fix=FIX).collect(), df)
    assert_frame_equal(pl.from_arrow(pq.read_table(path, page_checksum_verification=True)), df)
    assert len(pq.read_metadata(path).metadata[KEY]) == 8
    # The last byte of every column chunk is page data: pyarrow (the oracle) rejects a flip there
    # only if that page carries Parquet's own checksum.
    for _, _, end in _chunks(path):
        assert _pyarrow_rejects(_flipped(path, path.with_name("x.parquet"), end - 1))


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_a_flip_inside_the_data_pages_is_caught(written, tmp_path, mask):
    """Seeded positions in the pages of every column: the last byte of each chunk (always page
    data), its first (a page header) and 20 more spread over it. Each reads back as other
    numbers, fails in polars, or is rejected by pyarrow; each is named."""
    path, df = written
    rng = np.random.default_rng(mask)
    for name, start, end in _chunks(path):
        for off in sorted({start, end - 1, *rng.integers(start, end, 20).tolist()}):
            bad = _flipped(path, tmp_path / "bad.parquet", off, mask)
            if off == end - 1:
                assert _pyarrow_rejects(bad) and not _reads_as(bad, df), (name, off)
            assert "do not match the CRC-32" in _assert_named(bad, df), (name, off)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_any_flip_anywhere_is_named(written, tmp_path, where, mask):
    path, df = written
    off = int(where * path.stat().st_size)
    _assert_named(_flipped(path, tmp_path / "bad.parquet", off, mask), df)


def _all_named(df: pl.DataFrame, path: Path, offsets) -> None:
    """Each offset flipped: the check names it (on the bytes, which is what parquet_problem
    reads; writing thousands of files costs more than checking them)."""
    raw = path.read_bytes()
    assert _bytes_problem(raw, LOSS_SCHEMA, rows=df.height) is None
    for off in offsets:
        bad = bytearray(raw)
        bad[off] ^= 0xFF
        assert _bytes_problem(bytes(bad), LOSS_SCHEMA, rows=df.height) is not None, off


def test_every_single_byte_flip_of_a_small_table_is_named(tmp_path):
    """Exhaustive over a 100-row table (about 3 KB): magic numbers, page headers, page data,
    footer."""
    df = _loss_table(100, seed=4)
    path = write_parquet(df, tmp_path / "small.parquet")
    _all_named(df, path, range(path.stat().st_size))


def test_tables_written_before_checksums_read_as_before(tmp_path):
    """polars' own writer (the one used before) writes no checksum, in one or several row
    groups: those files pass the check and read back as written."""
    df = _loss_table()
    for rows in (None, 700):
        path = tmp_path / f"old-{rows}.parquet"
        df.write_parquet(path, row_group_size=rows)
        assert KEY not in (pq.read_metadata(path).metadata or {})
        assert parquet_problem(path, LOSS_SCHEMA, rows=N) is None
        assert_frame_equal(read_parquet(path, LOSS_SCHEMA, rows=N, fix=FIX), df)
        assert_frame_equal(scan_parquet([path], LOSS_SCHEMA, rows=N, fix=FIX).collect(), df)
        # Unverifiable: a flip in the loss values' page reads back as other numbers.
        end = [c for c in _chunks(path) if c[0] == "loss"][-1][2]
        flipped = _flipped(path, tmp_path / "x.parquet", end - 1)
        assert parquet_problem(flipped, LOSS_SCHEMA) is None and not _reads_as(flipped, df)


def test_scan_parquet_names_a_damaged_file_before_any_collect(written, tmp_path):
    path, df = written
    good = tmp_path / "a.parquet"
    good.write_bytes(path.read_bytes())
    _, _, end = _chunks(path)[5]
    bad = _flipped(path, tmp_path / "b.parquet", end - 1)
    assert_frame_equal(scan_parquet([good], LOSS_SCHEMA, fix=FIX).collect(), df)
    with pytest.raises(DamagedFileError, match="do not match the CRC-32") as info:
        scan_parquet([good, bad], LOSS_SCHEMA, fix=FIX)
    assert info.value.path == bad


def test_an_empty_table_round_trips(tmp_path):
    df = _loss_table().clear()
    path = write_parquet(df, tmp_path / "empty.parquet")
    assert parquet_problem(path, LOSS_SCHEMA, rows=0) is None
    assert_frame_equal(read_parquet(path, LOSS_SCHEMA, rows=0, fix=FIX), df)


# ---------------------------------------------------------------------------------------------
# .npz: graph cache, landscapes, saved datasets


def _npz(save, **arrays) -> bytes:
    buf = io.BytesIO()
    save(buf, **arrays)
    return buf.getvalue()


ARRAYS = {
    "x": np.linspace(0, 1, 300),
    "e": np.arange(400, dtype=np.int64).reshape(200, 2),
    "s": np.str_("graph"),
}


def test_numpy_alone_misses_or_mislabels_changed_npz_bytes(tmp_path):
    """Why read_npz exists: np.load raises zipfile.BadZipFile (not an OSError or ValueError)
    for changed array bytes, and a changed dtype in a .npy header reads back silently (an
    entry longer than zipfile's 4 KB read-ahead is then never read to its end)."""
    raw = _npz(np.savez, **{**ARRAYS, "x": np.linspace(0, 1, 3000)})
    path = tmp_path / "a.npz"
    # A changed byte in the array data: the zip's CRC-32 catches it, as a BadZipFile.
    info = zipfile.ZipFile(io.BytesIO(raw)).getinfo("x.npy")
    _flipped_bytes(path, raw, info.header_offset + 30 + len("x.npy") + 128 + 100)
    with pytest.raises(zipfile.BadZipFile), np.load(path) as z:
        z["x"]
    with pytest.raises(DamagedFileError, match="CRC"):
        read_npz(path, fix=FIX)
    # float64 read as float32 ('<f8' -> '<f4'): half the bytes, never the entry's end, no CRC.
    _flipped_bytes(path, raw, raw.index(b"'<f8'") + 3, ord("8") ^ ord("4"))
    with np.load(path) as z:
        assert z["x"].dtype == np.float32  # silently other numbers
    with pytest.raises(DamagedFileError, match="promises"):
        read_npz(path, fix=FIX)


def _flipped_bytes(path: Path, raw: bytes, offset: int, mask: int = 0xFF) -> Path:
    b = bytearray(raw)
    b[offset] ^= mask
    path.write_bytes(bytes(b))
    return path


def _npz_named_or_intact(path: Path, raw: bytes, offsets) -> list[int]:
    """Each offset flipped: one DamagedFileError naming the file, or the arrays exactly as
    written (zip fields that are never used, such as a local header's copy of the sizes).
    Returns the offsets that were named."""
    named = []
    for off in offsets:
        _flipped_bytes(path, raw, off)
        try:
            z = read_npz(path, fix=FIX)
        except DamagedFileError as exc:
            assert exc.path == path and str(exc).endswith(FIX)
            named.append(off)
            continue
        assert z.files == list(ARRAYS), off
        for k, v in ARRAYS.items():
            assert z[k].dtype == v.dtype and np.array_equal(z[k], v), off
    return named


def _npz_entries(raw: bytes) -> list[int]:
    """Offsets of every byte inside the zip entries (.npy headers and array data)."""
    out: list[int] = []
    for info in zipfile.ZipFile(io.BytesIO(raw)).infolist():
        start = info.header_offset + 30 + len(info.filename) + 20  # + numpy's zip64 extra field
        out += range(start, start + info.compress_size)
    return out


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "deflated"])
def test_changed_npz_bytes_are_named_or_harmless(tmp_path, save):
    """Every byte of the zip structure (local headers, directory) is named or harmless (about
    half are fields zipfile never uses); every one of 60 seeded bytes inside the entries (.npy
    headers, array data) is named."""
    raw = _npz(save, **ARRAYS)
    path = tmp_path / "a.npz"
    assert read_npz(_flipped_bytes(path, raw, 0, 0), fix=FIX).files == ["x", "e", "s"]
    entries = _npz_entries(raw)
    structure = sorted(set(range(len(raw))) - set(entries))
    _npz_named_or_intact(path, raw, structure)
    inside = np.random.default_rng(7).choice(entries, 60, replace=False).tolist()
    assert _npz_named_or_intact(path, raw, inside) == inside


@pytest.mark.slow
@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "deflated"])
def test_every_changed_npz_byte_is_named_or_harmless(tmp_path, save):
    """Every byte: named or harmless; inside the entries of the stored zip, every byte named (a
    deflate stream has a few bits that decode the same either way)."""
    raw = _npz(save, **ARRAYS)
    named = _npz_named_or_intact(tmp_path / "a.npz", raw, range(len(raw)))
    if save is np.savez:
        assert set(_npz_entries(raw)) <= set(named)


def test_a_damaged_graph_cache_is_rebuilt_with_a_warning(tmp_path, rng):
    X = rng.normal(size=(120, 5))
    g = knn_graph(X, k=5, cache_dir=tmp_path)
    [cache] = list(tmp_path.glob("knn-*.npz"))
    info = zipfile.ZipFile(cache).getinfo("edges.npy")
    _flipped_bytes(cache, cache.read_bytes(), info.header_offset + info.compress_size // 2)
    with pytest.raises(DamagedFileError) as err:
        Graph.load(cache)
    assert err.value.path == cache
    with pytest.warns(DamagedFileWarning, match="cached kNN graph: it is built again"):
        again = knn_graph(X, k=5, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.edges, g.edges)
    np.testing.assert_array_equal(Graph.load(cache).edges, g.edges)  # the file was replaced


@pytest.mark.parametrize(
    "damage",
    [lambda raw: b"", lambda raw: raw[: len(raw) // 2], lambda raw: b"not a zip at all"],
    ids=["empty", "truncated", "garbage"],
)
def test_an_empty_truncated_or_garbage_graph_cache_is_rebuilt_with_a_warning(tmp_path, rng, damage):
    # N1: an emptied cache gave an EOFError traceback; truncated and garbage ones were rebuilt
    # silently although the README promises a warning.
    X = rng.normal(size=(60, 4))
    g = knn_graph(X, k=4, cache_dir=tmp_path)
    [cache] = list(tmp_path.glob("knn-*.npz"))
    cache.write_bytes(damage(cache.read_bytes()))
    with pytest.warns(DamagedFileWarning, match=r"knn-.*\.npz' is damaged: .*built again"):
        again = knn_graph(X, k=4, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.edges, g.edges)
    np.testing.assert_array_equal(Graph.load(cache).edges, g.edges)  # the file was replaced


def test_a_damaged_landscape_is_one_error_naming_it(tmp_path):
    c1, c2 = np.linspace(-1, 1, 5), np.linspace(-2, 2, 6)
    loss = (c1[:, None] - 0.5) ** 2 + c2[None, :] ** 2
    d = Directions(
        vectors=np.eye(2, 3),
        names=("w",),
        shapes=((3,),),
        kind="random",
        normalization="filter",
        orthogonal=False,
        include_bias_bn=False,
        seed=0,
    )
    path = Landscape((c1, c2), loss, np.full_like(loss, np.nan), d, 1.0, 10).save(
        tmp_path / "l.npz", extra={"metrics": {"smad": 1.0}}
    )
    back, _ = read_landscape(path)
    np.testing.assert_array_equal(back.loss, loss)
    info = zipfile.ZipFile(path).getinfo("loss.npy")
    _flipped_bytes(path, path.read_bytes(), info.header_offset + 30 + 8 + 128 + 40, 0x10)
    with pytest.raises(DamagedFileError, match="Compute the landscape again") as err:
        read_landscape(path)
    assert err.value.path == path


def test_a_damaged_saved_dataset_is_one_error_naming_it(tmp_path):
    rng = np.random.default_rng(5)
    ds = Dataset.from_arrays(
        "toy",
        train=(rng.random((30, 1, 4, 4)), rng.integers(0, 3, 30)),
        val=(rng.random((10, 1, 4, 4)), rng.integers(0, 3, 10)),
    )
    cfg = data_config(ds, tmp_path / "run")
    path = (tmp_path / "run" / cfg["data_file"]).resolve()
    cfg["data_file"] = str(path)
    assert dataset_from_config(cfg).fingerprint("train") == ds.fingerprint("train")
    info = zipfile.ZipFile(path).getinfo("train_x.npy")
    _flipped_bytes(path, path.read_bytes(), info.header_offset + info.compress_size // 2)
    with pytest.raises(DamagedFileError, match="record the run again") as err:
        dataset_from_config(cfg)
    assert err.value.path == path


def test_a_damaged_grid_checkpoint_is_one_error_naming_it(tmp_path):
    import torch
    import torch.nn.functional as F

    from sampletopo.landscape import evaluate_grid, random_directions

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    d = random_directions(model, dim=2, seed=0)
    ckpt = tmp_path / "grid.partial.npz"
    grid = np.zeros((3, 3))
    np.savez(ckpt, key=np.array("k"), loss=grid, accuracy=grid, done=grid.astype(bool))
    info = zipfile.ZipFile(ckpt).getinfo("loss.npy")
    _flipped_bytes(ckpt, ckpt.read_bytes(), info.header_offset + info.compress_size)
    with pytest.raises(DamagedFileError, match="Delete it to evaluate the grid") as err:
        evaluate_grid(model, F.mse_loss, x, y, d, steps=3, checkpoint=ckpt, progress=False)
    assert err.value.path == ckpt
