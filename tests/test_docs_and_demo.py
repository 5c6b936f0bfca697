"""What a new user runs first: the README example, the notebook, the demo (tiny settings)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_api_example_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The API in ten lines\s+```python\n(.*?)```", text, re.S)
    assert block, "README lost its API example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 12
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3
    total, n_pairs = lines[0].split()
    assert float(total) > 0 and int(n_pairs) > 0
    assert float(lines[2]) > 0  # scaling the loss moves the diagram


def test_notebook_runs_on_tiny_settings(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "walkthrough.ipynb", as_version=4)
    os.environ["SAMPLETOPO_NB_EPOCHS"] = "2"
    os.environ["SAMPLETOPO_NB_OUT"] = str(tmp_path / "nb")
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        os.environ.pop("SAMPLETOPO_NB_EPOCHS")
        os.environ.pop("SAMPLETOPO_NB_OUT")
    assert (tmp_path / "nb" / "report" / "index.html").is_file()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


def test_demo_end_to_end_tiny(tmp_path):
    import torch

    from sampletopo.demo import DemoSettings, run_demo

    torch.set_num_threads(1)
    s = DemoSettings(
        epochs=2, landscape_steps=5, landscape_3d_steps=3, landscape_samples=64, top_regions=2
    )
    index = run_demo(tmp_path / "demo", settings=s, progress=False)
    html = index.read_text()
    for needle in (
        "lr-study",
        "skip-study",
        "lr=0.1",
        "lr=0.01",
        "skip=true",
        "skip=false",
        "Parameter space",
        "Which samples make the shape",
    ):
        assert needle in html, needle
    assert html.count("data:image/png;base64,") >= 20
    # The timings are plain text under the title, not HTML shown escaped.
    assert "<p class='meta'>Demo timings on this machine: train + record" in html
    assert "&lt;" not in html.split("<nav>", 1)[0]
    figs = {p.name for p in (tmp_path / "demo" / "report" / "figures").rglob("*.png")}
    assert any(n.startswith("heatmap-val-split") for n in figs)
    assert any("contour" in n or "random" in n for n in figs), figs
    assert "comparison-random-directions-vs-heatmaps.png" in figs


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["topology", "/nonexistent/run"], "is not a run folder"),
        (["report", "/nonexistent/exp"], "is not a run folder"),
    ],
)
def test_cli_bad_input_is_one_clear_line(argv, needle):
    out = subprocess.run(
        [sys.executable, "-m", "sampletopo", *argv], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert needle in out.stderr and "Traceback" not in out.stderr
