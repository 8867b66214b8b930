"""Accuracy-aware, hardware-aware student search: ``edgekd search``.

1. **Candidates.** Configs are drawn (seeded, the families in turn) from each family's search space
   (``Family.space``: the inverted-residual ``mbv2`` family's per-stage depth, expand ratio, kernel 3/5/7, width
   and input resolution; the planner's ``dscnn`` depth/width/resolution and ``resnet`` depth/stages/width/resolution,
   each declared where its family is registered), each costed by the cost model and checked against every budget and the
   target's operator set; only fitting ones become trials. Today's planner pick is always trial 0, so the search
   is measured against it.
2. **Successive halving** (synchronous ASHA, reduction factor ``eta``): every trial is distilled for a short run
   of ``min_epochs`` epochs on a stratified training slice; the best 1/eta by validation accuracy (after
   BatchNorm recalibration, :func:`edgekd.search_exec.recalibrated_accuracy`) are trained again for eta times
   longer, and so on up to ``max_epochs``. Promotion is decided only when a whole rung has finished, ties broken
   by trial number, so the result is a function of the seed alone, not of the order in which trials finish: a
   serial run and a Ray run give the same trials, accuracies and frontier. (``scheduler="asha"`` hands the same
   rungs to Ray Tune's ASHAScheduler instead: no rung barrier, promotions in finish order.)
3. **Result.** The Pareto frontier of validation accuracy (at the highest fidelity each trial reached) vs
   estimated latency and predicted RAM, within the budgets; the chosen student is the most accurate trial of the
   last rung (then the fastest). ``frontier.json`` + ``frontier.png``; ``edgekd build --search frontier.json``
   trains the chosen one.

Trials run in this process (``executor="serial"``) or as Ray tasks (``executor="ray"``: a local Ray instance,
or a cluster named by ``cluster``/``$RAY_ADDRESS``), each pinned to ``threads`` torch threads. Trials are
retrained from scratch at each rung (a rung is a complete short schedule), so no checkpoint has to travel
between nodes. Where trials run (this process, Ray tasks, Ray Tune) is :mod:`edgekd.search_exec`.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, read_json, write_json
from edgekd.logs import log
from edgekd.search_exec import make_executor, run_trial, trial_job, tune_asha
from edgekd.search_space import check_space, in_space, parse_space
from edgekd.students import StudentConfig

FRONTIER_JSON = "frontier.json"
FRONTIER_PNG = "frontier.png"
FORMAT = "edgekd-search/1"


@dataclass
class SearchSettings:
    """What a search does; everything here (and the target, task and data) decides its result."""

    task: str = "digits"
    data_dir: str | None = None
    trials: int = 9
    seed: int = 0
    eta: int = 3
    min_epochs: int = 1
    max_epochs: int = 9
    limit: int | None = 3000  # stratified training slice each trial trains on (None: all)
    families: list[str] | None = None  # default: every family with a search space for the task (dscnn, mbv2, resnet)
    teacher: str | None = None  # with a teacher: KD trials (cached teacher outputs); without: cross-entropy
    loss: str = "kd"
    threads: int = 1  # torch threads per trial
    budget_minutes: float | None = None  # stop launching rungs after this much wall time
    pool: int = 1  # fitting draws costed per trial; the trials are the pool's largest by MACs (TinyNAS's prior)
    batch_size: int = 128
    lr: float = 3e-3
    #: Narrows the families' spaces: only draws whose parameter takes one of these values (``--space
    #: resolution=none,24``: no input shrunk below 24 px).
    space: dict[str, list[Any]] | None = None
    #: With a figure: each draw that fits the cost model's budgets is also exported (seed-0 untrained weights,
    #: int8) and its generated C counted on the target's emulated core (:func:`count_untrained`); only draws at
    #: or under this many counted ms become trials, and ``pool`` keeps those nearest it (the MAC-linear estimate
    #: ranks an inverted-residual student at 0.37x a DS-CNN whose C it takes 0.61x the time of).
    counted_latency_ms: float | None = None

    def rungs(self) -> list[int]:
        """Epochs per rung: min_epochs x eta^k up to max_epochs (the last rung is max_epochs)."""
        out, e = [], self.min_epochs
        while e < self.max_epochs:
            out.append(e)
            e *= self.eta
        return out + [self.max_epochs]


@dataclass
class Trial:
    """One candidate student: its costs and the validation accuracy of each rung it was trained in."""

    id: int
    family: str
    config: dict[str, Any]
    params: int
    macs: int
    predicted: dict[str, float]
    origin: str  # "planner" (today's pick) or "sampled"
    # {"epochs", "val_accuracy" (BatchNorm recalibrated), "val_accuracy_running_stats", "seconds"}
    rungs: list[dict[str, float]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.rungs[-1]["val_accuracy"] if self.rungs else float("nan")

    @property
    def latency_ms(self) -> float:
        """The latency the search compares trials on: counted when the search counted it, else estimated."""
        return float(self.predicted.get("latency_ms_counted", self.predicted["latency_ms"]))

    @property
    def fidelity(self) -> int:
        return int(self.rungs[-1]["epochs"]) if self.rungs else 0

    def label(self) -> str:
        return f"{self.family}(" + ", ".join(f"{k}={v}" for k, v in sorted(self.config.items())) + ")"

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"val_accuracy": self.accuracy, "epochs": self.fidelity}


@dataclass
class SearchResult:
    """frontier.json: the trials, the frontier (trial ids), the chosen student, and how the search ran."""

    target: str
    task: str
    settings: SearchSettings
    budgets: dict[str, float]
    trials: list[Trial]
    frontier: list[int]
    chosen: int
    candidates_costed: int
    cut_by_budget: bool
    executor: str
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)  # sample_s, executor_start_s, trials_s
    counted: int = 0  # candidates exported and counted on the emulated core (``counted_latency_ms``)

    @property
    def passed(self) -> bool:
        return True

    @property
    def best(self) -> Trial:
        return self.trials[self.chosen]

    def deterministic_json(self) -> dict[str, Any]:
        """Everything a seed decides (no timings, no executor): equal for a serial and a Ray run."""
        trials = [t.to_json() | {"rungs": [{k: v for k, v in r.items() if k != "seconds"} for r in t.rungs]}
                  for t in self.trials]
        return {"format": FORMAT, "target": self.target, "task": self.task, "settings": asdict(self.settings),
                "budgets": self.budgets, "rungs": self.settings.rungs(), "candidates_costed": self.candidates_costed,
                "trials": trials, "frontier": self.frontier, "chosen": trials[self.chosen] | {"id": self.chosen},
                "cut_by_budget": self.cut_by_budget, "candidates_counted": self.counted}

    def to_json(self) -> dict[str, Any]:
        out = self.deterministic_json()
        out["trials"] = [t.to_json() for t in self.trials]
        out["executor"] = self.executor
        out["wall_s"] = round(self.wall_s, 2)
        out["timings_s"] = self.timings
        out["trial_runs"] = sum(len(t.rungs) for t in self.trials)
        out["trial_epochs"] = sum(int(r["epochs"]) for t in self.trials for r in t.rungs)
        out["latency_kind"] = "counted (untrained weights)" if self.settings.counted_latency_ms else "estimated"
        return out

    def text(self) -> str:
        b = self.best
        lines = [f"search {self.task} on {self.target}: {len(self.trials)} trials ({self.candidates_costed} costed), "
                 f"rungs {self.settings.rungs()} epochs, {self.executor}, {self.wall_s:.0f} s"
                 + (" (cut by --budget-minutes)" if self.cut_by_budget else ""),
                 f"{'#':>3} {'student':<64} {'epochs':>6} {'val acc':>8} {'latency':>10} {'RAM':>9} {'flash':>9}"]
        for t in self.trials:
            mark = "*" if t.id == self.chosen else ("f" if t.id in self.frontier else " ")
            lines.append(f"{t.id:>3}{mark}{t.label()[:64]:<64} {t.fidelity:>6} {t.accuracy:>8.4f} "
                         f"{t.latency_ms:>8.2f}ms {t.predicted['ram_bytes'] / 1024:>7.1f}Ki "
                         f"{t.predicted['flash_bytes'] / 1024:>7.1f}Ki")
        lines.append(f"chosen (*): {b.label()}  val accuracy {b.accuracy:.4f} after {b.fidelity} epochs; frontier (f) "
                     f"{len(self.frontier)} trials; latency "
                     + ("counted on the emulated core (untrained weights)" if self.settings.counted_latency_ms
                        else "estimated by the cost model"))
        return "\n".join(lines)


# ------------------------------------------------------------------ candidates


def count_untrained(config: StudentConfig, target: Any, spec: Any, calibration: Any, work: Path) -> float:
    """Counted ms of ``config``'s generated C on ``target``'s emulated core, before any training: seed-0 weights,
    int8 export calibrated on ``calibration`` (task data), one invoke counted (``edgekd latency --emulator qemu``).
    Why untrained: the budget must be checked before a trial costs an epoch. Trained weights change the
    requantization paths a little (Fashion-MNIST, nrf52840-dk: +9% for dscnn(depth=6, width=48), +14% for an
    expand-1 mbv2), so a budget in these units is best set from a reference counted the same way."""
    import torch

    from edgekd.export.tflite import export_tflite_int8
    from edgekd.latency import model_latency
    from edgekd.students import build_student, model_input_shape, to_model_input

    torch.manual_seed(0)
    model = build_student(config, tuple(spec.input_shape), spec.num_classes).eval()
    shape = tuple(model_input_shape(model))
    path = work / "candidate_int8.tflite"
    export_tflite_int8(model, shape, to_model_input(calibration, shape).numpy(), path)
    return round(model_latency(target, path, emulator="qemu").ms, 4)


def _draw_order(fams: list[Any], input_shape: tuple[int, ...], settings: SearchSettings) -> list[tuple[str, str]]:
    """Every (family, config) of the searched spaces in ``--space``, in seeded draw order: each family's members
    shuffled, then taken in turn from each family, so a family with a large space (mbv2: 6,750 members) does not
    crowd out the others (dscnn 420, resnet 360). One family: the plain seeded shuffle of its members."""
    rng = random.Random(settings.seed)
    lists = []
    for fam in sorted(fams, key=lambda f: f.name):
        members = sorted((fam.name, json.dumps(p, sort_keys=True)) for p in fam.candidates(input_shape, space=True)
                         if in_space(p, settings.space or {}))
        rng.shuffle(members)
        lists.append(members)
    return [m for turn in itertools.zip_longest(*lists) for m in turn if m is not None]


def _sample_trials(target: Any, spec: Any, settings: SearchSettings,
                   calibration: Any = None) -> tuple[list[Trial], int, int]:
    """Today's planner pick, then seeded draws from the families' spaces that fit every budget and operator.

    With ``pool`` > 1, ``pool`` times as many fitting draws are costed and the largest by MACs become trials:
    MCUNet's TinyNAS observation that, under the same constraints, the models using more of the compute budget
    are the more accurate ones. With ``counted_latency_ms`` each fitting draw (and the planner pick) is also
    counted (:func:`count_untrained`, on ``calibration`` samples) and must fit that too; the pool then keeps the
    draws with the most counted latency, the ones using the budget. Returns (trials, costed, counted)."""
    import tempfile

    from edgekd.planner import _CostCache, evaluate, plan
    from edgekd.students import FAMILIES, families_for

    names = settings.families or [f.name for f in FAMILIES.values() if f.space and f.plannable]
    fams = families_for(spec.kind, names)
    if not fams:
        raise EdgekdError(f"no student family with a search space serves {spec.kind} tasks; use --family")
    check_space(settings.space or {}, fams)
    trials: list[Trial] = []
    cap = settings.counted_latency_ms
    if cap is not None and calibration is None:
        raise EdgekdError("counting candidates needs calibration samples of the task")
    scratch = tempfile.TemporaryDirectory(prefix="edgekd-count-")
    n_counted = 0

    def within_count(family: str, config: dict[str, Any], predicted: dict[str, float]) -> bool:
        nonlocal n_counted
        if cap is None:
            return True
        n_counted += 1
        predicted["latency_ms_counted"] = count_untrained(StudentConfig(family, config), target, spec, calibration,
                                                          Path(scratch.name))
        return predicted["latency_ms_counted"] <= cap

    base = plan(target, spec)
    if base.student is not None:
        s = base.student
        if within_count(s.family, s.config, s.predicted):
            trials.append(Trial(0, s.family, dict(s.config), s.params, s.macs, s.predicted, "planner"))
    pool = _draw_order(fams, tuple(spec.input_shape), settings)
    cache = _CostCache()
    seen = {json.dumps(t.config, sort_keys=True) for t in trials}
    costed = 0
    wanted = (settings.trials - len(trials)) * max(1, settings.pool)
    drawn: list[Any] = []
    for family, text in pool:
        if len(drawn) >= wanted or costed >= 40 * wanted:
            break
        if text in seen:
            continue
        costed += 1
        cand = evaluate(StudentConfig(family, json.loads(text)), target, spec, cache)
        if cand.fits and within_count(cand.family, cand.config, cand.predicted):
            drawn.append(cand)
            seen.add(text)
    cache.save()
    scratch.cleanup()
    if settings.pool > 1:
        def size(c: Any) -> float:
            return c.predicted["latency_ms_counted"] if cap is not None else c.macs

        order = sorted(range(len(drawn)), key=lambda i: (-size(drawn[i]), i))[:settings.trials - len(trials)]
        drawn = [drawn[i] for i in sorted(order)]
    for cand in drawn[:settings.trials - len(trials)]:
        trials.append(Trial(len(trials), cand.family, cand.config, cand.params, cand.macs, cand.predicted, "sampled"))
    if not trials:
        raise EdgekdError(f"no student of {', '.join(names)} fits {target.name} after costing {costed} candidates; "
                          "raise a budget or give --family")
    return trials, costed, n_counted


# ------------------------------------------------------------------ the search


def pareto(trials: list[Trial]) -> list[int]:
    """Ids of trials no other trial beats on accuracy, latency and RAM at once (ties kept once, lowest id)."""
    def key(t: Trial) -> tuple[float, float, float]:
        return (-t.accuracy, t.latency_ms, t.predicted["ram_bytes"])

    front = []
    for t in trials:
        dominated = any(all(a <= b for a, b in zip(key(o), key(t), strict=True)) and (key(o) != key(t) or o.id < t.id)
                        for o in trials if o.id != t.id)
        if not dominated:
            front.append(t.id)
    return front


def _successive_halving(trials: list[Trial], settings: SearchSettings, runner: Any, started: float) -> bool:
    """Synchronous rungs: train every live trial, keep the best 1/eta (ties: lower id). True when cut by time."""
    alive = [t.id for t in trials]
    for rung, epochs in enumerate(settings.rungs()):
        if settings.budget_minutes is not None and time.perf_counter() - started > 60 * settings.budget_minutes \
                and rung > 0:
            return True
        log.info("search rung %d: %d trial(s) x %d epoch(s) on %s", rung, len(alive), epochs, runner.name)
        for i, res in zip(alive, runner.map([trial_job(trials[i], epochs, settings) for i in alive]), strict=True):
            trials[i].rungs.append(res)
        keep = max(1, len(alive) // settings.eta)
        alive = sorted(sorted(alive, key=lambda i: (-trials[i].accuracy, i))[:keep])
    return False


def search(target_name: Any, settings: SearchSettings, out_dir: str | Path, executor: str = "serial",
           cluster: str | None = None, budgets: dict[str, str | None] | None = None,
           workers: int | None = None, scheduler: str = "sha") -> SearchResult:
    """Search ``settings.task`` on a target (name, path or Target); writes frontier.json and frontier.png.

    ``scheduler``: "sha" (synchronous successive halving, serial or on Ray, deterministic) or "asha" (Ray Tune's
    ASHAScheduler on Ray: no rung barrier, promotions depend on finish order)."""
    from edgekd.data import load_task
    from edgekd.distill.cache import check_cache_root
    from edgekd.io import check_writable
    from edgekd.students.store import DATA_SEED
    from edgekd.targets import Target, load_target

    started = time.perf_counter()
    out = Path(out_dir)
    check_writable(out, "--out")
    check_cache_root()
    if settings.min_epochs > settings.max_epochs:
        raise EdgekdError(f"--min-epochs {settings.min_epochs} is more than --epochs {settings.max_epochs}")
    if settings.eta < 2:
        raise EdgekdError("--eta must be at least 2")
    target = target_name if isinstance(target_name, Target) else load_target(target_name)
    target = target.with_budgets(**(budgets or {}))
    probe = load_task(settings.task, settings.data_dir, seed=DATA_SEED, limit=10)
    spec = probe.spec
    if settings.teacher:  # a bad teacher fails now, not in every trial
        from edgekd.distill.teachers import load_teacher

        load_teacher(settings.teacher, spec)
    if scheduler not in ("sha", "asha"):
        raise EdgekdError(f"unknown scheduler {scheduler!r}; use sha or asha")
    if scheduler == "asha" and executor != "ray":
        raise EdgekdError("--scheduler asha is Ray Tune's scheduler: run it on Ray (drop --serial)")
    trials, costed, counted = _sample_trials(target, spec, settings, probe.x_train)
    timings = {"sample_s": round(time.perf_counter() - started, 2)}
    t = time.perf_counter()
    runner = make_executor(executor, cluster, settings.threads, workers)
    timings["executor_start_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    try:
        if scheduler == "asha":
            cut = tune_asha(trials, settings, runner, out, started)
        else:
            cut = _successive_halving(trials, settings, runner, started)
    finally:
        timings["trials_s"] = round(time.perf_counter() - t, 2)
        runner.close()
    ran = [t for t in trials if t.rungs]
    if not ran:
        raise EdgekdError("the search trained no trial in time; raise --budget-minutes")
    top = max(t.fidelity for t in ran)
    last = [t for t in ran if t.fidelity == top]
    chosen = min(last, key=lambda t: (-t.accuracy, t.latency_ms, t.id)).id
    result = SearchResult(target.name, spec.name, settings, target.budgets.to_dict(), trials, pareto(ran), chosen,
                          costed, cut, runner.name + (", Ray Tune ASHAScheduler" if scheduler == "asha" else ""),
                          time.perf_counter() - started, timings, counted)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / FRONTIER_JSON, result.to_json())
    plot_frontier(result, out / FRONTIER_PNG)
    return result


def load_choice(path: str | Path, target: str, task: str) -> StudentConfig:
    """The chosen student of a search (``frontier.json`` or its folder) for ``build --search FILE``."""
    path = Path(path)
    if path.is_dir():
        path = path / FRONTIER_JSON
    if not path.is_file():
        raise EdgekdError(f"--search {path}: no search result here; run `edgekd search --target {target} --task "
                          f"{task} --out DIR` first (or give --search N, a number of candidates)")
    fix = "run `edgekd search` again"
    d = read_json(path, "search result", fix=fix)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise EdgekdError(f"{path}: not an edgekd search result (no '{FORMAT}' marker); {fix}")
    if d.get("task") != task:
        raise EdgekdError(f"{path}: searched for task {d.get('task')!r}, this build is for {task!r}; {fix}")
    if d.get("target") != target:
        log.warning("%s: searched on %s, building for %s (the student is re-checked against this target)", path,
                    d.get("target"), target)
    chosen = d.get("chosen")
    if not isinstance(chosen, dict) or not isinstance(chosen.get("family"), str) or not isinstance(
            chosen.get("config"), dict):
        raise EdgekdError(f"{path}: the chosen student is damaged; {fix}")
    return StudentConfig(chosen["family"], chosen["config"])


def result_from_json(d: dict[str, Any]) -> SearchResult:
    """A :class:`SearchResult` back from frontier.json (to re-plot or compare a finished search)."""
    trials = [Trial(t["id"], t["family"], t["config"], t["params"], t["macs"], t["predicted"], t["origin"],
                    t["rungs"]) for t in d["trials"]]
    return SearchResult(d["target"], d["task"], SearchSettings(**d["settings"]), d["budgets"], trials, d["frontier"],
                        d["chosen"]["id"], d["candidates_costed"], d["cut_by_budget"], d.get("executor", ""),
                        d.get("wall_s", 0.0), d.get("timings_s", {}), d.get("candidates_counted", 0))


def plot_frontier(result: SearchResult, path: Path) -> Path:
    """Validation accuracy vs latency (left: counted when the search counted it, else estimated) and predicted RAM
    (right); frontier joined, choice ringed, the planner's pick (trial 0) a square drawn over the rings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    front = [result.trials[i] for i in result.frontier]
    ran = [t for t in result.trials if t.rungs]
    best = result.best
    cap = result.settings.counted_latency_ms
    lat_unit = "ms (counted, untrained weights)" if cap is not None else "ms (estimated)"

    def x(t: Trial, key: str) -> float:
        return t.latency_ms if key == "latency_ms" else t.predicted[key]

    for ax, key, scale, unit, budget in ((axes[0], "latency_ms", 1.0, lat_unit, cap or result.budgets["latency_ms"]),
                                         (axes[1], "ram_bytes", 1 / 1024, "KiB (predicted arena + runtime)",
                                          result.budgets["ram_bytes"])):
        for origin, marker in (("sampled", "o"), ("planner", "s")):
            pts = [t for t in ran if t.origin == origin]
            if pts:  # the planner's square on top of the frontier's and the choice's rings, outlined
                sc = ax.scatter([x(t, key) * scale for t in pts], [100 * t.accuracy for t in pts],
                                c=[t.fidelity for t in pts], cmap="viridis", marker=marker,
                                s=70 if origin == "planner" else 40, zorder=4 if origin == "planner" else 2,
                                edgecolors="k" if origin == "planner" else "face", linewidths=1,
                                vmin=result.settings.min_epochs, vmax=result.settings.max_epochs,
                                label="planner's pick at these budgets (trial 0)" if origin == "planner"
                                else "trials")
        line, best_so_far = [], -1.0  # this panel's 2-D frontier: more accurate than everything cheaper
        for t in sorted(ran, key=lambda t: (x(t, key), -t.accuracy)):
            if t.accuracy > best_so_far:
                line.append(t)
                best_so_far = t.accuracy
        ax.step([x(t, key) * scale for t in line], [100 * t.accuracy for t in line], where="post",
                color="tab:red", lw=1, label="frontier (this pair)")
        ax.scatter([x(t, key) * scale for t in front], [100 * t.accuracy for t in front], s=110,
                   facecolors="none", edgecolors="tab:orange", linewidths=1, zorder=3,
                   label="frontier (accuracy, latency, RAM)")
        ax.scatter([x(best, key) * scale], [100 * best.accuracy], s=220, facecolors="none",
                   edgecolors="tab:red", linewidths=2, zorder=3, label=f"chosen: {best.label()[:40]}")
        ax.axvline(budget * scale, color="k", ls="--", lw=1, label="budget")
        xs = [x(t, key) * scale for t in ran] + [budget * scale]
        if max(xs) >= 10 * min(xs):  # a log axis over less than a decade prints overlapping minor-tick labels
            ax.set_xscale("log")
        ax.set_xlabel(f"{'latency' if key == 'latency_ms' else 'RAM'}, {unit}")
        ax.set_ylabel("validation accuracy, % (at the trial's last rung)")
        ax.legend(fontsize=6, loc="best", framealpha=0.6)
    fig.colorbar(sc, ax=axes, label="epochs (fidelity)")
    fig.suptitle(f"search: {result.task} on {result.target}, {len(result.trials)} trials, seed {result.settings.seed}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


__all__ = ["FRONTIER_JSON", "FRONTIER_PNG", "SearchResult", "SearchSettings", "Trial", "check_space", "load_choice",
           "pareto", "parse_space", "run_trial", "search"]
