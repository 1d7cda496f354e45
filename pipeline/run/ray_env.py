"""Where a scan's Ray comes from and what its processes get from the driver: a local Ray
bound to this machine, or a cluster joined by address; storage settings; malloc arenas.

Storage settings never travel in a Ray runtime environment: Ray writes a job's and a task's
runtime environment to its logs in plain text (``runtime_env_agent.log``, readable by every
user of the node). The analysis tasks take them as an argument instead, and a cluster's
workers get no credentials at all: its nodes need their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from pipeline.config import ScanConfig
from pipeline.session.analyse import SessionAnalysis, analyse_session
from pipeline.storage import STORAGE_SECRETS, storage_env

log = logging.getLogger(__name__)

MALLOC_ARENAS = "2"  # glibc malloc arenas per process Ray starts locally (see _malloc_arenas)


def ensure_ray(config: ScanConfig) -> None:
    """Start Ray locally, or join ``ray.address``; reuse a Ray already started in this process."""
    import ray

    if ray.is_initialized():
        return
    # Ray announces on every start that it protects its cluster with a token (good: kept on);
    # an operator reads it as a warning about the run.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if config.ray.address:
        ray.init(address=config.ray.address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        # address="local": never attach to a cluster that `ray start` left on this machine.
        with _malloc_arenas(MALLOC_ARENAS), _loopback_only():
            ray.init(
                address="local",
                num_cpus=config.ray.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )


def worker_storage(config: ScanConfig) -> dict[str, str]:
    """The storage settings (``AWS_*``) the analysis tasks take with them: all of them to a
    local Ray's workers; to a cluster's, all but the credentials, with a warning naming them
    when this process has some (the nodes must have their own: the environment of their
    ``ray start``, a profile in ``~/.aws``, or an instance role)."""
    env = storage_env()
    if not config.ray.address:
        return env
    held = sorted(k for k in env if k in STORAGE_SECRETS)
    if held:
        log.warning(
            "%s not sent to the Ray cluster's workers: credentials are never shipped to other machines. Give each"
            " node its own (in the environment of its `ray start`, a profile in ~/.aws with AWS_PROFILE, or an"
            " instance role); without them its workers cannot read s3:// inputs",
            ", ".join(held),
        )
    return {k: v for k, v in env.items() if k not in STORAGE_SECRETS}


def analyse_in_worker(storage: Mapping[str, str], *args: Any, **kwargs: Any) -> SessionAnalysis:
    """:func:`~pipeline.session.analyse.analyse_session` in a Ray worker, with the storage
    settings the driver sent (:func:`worker_storage`)."""
    os.environ.update(storage)
    return analyse_session(*args, **kwargs)


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """A local Ray whose servers (GCS, raylet, workers, agents) listen on 127.0.0.1 only.

    Ray binds them to the node's address, and ``ray.init`` replaces a given 127.0.0.1 by the
    machine's outside address unless Ray clustering is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
    read once when Ray is imported: it is set here for the processes Ray starts, and in Ray's
    constants for this one). Checked with the listening sockets of the whole process tree in
    ``tests/pipeline/run/test_ray_env.py``."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environ(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0"):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def _malloc_arenas(arenas: str) -> Iterator[None]:
    """glibc's ``MALLOC_ARENA_MAX`` for the processes Ray starts meanwhile (they inherit it),
    unless the user set it. A worker's decoder, prefetch and MediaPipe threads otherwise each
    get an arena that keeps freed frames: measured, 145 MB less summed RSS over a scan on 2
    cores, same speed."""
    if "MALLOC_ARENA_MAX" in os.environ:
        yield
        return
    with _environ("MALLOC_ARENA_MAX", arenas):
        yield


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """``name=value`` in this process's environment meanwhile (so in the processes it starts),
    then as it was."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved
