"""The weights layer: one on-disk format written atomically, and one resolver of weight specifications."""

import json

import jax
import numpy as np
import pytest

from jaxtrack import tracking, weights
from jaxtrack.weights.store import WeightsFormatError

TINY = dict(instance_size=191, width_mult=0.125)  # a small siamfcpp_tiny variant: fast to initialise


@pytest.fixture(scope="module")
def tracker():
    return tracking.create("siamfcpp_tiny", **TINY)


def _equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def test_save_then_load_round_trip_and_card(tracker, tmp_path):
    variables = tracker.init_variables(jax.random.key(3))
    card = weights.new_card("tracker", "siamfcpp_tiny", variables, note="round trip")
    folder = weights.save_weights(tmp_path / "w", variables, card)
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "variables"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    loaded = weights.load_path(tracker, folder)
    assert _equal(loaded.variables, variables) and not loaded.is_random
    n = sum(np.size(x) for x in jax.tree_util.tree_leaves(variables["params"]))
    assert loaded.card["num_parameters"] == n and loaded.card["note"] == "round trip"
    # replacing needs overwrite, and only ever replaces a weights folder
    with pytest.raises(FileExistsError, match="already exists"):
        weights.save_weights(folder, variables, card)
    other = tracker.init_variables(jax.random.key(4))
    weights.save_weights(folder, other, card, overwrite=True)
    assert _equal(weights.load_path(tracker, folder).variables, other)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a weights folder"):
        weights.save_weights(precious, variables, card, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep"


def test_bad_cards_are_reported_with_their_path(tracker, tmp_path):
    variables = tracker.init_variables(jax.random.key(0))
    folder = weights.save_weights(tmp_path / "w", variables, weights.new_card("tracker", "siamfcpp_tiny", variables))
    (folder / "card.json").write_text("{not json")
    with pytest.raises(WeightsFormatError, match=r"w/card.json: unreadable card"):
        weights.load_path(tracker, folder)
    (folder / "card.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(WeightsFormatError, match="not a jaxtrack weights card"):
        weights.read_card(folder)
    (folder / "card.json").write_text(json.dumps({"format": "jaxtrack-weights", "what": "defense",
                                                  "tracker": "siamfcpp_tiny"}))
    with pytest.raises(ValueError, match="holds defense weights"):
        weights.load_path(tracker, folder)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        weights.load_weights(tracker, str(tmp_path / "nowhere"))


def test_specifications_resolve_to_their_sources(tracker):
    random = weights.load_weights(tracker, "random", seed=5)
    assert random.is_random and random.source == "random (seed 5)"
    assert _equal(random.variables, tracker.init_variables(jax.random.key(5)))  # the tracker's own initialiser
    assert weights.load_weights(tracker, None, seed=5).is_random  # a variant: nothing shipped, nothing shared
    with pytest.raises(ValueError, match="no weights for tracker 'siamfcpp_tiny'"):
        weights.load_weights(tracker, None, allow_random=False)
    with pytest.raises(ValueError, match="no bundled weights for tracker 'siamrpn_alex'"):
        weights.load_weights(tracking.create("siamrpn_alex"), "bundled")
    with pytest.raises(ValueError, match="no shared weights for tracker 'siamfcpp_tiny'"):
        weights.load_weights(tracker, "shared")


def test_shipped_and_shared_weights(data_dir):
    tiny = tracking.create("siamfcpp_tiny")
    shipped = weights.load_weights(tiny)
    assert shipped.source == f"bundled:{weights.bundled_path('siamfcpp_tiny')}" and not shipped.is_random
    assert shipped.card["tracker"] == "siamfcpp_tiny"  # the card beside the shipped folder
    nano = tracking.create("nanotrack_v2")
    if weights.shared_path("nanotrack_v2") is None:
        pytest.skip("no NanoTrack v2 checkpoint in the shared data")
    default = weights.load_weights(nano)
    assert default.source.startswith("shared:") and default.card["kind"] == "nanotrack_v2"
    by_path = weights.load_weights(nano, "shared:weights/nanotrack/nanotrackv2.pth")
    assert _equal(default.variables, by_path.variables)
