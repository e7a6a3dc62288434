"""The held-out evaluation sets shared by the experiments and the training runs.

* **Real:** the OTB sequences in the shared data folder that no training recipe may read
  (:data:`HELD_OUT_OTB`; the recipes list them, with VOT2018 ``bag``, in ``data.held_out``).
* **Synthetic:** sequences generated from seed :data:`HELD_OUT_SYNTHETIC_SEED`; the synthetic training recipes
  generate from seed 0, so none of these frames was trained on.
"""

from __future__ import annotations

from pathlib import Path

HELD_OUT_OTB = ("Crossing", "Couple", "KiteSurf", "Football1")
HELD_OUT_SYNTHETIC_SEED = 90_000


def held_out_otb(sequences=HELD_OUT_OTB, max_frames: int = 0) -> list:
    """The held-out real OTB sequences (``[]`` when the shared data folder has none); ``sequences="all"`` for every
    sequence of the shared OTB folder. ``max_frames`` > 0 cuts each to its first frames."""
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.paths import shared_data_dir

    root = shared_data_dir() / "sequences" / "OTB"
    if not root.is_dir():
        return []
    names = None if sequences == "all" else list(sequences)
    seqs = list(load_dataset("otb-folder", root, sequences=names))
    return [s.head(max_frames) for s in seqs] if max_frames else seqs


def held_out_synthetic(folder, count: int, frames: int = 60, max_frames: int = 0) -> list:
    """``count`` held-out synthetic sequences of ``frames`` frames, generated into ``folder`` (reused when already
    there)."""
    from jaxtrack.data.datasets import load_dataset
    from jaxtrack.data.synthetic import SyntheticConfig, generate_dataset

    if count <= 0:
        return []
    root = Path(folder)
    generate_dataset(root, count, SyntheticConfig(num_frames=frames), seed=HELD_OUT_SYNTHETIC_SEED)
    seqs = list(load_dataset("synthetic", root))
    return [s.head(max_frames) for s in seqs] if max_frames else seqs


def models_with_weights(names, log=print) -> list[tuple[str, dict]]:
    """``[(name, variables)]`` of the trackers among ``names`` that have trained weights here (shipped with the
    package or in the shared data folder); the others are skipped with a note."""
    from jaxtrack import tracking
    from jaxtrack.weights import default_path, load_weights

    out = []
    for name in names:
        if default_path(name) is None:
            log(f"skipping {name}: no trained weights here")
            continue
        out.append((name, load_weights(tracking.create(name), allow_random=False).variables))
    return out


def held_out_sets(results, otb_sequences: str = ",".join(HELD_OUT_OTB), synthetic: int = 4,
                  synthetic_frames: int = 60) -> dict[str, tuple[str, list]]:
    """``{label: (dataset name for the benchmark runner, sequences)}`` of the experiments: the real OTB sequences
    ``otb_sequences`` (comma-separated, ``all`` or ``none``) and ``synthetic`` synthetic ones (generated under
    ``results/synthetic_data``)."""
    out = {}
    if otb_sequences != "none":
        otb = held_out_otb("all" if otb_sequences == "all" else otb_sequences.split(","))
        if otb:
            out["OTB (real)"] = ("otb-folder", otb)
    if synthetic:
        out["synthetic"] = ("synthetic", held_out_synthetic(Path(results) / "synthetic_data", synthetic,
                                                           synthetic_frames))
    return out
