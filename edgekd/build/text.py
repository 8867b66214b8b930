"""The text path of ``edgekd build``: a task whose spec's kind is ``text`` (``text-embedding``) runs the same
stages with the same runner, context and folder layout as an image task, handing text records along.

```
plan ----> PlanRecord         plan.json, plan.png             the planner over the text families; --fast: the
                                                              smallest fitting student with the best's tokenizer
teacher -> TextTeacherRecord  teacher/minilm.json             the recipe's sentences through the MiniLM teacher,
                                                              read from / written to the embedding cache
distill -> TextDistillRecord  student/student.pt, distill.json  edgekd.text.distill.distil_text
export --> TextExportRecord   artifacts/ + export.json        int8 .tflite (+ .pte where the target runs it),
                                                              token table, tokenizer, vectors
verify --> TextVerifyRecord   artifacts/verify.json           the int8 .tflite scored against the teacher like
                                                              the float student; flash/RAM/latency/fidelity gates
package -> bundle             edgekd-<target>-<task>.tar.gz   edgekd.text.bundle (package verify reruns it)
```

How many sentences, epochs and which loss come from the task's :class:`edgekd.text.task.TextRecipe`. Stage keys
hold the same things as on the image path (settings, upstream run tokens, profile, edgekd's code), so a second
build skips every stage, and a build with other epochs reuses the plan and the teacher's embeddings.
"""

from __future__ import annotations

import shutil
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.build.context import BuildContext
from edgekd.build.records import PlanRecord
from edgekd.build.stages import Stages
from edgekd.build.text_records import TextDistillRecord, TextExportRecord, TextTeacherRecord, TextVerifyRecord
from edgekd.errors import EdgekdError
from edgekd.io import sha256_file, write_json
from edgekd.text.footprint import on_device
from edgekd.verify.records import Gate

if TYPE_CHECKING:
    from edgekd.build.text_report import TextReport
    from edgekd.data.core import TaskSpec
    from edgekd.planner import Plan
    from edgekd.text.distill import TextData
    from edgekd.text.task import TextRecipe

LISTED = 10


# ------------------------------------------------------------------ data

@cache
def _corpus(path: str | None = None, sha256: str | None = None) -> Any:
    """The built-in corpus, or the user's sentences (``--data my.txt`` / ``.npz``; ``sha256`` keys the memo)."""
    from edgekd.text.corpus import corpus_from_texts, load_corpus, read_sentence_file

    return load_corpus() if path is None else corpus_from_texts(read_sentence_file(path), Path(path).name)


def user_text(ctx: BuildContext) -> str | None:
    """The user's sentence file of a text build (``--data``), or None for the task's built-in corpus."""
    return ctx.opts.data_dir


def text_options(task: str, data: str | None, data_dir: str | None) -> tuple[str, str | None]:
    """(task, data_dir) of ``edgekd build``: ``--data my.txt`` with a text ``--task`` is that task's sentences
    (the text path reads them), with any other task the user's data set itself (the image path)."""
    from edgekd.data import get_spec

    if data is not None:
        try:
            if is_text(get_spec(task, None)):
                return task, data
        except EdgekdError:  # not a task name: --data names the user's data set, as before
            pass
    return data or task, data_dir


def _build_corpus(ctx: BuildContext) -> Any:
    """The corpus a build samples: the built-in one, or the user's file (memoised by its content hash)."""
    path = user_text(ctx)
    return _corpus() if path is None else _corpus(path, sha256_file(Path(path)))


def _sizes(ctx: BuildContext, recipe: TextRecipe) -> tuple[int, int]:
    """(training, evaluation) sentences: the recipe's, at most what the user's file holds."""
    n_train, n_eval = recipe.sizes(ctx.opts.fast)
    path = user_text(ctx)
    if path is None:
        return n_train, n_eval
    corpus = _build_corpus(ctx)
    held = int(corpus.held_out.sum())
    if held < 11 or held == len(corpus):
        raise EdgekdError(f"{path}: {len(corpus)} distinct sentences, {held} of them held out for evaluation (by "
                          "content hash, about 10 %); give at least about 150 sentences, one a line")
    return min(n_train, len(corpus) - held), min(n_eval, held)


def text_data(ctx: BuildContext, recipe: TextRecipe) -> TextData:
    """The build's training sample and evaluation pool (sizes from the recipe, ``--fast`` smaller; from the
    user's file when ``--data`` gave one)."""
    from edgekd.text.distill import TextData

    n_train, n_eval = _sizes(ctx, recipe)
    return TextData.sample(_build_corpus(ctx), n_train, n_eval, seed=ctx.opts.seed)


def _teacher_name(ctx: BuildContext, recipe: TextRecipe) -> str:
    """The text teacher: the recipe's (MiniLM); ``--teacher`` may name it and nothing else."""
    from edgekd.text import teacher as teacher_mod

    given = ctx.opts.teacher
    if given is not None and given.lower() not in (teacher_mod.NAME, teacher_mod.PACKAGE):
        raise EdgekdError(f"--teacher {given}: {ctx.spec.name} distils from the packaged sentence encoder; give "
                          f"--teacher {teacher_mod.NAME} (or leave --teacher out)")
    return recipe.teacher


def _refuse_image_options(ctx: BuildContext) -> None:
    """Options of the image path that a text build would otherwise ignore: one line, before any work."""
    o = ctx.opts
    given = [flag for flag, on in (("--qat", o.qat), ("--baseline", o.baseline), ("--labels", o.labels),
                                   ("--unlabelled", o.unlabelled), ("--search", o.search or o.searched),
                                   ("--student", o.student), ("--teacher-weights", o.teacher_weights)) if on]
    if given:
        raise EdgekdError(f"{', '.join(given)}: not available for the text task {ctx.spec.name} yet; drop "
                          f"{'it' if len(given) == 1 else 'them'}")


# ------------------------------------------------------------------ stages

def _fast_choice(p: Plan) -> Plan:
    """A smoke build trains the smallest fitting student (fewest MACs, then parameters) that uses the same
    tokenizer as the planner's choice, listed first."""
    from edgekd.planner import Plan

    best = p.student
    assert best is not None
    same = [c for c in p.candidates if c.fits and c.config.get("buckets") == best.config.get("buckets")]
    small = min(same, key=lambda c: (c.macs, c.params))
    return Plan(p.target, p.task, p.budgets, small, [small] + [c for c in p.candidates if c is not small], p.dtype)


def plan_stage(ctx: BuildContext, stages: Stages) -> PlanRecord:
    from edgekd.planner import explain_no_fit, plan, plot_plan

    opts, layout = ctx.opts, ctx.layout

    def do_plan() -> None:
        p = plan(ctx.target, ctx.spec, opts.families)
        if opts.fast and p.student is not None:
            p = _fast_choice(p)
        plot_plan(p, layout.plan_png)
        write_json(layout.plan_json, p.to_dict(runners_up=LISTED))

    stages.run("plan", {"target": ctx.profile, "data": ctx.data, "families": opts.families, "fast": opts.fast,
                        "listed": LISTED, "code": ctx.code}, [layout.plan_json], do_plan,
               roots=[layout.plan_json, layout.plan_png])
    record = PlanRecord.read(layout.plan_json)
    if not record.fits:
        raise EdgekdError(explain_no_fit(plan(ctx.target, ctx.spec, opts.families)))
    return record


def teacher_stage(ctx: BuildContext, stages: Stages, recipe: TextRecipe) -> TextTeacherRecord:
    """The teacher's embeddings of the build's sentences, through the on-disk cache (a second build, or a build
    for another target, reads them back), its cost and its probe accuracy."""
    from edgekd.text import teacher as teacher_mod

    name = _teacher_name(ctx, recipe)
    path = ctx.layout.teacher_dir / f"{name}.json"
    n_train, n_eval = _sizes(ctx, recipe)
    user = user_text(ctx)

    def embed() -> None:
        from edgekd.text.distill import teacher_embeddings
        from edgekd.text.metrics import probe_accuracy

        data = text_data(ctx, recipe)
        stats = teacher_mod.EmbedStats()
        start = time.perf_counter()
        t_train, t_eval = teacher_embeddings(data, stats)
        seconds = round(time.perf_counter() - start, 2)
        tr, te = data.train.labels >= 0, data.eval.labels >= 0
        probe = (probe_accuracy(t_train[tr], data.train.labels[tr], t_eval[te], data.eval.labels[te])
                 if len(set(data.train.labels[tr].tolist())) >= 2 and te.any() else None)
        teacher = teacher_mod.get_teacher()
        write_json(path, TextTeacherRecord(
            name, teacher_mod.teacher_key(), teacher.params, teacher.macs(ctx.spec.input_shape[0]),
            ctx.spec.input_shape[0], probe, {"train": len(data.train), "eval": len(data.eval),
                                             "probe_train": int(tr.sum()), "probe_test": int(te.sum())},
            stats.to_dict(), seconds).to_json())

    stages.run("teacher", {"teacher": teacher_mod.teacher_key(), "train": n_train, "eval": n_eval,
                           "seed": ctx.opts.seed, "data": ctx.data, "code": ctx.code,
                           "sentences": sha256_file(Path(user)) if user else None}, [path], embed, roots=[path])
    return TextTeacherRecord.read(path)


def _schedule(ctx: BuildContext, recipe: TextRecipe, config: Any, epochs: int | None) -> tuple[Any, str]:
    """The training config and init of a student: the least-squares start toward the teacher's per-token prior
    where the student allows it."""
    from edgekd.text.train import TextTrainConfig

    p = config.params
    lstsq = config.family == "text_conv" and int(p["width"]) >= 2 * int(p["embed"])
    loss = recipe.loss if ctx.opts.loss == "kd" else ctx.opts.loss  # "kd" is the image default, not a choice
    cfg = TextTrainConfig(epochs=epochs or (recipe.fast_epochs if ctx.opts.fast else recipe.epochs),
                          batch_size=recipe.batch_size, lr=recipe.lr_lstsq if lstsq else recipe.lr_random, loss=loss,
                          seed=ctx.opts.seed)
    return cfg, "prior" if lstsq else "random"


def with_tokenizer(config: Any, recipe: TextRecipe) -> Any:
    """The planner's config with the recipe's tokenizer for a bucketed table (the planner costs the table by its
    rows; which words map to which row is the recipe's choice)."""
    from edgekd.students import StudentConfig

    if config.params.get("buckets") is None or config.params.get("tokenizer"):
        return config
    return StudentConfig(config.family, {**config.params, "tokenizer": recipe.bucket_tokenizer})


#: The student's own frequent-words list (a build on the user's sentences), beside student.pt.
WORD_LIST = "word_list.json"


def user_word_list(ctx: BuildContext, recipe: TextRecipe, config: Any) -> tuple[list[str], str] | None:
    """A frequent-words student built on the user's sentences (``--data``) lists their own most frequent words
    (:func:`edgekd.text.tokenize.corpus_frequent_words` over the build's training sentences: deterministic for the
    file and seed); None, with a warning saying why, where the packaged English list is kept instead (the
    built-in corpus, another tokenizer, or too few words that occur at least twice)."""
    from edgekd.logs import log
    from edgekd.text.tokenize import MIN_USER_WORDS, corpus_frequent_words

    path = user_text(ctx)
    if path is None or config.params.get("tokenizer") != "frequent":
        return None
    buckets, max_len = int(config.params["buckets"]), int(ctx.spec.input_shape[0])
    train = text_data(ctx, recipe).train.texts
    words = corpus_frequent_words(train, buckets - 2, max_len)
    name = Path(path).name
    if len(words) < MIN_USER_WORDS:
        log.warning("%s: only %d words occur at least twice in its %d training sentences (a word list of its own "
                    "needs %d); the frequent-words tokenizer keeps the built-in English list "
                    "(edgekd/text/frequent_words.txt)", name, len(words), len(train), MIN_USER_WORDS)
        return None
    return words, (f"the {len(words):,} most frequent words of {name} (sha256 {sha256_file(Path(path))[:12]}), "
                   f"{len(train):,} training sentences, each word at least twice")


def student_words(ctx: BuildContext, model: Any) -> tuple[list[str] | None, str]:
    """The word list a student was trained with when it has its own (written by the distill stage), else None."""
    import json

    if not model.tokenizer.get("words"):
        return None, ""
    path = ctx.layout.student_dir / WORD_LIST
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return [str(w) for w in d["words"]], str(d["words_from"])
    except (OSError, ValueError, KeyError, TypeError):
        raise EdgekdError(f"{path} is missing or damaged; rebuild (the student names its own word list)") from None


def distill_stage(ctx: BuildContext, stages: Stages, plan: PlanRecord, teacher: TextTeacherRecord,
                  recipe: TextRecipe, epochs: int | None) -> TextDistillRecord:
    from edgekd.io import sha256_bytes
    from edgekd.students import StudentConfig
    from edgekd.text.distill import distil_text, save_text_student

    layout = ctx.layout
    chosen = plan.student
    assert chosen is not None
    config = with_tokenizer(chosen.student, recipe)
    own = user_word_list(ctx, recipe, config)
    words, words_from = own if own else (None, "")
    if words:
        config = StudentConfig(config.family, {**config.params,
                                               "words": sha256_bytes(("\n".join(words) + "\n").encode())})
    cfg, init = _schedule(ctx, recipe, config, epochs)

    def train() -> None:
        model, run = distil_text(config, text_data(ctx, recipe), cfg, ctx.spec.input_shape[0], teacher.macs,
                                 teacher.probe_accuracy, init, words, words_from)
        if words:
            write_json(layout.student_dir / WORD_LIST, {"words_from": words_from, "words": words})
        save_text_student(model, config, layout.student_file)
        write_json(layout.distill_json, run.to_dict() | {"teacher": teacher.to_json()})

    outputs = [layout.student_file, layout.distill_json] + ([layout.student_dir / WORD_LIST] if words else [])
    stages.run("distill", ctx.common_key | {"student": config.to_dict(), "train": cfg.to_dict(), "init": init,
                                            "recipe": recipe.to_dict(), "fast": ctx.opts.fast}
               | stages.upstream_key("distill"), outputs, train, roots=[layout.student_dir])
    return TextDistillRecord.read(layout.distill_json)


def _ships_c(ctx: BuildContext, model: Any) -> bool:
    """Generated C (model, tokenizer, table) for a microcontroller that runs edgekd's C, when the student's
    tokenizer is a microcontroller one (hashed or frequent words; WordPiece does not fit a microcontroller)."""
    return ctx.target.is_mcu and "c" in ctx.target.formats and model.tokenizer["kind"] in ("hashed", "frequent")


def export_stage(ctx: BuildContext, stages: Stages, recipe: TextRecipe) -> TextExportRecord:
    """The int8 models, table, tokenizer and vectors, written into a fresh folder that replaces artifacts/ only
    when complete (no half-written build folder)."""
    layout = ctx.layout

    def export() -> None:
        from edgekd.students.store import load_student
        from edgekd.text.distill import tokenizer_for
        from edgekd.text.export import export_text_student

        model, _ = load_student(layout.student_file)
        tok = tokenizer_for(model, *student_words(ctx, model))  # type: ignore[arg-type]
        data = text_data(ctx, recipe)
        partial = layout.artifacts.with_name(layout.artifacts.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        arts = export_text_student(model, tok, data.train.texts[: recipe.calib],  # type: ignore[arg-type]
                                   data.eval.texts[: recipe.check], partial, pte="pte" in ctx.target.formats,
                                   tflm=ctx.target.is_mcu)
        extra: dict[str, Any] = {"target": ctx.target.name, "task": ctx.spec.name, "c": None}
        if _ships_c(ctx, model):
            from edgekd.text.ccode import export_c

            extra["c"] = export_c(partial, data.eval.texts[: recipe.check], tok)
        write_json(partial / layout.export_json.name, arts.to_dict() | extra)
        shutil.rmtree(layout.artifacts, ignore_errors=True)
        partial.rename(layout.artifacts)

    stages.run("export", ctx.common_key | {"student": sha256_file(layout.student_file)}
               | stages.upstream_key("export"), [layout.export_json], export, roots=[layout.artifacts])
    return TextExportRecord.read(layout.artifacts, layout.export_json)


def _ram_need(ctx: BuildContext, report: Any) -> tuple[int, str]:
    """RAM the model needs besides the runtime: the minimum TFLite Micro arena on a microcontroller (measured),
    else the cost model's arena plus the table and model bytes held in memory."""
    if ctx.target.is_mcu:
        from edgekd.verify.tflm import min_arena

        arena = min_arena(ctx.layout.artifacts / "student.tflite").min_arena_bytes
        return arena, "TFLite Micro minimum arena (measured)"
    return report.arena_bytes, "the cost model's activation arena (estimated)"


def _flashed_bytes(ctx: BuildContext, export: TextExportRecord, tok: Any) -> tuple[int, str]:
    """Bytes the device holds for the model, table and tokenizer, and what the tokenizer part is. A
    microcontroller keeps a frequent-words tokenizer's list as its C form (4-byte hashes), not as vocab.txt."""
    words = len(getattr(tok, "words", None) or ())
    files = {name: int(f["bytes"]) for name, f in export.files.items()}
    held = on_device(files, words, ctx.target.is_mcu)
    if "word_hashes" not in held:
        return export.shipped_bytes, "tokenizer files"
    return (export.shipped_bytes - sum(files.values()) + sum(held.values()),
            f"tokenizer.json + the {words:,} listed words as 4-byte hashes (the C tokenizer's table; vocab.txt "
            "stays on the host)")


def verify_stage(ctx: BuildContext, stages: Stages, recipe: TextRecipe, export: TextExportRecord,
                 distill: TextDistillRecord, teacher: TextTeacherRecord) -> TextVerifyRecord:
    """Score the int8 ``.tflite`` on the evaluation pool exactly as the float student was (teacher embeddings
    from the cache), and gate the build: flash (every file the device holds + the runtime), RAM, latency (the
    cost model's estimate), fidelity (int8 mean cosine at most ``--max-drop`` / 100 below the float student's).
    With an emulator the artifacts are also counted on the target's emulated core (:mod:`edgekd.text.latency`:
    the ``.tflite`` under qemu-aarch64 on Cortex-A targets, the generated C under unicorn's cycle model on a
    microcontroller): the latency gate takes that counted figure, and on Cortex-A the emulator gate requires the
    emulated outputs to equal the host's."""
    layout, target = ctx.layout, ctx.target
    kernels = "reference" if target.is_mcu else "xnnpack"

    def verify() -> None:
        import numpy as np

        from edgekd import costmodel
        from edgekd.students.store import load_student
        from edgekd.text import teacher as teacher_mod
        from edgekd.text.distill import score, tokenizer_for
        from edgekd.text.export import _run_litert_int8, int8_rows

        model, _ = load_student(layout.student_file)
        tok = tokenizer_for(model, *student_words(ctx, model))  # type: ignore[arg-type]
        data = text_data(ctx, recipe)
        t_train, t_eval = teacher_mod.embed(data.train.texts), teacher_mod.embed(data.eval.texts)
        rows = export.files["token_table.bin"]["bytes"] // int(model.embed.embedding_dim)  # type: ignore[union-attr]
        table = np.frombuffer((layout.artifacts / "token_table.bin").read_bytes(), np.int8).reshape(rows, -1)
        outs = []
        for part in (data.train, data.eval):
            raw = _run_litert_int8(layout.artifacts / "student.tflite", int8_rows(table, tok.encode(part.texts)),
                                   reference=kernels == "reference")
            outs.append((raw.astype(np.float32) - export.io["output_zero_point"]) * export.io["output_scale"])
        m = distill.metrics
        metrics = score(outs[0], outs[1], t_train, t_eval, data, m["student_macs"], m["student_params"],
                        m["teacher_macs"], m["tokens"], teacher.probe_accuracy)
        report = costmodel.analyze(model, tuple(model.input_shape), "int8", channels_last_input=True)
        est = costmodel.estimate_latency(report, target)
        counted = None
        if ctx.emulator is not None:
            from edgekd.text.latency import count_text_artifacts

            counted = count_text_artifacts(layout.artifacts, target, data.eval.texts, _ships_c(ctx, model))
        ram, how = _ram_need(ctx, report)
        shipped, flashed = _flashed_bytes(ctx, export, tok)
        b = target.budgets
        flash_total, ram_total = shipped + target.runtime_flash_bytes, ram + target.runtime_ram_bytes
        drop = m["mean_cosine"] - metrics.mean_cosine
        limit = ctx.opts.max_drop_pp / 100
        gates = {
            "flash": Gate(flash_total <= b.flash_bytes, flash_total, b.flash_bytes, "bytes", "measured",
                          f"student.tflite + token_table.bin + {flashed} {shipped:,} B + runtime "
                          f"{target.runtime_flash_bytes:,} B = {flash_total:,} of {b.flash_bytes:,} B"),
            "ram": Gate(ram_total <= b.ram_bytes, ram_total, b.ram_bytes, "bytes",
                        "measured" if target.is_mcu else "estimated",
                        f"{how} {ram:,} B + runtime {target.runtime_ram_bytes:,} B = {ram_total:,} of "
                        f"{b.ram_bytes:,} B"),
            "latency": Gate(est.ms <= b.latency_ms, est.ms, b.latency_ms, "ms", est.kind,
                            f"{est.ms:.3f} ms per {m['tokens']}-token sentence of {b.latency_ms:g} ms; {est.method}")
            if counted is None else
            Gate(counted["ms"] <= b.latency_ms, counted["ms"], b.latency_ms, "ms", "counted",
                 f"{counted['ms']:.3f} ms per {m['tokens']}-token sentence of {b.latency_ms:g} ms (one thread); "
                 f"{counted['method']}"),
            "fidelity": Gate(drop <= limit, round(drop, 6), limit, "cosine", "measured",
                             f"int8 mean cosine to the teacher {metrics.mean_cosine:.4f} vs float "
                             f"{m['mean_cosine']:.4f}: {drop:+.4f} drop, at most {limit:g}"),
        }
        if counted is not None and counted["max_step_diff_vs_host"] is not None:
            diff = counted["max_step_diff_vs_host"]
            gates["emulator"] = Gate(diff == 0, diff, 0, "int8 steps", "measured",
                                     f"{counted['runtime']} under {counted['emulator']} vs the host on "
                                     f"{counted['sentences']} held-out sentences: {diff} steps apart")
        write_json(layout.verify_json, {
            "kernels": kernels, "metrics_int8": metrics.to_dict(),
            "sizes": {"shipped_bytes": export.shipped_bytes, "flashed_bytes": shipped,
                      "model_bytes": export.files["student.tflite"]["bytes"],
                      "token_table_bytes": export.files["token_table.bin"]["bytes"], "ram_bytes": ram,
                      "ram_method": how, "latency_ms": est.ms, "latency_kind": est.kind,
                      "latency_method": est.method, "latency_counted": counted},
            "budgets": b.to_dict(), "gates": {k: g.to_dict() for k, g in gates.items()}
            | ({} if "emulator" in gates else {"emulator": None}),
            "passed": all(g.passed for g in gates.values())})

    stages.run("verify", ctx.common_key | {"export": sha256_file(layout.export_json), "kernels": kernels,
                                           "max_drop": ctx.opts.max_drop_pp, "emulator": ctx.emulator}
               | stages.upstream_key("verify"),
               [layout.verify_json], verify, roots=[layout.verify_json])
    return TextVerifyRecord.read(layout.verify_json)


def package_stage(ctx: BuildContext, stages: Stages, teacher: TextTeacherRecord, distill: TextDistillRecord,
                  verify: TextVerifyRecord) -> Path:
    """``edgekd-<target>-<task>.tar.gz`` (signed with ``--sign``): nothing in it is measured by a clock."""
    from edgekd.distill import versions
    from edgekd.text.bundle import package_text

    opts, layout = ctx.opts, ctx.layout
    bundle = layout.bundle(ctx.target.name, opts.data_label)
    m = distill.metrics
    sections = {"target": ctx.target.name, "task": ctx.spec.name,
                "teacher": {"name": teacher.name, "key": teacher.key, "params": teacher.params, "macs": teacher.macs,
                            "probe_accuracy": teacher.probe_accuracy},
                "student": {"family": distill.family, "config": distill.config, "params": m["student_params"],
                            "macs": m["student_macs"]},
                "metrics": {"float": m, "int8": verify.metrics_int8, "int8_kernels": verify.kernels},
                "runtimes": list(ctx.target.runtimes), "budgets": verify.budgets, "gates": verify.gates,
                "passed": verify.passed, "versions": versions()}
    stages.run("package", ctx.common_key | {"verify": sha256_file(layout.verify_json),
                                            "sign": sha256_file(opts.sign) if opts.sign else None}
               | stages.upstream_key("package"), [bundle],
               lambda: package_text(layout.artifacts, bundle, sections, sign=opts.sign))
    return bundle


# ------------------------------------------------------------------ one target

def run_text_target(ctx: BuildContext, stages: Stages, started: float, epochs: int | None = None,
                    sentences: int | None = None) -> TextReport:
    """Every stage of a text task for one target; writes report.json and report.md. ``epochs``, ``sentences``:
    the user's epochs and training sentences (``limit=`` in the Python API; None: the recipe's)."""
    from dataclasses import replace

    from edgekd.build.text_report import TextReport
    from edgekd.text.task import text_recipe

    recipe = text_recipe(ctx.spec)
    _refuse_image_options(ctx)
    if sentences:
        recipe = replace(recipe, **{"fast_train" if ctx.opts.fast else "train": sentences})
    _teacher_name(ctx, recipe)  # a wrong --teacher is refused before any work
    plan = plan_stage(ctx, stages)
    teacher = teacher_stage(ctx, stages, recipe)
    dist = distill_stage(ctx, stages, plan, teacher, recipe, epochs)
    export = export_stage(ctx, stages, recipe)
    verify = verify_stage(ctx, stages, recipe, export, dist, teacher)
    bundle = package_stage(ctx, stages, teacher, dist, verify)
    report = TextReport.make(ctx, teacher, dist, export, verify, bundle, stages)
    report.timings_s["total"] = round(time.perf_counter() - started, 2)
    report.write(ctx.layout)
    return report


def is_text(spec: TaskSpec) -> bool:
    """Whether a task takes the text path (its spec's kind)."""
    return spec.kind == "text"
