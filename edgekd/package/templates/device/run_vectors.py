"""Check this bundle on the device itself: every file against manifest.json, then the test vectors through the
runtimes the bundle was verified on (LiteRT for .tflite, the bundled ExecuTorch runner for .pte).

    python3 device/run_vectors.py [--json]         from anywhere; pip install -r device/requirements.txt

int8 .tflite outputs must match byte for byte (LiteRT's reference kernels, as edgekd recorded them); float
outputs within manifest.json ``vectors.float_tolerance``. Exit status: 0 every check ran and matched, 1 a file or
an output differs, 2 a check could not run (a runtime is missing). ``--prefix`` runs the native runner through a
command (e.g. ``qemu-aarch64 -L ROOT`` to try an arm64 bundle on a PC); on the device it is not needed.
Needs Python 3.8+ and numpy; ai-edge-litert for .tflite checks.
"""

import argparse
import hashlib
import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BUNDLE = Path(os.path.abspath(__file__)).parent.parent  # not resolve(): keep the path as given
RUNNER = BUNDLE / "device" / "executorch" / "pte_runner"


def check_files(manifest):
    return [name for name, digest in sorted(manifest["files"].items())
            if not (BUNDLE / name).is_file() or hashlib.sha256((BUNDLE / name).read_bytes()).hexdigest() != digest]


def model_layout(x, manifest):
    return np.moveaxis(x, 1, -1) if manifest["preprocessing"]["layout"] == "NHWC" else x


def run_litert(art, x, manifest):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(BUNDLE / art["path"]), num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if art["precision"] == "int8":
        rows = np.fromfile(BUNDLE / "vectors" / "input_int8.bin", np.int8).reshape(len(x), -1)
    else:
        rows = model_layout(x, manifest).reshape(len(x), -1)
    ys = []
    for row in rows:
        it.set_tensor(inp["index"], row.reshape(inp["shape"]).astype(inp["dtype"]))
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(ys)


def run_pte(art, x, prefix):
    if not os.access(RUNNER, os.X_OK):  # archives do not keep the executable bit
        RUNNER.chmod(RUNNER.stat().st_mode | stat.S_IXUSR)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "y.f32"
        cmd = [*prefix, str(RUNNER), str(BUNDLE / art["path"]), str(BUNDLE / "vectors" / "input_f32.bin"),
               str(out), str(len(x)), "1", "1", *map(str, x.shape[1:])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pte_runner exit code {proc.returncode}: {proc.stderr.strip()[-300:]}")
        return np.fromfile(out, "<f4").reshape(len(x), -1)


def check(art, x, manifest, prefix):
    stem, vec = Path(art["path"]).stem, manifest["vectors"]
    if art["format"] == "tflite" and art["runtime"] == "litert":
        got, runtime = run_litert(art, x, manifest), "litert-reference"
    elif art["format"] == "pte":
        got, runtime = run_pte(art, x, prefix), "executorch"
    else:
        return None
    if art["format"] == "tflite" and art["precision"] == "int8":
        want = np.fromfile(BUNDLE / "vectors" / f"expected_{stem}_int8.bin", np.int8).reshape(got.shape)
        diff = int(np.abs(got.astype(int) - want.astype(int)).max())
        return {"artifact": art["path"], "runtime": runtime, "max_diff": diff, "unit": "int8 steps",
                "passed": diff == 0}
    kind = "_pte" if art["format"] == "pte" else ""  # a .pte and a .tflite may share a stem
    want = np.fromfile(BUNDLE / "vectors" / f"expected_{stem}{kind}_f32.bin", "<f4").reshape(got.shape)
    diff = float(np.abs(got.astype(np.float32) - want).max())
    return {"artifact": art["path"], "runtime": runtime, "max_diff": diff, "unit": "absolute",
            "passed": diff <= vec["float_tolerance"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--prefix", default="", help="command to run the native runner through (testing on a PC)")
    args = ap.parse_args()
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    changed = check_files(manifest)
    shape = manifest["preprocessing"]["input_shape"]
    x = np.fromfile(BUNDLE / "vectors" / "input_f32.bin", "<f4").reshape(-1, *shape)
    checks, skipped = [], []
    for art in manifest["artifacts"]:
        try:
            result = check(art, x, manifest, shlex.split(args.prefix))
        except (ImportError, OSError, RuntimeError) as exc:
            skipped.append({"artifact": art["path"], "why": f"{type(exc).__name__}: {exc}"})
            continue
        if result is not None:
            checks.append(result)
    passed = not changed and all(c["passed"] for c in checks)
    status = 1 if not passed else 2 if skipped or not checks else 0
    if args.json:
        print(json.dumps({"bundle": manifest["name"], "files_changed": changed, "vectors": len(x), "checks": checks,
                          "skipped": skipped, "passed": passed and status == 0}, indent=2))
    else:
        print(f"{manifest['name']}: {len(manifest['files'])} files, "
              + (f"CHANGED: {', '.join(changed)}" if changed else "sha256 ok"))
        for c in checks:
            print(f"  {c['artifact']:<20} {c['runtime']:<17} {len(x)} vectors, max diff {c['max_diff']} {c['unit']}: "
                  + ("ok" if c["passed"] else "MISMATCH"))
        for s in skipped:
            print(f"  {s['artifact']:<20} not checked: {s['why']}")
    sys.exit(status)


if __name__ == "__main__":
    main()
