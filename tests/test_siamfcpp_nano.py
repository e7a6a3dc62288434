"""``siamfcpp_nano``: SiamFC++ on NanoTrack v2's backbone, and the ``init_backbone`` graft that gives it NanoTrack's
real features.

References: the NanoTrack v2 network itself (checked against OpenCV's ONNX model in test_nanotrack.py) for the
grafted features; hand-worked sizes for the stride-16 geometry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtrack import tracking
from jaxtrack.train import config as C
from jaxtrack.train.loop import _backbone_donor, _initial_variables
from jaxtrack.weights.backbone import graft_backbone


def test_geometry_of_the_stride_16_head():
    """z 127 -> 8x8 features -> 6x6 kernels; x 255 -> 16x16 -> 14x14 -> xcorr 9x9 -> one 3x3 tower layer -> 7x7
    cells, 16 px apart, the first at (255 - 1 - 6 * 16) // 2 = 79 px (video_analyst's score offset)."""
    tracker = tracking.create("siamfcpp_nano")
    assert tracker.config.score_size == 7
    variables = jax.eval_shape(tracker.init_variables, jax.random.key(0))
    zf = jax.eval_shape(lambda v, z: tracker.model.apply(v, z, method=tracker.model.template), variables,
                        jax.ShapeDtypeStruct((2, 127, 127, 3), jnp.float32))
    assert [k.shape for k in zf] == [(2, 6, 6, 64)] * 2
    # variables set in NumPy (no init compile): LeCun-normal kernels, BN 1/0, si 1; the offsets conv all zero, so
    # every box is exp(0) * 16 = 16 px to each side of its cell centre
    rng = np.random.default_rng(0)

    def init(path, leaf):
        keys = [str(getattr(k, "key", k)) for k in path]
        if keys[-1] == "kernel" and "bbox_offsets_p5" not in keys:
            return rng.standard_normal(leaf.shape).astype(np.float32) / np.sqrt(np.prod(leaf.shape[:-1]))
        return np.full(leaf.shape, 1.0 if keys[-1] in ("scale", "var", "si") else 0.0, np.float32)

    variables = jax.tree_util.tree_map_with_path(init, variables)
    rng = np.random.default_rng(0)
    z, x = rng.uniform(0, 255, (1, 127, 127, 3)), rng.uniform(0, 255, (1, 255, 255, 3))
    out = jax.jit(tracker.model.apply)(variables, jnp.asarray(z, jnp.float32), jnp.asarray(x, jnp.float32))
    assert out["cls"].shape == out["ctr"].shape == (1, 7, 7) and out["box"].shape == (1, 7, 7, 4)
    cell = 79 + 16 * np.arange(7, dtype=np.float32)
    x0 = np.broadcast_to(cell - 16, (7, 7))
    y0 = np.broadcast_to((cell - 16)[:, None], (7, 7))
    expected = np.stack([x0, y0, x0 + 32, y0 + 32], axis=-1)
    np.testing.assert_allclose(np.asarray(out["box"][0]), expected, atol=1e-3)


@pytest.fixture(scope="module")
def donor():
    return _backbone_donor("nanotrack_v2")


def test_grafted_backbone_computes_nanotrack_features(donor, data_dir):
    """After the graft, ``basemodel`` of ``siamfcpp_nano`` is NanoTrack v2's backbone: on a real template crop
    its features equal those of NanoTrack v2 with the real weights. Both sides run the same layers in two
    separately compiled programs, so equality holds to float32 rounding (1e-5 of the feature scale)."""
    import cv2

    from jaxtrack.weights import load_path

    backbone, path = donor
    assert path.name == "nanotrackv2.pth"
    nano = tracking.create("nanotrack_v2")
    nano_vars = load_path(nano, path).variables
    config = C.get_config("siamfcpp_nano_real")
    student = tracking.create(config.tracker)
    grafted = _initial_variables(config, student, jax.random.key(0), abstract=False)
    frame = cv2.imread(str(next((data_dir / "sequences" / "OTB" / "David" / "img").glob("*.jpg"))))
    z = jnp.asarray(cv2.resize(frame[50:250, 100:300], (127, 127)), jnp.float32)[None]
    ours = jax.jit(lambda v, z: student.model.apply(v, z, method=lambda m, z: m.basemodel(z)))(grafted, z)
    ref = jax.jit(lambda v, z: nano.model.apply(v, z, method=nano.model.template))(nano_vars, z)
    scale = float(np.abs(np.asarray(ref)).max())
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5 * scale)
    # the rest of the network is the random start, and the graft changed no other leaf
    random = student.init_variables(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(grafted["params"]["c_x"]["conv"]["kernel"]),
                                  np.asarray(random["params"]["c_x"]["conv"]["kernel"]))
    np.testing.assert_array_equal(np.asarray(grafted["batch_stats"]["c_x"]["bn"]["mean"]),
                                  np.asarray(random["batch_stats"]["c_x"]["bn"]["mean"]))


def test_graft_refuses_another_backbone_naming_the_leaves(donor):
    backbone, _ = donor
    tiny = jax.eval_shape(tracking.create("siamfcpp_tiny").init_variables, jax.random.key(0))
    with pytest.raises(ValueError) as info:
        graft_backbone(tiny, backbone, what="init_backbone='nanotrack_v2'")
    message = str(info.value)
    assert message.startswith("init_backbone='nanotrack_v2': the backbones differ")
    assert "batch_stats/basemodel/conv1/bn/mean: not in the donor" in message
    assert "batch_stats/basemodel/features/0/1/mean: not in this network" in message
    assert "more" in message.splitlines()[-1]  # the first 20 are listed, then how many more
    with pytest.raises(C.ConfigError, match="init_backbone='nope' is not a tracker"):
        _backbone_donor("nope")


def test_head_only_weights_folder_round_trip(tmp_path, donor):
    """A head-only folder stores no backbone leaf and loads back to the full variables (backbone from the shared
    NanoTrack checkpoint, exactly); a changed checkpoint digest or a backbone that is not the donor's is refused
    with the folder named."""
    import json

    from jaxtrack import checkpoint
    from jaxtrack.convert.convert import abstract_variables
    from jaxtrack.weights import load_path, new_card, save_without_backbone
    from jaxtrack.weights.store import variables_dir

    backbone, _ = donor
    student = tracking.create("siamfcpp_nano")
    full = graft_backbone(student.init_variables(jax.random.key(3)), backbone)
    folder = save_without_backbone(tmp_path / "nano", full, new_card("tracker", "siamfcpp_nano", full), "nanotrack_v2")
    with pytest.raises(Exception, match="basemodel"):  # the stored tree has no backbone
        checkpoint.load_variables(variables_dir(folder), abstract_variables(student))
    loaded = load_path(student, folder)
    assert loaded.card["backbone_from"]["file"] == "weights/nanotrack/nanotrackv2.pth"
    for a, b in zip(jax.tree_util.tree_leaves(loaded.variables), jax.tree_util.tree_leaves(full), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text())
    card["backbone_from"]["sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=f"{folder}: its backbone comes from weights/nanotrack/nanotrackv2.pth with "
                                         "SHA-256 0000"):
        load_path(student, folder)
    with pytest.raises(ValueError, match="variables are not those of"):
        save_without_backbone(tmp_path / "bad", student.init_variables(jax.random.key(3)),
                              new_card("tracker", "siamfcpp_nano", full), "nanotrack_v2")


def test_default_weights_skip_a_head_only_folder_without_its_backbone(tmp_path, donor, monkeypatch):
    """Shipped head-only weights are the default only where the backbone checkpoint is: without the shared data
    folder ``default`` falls back to random weights (said so), and ``bundled`` names the missing file."""
    from jaxtrack import weights
    from jaxtrack.weights import load_weights, new_card, save_without_backbone

    backbone, _ = donor
    student = tracking.create("siamfcpp_nano")
    full = graft_backbone(student.init_variables(jax.random.key(3)), backbone)
    folder = save_without_backbone(tmp_path / "nano", full, new_card("tracker", "siamfcpp_nano", full), "nanotrack_v2")
    monkeypatch.setattr(weights, "bundled_path", lambda name: folder if name == "siamfcpp_nano" else None)
    assert load_weights(student).source == f"bundled:{folder}"
    monkeypatch.setenv("JAXTRACK_DATA", str(tmp_path / "no-shared-data"))
    assert load_weights(student).is_random
    with pytest.raises(ValueError, match="nanotrackv2.pth is missing"):
        load_weights(student, "bundled")


def test_track_runs_the_best_siamfcpp_whose_weights_load(data_dir, monkeypatch):
    """``jaxtrack track`` without ``--model``: ``siamfcpp_nano`` (real-video weights) where the shared data folder
    has its backbone, ``siamfcpp_tiny`` (fully shipped) where it does not."""
    from jaxtrack.weights import default_siamfcpp

    assert default_siamfcpp() == "siamfcpp_nano"
    monkeypatch.setenv("JAXTRACK_DATA", str(data_dir / "no-such-folder"))
    assert default_siamfcpp() == "siamfcpp_tiny"
