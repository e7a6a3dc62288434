"""Data-parallel device mesh: one ``data`` axis over every device of every host.

Params and optimizer state are replicated (``NamedSharding(mesh, P())``), batches are split along their first
axis (``NamedSharding(mesh, P("data"))``); one ``jax.jit`` train step then runs SPMD on all devices and XLA
inserts the gradient all-reduce. Batch statistics computed inside the jitted step (BatchNorm in train mode) are
GLOBAL batch statistics, because the program is written for the global batch (sync-BN without ``axis_name``).

Multi-host: :func:`maybe_initialize_distributed` calls ``jax.distributed.initialize()`` (before any other JAX
call) when it finds a multi-process launch:

* ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``
  (explicit; also ``JAX_LOCAL_DEVICE_IDS`` = comma-separated local device ids, optional);
* SLURM (``SLURM_NTASKS`` > 1 with ``SLURM_PROCID``), Open MPI (``OMPI_COMM_WORLD_SIZE`` > 1) or a multi-host
  Cloud TPU slice (``TPU_WORKER_HOSTNAMES`` with several hosts, or ``MEGASCALE_COORDINATOR_ADDRESS``): JAX's own
  cluster auto-detection fills in the arguments;
* ``JAXTRACK_NO_DISTRIBUTED=1`` disables all of it.

Each host then loads its own ``1 / process_count`` share of every global batch (``shard_index =
jax.process_index()``), and :func:`shard_batch` assembles the global array from the per-host pieces.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "maybe_initialize_distributed",
    "multi_host_env",
    "make_data_mesh",
    "replicated",
    "batch_sharding",
    "replicate",
    "shard_batch",
]

DATA_AXIS = "data"


def multi_host_env(environ=None) -> str | None:
    """Name of the multi-process launcher found in the environment, or ``None`` for a single process."""
    env = os.environ if environ is None else environ
    if env.get("JAXTRACK_NO_DISTRIBUTED"):
        return None
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "explicit"
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        return "slurm"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return "openmpi"
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if len(hosts) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    return None


_initialized = False


def maybe_initialize_distributed(environ=None) -> bool:
    """Call ``jax.distributed.initialize`` once if the environment describes a multi-process run.

    Must run before anything touches a JAX backend. Returns whether it initialised.
    """
    global _initialized
    env = os.environ if environ is None else environ
    kind = multi_host_env(env)
    if kind is None or _initialized:
        return False
    if kind == "explicit":
        local = env.get("JAX_LOCAL_DEVICE_IDS")
        jax.distributed.initialize(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(env["JAX_NUM_PROCESSES"]),
            process_id=int(env["JAX_PROCESS_ID"]),
            local_device_ids=[int(i) for i in local.split(",")] if local else None,
        )
    else:
        jax.distributed.initialize()  # cluster auto-detection (SLURM, Open MPI, Cloud TPU)
    _initialized = True
    return True


def make_data_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``devices`` (default: every device of every process).

    Axis type ``Auto``: the compiler propagates shardings (the batch sharding of the inputs) by itself, which is
    what a data-parallel jit step needs; ``jax.make_mesh``'s default became ``Explicit`` in JAX 0.9.
    """
    if devices is None:
        n = jax.device_count()
        axis_type = getattr(jax.sharding, "AxisType", None)
        if axis_type is not None:
            return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(axis_type.Auto,))
        return jax.make_mesh((n,), (DATA_AXIS,))
    return Mesh(np.asarray(list(devices)), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    """Put every leaf of ``tree`` on every device of ``mesh`` (all hosts must pass the same values).

    The result never aliases the input buffers, so donating it to a train step leaves ``tree`` usable.
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding, may_alias=False)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)), tree
    )


def shard_batch(batch, mesh: Mesh):
    """Global batch arrays from this process's share of the batch, split along axis 0 over ``data``.

    Single process: ``batch`` is the whole batch. Multi-host: each process passes its ``1 / process_count``
    share, in process order.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
