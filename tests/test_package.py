"""Release bundles: reproducible bytes, manifest, vectors rerun on LiteRT and TFLite Micro, tamper rejection,
bundle C never compiled (edgekd regenerates it), limits on hostile archives, damaged manifests and models."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import fast_gz, tar_gz
from cli_helpers import one_line_exit_2
from click.testing import CliRunner

import edgekd.package as package
from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.package import package_build, verify_package

PREFIX = "edgekd-nrf52840-dk-digits"


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


@pytest.fixture(scope="module")
def verified_build(mcu_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MCU build verified on the host and on the emulated board (QEMU): its bundle carries the generated C."""
    from edgekd.verify import verify_build

    build = tmp_path_factory.mktemp("pkg") / "build"
    shutil.copytree(mcu_build, build)
    verify_build("nrf52840-dk", build, limit=40, emulator="qemu", emulator_limit=20)
    return build


@pytest.fixture(scope="module")
def bundle(verified_build: Path) -> Path:
    out = verified_build.parent / "bundle.tar.gz"
    package_build(verified_build, out, vectors=8)
    return out


@pytest.fixture(scope="module")
def host_build(mcu_host_verified: Path) -> Path:
    """The MCU build verified on the host runtimes only (no QEMU): what the archive and manifest checks need."""
    return mcu_host_verified


@pytest.fixture(scope="module")
def host_bundle(host_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg-host") / "bundle.tar.gz"
    package_build(host_build, out, vectors=8)
    return out


def _entries(src: Path) -> dict[str, bytes]:
    with tarfile.open(src, "r:gz") as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}


def _rehash(files: dict[str, bytes], edit: Callable[[dict], None] | None = None) -> None:
    """What someone tampering with a bundle does next: recompute the manifest's sha256 list (and edit it)."""
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {n: hashlib.sha256(files[n]).hexdigest() for n in manifest["files"] if n in files}
    if edit:
        edit(manifest)
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def _rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None], rehash: bool = False,
             edit: Callable[[dict], None] | None = None) -> Path:
    """Copy a bundle entry by entry as edgekd would write it (canonical tar, edgekd's gzip header), letting
    ``change(name, data)`` alter or drop (None) entries; ``rehash`` re-hashes the manifest afterwards."""
    files = {}
    for name, data in _entries(src).items():
        new = change(name, data)
        if new is not None:
            files[name] = new
    if rehash or edit:
        _rehash(files, edit)
    dst.write_bytes(tar_gz(PREFIX, files))
    return dst


# ------------------------------------------------------------------ building and rerunning

@pytest.mark.emulator  # the bundle's generated C comes from verify --emulator qemu
def test_bundle_is_reproducible_and_complete(verified_build: Path, bundle: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.tar.gz"
    manifest = package_build(verified_build, again, vectors=8).manifest
    assert again.read_bytes() == bundle.read_bytes()
    with tarfile.open(bundle, "r:gz") as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers()}
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in tar.getmembers())
    assert {"manifest.json", "MODEL_CARD.md", "model_int8.tflite", "model_data.c", "model_data.h",
            "vectors/input_int8.bin", "vectors/expected_model_int8_int8.bin"} <= names
    assert manifest["target"] == "nrf52840-dk" and manifest["vectors"]["count"] == 8
    tfl = next(a for a in manifest["artifacts"] if a["path"] == "model_int8.tflite")
    assert tfl["quantization"]["input"]["dtype"] == "int8" and manifest["preprocessing"]["layout"] == "NHWC"
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["measured"]["passed"] is True and manifest["versions"]["torch"].startswith("2.13")
    # The generated C and the firmware it was verified with on the emulated board; no host binary, no map.
    assert {"c/model.c", "c/model.h", "c/kernels.c", "c/kernels.h", "c/startup.S", "c/board.c",
            "c/nrf52840-dk.ld", "c/nrf52840-dk.elf"} <= names
    assert not any(n.endswith((".map", "host_runner")) for n in names)
    board = manifest["generated_c"]["boards"][0]
    assert board["elf"] == "c/nrf52840-dk.elf" and board["emulator"] == "qemu-system-arm/mps2-an386"
    assert board["bit_exact_vs_host"] is True and 0 < board["arena_bytes"] < board["tflm_arena_bytes"]
    assert (board["machine"], board["flash_budget_bytes"], board["ram_budget_bytes"]) == ("mps2-an386", 262144, 65536)
    assert "c/nrf52840-dk.elf" not in manifest["generated_c"]["sources"]
    # Nothing timed on the host: the runs keep their keys, without a latency.
    runs = manifest["measured"]["runs"]
    assert runs and all(r["latency_ms"] is None and "not in the bundle" in r["latency_kind"] for r in runs)
    card = _entries(bundle)["MODEL_CARD.md"].decode()
    assert "host latency" not in card and "Host timings are left out" in card and "signature" not in manifest


@pytest.mark.emulator  # the bundle's generated C comes from verify --emulator qemu
def test_package_verify_reruns_vectors_on_litert_and_tflm(bundle: Path) -> None:
    result = verify_package(bundle).to_json()
    runtimes = {c["runtime"]: c for c in result["vectors"]}
    assert set(runtimes) == {"litert-reference", "tflm", "edgekd-c"} and result["passed"]
    assert all(c["max_diff"] == 0 for c in result["vectors"])
    assert runtimes["edgekd-c"]["method"] == ("regenerated from model_int8.tflite by edgekd, bundle sources "
                                              "byte-identical, run with host gcc")
    assert {"c/model.c", "c/kernels.c", "c/host_main.c", "c/codegen.json", "c/nrf52840-dk.ld", "model_data.c",
            "model_data.h"} <= set(result["c_sources"]["compared"])
    assert result["signed"] is False and result["signature"] == "unsigned: checked only against its own manifest"
    cli = CliRunner().invoke(main, ["package", "verify", str(bundle), "--json"])
    assert cli.exit_code == 0 and json.loads(cli.output[cli.output.index("{"):])["passed"] is True
    text = CliRunner().invoke(main, ["package", "verify", str(bundle)])
    assert text.exit_code == 0 and "signature: unsigned: checked only against its own manifest" in text.output


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
@pytest.mark.emulator  # the bundle's generated C comes from verify --emulator qemu
def test_same_build_repackaged_after_reverify_is_byte_identical(verified_build: Path, tmp_path: Path) -> None:
    """verify re-measures host latency; none of it reaches the bundle, so the bundle does not change."""
    from edgekd.verify import verify_build

    build = tmp_path / "build"
    shutil.copytree(verified_build, build)
    first = tmp_path / "first.tar.gz"
    package_build(build, first, vectors=8)
    before = json.loads((build / "verify.json").read_text())
    verify_build("nrf52840-dk", build, limit=40, emulator="qemu", emulator_limit=20)
    after = json.loads((build / "verify.json").read_text())
    assert [r["latency"] for r in before["runs"]] != [r["latency"] for r in after["runs"]]  # really re-measured
    second = tmp_path / "second.tar.gz"
    package_build(build, second, vectors=8)
    assert second.read_bytes() == first.read_bytes()


# ------------------------------------------------------------------ the bundle's C is never compiled

_CONSTRUCTOR = """
#include <stdlib.h>
__attribute__((constructor)) static void edgekd_payload(void) {{
  if (system("touch {marker}") != 0) {{ }}
}}
"""


@pytest.mark.emulator  # the bundle's generated C comes from verify --emulator qemu
def test_verify_never_compiles_bundle_c(bundle: Path, tmp_path: Path) -> None:
    from edgekd.codegen import compile_host, run_host

    marker = tmp_path / "MARKER"
    payload = _CONSTRUCTOR.format(marker=marker).encode()
    evil = _rewrite(bundle, tmp_path / "evil.tar.gz",
                    lambda n, d: d + payload if n == "c/model.c" else d, rehash=True)
    # The payload is real: built the way verify used to build the bundle's sources, it runs.
    src = tmp_path / "src"
    src.mkdir()
    for name, data in _entries(evil).items():
        if name.startswith("c/") and name.endswith((".c", ".h")):
            (src / name[2:]).write_bytes(data)
    run_host(compile_host(src, tmp_path / "runner"), np.zeros((1, 8, 8, 1), np.int8), 10)
    assert marker.exists()
    marker.unlink()
    elf = _rewrite(bundle, tmp_path / "elf.tar.gz",  # the firmware cannot be regenerated: its sha256 guards it
                   lambda n, d: d[:100] + bytes([d[100] ^ 1]) + d[101:] if n.endswith(".elf") else d)
    with pytest.raises(EdgekdError, match="checksum mismatch: c/nrf52840-dk.elf"):
        verify_package(elf)

    with pytest.raises(EdgekdError, match="c/model.c differs from the C edgekd generates from model_int8.tflite; "
                                          "the bundle was modified"):
        verify_package(evil)
    line = one_line_exit_2(["package", "verify", str(evil), "--json"])
    assert "c/model.c differs" in line and not marker.exists()

    # The same for the TFLite Micro array, an added source, and a changed linker script.
    for name, change, pattern in (
            ("model_data.c", lambda d: d + payload, "model_data.c differs"),
            ("c/nrf52840-dk.ld", lambda d: d.replace(b"LENGTH = 262144", b"LENGTH = 262148"),
             "c/nrf52840-dk.ld differs")):
        bad = _rewrite(bundle, tmp_path / "bad.tar.gz", lambda n, d, name=name, change=change:
                       change(d) if n == name else d, rehash=True)
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(bad)

    def add_source(m: dict) -> None:
        m["generated_c"]["sources"].append("c/extra.c")
        m["files"]["c/extra.c"] = hashlib.sha256(payload).hexdigest()

    files = _entries(bundle)
    files["c/extra.c"] = payload
    _rehash(files, add_source)
    extra = tmp_path / "extra.tar.gz"
    extra.write_bytes(tar_gz(PREFIX, files))
    with pytest.raises(EdgekdError, match="c/extra.c is not a file edgekd generates"):
        verify_package(extra)
    assert not marker.exists()


# ------------------------------------------------------------------ tampering

def test_tampered_missing_and_extra_files_are_rejected(host_bundle: Path, tmp_path: Path) -> None:
    bundle = host_bundle
    bad = _rewrite(bundle, tmp_path / "tampered.tar.gz",
                   lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n.endswith(".tflite") else d)
    with pytest.raises(EdgekdError, match="checksum mismatch: model_int8.tflite"):
        verify_package(bad)
    gone = _rewrite(bundle, tmp_path / "missing.tar.gz", lambda n, d: None if n == "model_data.h" else d)
    with pytest.raises(EdgekdError, match="missing: model_data.h"):
        verify_package(gone)
    assert "missing: model_data.h" in one_line_exit_2(["package", "verify", str(gone)])


def _with_extra_member(bundle: Path, out: Path, info: tarfile.TarInfo, data: bytes | None = None) -> Path:
    raw = io.BytesIO()
    with tarfile.open(bundle, "r:gz") as tin, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            tout.addfile(m, tin.extractfile(m))
        tout.addfile(info, io.BytesIO(data) if data is not None else None)
    out.write_bytes(fast_gz(raw.getvalue()))
    return out


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_entries_escaping_the_bundle_folder_are_rejected(host_bundle: Path, tmp_path: Path) -> None:
    bundle = host_bundle
    def add(name: str, kind: bytes = tarfile.REGTYPE) -> Path:
        evil = tarfile.TarInfo(name)
        evil.type = kind
        if kind == tarfile.SYMTYPE:
            evil.linkname = "/etc/passwd"
            return _with_extra_member(bundle, tmp_path / "x.tar.gz", evil)
        evil.size = 3
        return _with_extra_member(bundle, tmp_path / "x.tar.gz", evil, b"bad")

    for name, pattern in ((f"{PREFIX}/../../evil.sh", "escapes"), ("/tmp/evil.sh", "escapes"),
                          ("other/evil.sh", "outside the bundle folder"),
                          (f"{PREFIX}/model_int8.tflite", "appears twice")):
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(add(name))
    with pytest.raises(EdgekdError, match="not a regular file"):
        verify_package(add(f"{PREFIX}/link", tarfile.SYMTYPE))
    with pytest.raises(EdgekdError, match="not in the manifest: extra.txt"):
        verify_package(add(f"{PREFIX}/extra.txt"))
    assert not (tmp_path.parent / "evil.sh").exists()


def test_non_canonical_archives_are_rejected(host_bundle: Path, tmp_path: Path) -> None:
    bundle = host_bundle
    """Same files, other tar or gzip bytes: a changed header field or a re-compression is refused."""
    raw = gzip.decompress(bundle.read_bytes())
    # mtime of the first entry (octal field at offset 136 of its header), checksum fixed up
    header = bytearray(raw[:512])
    header[136:148] = b"00000000001\x00"
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\x00 ".encode()
    touched = tmp_path / "mtime.tar.gz"
    touched.write_bytes(fast_gz(bytes(header) + raw[512:]))
    with tarfile.open(touched, "r:gz") as tar:
        assert tar.getmembers()[0].mtime == 1  # still a valid tar
    with pytest.raises(EdgekdError, match="not the canonical one edgekd writes"):
        verify_package(touched)
    renamed = bytearray(bundle.read_bytes())
    renamed[4] = 1  # gzip mtime
    (tmp_path / "gzmtime.tar.gz").write_bytes(bytes(renamed))
    with pytest.raises(EdgekdError, match="gzip header is not the one edgekd writes"):
        verify_package(tmp_path / "gzmtime.tar.gz")
    padded = tmp_path / "padded.tar.gz"
    padded.write_bytes(fast_gz(raw + b"\0" * 512))
    with pytest.raises(EdgekdError, match="not the canonical one"):
        verify_package(padded)


# ------------------------------------------------------------------ hostile archives

def test_trailing_bytes_and_extra_gzip_members_are_rejected(host_bundle: Path, tmp_path: Path) -> None:
    bundle = host_bundle
    data = bundle.read_bytes()
    (tmp_path / "trailing.tar.gz").write_bytes(data + b"#!/bin/sh\necho hi\n")
    with pytest.raises(EdgekdError, match="bytes after the end of its gzip stream"):
        verify_package(tmp_path / "trailing.tar.gz")
    (tmp_path / "members.tar.gz").write_bytes(data + fast_gz(b"x" * 1000))
    with pytest.raises(EdgekdError, match="more than one gzip member"):
        verify_package(tmp_path / "members.tar.gz")
    (tmp_path / "short.tar.gz").write_bytes(data[:-20])
    with pytest.raises(EdgekdError, match="ends early|truncated|checksum"):
        verify_package(tmp_path / "short.tar.gz")
    (tmp_path / "plain.tar").write_bytes(gzip.decompress(data))
    assert "not a gzip file" in one_line_exit_2(["package", "verify", str(tmp_path / "plain.tar")])


_HUGE = """
import sys, time
t = time.perf_counter()
from edgekd.errors import EdgekdError
from edgekd.package import verify_package
try:
    verify_package(sys.argv[1])
    print("accepted")
except EdgekdError as e:
    print("refused:", e)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # peak RSS of this program
print(time.perf_counter() - t, hwm.split()[1])
"""


def test_a_3_gib_entry_is_refused_before_reading(tmp_path: Path) -> None:
    """A 3.7 MB .tgz whose header declares 3 GiB: refused from the header, in little time and memory."""
    info = tarfile.TarInfo(f"{PREFIX}/model_int8.tflite")
    info.size = 3 << 30
    evil = tmp_path / "huge.tar.gz"
    with evil.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:  # edgekd's header
        gz.write(info.tobuf(tarfile.PAX_FORMAT))
        for _ in range(256):  # the first 256 MiB of the "3 GiB", then the stream just ends
            gz.write(bytes(1 << 20))
    assert evil.stat().st_size < 4e6
    proc = subprocess.run([sys.executable, "-c", _HUGE, str(evil)], capture_output=True, text=True, timeout=120)
    out, stats = proc.stdout.strip().splitlines()
    seconds, rss_kib = float(stats.split()[0]), int(stats.split()[1])
    assert out.startswith("refused:") and "declares 3,221,225,472 bytes" in out, out
    assert seconds < 10 and rss_kib < 300 * 1024, (seconds, rss_kib)


def test_entry_count_total_size_and_header_size_are_capped(host_bundle: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = host_bundle
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(package.MAX_ENTRIES + 1):
            tar.addfile(tarfile.TarInfo(f"{PREFIX}/f{i:05d}"), io.BytesIO(b""))
    many = tmp_path / "many.tar.gz"
    many.write_bytes(fast_gz(raw.getvalue()))
    t = time.perf_counter()
    with pytest.raises(EdgekdError, match="more than 4,096 entries"):
        verify_package(many)
    assert time.perf_counter() - t < 10
    # A pax header of 2 MiB is read by tarfile itself before any size check: the stream stops it.
    info = tarfile.TarInfo(f"{PREFIX}/manifest.json")
    info.pax_headers = {"comment": "x" * (2 << 20)}
    with pytest.raises(EdgekdError, match="tar headers run past 1,048,576 bytes"):
        verify_package(_with_extra_member(bundle, tmp_path / "pax.tar.gz", info, b""))
    # The total, on the real bundle (its entries add up to well over 64 KiB).
    monkeypatch.setattr(package.bundle, "MAX_TOTAL_BYTES", 64 << 10)
    with pytest.raises(EdgekdError, match="entries add up to more than 65,536 bytes"):
        verify_package(bundle)


# ------------------------------------------------------------------ damaged manifests and models

def _manifest_bytes(bundle: Path, tmp_path: Path, data: bytes) -> Path:
    return _rewrite(bundle, tmp_path / "m.tar.gz", lambda n, d: data if n == "manifest.json" else d)


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_damaged_manifests_are_one_line_errors(host_bundle: Path, tmp_path: Path) -> None:
    bundle = host_bundle
    good = _entries(bundle)["manifest.json"]
    for data, pattern in ((good[:len(good) // 2], "is not valid JSON"),
                          (b"[1, 2]", "holds an array, expected an object"),
                          (b"\xff\xfe garbage", "is not valid JSON")):
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(_manifest_bytes(bundle, tmp_path, data))
    m = json.loads(good)
    for edit, pattern in ((lambda m: m.pop("files"), "has no files"),
                          (lambda m: m.update(files=list(m["files"])), "files is an array, expected an object"),
                          (lambda m: m["vectors"].update(count="8"), "vectors.count is a string"),
                          (lambda m: m["vectors"].update(count=True), "vectors.count is true/false"),
                          (lambda m: m["preprocessing"].update(input_shape=[8, -1]), "input_shape is not a list"),
                          (lambda m: m["artifacts"][0].update(path=7), r"artifacts\[0\].path is an integer"),
                          (lambda m: m["artifacts"][0]["quantization"]["output"].pop("scale"),
                           r"has no artifacts\[0\].quantization.output.scale"),
                          (lambda m: m.update(name="../x"), "is not a bundle folder name")):
        changed = json.loads(good)
        edit(changed)
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(_manifest_bytes(bundle, tmp_path, json.dumps(changed).encode()))
    assert m["artifacts"][0]["format"] == "tflite"
    line = one_line_exit_2(["package", "verify", str(_manifest_bytes(bundle, tmp_path, good[:100]))])
    assert "manifest.json is not valid JSON" in line


def test_wrong_vector_count_and_missing_vectors(host_bundle: Path, tmp_path: Path) -> None:
    bundle = host_bundle
    count = _rewrite(bundle, tmp_path / "count.tar.gz", lambda n, d: d,
                     edit=lambda m: m["vectors"].update(count=9))
    with pytest.raises(EdgekdError, match=r"vectors/input_f32.bin holds 2,048 bytes, but vectors.count 9"):
        verify_package(count, rerun=False)
    short = _rewrite(bundle, tmp_path / "short.tar.gz",
                     lambda n, d: d[:-10] if n == "vectors/expected_model_int8_int8.bin" else d, rehash=True)
    with pytest.raises(EdgekdError, match="expected_model_int8_int8.bin holds 70 bytes"):
        verify_package(short)

    def drop(m: dict) -> None:
        m["vectors"]["expected"].remove("vectors/expected_model_int8_int8.bin")

    gone = _rewrite(bundle, tmp_path / "gone.tar.gz",
                    lambda n, d: None if n == "vectors/expected_model_int8_int8.bin" else d, rehash=True, edit=drop)
    with pytest.raises(EdgekdError, match="vectors/expected_model_int8_int8.bin is missing but its artifacts need it"):
        verify_package(gone)


def test_truncated_or_garbage_tflite_is_one_line(host_bundle: Path, tmp_path: Path) -> None:
    bundle = host_bundle
    rng = np.random.default_rng(0)
    for change, pattern in ((lambda d: d[: len(d) // 2], "model_int8.tflite does not load or run on LiteRT"),
                            (lambda d: rng.integers(0, 256, len(d), dtype=np.uint8).tobytes(),
                             "model_int8.tflite is not a TensorFlow Lite flatbuffer"),
                            (lambda d: d[:64], "model_int8.tflite")):
        bad = _rewrite(bundle, tmp_path / "bad.tar.gz",
                       lambda n, d, change=change: change(d) if n == "model_int8.tflite" else d, rehash=True)
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(bad)
    assert "model_int8.tflite" in one_line_exit_2(["package", "verify", str(bad)])


@pytest.mark.slow
def test_truncated_or_garbage_pte_is_one_line(pi_build: Path, tmp_path: Path) -> None:
    from edgekd.verify import verify_build

    build = tmp_path / "pi"
    shutil.copytree(pi_build, build)
    verify_build("raspberry-pi-4b", build, limit=20)
    good = tmp_path / "pi.tar.gz"
    package_build(build, good, vectors=4)
    assert {c["runtime"] for c in verify_package(good).to_json()["vectors"]} >= {"executorch", "litert-reference"}
    prefix = "edgekd-raspberry-pi-4b-digits"
    files = _entries(good)
    # model_fp32.tflite and model_fp32.pte each keep their own expected outputs (one used to overwrite the other)
    assert {"vectors/expected_model_fp32_f32.bin", "vectors/expected_model_fp32_pte_f32.bin",
            "vectors/expected_model_int8_pte_f32.bin"} <= set(files)
    pte = next(n for n in files if n.endswith("_int8.pte"))
    for data, pattern in ((files[pte][: len(files[pte]) // 2], f"{pte} does not load or run on ExecuTorch"),
                          (b"\x00" * 4096, f"{pte} is not an ExecuTorch program")):
        bad = dict(files, **{pte: data})
        _rehash(bad)
        (tmp_path / "bad.tar.gz").write_bytes(tar_gz(prefix, bad))
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(tmp_path / "bad.tar.gz")


# ------------------------------------------------------------------ packaging damaged builds

def test_package_needs_a_verified_build(mcu_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    shutil.copytree(mcu_build, build)
    (build / "verify.json").unlink(missing_ok=True)
    r = CliRunner().invoke(main, ["package", str(build), "--out", str(tmp_path / "x.tar.gz")])
    assert r.exit_code == 2 and "no verify.json" in r.output
    assert not (tmp_path / "x.tar.gz").exists()


def test_package_refuses_corrupt_records_in_one_line(host_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    shutil.copytree(host_build, build)
    out = str(tmp_path / "x.tar.gz")
    verify_json = (build / "verify.json").read_text()
    (build / "verify.json").write_text(verify_json[:200])
    assert "verify.json: the verification record is not valid JSON" in one_line_exit_2(["package", str(build),
                                                                                         "--out", out])
    (build / "verify.json").write_text(json.dumps({"emulated": [], "runs": 3}))
    assert "verify.json: lacks 'target'" in one_line_exit_2(["package", str(build), "--out", out])
    (build / "verify.json").write_text(verify_json)
    export_json = (build / "export.json").read_text()
    (build / "export.json").write_text(export_json[: len(export_json) // 2])
    assert "export.json" in one_line_exit_2(["package", str(build), "--out", out])
    assert not Path(out).exists()


def test_a_build_folder_is_packaged_and_its_card_states_the_layout(host_build: Path, tmp_path: Path) -> None:
    """`edgekd package BUILD` on an `edgekd build --out BUILD` folder (export in BUILD/artifacts) works, and the
    card gives one NHWC sample as height, width, channels."""
    build = tmp_path / "BUILD"
    shutil.copytree(host_build, build / "artifacts")
    out = tmp_path / "b.tar.gz"
    r = CliRunner().invoke(main, ["package", str(build), "--out", str(out), "--vectors", "4"])
    assert r.exit_code == 0, r.output
    card = _entries(out)["MODEL_CARD.md"].decode()
    assert "Input layout: NHWC, one sample [8, 8, 1] (height, width, channels;" in card
    assert "channels-first, [1, 8, 8])" in card
    missing = CliRunner().invoke(main, ["package", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.tar.gz")])
    assert missing.exit_code == 2 and "no export.json" in missing.output


@pytest.mark.emulator  # the bundle's generated C comes from verify --emulator qemu
def test_generated_c_that_is_not_bit_exact_is_not_bundled(verified_build: Path, tmp_path: Path) -> None:
    import dataclasses

    from edgekd.package import generated_c
    from edgekd.verify.records import load_verify

    record = load_verify(verified_build)
    files, boards = generated_c.collect(verified_build, record)
    assert files and [b["bit_exact_vs_host"] for b in boards] == [True]
    off = dataclasses.replace(record, emulated=[dataclasses.replace(r, bit_exact_vs_host=False)
                                                for r in record.emulated])
    assert generated_c.collect(verified_build, off) == ({}, [])
    build = tmp_path / "b"
    shutil.copytree(verified_build, build)
    shutil.rmtree(build / "c")
    assert "the generated C that verify.json records is gone" in one_line_exit_2(
        ["package", str(build), "--out", str(tmp_path / "x.tar.gz")])
