"""The experiment scripts take anyone's weights on any supported benchmark: ``--weights MODEL=PATH`` reaches the
tracker (the boxes written are those of the given weights, not of the shipped ones), ``--dataset/--root`` replaces
the held-out sets, and bad flags are refused naming the item."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxtrack import tracking
from jaxtrack.eval.benchmark import result_path
from jaxtrack.eval.heldout import parse_weights

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 1, SyntheticConfig(num_frames=4, height=120, width=160), seed=5)
    return root


def _random_tiny_weights_folder(tmp_path, seed: int):
    """``(tracker, variables, folder)``: random ``siamfcpp_tiny`` weights saved as a converted weights folder (what
    ``jaxtrack convert`` writes), as a user's checkpoint would reach the experiments."""
    from jaxtrack.weights.store import new_card, save_weights

    tracker = tracking.create("siamfcpp_tiny")
    variables = tracker.init_variables(jax.random.key(seed))
    return tracker, variables, save_weights(tmp_path / "converted", variables, new_card("tracker", "siamfcpp_tiny",
                                                                                         variables))


def test_weights_flag_reaches_the_tracker(synthetic_root, tmp_path):
    """Random ``siamfcpp_tiny`` weights saved as a converted weights folder: attack_table's clean cell writes the
    boxes those weights track (compared with tracking them directly; the results file rounds to 1e-4 px), which
    differ from the bundled weights' boxes."""
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.weights import load_weights

    tracker, random_vars, folder = _random_tiny_weights_folder(tmp_path, 3)
    results = tmp_path / "results"
    _script("attack_table").run(["--grid", "smoke", "--models", "siamfcpp_tiny",
                                 "--weights", f"siamfcpp_tiny={folder}", "--dataset", "synthetic",
                                 "--root", str(synthetic_root), "--results", str(results),
                                 "--docs", str(tmp_path / "docs")])
    seq = load_dataset("synthetic", synthetic_root)[0]
    frames = np.stack([seq.frame(i) for i in range(seq.num_frames)])
    written = np.loadtxt(result_path(results, "synthetic", tracker.name, seq.name), delimiter=",")
    expected, _ = tracker.track_sequence(random_vars, frames, seq.init_box)
    np.testing.assert_allclose(written, np.asarray(expected), atol=2e-3)
    shipped, _ = tracker.track_sequence(load_weights(tracker, "bundled").variables, frames, seq.init_box)
    assert np.abs(np.asarray(shipped) - written)[1:].max() > 1.0
    # each cell's wall and CPU time is recorded; a second run tracks nothing and reports the first run's times
    times = json.loads((results / "cell_seconds.json").read_text())
    assert len(times) == 2 and all(t["wall"] > 0 and t["cpu"] > 0 for t in times.values()), times
    first_table = (tmp_path / "docs" / "attack_table.md").read_text()
    assert all(f"| {t['cpu']:.0f} | {t['wall']:.0f} |" in first_table for t in times.values())
    _script("attack_table").run(["--grid", "smoke", "--models", "siamfcpp_tiny",
                                 "--weights", f"siamfcpp_tiny={folder}", "--dataset", "synthetic",
                                 "--root", str(synthetic_root), "--results", str(results),
                                 "--docs", str(tmp_path / "docs")])
    assert json.loads((results / "cell_seconds.json").read_text()) == times
    assert (tmp_path / "docs" / "attack_table.md").read_text() == first_table


def test_template_refinement_runs_mtp_protocol_with_given_weights(synthetic_root, tmp_path):
    """``template_refinement.py --mtp`` on a SiamFC++ with a user's weights folder: the baseline and the N = 16
    refined tracker with MTP's loss (its result folder says ``-mtp``) run on the given dataset; the clean boxes are
    those of the given weights."""
    from jaxtrack.data.datasets import load_dataset

    tracker, random_vars, folder = _random_tiny_weights_folder(tmp_path, 3)
    results = tmp_path / "results"
    _script("template_refinement").run(["--mtp", "--models", "siamfcpp_tiny", "--weights", f"siamfcpp_tiny={folder}",
                                        "--dataset", "synthetic", "--root", str(synthetic_root),
                                        "--results", str(results), "--docs", str(tmp_path / "docs")])
    seq = load_dataset("synthetic", synthetic_root)[0]
    frames = np.stack([seq.frame(i) for i in range(seq.num_frames)])
    expected, _ = tracker.track_sequence(random_vars, frames, seq.init_box)
    written = np.loadtxt(result_path(results, "synthetic", tracker.name, seq.name), delimiter=",")
    np.testing.assert_allclose(written, np.asarray(expected), atol=2e-3)
    assert result_path(results, "synthetic", f"{tracker.name}_refine16-mtp", seq.name).is_file()
    table = (tmp_path / "docs" / "template_refinement.md").read_text()
    assert "| siamfcpp_tiny | synthetic | 16 |" in table


def test_defense_table_defends_the_given_weights(synthetic_root, tmp_path):
    """``defense_table.py --weights`` with random ``siamfcpp_tiny`` weights saved as a converted weights folder: its
    clean cell tracks with those weights, and its defended cell with them behind the shipped U-Net (both compared
    with tracking directly, built with the public defense API; the results file rounds to 1e-4 px)."""
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.defense import defended_from_checkpoint

    tracker, random_vars, folder = _random_tiny_weights_folder(tmp_path, 4)
    results = tmp_path / "results"
    _script("defense_table").run(["--grid", "smoke", "--plan", "siamfcpp_tiny=synthetic",
                                  "--weights", f"siamfcpp_tiny={folder}", "--dataset", "synthetic",
                                  "--root", str(synthetic_root), "--convergence-pairs", "0", "--cost-iters", "0",
                                  "--results", str(results), "--docs", str(tmp_path / "docs")])
    seq = load_dataset("synthetic", synthetic_root)[0]
    frames = np.stack([seq.frame(i) for i in range(seq.num_frames)])
    defended, defended_vars = defended_from_checkpoint(tracker, random_vars, "bundled")
    for t, v in ((tracker, random_vars), (defended, defended_vars)):
        expected, _ = t.track_sequence(v, frames, seq.init_box)
        written = np.loadtxt(result_path(results, "synthetic", t.name, seq.name), delimiter=",")
        np.testing.assert_allclose(written, np.asarray(expected), atol=2e-3, err_msg=t.name)


def test_bad_flags_are_refused(tmp_path):
    assert parse_weights([f"siamfcpp_tiny={tmp_path}"]) == {"siamfcpp_tiny": str(tmp_path)}
    for item, needle in (("siamfcpp_tiny", "expected MODEL=PATH"), ("nosuch=x", "unknown tracker 'nosuch'"),
                         (f"siamfcpp_tiny={tmp_path / 'missing'}", "not found")):
        with pytest.raises(SystemExit, match=needle):
            parse_weights([item])
    with pytest.raises(SystemExit, match="needs --root"):
        _script("attack_table").run(["--dataset", "otb100"])


def test_strong_grid_attacks_every_shipped_unet_with_pgd100_from_five_starts():
    """``defense_table.py --grid strong``: per shipped NanoTrack U-Net, the defended reference, adaptive PGD-10,
    and adaptive PGD-100 from 5 random starts with the Dua-Loss and the margin loss; the attack reaching the tracker
    is Madry's PGD (random start, step 2.5 ε / steps = 0.2 px at ε 8), and the Dua-Loss cells come first."""
    dt = _script("defense_table")
    unets = dt.own_unets("nanotrack_v2")
    cells = dt.grid("strong", "nanotrack_v2", ("search",))
    strong = [c for c in cells if c.steps == 100]
    assert [(c.loss, c.defense) for c in strong] == [(loss, u) for loss in ("dua", "margin") for u in unets]
    for c in strong:
        attack = c.online()
        assert c.condition == "adaptive" and attack.target == "search"
        assert attack.config.restarts == 5 and attack.config.steps == 100 and attack.config.random_start
        assert attack.config.step_size == pytest.approx(0.2) and attack.config.eps == 8.0
        assert attack.describe().endswith("-r5")
    assert {c.defense for c in cells if c.condition == "defended"} == set(unets)
    assert cells[0].condition == "clean"


def test_where_ablation_attacks_the_branch_each_unet_defends():
    """``defense_table.py --grid headline``: a U-Net on one branch is scored against the attack on that branch and
    on both crops, never only against the attack on the other branch (which it cannot see)."""
    dt = _script("defense_table")
    cells = [c for c in dt.grid("headline", "nanotrack_v2") if c.ablation == "where" and c.attack is not None]
    assert sorted((c.where, c.target) for c in cells) == [("search", "both"), ("search", "search"),
                                                          ("template", "both"), ("template", "template")]
    for c in cells:
        tracker, _ = c.tracker(tracking.create("nanotrack_v2"), None)
        assert tracker.attack.target == c.target and tracker.name.endswith("-via-nanotrack_v2")


def test_all_grid_is_every_surface_then_the_strong_attack_on_the_first_frames():
    """``defense_table.py --grid all``: the surfaces grid on whole sequences (the margin loss on every crop), then
    the strong grid on the search crop with its own clean reference, all on the first ``strong_frames`` frames."""
    dt = _script("defense_table")
    cells = dt.grid("all", "nanotrack_v2", strong_frames=15)
    whole = [c for c in cells if c.frames == 0]
    # hand-counted: clean, 3 attacked PGD surfaces, IoU; per U-Net (fixed, min-max): defended, 3 non-adaptive,
    # 3 adaptive, 3 adaptive margin, black box; then clean, per U-Net defended + PGD-10, 2 losses x 2 U-Nets PGD-100
    assert dt.own_unets("nanotrack_v2") == ["bundled", "bundled-minmax"]
    assert len(whole) == 5 + 2 * 11 and len(cells) == len(whole) + 1 + 2 * 2 + 4
    assert len(set(cells)) == len(cells)
    # on whole sequences (strong_frames 0) the strong part adds only its PGD-100 cells, never a cell twice
    whole_strong = dt.grid("all", "nanotrack_v2", strong_frames=0)
    assert len(set(whole_strong)) == len(whole_strong) == len(whole) + 4
    assert {c.target for c in whole if c.loss == "margin"} == {"search", "template", "both"}
    first = [c for c in cells if c.frames]
    assert {c.frames for c in first} == {15} and first[0].condition == "clean"
    assert {(c.steps, c.restarts) for c in first if c.attack} == {(10, 1), (100, 5)}
    assert {c.target for c in first if c.attack} == {"search"}


def test_summary_pivots_cells_into_one_row_per_attack():
    """The consolidated table: the undefended attacked cell fills both the non-adaptive and the adaptive row of its
    attack; a U-Net cell its own column; every ratio divides by the clean cell of the same set and frames
    (hand-worked: 0.3 / 0.6 = 0.50, 0.2 / 0.8 = 0.25, 0.12 / 0.8 = 0.15)."""
    dt = _script("defense_table")
    pgd = dict(attack="pgd", loss="dua", eps=8.0, steps=10)
    cells = [(dt.Cell("clean"), 0.8), (dt.Cell("attacked", **pgd), 0.12), (dt.Cell("adaptive", **pgd), 0.2),
             (dt.Cell("non-adaptive", **pgd, defense="bundled-minmax"), 0.6),
             (dt.Cell("clean", frames=15), 0.6), (dt.Cell("adaptive", **pgd, frames=15), 0.3),
             (dt.Cell("non-adaptive", **pgd, where="search", ablation="where"), 0.7)]  # not in the summary
    rows = [{"model": "m", "set": "otb", "cell": c, "auc": a} for c, a in cells]
    lines = dt.summary_tables(rows)
    table = [line for line in lines if line.startswith("| ") and "kind" not in line]
    assert table == [
        "| none | – | – | whole | 0.800 (1.00×) | – | – |",
        "| non-adaptive | PGD-10 dua ε8 | search | whole | 0.120 (0.15×) | – | 0.600 (0.75×) |",
        "| adaptive | PGD-10 dua ε8 | search | whole | 0.120 (0.15×) | 0.200 (0.25×) | – |",
        "| none | – | – | first 15 | 0.600 (1.00×) | – | – |",
        "| adaptive | PGD-10 dua ε8 | search | first 15 | – | 0.300 (0.50×) | – |",
    ]
    assert "fixed-perturbation U-Net" in lines[2] and "min-max U-Net" in lines[2]


def test_a_cell_on_the_first_frames_tracks_only_those_into_its_own_folder(synthetic_root, tmp_path):
    """``Cell(frames=N)``: the runner tracks the first N frames of each sequence into ``RESULTS/first<N>`` (the
    layout of ``--max-frames``), so whole-sequence results of the same tracker are never mixed with it; never on a
    VOT set."""
    from jaxtrack.data.datasets import load_dataset

    dt = _script("defense_table")
    tracker = tracking.create("siamfcpp_tiny")
    variables = tracker.init_variables(jax.random.key(0))
    seqs = list(load_dataset("synthetic", synthetic_root))
    rows = dt.run_cells("siamfcpp_tiny", variables, ["synthetic"], [dt.Cell("clean", frames=2)],
                        {"synthetic": ("synthetic", seqs)}, str(tmp_path))
    written = np.loadtxt(result_path(tmp_path / "first2", "synthetic", tracker.name, seqs[0].name), delimiter=",")
    assert written.shape == (2, 4) and rows[0]["frames"] == 2 * len(seqs)
    assert not result_path(tmp_path, "synthetic", tracker.name, seqs[0].name).exists()
    # on a VOT set such a cell is skipped before tracking: EAO is undefined on sequences shorter than 100 frames
    assert dt.run_cells("siamfcpp_tiny", variables, ["vot"], [dt.Cell("clean", frames=2)],
                        {"vot": ("vot2018", seqs)}, str(tmp_path / "vot")) == []
    assert not (tmp_path / "vot").exists()


def test_full_attack_grid_table_has_a_column_per_budget():
    """``attack_table.py --grid full``: a row per attack, loss and target in grid order, a column per ε, each score
    with its ratio to the clean score (hand-worked: 0.2 / 0.8 = 0.25); a cell not run shows ``–``."""
    at = _script("attack_table")
    cells = [at.Cell("pgd", "dua", "search", 2.0), at.Cell("pgd", "dua", "search", 8.0),
             at.Cell("fgsm", "cls", "both", 8.0)]
    scores = [{"success_auc": a, "precision": 1.0} for a in (0.8, 0.6, 0.2, 0.4)]
    rows = [("m", "OTB", c, s) for c, s in zip([None] + cells, scores)]
    lines = at.budget_tables(rows)
    assert lines[0] == "**m, OTB**: clean 0.800; attacked score (÷ clean) per budget:"
    assert lines[2:6] == ["| attack | loss | target | ε 2 | ε 8 |", "|---|---|---|---|---|",
                          "| PGD-10 | dua | search | 0.600 (0.75×) | 0.200 (0.25×) |",
                          "| FGSM | cls | both | – | 0.400 (0.50×) |"]
