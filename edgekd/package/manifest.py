"""manifest.json: what it says about a build (written from the typed export and verify records), and the shape
checks ``package verify`` runs on one read from a bundle before using any field.

Each artifact's entry gets its format plugin's keys (quantization of a .tflite, a C array's header); each format
checks its own entry and names the vector files it needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.export.records import ExportRecord
from edgekd.formats import Format, get_format
from edgekd.verify.records import VerifyRecord

MANIFEST_FORMAT = "edgekd-package/1"
#: Tolerance of float outputs when vectors are rerun (XNNPACK on one host is deterministic; other hosts may
#: sum in another order).
FLOAT_TOLERANCE = 1e-4
SIGNATURE_ENTRY = "manifest.sig"
HOST_LATENCY_NOTE = "not in the bundle: host timings vary run to run (see the build's verify.json)"


def bundle_name(export: ExportRecord) -> str:
    return f"edgekd-{export.target}-{export.task}".replace(":", "-").replace("/", "-")


def build_manifest(export: ExportRecord, verify: VerifyRecord, vectors: dict[str, bytes], count: int) -> dict[str, Any]:
    """manifest.json's content (without ``files``, signature and generated C, which the packager adds)."""
    arts = []
    for a in export.artifacts:
        arts.append({"path": a.path, "format": a.format, "precision": a.precision, "runtime": a.runtime,
                     "bytes": a.bytes, "sha256": a.sha256} | get_format(a.format).manifest_entry(a))
    return {
        "format": MANIFEST_FORMAT,
        "name": bundle_name(export),
        "target": export.target,
        "task": export.task,
        "classes": list(verify.float_per_class),
        "student": export.student.to_json() | {"from": None},
        "artifacts": arts,
        "preprocessing": {"input_shape": list(export.input_shape), "layout": export.layout,
                          "normalization": export.normalization or {}},
        "budgets": verify.budgets,
        "measured": {
            "float_accuracy": verify.float_accuracy,
            "test_samples": verify.samples.test,
            # Host latency is a wall-clock measurement: keeping it would make every packaging of the same build
            # a different (differently signed) bundle. The keys stay, for readers of older manifests.
            "runs": [{"artifact": r.artifact, "runtime": r.runtime, "accuracy": r.accuracy,
                      "agreement_with_float": r.fidelity.agreement_with_float, "max_abs_err": r.fidelity.max_abs_err,
                      "arena_bytes": r.arena_bytes, "latency_ms": None,
                      "latency_kind": HOST_LATENCY_NOTE} for r in verify.runs],
            "gates": {k: g.to_dict() if g else None for k, g in verify.gates.items()},
            "passed": verify.passed,
        },
        "vectors": {"count": count, "input_f32": "vectors/input_f32.bin (float32 LE, channels-first)",
                    "labels": "vectors/labels_u8.bin",
                    "input_int8": "vectors/input_int8.bin (model layout)" if "vectors/input_int8.bin" in vectors
                    else None,
                    "expected": sorted(k for k in vectors if "/expected_" in k),
                    "float_tolerance": FLOAT_TOLERANCE},
        "versions": export.versions,
    }


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
               bool: "true/false", type(None): "null"}
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


class _Shape:
    """Type checks on a manifest read from a bundle: every problem is one line naming the field."""

    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle

    def error(self, what: str) -> EdgekdError:
        return EdgekdError(f"{self.bundle}: manifest.json {what}; the bundle is corrupt or was edited "
                           "(repackage it with `edgekd package`)")

    def get(self, obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if key not in obj:
            raise self.error(f"has no {where}{key}")
        value = obj[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            want = " or ".join(_JSON_TYPES.get(k, k.__name__) for k in kinds)
            raise self.error(f"{where}{key} is {_json_type(value)}, expected {want}")
        return value

    def count(self, obj: dict[str, Any], key: str, where: str, minimum: int = 1) -> int:
        value = self.get(obj, key, int, where)
        if value < minimum:
            raise self.error(f"{where}{key} is {value}, expected at least {minimum}")
        return int(value)

    def shape(self, obj: dict[str, Any], key: str, where: str) -> list[int]:
        value = self.get(obj, key, list, where)
        if not value or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 1 << 24 for s in value):
            raise self.error(f"{where}{key} is not a list of positive integers")
        return value

    def entry(self, value: object, where: str, files: dict[str, str]) -> str:
        if not isinstance(value, str):
            raise self.error(f"{where} is {_json_type(value)}, expected a string")
        if value not in files:
            raise self.error(f"{where} names {value!r}, which its files do not list")
        return value


def _plugin(s: _Shape, fmt: str, where: str) -> Format:
    try:
        return get_format(fmt)
    except EdgekdError:
        raise s.error(f"{where}format {fmt!r} is not a format this edgekd knows") from None


def parse_manifest(bundle: Path, data: bytes) -> dict[str, Any]:
    """manifest.json's bytes as a dict whose every field verify uses has the right type."""
    s = _Shape(bundle)
    try:
        m = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise s.error("is not valid JSON (truncated or corrupt)") from None
    if not isinstance(m, dict):
        raise s.error(f"holds {_json_type(m)}, expected an object")
    if m.get("format") != MANIFEST_FORMAT:
        raise EdgekdError(f"{bundle}: manifest.json is not an edgekd package manifest (format "
                          f"{m.get('format')!r}, expected {MANIFEST_FORMAT!r})")
    name = s.get(m, "name", str, "")
    if not name or "/" in name or name in (".", ".."):
        raise s.error(f"name {name!r} is not a bundle folder name")
    s.get(m, "target", str, "")
    files = s.get(m, "files", dict, "")
    for k, v in files.items():
        if not isinstance(v, str) or not _HEX64.fullmatch(v):
            raise s.error(f"files[{k!r}] is not a sha256 (64 lowercase hex digits)")
    for i, a in enumerate(s.get(m, "artifacts", list, "")):
        where = f"artifacts[{i}]."
        if not isinstance(a, dict):
            raise s.error(f"artifacts[{i}] is {_json_type(a)}, expected an object")
        s.entry(a.get("path"), f"{where}path", files)
        fmt = s.get(a, "format", str, where)
        s.get(a, "precision", str, where)
        _plugin(s, fmt, where).check_manifest_entry(a, where, s, files)
    pre = s.get(m, "preprocessing", dict, "")
    s.shape(pre, "input_shape", "preprocessing.")
    s.get(pre, "layout", str, "preprocessing.")
    s.count(s.get(m, "vectors", dict, ""), "count", "vectors.")
    if "generated_c" in m:
        gc = s.get(m, "generated_c", dict, "")
        for i, src in enumerate(s.get(gc, "sources", list, "generated_c.")):
            s.entry(src, f"generated_c.sources[{i}]", files)
        for i, b in enumerate(s.get(gc, "boards", list, "generated_c.")):
            if not isinstance(b, dict):
                raise s.error(f"generated_c.boards[{i}] is {_json_type(b)}, expected an object")
            s.entry(b.get("elf"), f"generated_c.boards[{i}].elf", files)
            s.get(b, "emulator", str, f"generated_c.boards[{i}].")
    if "signature" in m:
        s.get(m, "signature", dict, "")
    return m


def check_vector_sizes(bundle: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> None:
    """Every vector file the artifacts need is there, and its size is vectors.count times one sample."""
    n = manifest["vectors"]["count"]

    def need(name: str, per_sample: int | None, what: str) -> None:
        if name not in files:
            raise EdgekdError(f"{bundle}: {name} is missing but its artifacts need it; the bundle is incomplete "
                              "(repackage it with `edgekd package`)")
        size = len(files[name])
        ok = size == n * per_sample if per_sample is not None else size > 0 and size % (n * 4) == 0
        if not ok:
            want = f"{n * per_sample:,} bytes" if per_sample is not None else f"a non-empty multiple of {n * 4}"
            raise EdgekdError(f"{bundle}: {name} holds {size:,} bytes, but vectors.count {n} x {what} needs {want}; "
                              "the vectors do not match the manifest")

    need("vectors/input_f32.bin", 4 * int(np.prod(manifest["preprocessing"]["input_shape"])), "float32 input")
    need("vectors/labels_u8.bin", 1, "one label byte")
    for a in manifest["artifacts"]:
        for name, per_sample, what in get_format(a["format"]).vector_sizes(a):
            need(name, per_sample, what)
