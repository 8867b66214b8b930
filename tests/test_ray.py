"""Ray beyond `edgekd search`'s own test: `edgekd build --ray` across targets and a Ray Client (`ray://`) address,
on a real local cluster started here (a head node with a Ray Client server plus a second worker node)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekd.build import BuildOptions, build_many
from edgekd.build.cluster import build_on_ray
from edgekd.search import SearchSettings, search
from edgekd.targets import load_target

TINY = {"task": "digits", "trials": 3, "min_epochs": 1, "max_epochs": 2, "eta": 2, "limit": 400}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start ... --block`` as our own child: terminating it stops the node's processes."""
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen([str(ray), "start", *args, "--block", "--disable-usage-stats"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.terminate()
            raise RuntimeError(f"ray start {args} failed: {log.read_text()[-2000:]}")
        time.sleep(1)
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A head (1 CPU, Ray Client server on) and a worker node (1 CPU); yields their addresses."""
    logs = tmp_path_factory.mktemp("ray")
    port, client_port = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # Ray's socket paths must stay short
    env = os.environ | {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token"}
    nodes = []
    try:
        nodes.append(_ray_start(["--head", f"--port={port}", f"--ray-client-server-port={client_port}",
                                 "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={temp}"],
                                logs / "head.log", env))
        nodes.append(_ray_start([f"--address=127.0.0.1:{port}", "--num-cpus=1"], logs / "worker.log", env))
        yield {"node": f"127.0.0.1:{port}", "client": f"ray://127.0.0.1:{client_port}"}
    finally:
        for proc in reversed(nodes):
            proc.terminate()
            proc.wait(timeout=60)


@pytest.fixture(autouse=True)
def _env(cost_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # `ray start --head` turns token auth on; read when ray imports


def _comparable(report: dict) -> dict:
    """A report without what a run's speed decides: stage timings and the host runtimes' measured latency."""
    artifacts = [{k: v for k, v in a.items() if k != "host_latency_ms"} for a in report["artifacts"]]
    return {k: v for k, v in report.items() if k != "timings_s"} | {"artifacts": artifacts}


@pytest.mark.slow
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


def test_build_ray_refuses_bad_input_before_starting_ray(tmp_path: Path):
    """`edgekd build --targets ... --ray`: an unknown target is one line and exit 2, before Ray or any training."""
    from click.testing import CliRunner

    from edgekd.cli import main

    r = CliRunner().invoke(main, ["build", "--targets", "nrf52840-dk,no-such-board", "--ray", "--fast",
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "no-such-board" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "b").exists()
