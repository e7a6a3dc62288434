"""The frozen teacher of a distillation run (``TrainConfig.distill``): which tracker, which weights, which loss weights.

::

    teacher = load_teacher(config.distill, student_tracker)      # None when config.distill.teacher == ""
    step = make_train_step(student_tracker, optim, total_steps, mesh, teacher=teacher)

The teacher's variables come from ``distill.teacher_weights`` or, by default, from the teacher's real checkpoint in
the shared data folder (:func:`jaxtrack.weights.shared_path`, e.g. NanoTrack v2's ``.pth``),
converted in memory. They are not part of the training state (never checkpointed: a resumed run loads them again).
The loss itself is :mod:`jaxtrack.losses.distill`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxtrack.losses.distill import DistillWeights, check_compatible
from jaxtrack.train.options import ConfigError, DistillConfig

__all__ = ["Teacher", "load_teacher", "teacher_weights_path"]


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
    """A frozen tracker with its variables and the distillation loss weights.

    tracker: a :class:`jaxtrack.tracking.NanoTrackTracker`; variables: its Flax variables (``params`` +
    ``batch_stats``, NumPy or device arrays); weights: :class:`~jaxtrack.losses.distill.DistillWeights`;
    source: the file/folder the variables were read from (for the run's records).
    """

    tracker: Any
    variables: dict
    weights: DistillWeights
    source: str


def teacher_weights_path(distill: DistillConfig) -> str:
    """Where the teacher's variables are read from: ``distill.teacher_weights`` (``shared:REL`` resolved) or the
    teacher's real checkpoint in the shared data folder. ``ValueError`` naming the key when there is none."""
    from jaxtrack.paths import resolve_data_path, shared_data_dir
    from jaxtrack.weights import SHARED, shared_path

    if distill.teacher_weights:
        path = resolve_data_path(distill.teacher_weights)
        if not path.exists():
            raise ValueError(f"distill.teacher_weights={distill.teacher_weights!r}: {path} does not exist")
        return str(path)
    path = shared_path(distill.teacher)
    if path is None:
        rel = SHARED.get(distill.teacher)
        where = f"{shared_data_dir() / rel} is missing" if rel else "no shared checkpoint is known for it"
        raise ValueError(f"distill.teacher={distill.teacher!r}: {where} (set JAXTRACK_DATA to the shared data folder "
                         f"or --set distill.teacher_weights=PATH)")
    return str(path)


def load_teacher(distill: DistillConfig, student) -> Teacher | None:
    """The :class:`Teacher` of ``distill`` for the ``student`` tracker, or None when ``distill.teacher`` is empty.

    Raises :class:`~jaxtrack.train.config.ConfigError` for an unknown teacher name and ``ValueError`` when the
    teacher cannot teach the student (:func:`jaxtrack.losses.distill.check_compatible`) or has no weights.
    """
    if not distill.enabled:
        return None
    from jaxtrack import tracking
    from jaxtrack.weights import load_path

    if distill.teacher not in tracking.CONFIGS:
        nano = [n for n, c in tracking.CONFIGS.items() if getattr(c, "family", "") == "nanotrack"]
        raise ConfigError(f"distill.teacher={distill.teacher!r} is not a tracker; NanoTrack trackers: "
                          f"{', '.join(nano)}")
    teacher = tracking.create(distill.teacher)
    check_compatible(student.config, teacher.config)
    path = teacher_weights_path(distill)
    variables = load_path(teacher, path).variables
    weights = DistillWeights(cls=distill.cls_weight, reg=distill.reg_weight, reg_min_prob=distill.reg_min_prob)
    return Teacher(tracker=teacher, variables=variables, weights=weights, source=path)
