"""The ``jaxtrack`` command line: track, demo, help and error reporting."""

import numpy as np
import pytest

from jaxtrack.cli import main
from jaxtrack.data.synthetic import SyntheticConfig, generate_sequence, write_otb_sequence


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory):
    frames, boxes = generate_sequence(SyntheticConfig(num_frames=7), seed=3)
    root = tmp_path_factory.mktemp("seq")
    return write_otb_sequence(root, "toy", frames, boxes), boxes


@pytest.mark.parametrize("command", [[], ["track"], ["demo"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--help"])
    assert exit_info.value.code == 0
    assert "usage: jaxtrack" in capsys.readouterr().out


def test_track_writes_one_box_per_frame(synthetic_folder, tmp_path, capsys):
    folder, boxes = synthetic_folder
    out = tmp_path / "boxes.txt"
    assert main(["track", "--model", "siamrpn_alex", "--sequence", str(folder), "--out", str(out),
                 "--chunk-size", "4"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 7
    first = np.array([float(v) for v in lines[0].split(",")])
    np.testing.assert_allclose(first, boxes[0], atol=1e-3)  # frame 0 reports the initial box (0-based)
    stdout = capsys.readouterr().out
    assert "RANDOM weights" in stdout and "7 boxes written" in stdout


def test_track_with_explicit_init_and_render(synthetic_folder, tmp_path):
    folder, _ = synthetic_folder
    out, video = tmp_path / "b.txt", tmp_path / "b.mp4"
    assert main(["track", "--model", "siamrpn_alex", "--sequence", str(folder), "--init", "20,30,40,50",
                 "--out", str(out), "--render", str(video), "--chunk-size", "4"]) == 0
    assert out.read_text().splitlines()[0] == "20.0000,30.0000,40.0000,50.0000"
    assert video.stat().st_size > 0


def test_track_reports_bad_input(tmp_path, capsys):
    (tmp_path / "empty" / "img").mkdir(parents=True)
    code = main(["track", "--model", "siamrpn_alex", "--sequence", str(tmp_path / "empty"), "--out", "x.txt"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "empty" in err


def test_track_rejects_malformed_init(synthetic_folder, capsys):
    folder, _ = synthetic_folder
    with pytest.raises(SystemExit):
        main(["track", "--model", "siamrpn_alex", "--sequence", str(folder), "--init", "1,2,3", "--out", "x.txt"])
    assert "4 values" in capsys.readouterr().err


def test_demo_table_and_plot(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--sequences", "2", "--frames", "6", "--models", "siamrpn_alex",
                 "--robust-models", "siamrpn_alex", "--attack-steps", "1", "--refine-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "| siamrpn_alex | clean | random (untrained) | 2 | 12 |" in out
    assert "| siamrpn_alex | attacked: pgd1-dua-search-eps8 | random (untrained) | 2 | 12 |" in out
    assert "| siamrpn_alex | template refined (1 steps) | random (untrained) | 2 | 12 |" in out
    assert (tmp_path / "results/Synthetic/siamrpn_alex_pgd1-dua-search-eps8").is_dir()
    assert "RANDOM weights" in out
    assert (tmp_path / "success.png").stat().st_size > 0
    assert len((tmp_path / "results/Synthetic/siamrpn_alex").glob("*.txt").__iter__().__next__().read_text().splitlines()) == 6


def test_track_uses_real_nanotrack_weights(synthetic_folder, tmp_path, capsys, data_dir):
    """Without --weights NanoTrack takes its pretrained checkpoint from the shared data folder; a .pth given as
    --weights is converted in memory; both give the same boxes, and they follow the synthetic target."""
    folder, boxes = synthetic_folder
    out_default, out_pth = tmp_path / "a.txt", tmp_path / "b.txt"
    assert main(["track", "--model", "nanotrack_v2", "--sequence", str(folder), "--out", str(out_default)]) == 0
    assert "using the pretrained" in capsys.readouterr().out
    pth = data_dir / "weights/nanotrack/nanotrackv2.pth"
    assert main(["track", "--model", "nanotrack_v2", "--sequence", str(folder), "--out", str(out_pth),
                 "--weights", str(pth)]) == 0
    a, b = np.loadtxt(out_default, delimiter=","), np.loadtxt(out_pth, delimiter=",")
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        from jaxtrack.tracking import create
        from jaxtrack.weights import load_weights

        load_weights(create("nanotrack_v2"), str(out_pth))


def test_eval_with_an_online_attack_and_a_refined_template(data_dir, tmp_path, capsys):
    """`eval --attack ...` and `eval --refine-template ...` run through the benchmark runner and write their results
    under the wrapped tracker's name; on a real sequence the attack lowers NanoTrack's success."""
    root, results = data_dir / "sequences/OTB", tmp_path / "res"
    common = ["eval", "--model", "nanotrack_v2", "--dataset", "otb-folder", "--root", str(root),
              "--sequences", "KiteSurf", "--results", str(results)]
    assert main(common) == 0
    assert main(common + ["--attack", "fgsm", "--eps", "8", "--loss", "dua"]) == 0
    assert main(common + ["--refine-template", "--refine-steps", "2"]) == 0
    out = capsys.readouterr().out

    def auc(name):
        row = next(line for line in out.splitlines() if line.startswith(f"| {name} |"))
        return float(row.split("|")[2])

    for name in ("nanotrack_v2", "nanotrack_v2_fgsm-dua-search-eps8", "nanotrack_v2_refine2"):
        assert len((results / "OTB" / name / "KiteSurf.txt").read_text().splitlines()) == 84
    assert auc("nanotrack_v2_fgsm-dua-search-eps8") < auc("nanotrack_v2") - 0.1
    assert abs(auc("nanotrack_v2_refine2") - auc("nanotrack_v2")) < 0.2  # 2 steps of 0.05 px: a small change
    # --max-frames: the first N frames only (tracking is causal: the same boxes as the whole run's first N)
    short = tmp_path / "short"
    assert main(common[:-1] + [str(short), "--max-frames", "20"]) == 0
    head = np.loadtxt(short / "OTB" / "nanotrack_v2" / "KiteSurf.txt", delimiter=",")
    full = np.loadtxt(results / "OTB" / "nanotrack_v2" / "KiteSurf.txt", delimiter=",")
    assert head.shape == (20, 4)
    np.testing.assert_allclose(head, full[:20], atol=1e-2)


def test_eval_with_a_defense_under_non_adaptive_and_adaptive_attacks(data_dir, tmp_path, capsys):
    """--defense loads a defense checkpoint; with an identity U-Net the defended tracker tracks exactly like the
    undefended one, clean and under the non-adaptive attack (computed on the undefended tracker) and the adaptive
    one (through the U-Net) alike; result folders are named by what ran. The compact SiamFC++ (shipped weights):
    the command's wiring is the same for every family, and its five programs compile in a fraction of NanoTrack's
    time."""
    import jax

    from jaxtrack import tracking
    from jaxtrack.defense.checkpoint import defense_meta, save_defense
    from jaxtrack.models.unet import DefenseUNet

    unet = DefenseUNet(depth=1, width=4, groups=2)
    variables = unet.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))  # identity at initialisation
    ckpt = save_defense(tmp_path / "unet", variables,
                        defense_meta(unet, tracking.create("siamfcpp_tiny"), "both", {"note": "identity"}))
    root, results = data_dir / "sequences/OTB", tmp_path / "res"
    common = ["eval", "--model", "siamfcpp_tiny", "--dataset", "otb-folder", "--root", str(root),
              "--sequences", "Football1", "--results", str(results), "--max-frames", "24"]
    attack = ["--attack", "fgsm", "--eps", "8"]
    assert main(common) == 0
    assert main(common + attack) == 0
    assert main(common + ["--defense", str(ckpt)]) == 0
    assert main(common + ["--defense", str(ckpt)] + attack) == 0
    assert main(common + ["--defense", str(ckpt), "--adaptive"] + attack) == 0
    capsys.readouterr()
    folders = sorted(p.name for p in (results / "OTB").iterdir())
    assert len(folders) == 5, folders

    def boxes(folder):
        return np.loadtxt(results / "OTB" / folder / "Football1.txt", delimiter=",")

    clean = [f for f in folders if "unet" not in f and "fgsm" not in f]
    attacked = [f for f in folders if "unet" not in f and "fgsm" in f]
    defended = [f for f in folders if "unet" in f and "fgsm" not in f]
    non_adaptive = [f for f in folders if "unet" in f and "fgsm" in f and "-via-" in f]
    adaptive = [f for f in folders if "unet" in f and "fgsm" in f and "-via-" not in f]
    assert all(len(x) == 1 for x in (clean, attacked, defended, non_adaptive, adaptive)), folders
    np.testing.assert_allclose(boxes(defended[0]), boxes(clean[0]), atol=1e-3)
    np.testing.assert_allclose(boxes(non_adaptive[0]), boxes(attacked[0]), atol=1e-2)
    np.testing.assert_allclose(boxes(adaptive[0]), boxes(attacked[0]), atol=1e-2)
    assert np.abs(boxes(attacked[0]) - boxes(clean[0])).max() > 5  # the attack does something
