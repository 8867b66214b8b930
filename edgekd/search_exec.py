"""Where ``edgekd search`` trials run: one trial as a pure function of its job, executed in this process or as
Ray tasks, or handed to Ray Tune's ASHAScheduler. Kept apart from :mod:`edgekd.search` (which samples trials,
runs successive halving and writes the frontier) because this is the only part that knows about Ray."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import EdgekdError
from edgekd.logs import log
from edgekd.students import StudentConfig

if TYPE_CHECKING:
    from edgekd.search import SearchSettings, Trial


def trial_job(trial: Trial, epochs: int, settings: SearchSettings) -> dict[str, Any]:
    """Everything a worker needs to train ``trial`` for ``epochs``: plain JSON, so it travels to Ray nodes."""
    return {"id": trial.id, "family": trial.family, "config": trial.config, "epochs": epochs, "task": settings.task,
            "data_dir": settings.data_dir, "limit": settings.limit, "seed": settings.seed,
            "threads": settings.threads, "teacher": settings.teacher, "loss": settings.loss,
            "batch_size": settings.batch_size, "lr": settings.lr}


def run_trial(job: dict[str, Any]) -> dict[str, float]:
    """Distil one config for ``job["epochs"]`` epochs; returns its best validation accuracy. Pure function of
    the job (the same job gives the same number in this process or a Ray worker with the same threads)."""
    import torch

    from edgekd.data import load_task
    from edgekd.distill import train_student
    from edgekd.distill.train import TrainConfig
    from edgekd.students.store import DATA_SEED

    started = time.perf_counter()
    torch.set_num_threads(int(job["threads"]))
    splits = load_task(job["task"], job["data_dir"], seed=DATA_SEED, limit=job["limit"])
    teacher, cache = None, None
    if job["teacher"]:
        from edgekd.distill import augment
        from edgekd.distill.cache import TeacherCache
        from edgekd.distill.teachers import load_teacher

        teacher = load_teacher(job["teacher"], splits.spec, probe=splits.x_val)
        policy = augment.Policy.for_task(splits.spec.name, splits.spec.kind, True)
        cache = TeacherCache(teacher, splits.x_train, splits.y_train, policy, 0)
        for epoch in range(int(job["epochs"])):
            cache.ensure(epoch)
    cfg = TrainConfig(epochs=int(job["epochs"]), batch_size=int(job["batch_size"]), lr=float(job["lr"]),
                      seed=int(job["seed"]), patience=0)
    model, record = train_student(StudentConfig(job["family"], job["config"]), splits, teacher,
                                  job["loss"] if teacher else "ce", cfg, None, False, None, cache,
                                  label=f"trial {job['id']}", progress=False)
    return {"epochs": int(job["epochs"]), "val_accuracy": recalibrated_accuracy(model, splits),
            "val_accuracy_running_stats": float(record["shipped_val_accuracy"]),
            "seconds": round(time.perf_counter() - started, 2)}


def recalibrated_accuracy(model: Any, splits: Any, samples: int = 2048) -> float:
    """Validation accuracy after re-estimating BatchNorm statistics on training samples (Once-for-All's BN
    recalibration). A short run leaves running statistics far behind the weights, by an amount that differs by
    architecture (deep inverted-residual stacks and 6-block DS-CNNs score at chance after one epoch, at 40-60%
    training accuracy), so rungs would rank stale statistics instead of what the weights learnt."""
    import numpy as np
    import torch

    from edgekd.distill.train import accuracy, predict, set_training
    from edgekd.students import model_input_shape, to_model_input

    shape = model_input_shape(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        pick = np.linspace(0, len(splits.x_train) - 1, min(samples, len(splits.x_train))).astype(int)
        set_training(model, True)
        with torch.no_grad():
            for i in range(0, len(pick), 256):
                model(to_model_input(splits.x_train[pick[i:i + 256]], shape))
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
    set_training(model, False)
    return accuracy(predict(model, splits.x_val, shape), splits.y_val)


def search_score(model: Any, splits: Any, record: dict[str, Any]) -> dict[str, float]:
    """How ``distill --search N`` ranks one short run: recalibrated, as ``edgekd search`` does (after one short
    epoch on Fashion-MNIST, a 6-block DS-CNN scores 10.2% on its running statistics and 54.2% recalibrated);
    the running-statistics score is kept beside it."""
    return {"val_accuracy": recalibrated_accuracy(model, splits),
            "val_accuracy_running_stats": float(record["shipped_val_accuracy"])}


class SerialExecutor:
    """Trials one after another in this process."""

    name = "serial"

    def map(self, jobs: list[dict[str, Any]]) -> list[dict[str, float]]:
        import torch

        threads = torch.get_num_threads()
        try:
            return [run_trial(j) for j in jobs]
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        return None


CLIENT_ATTEMPTS = 3  # Ray Client session set-ups tried before giving up (a reached server that failed, only)


def _first_and_cause(exc: BaseException) -> str:
    """One line from a Ray error: its first line, and its last when that differs (a server-side traceback's
    cause comes last)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return " ".join(dict.fromkeys([lines[0], lines[-1]]))


class RayExecutor:
    """Trials as Ray tasks of ``threads`` CPUs each, on a local Ray instance or the cluster at ``address``
    (``host:port`` of a node, or a Ray Client ``ray://host:port``). ``fn``: what each task runs (one trial;
    ``edgekd build`` on Ray passes a whole target's build)."""

    def __init__(self, address: str | None, threads: int, workers: int | None = None,
                 fn: Callable[..., Any] = run_trial) -> None:
        if address and "RAY_AUTH_MODE" not in os.environ and (
                os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file()):
            os.environ["RAY_AUTH_MODE"] = "token"  # `ray start --head` enables token auth, writes this token
        try:
            import ray
        except ImportError:
            raise EdgekdError("Ray is not installed (pip install 'ray[tune,client]'); run without Ray (search "
                              "--serial, build without --ray)") from None
        self.ray = ray
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        from edgekd.students.user import ALLOW_ENV

        for name in (ALLOW_ENV, "EDGEKD_CACHE"):  # code the user named; the driver's cache (a shared path)
            if os.environ.get(name):
                env[name] = os.environ[name]
        self.started_here = not ray.is_initialized()
        if self.started_here:
            self._init(address, {"env_vars": env}, workers)
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(fn)
        self.name = f"ray ({address or 'local instance'}, {int(ray.cluster_resources().get('CPU', 0))} CPUs, " \
                    f"{len([n for n in ray.nodes() if n.get('Alive')])} node(s))"

    def _init(self, address: str | None, runtime_env: dict[str, Any], workers: int | None) -> None:
        """Start or join Ray. A Ray Client server that was reached but failed to set the session up (it starts one
        server process per client, which can fail transiently on a loaded head) is asked again, twice; any
        failure leaves this process out of Ray's client mode, so a later local ``ray.init`` still works."""
        ray = self.ray
        for attempt in range(1, CLIENT_ATTEMPTS + 1):
            try:
                if address:
                    ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR")
                else:
                    ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, runtime_env=runtime_env,
                             log_to_driver=False, logging_level="ERROR")
                return
            except (ConnectionError, RuntimeError, ValueError) as exc:
                ray.shutdown()  # a failed ray:// connect leaves Ray in client mode until shut down
                retry = (isinstance(exc, ConnectionAbortedError) and str(address).startswith("ray://")
                         and attempt < CLIENT_ATTEMPTS)
                if not retry:
                    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                    raise EdgekdError(f"cannot connect to {where}: {_first_and_cause(exc)}; "
                                      "start it with `ray start --head` (and copy its ~/.ray/auth_token here), or "
                                      "run without Ray (search --serial, build without --ray)") from None
                log.warning("the Ray Client server at %s failed to start a session (%s); asking again (%d/%d)",
                            address, _first_and_cause(exc), attempt + 1, CLIENT_ATTEMPTS)
                time.sleep(2.0 * attempt)

    def map(self, jobs: list[Any]) -> list[Any]:
        try:
            return self.ray.get([self.remote.remote(j) for j in jobs])
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, EdgekdError):
                raise exc.cause from None  # its own class: a missed budget stays exit 1
            raise

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def make_executor(executor: str, cluster: str | None, threads: int, workers: int | None = None) -> Any:
    if executor == "serial":
        return SerialExecutor()
    if executor != "ray":
        raise EdgekdError(f"unknown executor {executor!r}; use serial or ray")
    return RayExecutor(cluster or os.environ.get("RAY_ADDRESS") or None, threads, workers)


def tune_asha(trials: list[Trial], settings: SearchSettings, runner: RayExecutor, out: Path,
               started: float) -> bool:
    """Ray Tune's ASHAScheduler over the same rungs (time attribute: epochs). Each (trial, rung) result is the
    same pure function as in :func:`edgekd.search.successive_halving`; which trials are promoted depends on finish order
    (asynchronous), so only a one-CPU cluster reproduces a run exactly."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    rungs = settings.rungs()
    jobs = {t.id: [trial_job(t, e, settings) for e in rungs] for t in trials}

    def trainable(config: dict[str, Any]) -> None:
        for job in jobs[config["trial"]]:
            tune.report(run_trial(job))

    scheduler = ASHAScheduler(time_attr="epochs", metric="val_accuracy", mode="max", max_t=settings.max_epochs,
                              grace_period=settings.min_epochs, reduction_factor=settings.eta)
    left = None if settings.budget_minutes is None else max(1.0, 60 * settings.budget_minutes
                                                            - (time.perf_counter() - started))
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": settings.threads}),
                       param_space={"trial": tune.grid_search([t.id for t in trials])},
                       tune_config=tune.TuneConfig(scheduler=scheduler, time_budget_s=left),
                       run_config=tune.RunConfig(storage_path=str((out / "tune").resolve()), name="asha",
                                                 verbose=0))
    grid = tuner.fit()
    cut = False
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None or result.config is None:
            cut = True
            continue
        trial = trials[int(result.config["trial"])]
        trial.rungs = [{"epochs": int(r["epochs"]), "val_accuracy": float(r["val_accuracy"]),
                        "val_accuracy_running_stats": float(r["val_accuracy_running_stats"]),
                        "seconds": float(r["seconds"])} for _, r in frame.sort_values("epochs").iterrows()]
    return cut or any(not t.rungs for t in trials)


@dataclass(frozen=True)
class LocalCluster:
    """Addresses of a cluster :func:`local_ray_cluster` started: a node's ``host:port``, and the head's Ray
    Client ``ray://host:port`` when one was asked for; ``start_s``: seconds until every node had started."""

    node: str
    client: str | None
    start_s: float


def free_port() -> int:
    """A TCP port nothing on this machine listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], log: Path, env: dict[str, str], timeout_s: float) -> subprocess.Popen:
    """``ray start ... --block`` as our own child (its own session): terminating it stops the node's processes."""
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen([str(ray), "start", *args, "--block", "--disable-usage-stats"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout_s
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            proc.terminate()
            proc.wait(timeout=60)
            raise EdgekdError(f"ray start {' '.join(args)} failed (log {log}): {log.read_text()[-2000:]}")
        time.sleep(1)
    return proc


@contextmanager
def local_ray_cluster(log_dir: Path, nodes: int = 2, cpus: int = 1, client: bool = False,
                      timeout_s: float = 120) -> Iterator[LocalCluster]:
    """A real Ray cluster on this machine for tests and benchmarks: a head plus ``nodes - 1`` worker nodes of
    ``cpus`` CPUs each (with ``client``, the head also serves Ray Client); every node is stopped on exit.

    Token auth is on (``ray start --head`` turns it on), so ``RAY_AUTH_MODE=token`` is set for the nodes and for
    this process (until exit); nodes run with one OpenMP thread, as trials pin their own."""
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # Ray's socket paths must stay short
    env = os.environ | {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token"}
    head = ["--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false", f"--temp-dir={temp}"]
    client_port = free_port() if client else None
    if client_port:
        head.append(f"--ray-client-server-port={client_port}")
    procs: list[subprocess.Popen] = []
    started = time.perf_counter()
    try:
        procs.append(_ray_start(head, log_dir / "head.log", env, timeout_s))
        for i in range(1, nodes):
            procs.append(_ray_start([f"--address=127.0.0.1:{port}", f"--num-cpus={cpus}"],
                                    log_dir / f"worker{i}.log", env, timeout_s))
        yield LocalCluster(f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}" if client_port else None,
                           round(time.perf_counter() - started, 1))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=60)
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = auth


__all__ = ["LocalCluster", "RayExecutor", "SerialExecutor", "free_port", "local_ray_cluster", "make_executor",
           "recalibrated_accuracy", "run_trial", "search_score", "trial_job", "tune_asha"]
