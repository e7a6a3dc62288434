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
