"""jaxtrack.train: sharded step (8 fake devices == 1 device), exact resume, loss falls, --set errors, corrupt data.

Small and fast: a 1/8-width SiamFC++ (z 127 / x 191, 3x3 score map), tiny synthetic sequences, variables
initialised in NumPy (no init compile), one compiled train step shared by every in-process test. The 8-device
check needs XLA_FLAGS set before JAX starts, so it runs in a subprocess launched when the module starts (it runs
while the other tests do).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxtrack import tracking
from jaxtrack.train import config as C
from jaxtrack.train.loop import METRICS_FILE, TrainingDataError, read_metrics, train
from jaxtrack.train.state import path_str

REPO = Path(__file__).resolve().parents[1]
TEST_TRACKER = dict(instance_size=191, width_mult=0.125)  # siamfcpp_tiny overrides: score map 3x3, 0.15 M params
STEPS = 12


def numpy_variables(tracker, seed: int = 0) -> dict:
    """Flax-like initial variables without compiling ``init`` (LeCun-normal kernels, zero biases, BN 1/0)."""
    abstract = jax.eval_shape(tracker.init_variables, jax.random.key(0))
    rng = np.random.default_rng(seed)

    def init(path, leaf):
        name = path_str(path).split("/")[-1]
        shape, dtype = leaf.shape, leaf.dtype
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)
        if name in ("scale", "var", "si"):
            return np.ones(shape, dtype)
        return np.zeros(shape, dtype)

    return jax.tree_util.tree_map_with_path(init, abstract)


# ----------------------------------------------------------------------------------------------- 8 devices
_EIGHT_DEVICES = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    import jax, numpy as np
    jax.config.update("jax_default_matmul_precision", "highest")
    sys.path.insert(0, sys.argv[1])
    from test_train import TEST_TRACKER, numpy_variables
    from jaxtrack import tracking
    from jaxtrack.train import config as C, mesh as M, state as S

    assert jax.device_count() == 8, jax.devices()
    tracker = tracking.create("siamfcpp_tiny", **TEST_TRACKER)
    variables = numpy_variables(tracker)
    optim = C.OptimConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, warmup_steps=1,
                          backbone_prefixes=("basemodel",), backbone_lr_mult=0.1, clip_grad_norm=50.0,
                          freeze=(C.FreezeRule("basemodel/conv1/conv", -1), C.FreezeRule("basemodel/conv2", 1)))
    tx, schedule = S.make_optimizer(optim, 10, variables["params"])
    rng = np.random.default_rng(0)
    B, c = 8, tracker.config
    batch = {"template": rng.integers(0, 256, (B, c.exemplar_size, c.exemplar_size, 3), dtype=np.uint8),
             "search": rng.integers(0, 256, (B, c.instance_size, c.instance_size, 3), dtype=np.uint8),
             "box": np.array([[60, 70, 130, 120]] * B, np.float32) + rng.uniform(-20, 20, (B, 4)).astype(np.float32),
             "negative": np.arange(B) == 5}
    out = {}
    for n in (8, 1):
        mesh = M.make_data_mesh(jax.devices()[:n])
        step = S.make_train_step(tracker, optim, 10, mesh)
        state = M.replicate(S.create_train_state(variables, tx, jax.random.key(1)), mesh)
        for i in range(2):  # the second step: momentum, the unfrozen conv2, BN running averages twice
            state, metrics = step(state, M.shard_batch(batch, mesh), state.step_key())
            if i == 0:
                first_loss = metrics["loss"]
        out[n] = jax.device_get(state)
        if n == 8:
            sharding = state.params["head"]["si"].sharding
            out["sharding"] = sharding.spec == jax.sharding.PartitionSpec(), len(sharding.device_set)

    def diff(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))) if a.size else 0.0

    report = {}
    for part in ("params", "batch_stats", "opt_state", "step", "rng"):
        d = jax.tree_util.tree_map(diff, getattr(out[8], part), getattr(out[1], part))
        report[part] = max(jax.tree_util.tree_leaves(d))
    p0 = variables["params"]["basemodel"]
    report["conv1_moved"] = float(np.abs(out[8].params["basemodel"]["conv1"]["conv"]["kernel"] - p0["conv1"]["conv"]["kernel"]).max())
    report["conv2_moved"] = float(np.abs(out[8].params["basemodel"]["conv2"]["conv"]["kernel"] - p0["conv2"]["conv"]["kernel"]).max())
    report["bn_var_moved"] = float(np.abs(out[8].batch_stats["basemodel"]["conv1"]["bn"]["var"] - 1).max())
    report["sharding"] = out["sharding"]
    # bf16 compute on the 8-device mesh: float32 master weights / BN statistics, loss close to the float32 one
    mesh = M.make_data_mesh()
    step = S.make_train_step(tracker, optim, 10, mesh, compute_dtype=jax.numpy.bfloat16)
    state = M.replicate(S.create_train_state(variables, tx, jax.random.key(1)), mesh)
    state, bf16 = step(state, M.shard_batch(batch, mesh), state.step_key())
    report["bf16_loss"], report["f32_loss"] = float(bf16["loss"]), float(first_loss)
    report["bf16_dtypes"] = sorted({str(x.dtype) for x in jax.tree_util.tree_leaves((state.params, state.batch_stats))})
    report["bf16_finite"] = bool(all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.params)))
    print("REPORT " + json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def eight_devices():
    """Start the 8-device subprocess at once; the test that needs it waits for it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-c", _EIGHT_DEVICES, str(Path(__file__).parent)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module", autouse=True)
def _start_subprocess_early(eight_devices):
    yield


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tracker():
    return tracking.create("siamfcpp_tiny", **TEST_TRACKER)


@pytest.fixture(scope="module")
def variables(tracker):
    return numpy_variables(tracker)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, 4, SyntheticConfig(num_frames=12, height=120, width=160), seed=7)
    return root


def small_config(data_root, **changes) -> C.TrainConfig:
    overrides = [
        f"steps={STEPS}", "batch_size=8", "log_every=1", "save_every=4", "keep=5",
        "optim.warmup_steps=2", "optim.lr=3e-3",
        f"data.root={data_root}", "data.synthetic_sequences=4", "data.synthetic_frames=12", "data.synthetic_seed=7",
        "data.synthetic_height=120", "data.synthetic_width=160",
        "data.crop_size=255", "data.threads=1", "data.prefetch=2",
    ]
    overrides += [f"{k}={v}" for k, v in changes.items()]
    return C.get_config("siamfcpp_tiny_synthetic", overrides)


def load_weights(tracker, path):
    from jaxtrack.weights import load_weights

    return load_weights(tracker, str(path)).variables


def max_abs_diff(a, b) -> float:
    d = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    return max(jax.tree_util.tree_leaves(d))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tracker, variables, data_root):
    """An uninterrupted run of STEPS steps."""
    workdir = tmp_path_factory.mktemp("full")
    result = train(small_config(data_root), workdir, tracker=tracker, variables=variables, progress=False)
    return result


# ----------------------------------------------------------------------------------------------- tests
def test_config_overrides_and_errors():
    c = C.get_config("siamfcpp_alexnet_got10k", ["optim.lr=0.01", "bf16=true", "data.on_corrupt=skip",
                                                 "optim.freeze=basemodel/conv1@-1,basemodel/conv5/conv@100",
                                                 "optim.backbone_prefixes=basemodel,c_x", "steps=7"])
    assert (c.optim.lr, c.bf16, c.data.on_corrupt, c.steps) == (0.01, True, "skip", 7)
    assert c.optim.freeze == (C.FreezeRule("basemodel/conv1", -1), C.FreezeRule("basemodel/conv5/conv", 100))
    assert c.optim.backbone_prefixes == ("basemodel", "c_x")
    assert C.config_from_dict(json.loads(json.dumps(C.config_to_dict(c)))) == c

    cases = {
        "optim.lrr=1": ["unknown config key", "did you mean optim.lr"],
        "optim.lr=fast": ["optim.lr", "expected float"],
        "batch_size=1.5": ["batch_size", "expected int"],
        "bf16=maybe": ["expected bool"],
        "optim.name=rmsprop": ["optim.name must be one of sgd, adamw"],
        "data.on_corrupt=ignore": ["data.on_corrupt must be one of raise, skip"],
        "optim=1": ["is a group of settings", "optim.lr"],
        "steps.x=1": ["steps is not a group"],
        "optim.freeze=conv1@soon": ["prefix@until_step"],
        "steps": ["expects key=value"],
        "steps=0": ["steps must be >= 1"],
    }
    for override, fragments in cases.items():
        with pytest.raises(C.ConfigError) as info:
            C.get_config("siamfcpp_tiny_synthetic", [override])
        for fragment in fragments:
            assert fragment in str(info.value), (override, str(info.value))
    with pytest.raises(C.ConfigError, match="unknown training config 'nope'; known: siamfcpp_alexnet_got10k"):
        C.get_config("nope")
    for name, make in C.CONFIGS.items():  # every recipe documents its run command
        assert f"jaxtrack train --config {name} --workdir" in make.__doc__


def test_training_source_mixes_real_sequences(tmp_path, data_root):
    """data.extra_source adds real sequences (repeated extra_repeat times) beside the synthetic ones; data.sequences
    restricts a load_dataset source; bad combinations are refused by name."""
    from jaxtrack.paths import shared_data_dir
    from jaxtrack.train.loop import _training_source

    otb = shared_data_dir() / "sequences" / "OTB"
    if not (otb / "David").is_dir():
        pytest.skip(f"shared OTB sequences not found under {otb}")
    cfg = small_config(data_root, **{"data.extra_source": "otb100", "data.extra_sequences": "David,Jogging-2",
                                     "data.extra_repeat": 3})
    seqs = _training_source(cfg, tmp_path)
    names = [s.name for s in seqs]
    assert len(names) == 4 + 6 and names[4:] == ["David", "Jogging-2"] * 3
    assert len(seqs[4].ground_truth) == 471  # David's ground truth, read from the shared folder (files 0300..0770)
    only = C.get_config("siamfcpp_tiny_synthetic", ["data.source=otb100", f"data.root={otb}",
                                                    "data.sequences=Crossing"])
    assert [s.name for s in _training_source(only, tmp_path)] == ["Crossing"]
    with pytest.raises(ValueError, match="Nope"):
        _training_source(small_config(data_root, **{"data.extra_source": "otb100", "data.extra_sequences": "Nope"}),
                         tmp_path)
    with pytest.raises(C.ConfigError, match="data.sequences selects sequences of a load_dataset source"):
        C.get_config("siamfcpp_tiny_synthetic", ["data.sequences=Crossing"])
    with pytest.raises(C.ConfigError, match="data.extra_repeat must be >= 1"):
        C.get_config("siamfcpp_tiny_synthetic", ["data.extra_repeat=0"])


def test_cli_parser_and_errors(capsys):
    import argparse

    from jaxtrack.train import cli

    parser = argparse.ArgumentParser(prog="jaxtrack")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", "--config", "siamfcpp_tiny_synthetic", "--workdir", "w", "--steps", "5",
                              "--set", "optim.lr=0.5", "--set", "data.on_corrupt=skip", "--print-config"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["steps"], printed["optim"]["lr"], printed["data"]["on_corrupt"]) == (5, 0.5, "skip")
    args = parser.parse_args(["train", "--config", "siamfcpp_tiny_synthetic", "--workdir", "w", "--set", "x=1"])
    with pytest.raises(ValueError, match="--set x: unknown config key"):
        args.func(args)


def test_freeze_prefix_typo_is_reported(tracker, variables):
    from jaxtrack.train.state import check_prefixes

    with pytest.raises(C.ConfigError, match="'basemodel/conv9' matches no parameter.*basemodel/conv1"):
        check_prefixes(variables["params"], C.OptimConfig(freeze=(C.FreezeRule("basemodel/conv9"),)))


def test_schedule_warmup_cosine_and_log():
    from jaxtrack.train.state import make_schedule

    s = make_schedule(C.OptimConfig(lr=0.08, warmup_steps=10, warmup_init_lr=1e-6, end_lr=1e-6), 110)
    assert float(s(0)) == pytest.approx(1e-6, rel=1e-2)
    assert float(s(10)) == pytest.approx(0.08)
    assert float(s(60)) == pytest.approx((0.08 + 1e-6) / 2, rel=1e-4)
    assert float(s(110)) == pytest.approx(1e-6, rel=1e-3)
    s = make_schedule(C.OptimConfig(lr=0.005, schedule="log", warmup_steps=0, end_lr=0.0005), 100)
    assert float(s(50)) == pytest.approx(0.005 * 0.1 ** 0.5, rel=1e-5)


def test_parameter_average_follows_polyak_recurrence_and_is_found_in_a_checkpoint(tmp_path):
    """``optim.ema_decay``: after each update the average is ``d * ema + (1 - d) * new_params`` with ``d = min(decay,
    (1 + t) / (10 + t))`` (NumPy restatement; float32 arithmetic of a few terms, so 1e-6 relative). A checkpoint
    restored without a target hands the same arrays back (storage: bit-equal); without an average
    ``eval_variables`` are the variables."""
    import orbax.checkpoint as ocp

    from jaxtrack.train import state as S

    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": {"c": rng.standard_normal(5).astype(np.float32)},
              "frozen": rng.standard_normal(7).astype(np.float32)}
    optim = C.OptimConfig(name="sgd", lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant", ema_decay=0.6,
                          freeze=(C.FreezeRule("frozen", -1),))
    tx, _ = S.make_optimizer(optim, 10, params)
    state = S.create_train_state({"params": params}, tx, jax.random.key(0))
    ema = jax.tree_util.tree_map(np.float64, params)
    cur = jax.tree_util.tree_map(np.float64, params)
    for t in range(6):
        grads = jax.tree_util.tree_map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        state = state.replace(params=jax.tree_util.tree_map(lambda p, u: p + u, state.params, updates),
                              opt_state=opt_state)
        d = min(0.6, (1 + t) / (10 + t))
        cur = {**jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, cur, grads), "frozen": cur["frozen"]}
        ema = jax.tree_util.tree_map(lambda e, p: d * e + (1 - d) * p, ema, cur)
    got = state.eval_variables["params"]
    jax.tree_util.tree_map(lambda g, e: np.testing.assert_allclose(np.asarray(g), e, rtol=1e-6, atol=1e-6), got, ema)
    assert not np.allclose(np.asarray(got["a"]), np.asarray(state.params["a"]))  # the average is not the last step
    # a frozen parameter's average is the parameter, bit for bit (a frozen backbone ships as the donor's file)
    np.testing.assert_array_equal(np.asarray(got["frozen"]), params["frozen"])
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", state)
    checkpointer.wait_until_finished()
    restored = ocp.StandardCheckpointer().restore(tmp_path / "state")
    again = S.find_param_ema(restored["opt_state"])
    jax.tree_util.tree_map(lambda g, e: np.testing.assert_array_equal(np.asarray(g), np.asarray(e)), again, got)
    plain_tx, _ = S.make_optimizer(dataclasses.replace(optim, ema_decay=0.0), 10, params)
    plain = S.create_train_state({"params": params}, plain_tx, jax.random.key(0))
    assert S.find_param_ema(plain.opt_state) is None and plain.eval_variables is not None
    assert plain.eval_variables["params"] is plain.params
    with pytest.raises(C.ConfigError, match="optim.ema_decay"):
        C.OptimConfig(ema_decay=1.0)


def test_loss_falls_on_synthetic_data(full_run, tracker, variables, data_root):
    """The run learns: the objective of its final parameters on the first three training batches is well below
    that of its initial parameters on the same batches (same targets key). Logged per-step losses are of different
    batches (±15 % apart), so a fall between them depends on which batches came and on the compiled program (with
    YNNPACK convolutions the last-4/first-3 ratio of logged losses was 0.81)."""
    import itertools

    import orbax.checkpoint as ocp

    from jaxtrack.train.loop import loop_train_step, make_data_iterator
    from jaxtrack.train.mesh import make_data_mesh, shard_batch
    from jaxtrack.train.runner import initial_state
    from jaxtrack.train.state import make_optimizer

    rows = read_metrics(full_run.workdir / METRICS_FILE)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    losses = np.array([r["loss"] for r in rows])
    assert np.all(np.isfinite(losses))
    config = small_config(data_root)
    # the run's own step program (same settings, mesh and shardings: jit's in-memory cache hands it back, no compile)
    mesh = make_data_mesh()
    tx, _ = make_optimizer(config.optim, config.steps, variables["params"])
    step = loop_train_step(config, tracker, mesh)
    last = ocp.CheckpointManager(full_run.workdir / "checkpoints").restore(
        STEPS, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    final = {"params": last["params"], "batch_stats": last["batch_stats"]}
    before, after = [], []
    for i, batch in enumerate(itertools.islice(make_data_iterator(config, tracker, full_run.workdir), 3)):
        key = jax.random.key(100 + i)
        for vars_, out in ((variables, before), (final, after)):
            state = initial_state(jax.tree_util.tree_map(np.asarray, vars_), tx, jax.random.key(1), mesh)
            _, metrics = step(state, shard_batch(batch, mesh), key)  # the state is donated: a fresh one each time
            out.append(float(metrics["loss"]))
    print("fixed-batch loss before / after:", np.round(before, 3), np.round(after, 3))
    # measured 0.845, and 0.822 with YNNPACK convolutions (12 steps of lr 2e-3 from random weights); parameters
    # that did not learn give exactly 1
    assert np.mean(after) < 0.9 * np.mean(before), (before, after)
    for key in ("cls", "ctr", "reg", "lr", "pairs_per_s"):
        assert key in rows[-1]
    assert (full_run.workdir / "loss.png").stat().st_size > 1000


def test_export_loads_as_tracker_weights(full_run, tracker):
    import orbax.checkpoint as ocp

    loaded = load_weights(tracker, full_run.weights)  # what `jaxtrack track --weights WORKDIR/weights` reads
    assert set(loaded) == {"params", "batch_stats"}
    last = ocp.CheckpointManager(full_run.workdir / "checkpoints").restore(
        STEPS, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    assert max_abs_diff(loaded["params"], last["params"]) == 0.0
    assert max_abs_diff(loaded["batch_stats"], last["batch_stats"]) == 0.0
    from jaxtrack.weights import read_card

    card = read_card(full_run.weights)  # the one weights format: variables/ + card.json
    assert (card["what"], card["tracker"], card["step"], card["config"]) == (
        "tracker", "siamfcpp_tiny", STEPS, "siamfcpp_tiny_synthetic")
    assert card["num_parameters"] == sum(np.size(x) for x in jax.tree_util.tree_leaves(loaded["params"]))
    assert card["training"]["steps"] == STEPS


def test_stopped_and_resumed_run_equals_uninterrupted(tmp_path, full_run, tracker, variables, data_root):
    import orbax.checkpoint as ocp

    cfg = small_config(data_root)
    first = train(cfg, tmp_path, tracker=tracker, variables=variables, progress=False, stop_at=5)
    assert first.step == 5 and first.weights is None
    assert ocp.CheckpointManager(tmp_path / "checkpoints").all_steps() == [4, 5]
    # a stale metrics line past the checkpoint (as a crash after logging would leave) is dropped on resume
    with open(tmp_path / METRICS_FILE, "a") as f:
        f.write(json.dumps({"step": 6, "loss": 123.0}) + "\n")
    second = train(cfg, tmp_path, tracker=tracker, progress=False)
    assert second.resumed_from == 5 and second.step == STEPS
    # bit for bit: parameters, BN statistics, and every logged loss (so every batch drawn after the resume)
    assert max_abs_diff(load_weights(tracker, second.weights), load_weights(tracker, full_run.weights)) == 0.0
    # the input pipeline ends at the same position (the grain iterator state saved with the last checkpoint)
    position = Path("checkpoints", str(STEPS), "data", "process_0-of-1.json")
    assert json.loads((tmp_path / position).read_text()) == json.loads((full_run.workdir / position).read_text())
    a = read_metrics(full_run.workdir / METRICS_FILE)
    b = read_metrics(tmp_path / METRICS_FILE)
    assert [r["step"] for r in b] == [r["step"] for r in a]
    for ra, rb in zip(a, b):
        for key in ("loss", "cls", "ctr", "reg", "lr", "num_pos"):
            assert ra[key] == rb[key], (ra["step"], key)


def test_corrupt_frame_stops_with_path_and_checkpoint_survives(tmp_path, tracker, variables, data_root):
    import orbax.checkpoint as ocp
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_root, data)
    cfg = small_config(data, **{"data.on_corrupt": "raise"})
    work = tmp_path / "work"
    train(cfg, work, tracker=tracker, variables=variables, progress=False, stop_at=4)
    bad = sorted((data / "synthetic_0001" / "img").glob("*.jpg"))
    for path in bad:  # every frame of one video: the next batch needs one of them
        path.write_bytes(b"not a jpeg")
    with pytest.raises(TrainingDataError) as info:
        train(cfg, work, tracker=tracker, progress=False)
    message = str(info.value)
    assert "synthetic_0001" in message and ".jpg" in message and any(str(p) in message for p in bad), message
    assert "last checkpoint: step 4" in message
    manager = ocp.CheckpointManager(work / "checkpoints")
    assert manager.latest_step() == 4
    restored = manager.restore(4, args=ocp.args.Composite(state=ocp.args.StandardRestore()))  # complete, readable
    assert int(np.asarray(restored["state"]["step"])) == 4
    # with on_corrupt=skip the run goes on from that checkpoint
    result = train(C.apply_overrides(cfg, ["data.on_corrupt=skip"]), work, tracker=tracker, progress=False,
                   stop_at=6)
    assert result.resumed_from == 4 and result.step == 6


def test_multi_host_detection():
    from jaxtrack.train.mesh import multi_host_env

    assert multi_host_env({}) is None
    assert multi_host_env({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2",
                           "JAX_PROCESS_ID": "0"}) == "explicit"
    assert multi_host_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "1"}) == "slurm"
    assert multi_host_env({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert multi_host_env({"OMPI_COMM_WORLD_SIZE": "2"}) == "openmpi"
    assert multi_host_env({"TPU_WORKER_HOSTNAMES": "a,b"}) == "tpu"
    assert multi_host_env({"TPU_WORKER_HOSTNAMES": "a"}) is None
    assert multi_host_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "1", "JAXTRACK_NO_DISTRIBUTED": "1"}) is None


def test_run_loop_sigterm_saves_last_step_and_resume_matches(tmp_path):
    """jaxtrack.train.runner.run_loop alone (a toy step, a counting iterator): SIGTERM during a step checkpoints the
    last finished step with its data position; the resumed call notes the changed configuration record and ends
    bit for bit where the uninterrupted one ends, with one metrics line per step and the same data position."""
    import optax

    from jaxtrack.train import runner
    from jaxtrack.train.mesh import make_data_mesh

    class Counter:  # batch i is 8 copies of i; grain-style get_state / set_state
        def __init__(self):
            self.i = 0

        def __next__(self):
            self.i += 1
            return {"x": np.full((8, 1), self.i, np.float32)}

        def get_state(self):
            return {"i": self.i}

        def set_state(self, state):
            self.i = state["i"]

    mesh, tx = make_data_mesh(), optax.sgd(0.1)

    @jax.jit
    def step(state, batch, key):
        def loss_fn(p):
            noise = 0.01 * jax.random.normal(key, batch["x"].shape)  # the step key matters
            return jax.numpy.mean((p["w"] - batch["x"] + noise) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state)
        return new, {"loss": loss, "lr": jax.numpy.float32(0.1)}

    def run(workdir, record, stop_signal_at=None, notes=None):
        iterators, calls = [], []

        def step_fn(state, batch, key):
            calls.append(1)
            if len(calls) == stop_signal_at:
                import signal

                signal.raise_signal(signal.SIGTERM)
            return step(state, batch, key)

        def setup(resuming):
            variables = {"params": {"w": np.zeros((), np.float32)}}
            return runner.initial_state(variables, tx, jax.random.key(3), mesh, abstract=resuming), step_fn

        def make_iterator():
            iterators.append(Counter())
            return iterators[-1]

        out = runner.run_loop(workdir, name="toy", config_record=record, setup=setup, make_iterator=make_iterator,
                              mesh=mesh, steps=8, batch_size=8, log_every=1, save_every=3, keep=10,
                              progress=False, log=(notes if notes is not None else []).append)
        return out, iterators[-1]

    full, full_it = run(tmp_path / "full", {"a": 1})
    assert (full.step, full.resumed_from, full_it.i) == (8, None, 8)
    work = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        run(work, {"a": 1}, stop_signal_at=6)  # SIGTERM while the 6th step starts: steps 1..5 are done
    assert sorted(int(p.name) for p in (work / runner.CHECKPOINT_DIR).iterdir() if p.name.isdigit()) == [3, 5]
    assert [r["step"] for r in runner.read_metrics(work / runner.METRICS_FILE)] == [1, 2, 3, 4, 5]
    notes: list = []
    resumed, resumed_it = run(work, {"a": 2}, notes=notes)
    assert (resumed.step, resumed.resumed_from, resumed_it.i) == (8, 5, 8)
    assert any("a: 1 -> 2" in n for n in notes) and any("resumed from" in n for n in notes), notes
    assert json.loads((work / runner.CONFIG_FILE).read_text()) == {"a": 2}
    assert np.asarray(resumed.state.params["w"]) == np.asarray(full.state.params["w"])
    a = runner.read_metrics(tmp_path / "full" / runner.METRICS_FILE)
    b = runner.read_metrics(work / runner.METRICS_FILE)
    assert [r["step"] for r in b] == list(range(1, 9)) and [r["loss"] for r in b] == [r["loss"] for r in a]


def test_frozen_backbone_batch_norm_runs_on_its_running_statistics(tracker, variables):
    """A whole-run freeze of ``basemodel`` puts its BatchNorm in inference mode (pysot's ``.eval()`` on frozen
    backbone layers): the step's loss equals the loss of a hand-assembled forward pass with the backbone on its
    running statistics and the neck/head in train mode, and the backbone's statistics do not move while the
    neck's do. With ``frozen_bn_eval`` off the same step normalises the backbone with batch statistics instead."""
    from jax import numpy as jnp

    from jaxtrack import losses
    from jaxtrack.models.layers import xcorr_depthwise
    from jaxtrack.train import state as S

    rng = np.random.default_rng(3)
    stats = jax.tree_util.tree_map(np.asarray, variables["batch_stats"])
    # running statistics far from any batch's, so inference and train mode give clearly different features
    stats["basemodel"] = jax.tree_util.tree_map_with_path(
        lambda p, a: (rng.uniform(0.5, 3.0, a.shape) if path_str(p).endswith("var") else rng.normal(0, 3, a.shape))
        .astype(a.dtype), stats["basemodel"])
    v = {"params": variables["params"], "batch_stats": stats}
    B, c = 4, tracker.config
    batch = {"template": rng.integers(0, 256, (B, c.exemplar_size, c.exemplar_size, 3), dtype=np.uint8),
             "search": rng.integers(0, 256, (B, c.instance_size, c.instance_size, 3), dtype=np.uint8),
             "box": np.array([[60, 70, 130, 120]] * B, np.float32), "negative": np.arange(B) == 3}

    def reference_forward(m, z, x):  # SiamFC++ (video_analyst) with basemodel.eval(), everything else train()
        f_z, f_x = m.basemodel(z, False), m.basemodel(x, False)
        c_out = xcorr_depthwise(m.c_x(f_x, True), m.c_z_k(f_z, True))
        r_out = xcorr_depthwise(m.r_x(f_x, True), m.r_z_k(f_z, True))
        return m.head(c_out, r_out, x.shape[2], True)

    key = jax.random.key(5)
    z, x = jnp.asarray(batch["template"], jnp.float32), jnp.asarray(batch["search"], jnp.float32)
    targets = losses.make_targets(c, batch["box"], batch["negative"], key=key)

    @jax.jit  # one program each (eager, every layer would compile its own small programs)
    def reference_loss(v, z, x):
        raw, ref_stats = tracker.model.apply(v, z, x, method=reference_forward, mutable=["batch_stats"])
        return losses.training_loss(c, raw, targets)[0], ref_stats

    @jax.jit
    def all_train_mode_loss(v, z, x):
        raw, _ = tracker.model.apply(v, z, x, True, mutable=["batch_stats"])
        return losses.training_loss(c, raw, targets)[0]

    ref_loss, ref_stats = reference_loss(v, z, x)
    ref_loss = float(ref_loss)

    optim = C.OptimConfig(name="sgd", lr=0.01, freeze=(C.FreezeRule("basemodel", -1), C.FreezeRule("head", 5)))
    assert S.inference_bn_prefixes(optim) == ("basemodel",)  # whole-run rules only
    assert S.inference_bn_prefixes(dataclasses.replace(optim, frozen_bn_eval=False)) == ()
    tx, _ = S.make_optimizer(optim, 10, v["params"])
    state = S.create_train_state(v, tx, jax.random.key(1))
    new, metrics = S.make_train_step(tracker, optim, 10, donate=False)(state, batch, key)
    new_stats = jax.device_get(new.batch_stats)
    # same operations, compiled as another program (fused differently): float32 rounding only
    assert abs(float(metrics["loss"]) - ref_loss) <= 1e-5 * abs(ref_loss), (float(metrics["loss"]), ref_loss)
    assert max_abs_diff(new_stats["basemodel"], stats["basemodel"]) == 0.0  # never updated
    assert max_abs_diff(new_stats["c_x"], ref_stats["batch_stats"]["c_x"]) < 1e-4  # the neck's moved as reference
    assert max_abs_diff(new_stats["c_x"], stats["c_x"]) > 1e-3
    # the whole network in train mode (the old behaviour, frozen_bn_eval off) gives another loss: the check bites
    train_loss = float(all_train_mode_loss(v, z, x))
    assert abs(train_loss - ref_loss) > 1e-3 * abs(ref_loss), (train_loss, ref_loss)


# runs last: the subprocess started with the module has been working while the tests above ran
def test_step_on_eight_devices_equals_one_device(eight_devices):
    out, err = eight_devices.communicate(timeout=600)
    assert eight_devices.returncode == 0, err[-3000:]
    report = json.loads(out.split("REPORT ", 1)[1])
    # params, optimizer state and BatchNorm running statistics of the 8-device step equal the 1-device step
    for part in ("params", "batch_stats", "opt_state", "step", "rng"):
        assert report[part] <= 1e-5, (part, report)
    assert report["sharding"] == [True, 8]  # replicated on all 8 devices
    assert report["conv1_moved"] == 0.0  # frozen for the whole run
    assert report["conv2_moved"] > 0.0  # unfrozen after step 1
    assert report["bn_var_moved"] > 1e-3  # the BN statistics did change (so the comparison means something)
    assert report["bf16_dtypes"] == ["float32"] and report["bf16_finite"]
    assert abs(report["bf16_loss"] - report["f32_loss"]) < 0.02 * report["f32_loss"], report


# ----------------------------------------------------------------------------------------------- held-out success
def _numpy_success_auc(gt, boxes) -> float:
    """pysot's OTB success AUC restated: IoU (right edge x + w) > each of 21 thresholds, mean over frames."""
    gt, boxes = np.asarray(gt, np.float64), np.asarray(boxes, np.float64)
    x1, y1 = np.maximum(gt[:, 0], boxes[:, 0]), np.maximum(gt[:, 1], boxes[:, 1])
    x2 = np.minimum(gt[:, 0] + gt[:, 2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(gt[:, 1] + gt[:, 3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    iou = inter / (gt[:, 2] * gt[:, 3] + boxes[:, 2] * boxes[:, 3] - inter)
    return float(np.mean([(iou > t).mean() for t in np.arange(0, 1.05, 0.05)]))


def test_heldout_success_logged_at_every_checkpoint(tmp_path, tracker, variables, data_root, data_dir):
    from jaxtrack.data.sequence import load_otb_folder
    from jaxtrack.train.cli import eval_checkpoints
    from jaxtrack.train.heldout import HELDOUT_FILE, checkpoint_variables

    seq_dir = data_dir / "sequences" / "OTB" / "Crossing"
    if not seq_dir.is_dir():
        pytest.skip("no shared OTB Crossing")
    frames = 6
    cfg = small_config(data_root, **{"eval.sequences": "Crossing", "eval.max_frames": frames, "save_every": 4})
    train(cfg, tmp_path, tracker=tracker, variables=variables, progress=False, stop_at=8)
    rows = read_metrics(tmp_path / HELDOUT_FILE)
    assert [r["step"] for r in rows] == [4, 8]  # one line per scheduled checkpoint
    seq = load_otb_folder(seq_dir).head(frames)
    for row in rows:
        assert set(row["per_sequence"]) == {"Crossing"}
        # reference: the checkpoint's variables, tracked with the whole-sequence scan (another compiled program
        # than the chunked scan the evaluator runs: boxes may differ in the last float bits, which can move one
        # frame's IoU across one threshold, 1/(21*6) of the AUC) and scored by the NumPy restatement
        boxes, _ = tracker.track_sequence(checkpoint_variables(tmp_path, row["step"]),
                                          np.stack([seq.frame(i) for i in range(frames)]), seq.init_box)
        expected = _numpy_success_auc(seq.ground_truth, np.asarray(boxes))
        assert abs(row["per_sequence"]["Crossing"] - expected) <= 1 / (21 * frames) + 1e-9
        assert row["success_auc"] == row["per_sequence"]["Crossing"]
    # after the fact, from the checkpoints alone: the same program on the same values -> the same numbers
    (tmp_path / HELDOUT_FILE).unlink()
    assert eval_checkpoints(cfg, tmp_path, tracker=tracker) == 0
    again = read_metrics(tmp_path / HELDOUT_FILE)
    assert [(r["step"], r["per_sequence"]) for r in again] == [(r["step"], r["per_sequence"]) for r in rows]
    assert (tmp_path / "loss.png").is_file()
