"""Release bundles (``edgekd package``): one reproducible ``.tar.gz`` per build that a device team can trust
and re-check.

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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.export.records import export_folder, load_export
from edgekd.formats import get_format
from edgekd.formats.base import Bundle, VectorCheck
from edgekd.io import atomic_write_bytes, dumps_json, sha256_bytes
from edgekd.package import generated_c
from edgekd.package import vectors as vector_files
from edgekd.package.bundle import (
    GZIP_HEADER,
    MAX_ENTRIES,
    MAX_ENTRY_BYTES,
    MAX_TOTAL_BYTES,
    check_listing,
    read_bundle,
    tar_bytes,
)
from edgekd.package.layouts import build_layouts, check_layouts
from edgekd.package.manifest import (
    FLOAT_TOLERANCE,
    MANIFEST_FORMAT,
    SIGNATURE_ENTRY,
    build_manifest,
    check_vector_sizes,
    parse_manifest,
)
from edgekd.package.model_card import model_card
from edgekd.verify.records import load_verify

MANIFEST_ENTRY = "manifest.json"
_tar_bytes = tar_bytes  # the name the trust tests build crafted bundles with

__all__ = ["FLOAT_TOLERANCE", "GZIP_HEADER", "MANIFEST_FORMAT", "MAX_ENTRIES", "MAX_ENTRY_BYTES", "MAX_TOTAL_BYTES",
           "SIGNATURE_ENTRY", "PackageCheck", "PackageResult", "package_build", "verify_package"]


@dataclass
class PackageResult:
    """What ``edgekd package`` wrote: the bundle and its manifest (signed or not)."""

    bundle: str
    manifest: dict[str, Any]
    sign_key: str | None = None

    @property
    def signed(self) -> bool:
        return "signature" in self.manifest

    def to_json(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "manifest": self.manifest, "signed": self.signed}

    def text(self) -> str:
        files = len(self.manifest["files"]) + 1 + self.signed
        lines = [f"wrote {self.bundle}: {files} files, {self.manifest['vectors']['count']} verification vectors, "
                 f"gates passed: {self.manifest['measured']['passed']}"]
        if self.signed:
            lines.append(f"  signed with {self.sign_key} (ed25519, public key sha256 "
                         f"{self.manifest['signature']['public_key_sha256']}); check with `edgekd package verify "
                         "BUNDLE --key KEY.pub`")
        return "\n".join(lines)


@dataclass
class PackageCheck:
    """What ``edgekd package verify`` found: checksums, signature, every rerun vector check."""

    bundle: str
    name: str
    target: str
    files: int
    vectors: list[VectorCheck]
    size_bytes: int
    signed: bool
    signature: str
    public_key_sha256: str | None
    compared: list[str] = field(default_factory=list)
    layout_files: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.vectors)

    def to_json(self) -> dict[str, Any]:
        out = {"bundle": self.bundle, "name": self.name, "target": self.target, "files": self.files,
               "checksums": "ok", "vectors": [c.to_json() for c in self.vectors], "passed": self.passed,
               "size_bytes": self.size_bytes, "signed": self.signed, "signature": self.signature,
               "public_key_sha256": self.public_key_sha256,
               "executed": "nothing from the bundle: models run on the host runtimes; generated C is regenerated "
                           "by edgekd and only that copy is compiled"}
        if self.compared:
            out["c_sources"] = {"compared": self.compared, "method": "regenerated from the bundle's int8 .tflite by "
                                                                     "edgekd; bundle sources byte-identical"}
        if self.layout_files:
            out["layouts"] = {"compared": self.layout_files,
                              "method": "regenerated by edgekd from the manifest and the verified sources; byte-"
                                        "identical; never built or run"}
        return out

    def text(self) -> str:
        lines = [f"{self.bundle}: {self.files} files, checksums ok", f"  signature: {self.signature}"]
        if self.compared:
            lines.append(f"  C sources: {len(self.compared)} files byte-identical with the C edgekd regenerates "
                         "from the bundle's int8 .tflite")
        if self.layout_files:
            lines.append(f"  library and device files: {len(self.layout_files)} byte-identical with what edgekd "
                         "regenerates (never built or run)")
        lines += [f"  {c.artifact:<20} {c.runtime:<17} max diff {c.max_diff} {c.unit}: "
                  f"{'ok' if c.passed else 'MISMATCH'}" for c in self.vectors]
        return "\n".join(lines)


# ------------------------------------------------------------------ writing a bundle

def package_build(build_dir: str | Path, out_file: str | Path, vectors: int = 16,
                  sign: str | Path | None = None) -> PackageResult:
    """Bundle the verified build in ``build_dir`` into ``out_file`` (.tar.gz).

    ``build_dir`` is an export folder or the ``--out`` of ``edgekd build`` (its ``artifacts/``). ``sign``: an
    Ed25519 private key file (``edgekd keygen``); adds ``manifest.sig`` over manifest.json.
    """
    key = None
    if sign is not None:  # before minutes of work: a bad key file fails now
        from edgekd.signing import load_private_key

        key = load_private_key(sign)
    build = export_folder(build_dir)
    export = load_export(build)
    verify = load_verify(build, export.target)
    files: dict[str, bytes] = {}
    for a in export.artifacts:
        for name in get_format(a.format).package_files(a):
            try:
                files[name] = (build / name).read_bytes()
            except OSError as exc:
                raise EdgekdError(f"{build / name}: cannot read it ({exc.strerror or type(exc).__name__}); "
                                  "re-run `edgekd export`") from None
        if sha256_bytes(files[a.path]) != a.sha256:
            raise EdgekdError(f"{build / a.path}: changed since export (sha256 differs); re-run `edgekd export`")
    c_files, boards = generated_c.collect(build, verify)
    files |= c_files
    vec = vector_files.make_vectors(build, export, vectors)
    files |= vec
    manifest = build_manifest(export, verify, vec, len(vec["vectors/labels_u8.bin"]))
    if boards:
        manifest["generated_c"] = generated_c.manifest_section(c_files, boards)
    layout_files, sections = build_layouts(manifest, files, build)  # CMake/Arduino library, on-device runner
    files |= layout_files
    if sections:
        manifest["layouts"] = sections
    if key is not None:
        from edgekd.signing import ALGORITHM, public_key_sha256

        manifest["signature"] = {"algorithm": ALGORITHM, "entry": SIGNATURE_ENTRY,
                                 "covers": "the exact bytes of manifest.json, which lists every other entry with "
                                           "its sha256",
                                 "public_key_sha256": public_key_sha256(key.public_key())}
    manifest["files"] = {name: sha256_bytes(data) for name, data in sorted(files.items())}
    files["MODEL_CARD.md"] = model_card(manifest, export.sample_shape).encode()
    manifest["files"]["MODEL_CARD.md"] = sha256_bytes(files["MODEL_CARD.md"])
    files[MANIFEST_ENTRY] = dumps_json(manifest, sort_keys=True).encode()
    if key is not None:
        files[SIGNATURE_ENTRY] = key.sign(files[MANIFEST_ENTRY])
    atomic_write_bytes(out_file, tar_bytes(manifest["name"], files))
    return PackageResult(str(out_file), manifest, str(sign) if sign is not None else None)


# ------------------------------------------------------------------ verify

#: Bundles of other kinds, by their manifest's format: the module whose ``verify_bundle`` checks one.
BUNDLE_KINDS = {"edgekd-text-package/1": "edgekd.text.bundle"}


def _bundle_kind(data: bytes) -> str | None:
    """The module that checks a bundle of another kind, by its manifest's format (None: an image bundle)."""
    import json

    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None  # parse_manifest names the problem
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    return BUNDLE_KINDS.get(fmt) if isinstance(fmt, str) else None


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
    if not check_signature(pub, files[MANIFEST_ENTRY], files[SIGNATURE_ENTRY]):
        raise EdgekdError(f"{bundle}: the signature does not match --key {key} (sha256 {fingerprint[:16]}...): "
                          "the bundle was modified after signing, or signed with another key")
    return True, f"ed25519 signature valid for --key {key} (public key sha256 {fingerprint})", fingerprint


def verify_package(bundle: str | Path, rerun: bool = True, key: str | Path | None = None) -> PackageCheck:
    """Check a bundle: its signature (``key``: an Ed25519 public key), the canonical archive, every checksum, no
    missing or extra files, and (``rerun``) the vectors on host runtimes and edgekd's regenerated C."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise EdgekdError(f"{bundle}: no such bundle file")
    prefix, files, stream = read_bundle(bundle)
    if MANIFEST_ENTRY not in files:
        raise EdgekdError(f"{bundle}: no manifest.json in the bundle")
    signed, statement, fingerprint = _signature(bundle, files, key)  # before trusting anything the manifest says
    kind = _bundle_kind(files[MANIFEST_ENTRY])
    if kind is not None:  # another kind of bundle (text embeddings) checks its own manifest and vectors
        import importlib

        return importlib.import_module(kind).verify_bundle(bundle, prefix, files, stream, rerun,
                                                           (signed, statement, fingerprint))
    manifest = parse_manifest(bundle, files[MANIFEST_ENTRY])
    check_listing(bundle, prefix, manifest, files, stream, MANIFEST_ENTRY, SIGNATURE_ENTRY)
    check_vector_sizes(bundle, manifest, files)
    opened = Bundle(bundle, files, manifest)
    checks: list[VectorCheck] = []
    if rerun:
        checks = vector_files.rerun(opened)
        c_check = generated_c.check(opened)
        if c_check is not None:
            checks.append(c_check)
    # after the generated C was checked (the library copies it): regenerated and compared, never run
    layout_files = check_layouts(opened)
    return PackageCheck(str(bundle), prefix, manifest["target"], len(files), checks, os.path.getsize(bundle), signed,
                        statement, fingerprint, sorted(opened.compared), layout_files)

