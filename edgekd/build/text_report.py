"""The report of a text build: report.json, report.md and the lines ``edgekd build`` prints, from one object.

report.json keeps the image report's top-level keys where they mean the same (target, task, teacher, student,
artifacts, budgets, gates, passed, bundle, evaluated_on, timings_s, skipped_stages, versions) and adds
``text_metrics``: the float student and the int8 ``.tflite`` against the teacher on held-out sentences (mean
cosine, nearest-neighbour top-1 / top-10 agreement, WordNet probe accuracy of student and teacher), sizes and
MACs of both. Artifact ``accuracy`` fields are None: a sentence encoder has no labels to be accurate on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.io import atomic_write_text, write_json

if TYPE_CHECKING:
    from edgekd.build.context import BuildContext, BuildLayout
    from edgekd.build.stages import Stages
    from edgekd.build.text_records import TextDistillRecord, TextExportRecord, TextTeacherRecord, TextVerifyRecord

_METRICS = (("mean_cosine", "mean cosine to the teacher"), ("nn_top1", "nearest-neighbour top-1 agreement"),
            ("nn_top10", "nearest-neighbour top-10 overlap"), ("probe_student", "WordNet probe accuracy"))


@dataclass
class TextReport:
    """One text target's build: what report.json holds, field for field."""

    target: str
    task: str
    teacher: dict[str, Any]
    student: dict[str, Any]
    text_metrics: dict[str, Any]
    artifacts: list[dict[str, Any]]
    budgets: dict[str, Any]
    gates: dict[str, dict[str, Any] | None]
    passed: bool
    bundle: str
    evaluated_on: dict[str, int]
    timings_s: dict[str, float]
    skipped_stages: list[str]
    versions: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = field(default=None, compare=False)

    @classmethod
    def make(cls, ctx: BuildContext, teacher: TextTeacherRecord, dist: TextDistillRecord, export: TextExportRecord,
             verify: TextVerifyRecord, bundle: Path, stages: Stages) -> TextReport:
        from edgekd.distill import versions

        m, q = dist.metrics, verify.metrics_int8
        prefix = ctx.layout.rel(ctx.layout.artifacts)
        sizes = verify.sizes
        counted = sizes.get("latency_counted")  # on the emulated core: the .tflite (Cortex-A) or the C (MCUs)

        def latency(runtime_counted: bool) -> dict[str, Any]:
            if counted and runtime_counted:
                return {"latency_ms": counted["ms"], "latency_kind": "counted", "latency_method": counted["method"],
                        "emulator": counted["emulator"], "bit_exact_vs_host": counted["bit_exact_vs_host"],
                        "max_diff_vs_host": counted["max_step_diff_vs_host"]}
            return {"latency_ms": sizes["latency_ms"], "latency_kind": sizes["latency_kind"],
                    "latency_method": sizes["latency_method"], "emulator": None, "bit_exact_vs_host": None,
                    "max_diff_vs_host": None}

        artifacts = []
        for name, runtime in (("student.tflite", f"litert-{verify.kernels}"), ("student.pte", "executorch")):
            if name not in export.files:
                continue
            fid = export.fidelity.get("litert-xnnpack" if name.endswith("tflite") else "executorch-xnnpack", {})
            artifacts.append({
                "format": name.rsplit(".", 1)[1], "precision": "int8", "path": f"{prefix}/{name}",
                "bytes": export.files[name]["bytes"], "sha256": export.files[name]["sha256"], "runtime": runtime,
                "kernels": verify.kernels if name.endswith("tflite") else "xnnpack",
                "accuracy": None, "agreement_with_float": None,
                "mean_cosine_to_teacher": q["mean_cosine"] if name.endswith("tflite") else None,
                "cosine_to_float": fid.get("cosine_vs_float"), "max_abs_err": fid.get("max_abs_err"),
                "arena_bytes": sizes["ram_bytes"], "host_latency_ms": None}
                | latency(name == "student.tflite" and not export.c))
        if export.c:  # microcontrollers: tokenizer, table and model in edgekd's generated C
            c = export.c
            artifacts.append({
                "format": "c", "precision": "int8", "path": f"{prefix}/c", "bytes": None, "sha256": None,
                "runtime": "edgekd-c", "kernels": None, "accuracy": None,
                "agreement_with_float": None, "mean_cosine_to_teacher": None, "cosine_to_float": None,
                "max_abs_err": None, "arena_bytes": c["arena_bytes"], "host_latency_ms": None,
                "bit_exact_vs_tflm": c["bit_exact_vs_tflm"], "checked_sentences": c["sentences"],
                "tokenizer_sentences_identical": c["tokenizer_sentences_identical"], "files": c["files"]}
                | latency(True))
        shipped = {"shipped_bytes": export.shipped_bytes, "flashed_bytes": sizes.get("flashed_bytes"),
                   "token_table_bytes": sizes["token_table_bytes"],
                   "model_bytes": sizes["model_bytes"], "teacher_fp32_bytes": 4 * teacher.params}
        metrics = {"float": m, "int8": q, "int8_kernels": verify.kernels, "sizes": shipped,
                   "host_runtimes": export.fidelity, "latency_counted": counted,
                   "latency_estimated_ms": sizes["latency_ms"]}
        return cls(ctx.target.name, ctx.spec.name,
                   {"name": teacher.name, "params": teacher.params, "macs": teacher.macs, "accuracy": None,
                    "probe_accuracy": teacher.probe_accuracy, "cache": teacher.cache, "embed_seconds": teacher.seconds},
                   {"family": dist.family, "config": dist.config, "params": m["student_params"],
                    "macs": m["student_macs"], "accuracy_float": None, "accuracy_no_teacher": None, "qat": False,
                    "tokenizer": dist.tokenizer},
                   metrics, artifacts, verify.budgets, verify.gates, verify.passed, bundle.name,
                   {"test": m["nn_pool"], "of": m["nn_pool"], "train_sentences": teacher.sentences["train"],
                    "probe_train": m["probe_train"], "probe_test": m["probe_test"]},
                   dict(stages.timings), list(stages.skipped), versions(),
                   {"train": dist.train, "init": dist.init, "history": dist.history,
                    "train_seconds": dist.train_seconds}, ctx.layout.root)

    # ------------------------------------------------------------------ report.json
    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "task": self.task, "teacher": self.teacher, "student": self.student,
                "text_metrics": self.text_metrics, "artifacts": self.artifacts, "budgets": self.budgets,
                "gates": self.gates, "passed": self.passed, "bundle": self.bundle, "evaluated_on": self.evaluated_on,
                "candidates": [], "timings_s": dict(self.timings_s), "skipped_stages": self.skipped_stages,
                "versions": self.versions, "distillation": self.training}

    @property
    def failed_gates(self) -> list[str]:
        return [k for k, g in self.gates.items() if g and not g["passed"]]

    # ------------------------------------------------------------------ what `edgekd build` prints
    def text(self, where: str | Path) -> str:
        f, q = self.text_metrics["float"], self.text_metrics["int8"]
        probe = (f", probe {100 * q['probe_student']:.1f}% (teacher {100 * q['probe_teacher']:.1f}%)"
                 if q.get("probe_student") is not None else "")
        lines = [f"{self.target}: {'PASS' if self.passed else 'FAIL'}  {self.student['family']} "
                 f"{self.student['config']}: mean cosine to the teacher {f['mean_cosine']:.4f} float, "
                 f"{q['mean_cosine']:.4f} int8 .tflite; NN top-1 {q['nn_top1']:.3f}, top-10 {q['nn_top10']:.3f}"
                 + probe + f" on {f['nn_pool']:,} held-out sentences",
                 f"  {self.text_metrics['sizes']['shipped_bytes']:,} B shipped (model + token table + tokenizer), "
                 f"{f['mac_reduction']}x fewer MACs than the teacher"]
        if self.failed_gates:
            lines.append(f"  failed gates: {', '.join(self.failed_gates)}")
        lines.append(f"  report: {where}/report.md (+ report.json), bundle: {where}/{self.bundle}"
                     + (f"; skipped unchanged stages: {', '.join(self.skipped_stages)}" if self.skipped_stages
                        else ""))
        return "\n".join(lines)

    # ------------------------------------------------------------------ report.md
    def markdown(self) -> str:
        f, q, s, t = self.text_metrics["float"], self.text_metrics["int8"], self.student, self.teacher
        tr = self.training["train"]
        lines = [f"# edgekd build: {self.target} / {self.task}", "",
                 f"**{'PASSED' if self.passed else 'FAILED'}** - bundle `{self.bundle}`", "",
                 f"Teacher {t['name']}: {t['params']:,} params, {t['macs']:,} MACs per {f['tokens']}-token sentence. "
                 f"Student {s['family']} {s['config']} ({s['tokenizer']['kind']} tokenizer): {s['params']:,} params, "
                 f"{s['macs']:,} MACs ({f['mac_reduction']}x fewer).", "",
                 f"Trained on {self.evaluated_on['train_sentences']:,} sentences' teacher embeddings for "
                 f"{tr['epochs']} epochs ({tr['loss']} loss, lr {tr['lr']:g}, {self.training['init']['kind']} "
                 f"start); scored on {f['nn_pool']:,} held-out sentences (the nearest-neighbour pool); probe: "
                 f"{f['probe_train']:,} labelled training and {f['probe_test']:,} labelled held-out sentences.", "",
                 "| on held-out sentences | float student | int8 .tflite (LiteRT "
                 f"{self.text_metrics['int8_kernels']}) | teacher |", "|---|---|---|---|"]
        for key, label in _METRICS:
            fv, qv = f.get(key), q.get(key)
            teach = f"{f['probe_teacher']:.4f}" if key == "probe_student" and f.get("probe_teacher") else "1"
            lines.append(f"| {label} | {'-' if fv is None else f'{fv:.4f}'} | {'-' if qv is None else f'{qv:.4f}'} | "
                         f"{teach} |")
        lines += ["", "| file | runtime | bytes | cosine to float student (host check) | RAM | latency on target |",
                  "|---|---|---|---|---|---|"]
        for a in self.artifacts:
            if a["format"] == "c":
                cos = (f"bit-exact with TFLite Micro: {a['bit_exact_vs_tflm']}; C tokenizer ids identical on "
                       f"{a['tokenizer_sentences_identical']}/{a['checked_sentences']} sentences")
            else:
                cos = f"{a['cosine_to_float']:.4f}" if a["cosine_to_float"] is not None else "-"
            size = f"{a['bytes']:,}" if a["bytes"] is not None else "-"
            lines.append(f"| {a['path']} | {a['runtime']} | {size} | {cos} | {a['arena_bytes']:,} B | "
                         f"{a['latency_ms']:.3f} ms ({a['latency_kind']}) |")
        sizes = self.text_metrics["sizes"]
        counted = self.text_metrics.get("latency_counted")
        if counted:
            threads = (f", {counted['threads_ms']:.3f} ms on its {counted['threads']} cores"
                       if counted.get("threads_ms") else "")
            lines += ["", f"Counted latency per {f['tokens']}-token sentence: **{counted['ms']:.3f} ms** on one core"
                      f"{threads} ({counted['runtime']}, {counted['emulator']}; cost-model estimate "
                      f"{self.text_metrics['latency_estimated_ms']:.3f} ms)"
                      + (f"; the model alone {counted['model_ms']:.3f} ms, the C tokenizer and table-row copy alone "
                         f"{counted['tokenizer_rows_ms']:.3f} ms" if counted.get("model_ms") is not None else "")
                      + f". How: {counted['method']}."]
        lines += ["", f"Shipped for the .tflite runtime: {sizes['shipped_bytes']:,} B (model "
                  f"{sizes['model_bytes']:,} B, "
                  f"int8 token table {sizes['token_table_bytes']:,} B, tokenizer files); the teacher's fp32 weights: "
                  f"{sizes['teacher_fp32_bytes']:,} B.", "", "| gate | passed | detail |", "|---|---|---|"]
        lines += [f"| {k} | {g['passed']} | {g['detail']} ({g['kind']}) |" for k, g in self.gates.items() if g]
        cache = t["cache"]
        lines += ["", f"Teacher embeddings: {cache['sentences']:,} sentences, {cache['hits']} cache chunks read, "
                  f"{cache['misses']} computed ({t['embed_seconds']:.1f} s).", "",
                  "Stage times (s): " + ", ".join(f"{k} {v}" for k, v in self.timings_s.items())
                  + (f"; skipped (unchanged): {', '.join(self.skipped_stages)}" if self.skipped_stages else ""), ""]
        return "\n".join(lines)

    def write(self, layout: BuildLayout) -> None:
        write_json(layout.report_json, self.to_json())
        atomic_write_text(layout.report_md, self.markdown())
