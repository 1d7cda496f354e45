"""What the processes of a scan's Ray get from the driver: storage settings, malloc arenas."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

from pipeline.config import ScanConfig
from pipeline.run import ray_env
from pipeline.storage import STORAGE_ENV_PREFIXES


def test_credentials_go_to_local_workers_only_and_never_in_a_runtime_environment(monkeypatch, caplog):
    """Issue 18 item 7: with --ray-address, AWS credentials were written in plain text into the
    Ray head's runtime_env_agent.log. The settings now go to the analysis tasks as an argument,
    and a cluster's workers get no credentials (with a warning naming them)."""
    for key in [k for k in os.environ if k.startswith(STORAGE_ENV_PREFIXES)]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    local = ScanConfig()
    assert ray_env.worker_storage(local) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
    }  # fmt: skip
    assert not caplog.records
    cluster = ScanConfig.model_validate({"ray": {"address": "10.0.0.1:6379"}})
    assert ray_env.worker_storage(cluster) == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    [warning] = caplog.records
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY not sent to the Ray cluster")
    assert "not-a-real-secret" not in warning.getMessage()


def test_malloc_arenas_are_set_for_ray_processes_only_while_ray_starts(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    with ray_env._malloc_arenas("2"):
        assert os.environ["MALLOC_ARENA_MAX"] == "2"
    assert "MALLOC_ARENA_MAX" not in os.environ
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")  # the user's own choice wins
    with ray_env._malloc_arenas("2"):
        assert os.environ["MALLOC_ARENA_MAX"] == "8"
    assert os.environ["MALLOC_ARENA_MAX"] == "8"


LISTENERS = """
import ray
from pipeline.config import ScanConfig
from pipeline.run.ray_env import ensure_ray
from tests.pipeline.run.test_ray_env import listening
ensure_ray(ScanConfig())
for name, ip, port in listening():
    print(name, ip, port)
ray.shutdown()
"""


def listening() -> list[tuple[str, str, int]]:
    """``(process, address, port)`` of every socket listening in this process's tree, once a
    Ray task has run (so a worker is started and serving)."""
    import psutil
    import ray

    ray.get(ray.remote(lambda: 1).remote())
    tree = [psutil.Process(), *psutil.Process().children(recursive=True)]
    return [
        (proc.name(), c.laddr.ip, c.laddr.port)
        for proc in tree
        for c in proc.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]


def _only_loopback(listeners: list[tuple[str, str, int]]) -> None:
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners  # the servers are there, and seen
    outside = [entry for entry in listeners if not _loopback(entry[1])]
    assert outside == [], outside


def test_a_local_ray_listens_on_loopback_only():
    """Issue 18 item 7: a local scan's Ray listened on every interface (GCS, raylet, workers);
    ``_node_ip_address="127.0.0.1"`` did not help, since ray.init swaps it for the outside address."""
    done = subprocess.run([sys.executable, "-c", LISTENERS], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    _only_loopback([(name, ip, int(port)) for name, ip, port in (line.split() for line in done.stdout.splitlines())])


def test_the_ray_that_tests_start_listens_on_loopback_only(ray_session):
    """Issue 27 item 4: the tests' own Ray is started as the product's is."""
    _only_loopback(listening())


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
