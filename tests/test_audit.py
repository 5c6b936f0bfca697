"""Tests of sampletopo.audit: the baselines on hand-computed cases, the measures against
scikit-learn, the topological score and regions on a hand-worked graph, and a real digits run
with a planted mislabeled cluster (LossRecorder, compute_topology, the CLI)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from sampletopo._errors import ParameterError, RunFolderError
from sampletopo.audit import (
    area_under_margin,
    audit_regions,
    audit_run,
    auroc,
    cartography,
    forgetting_events,
    precision_at,
    review_items,
    topological_scores,
)
from sampletopo.data import Dataset, load_dataset
from sampletopo.graph import graph_from_edges

# ---------------------------------------------------------------------------------------------
# Baselines on hand cases


def test_forgetting_counts_correct_to_wrong_transitions():
    # Columns: flips correct/wrong twice (2 events), wrong then learned (0), learned then
    # forgotten once at the end (1), never correct (inf: ranked first), always correct (0).
    correct = np.array(
        [
            [1, 0, 1, 0, 1],
            [0, 0, 1, 0, 1],
            [1, 1, 1, 0, 1],
            [0, 1, 0, 0, 1],
        ],
        dtype=bool,
    )
    assert forgetting_events(correct).tolist() == [2.0, 0.0, 1.0, np.inf, 0.0]


def test_cartography_confidence_is_the_mean_true_class_probability(rng):
    logits = torch.tensor(rng.normal(size=(5, 7, 4)) * 3)  # epochs, samples, classes
    labels = torch.tensor(rng.integers(0, 4, size=7))
    losses = np.stack(
        [torch.nn.functional.cross_entropy(lg, labels, reduction="none").numpy() for lg in logits]
    )
    p_true = torch.softmax(logits, dim=2)[:, torch.arange(7), labels].numpy()
    conf, var = cartography(losses)
    np.testing.assert_allclose(conf, p_true.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, p_true.std(axis=0), rtol=1e-9, atol=1e-15)


def test_aum_is_the_mean_margin():
    margins = [[2.0, -1.0, 0.5], [0.0, -3.0, 0.5], [1.0, 1.0, 0.5]]
    np.testing.assert_allclose(area_under_margin(margins), [1.0, -1.0, 0.5])


def test_auroc_matches_sklearn_with_ties(rng):
    from sklearn.metrics import roc_auc_score

    for _ in range(20):
        y = rng.random(40) < 0.3
        y[:2] = [True, False]
        s = rng.integers(0, 5, size=40).astype(float)  # many ties
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # Hand case: pairs (pos, neg) = (0.9 vs 0.1: win), (0.9 vs 0.9: tie), (0.5 vs 0.1: win),
    # (0.5 vs 0.9: loss) -> (1 + 0.5 + 1 + 0) / 4.
    assert auroc([True, False, False, True], [0.9, 0.1, 0.9, 0.5]) == 0.625
    # +inf (never learned) ranks above everything.
    assert auroc([True, False, False], [np.inf, 3.0, 2.0]) == 1.0


def test_precision_and_review_items_on_hand_cases():
    flipped = [True, False, True, False, False, True]
    scores = [0.9, 0.8, 0.1, 0.7, 0.0, 0.6]
    # Top 3 by score: 0, 1, 3 -> one flipped of three.
    assert precision_at(flipped, scores) == pytest.approx(1 / 3)
    assert precision_at(flipped, scores, k=1) == 1.0
    # 80 % of 3 flipped = 3 (ceil 2.4): ranks 0, 1, 3, 5, 2 -> the 5th item.
    assert review_items(flipped, scores) == 5
    # Region [2, 5] first (one item, two flipped), then 0 (third flipped): 2 items, 3 samples.
    assert review_items(flipped, scores, regions=[[2, 5]]) == 2
    assert review_items(flipped, scores, regions=[[2, 5]], count="samples") == 3


# ---------------------------------------------------------------------------------------------
# The topological score and regions on a hand-worked graph


def test_topological_score_and_regions_on_a_hand_worked_path():
    # Path 0-1-2-3-4-5-6, losses below. Split tree (descending sweep): 6 (7.0) is the essential
    # peak; 1 (5.0) is born next and grows to {0, 1, 2}; it dies at the saddle 3 (0.5) when it
    # meets {4, 5, 6}: persistence 4.5, region {0, 1, 2}. Peak 4 (3.0) meets 6 at 5 (2.0):
    # persistence 1.0, region {4}. The essential peak is cut where the most persistent other
    # peak (1) joins it, at 3: persistence 6.5, region {4, 5, 6}.
    g = graph_from_edges(7, [[i, i + 1] for i in range(6)])
    loss = np.array([1.0, 5.0, 4.0, 0.5, 3.0, 2.0, 7.0])
    np.testing.assert_allclose(
        topological_scores(g, loss[None]), [4.5, 4.5, 4.5, 0.0, 6.5, 6.5, 6.5]
    )
    # Two epochs: mean and max over epochs of the per-epoch score; the second epoch is flat
    # except for sample 0 (the essential peak, cut at the lowest vertex: region everything).
    two = np.stack([loss, [1.0, 0, 0, 0, 0, 0, 0]])
    assert topological_scores(g, two, aggregate="max").tolist() == [
        4.5,
        4.5,
        4.5,
        1.0,
        6.5,
        6.5,
        6.5,
    ]
    np.testing.assert_allclose(
        topological_scores(g, two, aggregate="mean"), [2.75, 2.75, 2.75, 0.5, 3.75, 3.75, 3.75]
    )
    labels = np.array([0, 1, 1, 0, 0, 0, 0])
    preds = np.array([0, 0, 0, 0, 0, 0, 0])
    reg = audit_regions(g, loss[None], labels, preds, top=3, rank_by="persistence")
    # Members in sweep order (highest loss first).
    assert reg["members"].to_list() == [[6, 4, 5], [1, 2, 0], [4]]
    assert reg["persistence"].to_list() == [6.5, 4.5, 1.0]
    assert reg["disagree_share"].to_list() == pytest.approx([0.0, 2 / 3, 0.0])
    # By disagreement: 4.5 * 2/3 = 3 first, then the others (0) by persistence.
    reg = audit_regions(g, loss[None], labels, preds, top=2)
    assert reg["audit_rank"].to_list() == [1, 2]
    assert reg["rank"].to_list() == [2, 1]
    assert reg["members"].to_list() == [[1, 2, 0], [6, 4, 5]]
    # Regions larger than max_size are left out (only the one-member peak is left here).
    reg = audit_regions(g, loss[None], labels, preds, top=3, max_size=2)
    assert reg["members"].to_list() == [[4]] and reg["audit_rank"].to_list() == [1]


def test_topological_scores_refuse_bad_input():
    g = graph_from_edges(3, [[0, 1], [1, 2]])
    with pytest.raises(ParameterError, match="'losses'.*one column per vertex"):
        topological_scores(g, np.zeros((2, 4)))
    with pytest.raises(ParameterError, match="'aggregate'.*'mean'"):
        topological_scores(g, np.zeros((2, 3)), aggregate="median")
    with pytest.raises(ParameterError, match="finite losses"):
        topological_scores(g, [[0.0, np.nan, 1.0]])


# ---------------------------------------------------------------------------------------------
# A real run with a planted mislabeled cluster


def _planted_cluster(n_flip: int = 14):
    base = load_dataset("digits", seed=0)
    X, y = base.features("train"), base.labels("train")
    same = np.flatnonzero(y == y[0])
    group = same[np.argsort(((X[same] - X[0]) ** 2).sum(1), kind="stable")][:n_flip]
    y2 = y.copy()
    y2[group] = (y[0] + 5) % 10
    ds = Dataset.from_arrays(
        "digits-cluster",
        train=(X.reshape(-1, 1, 8, 8), y2),
        val=(base.features("val").reshape(-1, 1, 8, 8), base.labels("val")),
    )
    return ds, group


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from sampletopo import LossRecorder

    torch.set_num_threads(1)
    ds, group = _planted_cluster()
    run = tmp_path_factory.mktemp("audit") / "exp" / "run"
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    x, y = ds.tensors("train")
    with LossRecorder(run, ds, splits=("train",)) as rec:
        for ep in range(1, 11):
            perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(ep))
            for i in range(0, x.shape[0], 64):
                idx = perm[i : i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            rec.on_train_epoch_end(ep, model)
    return run, group


def test_audit_needs_topology_and_a_recorded_split(planted):
    run, _ = planted
    with pytest.raises(RunFolderError, match=r"`sampletopo topology .* --splits train` first"):
        audit_run(run, split="train", progress=False)
    with pytest.raises(ParameterError, match="'split' parameter of audit_run.*'test'"):
        audit_run(run, split="test", progress=False)
    with pytest.raises(RunFolderError, match="no recorded losses of split 'val'.*sampletopo"):
        audit_run(run, split="val", progress=False)
    with pytest.raises(RunFolderError, match=r"experiment folder.*one run.*Its runs: run\."):
        audit_run(run.parent, progress=False)
    with pytest.raises(RunFolderError, match="does not exist"):
        audit_run(run.parent / "nope", progress=False)


def test_planted_cluster_is_the_top_region_and_scores_are_deterministic(planted):
    from sampletopo import compute_topology

    run, group = planted
    compute_topology(run, splits=["train"], k=20, progress=False)
    a = audit_run(run, split="train", top=5, progress=False)
    top = a.regions.row(0, named=True)
    members = set(top["members"])
    flipped = set(group.tolist())
    # The top region holds most of the cluster, and the cluster is most of the region
    # (base rate 14 / 1438 < 1 %).
    assert len(members & flipped) >= 0.75 * len(flipped), (top["size"], len(members & flipped))
    assert len(members & flipped) / len(members) >= 0.5
    # Every method ranks the cluster far above chance.
    truth = np.zeros(a.samples.height, dtype=bool)
    truth[group] = True
    by_sample = a.samples.sort("sample")
    for m in a.methods:
        assert auroc(truth, by_sample[m].to_numpy()) > 0.8, m
    assert "aum" in a.methods  # the LossRecorder records margins (eval mode)
    b = audit_run(run, split="train", top=5, progress=False)
    assert a.samples.equals(b.samples)
    assert a.regions.equals(b.regions)


def test_cli_writes_tables_and_figures(planted, capsys):
    from sampletopo import compute_topology
    from sampletopo.cli import main
    from sampletopo.runs import Run

    run, group = planted
    compute_topology(run, splits=["train"], k=20, progress=False)
    assert main(["audit", str(run), "--top", "3", "--figures", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    r = Run(run)
    regions = pl.read_parquet(r.audit_file("train", "regions"))
    samples = pl.read_parquet(r.audit_file("train", "samples"))
    assert regions.height == 3 and samples.height == 1438
    assert regions["audit_rank"].to_list() == [1, 2, 3]
    assert samples["topo_rank"].to_list() == list(range(1, 1439))
    assert r.audit_figure("train", 1).is_file() and r.audit_figure("train", 2).is_file()
    assert not r.audit_figure("train", 3).exists()
    assert "suspect regions" in out and "wrote" in out
    assert main(["audit", str(run), "--split", "val"]) == 2
    assert "no recorded losses of split 'val'" in capsys.readouterr().err
    assert main(["audit", str(run), "--figures", "-1"]) == 2
    assert "'--figures' flag" in capsys.readouterr().err
    assert main(["audit", str(run.parent / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


# ---------------------------------------------------------------------------------------------
# The margin column


def test_recorder_writes_margins_and_the_audit_uses_them(planted):
    from sampletopo.readers import read_loss_table
    from sampletopo.recorder import _margins
    from sampletopo.runs import MARGIN_COLUMN, Run

    # Hand case: logits (2, 5, 1) label 0 -> 2 - 5 = -3; label 1 -> 5 - 2 = 3.
    lg = torch.tensor([[2.0, 5.0, 1.0], [2.0, 5.0, 1.0]])
    assert _margins(lg, torch.tensor([0, 1])).tolist() == [-3.0, 3.0]
    run, _ = planted
    r = Run(run)
    df = read_loss_table(r, split="train", epoch=10, columns=["loss", MARGIN_COLUMN])
    m = df[MARGIN_COLUMN].to_numpy()
    # A positive margin means the label is the top class: the prediction is correct.
    correct = read_loss_table(r, split="train", epoch=10, columns=["correct"])["correct"]
    assert ((m > 0) == correct.to_numpy()).all()
    from sampletopo import compute_topology

    compute_topology(run, splits=["train"], k=20, progress=False)
    a = audit_run(run, split="train", top=2, methods=["aum", "loss_mean"], progress=False)
    assert a.methods == ("aum", "loss_mean") and a.notes == ()
    margins = np.stack(
        [
            read_loss_table(r, split="train", epoch=e, columns=[MARGIN_COLUMN])[
                MARGIN_COLUMN
            ].to_numpy()
            for e in r.loss_epochs("train")
        ]
    )
    s = a.samples.sort("sample")
    np.testing.assert_allclose(s["area_under_margin"].to_numpy(), margins.mean(axis=0))
    np.testing.assert_allclose(s["aum"].to_numpy(), -margins.mean(axis=0))  # the suspicion


def test_old_tables_without_margins_read_and_aum_is_unavailable(tmp_path):
    from sampletopo import LossRecorder, compute_topology

    torch.set_num_threads(1)
    ds = load_dataset("synthetic", seed=0)
    run = tmp_path / "exp" / "old"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, ds.num_classes))
    with LossRecorder(run, ds, splits=("train",)) as rec:
        for ep in range(3):
            x, y = ds.tensors("train")
            with torch.no_grad():
                out = model(x)
            loss = torch.nn.functional.cross_entropy(out.double(), y, reduction="none")
            # As an older sampletopo wrote them: no margins.
            rec.write("train", ep, loss.numpy(), out.argmax(1).numpy())
    compute_topology(run, splits=["train"], k=10, progress=False)
    a = audit_run(run, split="train", top=2, methods=["aum", "forgetting"], progress=False)
    assert a.methods == ("forgetting",)
    assert len(a.notes) == 1 and a.notes[0].startswith("aum: unavailable")
    assert a.samples["area_under_margin"].null_count() == a.samples.height
    assert "aum" not in a.samples.columns
    from sampletopo.audit import _tables
    from sampletopo.runs import Run

    # Epoch 0 (the untrained model) is left out of every method.
    assert _tables(Run(run), "train")["epochs"].tolist() == [1, 2]


def test_audit_of_a_trained_experiment_shows_in_the_report(experiment, tmp_path, capsys):
    from sampletopo.cli import main
    from sampletopo.report import write_report
    from sampletopo.runs import Run

    out, runs = experiment
    run = Run(runs[0])
    assert main(["audit", str(run.path), "--top", "4", "--figures", "1", "--no-progress"]) == 0
    page = write_report(out, tmp_path / "report", progress=False).read_text()
    assert "Label audit: suspect regions" in page
    assert "<figcaption>train-region-01</figcaption>" in page


def test_methods_must_be_a_sequence_of_known_names():
    from sampletopo.audit import suspicion_scores

    g = graph_from_edges(3, [[0, 1], [1, 2]])
    tables = {"loss": np.ones((2, 3)), "correct": np.ones((2, 3), bool), "label": np.zeros(3)}
    with pytest.raises(ParameterError, match=r"'methods'.*Pass \['aum'\]"):
        suspicion_scores(tables, graph=g, methods="aum")
    with pytest.raises(ParameterError, match="'methods'.*'topology'"):
        suspicion_scores(tables, graph=g, methods=["margin"])
    scores, extra, notes = suspicion_scores(tables, graph=g, methods=["loss_mean", "aum"])
    assert list(scores) == ["loss_mean"] and notes[0].startswith("aum: unavailable")
    # Cartography needs cross-entropy losses (exp(-loss) = true-class probability).
    scores, extra, notes = suspicion_scores(
        tables, graph=g, methods=["cartography", "loss_final"], loss_name="mse"
    )
    assert list(scores) == ["loss_final"] and notes[0].startswith("cartography: skipped")
    assert np.isnan(extra["confidence"]).all()


def test_signal_data_gets_line_plots_of_its_regions(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from sampletopo import LossRecorder, compute_topology
    from sampletopo.audit import write_audit
    from sampletopo.runs import Run

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    t = np.linspace(0, 6.3, 40)
    x = (np.sin(np.outer(y + 1, t)) + 0.3 * rng.normal(size=(240, 40))).astype(np.float32)
    x = ((x - x.min()) / (x.max() - x.min()))[:, None, :]  # (n, 1, 40) signals in [0, 1]
    y_noisy = y.copy()
    y_noisy[:12] = (y[:12] + 1) % 3
    ds = Dataset.from_arrays("sig", train=(x, y_noisy), val=(x[:30], y[:30]))
    assert ds.kind == "signal"
    run = tmp_path / "exp" / "run"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = ds.tensors("train")
    with LossRecorder(run, ds, splits=("train",)) as rec:
        for ep in range(1, 6):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()
            rec.on_train_epoch_end(ep, model)
    compute_topology(run, splits=["train"], k=8, progress=False)
    a = audit_run(run, top=3, progress=False)
    paths = write_audit(a, run, figures=1)
    r = Run(run)
    assert paths[-1] == r.audit_figure("train", 1) and paths[-1].stat().st_size > 0
    # AUROC of the flipped first 12 under the loss is far above chance.
    truth = np.zeros(240, dtype=bool)
    truth[:12] = True
    assert auroc(truth, a.samples.sort("sample")["loss_mean"].to_numpy()) > 0.8
