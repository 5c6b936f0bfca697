"""The report page: the numbers its context holds, and names and values that must come out escaped.

The context is checked against the stored loss and diagram tables themselves (means, sums and a
Wasserstein distance from gudhi), not against the report's own table code. Escaping is checked
by parsing the rendered page with Python's HTML parser: every hostile string read back from the
page must equal the string that went in, and no markup may appear that the template did not write.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from gudhi.wasserstein import wasserstein_distance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sampletopo import report
from sampletopo._errors import SampletopoError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = 'a<b&"c"\'</pre><script>x</script>'
RUN = 'lr<0.01>&"q"\''


class _Page(HTMLParser):
    """Elements of a page as (tag, attributes, text directly inside it), in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None], list[str]]] = []
        self._open: list[int] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), []))
        if tag not in ("img", "meta"):  # void elements never close
            self._open.append(len(self.elements) - 1)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), []))

    def handle_endtag(self, tag):
        assert self._open and self.elements[self._open[-1]][0] == tag, f"stray </{tag}>"
        self._open.pop()

    def handle_data(self, data):
        if self._open:
            self.elements[self._open[-1]][2].append(data)

    def texts(self, tag: str) -> list[str]:
        return ["".join(t) for name, _, t in self.elements if name == tag]

    def attrs(self, tag: str, key: str) -> list[str | None]:
        return [a.get(key) for name, a, _ in self.elements if name == tag]

    def tags(self) -> set[str]:
        return {name for name, _, _ in self.elements}


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    assert not p._open, "unclosed elements"
    return p


def _png(path: Path, width: int, height: int) -> Path:
    """A real (grey) PNG of the given size, written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


# --- the context holds the summary's numbers -----------------------------------------------------


@pytest.fixture(scope="module")
def hostile(experiment, tmp_path_factory):
    """The module's experiment copied under a hostile folder name, one run renamed hostile and
    a hostile config value; its results collected (summaries read, figures drawn) once."""
    _, runs = experiment
    root = tmp_path_factory.mktemp("hostile")
    exp = root / HOSTILE.replace("/", "_")
    shutil.copytree(runs[0].parent, exp)
    (exp / runs[0].name).rename(exp / RUN)
    for cfg in [exp / "config.toml", exp / RUN / "config.toml"]:
        text = cfg.read_text()
        assert 'name = "experiment"' in text
        cfg.write_text(text.replace('name = "experiment"', f"name = {json.dumps(HOSTILE)}"))
    page_dir = root / "report"
    res = report.collect_experiment(exp, page_dir / "figures" / exp.name, progress=False)
    return exp, page_dir, res


def _final(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("epoch") == df["epoch"].max())


def test_context_holds_the_summary_numbers_of_the_stored_tables(hostile):
    exp, page_dir, res = hostile
    ctx = report.report_context([res], page_dir=page_dir, title="t")
    json.dumps(ctx)  # plain values only: strings, numbers, lists, dicts, None
    (e,) = ctx["experiments"]
    table = e["summary"]
    assert [row[0] for row in table["rows"]] == [rd.name for rd in res.runs]
    assert len(table["rows"]) == 2 and RUN in [r[0] for r in table["rows"]]
    checked = 0
    for row in table["rows"]:
        cell = dict(zip(table["columns"], row, strict=True))
        rd = exp / cell["run"]
        for s in ("train", "val"):
            last = max(int(p.stem.split("=")[1]) for p in (rd / "topology" / s).glob("epoch=*"))
            assert cell["final epoch"] == last == 4
            losses = pl.read_parquet(rd / "losses" / s / f"epoch={last:04d}.parquet")
            assert cell[f"{s} loss"] == pytest.approx(losses["loss"].mean(), rel=1e-12)
            assert cell[f"{s} acc"] == pytest.approx(losses["correct"].mean(), rel=1e-12)
            diags = pl.read_parquet(rd / "topology" / s / "epoch=*.parquet")
            fin = diags.filter(pl.col("persistence").is_finite())
            for tree in ("join", "split"):
                tp = _final(fin).filter(pl.col("tree") == tree)["persistence"].sum()
                assert cell[f"{s} TP {tree}"] == pytest.approx(tp, rel=1e-12)
            # W1 between the first and the final epoch's split-tree diagram, from gudhi.
            # Negating a split-tree diagram (superlevel) is an isometry onto a sublevel one.
            split = fin.filter(pl.col("tree") == "split")
            first, final = (
                -split.filter(pl.col("epoch") == e_).select("birth", "death").to_numpy()
                for e_ in (0, last)
            )
            w1 = wasserstein_distance(first, final, order=1, internal_p=np.inf)
            assert cell[f"{s} W1 split, first->final"] == pytest.approx(w1, rel=1e-9, abs=1e-12)
            checked += 1
    assert checked == 4
    # Figures are paths relative to the page, each an existing PNG; captions are the ones
    # stored beside each figure, written for people, not file stems.
    from sampletopo.plotting._topology import read_caption

    assert len(e["topology"]) == len(res.topology) >= 7
    for fig in e["topology"]:
        assert not Path(fig["path"]).is_absolute() and (page_dir / fig["path"]).is_file()
        assert fig["caption"] == read_caption(page_dir / fig["path"])
        assert fig["caption"] != Path(fig["path"]).stem and " " in fig["caption"]
        with Image.open(page_dir / fig["path"]) as im:
            assert fig["wide"] == (im.width / im.height > 2.2)  # heatmap rows span the page
    assert any(f["wide"] for f in e["topology"]) and not all(f["wide"] for f in e["topology"])
    assert e["landscape"] is None  # no landscapes/ folder in this experiment
    assert e["config"] == (exp / "config.toml").read_text()
    assert e["run_configs"][0] == {"run": RUN, "text": (exp / RUN / "config.toml").read_text()}


def test_hostile_names_and_values_come_out_escaped(hostile):
    exp, page_dir, res = hostile
    title = f"title {HOSTILE}"
    notes = "<b>timings</b> & more"
    ctx = report.report_context([res], page_dir=page_dir, title=title, notes=notes)
    page = report.render_report(ctx, page_dir=page_dir)
    for raw in (HOSTILE, RUN, "<b>", "<script>"):
        assert raw not in page
    p = parse(page)
    assert "script" not in p.tags() and "b" not in p.tags()
    assert p.texts("title") == [title] and p.texts("h1") == [title]
    assert "<p class='meta'>&lt;b&gt;timings&lt;/b&gt; &amp; more</p>" in page
    assert p.texts("h2") == [exp.name] and p.attrs("section", "id") == [exp.name]
    assert p.attrs("a", "href") == [f"#{exp.name}"] and p.texts("a") == [exp.name]
    assert p.texts("summary")[1] == f"{RUN}: resolved run config"
    pres = p.texts("pre")
    assert pres[0] == (exp / "config.toml").read_text()
    assert pres[1] == (exp / RUN / "config.toml").read_text()
    assert f"name = {json.dumps(HOSTILE)}" in pres[1]
    cells = p.texts("td")
    assert {RUN} < {rd.name for rd in res.runs} <= set(cells)
    # Floats are shown to four significant digits, as before the template.
    row = ctx["experiments"][0]["summary"]["rows"][0]
    assert cells[: len(row)] == [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]


# --- every value of the template is escaped (hand-made contexts, no training) --------------------

_TEXT = st.text(
    st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc")),
        st.sampled_from(list("<>&\"'/=\n")),
    ),
    min_size=1,
    max_size=30,
)


def _context(text: str, png: str, *, table_value: object = 1.0) -> dict:
    table = {"columns": [text, "x"], "rows": [[text, table_value]]}

    def fig() -> dict:
        return {"path": png, "caption": text, "wide": True}

    return {
        "title": text,
        "written": text,
        "notes": text,
        "experiments": [
            {
                "name": text,
                "config": text,
                "run_configs": [{"run": text, "text": text}],
                "graph_note": text,
                "summary": table,
                "comparison": None,  # shown with replicates (test_replicates renders one)
                "comparison_note": text,
                "topology": [fig()],
                "sensitivity": [fig()],
                "sensitivity_note": text,
                "landscape": {"table": table, "figures": [fig()]},
                "sections": [{"title": text, "regions": table, "figures": [fig()]}],
            }
        ],
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=_TEXT)
def test_every_value_of_the_context_reads_back_unchanged(tmp_path, text):
    _png(tmp_path / "f.png", 30, 10)
    page = report.render_report(_context(text, "f.png"), page_dir=tmp_path)
    p = parse(page)
    # Only the template's own elements: nothing in the text became markup.
    assert p.tags() == {
        "html", "head", "meta", "title", "style", "body", "h1", "p", "nav", "ul", "li", "a",
        "section", "h2", "details", "summary", "pre", "h3", "table", "thead", "tr", "th",
        "tbody", "td", "div", "figure", "img", "figcaption", "code",
    }  # fmt: skip
    assert p.texts("title") == [text] and p.texts("h1") == [text] and p.texts("h2") == [text]
    assert p.attrs("section", "id") == [text] and p.texts("a") == [text]
    assert p.texts("pre") == [text, text]
    assert p.texts("summary")[1] == f"{text}: resolved run config"
    assert p.texts("th") == [text, "x"] * 3 and p.texts("td") == [text, "1"] * 3
    assert p.texts("figcaption") == [text] * 4 and p.attrs("img", "alt") == [text] * 4
    assert p.texts("h3")[-1] == text
    assert text in p.texts("p")  # the notes
    assert any(s.startswith(f"kNN graph {text}. TP = ") for s in p.texts("p"))
    assert p.attrs("figure", "class") == ["wide"] * 4
    # The graph-sensitivity section: its heading, its note, its figure.
    h3 = p.texts("h3")
    assert h3.index("Graph sensitivity: the comparison over kNN graph settings") < h3.index(
        "Sample space: per-sample loss on the kNN graph"
    )
    assert p.texts("p").count(text) >= 2  # the notes and the sensitivity note


def test_figures_are_embedded_and_cells_formatted(tmp_path):
    png = _png(tmp_path / "fig.png", 3, 2)
    ctx = _context("t", "fig.png", table_value=0.123456789)
    ctx["experiments"][0]["topology"][0]["wide"] = False
    page = report.render_report(ctx, page_dir=tmp_path)
    import base64

    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    assert page.count(uri) == 4
    assert page.count("<td>0.1235</td>") == 3
    assert '<figure><img alt="t"' in page and page.count("<figure class='wide'>") == 3
    empty = {"columns": ["a"], "rows": []}
    ctx["experiments"][0]["summary"] = empty
    assert "<p><em>no rows</em></p>" in report.render_report(ctx, page_dir=tmp_path)


def test_a_context_missing_a_value_is_one_clear_error(tmp_path):
    ctx = _context("t", "f.png")
    del ctx["experiments"][0]["graph_note"]
    with pytest.raises(SampletopoError, match="'context' parameter of render_report.*graph_note"):
        report.render_report(ctx, page_dir=tmp_path)


def test_the_template_files_are_package_data():
    """The wheel ships every file of sampletopo/templates (the globs in pyproject.toml)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = meta["tool"]["setuptools"]["package-data"]["sampletopo"]
    files = sorted((ROOT / "sampletopo" / "templates").iterdir())
    assert {p.name for p in files} >= {report.TEMPLATE, "report.css"}
    for f in files:
        assert any(f.relative_to(ROOT / "sampletopo").match(g) for g in globs), f
    assert any(d.startswith("jinja2") for d in meta["project"]["dependencies"])


def test_experiments_of_one_name_keep_their_own_figures(experiment, tmp_path):
    """Two experiment folders of the same name (a/lr-study, b/lr-study): each section shows
    its own experiment's numbers (the second's figures overwrote the first's, which then
    showed them under its own heading)."""
    out, runs = experiment
    a, b = tmp_path / "a" / out.name, tmp_path / "b" / out.name
    shutil.copytree(out, a)
    shutil.copytree(out, b)
    kept = sorted(p.name for p in b.iterdir() if p.is_dir() and p.name.startswith("lr="))
    shutil.rmtree(b / kept[0])  # b holds one run fewer
    page = report.write_report([a, b], tmp_path / "rep", progress=False)
    figs = tmp_path / "rep" / "figures"
    assert sorted(p.name for p in figs.iterdir()) == [f"a-{out.name}", f"b-{out.name}"]
    for exp, label in ((a, f"a-{out.name}"), (b, f"b-{out.name}")):
        drawn = pl.read_parquet(figs / label / "topology" / "total_persistence.parquet")
        have = sorted(p.name for p in exp.iterdir() if p.is_dir() and p.name.startswith("lr="))
        assert sorted(set(drawn["run"])) == have
        # The drawn numbers are this experiment's own (its stored summary), not the other's.
        stored = pl.concat(
            [pl.read_parquet(exp / r / "topology" / "summary.parquet").with_columns(run=pl.lit(r))
             for r in have]
        )  # fmt: skip
        both = drawn.join(stored, on=["run", "split", "tree", "epoch"], suffix="_stored")
        assert both.height == drawn.height
        np.testing.assert_allclose(both["total_persistence_1"], both["total_persistence_1_stored"])
    html = page.read_text()
    assert f"<h2>a-{out.name}</h2>" in html and f"<h2>b-{out.name}</h2>" in html


def test_graph_note_names_the_pca_size():
    """The report's kNN graph note says the PCA size (two PCA sizes read alike before)."""
    meta = {
        "train": {"k": 10, "features": "pca", "pca_components": 20},
        "val": {"k": 10, "features": "raw"},
    }
    assert report._graph_note(meta) == (
        "train: k=10, features=pca (20 PCA components); val: k=10, features=raw"
    )
    assert report._graph_note({"val": {"k": 5, "features": "pca"}}) == (
        "val: k=5, features=pca (50 PCA components)"
    )
