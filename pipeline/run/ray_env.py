"""Where a scan's Ray comes from and what its processes get from the driver: a local Ray
bound to this machine, or a cluster joined by address; storage settings; malloc arenas."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from pipeline.config import ScanConfig
from pipeline.storage import storage_env

MALLOC_ARENAS = "2"  # glibc malloc arenas per process Ray starts locally (see _malloc_arenas)
_workers_env: dict[str, str] | None = (
    None  # the storage settings every worker of this job has, once this process started or joined Ray
)


def ensure_ray(config: ScanConfig) -> None:
    """Start Ray locally, or join ``ray.address``; reuse a Ray already started in this process.

    The workers get the driver's storage settings for the whole job: locally they inherit
    its environment, on a cluster they come as the job's runtime environment. A task with
    a runtime environment of its own would need freshly started workers instead of the
    ones Ray has already started (measured: the first analyses then start 1.5 s later)."""
    global _workers_env
    import ray

    if ray.is_initialized():
        return
    # Ray announces on every start that it protects its cluster with a token (good: kept on);
    # an operator reads it as a warning about the run.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    env = storage_env()
    if config.ray.address:
        ray.init(
            address=config.ray.address,
            runtime_env={"env_vars": env} if env else None,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    else:
        # address="local": never attach to a cluster that `ray start` left on this machine.
        with _malloc_arenas(MALLOC_ARENAS):
            ray.init(
                address="local",
                num_cpus=config.ray.num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    _workers_env = env


@contextlib.contextmanager
def _malloc_arenas(arenas: str) -> Iterator[None]:
    """glibc's ``MALLOC_ARENA_MAX`` for the processes Ray starts meanwhile (they inherit it),
    unless the user set it. A worker's decoder, prefetch and MediaPipe threads otherwise each
    get an arena that keeps freed frames: measured, 145 MB less summed RSS over a scan on 2
    cores, same speed."""
    if "MALLOC_ARENA_MAX" in os.environ:
        yield
        return
    os.environ["MALLOC_ARENA_MAX"] = arenas
    try:
        yield
    finally:
        del os.environ["MALLOC_ARENA_MAX"]


def task_env() -> dict[str, str] | None:
    """The storage settings the analysis tasks must be given: none when the job's workers
    already have this process's (a Ray started elsewhere, or settings changed since, need them)."""
    env = storage_env()
    return None if env == (_workers_env or {}) else env
