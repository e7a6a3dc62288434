"""The compact SiamFC++ trained by this project (jaxtrack train --config siamfcpp_tiny_synthetic) ships with the
package and tracks held-out synthetic sequences for real."""

import jax
import numpy as np

from jaxtrack import tracking
from jaxtrack.data.synthetic import SyntheticConfig, generate_sequence
from jaxtrack.eval import metrics
from jaxtrack.tracking.weights import bundled_checkpoint, default_checkpoint, load_tracker_variables


def test_shipped_siamfcpp_tiny_tracks_held_out_synthetic_sequences_far_better_than_random_weights():
    path = bundled_checkpoint("siamfcpp_tiny")
    assert path is not None and default_checkpoint("siamfcpp_tiny") == path
    tracker = tracking.create("siamfcpp_tiny")
    trained, is_random = load_tracker_variables(tracker, str(path))
    assert not is_random
    random_init = tracker.init_variables(jax.random.key(0))
    aucs = {"trained": [], "random": []}
    for seed in (90_101, 90_102):  # training used seed 0; these sequences were never seen
        frames, boxes = generate_sequence(SyntheticConfig(num_frames=30), seed=seed)
        for name, variables in (("trained", trained), ("random", random_init)):
            out, _ = tracker.track_sequence(variables, frames, boxes[0])
            aucs[name].append(metrics.success_auc(boxes, np.asarray(out)))
    trained_auc, random_auc = np.mean(aucs["trained"]), np.mean(aucs["random"])
    assert trained_auc > 0.5, aucs
    assert trained_auc > random_auc + 0.2, aucs


def test_shipped_defenses_load_fit_their_trackers_and_resolve_by_name():
    """Each U-Net that ships in jaxtrack/assets/defenses loads for the tracker it was trained with (no transfer
    mismatch), `bundled` names it, `bundled:<other>` deploys it on another tracker only as a transfer, and a tracker
    without one gets a clear error."""
    import pytest

    from jaxtrack.defense.checkpoint import (
        BUNDLED_DEFENSES,
        bundled_defense,
        defended_from_checkpoint,
        read_defense_card,
        resolve_defense,
        transfer_mismatches,
    )

    shipped = [name for name in BUNDLED_DEFENSES if bundled_defense(name) is not None]
    assert "nanotrack_v2" in shipped
    for name in shipped:
        tracker = tracking.create(name)
        card = read_defense_card(bundled_defense(name))
        assert card["tracker"] == name and transfer_mismatches(card, tracker, card["where"]) == []
        assert card["num_parameters"] < 2_000_000  # a few MB at most
        assert resolve_defense("bundled", name) == bundled_defense(name)
        d = defended_from_checkpoint(tracker, "bundled")
        assert d.name == f"{name}_unet-{card['where']}" and d.base is tracker
    with pytest.raises(ValueError, match="no defense ships for tracker 'siamrpn_alex'"):
        resolve_defense("bundled", "siamrpn_alex")
    with pytest.raises(ValueError, match="family 'nanotrack'"):
        defended_from_checkpoint(tracking.create("siamrpn_alex"), "bundled:nanotrack_v2")
    t = defended_from_checkpoint(tracking.create("siamrpn_alex"), "bundled:nanotrack_v2", allow_transfer=True)
    assert t.name == "siamrpn_alex_unet-both-from-nanotrack_v2"
