"""Release bundles: one reproducible ``.tar.gz`` per build that a device team can trust and re-check.

A bundle holds the artifacts, the C sources (the TFLite Micro model array and, on microcontrollers, edgekd's
generated inference code with one firmware ELF per board it was verified on), ``manifest.json`` (target,
versions, sha256 of every file, budgets, measured figures, input/output quantization and preprocessing),
``MODEL_CARD.md`` and verification vectors: test inputs with the outputs each artifact gave on the host (int8
``.tflite`` outputs come from LiteRT's reference kernels, bit-exact with TFLite Micro), as raw little-endian
binaries a device can read after flashing.

The same build gives a byte-identical bundle: sorted entries, fixed mtime, owner and mode, gzip without a
timestamp. :func:`verify_package` checks every checksum, refuses missing, extra or escaping entries, and reruns
the vectors on the host runtimes (and the generated C through the host gcc).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.export.core import Artifact, atomic_path

MANIFEST_FORMAT = "edgekd-package/1"
#: Tolerance of float outputs when vectors are rerun (XNNPACK on one host is deterministic; other hosts may
#: sum in another order).
FLOAT_TOLERANCE = 1e-4


# Generated-C build products that are not shipped: the host test binary and the linker map (absolute paths).
C_SKIP_SUFFIXES = (".map",)
C_SKIP_NAMES = ("host_runner",)


def _generated_c(build: Path, verify: dict[str, Any]) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The generated C sources and each board's ELF, from the emulated runs verify.json records as passed."""
    files: dict[str, bytes] = {}
    boards = []
    for r in verify.get("emulated", []):
        if r["format"] != "c" or not r["ok"]:
            continue
        src = build / r["details"]["source_dir"]
        for path in sorted(src.iterdir()):
            if path.is_file() and path.suffix not in C_SKIP_SUFFIXES and path.name not in C_SKIP_NAMES:
                files[f"{r['details']['source_dir']}/{path.name}"] = path.read_bytes()
        d = r["details"]
        boards.append({"elf": r["path"], "emulator": r["emulator"], "core": d.get("core"),
                       "bit_exact_vs_host": r["bit_exact_vs_host"], "flash_bytes": d.get("flash_bytes"),
                       "ram_bytes": d.get("ram_bytes"), "arena_bytes": d.get("arena_bytes"),
                       "stack_bytes": d.get("stack_bytes"), "tflm_arena_bytes": d.get("tflm_arena_bytes"),
                       "instructions": r["instructions"], "counted_ms": r["counted_ms"], "cpi": r["cpi"]})
    return files, boards


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _requantize(y: np.ndarray, q: dict[str, Any]) -> np.ndarray:
    """Dequantized int8 outputs back to the int8 values the model wrote (exact: they came from int8)."""
    return (np.round(y / q["scale"]).astype(np.int64) + q["zero_point"]).astype(np.int8)


def _vectors(build: Path, export: dict[str, Any], artifacts: list[Artifact], count: int) -> dict[str, bytes]:
    """Inputs and expected outputs per artifact, as raw binaries; described in the manifest."""
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED
    from edgekd.students import to_model_input
    from edgekd.verify import sample_indices
    from edgekd.verify.executorch import run_pte
    from edgekd.verify.litert import quantize, run_litert

    src = export["data_source"]
    splits = load_task(src["task"], src["data_dir"], seed=DATA_SEED, limit=src["limit"])
    idx = sample_indices(len(splits.y_test), count)
    x = to_model_input(splits.x_test[idx], tuple(export["input_shape"])).numpy().astype("<f4")
    files = {"vectors/input_f32.bin": x.tobytes(), "vectors/labels_u8.bin": splits.y_test[idx].astype("u1").tobytes()}
    for a in artifacts:
        path = build / a.path
        stem = Path(a.path).stem
        if a.format == "tflite" and a.precision == "int8":
            q_in, q_out = a.details["input"], a.details["output"]
            layout = np.transpose(x, (0, 2, 3, 1)) if a.details["channels_last"] and x.ndim == 4 else x
            files["vectors/input_int8.bin"] = quantize(layout, q_in["scale"], q_in["zero_point"], np.int8).tobytes()
            y = run_litert(path, x, a.details["channels_last"], reference=True)
            files[f"vectors/expected_{stem}_int8.bin"] = _requantize(y, q_out).tobytes()
        elif a.format == "tflite":
            files[f"vectors/expected_{stem}_f32.bin"] = run_litert(path, x, a.details["channels_last"],
                                                                   reference=True).astype("<f4").tobytes()
        elif a.format == "pte":
            files[f"vectors/expected_{stem}_f32.bin"] = run_pte(path, x).astype("<f4").tobytes()
    return files


def _model_card(manifest: dict[str, Any]) -> str:
    s, v = manifest["student"], manifest["measured"]
    lines = [f"# {manifest['name']}", "",
             f"A {s['family']} student ({', '.join(f'{k}={x}' for k, x in s['config'].items() if x is not None)}) "
             f"for **{manifest['target']}** on the task **{manifest['task']}**, built by edgekd "
             f"{manifest['versions'].get('edgekd', '?')}.", "",
             "## Intended use",
             f"Classifying inputs like the `{manifest['task']}` test set on {manifest['target']}. The accuracies below "
             "are on that test set; inputs from another sensor or distribution need their own evaluation "
             "(and usually their own calibration set).", "",
             "## Measured on the host runtimes", "",
             "| artifact | runtime | accuracy | agreement with float | host latency (median, x86_64) |",
             "|---|---|---|---|---|",
             f"| float student | PyTorch | {100 * v['float_accuracy']:.2f}% | | |"]
    for r in v["runs"]:
        lines.append(f"| {r['artifact']} | {r['runtime']} | {100 * r['accuracy']:.2f}% | "
                     f"{100 * r['agreement_with_float']:.2f}% | {r['latency_ms']:.3f} ms |")
    lines += ["", "## Budgets and gates", "", "| gate | passed | detail |", "|---|---|---|"]
    for name, g in v["gates"].items():
        if g:
            lines.append(f"| {name} | {g['passed']} | {g['detail']} ({g['kind']}) |")
    p = manifest["preprocessing"]
    lines += ["", "## Input and output", "",
              f"- Input layout: {p['layout']}, shape {p['input_shape']}; normalise each channel as "
              f"`{p['normalization'].get('formula', '')}` with mean {p['normalization'].get('mean')} and std "
              f"{p['normalization'].get('std')}.",
              "- int8 models: `q = round(x / scale) + zero_point`, outputs `y = scale * (q - zero_point)`; the "
              "parameters per artifact are in `manifest.json` (`artifacts[].quantization`).",
              "- Output: one logit per class, classes in this order: " + ", ".join(manifest["classes"]) + ".", ""]
    if "generated_c" in manifest:
        lines += ["## Generated C (no interpreter)", "",
                  "`c/` holds edgekd's generated C99 inference code (`model.h`: `edgekd_invoke(input, output)`, "
                  "same int8 tensors as the .tflite) and the firmware built and run on each emulated board:", "",
                  "| ELF | emulator | bit-exact vs host | flash | RAM (data+bss+stack) | arena (ours / TFLite Micro) "
                  "| latency (counted) |", "|---|---|---|---|---|---|---|"]
        for b in manifest["generated_c"]["boards"]:
            ms = f"{b['counted_ms']:.1f} ms" if b["counted_ms"] is not None else "not counted"
            lines.append(f"| {b['elf']} | {b['emulator']} | {b['bit_exact_vs_host']} | {b['flash_bytes']:,} B | "
                         f"{b['ram_bytes']:,} B | {b['arena_bytes']:,} / {b['tflm_arena_bytes']:,} B | {ms} |")
        lines.append("")
    lines += ["## Self-test after flashing",
              "`vectors/` holds test inputs and the outputs each artifact gave on the host (see `manifest.json` "
              "`vectors`). int8 `.tflite` outputs are from LiteRT's reference kernels, bit-exact with TFLite Micro: "
              "a device running TFLite Micro (or the generated C) must reproduce them byte for byte.", ""]
    return "\n".join(lines)


def _manifest(build: Path, export: dict[str, Any], verify: dict[str, Any], artifacts: list[Artifact],
              vectors: dict[str, bytes], count: int) -> dict[str, Any]:
    classes = verify["float"]["per_class_accuracy"].keys()
    arts = []
    for a in artifacts:
        entry = {"path": a.path, "format": a.format, "precision": a.precision, "runtime": a.runtime,
                 "bytes": a.bytes, "sha256": a.sha256}
        if "input" in a.details:
            entry["quantization"] = {"input": a.details["input"], "output": a.details["output"]}
        if a.format == "c":
            entry["header"] = a.details["header"]
            entry["tensor_arena_bytes"] = a.details["tensor_arena_bytes"]
        arts.append(entry)
    shape = export["input_shape"]
    layout = "NHWC" if export["channels_last"] and len(shape) == 3 else "NC..."
    return {
        "format": MANIFEST_FORMAT,
        "name": f"edgekd-{export['target']}-{export['task']}".replace(":", "-").replace("/", "-"),
        "target": export["target"],
        "task": export["task"],
        "classes": list(classes),
        "student": export["student"] | {"from": None},
        "artifacts": arts,
        "preprocessing": {"input_shape": shape, "layout": layout, "normalization": export["normalization"] or {}},
        "budgets": verify["budgets"],
        "measured": {
            "float_accuracy": verify["float"]["accuracy"],
            "test_samples": verify["samples"]["test"],
            "runs": [{"artifact": r["artifact"], "runtime": r["runtime"], "accuracy": r["accuracy"],
                      "agreement_with_float": r["agreement_with_float"], "max_abs_err": r["max_abs_err"],
                      "arena_bytes": r.get("arena_bytes"), "latency_ms": r["latency"]["median_ms"],
                      "latency_kind": "measured (host x86_64)"} for r in verify["runs"]],
            "gates": verify["gates"],
            "passed": verify["passed"],
        },
        "vectors": {"count": count, "input_f32": "vectors/input_f32.bin (float32 LE, channels-first)",
                    "labels": "vectors/labels_u8.bin",
                    "input_int8": "vectors/input_int8.bin (model layout)" if "vectors/input_int8.bin" in vectors
                    else None,
                    "expected": sorted(k for k in vectors if "/expected_" in k),
                    "float_tolerance": FLOAT_TOLERANCE},
        "versions": export["versions"],
    }


def _tar_bytes(prefix: str, files: dict[str, bytes]) -> bytes:
    """A gzip'd tar of ``files`` under ``prefix/``, byte-identical for identical content."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def package_build(build_dir: str | Path, out_file: str | Path, vectors: int = 16) -> dict[str, Any]:
    """Bundle the verified build in ``build_dir`` into ``out_file`` (.tar.gz); returns the manifest."""
    from edgekd.export import load_export

    build = Path(build_dir)
    export, artifacts = load_export(build)
    verify_path = build / "verify.json"
    if not verify_path.is_file():
        raise EdgekdError(f"{build}: no verify.json; run `edgekd verify --target {export['target']} {build}` first")
    verify = json.loads(verify_path.read_text())
    files: dict[str, bytes] = {}
    for a in artifacts:
        data = (build / a.path).read_bytes()
        if _sha(data) != a.sha256:
            raise EdgekdError(f"{build / a.path}: changed since export (sha256 differs); re-run `edgekd export`")
        files[a.path] = data
        if a.format == "c":
            files[a.details["header"]] = (build / a.details["header"]).read_bytes()
    c_files, boards = _generated_c(build, verify)
    files |= c_files
    vec = _vectors(build, export, artifacts, vectors)
    files |= vec
    manifest = _manifest(build, export, verify, artifacts, vec, int(len(vec["vectors/labels_u8.bin"])))
    if boards:
        manifest["generated_c"] = {
            "api": "model.h: int edgekd_invoke(const int8_t *input, int8_t *output); input/output quantization "
                   "macros; same int8 input and output as the .tflite",
            "sources": sorted(n for n in c_files if not n.endswith(".elf")), "boards": boards}
    manifest["files"] = {name: _sha(data) for name, data in sorted(files.items())}
    files["MODEL_CARD.md"] = _model_card(manifest).encode()
    manifest["files"]["MODEL_CARD.md"] = _sha(files["MODEL_CARD.md"])
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    out = Path(out_file)
    with atomic_path(out) as tmp:
        tmp.write_bytes(_tar_bytes(manifest["name"], files))
    return manifest


def _safe_members(tar: tarfile.TarFile) -> tuple[str, dict[str, bytes]]:
    """Read every member into memory, refusing links, devices, absolute paths and anything escaping one folder."""
    prefix = None
    files: dict[str, bytes] = {}
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or len(p.parts) < 2:
            raise EdgekdError(f"bundle entry {m.name!r} escapes the bundle folder; refusing it")
        if prefix is None:
            prefix = p.parts[0]
        if p.parts[0] != prefix:
            raise EdgekdError(f"bundle entry {m.name!r} is outside the bundle folder {prefix!r}; refusing it")
        if not m.isfile():
            raise EdgekdError(f"bundle entry {m.name!r} is not a regular file (link or device); refusing it")
        f = tar.extractfile(m)
        files[str(PurePosixPath(*p.parts[1:]))] = f.read() if f else b""
    if prefix is None:
        raise EdgekdError("bundle is empty")
    return prefix, files


def _tflm_check(path: Path, artifact: dict[str, Any], files: dict[str, bytes], want: np.ndarray) -> dict[str, Any]:
    """The int8 vectors through the TFLite Micro interpreter itself, as the device will run them."""
    from edgekd.verify.tflm import run_tflm

    shape = artifact["quantization"]["input"]["shape"][1:]
    xq = np.frombuffer(files["vectors/input_int8.bin"], np.int8).reshape(len(want), *shape)
    got = run_tflm(path, xq, 8 << 20).outputs.reshape(want.shape)
    diff = int(np.abs(got.astype(int) - want.astype(int)).max())
    return {"artifact": artifact["path"], "runtime": "tflm", "max_diff": diff, "unit": "int8 steps",
            "passed": diff == 0}


def _generated_c_check(manifest: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """The bundled C sources, compiled with the host gcc, must reproduce the int8 vectors byte for byte."""
    from edgekd.codegen import compile_host, run_host

    tfl = next(a for a in manifest["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8")
    want = np.frombuffer(files[f"vectors/expected_{Path(tfl['path']).stem}_int8.bin"], np.int8)
    n = manifest["vectors"]["count"]
    want = want.reshape(n, -1)
    xq = np.frombuffer(files["vectors/input_int8.bin"], np.int8).reshape(n, -1)
    with tempfile.TemporaryDirectory(prefix="edgekd-package-c-") as tmp:
        for name in manifest["generated_c"]["sources"]:
            (Path(tmp) / Path(name).name).write_bytes(files[name])
        got = run_host(compile_host(tmp), xq, want.shape[1])
    diff = int(np.abs(got.reshape(want.shape).astype(int) - want.astype(int)).max())
    return {"artifact": "c/ (generated C, host gcc)", "runtime": "edgekd-c", "max_diff": diff,
            "unit": "int8 steps", "passed": diff == 0}


def verify_package(bundle: str | Path, rerun: bool = True) -> dict[str, Any]:
    """Check a bundle: every checksum, no missing or extra files, and (``rerun``) the vectors on host runtimes."""
    from edgekd.verify.executorch import run_pte
    from edgekd.verify.litert import run_litert

    bundle = Path(bundle)
    if not bundle.is_file():
        raise EdgekdError(f"{bundle}: no such bundle file")
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            prefix, files = _safe_members(tar)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EdgekdError(f"{bundle}: not a readable .tar.gz bundle ({exc})") from None
    if "manifest.json" not in files:
        raise EdgekdError(f"{bundle}: no manifest.json in the bundle")
    manifest = json.loads(files["manifest.json"])
    if manifest.get("format") != MANIFEST_FORMAT:
        raise EdgekdError(f"{bundle}: manifest.json is not an edgekd package manifest")
    listed = manifest["files"]
    missing = sorted(set(listed) - set(files))
    extra = sorted(set(files) - set(listed) - {"manifest.json"})
    bad = sorted(name for name in set(listed) & set(files) if _sha(files[name]) != listed[name])
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + \
        ([f"not in the manifest: {', '.join(extra)}"] if extra else []) + \
        ([f"checksum mismatch: {', '.join(bad)}"] if bad else [])
    if problems:
        raise EdgekdError(f"{bundle}: " + "; ".join(problems))
    checks = []
    if rerun:
        vec = manifest["vectors"]
        n = vec["count"]
        shape = manifest["preprocessing"]["input_shape"]
        x = np.frombuffer(files["vectors/input_f32.bin"], dtype="<f4").reshape(n, *shape)
        with tempfile.TemporaryDirectory(prefix="edgekd-package-") as tmp:
            for a in manifest["artifacts"]:
                stem = Path(a["path"]).stem
                if a["format"] not in ("tflite", "pte"):
                    continue
                path = Path(tmp) / a["path"]
                path.write_bytes(files[a["path"]])
                if a["format"] == "tflite" and a["precision"] == "int8":
                    q = a["quantization"]["output"]
                    y = run_litert(path, x, manifest["preprocessing"]["layout"] == "NHWC", reference=True)
                    got = _requantize(y, q)
                    want = np.frombuffer(files[f"vectors/expected_{stem}_int8.bin"], np.int8).reshape(got.shape)
                    diff = int(np.abs(got.astype(int) - want.astype(int)).max())
                    checks.append({"artifact": a["path"], "runtime": "litert-reference", "max_diff": diff,
                                   "unit": "int8 steps", "passed": diff == 0})
                    checks.append(_tflm_check(path, a, files, want))
                else:
                    if a["format"] == "pte":
                        got = run_pte(path, x)
                    else:
                        got = run_litert(path, x, manifest["preprocessing"]["layout"] == "NHWC", reference=True)
                    want = np.frombuffer(files[f"vectors/expected_{stem}_f32.bin"], "<f4").reshape(got.shape)
                    diff = float(np.abs(got - want).max())
                    checks.append({"artifact": a["path"], "runtime": "executorch" if a["format"] == "pte" else
                                   "litert-reference", "max_diff": diff, "unit": "absolute",
                                   "passed": diff <= FLOAT_TOLERANCE})
        if "generated_c" in manifest:
            checks.append(_generated_c_check(manifest, files))
    passed = all(c["passed"] for c in checks)
    return {"bundle": str(bundle), "name": prefix, "target": manifest["target"], "files": len(listed) + 1,
            "checksums": "ok", "vectors": checks, "passed": passed, "size_bytes": os.path.getsize(bundle)}
