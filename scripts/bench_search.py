"""Benchmark: `edgekd search` - searched student vs today's planner pick, frontiers, serial vs Ray wall time.

Three parts, each resumable (a part already in the JSON is not run again); run with one torch thread each:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_search.py fmnist     # searched vs planner pick, nrf52840-dk
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_search.py frontiers  # digits: nrf52840-dk, Pi 4, Pixel 8
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_search.py ray        # serial vs a local 2-node Ray cluster

``fmnist``: search Fashion-MNIST at the nrf52840-dk budgets on a stratified training slice (``--limit``), then
train the chosen student and today's planner pick with the same recipe and epochs (no teacher, the "ce" row of
the distillation table) on a larger slice (``--final-limit``), and test both on the test samples that load
keeps, float and int8 (the real fully-integer .tflite on LiteRT's reference kernels, via
``edgekd.distill.distill``). ``lastrung`` trains a finished fmnist part's planner pick for the last rung, on
the same slice, when the search cut it earlier. ``frontiers`` writes docs/search/<target>-digits-frontier.png
(``replot`` redraws every figure from the JSON). ``bnlag``: the top 4 planner candidates after one short
epoch, scored on running vs recalibrated BatchNorm statistics (``distill --search N``'s ranking). ``ray``
starts a head and a second worker node on this machine with ``ray start`` (1 CPU each), runs the same search
serially and on the cluster, and checks the results are equal. Writes docs/bench_search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekd.distill import distill  # noqa: E402
from edgekd.search import SearchSettings, search  # noqa: E402
from edgekd.search_space import parse_space  # noqa: E402
from edgekd.targets import load_target  # noqa: E402

OUT = ROOT / "docs" / "bench_search.json"
FIGS = ROOT / "docs" / "search"


def load() -> dict:
    return json.loads(OUT.read_text()) if OUT.is_file() else {}


def save(data: dict) -> None:
    """Merge this run's parts into the file as it is now (parts run as separate processes, possibly at once)."""
    merged = load()
    merged.update({k: v for k, v in data.items() if k != "commands"})
    merged.setdefault("commands", {}).update(data.get("commands", {}))
    OUT.write_text(json.dumps(merged, indent=2) + "\n")


def fmnist(args: argparse.Namespace, data: dict) -> None:
    name = f"pool{args.pool}{args.tag}"
    work = Path(args.work) / f"fmnist-{name}"
    settings = SearchSettings(task="fashion-mnist", trials=args.trials, seed=0, eta=3, min_epochs=args.min_epochs,
                              max_epochs=args.search_epochs, limit=args.limit, pool=args.pool,
                              space=parse_space(args.space))
    t = time.perf_counter()
    result = search("nrf52840-dk", settings, work / "search")
    search_s = time.perf_counter() - t
    shutil.copy(work / "search" / "frontier.png", FIGS / f"nrf52840-dk-fashion-mnist-{name}-frontier.png")
    from edgekd.planner import Candidate

    rows = []
    for trial in (result.trials[0], result.best):  # today's planner pick, then the searched one
        if rows and trial.id == result.trials[0].id:
            break
        cand = Candidate(trial.family, trial.config, trial.params, trial.macs, trial.predicted, True)
        t = time.perf_counter()
        rec = distill("nrf52840-dk", "fashion-mnist", None, work / f"final-{trial.id}", loss="ce",
                      epochs=args.final_epochs, limit=args.final_limit, seed=0, planned=[cand], progress=False)
        rows.append({"student": trial.label(), "origin": trial.origin, "predicted": trial.predicted,
                     "macs": trial.macs, "params": trial.params, "search_val_accuracy": trial.accuracy,
                     "accuracy_float": rec["student"]["accuracy_float"],
                     "accuracy_int8": rec["student"]["accuracy_int8"],
                     "measured": rec["measured"], "train_s": round(time.perf_counter() - t, 1)})
    data[f"fmnist_{name}"] = {"settings": result.settings.__dict__, "search_wall_s": round(search_s, 1),
                      "trials": len(result.trials), "trial_epochs": sum(int(r["epochs"]) for tr in result.trials
                                                                        for r in tr.rungs),
                      "final": {"epochs": args.final_epochs, "limit": args.final_limit, "loss": "ce", "seed": 0},
                      "rows": rows, "frontier": result.to_json()}


def frontiers(args: argparse.Namespace, data: dict) -> None:
    data.setdefault("frontiers", {})
    for target in ("nrf52840-dk", "raspberry-pi-4b", "google-pixel-8"):
        if target in data["frontiers"]:
            continue
        settings = SearchSettings(task="digits", trials=args.trials, seed=0, eta=3, min_epochs=args.min_epochs,
                                  max_epochs=args.search_epochs, limit=None)
        result = search(target, settings, Path(args.work) / "frontiers" / target)
        shutil.copy(Path(args.work) / "frontiers" / target / "frontier.png", FIGS / f"{target}-digits-frontier.png")
        data["frontiers"][target] = result.to_json()
        save(data)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen([str(ray), "start", *args, "--block", "--disable-usage-stats"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None:
            raise SystemExit(f"ray start failed: {log.read_text()[-2000:]}")
        time.sleep(1)
    return proc


def ray_part(args: argparse.Namespace, data: dict) -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    settings = SearchSettings(task="digits", trials=args.trials, seed=0, eta=3, min_epochs=args.min_epochs,
                              max_epochs=args.search_epochs, limit=None)
    work = Path(args.work) / "ray"
    t = time.perf_counter()
    serial = search("nrf52840-dk", settings, work / "serial")
    serial_s = time.perf_counter() - t
    port, temp = _port(), tempfile.mkdtemp(prefix="rk", dir="/tmp")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    nodes = []
    t0 = time.perf_counter()
    try:
        nodes.append(_ray_node(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                                f"--temp-dir={temp}"], work / "head.log", env))
        nodes.append(_ray_node([f"--address=127.0.0.1:{port}", "--num-cpus=1"], work / "worker.log", env))
        start_s = time.perf_counter() - t0
        t = time.perf_counter()
        on_ray = search(load_target("nrf52840-dk"), settings, work / "ray", executor="ray",
                        cluster=f"127.0.0.1:{port}")
        ray_s = time.perf_counter() - t
    finally:
        for proc in reversed(nodes):
            proc.terminate()
            proc.wait(timeout=60)
    data["ray"] = {"settings": settings.__dict__, "trials": len(serial.trials),
                   "trial_runs": sum(len(tr.rungs) for tr in serial.trials),
                   "trial_epochs": sum(int(r["epochs"]) for tr in serial.trials for r in tr.rungs),
                   "serial_wall_s": round(serial_s, 1), "ray_wall_s": round(ray_s, 1),
                   "serial_timings_s": serial.timings, "ray_timings_s": on_ray.timings,
                   "cluster_start_s": round(start_s, 1), "executor": on_ray.executor,
                   "identical": json.dumps(serial.deterministic_json()) == json.dumps(on_ray.deterministic_json()),
                   "cpu_count": os.cpu_count()}


def lastrung(args: argparse.Namespace, data: dict) -> None:
    """Train a finished fmnist part's planner pick (trial 0) for the last rung on the same slice, when the search
    cut it earlier: would a longer first rung have kept it? (``--tag`` names the part, like ``fmnist``.)"""
    from edgekd.search import result_from_json
    from edgekd.search_exec import run_trial, trial_job

    part = data[f"fmnist_pool{args.pool}{args.tag}"]
    result = result_from_json(part["frontier"])
    planner = result.trials[0]
    part["planner_last_rung"] = run_trial(trial_job(planner, result.settings.max_epochs, result.settings))


def bnlag(args: argparse.Namespace, data: dict) -> None:
    """``distill --search N``'s regime in a ``--fast`` build (1 short epoch on a 3,000-sample slice): the planner's
    top 4 for nrf52840-dk scored on running BatchNorm statistics vs recalibrated, and the pick each gives."""
    import torch

    from edgekd.data import load_task
    from edgekd.distill import train_student
    from edgekd.distill.train import TrainConfig
    from edgekd.planner import plan
    from edgekd.search_exec import search_score
    from edgekd.students.store import DATA_SEED

    torch.set_num_threads(1)
    out = {}
    for task in ("digits", "fashion-mnist"):
        splits = load_task(task, None, seed=DATA_SEED, limit=args.limit)
        fitting = [c for c in plan(load_target("nrf52840-dk"), splits.spec).candidates if c.fits][:4]
        rows = []
        for cand in fitting:
            model, rec = train_student(cand.student, splits, None, "ce", TrainConfig(epochs=1, seed=0, patience=0),
                                       None, False, None, None, label=cand.label(), progress=False)
            rows.append({"student": cand.label(), **search_score(model, splits, rec)})
        out[task] = {"rows": rows, "pick_running": max(rows, key=lambda r: r["val_accuracy_running_stats"])["student"],
                     "pick_recalibrated": max(rows, key=lambda r: r["val_accuracy"])["student"]}
    data["bnlag"] = {"limit": args.limit, "epochs": 1, "loss": "ce", "seed": 0, "tasks": out}


def replot(args: argparse.Namespace, data: dict) -> None:
    """Re-draw docs/search/*.png from the frontiers in the JSON (after a change to the plot only)."""
    from edgekd.search import plot_frontier, result_from_json

    for key, part in data.items():
        if key.startswith("fmnist"):
            plot_frontier(result_from_json(part["frontier"]),
                          FIGS / f"nrf52840-dk-fashion-mnist-{key.removeprefix('fmnist_')}-frontier.png")
    for target, frontier in data.get("frontiers", {}).items():
        plot_frontier(result_from_json(frontier), FIGS / f"{target}-digits-frontier.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["fmnist", "frontiers", "ray", "replot", "lastrung", "bnlag"])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--min-epochs", type=int, default=1)
    ap.add_argument("--search-epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=3000, help="training slice per search trial")
    ap.add_argument("--final-epochs", type=int, default=10)
    ap.add_argument("--final-limit", type=int, default=10000, help="training slice of the final comparison")
    ap.add_argument("--pool", type=int, default=1, help="fitting draws per trial (largest MACs kept)")
    ap.add_argument("--space", action="append", default=[], help="narrow the space, e.g. resolution=none,24")
    ap.add_argument("--tag", default="", help="suffix of the fmnist part's JSON key and figure (e.g. _min3)")
    ap.add_argument("--work", default="/tmp/edgekd-bench-search")
    args = ap.parse_args()
    FIGS.mkdir(parents=True, exist_ok=True)
    data = load()
    {"fmnist": fmnist, "frontiers": frontiers, "ray": ray_part, "replot": replot, "lastrung": lastrung,
     "bnlag": bnlag}[args.part](
        args, data)
    if args.part != "replot":
        key = f"fmnist_pool{args.pool}{args.tag}" if args.part in ("fmnist", "lastrung") else args.part
        key += "_lastrung" if args.part == "lastrung" else ""
        data.setdefault("commands", {})[key] = "OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_search.py " + \
            " ".join(sys.argv[1:])
    save(data)


if __name__ == "__main__":
    main()
