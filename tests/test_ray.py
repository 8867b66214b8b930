"""Ray beyond `edgekd search`'s own test: `edgekd build --ray` across targets and a Ray Client (`ray://`) address,
on a real local cluster started here (a head node with a Ray Client server plus a second worker node)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekd.build import BuildOptions, build_many
from edgekd.build.cluster import build_on_ray
from edgekd.search import SearchSettings, search
from edgekd.search_exec import local_ray_cluster
from edgekd.targets import load_target

TINY = {"task": "digits", "trials": 3, "min_epochs": 1, "max_epochs": 2, "eta": 2, "limit": 400}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A head (1 CPU, Ray Client server on) and a worker node (1 CPU); yields their addresses."""
    with local_ray_cluster(tmp_path_factory.mktemp("ray"), nodes=2, cpus=1, client=True) as c:
        yield {"node": c.node, "client": str(c.client)}


@pytest.fixture(autouse=True)
def _env(cost_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # `ray start --head` turns token auth on; read when ray imports


def _comparable(report: dict) -> dict:
    """A report without what a run's speed decides: stage timings and the host runtimes' measured latency."""
    artifacts = [{k: v for k, v in a.items() if k != "host_latency_ms"} for a in report["artifacts"]]
    return {k: v for k, v in report.items() if k != "timings_s"} | {"artifacts": artifacts}


def test_build_ray_refuses_bad_input_before_starting_ray(tmp_path: Path):
    """`edgekd build --targets ... --ray`: an unknown target is one line and exit 2, before Ray or any training.

    First in the file, so that it runs before the module's cluster exists (a once-seen extra stderr line after
    the cluster tests was not diagnosed)."""
    from click.testing import CliRunner

    from edgekd.cli import main

    r = CliRunner().invoke(main, ["build", "--targets", "nrf52840-dk,no-such-board", "--ray", "--fast",
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "no-such-board" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_a_failed_ray_client_connect_is_one_line_and_leaves_local_ray_usable(monkeypatch: pytest.MonkeyPatch):
    """A `ray://` address where nothing listens: one line naming it, and this process is out of Ray's client mode
    afterwards, so a local Ray run still works (CI once saw a failed Ray Client set-up break the next test's local
    `ray.init`). Before the cluster tests, so that no cluster is up."""
    import ray.util.client.worker as client_worker
    from ray._private import client_mode_hook

    from edgekd.errors import EdgekdError
    from edgekd.search_exec import RayExecutor, free_port

    monkeypatch.setattr(client_worker, "INITIAL_TIMEOUT_SEC", 1)  # Ray's own 5-30 s back-off, shortened
    monkeypatch.setattr(client_worker, "MAX_TIMEOUT_SEC", 1)
    address = f"ray://127.0.0.1:{free_port()}"
    with pytest.raises(EdgekdError) as failed:
        RayExecutor(address, threads=1)
    message = str(failed.value)
    assert message.startswith(f"cannot connect to the Ray cluster at {address}: ") and "\n" not in message
    assert not client_mode_hook.is_client_mode_enabled
    local = RayExecutor(None, threads=1, workers=1, fn=json.dumps)
    try:
        assert local.map([{"a": 1}, [2]]) == ['{"a": 1}', "[2]"] and "local instance, 1 CPUs" in local.name
    finally:
        local.close()


@pytest.mark.slow
@pytest.mark.heavy  # one build per target on Ray, then serially (~1 min): in CI, not the default run
def test_build_targets_on_ray_gives_the_serial_reports(cluster: dict[str, str], tmp_path: Path):
    """Two microcontroller targets, each a Ray task pinned to one thread on the 2-node cluster: the same
    per-target reports (apart from timings) and the same bundles as a serial build on one torch thread."""
    import torch

    from edgekd.distill import train_teacher

    teacher = tmp_path / "teacher.pt"
    train_teacher("digits", teacher, epochs=1, limit=600, progress=False)
    opts = BuildOptions(task="digits", teacher=str(teacher), fast=True, epochs=2, limit=600, families=["dscnn"],
                        emulator="none", progress=False, max_drop_pp=100.0)
    targets = ["nrf52840-dk", "stm32f746g-disco"]
    on_ray = build_on_ray(targets, opts, tmp_path / "ray", cluster=cluster["node"], threads=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = build_many(targets, opts, tmp_path / "serial")
    finally:
        torch.set_num_threads(threads)
    ray_reports = {r.target: r.to_json() for r in on_ray.reports}
    serial_reports = {r.target: r.to_json() for r in serial.reports}
    assert sorted(ray_reports) == sorted(targets) and on_ray.teacher == serial.teacher == str(teacher)
    for name in targets:
        assert _comparable(ray_reports[name]) == _comparable(serial_reports[name]), name
        assert ray_reports[name]["student"]["accuracy_float"] > 0.1  # trained, not a placeholder
        bundle = ray_reports[name]["bundle"]
        assert (tmp_path / "ray" / name / bundle).read_bytes() == (tmp_path / "serial" / name / bundle).read_bytes()
        assert json.loads((tmp_path / "ray" / name / "report.json").read_text()) == json.loads(json.dumps(
            ray_reports[name]))


@pytest.mark.slow
def test_search_on_the_cluster_and_through_ray_client_gives_the_serial_result(cluster: dict[str, str],
                                                                              tmp_path: Path) -> None:
    """Trials on the 2-node cluster, addressed as a node (`--cluster HOST:PORT`) and through the head's Ray Client
    server (`--cluster ray://HOST:PORT`): both give the serial run's trials, accuracies and frontier."""
    nrf = load_target("nrf52840-dk")
    serial = json.dumps(search(nrf, SearchSettings(**TINY), tmp_path / "serial").deterministic_json())
    on_ray = search(nrf, SearchSettings(**TINY), tmp_path / "ray", executor="ray", cluster=cluster["node"])
    assert "2 node(s)" in on_ray.executor and "2 CPUs" in on_ray.executor
    assert json.dumps(on_ray.deterministic_json()) == serial
    client = search(nrf, SearchSettings(**TINY), tmp_path / "client", executor="ray", cluster=cluster["client"])
    assert client.executor.startswith(f"ray ({cluster['client']}") and "2 node(s)" in client.executor
    assert json.dumps(client.deterministic_json()) == serial
