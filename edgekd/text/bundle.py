"""Text-embedding bundles: the int8 models, the token table, the tokenizer and its test vectors in one
reproducible ``.tar.gz``, and ``edgekd package verify``'s check of one.

A text bundle is not an image bundle: its models take token-table rows, not normalised samples, and what must
round-trip is ``text -> tokenizer -> ids -> table rows -> model -> embedding``. It is written with the same
canonical tar.gz writer (sorted entries, zero mtimes, timestamp-free gzip: the same build gives the same bytes)
and signed the same way (``manifest.sig`` over the exact bytes of ``manifest.json``, which lists every other
entry's sha256); its manifest's format is :data:`MANIFEST_FORMAT`, which ``edgekd.package.verify_package``
hands to :func:`verify_bundle` after checking the signature.

``verify_bundle`` runs nothing from the bundle: the tokenizer files are data (JSON and a word list) read by
edgekd's own tokenizer, and the models are loaded only by LiteRT (reference kernels), TFLite Micro and the
ExecuTorch runtime after their file identifiers were checked.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.formats.base import VectorCheck
from edgekd.io import atomic_write_bytes, dumps_json, sha256_bytes

MANIFEST_FORMAT = "edgekd-text-package/1"
MANIFEST_ENTRY = "manifest.json"
SIGNATURE_ENTRY = "manifest.sig"
VECTORS = "vectors.json"
#: The files of an export folder a bundle carries (those present): models, table, tokenizer, vectors.
SHIPPED = ("student.tflite", "student.pte", "token_table.bin", "token_table.json", "tokenizer.json", "vocab.txt",
           VECTORS)
#: Largest difference of a ``.pte``'s float outputs from the recorded ones (same host runtime; other hosts may
#: sum in another order).
PTE_TOLERANCE = 1e-4
_MAGIC = {".tflite": (4, b"TFL3", "a TensorFlow Lite flatbuffer"), ".pte": (4, b"ET", "an ExecuTorch program")}
_HEX64 = re.compile(r"[0-9a-f]{64}")


def bundle_name(target: str, task: str) -> str:
    return f"edgekd-{target}-{task}".replace(":", "-").replace("/", "-")


def model_card(manifest: dict[str, Any]) -> str:
    """MODEL_CARD.md: what the bundle is, how well it matches the teacher, and the device pipeline."""
    m, s, t = manifest["metrics"], manifest["student"], manifest["teacher"]
    int8 = m.get("int8") or {}
    lines = [f"# {manifest['name']}", "",
             f"Sentence embeddings for {manifest['target']}, distilled by edgekd from {t['name']} "
             f"({t['params']:,} parameters, {t['macs']:,} MACs per {m['float']['tokens']}-token sentence).", "",
             f"Student: {s['family']} {s['config']}: {s['params']:,} parameters, {s['macs']:,} MACs per sentence "
             f"({m['float']['mac_reduction']}x fewer than the teacher); tokenizer: {manifest['tokenizer']['kind']}.",
             "", "| on held-out sentences | float student | int8 .tflite (LiteRT reference kernels) |",
             "|---|---|---|"]
    for key, label in (("mean_cosine", "mean cosine to the teacher"), ("nn_top1", "nearest-neighbour top-1 agreement"),
                       ("nn_top10", "nearest-neighbour top-10 overlap"), ("probe_student", "WordNet probe accuracy")):
        f, q = m["float"].get(key), int8.get(key)
        lines.append(f"| {label} | {'-' if f is None else f'{f:.4f}'} | {'-' if q is None else f'{q:.4f}'} |")
    lines += ["", f"Teacher's probe accuracy: {m['float'].get('probe_teacher')}; nearest-neighbour pool: "
              f"{m['float']['nn_pool']:,} sentences.", "", "Device pipeline: " + manifest["pipeline"], "",
              f"Gates passed: {manifest['passed']}. `edgekd package verify BUNDLE` reruns {VECTORS} from the text.", ""]
    return "\n".join(lines)


def package_text(folder: str | Path, out_file: str | Path, sections: dict[str, Any], sign: str | Path | None = None
                 ) -> dict[str, Any]:
    """Bundle the text export in ``folder`` into ``out_file``; ``sections`` are the manifest's build facts
    (target, task, teacher, student, metrics, budgets, gates, passed, versions). Returns the manifest."""
    key = None
    if sign is not None:
        from edgekd.signing import load_private_key

        key = load_private_key(sign)
    folder = Path(folder)
    files = {name: (folder / name).read_bytes() for name in SHIPPED if (folder / name).is_file()}
    if (folder / "c").is_dir():  # generated C: model, tokenizer, table (microcontrollers)
        files |= {f"c/{p.name}": p.read_bytes() for p in sorted((folder / "c").iterdir()) if p.is_file()}
    for need in ("student.tflite", "token_table.bin", "token_table.json", "tokenizer.json", VECTORS):
        if need not in files:
            raise EdgekdError(f"{folder / need}: missing; re-run the build's export stage")
    vectors = json.loads(files[VECTORS])
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "name": bundle_name(sections["target"], sections["task"]), **sections,
        "tokenizer": json.loads(files["tokenizer.json"]), "token_table": json.loads(files["token_table.json"]),
        "pipeline": vectors["pipeline"],
        "artifacts": [{"path": n, "format": n.rsplit(".", 1)[1], "bytes": len(files[n]),
                       "sha256": sha256_bytes(files[n])} for n in ("student.tflite", "student.pte") if n in files],
        "vectors": {"entry": VECTORS, "count": len(vectors["vectors"])}}
    if key is not None:
        from edgekd.signing import ALGORITHM, public_key_sha256

        manifest["signature"] = {"algorithm": ALGORITHM, "entry": SIGNATURE_ENTRY,
                                 "covers": "the exact bytes of manifest.json, which lists every other entry with "
                                           "its sha256", "public_key_sha256": public_key_sha256(key.public_key())}
    files["MODEL_CARD.md"] = model_card(manifest).encode()
    manifest["files"] = {name: sha256_bytes(data) for name, data in sorted(files.items())}
    files[MANIFEST_ENTRY] = dumps_json(manifest, sort_keys=True).encode()
    if key is not None:
        files[SIGNATURE_ENTRY] = key.sign(files[MANIFEST_ENTRY])
    from edgekd.package.bundle import tar_bytes

    atomic_write_bytes(out_file, tar_bytes(manifest["name"], files))
    return manifest


# ------------------------------------------------------------------ package verify

def _manifest(bundle: Path, data: bytes) -> dict[str, Any]:
    """The manifest's fields verify uses, type-checked (one line naming the field otherwise)."""
    def bad(what: str) -> EdgekdError:
        return EdgekdError(f"{bundle}: manifest.json {what}; the bundle is corrupt or was edited (repackage it with "
                           "`edgekd build`)")

    try:
        m = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad("is not valid JSON") from None
    for key, kind in (("name", str), ("target", str), ("files", dict), ("vectors", dict), ("tokenizer", dict),
                      ("artifacts", list)):
        if not isinstance(m.get(key), kind):
            raise bad(f"has no {key} of the right type")
    if not all(isinstance(k, str) and isinstance(v, str) and _HEX64.fullmatch(v) for k, v in m["files"].items()):
        raise bad("files is not a map of names to sha256 digests")
    if m["vectors"].get("entry") != VECTORS or VECTORS not in m["files"]:
        raise bad(f"vectors does not name {VECTORS}")
    return m


def _check_magic(bundle: Path, name: str, data: bytes) -> None:
    offset, ident, what = _MAGIC[Path(name).suffix]
    if data[offset : offset + len(ident)] != ident:
        raise EdgekdError(f"{bundle}: {name} is not {what} (file identifier {data[offset:offset + 4]!r}); the bundle "
                          "is corrupt or was edited")


def rerun_vectors(bundle: Path, files: dict[str, bytes], tflm: bool) -> list[VectorCheck]:
    """Rerun vectors.json from the text: edgekd's tokenizer on the bundle's tokenizer files, the table rows, the
    ``.tflite`` on LiteRT's reference kernels (and TFLite Micro: ``tflm``), the ``.pte`` on ExecuTorch."""
    from edgekd.text.export import TFLM_ARENA, _run_litert_int8, int8_rows
    from edgekd.text.tokenize import load_tokenizer

    try:
        vec = json.loads(files[VECTORS])
        rows = vec["vectors"]
        texts = [str(v["text"]) for v in rows]
        want_ids = np.array([v["ids"] for v in rows], dtype=np.int64)
        want_q = np.array([v["int8_embedding"] for v in rows], dtype=np.int64)
        meta = json.loads(files["token_table.json"])
        width = int(meta["width"])
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        raise EdgekdError(f"{bundle}: {VECTORS} or token_table.json is not what edgekd writes; the bundle is corrupt "
                          "or was edited") from None
    table = np.frombuffer(files["token_table.bin"], dtype=np.int8)
    if width <= 0 or table.size % width or sha256_bytes(files["token_table.bin"]) != meta.get("sha256"):
        raise EdgekdError(f"{bundle}: token_table.bin does not match token_table.json (size or sha256)")
    table = table.reshape(-1, width)
    checks = []
    with tempfile.TemporaryDirectory(prefix="edgekd-text-verify-") as tmp:
        root = Path(tmp)
        for name in ("tokenizer.json", "vocab.txt", "student.tflite", "student.pte"):
            if name in files:
                if name.startswith("student"):
                    _check_magic(bundle, name, files[name])
                (root / name).write_bytes(files[name])
        ids = load_tokenizer(root).encode(texts).astype(np.int64)
        differ = int((ids != want_ids).sum()) if ids.shape == want_ids.shape else int(want_ids.size)
        checks.append(VectorCheck("tokenizer.json", "edgekd-tokenizer", differ, "token ids differing", differ == 0,
                                  f"{len(texts)} sentences: text -> ids"))
        if int(ids.max(initial=0)) >= len(table):
            raise EdgekdError(f"{bundle}: the tokenizer gives ids beyond token_table.bin's {len(table)} rows")
        x = int8_rows(table, ids)
        ref = _run_litert_int8(root / "student.tflite", x, reference=True).astype(np.int64)
        diff = int(np.abs(ref - want_q).max())
        checks.append(VectorCheck("student.tflite", "litert-reference", diff, "int8 steps", diff == 0,
                                  "text -> ids -> table rows -> .tflite"))
        if tflm:
            from edgekd.verify.tflm import run_tflm

            y = run_tflm(root / "student.tflite", x, TFLM_ARENA).outputs.reshape(ref.shape).astype(np.int64)
            if all("tflm_int8_embedding" in v for v in rows):  # what TFLite Micro gave at export: byte for byte
                d = int(np.abs(y - np.array([v["tflm_int8_embedding"] for v in rows], dtype=np.int64)).max())
                checks.append(VectorCheck("student.tflite", "tflm", d, "int8 steps", d == 0,
                                          f"TFLite Micro; {int(np.abs(y - want_q).max())} step(s) from LiteRT's "
                                          "reference kernels"))
            else:
                d = int(np.abs(y - want_q).max())
                checks.append(VectorCheck("student.tflite", "tflm", d, "int8 steps", d <= 1,
                                          "TFLite Micro, within 1 step of the reference kernels"))
        if "student.pte" in files and all("pte_embedding" in v for v in rows):
            from edgekd.text.export import pte_rows
            from edgekd.verify.executorch import run_pte

            y = run_pte(root / "student.pte", pte_rows(table, ids, meta["scale"], meta["zero_point"]))
            d = float(np.abs(y - np.array([v["pte_embedding"] for v in rows], dtype=np.float32)).max())
            checks.append(VectorCheck("student.pte", "executorch", d, "absolute", d <= PTE_TOLERANCE))
    if any(n.startswith("c/") for n in files):
        from edgekd.text.ccode import check_bundle_c

        if not all("tflm_int8_embedding" in v for v in rows):
            raise EdgekdError(f"{bundle}: the bundle has generated C but {VECTORS} has no TFLite Micro outputs to "
                              "check it against; the bundle is corrupt or was edited")
        want_tflm = np.array([v["tflm_int8_embedding"] for v in rows], dtype=np.int64)
        checks += check_bundle_c(bundle, files, texts, want_ids, x, want_tflm)
    return checks


def verify_bundle(bundle: Path, prefix: str, files: dict[str, bytes], stream: Any, rerun: bool,
                  signature: tuple[bool, str, str | None]) -> Any:
    """``edgekd package verify`` of a text bundle (its signature already checked): every checksum, no missing or
    extra entry, the canonical archive, then (``rerun``) the vectors. Returns a :class:`PackageCheck`."""
    import os

    from edgekd.package import PackageCheck
    from edgekd.package.bundle import check_listing

    manifest = _manifest(bundle, files[MANIFEST_ENTRY])
    check_listing(bundle, prefix, manifest, files, stream, MANIFEST_ENTRY, SIGNATURE_ENTRY)
    listed = manifest["files"]
    for need in ("student.tflite", "token_table.bin", "token_table.json", "tokenizer.json"):
        if need not in listed:
            raise EdgekdError(f"{bundle}: manifest.json lists no {need}; the bundle is incomplete")
    checks = rerun_vectors(bundle, files, tflm="tflm" in manifest.get("runtimes", [])) if rerun else []
    signed, statement, fingerprint = signature
    return PackageCheck(str(bundle), prefix, manifest["target"], len(files), checks, os.path.getsize(bundle), signed,
                        statement, fingerprint)
