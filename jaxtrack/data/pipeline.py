"""Training input pipeline: pre-cropped TFDS shards (or raw sequences) -> grain -> batches of pairs.

::

    from jaxtrack.data.pairs import PairConfig
    from jaxtrack.data.pipeline import build_tfds, make_loader

    build_tfds("/data/GOT-10k", "/data/tfds", dataset="got10k", crop_size=511)      # once
    loader = make_loader("/data/tfds", PairConfig.siamrpn(), batch_size=32, seed=0,
                         shard_index=jax.process_index(), shard_count=jax.process_count())
    it = iter(loader)
    batch = next(it)   # {"template": u8 [B,127,127,3], "search": u8 [B,255,255,3], "box": f32 [B,4],
                       #  "negative": bool [B]}
    state = it.get_state()          # JSON-able; save it with the train state (grain.checkpoint / orbax)
    it.set_state(state)             # continues with exactly the next batch

    loader = make_loader(load_dataset("synthetic", root), cfg, batch_size=8)   # no build: raw sequences

How it is put together (grain ``MapDataset`` API): the global pair indices ``0, 1, 2, ...`` (``num_epochs`` times
``pairs_per_epoch`` of them, or practically endless with ``num_epochs=None``) are split between shards
(``[shard_index::shard_count]``, every shard gets the same number), each index becomes
``PairSampler.sample(index)`` and consecutive ones are batched (``drop_remainder`` by default). The samples
depend only on ``(seed, index)``, so:

* the same seed gives the same batches whatever ``worker_count`` / ``num_threads``; different seeds differ;
* shard ``k``'s batch ``t`` holds the pairs ``k + shard_count * (t * B + j)``: shards never overlap, and together
  they make exactly the batches of one unsharded loader with batch ``shard_count * B`` (in another order);
* the iterator state is the position in that index stream: ``set_state`` continues exactly where it was.

``worker_count > 0`` runs the sampling in that many processes (grain ``mp_prefetch``); ``num_threads`` is the
number of batches computed concurrently by threads in each process (OpenCV releases the GIL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grain
import numpy as np

from jaxtrack.data.pairs import PAIR_KEYS, PairConfig, PairSampler, as_frame_source

__all__ = ["build_tfds", "make_loader", "make_sampler", "steps_per_epoch", "open_frames", "PAIR_KEYS"]

#: Index stream length used for ``num_epochs=None`` (far more than any training run draws).
ENDLESS = 2**62


def build_tfds(manual_dir: str | os.PathLike, data_dir: str | os.PathLike, dataset: str = "synthetic",
               crop_size: int = 511, **kwargs) -> Path:
    """Pre-crop ``dataset`` from ``manual_dir`` into ArrayRecord shards under ``data_dir``; returns the build
    folder. ``dataset``: ``"synthetic"``, ``"got10k"`` (train split), ``"got10k-val"``, ``"lasot"`` (train split of
    ``lasot_split.json`` when present), ``"otb-folder"``, ...; keyword options (``exemplar_size``,
    ``context_amount``, ``image_format="jpeg"|"png"``, ``jpeg_quality``, ``sequences``,
    ``on_corrupt="skip"|"raise"``, ``num_threads``, ``overwrite``, ``progress``) as in
    :func:`jaxtrack.data.tfds_builder.build`."""
    from jaxtrack.data import tfds_builder

    return tfds_builder.build(manual_dir, data_dir, dataset, crop_size, **kwargs)


def open_frames(source, cfg: PairConfig, dataset: str | None = None):
    """A frame source from a TFDS folder (``data_dir`` or the build folder), a list of sequences or a source."""
    if isinstance(source, PairSampler):
        return source.source
    if isinstance(source, (str, os.PathLike)):
        from jaxtrack.data.tfds_builder import RecordFrames, find_prepared

        return RecordFrames(find_prepared(source, dataset=dataset))
    return as_frame_source(source, cfg)


def make_sampler(source, cfg: PairConfig | None = None, seed: int = 0, dataset: str | None = None) -> PairSampler:
    """:class:`PairSampler` over a TFDS folder, a list of :class:`~jaxtrack.data.sequence.Sequence` or a frame
    source (a :class:`PairSampler` lends its frames and, without ``cfg``, its config)."""
    if cfg is None:
        cfg = source.cfg if isinstance(source, PairSampler) else PairConfig()
    return PairSampler(open_frames(source, cfg, dataset), cfg, seed=seed)


class _Sample(grain.transforms.Map):
    """global pair index -> pair (picklable, for worker processes)."""

    def __init__(self, sampler: PairSampler):
        self.sampler = sampler

    def map(self, index):
        return self.sampler.sample(int(index))


def _stack(examples):
    return {k: np.stack([e[k] for e in examples]) for k in PAIR_KEYS}


def _stream_length(sampler: PairSampler, num_epochs: int | None, shard_count: int) -> int:
    if num_epochs is None:
        total = ENDLESS
    else:
        if int(num_epochs) != num_epochs or num_epochs < 1:
            raise ValueError(f"num_epochs must be a positive integer or None, got {num_epochs}")
        total = len(sampler) * int(num_epochs)
    return (total // shard_count) * shard_count


def steps_per_epoch(source, cfg: PairConfig | None = None, *, batch_size: int, shard_count: int = 1,
                    dataset: str | None = None) -> int:
    """Batches per epoch and shard: ``pairs_per_epoch // (shard_count * batch_size)``."""
    sampler = source if isinstance(source, PairSampler) else make_sampler(source, cfg, dataset=dataset)
    return len(sampler) // (int(shard_count) * int(batch_size))


def make_loader(source, cfg: PairConfig | None = None, *, batch_size: int, seed: int = 0, shard_index: int = 0,
                shard_count: int = 1, num_epochs: int | None = None, worker_count: int = 0,
                num_threads: int = 2, prefetch_batches: int = 4, drop_remainder: bool = True,
                dataset: str | None = None) -> grain.IterDataset:
    """A grain ``IterDataset`` of pair batches; ``iter()`` gives a checkpointable iterator.

    Args:
      source: a TFDS ``data_dir`` (or the build folder) from :func:`build_tfds`; or a list of
        :class:`~jaxtrack.data.sequence.Sequence` (pre-cropped on the fly, no build); or a frame source /
        :class:`PairSampler` (its frames are used).
      cfg: the :class:`PairConfig` (default: SiamRPN++'s).
      batch_size: pairs per batch and shard.
      seed: sampling seed; a pair depends only on ``(seed, global index)``.
      shard_index, shard_count: this process's share of the index stream (e.g. ``jax.process_index()``,
        ``jax.process_count()``).
      num_epochs: epochs of ``pairs_per_epoch`` pairs, or None for an endless stream.
      worker_count: sampling processes (0: in this process; spawned, so the source must be picklable, which
        sequences, shards and samplers are). Close such an iterator (``it.close()``) and drop it when done, or
        grain's worker teardown at interpreter exit prints noise.
      num_threads: batches prepared concurrently by threads (per process); ``prefetch_batches`` ahead.
      drop_remainder: drop a last incomplete batch (finite ``num_epochs`` only).
      dataset: picks the build when ``data_dir`` holds several.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if not (0 <= int(shard_index) < int(shard_count)):
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    sampler = make_sampler(source, cfg, seed=seed, dataset=dataset)
    total = _stream_length(sampler, num_epochs, int(shard_count))
    if total < shard_count * batch_size and drop_remainder:
        raise ValueError(f"{total} pairs ({len(sampler)} per epoch x {num_epochs} epochs) cannot fill one batch of "
                         f"{batch_size} on each of {shard_count} shards; raise num_epochs or pairs_per_epoch")
    ds = grain.MapDataset.range(total)
    if shard_count > 1:
        ds = ds[int(shard_index)::int(shard_count)]
    ds = ds.map(_Sample(sampler)).batch(int(batch_size), drop_remainder=drop_remainder, batch_fn=_stack)
    read = grain.ReadOptions(num_threads=max(1, int(num_threads)),
                             prefetch_buffer_size=max(1, int(prefetch_batches)))
    out = ds.to_iter_dataset(read)
    if worker_count and int(worker_count) > 0:
        _absl_flags_parsed()
        out = out.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(worker_count)))
        # Workers hand batches over in shared memory; copy them into ordinary arrays so the shared blocks are
        # released at once (a batch kept until interpreter exit otherwise leaks them, with noisy warnings).
        out = out.map(_own_arrays)
    return out


def _own_arrays(batch):
    return {k: np.array(v, copy=True) for k, v in batch.items()}


def _absl_flags_parsed() -> None:
    """grain's worker processes read absl flags (``--grain_enable_multiprocess_worker_profiling``); outside an
    ``absl.app`` program nobody parses them, and reading an unparsed flag raises. Use the defaults then."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def describe_batch(batch: dict[str, Any]) -> str:
    """One line with the shapes/dtypes of a batch (logs)."""
    return ", ".join(f"{k}: {np.asarray(v).dtype}{list(np.shape(v))}" for k, v in batch.items())
