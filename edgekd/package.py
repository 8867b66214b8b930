"""Release bundles: one reproducible ``.tar.gz`` per build that a device team can trust and re-check.

A bundle holds the artifacts, the C sources (the TFLite Micro model array and, on microcontrollers, edgekd's
generated inference code with one firmware ELF per board it was verified on), ``manifest.json`` (target,
versions, sha256 of every file, budgets, figures that are the same on every run, input/output quantization and
preprocessing), ``MODEL_CARD.md``, verification vectors (test inputs with the outputs each artifact gave on the
host, int8 ``.tflite`` outputs from LiteRT's reference kernels, bit-exact with TFLite Micro, as raw
little-endian binaries a device can read after flashing) and, with ``--sign``, ``manifest.sig``: an Ed25519
signature of the exact bytes of ``manifest.json`` (scheme and how to check it by hand: :mod:`edgekd.signing`).

The same build gives a byte-identical bundle: sorted entries, fixed mtime, owner and mode, gzip without a
timestamp, and nothing measured by a clock (host latency varies run to run, so it stays in ``verify.json``).

:func:`verify_package` reads the archive as a stream with limits (one gzip member and nothing after it; entry
sizes, their total and the entry count are capped before anything is read), refuses links, devices, escaping,
duplicate, missing, extra and modified entries and any tar stream that is not the canonical one edgekd writes,
and validates the manifest's shape. With ``key`` it checks the signature first, so every byte of the bundle is
pinned to the key holder; without one it says plainly that the bundle was checked only against its own
manifest, which anyone who edits the bundle can re-hash. With ``rerun`` it runs the vectors on LiteRT's
reference kernels, TFLite Micro and ExecuTorch, and for generated C it regenerates the sources from the
bundle's own int8 ``.tflite`` with edgekd's code generator, requires every bundled source to be byte-identical
to them, and compiles and runs *edgekd's regenerated copy* with the host gcc in a temporary folder.

Never executed or compiled on the host: the bundle's C sources, its firmware ELFs and anything else it carries.
Models are only loaded by the runtimes after their flatbuffer identifiers were checked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import IO, Any, TypeVar

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.io import atomic_write_bytes, dumps_json, read_json, sha256_bytes

MANIFEST_FORMAT = "edgekd-package/1"
#: Tolerance of float outputs when vectors are rerun (XNNPACK on one host is deterministic; other hosts may
#: sum in another order).
FLOAT_TOLERANCE = 1e-4
SIGNATURE_ENTRY = "manifest.sig"

#: Limits when reading a bundle (real ones are a few MB): a header declaring more is refused before its data
#: is read, so a small crafted archive cannot make verify allocate gigabytes.
MAX_ENTRY_BYTES = 512 << 20
MAX_TOTAL_BYTES = 1 << 30
MAX_ENTRIES = 4096
#: Tar header bytes (pax and GNU long-name records included) read before an entry's size can be checked.
HEADER_SLACK = 1 << 20
#: The 10-byte header of the gzip stream edgekd writes: no name, mtime 0, best compression, unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
_READ_CHUNK = 1 << 16

# Generated-C build products that are not shipped: the host test binary and the linker map (absolute paths).
C_SKIP_SUFFIXES = (".map",)
C_SKIP_NAMES = ("host_runner",)
HOST_LATENCY_NOTE = "not in the bundle: host timings vary run to run (see the build's verify.json)"

T = TypeVar("T")


# ------------------------------------------------------------------ writing a bundle

def _generated_c(build: Path, verify: dict[str, Any]) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The generated C sources and each board's ELF, from the emulated runs verify.json records as passed."""
    files: dict[str, bytes] = {}
    boards = []
    for r in verify.get("emulated", []):
        if r["format"] != "c" or not r["ok"]:
            continue
        d = r["details"]
        src = build / d["source_dir"]
        if not src.is_dir():
            raise EdgekdError(f"{src}: the generated C that verify.json records is gone; re-run `edgekd verify "
                              f"--target {verify.get('target', 'T')} {build} --emulator qemu`")
        for path in sorted(src.iterdir()):
            if path.is_file() and path.suffix not in C_SKIP_SUFFIXES and path.name not in C_SKIP_NAMES:
                files[f"{d['source_dir']}/{path.name}"] = path.read_bytes()
        boards.append({"elf": r["path"], "emulator": r["emulator"], "core": d.get("core"),
                       "bit_exact_vs_host": r["bit_exact_vs_host"], "flash_bytes": d.get("flash_bytes"),
                       "ram_bytes": d.get("ram_bytes"), "arena_bytes": d.get("arena_bytes"),
                       "stack_bytes": d.get("stack_bytes"), "tflm_arena_bytes": d.get("tflm_arena_bytes"),
                       "instructions": r["instructions"], "counted_ms": r["counted_ms"], "cpi": r["cpi"],
                       # what the board sources (linker script) were written with, so verify can regenerate them
                       "machine": r["emulator"].split("/", 1)[-1],
                       "flash_budget_bytes": d.get("flash_budget_bytes"), "ram_budget_bytes": d.get("ram_budget_bytes"),
                       "stack_reserved_bytes": d.get("stack_reserved_bytes")})
    return files, boards


def _requantize(y: np.ndarray, q: dict[str, Any]) -> np.ndarray:
    """Dequantized int8 outputs back to the int8 values the model wrote (exact: they came from int8)."""
    return (np.round(y / q["scale"]).astype(np.int64) + q["zero_point"]).astype(np.int8)


def _vectors(build: Path, export: dict[str, Any], artifacts: list[Any], count: int) -> dict[str, bytes]:
    """Inputs and expected outputs per artifact, as raw binaries; described in the manifest."""
    from edgekd.data import load_task
    from edgekd.distill import DATA_SEED
    from edgekd.students import to_model_input
    from edgekd.verify import sample_indices
    from edgekd.verify.executorch import run_pte
    from edgekd.verify.litert import quantize, run_litert

    src = export["data_source"]
    splits = load_task(src["task"], src.get("data_dir"), seed=DATA_SEED, limit=src.get("limit"))
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
             "| artifact | runtime | accuracy | agreement with float |",
             "|---|---|---|---|",
             f"| float student | PyTorch | {100 * v['float_accuracy']:.2f}% | |"]
    for r in v["runs"]:
        lines.append(f"| {r['artifact']} | {r['runtime']} | {100 * r['accuracy']:.2f}% | "
                     f"{100 * r['agreement_with_float']:.2f}% |")
    lines += ["", "Latency on the device is the latency gate below (counted on the emulated core, or estimated by "
              "the cost model). Host timings are left out: they differ on every run, and this card is part of "
              "the bundle's checked content.", ""]
    lines += ["## Budgets and gates", "", "| gate | passed | detail |", "|---|---|---|"]
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
    if "signature" in manifest:
        lines += ["## Signature",
                  f"`{SIGNATURE_ENTRY}` is the Ed25519 signature of the exact bytes of `manifest.json` (public key "
                  f"sha256 `{manifest['signature']['public_key_sha256']}`), which lists every other file with its "
                  "sha256. Check it with `edgekd package verify BUNDLE --key KEY.pub`, or by hand: "
                  f"`openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in manifest.json -sigfile "
                  f"{SIGNATURE_ENTRY}`.", ""]
    return "\n".join(lines)


def _manifest(export: dict[str, Any], verify: dict[str, Any], artifacts: list[Any], vectors: dict[str, bytes],
              count: int) -> dict[str, Any]:
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
            # Host latency is a wall-clock measurement: keeping it would make every packaging of the same build
            # a different (differently signed) bundle. The keys stay, for readers of older manifests.
            "runs": [{"artifact": r["artifact"], "runtime": r["runtime"], "accuracy": r["accuracy"],
                      "agreement_with_float": r["agreement_with_float"], "max_abs_err": r["max_abs_err"],
                      "arena_bytes": r.get("arena_bytes"), "latency_ms": None,
                      "latency_kind": HOST_LATENCY_NOTE} for r in verify["runs"]],
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


def _write_tar(out: IO[bytes], prefix: str, files: dict[str, bytes]) -> None:
    """The canonical tar of ``files`` under ``prefix/``: sorted, mtime 0, root-owned, mode 0644, PAX."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))


def _tar_bytes(prefix: str, files: dict[str, bytes]) -> bytes:
    """A gzip'd tar of ``files`` under ``prefix/``, byte-identical for identical content."""
    raw = io.BytesIO()
    _write_tar(raw, prefix, files)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _from_verify(verify_path: Path, fn: Callable[[], T]) -> T:
    """Run ``fn`` over verify.json's content; a record of the wrong shape is one EdgekdError line."""
    try:
        return fn()
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        detail = f"lacks {exc}" if isinstance(exc, KeyError) else f"has a field of the wrong type ({exc})"
        raise EdgekdError(f"{verify_path}: {detail}: not a verification record this edgekd wrote; re-run "
                          "`edgekd verify`") from None


def package_build(build_dir: str | Path, out_file: str | Path, vectors: int = 16,
                  sign: str | Path | None = None) -> dict[str, Any]:
    """Bundle the verified build in ``build_dir`` into ``out_file`` (.tar.gz); returns the manifest.

    ``sign``: an Ed25519 private key file (``edgekd keygen``); adds ``manifest.sig`` over manifest.json.
    """
    from edgekd.export import load_export

    key = None
    if sign is not None:  # before minutes of work: a bad key file fails now
        from edgekd.signing import load_private_key

        key = load_private_key(sign)
    build = Path(build_dir)
    export, artifacts = load_export(build)
    verify_path = build / "verify.json"
    if not verify_path.is_file():
        raise EdgekdError(f"{build}: no verify.json; run `edgekd verify --target {export['target']} {build}` first")
    verify = read_json(verify_path, "verification record", fix=f"re-run `edgekd verify --target {export['target']} "
                                                                f"{build}`")
    files: dict[str, bytes] = {}
    for a in artifacts:
        names = [a.path] + ([a.details["header"]] if a.format == "c" else [])
        for name in names:
            try:
                files[name] = (build / name).read_bytes()
            except OSError as exc:
                raise EdgekdError(f"{build / name}: cannot read it ({exc.strerror or type(exc).__name__}); "
                                  "re-run `edgekd export`") from None
        if sha256_bytes(files[a.path]) != a.sha256:
            raise EdgekdError(f"{build / a.path}: changed since export (sha256 differs); re-run `edgekd export`")
    c_files, boards = _from_verify(verify_path, lambda: _generated_c(build, verify))
    files |= c_files
    vec = _vectors(build, export, artifacts, vectors)
    files |= vec
    manifest = _from_verify(verify_path, lambda: _manifest(export, verify, artifacts, vec,
                                                           int(len(vec["vectors/labels_u8.bin"]))))
    if boards:
        manifest["generated_c"] = {
            "api": "model.h: int edgekd_invoke(const int8_t *input, int8_t *output); input/output quantization "
                   "macros; same int8 input and output as the .tflite",
            "sources": sorted(n for n in c_files if not n.endswith(".elf")), "boards": boards,
            "regenerate": "edgekd.codegen.generate_c(<int8 .tflite>) and the board layer of "
                          "edgekd.emulate.cortex_m.write_board_sources; `package verify` compares them byte for byte"}
    if key is not None:
        from edgekd.signing import ALGORITHM, public_key_sha256

        manifest["signature"] = {"algorithm": ALGORITHM, "entry": SIGNATURE_ENTRY,
                                 "covers": "the exact bytes of manifest.json, which lists every other entry with "
                                           "its sha256",
                                 "public_key_sha256": public_key_sha256(key.public_key())}
    manifest["files"] = {name: sha256_bytes(data) for name, data in sorted(files.items())}
    files["MODEL_CARD.md"] = _from_verify(verify_path, lambda: _model_card(manifest)).encode()
    manifest["files"]["MODEL_CARD.md"] = sha256_bytes(files["MODEL_CARD.md"])
    files["manifest.json"] = dumps_json(manifest, sort_keys=True).encode()
    if key is not None:
        files[SIGNATURE_ENTRY] = key.sign(files["manifest.json"])
    atomic_write_bytes(out_file, _tar_bytes(manifest["name"], files))
    return manifest


# ------------------------------------------------------------------ reading a bundle, with limits

class _GzipStream:
    """The bundle's single gzip member, inflated on demand: a file object for ``tarfile`` mode ``r|``.

    It hands out at most ``allowed`` bytes (raised by the reader as entries pass their size checks), so tar
    headers cannot make anyone buffer more than :data:`HEADER_SLACK` unchecked bytes; it hashes everything it
    hands out, and :meth:`finish` requires the gzip trailer to match and nothing to follow it.
    """

    def __init__(self, f: IO[bytes], bundle: Path) -> None:
        self._f, self._bundle = f, bundle
        header = f.read(len(GZIP_HEADER))
        if header[:2] != GZIP_HEADER[:2]:
            raise EdgekdError(f"{bundle}: not a gzip file; a bundle is the .tar.gz `edgekd package` writes")
        if header != GZIP_HEADER:
            raise EdgekdError(f"{bundle}: its gzip header is not the one edgekd writes (a file name, time stamp "
                              "or flags were added): the bundle was re-compressed or modified")
        self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        self.delivered, self.allowed = 0, HEADER_SLACK
        self.sha, self._crc = hashlib.sha256(), 0

    def _inflate(self, n: int) -> bytes:
        while not self._z.eof:
            data = self._z.unconsumed_tail or self._f.read(_READ_CHUNK)
            if not data:
                raise EdgekdError(f"{self._bundle}: the gzip stream ends early (truncated download?)")
            out = self._z.decompress(data, n)
            if out:
                return out
        return b""

    def read(self, n: int = -1) -> bytes:
        n = _READ_CHUNK if n is None or n < 0 else n
        room = self.allowed - self.delivered
        if room <= 0:
            raise EdgekdError(f"{self._bundle}: tar headers run past {HEADER_SLACK:,} bytes (or data follows the "
                              "end of the archive); refusing it")
        try:
            out = self._inflate(min(n, room))
        except zlib.error as exc:
            raise EdgekdError(f"{self._bundle}: the gzip stream is corrupt ({exc})") from None
        self.delivered += len(out)
        self.sha.update(out)
        self._crc = zlib.crc32(out, self._crc)
        return out

    def finish(self, slack: int) -> None:
        """Read what follows the tar archive (at most ``slack`` bytes of padding) and check the gzip trailer."""
        self.allowed = self.delivered + slack
        while self.read(_READ_CHUNK):
            pass
        rest = self._z.unused_data + self._f.read(_READ_CHUNK)
        if len(rest) < 8:
            raise EdgekdError(f"{self._bundle}: the gzip stream ends early (truncated download?)")
        crc, size = struct.unpack("<II", rest[:8])
        if crc != self._crc or size != self.delivered & 0xFFFFFFFF:
            raise EdgekdError(f"{self._bundle}: the gzip checksum does not match its content (corrupt)")
        extra = rest[8:]
        if extra[:2] == GZIP_HEADER[:2]:
            raise EdgekdError(f"{self._bundle}: holds more than one gzip member; a bundle is one gzip stream, "
                              "refusing the appended data")
        if extra:
            raise EdgekdError(f"{self._bundle}: has bytes after the end of its gzip stream; refusing it "
                              "(re-download or repackage the bundle)")


class _HashSink:
    """A write-only file that only hashes: the canonical tar is compared without building it in memory."""

    def __init__(self) -> None:
        self.sha, self.size = hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _read_bundle(bundle: Path) -> tuple[str, dict[str, bytes], _GzipStream]:
    """Every entry of the bundle into memory, streaming and within the limits; refuses links, devices,
    duplicates, absolute paths and anything escaping one folder before reading its data."""
    prefix: str | None = None
    files: dict[str, bytes] = {}
    total = 0
    with bundle.open("rb") as f:
        stream = _GzipStream(f, bundle)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for m in tar:
                    if len(files) >= MAX_ENTRIES:
                        raise EdgekdError(f"{bundle}: more than {MAX_ENTRIES:,} entries; not an edgekd bundle, "
                                          "refusing it")
                    p = PurePosixPath(m.name)
                    if p.is_absolute() or ".." in p.parts or len(p.parts) < 2:
                        raise EdgekdError(f"bundle entry {m.name!r} escapes the bundle folder; refusing it")
                    if prefix is None:
                        prefix = p.parts[0]
                    if p.parts[0] != prefix:
                        raise EdgekdError(f"bundle entry {m.name!r} is outside the bundle folder {prefix!r}; "
                                          "refusing it")
                    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                        raise EdgekdError(f"bundle entry {m.name!r} is not a regular file (link, device or "
                                          "sparse file); refusing it")
                    if m.size > MAX_ENTRY_BYTES:
                        raise EdgekdError(f"{bundle}: entry {m.name!r} declares {m.size:,} bytes, over the "
                                          f"{MAX_ENTRY_BYTES:,}-byte limit per entry; refusing it")
                    total += m.size
                    if total > MAX_TOTAL_BYTES:
                        raise EdgekdError(f"{bundle}: entries add up to more than {MAX_TOTAL_BYTES:,} bytes; "
                                          "refusing it")
                    name = str(PurePosixPath(*p.parts[1:]))
                    if name in files:
                        raise EdgekdError(f"bundle entry {m.name!r} appears twice; refusing it")
                    stream.allowed = m.offset_data + m.size + tarfile.BLOCKSIZE + HEADER_SLACK
                    data = tar.extractfile(m)
                    files[name] = data.read() if data else b""
                    if len(files[name]) != m.size:
                        raise EdgekdError(f"{bundle}: entry {m.name!r} is truncated")
            stream.finish(2 * tarfile.RECORDSIZE)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise EdgekdError(f"{bundle}: not a readable .tar.gz bundle ({exc})") from None
    if prefix is None:
        raise EdgekdError(f"{bundle}: the bundle is empty")
    return prefix, files, stream


# ------------------------------------------------------------------ the manifest's shape

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


def _parse_manifest(bundle: Path, data: bytes) -> dict[str, Any]:
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
        fmt, precision = s.get(a, "format", str, where), s.get(a, "precision", str, where)
        if fmt == "tflite" and precision == "int8":
            q = s.get(a, "quantization", dict, where)
            for side in ("input", "output"):
                qs = s.get(q, side, dict, f"{where}quantization.")
                s.get(qs, "scale", (int, float), f"{where}quantization.{side}.")
                s.get(qs, "zero_point", int, f"{where}quantization.{side}.")
                s.shape(qs, "shape", f"{where}quantization.{side}.")
        if fmt == "c":
            s.entry(a.get("header"), f"{where}header", files)
            s.count(a, "tensor_arena_bytes", where, 0)
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


def _check_vector_sizes(bundle: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> None:
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
        stem = Path(a["path"]).stem
        if a["format"] == "tflite" and a["precision"] == "int8":
            q = a["quantization"]
            need("vectors/input_int8.bin", int(np.prod(q["input"]["shape"][1:])), "int8 input")
            need(f"vectors/expected_{stem}_int8.bin", int(np.prod(q["output"]["shape"][1:])), "int8 output")
        elif a["format"] in ("tflite", "pte"):
            need(f"vectors/expected_{stem}_f32.bin", None, "float32 output")


# ------------------------------------------------------------------ rerunning the vectors

_MODEL_IDS = {"tflite": (b"TFL3", "a TensorFlow Lite flatbuffer (identifier TFL3)"),
              "pte": (b"ET", "an ExecuTorch program (identifier ET..)")}


def _check_model_bytes(bundle: Path, name: str, fmt: str, data: bytes) -> None:
    """Refuse a model whose flatbuffer header is wrong before a native runtime parses it."""
    ident, what = _MODEL_IDS[fmt]
    root = struct.unpack("<I", data[:4])[0] if len(data) >= 8 else 0
    if len(data) < 16 or data[4:4 + len(ident)] != ident or not 8 <= root < len(data):
        raise EdgekdError(f"{bundle}: {name} is not {what}: truncated or corrupt")


def _guarded(bundle: Path, name: str, runtime: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a bundle model: whatever a native runtime throws on a damaged model is one
    EdgekdError line."""
    try:
        return fn(*args, **kwargs)
    except EdgekdError:
        raise
    except Exception as exc:  # noqa: BLE001  (LiteRT, TFLite Micro and ExecuTorch raise many types)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EdgekdError(f"{bundle}: {name} does not load or run on {runtime} ({type(exc).__name__}: {first}); "
                          "the model in the bundle is corrupt") from None


def _compare(name: str, got: np.ndarray, want_bytes: bytes, dtype: str, bundle: Path) -> np.ndarray:
    want = np.frombuffer(want_bytes, dtype)
    if want.size != got.size:
        raise EdgekdError(f"{bundle}: {name} holds {want.size} values but the model gives {got.size}; the vectors "
                          "do not match the model")
    return want.reshape(got.shape)


def _tflm_check(bundle: Path, path: Path, artifact: dict[str, Any], files: dict[str, bytes],
                want: np.ndarray) -> dict[str, Any]:
    """The int8 vectors through the TFLite Micro interpreter itself, as the device will run them."""
    from edgekd.verify.tflm import run_tflm

    shape = artifact["quantization"]["input"]["shape"][1:]
    xq = np.frombuffer(files["vectors/input_int8.bin"], np.int8).reshape(len(want), *shape)
    got = _guarded(bundle, artifact["path"], "TFLite Micro", run_tflm, path, xq, 8 << 20).outputs.reshape(want.shape)
    diff = int(np.abs(got.astype(int) - want.astype(int)).max())
    return {"artifact": artifact["path"], "runtime": "tflm", "max_diff": diff, "unit": "int8 steps",
            "passed": diff == 0}


def _board_layer(bundle: Path, manifest: dict[str, Any], board: dict[str, Any], folder: str) -> SimpleNamespace:
    """What write_board_sources needs (name, budgets, QEMU machine), from the manifest's board entry."""
    from edgekd.emulate.cortex_m import TESTIO_ORIGIN

    s = _Shape(bundle)
    elf = PurePosixPath(board["elf"])
    if str(elf.parent) != folder or elf.suffix != ".elf" or not re.fullmatch(r"[A-Za-z0-9._-]+", elf.stem):
        raise s.error(f"generated_c board ELF {board['elf']!r} is not {folder}/<target>.elf")
    machine = board.get("machine") or board["emulator"].split("/", 1)[-1]
    if machine not in TESTIO_ORIGIN:
        raise s.error(f"generated_c board machine {machine!r} is not a board edgekd builds for "
                      f"({', '.join(TESTIO_ORIGIN)})")
    budgets = manifest.get("budgets") if isinstance(manifest.get("budgets"), dict) else {}
    merged = {"flash_budget_bytes": budgets.get("flash_bytes"), "ram_budget_bytes": budgets.get("ram_bytes"),
              "stack_reserved_bytes": 1024} | {k: v for k, v in board.items() if v is not None}
    flash = s.count(merged, "flash_budget_bytes", "generated_c.boards[].")
    ram = s.count(merged, "ram_budget_bytes", "generated_c.boards[].")
    stack = s.count(merged, "stack_reserved_bytes", "generated_c.boards[].")
    return SimpleNamespace(name=elf.stem, budgets=SimpleNamespace(flash_bytes=flash, ram_bytes=ram),
                           emulator=SimpleNamespace(machine=machine), stack=stack)


def _version_hint(manifest: dict[str, Any]) -> str:
    from edgekd import __version__

    built = manifest.get("versions", {}).get("edgekd") if isinstance(manifest.get("versions"), dict) else None
    if built and built != __version__:
        return f" (or it was built by edgekd {built}, this is {__version__}: verify with the version that built it)"
    return ""


def _regenerated_sources(bundle: Path, manifest: dict[str, Any], files: dict[str, bytes], tfl: dict[str, Any],
                         model: Path, work: Path) -> tuple[Path, dict[str, bytes]]:
    """edgekd's own C for ``model``, written as ``export`` and ``verify --emulator qemu`` wrote it:
    {bundle entry name: bytes} for the generated C folder and the TFLite Micro model array."""
    from edgekd.codegen import generate_c
    from edgekd.codegen.host import HARNESS
    from edgekd.emulate.cortex_m import write_board_sources
    from edgekd.export.csource import write_model_sources

    expected: dict[str, bytes] = {}
    for a in manifest["artifacts"]:  # model_data.c/.h: the .tflite as a C array (edgekd export, format c)
        if a["format"] == "c":
            out = work / "tflm"
            out.mkdir()
            q = {k: tfl["quantization"][k] for k in ("input", "output")}
            src, hdr = _guarded(bundle, tfl["path"], "edgekd's C array writer", write_model_sources, model, out,
                                a["tensor_arena_bytes"], q)
            expected[a["path"]], expected[a["header"]] = src.read_bytes(), hdr.read_bytes()
    regen = work / "c"
    gc = manifest.get("generated_c")
    if gc is not None:
        folders = {str(PurePosixPath(n).parent) for n in gc["sources"]}
        if len(folders) != 1 or "/" in next(iter(folders)) or next(iter(folders)) == ".":
            raise _Shape(bundle).error("generated_c.sources are not all in one folder")
        folder = folders.pop()
        _guarded(bundle, tfl["path"], "edgekd's code generator", generate_c, model, regen)
        for board in gc["boards"]:
            layer = _board_layer(bundle, manifest, board, folder)
            write_board_sources(regen, layer, layer.stack)  # type: ignore[arg-type]  (name, budgets, machine)
        (regen / "host_main.c").write_text(HARNESS)
        for path in sorted(regen.iterdir()):
            expected[f"{folder}/{path.name}"] = path.read_bytes()
        elfs = {b["elf"] for b in gc["boards"]}
        bundled = {n for n in files if n.startswith(f"{folder}/") and n not in elfs}
        listed = set(gc["sources"])
        for name in sorted((bundled | listed) - set(expected)):
            raise EdgekdError(f"{bundle}: {name} is not a file edgekd generates from {tfl['path']}; the bundle was "
                              "modified")
        for name in sorted(set(expected) - bundled):
            if name.startswith(f"{folder}/"):
                raise EdgekdError(f"{bundle}: {name} is missing: edgekd generates it from {tfl['path']}; the bundle "
                                  "is incomplete")
    for name in sorted(expected):
        if files.get(name) != expected[name]:
            raise EdgekdError(f"{bundle}: {name} differs from the C edgekd generates from {tfl['path']}; the bundle "
                              f"was modified{_version_hint(manifest)}")
    return regen, expected


def _c_check(bundle: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> tuple[dict[str, Any] | None,
                                                                                      list[str]]:
    """Regenerate the bundle's C from its own int8 .tflite, require byte-identical sources, then compile and run
    edgekd's regenerated copy (never the bundle's) with the host gcc against the int8 vectors.

    Returns the vector check (None without generated C) and the names of the sources compared."""
    from edgekd.codegen import compile_host, run_host

    has_c = "generated_c" in manifest or any(a["format"] == "c" for a in manifest["artifacts"])
    if not has_c:
        return None, []
    tfl = next((a for a in manifest["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"), None)
    if tfl is None:
        raise _Shape(bundle).error("lists C sources but no int8 .tflite they are generated from")
    with tempfile.TemporaryDirectory(prefix="edgekd-package-c-") as tmp:
        model = Path(tmp) / PurePosixPath(tfl["path"]).name  # the name is in the generated banners
        model.write_bytes(files[tfl["path"]])
        regen, compared = _regenerated_sources(bundle, manifest, files, tfl, model, Path(tmp))
        if "generated_c" not in manifest:
            return None, sorted(compared)
        n = manifest["vectors"]["count"]
        stem = Path(tfl["path"]).stem
        want = np.frombuffer(files[f"vectors/expected_{stem}_int8.bin"], np.int8).reshape(n, -1)
        xq = np.frombuffer(files["vectors/input_int8.bin"], np.int8).reshape(n, -1)
        got = run_host(compile_host(regen, Path(tmp) / "runner"), xq, want.shape[1])
    diff = int(np.abs(got.reshape(want.shape).astype(int) - want.astype(int)).max())
    return ({"artifact": "c/ (generated C, host gcc)", "runtime": "edgekd-c", "max_diff": diff,
             "unit": "int8 steps", "passed": diff == 0,
             "method": f"regenerated from {tfl['path']} by edgekd, bundle sources byte-identical, run with host gcc",
             "never_executed": "the bundle's own C sources and firmware ELFs"}, sorted(compared))


def _rerun(bundle: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
    """The vectors through LiteRT's reference kernels, TFLite Micro and ExecuTorch, on the bundle's models."""
    from edgekd.verify.executorch import run_pte
    from edgekd.verify.litert import run_litert

    checks = []
    n = manifest["vectors"]["count"]
    shape = manifest["preprocessing"]["input_shape"]
    nhwc = manifest["preprocessing"]["layout"] == "NHWC"
    x = np.frombuffer(files["vectors/input_f32.bin"], dtype="<f4").reshape(n, *shape)
    with tempfile.TemporaryDirectory(prefix="edgekd-package-") as tmp:
        for a in manifest["artifacts"]:
            stem, name = Path(a["path"]).stem, a["path"]
            if a["format"] not in ("tflite", "pte"):
                continue
            _check_model_bytes(bundle, name, a["format"], files[name])
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[name])
            if a["format"] == "tflite" and a["precision"] == "int8":
                q = a["quantization"]["output"]
                got = _requantize(_guarded(bundle, name, "LiteRT", run_litert, path, x, nhwc, reference=True), q)
                want = _compare(f"vectors/expected_{stem}_int8.bin", got, files[f"vectors/expected_{stem}_int8.bin"],
                                "i1", bundle)
                diff = int(np.abs(got.astype(int) - want.astype(int)).max())
                checks.append({"artifact": name, "runtime": "litert-reference", "max_diff": diff,
                               "unit": "int8 steps", "passed": diff == 0})
                checks.append(_tflm_check(bundle, path, a, files, want))
            else:
                if a["format"] == "pte":
                    got = _guarded(bundle, name, "ExecuTorch", run_pte, path, x)
                else:
                    got = _guarded(bundle, name, "LiteRT", run_litert, path, x, nhwc, reference=True)
                want = _compare(f"vectors/expected_{stem}_f32.bin", got, files[f"vectors/expected_{stem}_f32.bin"],
                                "<f4", bundle)
                diff = float(np.abs(got - want).max())
                checks.append({"artifact": name, "runtime": "executorch" if a["format"] == "pte" else
                               "litert-reference", "max_diff": diff, "unit": "absolute",
                               "passed": diff <= FLOAT_TOLERANCE})
    return checks


# ------------------------------------------------------------------ verify

def _signature(bundle: Path, files: dict[str, bytes], key: str | Path | None) -> tuple[bool, str, str | None]:
    """(signed, the plain statement of what was checked, fingerprint of the key that checked it)."""
    from edgekd.signing import check_signature, load_public_key, public_key_sha256

    signed = SIGNATURE_ENTRY in files
    if key is None:
        return signed, ("not checked (no --key given): the bundle was only checked against its own manifest, "
                        "which anyone who edits the bundle can re-hash" if signed else
                        "unsigned: checked only against its own manifest"), None
    pub = load_public_key(key)
    fingerprint = public_key_sha256(pub)
    if not signed:
        raise EdgekdError(f"{bundle}: is not signed (no {SIGNATURE_ENTRY}) but --key was given; ask for a signed "
                          "bundle (`edgekd package ... --sign KEY`)")
    if not check_signature(pub, files["manifest.json"], files[SIGNATURE_ENTRY]):
        raise EdgekdError(f"{bundle}: the signature does not match --key {key} (sha256 {fingerprint[:16]}...): "
                          "the bundle was modified after signing, or signed with another key")
    return True, f"ed25519 signature valid for --key {key} (public key sha256 {fingerprint})", fingerprint


def verify_package(bundle: str | Path, rerun: bool = True, key: str | Path | None = None) -> dict[str, Any]:
    """Check a bundle: its signature (``key``: an Ed25519 public key), the canonical archive, every checksum, no
    missing or extra files, and (``rerun``) the vectors on host runtimes and edgekd's regenerated C."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise EdgekdError(f"{bundle}: no such bundle file")
    prefix, files, stream = _read_bundle(bundle)
    if "manifest.json" not in files:
        raise EdgekdError(f"{bundle}: no manifest.json in the bundle")
    signed, statement, fingerprint = _signature(bundle, files, key)  # before trusting anything the manifest says
    manifest = _parse_manifest(bundle, files["manifest.json"])
    listed = manifest["files"]
    expected = set(listed) | {"manifest.json"} | ({SIGNATURE_ENTRY} if "signature" in manifest else set())
    missing = sorted(expected - set(files))
    extra = sorted(set(files) - expected)
    bad = sorted(name for name in set(listed) & set(files) if sha256_bytes(files[name]) != listed[name])
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + \
        ([f"not in the manifest: {', '.join(extra)}"] if extra else []) + \
        ([f"checksum mismatch: {', '.join(bad)}"] if bad else [])
    if problems:
        raise EdgekdError(f"{bundle}: " + "; ".join(problems))
    if prefix != manifest["name"]:
        raise EdgekdError(f"{bundle}: the bundle folder {prefix!r} is not the manifest's name {manifest['name']!r}; "
                          "the bundle was modified")
    canonical = _HashSink()
    _write_tar(canonical, prefix, files)  # type: ignore[arg-type]
    if (canonical.size, canonical.sha.digest()) != (stream.delivered, stream.sha.digest()):
        raise EdgekdError(f"{bundle}: the tar stream is not the canonical one edgekd writes for these files (entry "
                          "order, headers or padding changed); the bundle was modified")
    _check_vector_sizes(bundle, manifest, files)
    checks: list[dict[str, Any]] = []
    compared: list[str] = []
    if rerun:
        checks = _rerun(bundle, manifest, files)
        c_check, compared = _c_check(bundle, manifest, files)
        if c_check is not None:
            checks.append(c_check)
    passed = all(c["passed"] for c in checks)
    result = {"bundle": str(bundle), "name": prefix, "target": manifest["target"], "files": len(files),
              "checksums": "ok", "vectors": checks, "passed": passed, "size_bytes": os.path.getsize(bundle),
              "signed": signed, "signature": statement, "public_key_sha256": fingerprint,
              "executed": "nothing from the bundle: models run on the host runtimes; generated C is regenerated "
                          "by edgekd and only that copy is compiled"}
    if compared:
        result["c_sources"] = {"compared": compared, "method": "regenerated from the bundle's int8 .tflite by "
                                                               "edgekd; bundle sources byte-identical"}
    return result
