"""One :class:`Report` per target: report.json (the contract users' scripts read), report.md with its plot, and
the lines ``edgekd build`` prints, all rendered from the same object.

report.json's keys are documented in the README ("report.json"): extend them, never rename. Its artifact
entries are JSON-shaped rows built and rendered in this module only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.build.context import BuildLayout
from edgekd.build.records import DistillRecord
from edgekd.emulate import EmulatedRun
from edgekd.export.records import Artifact, ExportRecord
from edgekd.io import atomic_path, atomic_write_text, sha256_file, write_json
from edgekd.verify.records import VerifyRecord


@dataclass
class Report:
    """One target's build: what report.json holds, field for field."""

    target: str
    task: str
    distill: DistillRecord
    artifacts: list[dict[str, Any]]
    budgets: dict[str, Any]
    gates: dict[str, dict[str, Any] | None]
    passed: bool
    bundle: str
    evaluated_on: dict[str, int]
    timings_s: dict[str, float]
    skipped_stages: list[str]
    versions: dict[str, Any]
    folder: Path | None = field(default=None, compare=False)  # where it was built (not in report.json)
    #: distill.json's "shipped" (which student and why), "unlabelled" and the teacher check, as report.json's
    #: "distillation"; None for a record written before edgekd recorded them.
    distillation: dict[str, Any] | None = None

    # ------------------------------------------------------------------ report.json
    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "task": self.task, "teacher": self.distill.teacher.to_json(),
                "student": self.distill.student.to_json(), "artifacts": self.artifacts, "budgets": self.budgets,
                "gates": self.gates, "passed": self.passed, "bundle": self.bundle,
                "evaluated_on": self.evaluated_on, "candidates": self.distill.candidates,
                "timings_s": dict(self.timings_s), "skipped_stages": self.skipped_stages, "versions": self.versions,
                "distillation": self.distillation}

    @property
    def emulated(self) -> list[dict[str, Any]]:
        return [a for a in self.artifacts if a.get("emulator")]

    @property
    def failed_gates(self) -> list[str]:
        return [k for k, g in self.gates.items() if g and not g["passed"]]

    # ------------------------------------------------------------------ what `edgekd build` prints
    def text(self, where: str | Path) -> str:
        """The CLI's lines for this target; ``where`` is its build folder as the user named it."""
        s = self.distill.student
        lines = [f"{self.target}: {'PASS' if self.passed else 'FAIL'}  {s.family} {s.config} float "
                 f"{100 * s.accuracy_float:.2f}%, "
                 + ", ".join(f"{a['path'].split('/')[-1]} on {a['runtime']} {100 * a['accuracy']:.2f}%"
                             for a in self.artifacts if a["accuracy"] is not None and a["format"] != "c"
                             and not a.get("emulator"))]
        emulated = self.emulated
        if emulated:
            int8 = [a for a in emulated if a["precision"] == "int8"]
            exact = sum(a["bit_exact_vs_host"] is True for a in int8)
            failed = sum(not a["ok"] for a in emulated)
            counted = [a["latency_ms"] for a in emulated if a["latency_kind"] == "counted"
                       and a["kernels"] != "reference"]  # what the device runs, as the latency gate
            lines.append(f"  emulated on {emulated[0]['emulator']}: {len(emulated)} runs"
                         + (f", {failed} FAILED" if failed else "")
                         + f", {exact} of {len(int8)} int8 runs bit-exact with the host"
                         + (f", counted latency up to {max(counted):.2f} ms" if counted else ""))
        shipped = (self.distillation or {}).get("shipped") or {}
        if shipped.get("distilled"):
            lines.append(f"  shipped the {shipped['shipped']} student: {shipped['reason']}")
        if self.failed_gates:
            lines.append(f"  failed gates: {', '.join(self.failed_gates)}")
        lines.append(f"  report: {where}/report.md (+ report.json), bundle: {where}/{self.bundle}"
                     + (f"; skipped unchanged stages: {', '.join(self.skipped_stages)}" if self.skipped_stages
                        else ""))
        return "\n".join(lines)

    # ------------------------------------------------------------------ report.md
    def summary_line(self) -> str:
        s, t = self.distill.student, self.distill.teacher
        baseline = ""
        if s.accuracy_no_teacher:
            int8 = (f", int8 {100 * s.accuracy_no_teacher_int8:.2f}%" if s.accuracy_no_teacher_int8 is not None
                    else "")
            baseline = f" (no teacher: {100 * s.accuracy_no_teacher:.2f}% float{int8})"
        return (f"Student {s.family} {s.config}: {s.params:,} params, {s.macs:,} MACs, float accuracy "
                f"{100 * s.accuracy_float:.2f}%" + baseline
                + (f"; teacher {100 * t.accuracy:.2f}%" if t.accuracy else "")
                + f". Evaluated on {self.evaluated_on['test']:,} of {self.evaluated_on['of']:,} test samples.")

    def distillation_lines(self) -> list[str]:
        """report.md's account of the distillation: which student was shipped and why, with both students' test
        accuracies; how many unlabelled samples were used; the teacher check's warning."""
        d = self.distillation or {}
        lines = []
        shipped = d.get("shipped") or {}
        if shipped.get("reason"):
            lines.append(f"Shipped: the **{shipped['shipped']}** student: {shipped['reason']}.")
        if shipped.get("distilled") and shipped.get("no_teacher"):
            lines += ["", "| student | validation | test float | test int8 (LiteRT reference) |", "|---|---|---|---|"]
            for name in ("distilled", "no_teacher"):
                r = shipped[name]
                int8 = f"{100 * r['test_int8']:.2f}%" if r.get("test_int8") is not None else "-"
                lines.append(f"| {name.replace('_', '-')} ({r['loss']}) | {100 * r['val_accuracy']:.2f}% | "
                             f"{100 * r['test_float']:.2f}% | {int8} |")
        sel = (d.get("epoch_selection") or {}).get("student")
        if sel:
            lines.append(f"\nEpoch shipped: {sel['epoch']} ({sel['rule']}: {sel['why']}).")
        unl = d.get("unlabelled") or {}
        if unl.get("samples"):
            lines.append(f"\nUnlabelled samples: {unl.get('used', 0):,} used of {unl['samples']:,} ("
                         + "; ".join(unl.get("sources", [])) + ").")
        check = d.get("teacher_check") or {}
        if check.get("warning"):
            lines.append(f"\nWarning: {check['warning']}.")
        return lines + [""] if lines else []

    def markdown(self) -> str:
        lines = [f"# edgekd build: {self.target} / {self.task}", "",
                 f"**{'PASSED' if self.passed else 'FAILED'}** - bundle `{self.bundle}`", "", self.summary_line(), "",
                 *self.distillation_lines(),
                 "| artifact | runtime | bytes | accuracy | agreement | arena | latency on target | host ms |",
                 "|---|---|---|---|---|---|---|---|"]
        for a in self.artifacts:
            if a.get("emulator"):
                continue
            acc = f"{100 * a['accuracy']:.2f}%" if a["accuracy"] is not None else "-"
            agree = f"{100 * a['agreement_with_float']:.2f}%" if a["agreement_with_float"] is not None else "-"
            host = f"{a['host_latency_ms']:.3f}" if a.get("host_latency_ms") is not None else "-"
            lines.append(f"| {a['path']} | {a['runtime']} | {a['bytes']:,} | {acc} | {agree} | "
                         f"{a['arena_bytes'] or '-'} | {a['latency_ms']:.2f} ms ({a['latency_kind']}) | {host} |")
        if self.emulated:
            from edgekd.emulate import exactness

            lines += ["", "Emulated runs (outputs compared with the same runtime on the host; latency counted on one "
                      "thread at the profile's clock: counted instructions x the cycles per instruction of the "
                      "core's cycle model where it has one, else of a fixed CPI; report.json's latency_method "
                      "says which):", "",
                      "| artifact | emulator | kernels | accuracy | vs host | instructions | latency (counted) | "
                      "estimate (profile's threads) |", "|---|---|---|---|---|---|---|---|"]
            for a in self.emulated:
                if not a["ok"]:
                    lines.append(f"| {a['path']} | {a['emulator']} | {a['kernels']} | FAILED: {a['error']} | | | | |")
                    continue
                insns = f"{a['instructions']:,}" if a["instructions"] else "-"
                lines.append(f"| {a['path']} | {a['emulator']} | {a['kernels']} | {100 * a['accuracy']:.2f}% | "
                             f"{exactness(a)} | {insns} | {a['latency_ms']:.2f} ms ({a['latency_kind']}) | "
                             f"{a['estimated_ms']:.2f} ms |")
        lines += ["", "| gate | passed | detail |", "|---|---|---|"]
        lines += [f"| {k} | {g['passed']} | {g['detail']} ({g['kind']}) |" for k, g in self.gates.items() if g]
        lines += ["", "![accuracy vs size](accuracy_vs_size.png)", "", "Per-layer int8 error (SQNR vs float):", "",
                  "![per-layer int8 error](artifacts/layers.png)", "",
                  "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in self.timings_s.items())
                  + (f"; skipped (unchanged): {', '.join(self.skipped_stages)}" if self.skipped_stages else ""), ""]
        return "\n".join(lines)

    def write(self, layout: BuildLayout, runtime_flash_bytes: int) -> None:
        """report.json, its accuracy-vs-size plot and report.md."""
        write_json(layout.report_json, self.to_json())
        self.plot_accuracy_vs_size(layout.accuracy_png, runtime_flash_bytes)
        atomic_write_text(layout.report_md, self.markdown())

    def plot_accuracy_vs_size(self, path: Path, runtime_flash: int) -> Path:
        """Accuracy vs flash bytes: every artifact run, the search candidates if any, and the flash budget line."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        budget = (self.budgets["flash_bytes"] - runtime_flash) / 1024
        for a in self.artifacts:
            if a["accuracy"] is not None and a["format"] != "c" and not a.get("emulator"):
                ax.scatter(a["bytes"] / 1024, 100 * a["accuracy"], s=50,
                           label=f"{Path(a['path']).name} ({a['runtime']})")
        cands = [c for c in self.distill.candidates if c.get("val_accuracy") is not None]
        if cands:
            ax.scatter([c["predicted"]["flash_bytes"] / 1024 - runtime_flash / 1024 for c in cands],
                       [100 * c["val_accuracy"] for c in cands], marker="x", c="gray",
                       label="search candidates (short runs, validation)")
        if budget < 4 * max(a["bytes"] for a in self.artifacts) / 1024:
            ax.axvline(budget, color="k", ls=":", lw=1, label="flash budget for the model")
        ax.set_xlabel("model bytes in flash (KiB)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{self.target} / {self.task}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        return path


# ------------------------------------------------------------------ building the report from the stage records

def make_report(layout: BuildLayout, target: Any, export: ExportRecord, verify: VerifyRecord,
                dist: DistillRecord, bundle: Path, timings: dict[str, float], skipped: list[str]) -> Report:
    """The report of one target from its stage records (latency estimates from the exported student)."""
    from edgekd import costmodel
    from edgekd.students import model_input_shape
    from edgekd.students.store import load_student

    model, _ = load_student(layout.artifacts)
    estimates = {p: costmodel.estimate_latency(costmodel.analyze(model, model_input_shape(model), p,
                                                                 bool(model.channels_last_input)), target)
                 for p in ("int8", "fp32")}
    by_path = {a.path: a for a in export.artifacts}
    prefix = layout.rel(layout.artifacts)
    entries = []
    for r in verify.runs:
        a = by_path[r.artifact]
        est = estimates[a.precision]
        entries.append({"format": a.format, "precision": a.precision, "path": f"{prefix}/{a.path}",
                        "bytes": a.bytes, "sha256": a.sha256, "runtime": r.runtime, "emulator": None,
                        "kernels": r.kernels, "accuracy": r.accuracy,
                        "agreement_with_float": r.fidelity.agreement_with_float,
                        "arena_bytes": r.arena_bytes, "latency_ms": est.ms, "latency_kind": est.kind,
                        "latency_method": est.method, "host_latency_ms": r.latency.median_ms,
                        "max_abs_err": r.fidelity.max_abs_err, "bit_exact_vs_host": None, "max_diff_vs_host": None})
    entries += [_emulated_entry(r, by_path, estimates, layout) for r in verify.emulated]
    entries += [_c_entry(a, entries, estimates["int8"], prefix) for a in export.artifacts if a.format == "c"]
    return Report(target.name, export.task, dist, entries, verify.budgets,
                  {k: g.to_dict() if g else None for k, g in verify.gates.items()}, verify.passed, bundle.name,
                  {"test": verify.samples.test, "of": verify.samples.of, "layers": verify.samples.layers},
                  dict(timings), list(skipped), export.versions, layout.root, _distillation(layout))


def _distillation(layout: BuildLayout) -> dict[str, Any] | None:
    """What distill.json says about the distillation itself (absent from records of older edgekd versions)."""
    from edgekd.io import read_json

    d = read_json(layout.distill_json, "distill record")
    if not isinstance(d, dict) or "shipped" not in d:
        return None
    return {"shipped": d.get("shipped"), "unlabelled": d.get("unlabelled"),
            "teacher_check": (d.get("teacher") or {}).get("check"), "epoch_selection": d.get("epoch_selection")}


def _c_entry(a: Artifact, entries: list[dict[str, Any]], est: Any, prefix: str) -> dict[str, Any]:
    """The C array is the .tflite's bytes: it inherits the TensorFlow Lite Micro run of the file it embeds."""
    embeds = a.details.embeds  # type: ignore[attr-defined]  (CDetails)
    tflm = next((e for e in entries if e["runtime"] == "tflm" and e["path"].endswith(embeds)), None)
    return {"format": "c", "precision": a.precision, "path": f"{prefix}/{a.path}", "bytes": a.bytes,
            "sha256": a.sha256, "runtime": "tflm", "emulator": None,
            "accuracy": tflm["accuracy"] if tflm else None,
            "agreement_with_float": tflm["agreement_with_float"] if tflm else None,
            "arena_bytes": a.details.tensor_arena_bytes,  # type: ignore[attr-defined]
            "latency_ms": est.ms, "latency_kind": "estimated", "latency_method": est.method,
            "host_latency_ms": None, "embeds": f"{prefix}/{embeds}"}


def _emulated_entry(r: EmulatedRun, by_path: dict[str, Artifact], estimates: dict[str, Any],
                    layout: BuildLayout) -> dict[str, Any]:
    """A report.json artifact entry for one emulated run: where it ran, which kernels, exactness vs host,
    and the counted latency (single thread at the profile's clock: instructions x the cycles per instruction
    that the core's cycle model gave for this run, or a fixed CPI where the core has no model)."""
    a = by_path.get(r.path)
    size: tuple[int, str] | None = (a.bytes, a.sha256) if a else None
    built = layout.artifacts / r.path
    if a is None and built.is_file():  # a file the emulator built (the board's ELF)
        size = (built.stat().st_size, sha256_file(built))
    est = estimates[r.precision]
    counted = r.counted_ms is not None
    lifted = r.details.report_fields() if r.details is not None else {}  # a board build's sizes
    cpi_note = r.details.cpi_note() if r.details is not None else None
    entry = {"format": r.format, "precision": r.precision, "path": f"{layout.rel(layout.artifacts)}/{r.path}",
             "bytes": size[0] if size else None, "sha256": size[1] if size else None,
             "runtime": r.runtime, "emulator": r.emulator, "kernels": r.kernels, "ok": r.ok,
             "error": r.error, "accuracy": r.accuracy, "agreement_with_float": None,
             "agreement_with_host": r.agreement, "host_accuracy": r.host_accuracy,
             "emulated_samples": r.samples, "arena_bytes": lifted.get("arena_bytes"),
             "latency_ms": r.counted_ms if counted else est.ms,
             "latency_kind": "counted" if counted else est.kind,
             "latency_method": (f"{r.instructions:,} instructions per invoke counted on {r.emulator} x {r.cpi:g} "
                                f"cycles per instruction ({cpi_note}) at the profile's clock, 1 thread"
                                if counted else est.method),
             "estimated_ms": est.ms, "instructions": r.instructions, "cpi": r.cpi, "host_latency_ms": None,
             "bit_exact_vs_host": r.bit_exact_vs_host, "max_diff_vs_host": r.max_diff_vs_host}
    entry |= lifted
    return entry
