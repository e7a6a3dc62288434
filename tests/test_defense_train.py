"""jaxtrack.defense.config / objective / trainer / evaluate: adversarial training of the DuaLossDef U-Net -- the defended adversarial loss falls on
held-out pairs, 8 fake devices == 1 device, stop + resume == uninterrupted, attacks through the current U-Net,
the exported defense loads with ``defended_from_checkpoint`` and tracks.

Small and fast: a 1/8-width SiamFC++ (z 127 / x 191, 3x3 score map) with random (BatchNorm-calibrated) weights,
a one-level U-Net of width 4, PGD-1, tiny synthetic sequences. One compiled training step serves every in-process
test (the loop's cache); the held-out measurement reuses it too (a step's metrics are those of its incoming
parameters). The 8-device step runs in a subprocess (XLA_FLAGS must be set before JAX starts) launched as soon as
the tracker variables exist; the 1-device reference is computed here with the shared step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrack import tracking
from jaxtrack.defense import config as C, evaluate as E, objective as O, trainer as T
from jaxtrack.train.config import ConfigError, config_from_dict, config_to_dict
from jaxtrack.train.loop import METRICS_FILE, read_metrics
from jaxtrack.train.mesh import make_data_mesh

REPO = Path(__file__).resolve().parents[1]
TEST_TRACKER = dict(instance_size=191, width_mult=0.125)
STEPS = 6
BATCH = 8


def small_overrides(data_root="") -> list[str]:
    return [
        f"steps={STEPS}", f"batch_size={BATCH}", "log_every=1", "save_every=3", "keep=5",
        "unet.depth=1", "unet.width=4", "unet.groups=2",
        "attack.steps=1", "attack.step_size=4", "attack_through_defense=false", "optim.lr=2e-3", "optim.warmup_steps=0",
        # Adam's eps: with 1e-8 a parameter whose gradient is at the float-rounding level (the inner layers at the
        # second step, behind a nearly-zero output layer) moves by +-lr on the sign of that rounding noise, which
        # differs between 8 devices and 1; 1e-3 keeps such updates at 1e-3 lr.
        "optim.eps=1e-3",
        "tracker_weights=random",
        f"data.root={data_root}", "data.synthetic_sequences=4", "data.synthetic_frames=12", "data.synthetic_seed=7",
        "data.synthetic_height=120", "data.synthetic_width=160", "data.crop_size=255", "data.threads=1",
        "data.prefetch=2", "data.extra_source=",
    ]


def small_config(data_root="", **changes) -> C.DefenseTrainConfig:
    extra = [f"{k}={v}" for k, v in changes.items()]
    return C.get_defense_config("unet_siamfcpp_tiny", small_overrides(data_root) + extra)


def run_two_steps(tracker, variables, batch, config, mesh):
    """Two defense steps on ``batch`` from the initial state; (host states after each step, metrics of both)."""
    step = T.make_defense_train_step(tracker, variables, config, mesh)
    state = T.init_defense_state(config, mesh=mesh)
    states, rows = [], []
    for i in range(2):
        state, metrics = step(state, batch, jax.random.key(100 + i))
        states.append(jax.device_get(state))
        rows.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    return states, rows


# ----------------------------------------------------------------------------------------------- 8 devices
_EIGHT_DEVICES = textwrap.dedent(
    """
    import os, pickle, sys
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    import jax
    jax.config.update("jax_default_matmul_precision", "highest")
    sys.path.insert(0, sys.argv[1])
    from test_defense_train import TEST_TRACKER, run_two_steps, small_config
    from jaxtrack import tracking
    from jaxtrack.train.mesh import make_data_mesh

    assert jax.device_count() == 8, jax.devices()
    tracker = tracking.create("siamfcpp_tiny", **TEST_TRACKER)
    with open(sys.argv[2], "rb") as f:
        variables, batch = pickle.load(f)
    mesh = make_data_mesh()
    states, rows = run_two_steps(tracker, variables, batch, small_config(), mesh)
    with open(sys.argv[3], "wb") as f:
        pickle.dump({"states": states, "rows": rows, "devices": len(mesh.devices.flat)}, f)
    print("DONE")
    """
)


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tracker():
    return tracking.create("siamfcpp_tiny", **TEST_TRACKER)


@pytest.fixture(scope="module")
def variables(tracker, data_root):
    """Random weights whose BatchNorm statistics are those of a train-mode pass over 8 synthetic training pairs
    (``init_variables`` calibrates on uniform noise, after which natural crops can overflow the box offsets).
    Compiled without XLA optimisations: one call, and the random initialisers compile ~10x faster."""
    pairs = E.heldout_pairs(small_config(data_root), tracker, data_root, pairs=8, seed=7)
    z, x = (jnp.asarray(pairs[k], jnp.float32) for k in ("template", "search"))
    key = jax.random.key(0)
    calibrate = jax.jit(tracker._init_and_calibrate).lower(key, z, x).compile({"xla_backend_optimization_level": 0})
    return jax.device_get(calibrate(key, z, x))


@pytest.fixture(scope="module")
def pairs(tracker, data_root):
    """8 crop pairs from the training sequences (one negative)."""
    batch = E.heldout_pairs(small_config(data_root), tracker, data_root, pairs=BATCH, seed=7, sample_seed=11)
    batch["negative"] = np.arange(BATCH) == 5  # its box is then a distractor's
    return batch


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory, variables, pairs):
    """Start the 8-device subprocess as soon as the variables exist; the test that needs it waits for it."""
    folder = tmp_path_factory.mktemp("eight")
    with open(folder / "variables.pkl", "wb") as f:
        pickle.dump((variables, pairs), f)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", _EIGHT_DEVICES, str(Path(__file__).parent), str(folder / "variables.pkl"),
         str(folder / "out.pkl")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    yield proc, folder / "out.pkl"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module", autouse=True)
def _start_subprocess_early(eight_devices):
    yield


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 4, SyntheticConfig(num_frames=12, height=120, width=160), seed=7)
    return root


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tracker, variables, data_root):
    """An uninterrupted run of STEPS steps (exports the defense)."""
    workdir = tmp_path_factory.mktemp("full")
    config = small_config(data_root)
    result = T.train_defense(config, workdir, tracker=tracker, tracker_variables=variables, progress=False)
    return config, result


def max_abs_diff(a, b) -> float:
    d = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                               if np.size(x) else 0.0, a, b)
    return max(jax.tree_util.tree_leaves(d))


# ----------------------------------------------------------------------------------------------- tests
def test_configs_overrides_and_errors(capsys):
    for name in C.DEFENSE_CONFIGS:
        c = C.get_defense_config(name)
        # the paper's Dua-Loss, except in the loss-ablation recipes (unet_nanotrack with another training-attack loss)
        ablation = {"unet_nanotrack_cls": "cls", "unet_nanotrack_reg": "reg"}.get(name)
        assert c.name == name and c.where == "both" and c.attack.loss == (ablation or "dua")
        if ablation:
            base = C.get_defense_config("unet_nanotrack")
            assert dataclasses.replace(c, name=base.name, attack=base.attack) == base
        assert config_from_dict(json.loads(json.dumps(config_to_dict(c))), C.DefenseTrainConfig) == c
        assert f"--config {name}" in C.DEFENSE_CONFIGS[name].__doc__  # the run command
    c = C.get_defense_config("unet_nanotrack", [
        "attack.steps=5", "attack.eps=4", "attack.lam=0.5", "unet.width=16", "unet.shared=false", "where=search",
        "attack_through_defense=true", "loss.pix=0.1", "optim.lr=3e-4", "data.source=vot2018", "batch_size=16"])
    assert (c.attack.steps, c.attack.eps, c.attack.lam, c.unet.width, c.unet.shared, c.where) == (5, 4.0, 0.5, 16, False, "search")
    assert (c.attack_through_defense, c.loss.pix, c.optim.lr, c.data.source, c.batch_size) == (True, 0.1, 3e-4, "vot2018", 16)
    assert c.attack_target == "search" and c.tracker == "nanotrack_v2" and c.tracker_weights == "shared"
    cases = {
        "attack.stepz=3": ["unknown config key", "did you mean attack.steps", "unet.width"],
        "where=everywhere": ["where must be one of template, search, both"],
        "attack.loss=l2": ["attack.loss must be one of", "dua", "train"],
        "unet.norm=batch": ["unet:", "norm"],
        "loss.adv=-1": ["loss weights must be >= 0"],
        "attack.eps=big": ["attack.eps", "expected float"],
        "attack.restarts=0": ["attack.restarts must be >= 1"],
        "attack.ramp_stages=0": ["attack.ramp_stages >= 1"],
    }
    for item, needles in cases.items():
        with pytest.raises(ConfigError) as err:
            C.get_defense_config("unet_nanotrack", [item])
        for needle in needles:
            assert needle in str(err.value), (item, str(err.value))
    with pytest.raises(ValueError, match="tracker_weights is required"):
        T.load_tracker(C.get_defense_config("unet_siamfcpp_tiny", ["tracker_weights="]))
    # the min-max recipes: the fixed-perturbation recipe, warm-started from its shipped U-Net, attacked through it
    for name in ("unet_nanotrack", "unet_siamfcpp_tiny"):
        m, base = C.get_defense_config(name + "_minmax"), C.get_defense_config(name)
        assert (m.init_from, m.attack_through_defense, m.attack.target, m.unet, m.data) == (
            "bundled", True, "both", base.unet, base.data)
        assert 0 < m.attack.ramp_steps < m.steps and base.attack_through_defense is False
    # the shipped recipes train on real sequences that no evaluation uses
    for name in ("unet_nanotrack", "unet_siamfcpp_tiny"):
        d = C.get_defense_config(name).data
        assert d.extra_source == "otb100" and set(d.extra_sequences) == {"David", "Jogging-2"}
    # the sub-command: --print-config resolves overrides without training
    import argparse

    from jaxtrack.train import defense_cli

    parser = argparse.ArgumentParser(prog="jaxtrack")
    defense_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train-defense", "--config", "unet_siamrpnpp_got10k", "--workdir", "unused",
                              "--steps", "7", "--set", "attack.steps=2", "--print-config"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] == 7 and printed["attack"]["steps"] == 2 and printed["tracker"] == "siamrpnpp_r50"


def test_eps_curriculum_stages():
    """Hand-worked: ε 8 / step 2 ramped over 8 steps in 4 stages is ε 2, 4, 6, 8 for two steps each (the step size
    scaled alike), then ε 8 for good; every step's attack has the ramp fields reset, so a stage is one program."""
    a = C.DefenseAttackConfig(eps=8.0, step_size=2.0, ramp_steps=8, ramp_stages=4)
    got = [(a.at_step(i).eps, a.at_step(i).step_size) for i in range(11)]
    assert got == [(2, .5)] * 2 + [(4, 1)] * 2 + [(6, 1.5)] * 2 + [(8, 2)] * 5
    assert a.at_step(9) == C.DefenseAttackConfig(eps=8.0, step_size=2.0)
    assert C.DefenseAttackConfig(eps=8.0, ramp_steps=3, ramp_stages=2).at_step(1).eps == 4.0  # 1 * 2 // 3 = 0
    assert C.DefenseAttackConfig(eps=8.0, ramp_steps=3, ramp_stages=2).at_step(2).eps == 8.0  # 2 * 2 // 3 = 1


def test_gt_ref_boxes_are_crop_centred():
    ref = np.asarray(O.gt_ref_boxes(np.array([[90.0, 80.0, 130.0, 140.0]]), 191))
    np.testing.assert_allclose(ref, [[110 - 95, 110 - 95, 40, 60]])


def test_training_lowers_the_defended_adversarial_loss(full_run, tracker, variables, tmp_path):
    """STEPS steps: the defended adversarial loss (the step's ``adv`` metric: the family training loss on crops
    attacked through the current U-Net) is lower after training on a fixed held-out batch (other sequence seeds),
    with the same attack key; the training metrics are finite and the attack raised its objective."""
    config, result = full_run
    assert result.step == STEPS and result.resumed_from is None
    rows = read_metrics(result.workdir / METRICS_FILE)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        assert all(np.isfinite(v) for v in r.values()), r
        assert r["attack_gain"] > 0
    assert rows[0]["adv"] == pytest.approx(rows[0]["undefended_adv"], rel=1e-4)  # identity U-Net at step 0
    assert (result.workdir / "loss.png").is_file()

    heldout = E.heldout_pairs(config, tracker, tmp_path / "heldout", pairs=2 * BATCH, seed=1000)
    step = T.make_defense_train_step(tracker, variables, config, make_data_mesh())  # the loop's compiled step
    measured = {}
    for name, params in (("before", None), ("after", result.params)):
        rows = []
        for i in range(2):
            state = T.init_defense_state(config, params=params, mesh=make_data_mesh())
            part = {k: v[i * BATCH:(i + 1) * BATCH] for k, v in heldout.items()}
            rows.append(jax.device_get(step(state, part, jax.random.key(1234 + i))[1]))
        measured[name] = {k: float(np.mean([r[k] for r in rows])) for k in ("adv", "clean", "undefended_adv")}
    before, after = measured["before"], measured["after"]
    assert all(np.isfinite(v) for v in (*before.values(), *after.values())), measured
    assert after["adv"] < before["adv"] - 0.02, measured  # measured: 12.0 -> 11.9 (random tracker, 6 steps)
    assert after["clean"] < before["clean"], measured
    assert after["undefended_adv"] == before["undefended_adv"]  # the same adversarial crops (frozen-tracker attack)


def test_stop_and_resume_equals_uninterrupted(full_run, tracker, variables, data_root, tmp_path):
    config, full = full_run
    workdir = tmp_path / "resumed"
    first = T.train_defense(config, workdir, tracker=tracker, tracker_variables=variables, stop_at=1, progress=False)
    assert first.step == 1 and first.defense == []  # stopped between two checkpoints: saved there
    second = T.train_defense(config, workdir, tracker=tracker, tracker_variables=variables, progress=False)
    assert second.resumed_from == 1 and second.step == STEPS
    assert max_abs_diff(second.params, full.params) <= 1e-6
    a, b = read_metrics(workdir / METRICS_FILE), read_metrics(full.workdir / METRICS_FILE)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in ("loss", "adv", "clean", "attack_gain", "undefended_adv", "lr"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-7), (ra["step"], k)
    assert C.load_defense_config(workdir) == config


def _adam_moments(opt_state, name: str) -> list:
    """The leaves of the Adam moment ``name`` (``mu`` / ``nu``) in an optax state, in tree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(opt_state)
    leaves = [v for path, v in flat if f".{name}" in jax.tree_util.keystr(path)]
    assert leaves, f"no Adam moment {name!r} in the optimizer state"
    return leaves


def leaf_relative_diff(a, b) -> float:
    """max over leaves of max|a - b| / max|b| (0 for leaves that are 0 in both)."""
    def one(x, y):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = float(np.abs(y).max()) if y.size else 0.0
        return float(np.abs(x - y).max()) / scale if scale > 0 else float(np.abs(x).max() if x.size else 0.0)

    return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(one, a, b)))


def test_eight_devices_equal_one(eight_devices, tracker, variables, pairs):
    """Two steps on the 8-device mesh (batch split 1 per device) and on 1 device from the same state, batch and
    keys. The first step ends in the same state (to float rounding); every forward value agrees to 1e-5 at both
    steps. The second step's gradients are only equal to ~1e-2: once the U-Net is no longer the identity its output
    carries the device split's rounding, and the random tracker's ReLU + max-pool (exact ties of zeros) route
    gradients to other pixels on such differences (measured without any attack step, too: grad_norm 0.24% apart,
    losses 1e-7), so the parameters are compared to a tenth of one update there."""
    proc, out_path = eight_devices
    assert jax.device_count() == 1
    config = small_config()
    one_states, one_rows = run_two_steps(tracker, variables, pairs, config, make_data_mesh())
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "DONE" in out, err[-3000:]
    with open(out_path, "rb") as f:
        eight = pickle.load(f)
    assert eight["devices"] == 8
    (a1, a2), (b1, b2) = eight["states"], one_states
    assert int(a2.step) == int(b2.step) == 2 and np.array_equal(a2.rng, b2.rng)
    # The 8-device program sums the gradient over devices in another order: gradient sums agree to a relative
    # 1e-3 (measured 1.2e-4). The first Adam step maps a gradient g to lr·g/(|g| + eps) (the bias-corrected moments
    # are g and g²), whose slope is eps/(|g| + eps)², so each parameter may differ by lr·|Δg|·eps/(m + eps)² (m the
    # smaller |g| of the two runs, 0 if their signs differ; g = mu / (1 - b1)) plus a few float32 ulps: that bound,
    # element by element, not a fixed one (the largest difference was 2.5e-5 on one machine, 1.6e-7 on another).
    assert leaf_relative_diff(a1.opt_state, b1.opt_state) <= 1e-3
    lr, eps, beta1 = config.optim.lr, config.optim.eps, config.optim.b1
    mu_a, mu_b = _adam_moments(a1.opt_state, "mu"), _adam_moments(b1.opt_state, "mu")
    p_a, p_b = jax.tree_util.tree_leaves(a1.params), jax.tree_util.tree_leaves(b1.params)
    assert len(mu_a) == len(p_a)
    worst = 0.0
    for ga, gb, pa, pb in zip(mu_a, mu_b, p_a, p_b):
        ga, gb = (np.asarray(g, np.float64) / (1.0 - beta1) for g in (ga, gb))
        m = np.where(np.sign(ga) == np.sign(gb), np.minimum(np.abs(ga), np.abs(gb)), 0.0)
        # where |g| << eps the step is linear in g and the bound is reached exactly (measured ratio 0.99-1.00 on
        # two flag sets); 1 % covers the float32 rounding of the moments it is computed from
        bound = 1.01 * lr * np.abs(ga - gb) * eps / (m + eps) ** 2 + 4 * np.spacing(np.abs(np.asarray(pb, np.float32)))
        diff = np.abs(np.asarray(pa, np.float64) - np.asarray(pb, np.float64))
        assert (diff <= bound).all(), (float(diff.max()), float(bound[np.argmax(diff - bound)]))
        worst = max(worst, float((diff / bound).max(initial=0.0)))
    print(f"first step: parameter differences up to {worst:.4f} of the derived per-element bound")
    assert max_abs_diff(a2.params, b2.params) <= 0.1 * config.optim.lr
    for r8, r1 in zip(eight["rows"], one_rows):
        for k in ("loss", "adv", "clean", "pix", "attack_clean", "attack_adv", "undefended_adv"):
            assert r8[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-7), k
    assert eight["rows"][0]["grad_norm"] == pytest.approx(one_rows[0]["grad_norm"], rel=1e-4)
    assert eight["rows"][1]["grad_norm"] == pytest.approx(one_rows[1]["grad_norm"], rel=2e-2)


def test_attack_through_defense_differentiates_the_unet(tracker, variables, pairs):
    """The step's objective with a non-identity U-Net: with ``attack_through_defense=True`` the PGD gradients go
    through the current U-Net, so the adversarial crops (seen through the undefended tracker's loss on them) and the
    attacked model (its clean objective) differ from those of the attack on the frozen tracker; with the identity
    U-Net the two coincide."""
    configs = [small_config(where="search", **{"attack.steps": 2, "attack.step_size": 2,
                                                "attack_through_defense": flag}) for flag in (True, False)]
    identity = O.init_unet_params(configs[0], jax.random.key(0))
    rng = np.random.default_rng(3)
    noisy = dict(identity)
    noisy["out"] = {k: jnp.asarray(0.1 * rng.normal(size=v.shape), jnp.float32) for k, v in identity["out"].items()}
    objectives = [O.defense_objective(tracker, c) for c in configs]

    @jax.jit
    def metrics(params, tv, batch, key):
        return [f(params, tv, batch, key)[1] for f in objectives]

    batch = pairs
    key = jax.random.key(7)
    through, frozen = jax.device_get(metrics(noisy, variables, batch, key))
    for k in ("undefended_adv", "attack_clean", "attack_adv"):
        assert abs(float(through[k]) - float(frozen[k])) > 1e-3 * abs(float(frozen[k])), k
    assert float(through["attack_gain"]) > 0 and float(frozen["attack_gain"]) > 0
    through, frozen = jax.device_get(metrics(identity, variables, batch, key))
    for k in ("undefended_adv", "attack_clean", "attack_adv", "adv"):
        assert float(through[k]) == pytest.approx(float(frozen[k]), rel=1e-4), k


def test_warm_start_and_eps_curriculum(full_run, tracker, variables, data_root, tmp_path):
    """A run with ``init_from`` = the exported U-Net of the full run starts from exactly its parameters, and a run
    with an ε curriculum logs the budget of each stage (ε 4, then 8 from step 2 on: ramp 2 steps, 2 stages; the
    last step runs after the ramp is over, when the step no longer reads the state's step count); a U-Net of other
    hyper-parameters is refused, naming what differs."""
    _, full = full_run
    folder = full.workdir / C.DEFENSE_DIR
    config = small_config(data_root, steps=4, init_from=str(folder),
                          **{"attack.ramp_steps": 2, "attack.ramp_stages": 2})
    params = T.warm_start_params(config, tracker)
    assert max_abs_diff(params, full.params) == 0.0
    split = small_config(data_root, init_from=str(folder), **{"unet.shared": "false"})
    both = T.warm_start_params(split, tracker)
    assert set(both) == {"template", "search"} and max_abs_diff(both["search"], full.params) == 0.0
    with pytest.raises(ValueError, match=r"width: 4 in the checkpoint, 8 in the config"):
        T.warm_start_params(small_config(data_root, init_from=str(folder), **{"unet.width": 8}), tracker)
    with pytest.raises(FileNotFoundError, match="no defense folder"):
        T.warm_start_params(small_config(data_root, init_from=str(tmp_path / "none")), tracker)

    result = T.train_defense(config, tmp_path / "warm", tracker=tracker, tracker_variables=variables, progress=False,
                             plot=False)
    rows = read_metrics(result.workdir / METRICS_FILE)
    assert [r["attack_eps"] for r in rows] == [4.0, 8.0, 8.0, 8.0]
    # the first step saw the warm-start U-Net: its defended adversarial loss is not the identity U-Net's
    assert rows[0]["adv"] != pytest.approx(rows[0]["undefended_adv"], rel=1e-3)


def test_exported_defense_loads_and_tracks(full_run, tracker, variables, data_root):
    from jaxtrack.data import load_dataset
    from jaxtrack.defense import defended_from_checkpoint, read_defense_card

    config, result = full_run
    assert result.defense == [result.workdir / C.DEFENSE_DIR]
    card = read_defense_card(result.workdir / C.DEFENSE_DIR)
    assert (card["family"], card["tracker"], card["where"]) == ("siamfcpp", "siamfcpp_tiny", "both")
    assert card["crop_sizes"] == {"template": 127, "search": 191}
    assert card["unet"]["depth"] == 1 and card["unet"]["width"] == 4
    info = card["info"]
    assert info["config"] == config_to_dict(config) and info["step"] == STEPS
    assert info["training_data"]["source"] == "synthetic" and info["training_data"]["synthetic_seed"] == 7
    assert info["attack"]["loss"] == "dua" and info["attack_through_defense"] is False

    d, dvars = defended_from_checkpoint(tracker, variables, result.workdir / C.DEFENSE_DIR)
    assert d.where == "both" and max_abs_diff(dvars["defense"]["params"], result.params) == 0.0
    assert float(np.abs(np.asarray(result.params["out"]["kernel"])).max()) > 0  # trained: no longer the identity
    assert T.load_trained_defense(tracker, variables, result.workdir)[0] == d
    seq = load_dataset("synthetic", data_root)[0]
    frames = np.stack([seq.frame(i) for i in range(5)])
    boxes, scores = d.track_sequence(dvars, frames, np.asarray(seq.ground_truth[0], np.float32))
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    assert boxes.shape == (5, 4) and np.isfinite(boxes).all() and np.isfinite(scores).all()
    assert (boxes[:, 2:] > 0).all()
