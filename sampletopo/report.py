"""One self-contained HTML report of one or more experiments.

:func:`write_report` draws each experiment's figure set (sample-space topology always; landscape
and Hessian figures when ``<experiment>/landscapes/*.npz`` exist) under
``<report>/figures/<experiment>/{topology,landscape,samples}/`` and writes
``<report>/index.html``: the resolved configs, a table of summary numbers per run, and every
figure, runs side by side. Images are embedded as base64 data, so the page works offline and can
be mailed as one file; PDFs of every figure sit beside the PNGs. Any PNG already placed in a
``samples/`` (or other) folder of an experiment's figures is embedded too, under its folder name.
What ``sampletopo samples RUN --figures`` wrote into each run's ``samples/`` folder (image grids,
loss curves and the regions tables of :func:`sampletopo.samples.regions_path`) joins the
"samples" section.

This module computes no topology (it reads what :mod:`sampletopo.analysis` stored).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sampletopo import analysis
from sampletopo._errors import SampletopoError
from sampletopo._io import write_atomic
from sampletopo._runfiles import DamagedFileError, parquet_problem, read_parquet

__all__ = ["write_report", "run_table"]

_SECTION_TITLES = {
    "topology": "Sample space: per-sample loss on the kNN graph",
    "landscape": "Parameter space: Hessian and loss landscapes",
    "samples": "Which samples make the shape",
}


def run_table(
    runs: Sequence[Path],
    *,
    summary: pl.DataFrame | None = None,
    wasserstein: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Summary numbers per run at its final epoch: loss, accuracy, total persistence and W1 at
    the first epoch, per split. Pass the runs' summary and Wasserstein tables if already computed.
    """
    summary = analysis.summarize(runs, write=False) if summary is None else summary
    wd = (
        analysis.wasserstein_to_reference(runs, write=False) if wasserstein is None else wasserstein
    )
    rows = []
    for rd in runs:
        row: dict[str, Any] = {"run": rd.name}
        for s in analysis.SPLITS:
            sub = summary.filter((pl.col("run") == rd.name) & (pl.col("split") == s))
            if sub.height == 0:
                continue
            last = int(sub["epoch"].max())  # type: ignore[arg-type]
            fin = sub.filter(pl.col("epoch") == last)
            row["final epoch"] = last
            j = fin.filter(pl.col("tree") == "join")
            sp = fin.filter(pl.col("tree") == "split")
            row[f"{s} loss"] = float(j["mean_loss"][0])
            row[f"{s} acc"] = float(j["accuracy"][0])
            row[f"{s} TP join"] = float(j["total_persistence_1"][0])
            row[f"{s} TP split"] = float(sp["total_persistence_1"][0])
            w = wd.filter(
                (pl.col("run") == rd.name) & (pl.col("split") == s) & (pl.col("tree") == "split")
            )
            if w.height:
                first = w.sort("epoch")
                row[f"{s} W1 split, first->final"] = float(first["w1"][0])
        rows.append(row)
    return pl.DataFrame(rows)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table_html(df: pl.DataFrame) -> str:
    if df.height == 0:
        return "<p><em>no rows</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in df.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path) -> str:
    raw = path.read_bytes()
    # PNG header: width and height are big-endian uint32 at bytes 16-24. Wide figure sets
    # (heatmap rows) get a full row of the page so their panels stay readable.
    w, h = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    cls = " class='wide'" if h and w / h > 2.2 else ""
    data = base64.b64encode(raw).decode("ascii")
    cap = html.escape(path.stem)
    return (
        f'<figure{cls}><img alt="{cap}" src="data:image/png;base64,{data}"/>'
        f"<figcaption>{cap}</figcaption></figure>"
    )


# Columns of a regions table (sampletopo.samples.REGION_SCHEMA) worth a row in the report; the
# member lists stay in the Parquet file.
_REGION_COLUMNS = (
    "run",
    "split",
    "epoch",
    "tree",
    "rank",
    "essential",
    "persistence",
    "size",
    "mean_loss",
    "accuracy",
    "dominant_class",
    "dominant_share",
    "classes",
)


_REGIONS_FIX = "Write it again with `sampletopo samples`."


def _run_samples(runs: Sequence[Path]) -> tuple[list[Path], pl.DataFrame | None]:
    """PNGs and regions tables that ``sampletopo samples`` wrote into each run's ``samples/``."""
    pngs: list[Path] = []
    tables = []
    for rd in runs:
        folder = rd / "samples"
        if not folder.is_dir():
            continue
        pngs += sorted(folder.glob("*.png"))
        for f in sorted(folder.glob("*.parquet")):
            try:
                # Checked (footer and checksum) before its schema is read: no wrong numbers shown.
                why = parquet_problem(f, {})
                if why is not None:
                    raise DamagedFileError(f, why, _REGIONS_FIX)
                cols = [c for c in _REGION_COLUMNS if c in pl.read_parquet_schema(f)]
                tables.append(read_parquet(f, {}, columns=cols, fix=_REGIONS_FIX))
            except Exception as exc:  # one unreadable table must not sink the report
                warnings.warn(f"Regions table {f} left out of the report: {exc}", stacklevel=2)
    table = pl.concat(tables, how="diagonal_relaxed") if tables else None
    return pngs, table


def _landscape_section(exp: Path, fig_dir: Path) -> tuple[list[Path], pl.DataFrame | None]:
    files = sorted((exp / "landscapes").glob("*.npz")) if (exp / "landscapes").is_dir() else []
    files = [f for f in files if not f.name.endswith(".partial.npz")]
    if not files:
        return [], None
    from sampletopo.landscape import load_landscape
    from sampletopo.plotting._landscape import save_landscape_figures

    pngs: list[Path] = []
    rows = []
    for f in files:
        try:
            made = save_landscape_figures(f, out_dir=fig_dir)
            pngs += [Path(p) for p in made if str(p).endswith(".png")]
            _, extra = load_landscape(f)
        except Exception as exc:  # a broken landscape must not sink the whole report
            warnings.warn(f"Landscape {f.name} left out of the report: {exc}", stacklevel=2)
            continue
        row: dict[str, Any] = {"landscape": f.stem}
        metrics = extra.get("metrics")
        if isinstance(metrics, dict):
            row.update({k: v for k, v in metrics.items() if np.isscalar(v)})
        rows.append(row)
    return pngs, (pl.DataFrame(rows) if rows else None)


def _comparison(runs: Sequence[Path], exp: Path, fig_dir: Path) -> Path | None:
    """The random-direction plot beside the heatmaps, when the runs have 2-D random landscapes."""
    from sampletopo.figures import comparison_figure
    from sampletopo.landscape import load_landscape
    from sampletopo.plotting._topology import save

    found: dict[str, Path] = {}
    folder = exp / "landscapes"
    for f in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        if f.name.endswith(".partial.npz"):
            continue
        try:
            land, extra = load_landscape(f)
        except Exception:  # reported by the landscape section
            continue
        if (
            land.dim == 2
            and land.directions.kind == "random"
            and extra.get("run") in {r.name for r in runs}
        ):
            found.setdefault(str(extra["run"]), f)
    if not found:
        return None
    try:
        fig = comparison_figure(runs, found)
    except SampletopoError as exc:
        warnings.warn(f"Comparison figure left out: {exc}", stacklevel=2)
        return None
    return save(fig, fig_dir / "comparison-random-directions-vs-heatmaps")[0]


def write_report(
    experiments: str | Path | Iterable[str | Path],
    report_dir: str | Path,
    *,
    title: str = "sampletopo report",
    epochs: Sequence[int] | None = None,
    notes: str = "",
    progress: bool = True,
) -> Path:
    """Draw the figures of each experiment and write ``<report_dir>/index.html``.

    Parameters
    ----------
    experiments : path or paths
        Experiment folders (each holding run folders whose topology was computed), or run
        folders; each group is drawn and tabulated on its own.
    report_dir : path
        Where ``index.html`` and ``figures/`` go.
    epochs : sequence of int, optional
        Heatmap epochs (default: first, around each LR change, last).
    notes : str
        Extra HTML placed under the title (e.g. timings).
    progress : bool
        Show a progress bar while the figures are drawn.

    Returns
    -------
    Path
        ``<report_dir>/index.html``.
    """
    from sampletopo.figures import write_figure_set

    exps = (
        [Path(experiments)]
        if isinstance(experiments, (str, Path))
        else [Path(e) for e in experiments]
    )
    if not exps:
        raise SampletopoError("write_report: no experiment folders given.")
    out = Path(report_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>Written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by sampletopo.</p>",
        notes,
        "<nav><ul>"
        + "".join(
            f"<li><a href='#{html.escape(e.name)}'>{html.escape(e.name)}</a></li>" for e in exps
        )
        + "</ul></nav>",
    ]
    for exp in exps:
        runs = analysis.check_comparable(exp)
        name = exp.name
        fig_root = out / "figures" / name
        parts.append(f"<section id='{html.escape(name)}'><h2>{html.escape(name)}</h2>")
        cfg = exp / "config.toml"
        if cfg.is_file():
            parts.append(
                "<details><summary>Resolved configuration (config.toml)</summary><pre>"
                + html.escape(cfg.read_text(errors="replace"))
                + "</pre></details>"
            )
        for rd in runs:
            rcfg = rd / "config.toml"
            if rcfg.is_file():
                parts.append(
                    f"<details><summary>{html.escape(rd.name)}: resolved run config</summary><pre>"
                    + html.escape(rcfg.read_text(errors="replace"))
                    + "</pre></details>"
                )
        m, why = analysis._read_meta(runs[0])
        graph_note = "; ".join(
            f"{s}: k={v.get('k')}, features={v.get('features')}" for s, v in m.items()
        )
        if why is not None:
            graph_note = "settings unknown"
            warnings.warn(
                f"{str(runs[0] / 'topology' / 'meta.json')!r} is damaged ({why}); the report "
                "leaves the kNN graph settings out. Run `sampletopo topology` on the run again "
                "to rewrite it.",
                stacklevel=2,
            )
        parts.append(
            f"<h3>Summary at the final epoch</h3><p class='meta'>kNN graph {html.escape(graph_note)}. "
            "TP = total persistence (p=1) of finite pairs; W1 = Wasserstein-1 (L-inf ground) "
            "between the first and the final epoch's split-tree diagram.</p>"
        )
        # One pass over the stored diagrams feeds both the table and the figures.
        summary = analysis.summarize(runs)
        wdist = analysis.wasserstein_to_reference(runs)
        parts.append(_table_html(run_table(runs, summary=summary, wasserstein=wdist)))
        topo = write_figure_set(
            runs,
            fig_root / "topology",
            epochs=epochs,
            progress=progress,
            summary=summary,
            wasserstein=wdist,
        )
        parts.append(f"<h3>{_SECTION_TITLES['topology']}</h3><div class='figs'>")
        parts += [_img(p) for p in topo]
        parts.append("</div>")
        land, land_table = _landscape_section(exp, fig_root / "landscape")
        compare = _comparison(runs, exp, fig_root / "landscape")
        if compare is not None:
            land.insert(0, compare)
        if land:
            parts.append(f"<h3>{_SECTION_TITLES['landscape']}</h3>")
            if land_table is not None:
                parts.append(_table_html(land_table))
            parts.append("<div class='figs'>" + "".join(_img(p) for p in land) + "</div>")
        run_pngs, regions = _run_samples(runs)
        folders = {
            p.name: sorted(p.rglob("*.png"))
            for p in fig_root.iterdir()
            if p.is_dir() and p.name not in ("topology", "landscape")
        }
        # The demo draws into <report>/figures/<exp>/samples, the samples command into each
        # run's samples/ folder; both belong to one section.
        seen = {p.name for p in folders.get("samples", [])}
        folders["samples"] = folders.get("samples", []) + [
            p for p in run_pngs if p.name not in seen
        ]
        for sub in sorted(folders):
            pngs = folders[sub]
            table = regions if sub == "samples" else None
            if pngs or table is not None:
                parts.append(f"<h3>{html.escape(_SECTION_TITLES.get(sub, sub))}</h3>")
                if table is not None:
                    parts.append(
                        "<p class='meta'>Most persistent regions found by <code>sampletopo "
                        "samples</code>: split-tree peaks are high-loss (hard) regions, join-tree "
                        "basins low-loss (learned) ones.</p>" + _table_html(table)
                    )
                if pngs:
                    parts.append("<div class='figs'>" + "".join(_img(p) for p in pngs) + "</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    index = out / "index.html"
    return write_atomic(index, lambda fh: fh.write("\n".join(parts).encode("utf-8")))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1500px;color:#222;padding:0 1em}
h1{margin-bottom:0}.meta{color:#666;font-size:90%}
table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;flex:1 1 640px;max-width:100%}
figure.wide{flex-basis:100%}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:80%;color:#555}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:85%}section{border-top:2px solid #ddd;margin-top:2em}
"""
