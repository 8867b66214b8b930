"""Release bundles: reproducible bytes, manifest, vectors rerun on LiteRT and TFLite Micro, tamper rejection."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.package import package_build, verify_package


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


@pytest.fixture(scope="module")
def verified_build(mcu_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
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


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a bundle entry by entry, letting ``change(info, data)`` alter, drop (None) or add entries."""
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            result = change(m, data)
            if result is not None:
                m.size = len(result)
                tout.addfile(m, io.BytesIO(result))


def test_bundle_is_reproducible_and_complete(verified_build: Path, bundle: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.tar.gz"
    manifest = package_build(verified_build, again, vectors=8)
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
    assert "c/nrf52840-dk.elf" not in manifest["generated_c"]["sources"]


def test_package_verify_reruns_vectors_on_litert_and_tflm(bundle: Path) -> None:
    result = verify_package(bundle)
    runtimes = {c["runtime"]: c for c in result["vectors"]}
    assert set(runtimes) == {"litert-reference", "tflm", "edgekd-c"} and result["passed"]
    assert all(c["max_diff"] == 0 for c in result["vectors"])
    cli = CliRunner().invoke(main, ["package", "verify", str(bundle), "--json"])
    assert cli.exit_code == 0 and json.loads(cli.output[cli.output.index("{"):])["passed"] is True


def test_tampered_missing_and_extra_files_are_rejected(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "tampered.tar.gz"
    _rewrite(bundle, bad, lambda m, d: d[:-1] + bytes([d[-1] ^ 1]) if m.name.endswith(".tflite") else d)
    with pytest.raises(EdgekdError, match="checksum mismatch: model_int8.tflite"):
        verify_package(bad)
    elf = tmp_path / "elf.tar.gz"
    _rewrite(bundle, elf, lambda m, d: d[:100] + bytes([d[100] ^ 1]) + d[101:] if m.name.endswith(".elf") else d)
    with pytest.raises(EdgekdError, match="checksum mismatch: c/nrf52840-dk.elf"):
        verify_package(elf)
    gone = tmp_path / "missing.tar.gz"
    _rewrite(bundle, gone, lambda m, d: None if m.name.endswith("model_data.h") else d)
    with pytest.raises(EdgekdError, match="missing: model_data.h"):
        verify_package(gone)
    cli = CliRunner().invoke(main, ["package", "verify", str(gone)])
    assert cli.exit_code == 2 and "missing: model_data.h" in cli.output


def test_entries_escaping_the_bundle_folder_are_rejected(bundle: Path, tmp_path: Path) -> None:
    def add(name: str, kind: bytes = tarfile.REGTYPE) -> Path:
        out = tmp_path / f"{abs(hash(name))}.tar.gz"
        with tarfile.open(bundle, "r:gz") as tin, tarfile.open(out, "w:gz") as tout:
            for m in tin.getmembers():
                tout.addfile(m, tin.extractfile(m))
            evil = tarfile.TarInfo(name)
            evil.type = kind
            if kind == tarfile.SYMTYPE:
                evil.linkname = "/etc/passwd"
                tout.addfile(evil)
            else:
                evil.size = 3
                tout.addfile(evil, io.BytesIO(b"bad"))
        return out

    prefix = "edgekd-nrf52840-dk-digits"
    for name, pattern in ((f"{prefix}/../../evil.sh", "escapes"), ("/tmp/evil.sh", "escapes"),
                          ("other/evil.sh", "outside the bundle folder")):
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(add(name))
    with pytest.raises(EdgekdError, match="not a regular file"):
        verify_package(add(f"{prefix}/link", tarfile.SYMTYPE))
    with pytest.raises(EdgekdError, match="not in the manifest: extra.txt"):
        verify_package(add(f"{prefix}/extra.txt"))
    assert not (tmp_path.parent / "evil.sh").exists()


def test_package_needs_a_verified_build(mcu_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    shutil.copytree(mcu_build, build)
    (build / "verify.json").unlink(missing_ok=True)
    r = CliRunner().invoke(main, ["package", str(build), "--out", str(tmp_path / "x.tar.gz")])
    assert r.exit_code == 2 and "no verify.json" in r.output
    assert not (tmp_path / "x.tar.gz").exists()
