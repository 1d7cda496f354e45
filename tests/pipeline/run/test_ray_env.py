"""What the processes of a scan's Ray get from the driver: storage settings, malloc arenas."""

from __future__ import annotations

import os

from pipeline.run import ray_env
from pipeline.storage import STORAGE_ENV_PREFIXES


def test_analysis_tasks_get_storage_settings_only_when_their_workers_lack_them(monkeypatch):
    """Workers started by this process already have its settings (a task of its own runtime
    environment would wait for new workers); settings set or changed since must be sent."""
    for key in [k for k in os.environ if k.startswith(STORAGE_ENV_PREFIXES)]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(ray_env, "_workers_env", None)  # a Ray this process did not start
    assert ray_env.task_env() is None
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert ray_env.task_env() == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    monkeypatch.setattr(ray_env, "_workers_env", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})  # started with them
    assert ray_env.task_env() is None
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert ray_env.task_env() == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"}


def test_malloc_arenas_are_set_for_ray_processes_only_while_ray_starts(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    with ray_env._malloc_arenas("2"):
        assert os.environ["MALLOC_ARENA_MAX"] == "2"
    assert "MALLOC_ARENA_MAX" not in os.environ
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")  # the user's own choice wins
    with ray_env._malloc_arenas("2"):
        assert os.environ["MALLOC_ARENA_MAX"] == "8"
    assert os.environ["MALLOC_ARENA_MAX"] == "8"
