"""Benchmark: what distillation buys on a real data set, per target, over several seeds.

For each target: the planned student trained without a teacher (labels only), with Hinton KD and with feature
distillation, same epochs and recipe, N seeds; float accuracy and int8 accuracy of the real fully-integer
.tflite on LiteRT's reference kernels (TFLite Micro's arithmetic, to within one output step), plus the
TFLite Micro arena.

    .venv/bin/python scripts/bench_distill.py --task fashion-mnist --targets nrf52840-dk,raspberry-pi-4b \\
        --seeds 0,1,2 --epochs 15 --teacher runs/teachers/fashion-mnist.pt

Label-scarce mode (``--labels 1000``): the student keeps a stratified 1,000 of the training labels (labels seed 0,
the same subset for every seed) and the rest of the training split as unlabelled samples, distilled from a teacher
trained on every label; the no-teacher student ("ce") trains on the same 1,000 labels for as many optimizer steps
as the distilled one (edgekd.distill.twin_epochs), not merely as many epochs, which would give it 2% of the steps:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_distill.py --task fashion-mnist --targets nrf52840-dk \
        --labels 1000 --losses ce,kd --seeds 0,1,2 --epochs 3 --teacher runs/teachers/fashion-mnist-ls0-e3.pt \
        --out docs/bench_distill_labels1000.json --section distill-labels-1000

Function matching (issue 15): a loss written ``kd+mixup`` or ``kd+cutmix`` distils with ``--mix`` (the student
and the teacher see the same mixed images, edgekd.distill.mix); ``--losses ce,kd,kd+mixup,kd+cutmix`` compares them.
``--reuse-ce FILE`` takes the no-teacher runs of an earlier result file of the same task, labels and optimizer
steps instead of training them again (recorded per run as ``reused_from``).

Long schedules (issue 15): ``--views K`` has the runs with a teacher cycle K fixed augmentation draws, so the
teacher's outputs are computed (and cached) K times, not once per epoch; the no-teacher runs draw anew each epoch.
``--loss-arg temperature=2`` (repeatable) passes loss parameters to the runs with a teacher.

Teachers from other frameworks (issue 15): ``kd@onnx`` / ``kd@tflite`` distil from the ``--teacher`` .pt exported
to ONNX / to a float .tflite (written next to it once, ``export_teacher``), paired with the ``kd`` row.

``--twin equal-epochs`` trains the no-teacher runs for ``--epochs`` over their labels (the issue's literal "equal
epochs") instead of the distilled runs' optimizer steps; ``--student dscnn:depth=6,width=48`` pins the student
(rows stay comparable when the planner's pick changes).

Training on another machine (issue 15): ``--no-int8`` trains and records float results only (a GPU machine
without LiteRT; each row keeps its ``run_dir`` and the device it trained on); ``--measure-int8`` then exports each
such run's ``student.pt`` here and measures int8 on LiteRT's reference kernels and the TFLite Micro arena, the same
``measure_int8`` that ``distill`` runs. Rows of several such files are joined with ``--merge``.

Which epoch to ship (issue 15): ``--final-epochs RUN_DIR...`` measures finished runs' final epoch (checkpoint.pt)
against the epoch they shipped, float and int8, into ``--out``.

Writes docs/bench_distill.json (every run) and the table between the markers in docs/benchmarks.md.
Runs are resumable: a finished (target, loss, seed) already in the JSON is not run again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdocs import replace_section  # noqa: E402

from edgekd.data import load_task  # noqa: E402
from edgekd.data.unlabelled import prepare  # noqa: E402
from edgekd.distill import DATA_SEED, distill, train_teacher, twin_epochs  # noqa: E402
from edgekd.distill.losses import parse_loss_args  # noqa: E402
from edgekd.distill.train import TrainConfig  # noqa: E402
from edgekd.logs import setup  # noqa: E402

ORDER = ["ce", "kd", "kd@onnx", "kd@tflite", "kd+mixup", "kd+cutmix", "dkd", "dist", "feature"]
FOREIGN = ("onnx", "tflite")


def loss_and_mix(name: str) -> tuple[str, str]:
    """``kd+mixup`` -> (``kd``, ``mixup``); ``kd`` -> (``kd``, ``none``); ``kd@onnx`` -> (``kd``, ``none``)."""
    loss, _, mix = name.partition("@")[0].partition("+")
    return loss, mix or "none"


def teacher_format(name: str) -> str | None:
    """``kd@onnx`` -> ``onnx`` (the .pt teacher exported to ONNX); ``kd`` -> None (the .pt teacher itself)."""
    return name.partition("@")[2] or None


def export_teacher(pt: Path, fmt: str, task: str) -> Path:
    """The edgekd teacher ``pt`` written next to it as ``.onnx`` (torch.onnx, dynamic batch, NCHW) or as a float
    ``.tflite`` (LiteRT, batch 1, NHWC: the layout a TensorFlow model has), once; the teacher the foreign-teacher
    rows distil from. Float, not int8: the equivalent of the .pt teacher is the same function, and an int8 file
    is another one (its logits move by up to a quantization step)."""
    import torch

    from edgekd.distill.teachers import load_teacher
    from edgekd.export.tflite import export_tflite_float
    from edgekd.io import atomic_path

    path = pt.with_suffix(f".{fmt}")
    if path.is_file():
        return path
    spec = load_task(task, seed=DATA_SEED, limit=64).spec
    module = load_teacher(str(pt), spec).module.eval()
    if fmt == "onnx":
        with atomic_path(path) as tmp:
            torch.onnx.export(module, (torch.zeros(2, *spec.input_shape),), str(tmp), dynamo=False,
                              input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}})
    else:
        export_tflite_float(module, tuple(spec.input_shape), path)
    return path


def trained_on() -> str:
    """Where this process trains: the GPU's name, or "cpu" (float results differ between them bit for bit)."""
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def measure_rows(result: dict, limit: int | None) -> int:
    """int8 for the rows trained with ``--no-int8`` (elsewhere): each run's student.pt exported to a fully-integer
    .tflite here, run on LiteRT's reference kernels over the test set, and its TFLite Micro arena measured, by
    edgekd.distill.check.measure_int8 as ``distill`` does. Returns how many rows were measured."""
    from edgekd.distill.check import measure_int8
    from edgekd.students.store import load_student
    from edgekd.targets import load_target

    splits = None
    done = 0
    for target, runs in result["runs"].items():
        for r in runs:
            if r.get("accuracy_int8") is not None:
                continue
            if splits is None:
                splits = prepare(load_task(result["task"], seed=DATA_SEED, limit=limit), result.get("labels"))
            d = ROOT / r["run_dir"]
            model, _ = load_student(d)
            m = measure_int8(model, splits, d / "student_int8.tflite", load_target(target))
            r |= {"accuracy_int8": m["accuracy_int8"], "agreement": m["agreement_with_float"],
                  "arena_bytes": m["arena_bytes"], "tflite_bytes": m["tflite_bytes"], "fits": r["fits"] and m["fits"],
                  "int8_measured": "here, after training: " + m["runtime"]}
            done += 1
            print(f"{target} {r['loss']} seed {r['seed']}: int8 {m['accuracy_int8']:.4f} (measured here)", flush=True)
    return done


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(result: dict) -> str:
    rows = ["| target | student | loss | seeds | float acc (mean +- sd) | int8 acc (mean +- sd) | vs no teacher "
            "(int8, pp, per seed) | TFLM arena | .tflite | train s/run |", "|---|---|---|---|---|---|---|---|---|---|"]
    for target, runs in result["runs"].items():
        base = {r["seed"]: r["accuracy_int8"] for r in runs if r["loss"] == "ce"}
        for loss in result["losses"]:
            sel = [r for r in runs if r["loss"] == loss]
            if not sel:
                continue
            f_m, f_s = mean_std([r["accuracy_float"] for r in sel])
            q_m, q_s = mean_std([r["accuracy_int8"] for r in sel])
            # Paired: the mean of per-seed differences over the seeds both have (same labels, seed and data order).
            diffs = [100 * (r["accuracy_int8"] - base[r["seed"]]) for r in sel if r["seed"] in base]
            g_m, g_s = mean_std(diffs)
            spread = f" +- {g_s:.2f}" if len(diffs) > 1 else ""
            gain = "" if loss == "ce" or not diffs else f"{g_m:+.2f}{spread} ({len(diffs)} paired)"
            if teacher_format(loss):  # a foreign teacher: also paired against the .pt teacher's run
                pt = {r["seed"]: r["accuracy_int8"] for r in runs if r["loss"] == loss.partition("@")[0]}
                vs = [100 * (r["accuracy_int8"] - pt[r["seed"]]) for r in sel if r["seed"] in pt]
                if vs:
                    gain += f"{'; ' if gain else ''}vs .pt teacher {statistics.fmean(vs):+.2f} ({len(vs)} paired)"
            s = sel[0]
            config = ", ".join(f"{k}={v}" for k, v in s["config"].items() if v is not None)
            rows.append(f"| {target} | {s['family']}({config}) | {loss} | {len(sel)} | "
                        f"{100 * f_m:.2f} +- {100 * f_s:.2f} | {100 * q_m:.2f} +- {100 * q_s:.2f} | {gain} | "
                        f"{s['arena_bytes']:,} | "
                        f"{s['tflite_bytes']:,} | {statistics.fmean(r['train_seconds'] for r in sel):.0f} |")
    return "\n".join(rows)


def write_markdown(result: dict, section: str) -> None:
    t = result.get("teacher")
    arch = t["arch"] + (" " + ", ".join(f"{k} {v}" for k, v in t["params"].items()) if t and t.get("params") else "") \
        if t else ""
    about = (f"teacher {arch} ({t['param_count']:,} params, test accuracy {100 * t['test_accuracy']:.2f}%, "
             f"label smoothing {t.get('label_smoothing', 0.1)}, {t.get('epochs', '?')} epochs, trained in "
             f"{t['train_seconds']:.0f} s on {t.get('trained_on') or 'this 2-core machine'})" if t
             else "teacher not trained yet")
    labels = result.get("labels")
    scarce = (f" The student has {labels:,} labelled training samples and the other {result['unlabelled']:,} as "
              f"unlabelled (the teacher saw every label); the no-teacher student (ce) trains on the same "
              f"{labels:,} labels for as many optimizer steps ({result['ce_epochs']} epochs)."
              if labels and any(r["loss"] == "ce" for runs in result["runs"].values() for r in runs) else
              f" The student has {labels:,} labelled training samples and the other {result['unlabelled']:,} as "
              "unlabelled (the teacher saw every label)." if labels else "")
    if labels and result.get("twin") == "equal-epochs":
        scarce = scarce.replace("for as many optimizer steps", "for as many epochs (of its labelled samples only: "
                                "fewer optimizer steps than the distilled runs)")
    kd_epochs = result.get("distill_epochs") or result["epochs"]
    shorter = (f" Runs with a teacher were time-boxed to {kd_epochs} epochs ({kd_epochs}/{result['epochs']} of the "
               "no-teacher runs' optimizer steps: the comparison favours the no-teacher student)."
               if kd_epochs != result["epochs"] else "")
    reused = sorted({r["reused_from"] for runs in result["runs"].values() for r in runs if r.get("reused_from")})
    if reused:
        shorter += (f" The no-teacher runs were not rerun: they are those of {', '.join(reused)} (same student, "
                    "labels and optimizer steps).")
    if result.get("views"):
        shorter += (f" Runs with a teacher cycled {result['views']} fixed augmentation draws (`--views "
                    f"{result['views']}`: the teacher's outputs computed {result['views']} times, then cached); the "
                    "no-teacher runs drew anew each epoch.")
    if result.get("loss_args"):
        shorter += " Loss parameters of the runs with a teacher: " + ", ".join(
            f"{k}={v:g}" for k, v in result["loss_args"].items()) + "."
    if any("+" in loss for loss in result["losses"]):
        shorter += (" kd+mixup / kd+cutmix: function matching (`--mix`): each epoch half the training samples are "
                    "shown mixed with a random partner and learn the teacher's output on the mixed image (no label "
                    "term).")
    rules = {(r.get("epoch_selection") or {}).get("rule") for runs in result["runs"].values() for r in runs}
    rules.discard(None)
    if rules:
        shorter += f" Epoch shipped: {' / '.join(sorted(rules))} (edgekd.distill.train.selection)."
    devices = sorted({r["trained_on"] for runs in result["runs"].values() for r in runs
                      if r.get("trained_on", "cpu") != "cpu"})
    if devices:
        shorter += (f" Students trained on {', '.join(d.removeprefix('cuda: ') for d in devices)} (PyTorch, CUDA; "
                    "float results differ from CPU runs bit for bit); their int8 files were exported and measured "
                    "on this machine.")
    foreign = sorted({r["teacher"]["source"] for runs in result["runs"].values() for r in runs
                      if (r.get("teacher") or {}).get("source") in FOREIGN})
    if foreign:
        shorter += (" kd@onnx / kd@tflite: the same .pt teacher exported to ONNX (run by ONNX Runtime) / to a float "
                    ".tflite (NHWC, run by LiteRT); the last column also pairs them with the .pt teacher's run.")
    body = (f"Task {result['task']}, {result['epochs']} epochs per run, {about}.{scarce}{shorter} Accuracies are "
            "on the full test set; int8 is the "
            "fully-integer .tflite on LiteRT's reference kernels (TFLite Micro's arithmetic, to within one output "
            "step), arena is the minimum TFLite Micro accepted (host, measured).\n\n" + table(result))
    replace_section(section, body)


def final_epochs(dirs: list[Path], out: Path) -> dict:
    """Which epoch to ship, measured on finished runs: the test accuracy (float, and int8 on LiteRT's reference
    kernels) of each run's final epoch (its checkpoint.pt) next to the epoch it shipped (best validation).
    Writes ``out`` and returns it; the figures behind edgekd.distill.train.selection."""
    import torch

    from edgekd.distill.check import int8_accuracy
    from edgekd.distill.train import accuracy, predict
    from edgekd.students import StudentConfig, build_student, model_input_shape

    result: dict = {"runs": {}}
    splits_for: dict = {}
    for d in dirs:
        dj = json.loads((d / "distill.json").read_text())
        labels = (dj.get("unlabelled") or {}).get("labels_kept")
        key = (dj["task"], labels)
        if key not in splits_for:
            splits_for[key] = prepare(load_task(dj["task"], seed=DATA_SEED), labels)
        splits = splits_for[key]
        model = build_student(StudentConfig(dj["student"]["family"], dj["student"]["config"]),
                              splits.spec.input_shape, splits.spec.num_classes)
        model.load_state_dict(torch.load(d / "checkpoint.pt", weights_only=True)["model"])
        history = dj["training"]["history"]
        best = dj["training"]["best_epoch"]
        row = {"loss": dj["training"]["loss"], "loss_params": dj["training"].get("loss_params"),
               "seed": dj["train_config"]["seed"], "epochs": len(history), "val_samples": dj["data"]["val"],
               "best_epoch": best, "val_best": history[best - 1]["val_accuracy"],
               "val_final": history[-1]["val_accuracy"], "test_float_best": dj["student"]["accuracy_float"],
               "test_int8_best": dj["measured"]["accuracy_int8"],
               "test_float_final": accuracy(predict(model, splits.x_test, model_input_shape(model)), splits.y_test),
               "test_int8_final": int8_accuracy(model, splits, d / "final_epoch_int8.tflite")}
        result["runs"][str(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d)] = row
        print(d, {k: row[k] for k in ("best_epoch", "epochs", "test_int8_best", "test_int8_final")}, flush=True)
    gains = [r["test_int8_final"] - r["test_int8_best"] for r in result["runs"].values()]
    result["final_minus_best_int8_pp"] = {"mean": 100 * statistics.fmean(gains), "min": 100 * min(gains),
                                          "max": 100 * max(gains), "runs": len(gains),
                                          "final_better": sum(g > 0 for g in gains), "same_epoch_or_tie":
                                          sum(g == 0 for g in gains)}
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="fashion-mnist")
    ap.add_argument("--targets", default="nrf52840-dk,raspberry-pi-4b")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--losses", default="ce,kd,feature")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--teacher", default=None, help="teacher file; trained (and timed) when missing")
    ap.add_argument("--family", action="append", help="restrict student families")
    ap.add_argument("--limit", type=int, default=None, help="training subset (smoke runs only)")
    ap.add_argument("--distill-epochs", type=int, default=None,
                    help="epochs of the runs with a teacher when fewer than --epochs (time-boxed runs; recorded)")
    ap.add_argument("--merge", action="append", default=[],
                    help="another result file of the same benchmark whose runs are added (parallel processes)")
    ap.add_argument("--report-only", action="store_true", help="write the JSON and the table from what is there")
    ap.add_argument("--labels", type=int, default=None,
                    help="label-scarce: keep this many training labels, the rest of the split is unlabelled")
    ap.add_argument("--reuse-ce", default=None,
                    help="earlier result file: reuse its no-teacher (ce) runs of the same task, labels and epochs")
    ap.add_argument("--views", type=int, default=0,
                    help="runs with a teacher cycle this many fixed augmentation draws (0: a fresh one each epoch)")
    ap.add_argument("--loss-arg", action="append", default=[], help="NAME=NUMBER for the loss of runs with a teacher")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench_distill.json"))
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench_distill"))
    ap.add_argument("--section", default="distill", help="marker name of the table in docs/benchmarks.md")
    ap.add_argument("--student", default=None, metavar="FAMILY:K=V,...",
                    help="train this student (e.g. dscnn:depth=6,width=48) instead of the planner's current pick, "
                    "so that rows stay comparable when the planner changes")
    ap.add_argument("--twin", choices=("equal-steps", "equal-epochs"), default="equal-steps",
                    help="with --labels: the no-teacher runs get the distilled runs' optimizer steps (default) or "
                    "their epochs over the labelled samples only (the issue's literal 'equal epochs')")
    ap.add_argument("--no-int8", action="store_true",
                    help="train and record float results only (a machine without LiteRT); --measure-int8 later")
    ap.add_argument("--measure-int8", action="store_true",
                    help="measure int8 here for the runs recorded with --no-int8 (their run_dir's student.pt)")
    ap.add_argument("--final-epochs", nargs="+", default=None, metavar="RUN_DIR",
                    help="measure finished runs' final epoch against the epoch they shipped, write --out, stop")
    args = ap.parse_args()
    setup()
    if args.final_epochs:
        final_epochs([Path(d).resolve() for d in args.final_epochs], Path(args.out))
        return
    out = Path(args.out)
    teacher_path = Path(args.teacher or ROOT / "runs" / "teachers" / f"{args.task}.pt")
    needs_teacher = any(loss != "ce" for loss in args.losses.split(","))
    for name in args.losses.split(","):
        if (loss_and_mix(name)[0] not in ORDER or loss_and_mix(name)[1] not in ("none", "mixup", "cutmix")
                or (teacher_format(name) or "onnx") not in FOREIGN):
            ap.error(f"--losses: unknown entry {name!r}; known: {', '.join(ORDER)}")
    if needs_teacher and not teacher_path.is_file():
        train_teacher(args.task, teacher_path)
    result = json.loads(out.read_text()) if out.is_file() else {}
    if (result.get("task") != args.task or result.get("epochs") != args.epochs or result.get("limit") != args.limit
            or result.get("labels") != args.labels):
        result = {"task": args.task, "epochs": args.epochs, "limit": args.limit, "labels": args.labels, "runs": {}}
    if teacher_path.is_file():
        teacher = json.loads(teacher_path.with_suffix(teacher_path.suffix + ".json").read_text())
        result["teacher"] = {k: teacher.get(k) for k in ("arch", "param_count", "test_accuracy", "train_seconds",
                                                         "label_smoothing", "params", "trained_on")}
        result["teacher"] |= {"epochs": teacher["train"]["epochs"], "path": str(teacher_path)}
    result["losses"] = sorted(set(result.get("losses", [])) | set(args.losses.split(",")),
                              key=lambda name: ORDER.index(name) if name in ORDER else len(ORDER))
    ce_epochs = args.epochs
    kd_epochs = args.distill_epochs or args.epochs
    result["distill_epochs"] = kd_epochs
    loss_args = parse_loss_args(args.loss_arg)
    result |= {"views": args.views, "loss_args": loss_args}
    for other in args.merge:
        more = json.loads(Path(other).read_text())
        for target, runs in more["runs"].items():
            mine = result["runs"].setdefault(target, [])
            mine += [r for r in runs if not any(m["loss"] == r["loss"] and m["seed"] == r["seed"] for m in mine)]
    if args.labels:
        splits = prepare(load_task(args.task, seed=DATA_SEED, limit=args.limit), args.labels)
        ce_epochs = twin_epochs(splits, TrainConfig(epochs=args.epochs)) if args.twin == "equal-steps" else args.epochs
        result |= {"twin": args.twin, "unlabelled": len(splits.x_unlabelled), "ce_epochs": ce_epochs,
                   "sizes": splits.summary()["sizes"]}
    if args.reuse_ce:
        old = json.loads(Path(args.reuse_ce).read_text())
        if (old.get("task"), old.get("labels"), old.get("limit")) != (args.task, args.labels, args.limit):
            ap.error(f"--reuse-ce {args.reuse_ce}: another task, --labels or --limit")
        for target, old_runs in old["runs"].items():
            mine = result["runs"].setdefault(target, [])
            mine += [r | {"reused_from": str(args.reuse_ce)} for r in old_runs if r["loss"] == "ce"
                     and r["epochs"] == ce_epochs and not any(m["loss"] == "ce" and m["seed"] == r["seed"]
                                                              for m in mine)]
            if any(r["loss"] == "ce" for r in mine) and "ce" not in result["losses"]:
                result["losses"].insert(0, "ce")
    for target in args.targets.split(","):
        planned = None
        if args.student:
            from edgekd.planner import evaluate
            from edgekd.students import StudentConfig
            from edgekd.targets import load_target

            family, _, rest = args.student.partition(":")
            config: dict = {"resolution": None}
            config |= {k: int(v) for k, v in (kv.split("=") for kv in rest.split(",") if kv)}
            planned = [evaluate(StudentConfig(family, config), load_target(target),
                                load_task(args.task, seed=DATA_SEED, limit=64).spec)]
        runs = result["runs"].setdefault(target, [])
        for loss in args.losses.split(","):  # loss-major: the no-teacher vs KD comparison completes first
            for seed in [int(s) for s in args.seeds.split(",")]:
                if args.report_only or any(r["loss"] == loss and r["seed"] == seed for r in runs):
                    continue
                started = time.perf_counter()
                tag = f"labels{args.labels}-" if args.labels else ""
                base_loss, mix = loss_and_mix(loss)
                fmt = teacher_format(loss)
                ref = export_teacher(teacher_path, fmt, args.task) if fmt else teacher_path
                d = distill(target, args.task, None if loss == "ce" else str(ref),
                            Path(args.runs_dir) / target / f"{tag}{loss}-seed{seed}", loss=base_loss, mix=mix,
                            epochs=ce_epochs if loss == "ce" else kd_epochs, seed=seed, limit=args.limit,
                            families=args.family, progress=sys.stderr.isatty(), labels=args.labels, planned=planned,
                            quick_check=False,  # the no-teacher runs of this benchmark are the bar
                            views=0 if loss == "ce" else args.views, loss_args=None if loss == "ce" else loss_args,
                            verify_int8=not args.no_int8)
                m = d["measured"] or dict.fromkeys(("accuracy_int8", "agreement_with_float", "arena_bytes",
                                                    "tflite_bytes"))
                run_dir = Path(args.runs_dir).resolve() / target / f"{tag}{loss}-seed{seed}"
                runs.append({"loss": loss, "seed": seed, "family": d["student"]["family"],
                             "config": d["student"]["config"], "params": d["student"]["params"],
                             "macs": d["student"]["macs"], "accuracy_float": d["student"]["accuracy_float"],
                             "accuracy_int8": m["accuracy_int8"], "agreement": m["agreement_with_float"],
                             "arena_bytes": m["arena_bytes"], "tflite_bytes": m["tflite_bytes"], "fits": d["fits"],
                             "train_seconds": d["timings_s"]["train"], "timings_s": d["timings_s"],
                             "teacher_cache": d["teacher_cache"], "epochs": d["train_config"]["epochs"],
                             "views": d["train_config"]["views"], "loss_params": d["training"].get("loss_params"),
                             "labelled": d["training"]["labelled_samples"],
                             "unlabelled_used": d["training"]["unlabelled_samples"],
                             "teacher_check": d["teacher"].get("check"),
                             "teacher": {k: d["teacher"].get(k) for k in ("source", "sha256", "test_accuracy")},
                             "epoch_selection": d["training"].get("selection"),
                             "run_dir": str(run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir),
                             "trained_on": trained_on(), "wall_seconds": round(time.perf_counter() - started)})
                print(f"{target} {loss} seed {seed}: float {d['student']['accuracy_float']:.4f} int8 "
                      f"{m['accuracy_int8']} ({runs[-1]['wall_seconds']} s)", flush=True)
                out.write_text(json.dumps(result, indent=2) + "\n")
                if not args.no_int8:
                    write_markdown(result, args.section)
    if args.measure_int8:
        measure_rows(result, args.limit)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if any(r.get("accuracy_int8") is None for runs in result["runs"].values() for r in runs):
        print("int8 not measured yet for some runs (--no-int8): run again with --measure-int8 on a machine with "
              "LiteRT; no table written", flush=True)
        return
    write_markdown(result, args.section)
    print(table(result))


if __name__ == "__main__":
    main()
