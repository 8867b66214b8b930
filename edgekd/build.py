"""``edgekd build``: plan -> teacher -> distill -> export -> verify -> package for one or more targets.

Each stage takes and gives files in the build folder; its inputs (settings, upstream file hashes, the edgekd
source) are hashed into a key kept in ``stages.json``, and a stage whose key and outputs are unchanged is skipped,
so a re-run is cheap and changing one setting reruns only what depends on it. Several targets share one teacher
and, through ``~/.cache/edgekd``, one teacher-output cache. ``report.json`` (schema in the README) and
``report.md`` with plots describe each target's build.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.io import FolderLock, atomic_path, atomic_write_text, check_writable, read_json, sha256_file, write_json
from edgekd.logs import log

STAGES = ("plan", "teacher", "distill", "export", "verify", "package")


@dataclass
class BuildOptions:
    """What a build does; ``fast`` is a smoke build of the same stages (few epochs, a sample of the data)."""

    task: str = "digits"
    data_dir: str | None = None
    teacher: str | None = None  # a teacher file/reference; None trains the built-in one
    fast: bool = False
    loss: str = "kd"
    epochs: int | None = None
    teacher_epochs: int | None = None
    seed: int = 0
    qat: bool = False
    search: int = 0
    baseline: bool = False
    limit: int | None = None
    families: list[str] | None = None
    max_drop_pp: float = 1.0
    vectors: int = 16
    sign: str | None = None  # Ed25519 private key (edgekd keygen) that signs the bundle
    progress: bool = True
    budgets: dict[str, str | None] = field(default_factory=dict)
    emulator: str = "auto"  # "auto": QEMU when the target has a QEMU machine and it is installed; "qemu"; "none"
    emulator_limit: int | None = 1000
    emulator_timeout_s: float = 900.0

    def resolved(self) -> BuildOptions:
        """Fill what ``fast`` changes: 6 distillation epochs, a short teacher, a stratified 3,000-sample slice."""
        if not self.fast:
            return BuildOptions(**(asdict(self) | {"epochs": self.epochs or 20}))
        return BuildOptions(**(asdict(self) | {"epochs": self.epochs or 6, "teacher_epochs": self.teacher_epochs or 8,
                                               "limit": self.limit or 3000, "vectors": min(self.vectors, 8),
                                               "emulator_limit": min(self.emulator_limit or 100, 100)}))


def emulator_tools(target: Any) -> list[str]:
    """The host tools emulating ``target`` needs (QEMU, and the Arm cross compiler for microcontrollers)."""
    return ["qemu-aarch64"] if target.emulator.kind == "qemu-aarch64" else ["qemu-system-arm", "arm-none-eabi-gcc"]


def check_emulator_choice(choice: str, target: Any) -> None:
    """``--emulator qemu`` insists: refuse it before any training when its tools are not installed."""
    if choice != "qemu" or not target.emulator.kind.startswith("qemu"):
        return
    missing = [t for t in emulator_tools(target) if shutil.which(t) is None]
    if missing:
        raise EdgekdError(f"--emulator qemu: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                          "installed; run scripts/install_emulators.sh or use --emulator auto")


def resolve_emulator(choice: str, target: Any) -> str | None:
    """The emulator a build uses for ``target``: ``auto`` takes QEMU when the profile names a QEMU machine and
    its tools are installed, and says so when they are not; ``qemu`` insists (an error now, not after training,
    when QEMU is missing). A profile no emulator stands in for (ESP32-S3) is built without one, with a warning."""
    if choice == "none":
        return None
    kind = target.emulator.kind
    if not kind.startswith("qemu"):
        if choice == "qemu":
            log.warning("%s: not emulated: %s", target.name, target.emulator.note)
        return None
    if choice == "qemu":
        check_emulator_choice(choice, target)
        return "qemu"
    missing = [t for t in emulator_tools(target) if shutil.which(t) is None]
    if missing:
        log.warning("%s: not emulated (%s not installed; scripts/install_emulators.sh installs it)", target.name,
                    ", ".join(missing))
        return None
    return "qemu"


def _code_hash() -> str:
    """Hash of edgekd's own sources (Python and the C it compiles): a code change reruns every stage."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".c", ".cpp", ".h") and p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def data_key(task: str, data_dir: str | None) -> str:
    """What identifies the data: a built-in task's name, or the content of the user's file / folder."""
    path = Path(task)
    h = hashlib.sha256(f"{task}|{data_dir}".encode())
    if path.is_file():
        h.update(sha256_file(path).encode())
    elif path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(path).as_posix()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


#: Files in a build folder that are bookkeeping, never a stage's output.
_NOT_OUTPUTS = ("stages.json", FolderLock.NAME)


def _snapshot(roots: list[Path]) -> dict[Path, tuple[int, int, int]]:
    """(inode, size, mtime) of every file under ``roots``: what changed across a stage is what it wrote
    (edgekd writes by rename, so a rewritten file always gets a new inode)."""
    files: dict[Path, tuple[int, int, int]] = {}
    for root in roots:
        candidates = [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
        for p in candidates:
            if p.name in _NOT_OUTPUTS or not p.is_file():
                continue
            st = p.stat()
            files[p] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return files


def _valid_state(state: Any) -> bool:
    """stages.json as this code writes it: stage -> {key, run, outputs: {relative path: sha256}}."""
    return isinstance(state, dict) and all(
        isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("run"), str)
        and isinstance(rec.get("outputs"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in rec["outputs"].items())
        for rec in state.values())


class Stages:
    """Runs stages, skipping one only when its input key is unchanged and EVERY file it wrote is still there with
    the hash recorded in ``stages.json`` (paths relative to the build folder, so a moved folder still skips).

    Each run of a stage gets a fresh ``run`` token; downstream stages put their upstream's token in their key,
    so a stage that reruns (an output was changed, or its inputs) reruns everything that depends on it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "stages.json"
        self.state: dict[str, Any] = self._load()
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            state = read_json(self.path, "stage record")
        except EdgekdError as exc:
            log.warning("%s; rebuilding every stage", exc)
            return {}
        if not _valid_state(state):
            log.warning("%s: not a stage record this edgekd wrote (wrong shape); rebuilding every stage", self.path)
            return {}
        return state

    def token(self, name: str) -> str | None:
        """The run token of stage ``name`` (None if it never ran): downstream keys include it."""
        rec = self.state.get(name)
        return rec["run"] if rec else None

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return str(path.resolve())

    def _changed(self, rec: dict[str, Any], outputs: list[Path]) -> str | None:
        """Why the recorded outputs cannot be trusted any more, or None when every one is intact."""
        recorded = rec["outputs"]
        for p in outputs:
            if self._rel(p) not in recorded:
                return f"{self._rel(p)} was not recorded when the stage ran"
        for rel, digest in sorted(recorded.items()):
            path = Path(rel) if Path(rel).is_absolute() else self.folder / rel
            if not path.is_file():
                return f"{rel} is missing since it was written"
            if sha256_file(path) != digest:
                return f"{rel} changed since it was written"
        return None

    def run(self, name: str, inputs: dict[str, Any], outputs: list[Path], fn: Callable[[], Any],
            roots: list[Path] | None = None) -> None:
        """Run ``fn`` unless stage ``name`` is up to date. ``outputs`` must exist afterwards; every file that
        appears or changes under ``roots`` (files or folders, default ``outputs``) while it runs is recorded too."""
        key = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
        rec = self.state.get(name)
        if rec and rec["key"] == key:
            why = self._changed(rec, outputs)
            if why is None:
                self.timings[name] = 0.0
                self.skipped.append(name)
                log.info("stage %s: unchanged, skipped", name)
                return
            log.warning("stage %s: %s; re-running", name, why)
        elif rec:
            log.info("stage %s: inputs changed since it last ran; running", name)
        roots = roots if roots is not None else outputs
        before = _snapshot(roots)
        t = time.perf_counter()
        fn()
        self.timings[name] = round(time.perf_counter() - t, 2)
        missing = [self._rel(p) for p in outputs if not p.is_file()]
        if missing:
            raise EdgekdError(f"stage {name} did not write {', '.join(missing)}")
        after = _snapshot(roots)
        written = set(outputs) | {p for p, st in after.items() if before.get(p) != st}
        self.state[name] = {"key": key, "run": secrets.token_hex(8),
                            "outputs": {self._rel(p): sha256_file(p) for p in sorted(written)}}
        write_json(self.path, self.state, sort_keys=True)  # last: the stage counts as done only now


def ensure_teacher(opts: BuildOptions, folder: Path, stages: Stages) -> str:
    """The teacher every target of this build shares: the given one, or the built-in one trained once."""
    from edgekd.distill import train_teacher

    if opts.teacher:
        return opts.teacher
    path = folder / "teacher" / f"{Path(opts.task).name}.pt"
    stages.run("teacher", {"data": data_key(opts.task, opts.data_dir), "epochs": opts.teacher_epochs,
                           "limit": opts.limit, "seed": opts.seed, "code": _code_hash()}, [path],
               lambda: train_teacher(opts.task, path, opts.teacher_epochs, opts.seed, opts.data_dir, opts.limit,
                                     progress=opts.progress), roots=[path.parent])
    return str(path)


def _target_ref(target: Any) -> str:
    """How to hand a resolved target to stages that load it themselves: its profile's path (a profile passed as
    ``--target path/board.yaml`` has no name the registry knows), else its name."""
    return str(Path(target.path).resolve()) if target.path else target.name


def build_target(target_name: str | Any, opts: BuildOptions, out: Path, teacher: str | None = None,
                 shared: Stages | None = None, lock: bool = False) -> dict[str, Any]:
    """Build one target (a name, a profile path or a loaded Target) into ``out``; returns report.json's content
    (also written with report.md). ``lock`` takes ``out``'s FolderLock (callers that hold it already pass False)."""
    from edgekd.targets import Target, load_target

    opts = opts.resolved()
    target = target_name if isinstance(target_name, Target) else load_target(target_name)
    target = target.with_budgets(**opts.budgets)
    emulator = resolve_emulator(opts.emulator, target)
    with FolderLock(out) if lock else nullcontext():
        check_writable(out)
        return _build_target(target, opts, out, emulator, teacher, shared)


def _build_target(target: Any, opts: BuildOptions, out: Path, emulator: str | None, teacher: str | None,
                  shared: Stages | None) -> dict[str, Any]:
    from edgekd.data import get_spec
    from edgekd.distill import distill
    from edgekd.export import export_student, load_export
    from edgekd.package import package_build
    from edgekd.planner import plan, plot_plan
    from edgekd.verify import verify_build

    started = time.perf_counter()
    ref = _target_ref(target)
    stages = Stages(out)
    code = _code_hash()
    profile = hashlib.sha256(json.dumps(target.to_dict(), sort_keys=True, default=str).encode()).hexdigest()

    plan_json = out / "plan.json"

    def do_plan() -> None:
        p = plan(target, get_spec(opts.task, opts.data_dir), opts.families)
        plot_plan(p, out / "plan.png")
        write_json(plan_json, p.to_dict())

    data = data_key(opts.task, opts.data_dir)
    stages.run("plan", {"target": profile, "data": data, "families": opts.families, "code": code}, [plan_json],
               do_plan, roots=[plan_json, out / "plan.png"])
    if not read_json(plan_json, "plan record", fix="delete it and re-run `edgekd build`").get("fits"):
        from edgekd.planner import explain_no_fit

        raise EdgekdError(explain_no_fit(plan(target, get_spec(opts.task, opts.data_dir), opts.families)))

    teacher_stages = shared or stages
    teacher_ref = teacher or ensure_teacher(opts, out, teacher_stages)
    teacher_key = sha256_file(teacher_ref) if Path(teacher_ref).is_file() else teacher_ref
    student = out / "student"
    stages.run("distill", {"target": profile, "data": data, "teacher": teacher_key,
                           "teacher_run": teacher_stages.token("teacher") if not opts.teacher else None,
                           "loss": opts.loss, "epochs": opts.epochs, "seed": opts.seed, "qat": opts.qat,
                           "search": opts.search, "baseline": opts.baseline, "limit": opts.limit,
                           "families": opts.families, "code": code},
               [student / "student.pt", student / "distill.json"],
               lambda: distill(ref, opts.task, teacher_ref, student, loss=opts.loss, epochs=opts.epochs,
                               qat=opts.qat, search=opts.search, baseline=opts.baseline, seed=opts.seed,
                               data_dir=opts.data_dir, limit=opts.limit, families=opts.families,
                               budgets=opts.budgets, verify_int8=False, progress=opts.progress),
               roots=[student])
    artifacts = out / "artifacts"
    common = {"target": profile, "data": data, "code": code}
    # Export lists its artifacts in export.json; every file it (or verify after it) wrote is recorded as well.
    stages.run("export", common | {"student": sha256_file(student / "student.pt"),
                                   "distill_run": stages.token("distill")},
               [artifacts / "export.json"],
               lambda: export_student(target, student, artifacts, budgets=opts.budgets, lock=False),
               roots=[artifacts])
    limit = 300 if opts.fast else None
    stages.run("verify", common | {"export": sha256_file(artifacts / "export.json"),
                                   "export_run": stages.token("export"), "limit": limit,
                                   "max_drop": opts.max_drop_pp, "emulator": emulator,
                                   "emulator_limit": opts.emulator_limit}, [artifacts / "verify.json"],
               lambda: verify_build(target, artifacts, opts.max_drop_pp, limit, budgets=opts.budgets,
                                    emulator=emulator, emulator_limit=opts.emulator_limit,
                                    emulator_timeout_s=opts.emulator_timeout_s, lock=False),
               roots=[artifacts])
    export, _ = load_export(artifacts)  # every artifact it lists is there with its recorded sha256
    bundle = out / f"edgekd-{target.name}-{export['task']}.tar.gz".replace(":", "-").replace("/", "-")
    stages.run("package", common | {"verify": sha256_file(artifacts / "verify.json"),
                                    "verify_run": stages.token("verify"), "vectors": opts.vectors,
                                    "sign": sha256_file(opts.sign) if opts.sign else None},
               [bundle], lambda: package_build(artifacts, bundle, opts.vectors, sign=opts.sign))
    timings = ({"teacher": shared.timings.get("teacher", 0.0)} if shared else {}) | stages.timings
    verify = read_json(artifacts / "verify.json", "verify record", fix="re-run `edgekd verify`")
    dist = read_json(student / "distill.json", "distill record", fix="re-run `edgekd distill`")
    report = make_report(out, target, export, verify, dist, bundle, timings, stages.skipped)
    report["timings_s"]["total"] = round(time.perf_counter() - started, 2)
    write_report(out, report, target)
    return report


def make_report(out: Path, target: Any, export: dict[str, Any], verify: dict[str, Any], dist: dict[str, Any],
                bundle: Path, timings: dict[str, float], skipped: list[str]) -> dict[str, Any]:
    """report.json: the contract later issues and users' scripts read (extend it, never rename)."""
    from edgekd import costmodel
    from edgekd.distill import load_student
    from edgekd.students import model_input_shape

    model, _ = load_student(out / "artifacts")
    estimates = {p: costmodel.estimate_latency(costmodel.analyze(model, model_input_shape(model), p,
                                                                 bool(model.channels_last_input)), target)
                 for p in ("int8", "fp32")}
    by_path = {a["path"]: a for a in export["artifacts"]}
    entries = []
    for r in verify["runs"]:
        a = by_path[r["artifact"]]
        est = estimates[a["precision"]]
        entries.append({"format": a["format"], "precision": a["precision"], "path": f"artifacts/{a['path']}",
                        "bytes": a["bytes"], "sha256": a["sha256"], "runtime": r["runtime"], "emulator": None,
                        "kernels": r.get("kernels"), "accuracy": r["accuracy"],
                        "agreement_with_float": r["agreement_with_float"],
                        "arena_bytes": r.get("arena_bytes"), "latency_ms": est.ms, "latency_kind": est.kind,
                        "latency_method": est.method, "host_latency_ms": r["latency"]["median_ms"],
                        "max_abs_err": r["max_abs_err"], "bit_exact_vs_host": None, "max_diff_vs_host": None})
    entries += [emulated_entry(r, by_path, estimates, out / "artifacts") for r in verify.get("emulated", [])]
    for a in export["artifacts"]:
        if a["format"] == "c":  # the C array is the .tflite's bytes: it inherits the TFLite Micro run
            tflm = next((e for e in entries if e["runtime"] == "tflm" and e["path"].endswith(a["details"]["embeds"])),
                        None)
            entries.append({"format": "c", "precision": a["precision"], "path": f"artifacts/{a['path']}",
                            "bytes": a["bytes"], "sha256": a["sha256"], "runtime": "tflm", "emulator": None,
                            "accuracy": tflm["accuracy"] if tflm else None,
                            "agreement_with_float": tflm["agreement_with_float"] if tflm else None,
                            "arena_bytes": a["details"]["tensor_arena_bytes"],
                            "latency_ms": estimates["int8"].ms, "latency_kind": "estimated",
                            "latency_method": estimates["int8"].method, "host_latency_ms": None,
                            "embeds": f"artifacts/{a['details']['embeds']}"})
    teacher = dist["teacher"]
    s = dist["student"]
    return {
        "target": target.name,
        "task": export["task"],
        "teacher": {"params": teacher.get("params") or teacher.get("param_count"),
                    "accuracy": teacher.get("test_accuracy"), "path": teacher.get("path")},
        "student": {"family": s["family"], "config": s["config"], "params": s["params"], "macs": s["macs"],
                    "accuracy_float": s["accuracy_float"], "accuracy_no_teacher": s["accuracy_no_teacher"],
                    "qat": s["qat"]},
        "artifacts": entries,
        "budgets": verify["budgets"],
        "gates": verify["gates"],
        "passed": verify["passed"],
        "bundle": bundle.name,
        "evaluated_on": verify["samples"],
        "candidates": dist["candidates"],
        "timings_s": dict(timings),
        "skipped_stages": skipped,
        "versions": export["versions"],
    }


# Keys of an emulator's details that report.json lifts into the artifact entry (the C build's sizes).
EMULATED_SIZE_KEYS = ("flash_bytes", "ram_bytes", "tflm_arena_bytes", "arena_bytes", "stack_bytes")


def emulated_entry(r: dict[str, Any], by_path: dict[str, Any], estimates: dict[str, Any],
                   build: Path) -> dict[str, Any]:
    """A report.json artifact entry for one emulated run: where it ran, which kernels, exactness vs host,
    and the counted latency (single thread, instructions x CPI at the profile's clock)."""
    a = by_path.get(r["path"])
    if a is None and (build / r["path"]).is_file():  # a file the emulator built (the board's ELF)
        a = {"bytes": (build / r["path"]).stat().st_size, "sha256": sha256_file(build / r["path"])}
    est = estimates[r["precision"]]
    counted = r.get("counted_ms") is not None
    entry = {"format": r["format"], "precision": r["precision"], "path": f"artifacts/{r['path']}",
             "bytes": a["bytes"] if a else None, "sha256": a["sha256"] if a else None,
             "runtime": r["runtime"], "emulator": r["emulator"], "kernels": r["kernels"], "ok": r["ok"],
             "error": r["error"], "accuracy": r["accuracy"], "agreement_with_float": None,
             "agreement_with_host": r["agreement"], "host_accuracy": r["host_accuracy"],
             "emulated_samples": r["samples"], "arena_bytes": r["details"].get("arena_bytes"),
             "latency_ms": r["counted_ms"] if counted else est.ms,
             "latency_kind": "counted" if counted else est.kind,
             "latency_method": (f"{r['instructions']:,} instructions per invoke counted on {r['emulator']} x CPI "
                                f"{r['cpi']:g} at the profile's clock, 1 thread ({r['details'].get('cpi_source')})"
                                if counted else est.method),
             "estimated_ms": est.ms, "instructions": r["instructions"], "cpi": r["cpi"], "host_latency_ms": None,
             "bit_exact_vs_host": r["bit_exact_vs_host"], "max_diff_vs_host": r["max_diff_vs_host"]}
    entry |= {k: r["details"][k] for k in EMULATED_SIZE_KEYS if k in r["details"]}
    return entry


def plot_accuracy_vs_size(report: dict[str, Any], path: Path, runtime_flash: int) -> Path:
    """Accuracy vs flash bytes: every artifact run, the search candidates if any, and the flash budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    budget = (report["budgets"]["flash_bytes"] - runtime_flash) / 1024
    for a in report["artifacts"]:
        if a["accuracy"] is not None and a["format"] != "c" and not a.get("emulator"):
            ax.scatter(a["bytes"] / 1024, 100 * a["accuracy"], s=50, label=f"{Path(a['path']).name} ({a['runtime']})")
    cands = [c for c in report["candidates"] if c.get("val_accuracy") is not None]
    if cands:
        ax.scatter([c["predicted"]["flash_bytes"] / 1024 - runtime_flash / 1024 for c in cands],
                   [100 * c["val_accuracy"] for c in cands], marker="x", c="gray",
                   label="search candidates (short runs, validation)")
    if budget < 4 * max(a["bytes"] for a in report["artifacts"]) / 1024:
        ax.axvline(budget, color="k", ls=":", lw=1, label="flash budget for the model")
    ax.set_xlabel("model bytes in flash (KiB)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{report['target']} / {report['task']}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def write_report(out: Path, report: dict[str, Any], target: Any) -> None:
    """report.json, its plot and report.md for ``target`` (the resolved profile: never reloaded by name)."""
    write_json(out / "report.json", report)
    plot_accuracy_vs_size(report, out / "accuracy_vs_size.png", target.runtime_flash_bytes)
    s = report["student"]
    lines = [f"# edgekd build: {report['target']} / {report['task']}", "",
             f"**{'PASSED' if report['passed'] else 'FAILED'}** - bundle `{report['bundle']}`", "",
             f"Student {s['family']} {s['config']}: {s['params']:,} params, {s['macs']:,} MACs, float accuracy "
             f"{100 * s['accuracy_float']:.2f}%"
             + (f" (no teacher: {100 * s['accuracy_no_teacher']:.2f}%)" if s["accuracy_no_teacher"] else "")
             + (f"; teacher {100 * report['teacher']['accuracy']:.2f}%" if report["teacher"]["accuracy"] else "")
             + f". Evaluated on {report['evaluated_on']['test']} of {report['evaluated_on']['of']} test samples.", "",
             "| artifact | runtime | bytes | accuracy | agreement | arena | latency on target | host ms |",
             "|---|---|---|---|---|---|---|---|"]
    for a in report["artifacts"]:
        if a.get("emulator"):
            continue
        acc = f"{100 * a['accuracy']:.2f}%" if a["accuracy"] is not None else "-"
        agree = f"{100 * a['agreement_with_float']:.2f}%" if a["agreement_with_float"] is not None else "-"
        host = f"{a['host_latency_ms']:.3f}" if a.get("host_latency_ms") is not None else "-"
        lines.append(f"| {a['path']} | {a['runtime']} | {a['bytes']:,} | {acc} | {agree} | "
                     f"{a['arena_bytes'] or '-'} | {a['latency_ms']:.2f} ms ({a['latency_kind']}) | {host} |")
    emulated = [a for a in report["artifacts"] if a.get("emulator")]
    if emulated:
        from edgekd.emulate import exactness

        lines += ["", "Emulated runs (outputs compared with the same runtime on the host; latency counted on one "
                  "thread, instructions x CPI at the profile's clock):", "",
                  "| artifact | emulator | kernels | accuracy | vs host | instructions | latency (counted) | "
                  "estimate (profile's threads) |", "|---|---|---|---|---|---|---|---|"]
        for a in emulated:
            if not a["ok"]:
                lines.append(f"| {a['path']} | {a['emulator']} | {a['kernels']} | FAILED: {a['error']} | | | | |")
                continue
            exact = exactness(a)
            insns = f"{a['instructions']:,}" if a["instructions"] else "-"
            lines.append(f"| {a['path']} | {a['emulator']} | {a['kernels']} | {100 * a['accuracy']:.2f}% | "
                         f"{exact} | {insns} | {a['latency_ms']:.2f} ms ({a['latency_kind']}) | "
                         f"{a['estimated_ms']:.2f} ms |")
    lines += ["", "| gate | passed | detail |", "|---|---|---|"]
    lines += [f"| {k} | {g['passed']} | {g['detail']} ({g['kind']}) |" for k, g in report["gates"].items() if g]
    lines += ["", "![accuracy vs size](accuracy_vs_size.png)", "", "Per-layer int8 error (SQNR vs float):", "",
              "![per-layer int8 error](artifacts/layers.png)", "",
              "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in report["timings_s"].items())
              + (f"; skipped (unchanged): {', '.join(report['skipped_stages'])}" if report["skipped_stages"] else ""),
              ""]
    atomic_write_text(out / "report.md", "\n".join(lines))


def build(targets: list[str], opts: BuildOptions, out_dir: str | Path) -> dict[str, Any]:
    """Build every target in ``targets`` (names or profile paths) into ``out_dir`` (one sub-folder each when there
    are several). Everything that can be refused is refused before any work: unknown targets, bad budgets,
    ``--emulator qemu`` without QEMU, an unwritable or busy ``out_dir``, which stays locked for the whole build."""
    from edgekd.targets import load_target

    resolved = opts.resolved()
    loaded = [load_target(t).with_budgets(**resolved.budgets) for t in targets]
    for target in loaded:
        check_emulator_choice(resolved.emulator, target)
    if resolved.sign:  # a bad key fails now, not after training
        from edgekd.signing import load_private_key

        load_private_key(resolved.sign)
    out = Path(out_dir)
    with FolderLock(out):
        if len(loaded) == 1:
            return {"reports": [build_target(loaded[0], opts, out)], "teacher": None}
        shared = Stages(out)
        teacher = ensure_teacher(resolved, out, shared)
        reports = [build_target(t, opts, out / t.name, teacher, shared, lock=True) for t in loaded]
        return {"reports": reports, "teacher": teacher,
                "teacher_trained_s": shared.timings.get("teacher", 0.0)}
