"""Bundles that drop into the user's own build: the CMake library (built by a separate downstream project with
arm-none-eabi-gcc, run on QEMU, outputs byte for byte), the Arduino library (its example compiled for the host
against a stub Arduino.h), the Pi / phone files (run_vectors under qemu-aarch64), and verify regenerating all of
them without ever running one."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.package import _tar_bytes, package_build, verify_package

PREFIX = "edgekd-nrf52840-dk-digits"
VECTORS = 8
pytestmark = pytest.mark.emulator  # the generated C comes from `verify --emulator qemu`


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


@pytest.fixture(scope="module")
def mcu_bundle(mcu_build: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A verified nrf52840-dk build (generated C run on QEMU) and its bundle."""
    from edgekd.verify import verify_build

    build = tmp_path_factory.mktemp("lib") / "build"
    shutil.copytree(mcu_build, build)
    verify_build("nrf52840-dk", build, limit=40, emulator="qemu", emulator_limit=VECTORS, plot=False)
    out = build.parent / "bundle.tar.gz"
    package_build(build, out, vectors=VECTORS)
    return build, out


@pytest.fixture(scope="module")
def extracted(mcu_bundle: tuple[Path, Path]) -> Path:
    dest = mcu_bundle[1].parent / "extracted"
    with tarfile.open(mcu_bundle[1], "r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest / PREFIX


def _entries(src: Path) -> dict[str, bytes]:
    with tarfile.open(src, "r:gz") as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _rehash(files: dict[str, bytes]) -> None:
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {n: hashlib.sha256(d).hexdigest() for n, d in files.items() if n != "manifest.json"}
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()


# ------------------------------------------------------------------ layout and verify

def test_library_layout_is_listed_hashed_and_regenerated(mcu_bundle: tuple[Path, Path], tmp_path: Path) -> None:
    build, bundle = mcu_bundle
    files = _entries(bundle)
    manifest = json.loads(files["manifest.json"])
    section = manifest["layouts"]["library"]
    assert "device" not in manifest["layouts"]  # a microcontroller bundle: no Pi/phone runner
    lib = f"arduino/{PREFIX}"
    for name in ("library/CMakeLists.txt", "library/edgekd-config.cmake", "library/include/edgekd_model.h",
                 "library/src/edgekd_model_api.c", "board/toolchain.cmake", "board/nrf52840-dk.ld", "example/main.c",
                 f"{lib}/library.properties", f"{lib}/examples/edgekd_selftest/edgekd_selftest.ino"):
        assert name in section["regenerated"] and manifest["files"][name] == hashlib.sha256(files[name]).hexdigest()
    assert section["cpu_flags"] == ["-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
    # the same generated C in every layout; board support is the board build's own startup and linker script
    for src in ("model.c", "kernels.c", "kernels.h"):
        assert files[f"library/src/{src}"] == files[f"c/{src}"] == files[f"{lib}/src/{src}"]
    assert files["board/startup.S"] == files["c/startup.S"]
    assert files["board/nrf52840-dk.ld"] == files["c/nrf52840-dk.ld"]
    cmake = files["library/edgekd-model.cmake"].decode()
    assert "add_library(edgekd::model ALIAS edgekd_model)" in cmake
    assert 'set(EDGEKD_CPU_FLAGS -mthumb -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard)' in cmake
    # the C API's constants are the manifest's
    api = files["library/include/edgekd_model.h"].decode() + files["library/src/edgekd_model_api.c"].decode()
    norm = manifest["preprocessing"]["normalization"]
    assert f"{norm['mean'][0]!r}f" in api and f"{norm['std'][0]!r}f" in api
    assert "#define EDGEKD_NUM_CLASSES 10" in api and "#define EDGEKD_INPUT_CHANNELS_LAST 1" in api
    result = verify_package(bundle).to_json()
    assert result["passed"] and set(section["regenerated"]) <= set(result["layouts"]["compared"])
    # packaging again gives the same bytes, layouts included
    again = tmp_path / "again.tar.gz"
    package_build(build, again, vectors=VECTORS)
    assert again.read_bytes() == bundle.read_bytes()


_EVIL = b'execute_process(COMMAND touch "{marker}")\n'


def test_verify_refuses_edited_or_extra_library_files_and_runs_none(mcu_bundle: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    """A CMakeLists.txt can run commands: verify compares it with what edgekd generates, never configures it."""
    bundle = mcu_bundle[1]
    marker = tmp_path / "MARKER"
    for name, change, message in (
            ("library/CMakeLists.txt", lambda d: d + _EVIL.replace(b"{marker}", str(marker).encode()),
             "library/CMakeLists.txt differs from what edgekd generates"),
            ("device/run_vectors.py", lambda d: b"import os\n", "device/run_vectors.py is not a file edgekd "),
            ("library/extra.cmake", lambda d: _EVIL.replace(b"{marker}", str(marker).encode()),
             "library/extra.cmake is not a file edgekd generates"),
            ("board/qemu_board.c", lambda d: d.replace(b"0x20026u", b"0x20027u"), "board/qemu_board.c differs")):
        files = _entries(bundle)
        files[name] = change(files.get(name, b""))
        _rehash(files)
        bad = tmp_path / "bad.tar.gz"
        bad.write_bytes(_tar_bytes(PREFIX, files))
        with pytest.raises(EdgekdError, match=re.escape(message)):
            verify_package(bad)
    assert not marker.exists()


# ------------------------------------------------------------------ a downstream CMake project on QEMU

_DOWNSTREAM_CMAKE = """cmake_minimum_required(VERSION 3.16)
project(downstream C ASM)
if(USE_FIND_PACKAGE)
  find_package(edgekd CONFIG REQUIRED)
else()
  add_subdirectory("${BUNDLE}/library" edgekd)
endif()
add_subdirectory("${BUNDLE}/board" board)
add_executable(app main.c)
target_link_libraries(app PRIVATE edgekd::model edgekd::board)
"""

# Only the bundle's public header; the I/O is this test's own (semihosting: x.bin in, y.bin out).
_DOWNSTREAM_MAIN = r"""#include "edgekd_model.h"

static int8_t in[EDGEKD_INPUT_SIZE], out[EDGEKD_OUTPUT_SIZE];

static int semihost(int op, void *arg) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static int io(int op, uint32_t a, uint32_t b, uint32_t c) {
  uint32_t block[3];
  block[0] = a;
  block[1] = b;
  block[2] = c;
  return semihost(op, block);
}

int main(void) {
  int fin = io(0x01, (uint32_t)"x.bin", 1, 5), fout = io(0x01, (uint32_t)"y.bin", 5, 5);
  if (fin < 0 || fout < 0) return 10;
  while (io(0x06, (uint32_t)fin, (uint32_t)in, sizeof in) == 0) {
    if (edgekd_invoke(in, out) != 0) return 11;
    if (io(0x05, (uint32_t)fout, (uint32_t)out, sizeof out) != 0) return 12;
  }
  return edgekd_input_size() == EDGEKD_INPUT_SIZE && edgekd_output_size() == EDGEKD_OUTPUT_SIZE ? 0 : 13;
}
"""


def _cmake(src: Path, build: Path, bundle: Path, *extra: str) -> None:
    toolchain = bundle / "board" / "toolchain.cmake"
    for cmd in (["cmake", "-S", str(src), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
                 "-DCMAKE_BUILD_TYPE=MinSizeRel", *extra], ["cmake", "--build", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _qemu(elf: Path, cwd: Path, manifest: dict) -> subprocess.CompletedProcess[str]:
    from edgekd.cores import BOARDS

    machine = manifest["generated_c"]["boards"][0]["machine"]
    return subprocess.run(["qemu-system-arm", "-M", machine, "-cpu", BOARDS[machine].cpu, "-nographic", "-monitor",
                           "none", "-serial", "none", "-semihosting-config", "enable=on,target=native", "-kernel",
                           str(elf)], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["add_subdirectory", "find_package"])
def test_downstream_project_builds_runs_on_qemu_and_matches_vectors(extracted: Path, tmp_path: Path,
                                                                    how: str) -> None:
    from edgekd.package.library import footprint

    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed: run scripts/install_emulators.sh")
    manifest = json.loads((extracted / "manifest.json").read_text())
    app = tmp_path / "app"
    app.mkdir()
    (app / "CMakeLists.txt").write_text(_DOWNSTREAM_CMAKE)
    (app / "main.c").write_text(_DOWNSTREAM_MAIN)
    _cmake(app, tmp_path / "build", extracted, f"-DBUNDLE={extracted}", f"-Dedgekd_DIR={extracted / 'library'}",
           f"-DUSE_FIND_PACKAGE={'ON' if how == 'find_package' else 'OFF'}")
    elf = tmp_path / "build" / "app"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(extracted / "vectors" / "input_int8.bin", run_dir / "x.bin")
    proc = _qemu(elf, run_dir, manifest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    want = (extracted / "vectors" / "expected_model_int8_int8.bin").read_bytes()
    assert len(want) == VECTORS * 10 and (run_dir / "y.bin").read_bytes() == want  # byte for byte
    size = footprint(elf)
    budgets = manifest["budgets"]
    assert 0 < size["flash_bytes"] <= budgets["flash_bytes"] and 0 < size["ram_bytes"] <= budgets["ram_bytes"]
    assert size["ram_bytes"] >= manifest["generated_c"]["boards"][0]["arena_bytes"]


@pytest.mark.slow
def test_the_bundled_example_checks_its_vectors_on_qemu(extracted: Path, tmp_path: Path) -> None:
    """The README's three commands, in the extracted bundle: configure, build, run on QEMU."""
    work = tmp_path / PREFIX
    shutil.copytree(extracted, work)
    _cmake(work / "example", work / "build", work)
    proc = _qemu(work / "build" / "selftest.elf", work, json.loads((work / "manifest.json").read_text()))
    console = proc.stdout + proc.stderr  # QEMU prints semihosting console output on stderr
    assert proc.returncode == 0, console
    assert f"edgekd self-test: {VECTORS}/{VECTORS} vectors match (outputs byte for byte)" in console
    assert f"{VECTORS}/{VECTORS} inputs quantized by edgekd_quantize_chw match" in console
    assert (work / "y.bin").read_bytes() == (work / "vectors" / "expected_model_int8_int8.bin").read_bytes()


# ------------------------------------------------------------------ Arduino

_ARDUINO_H = """#pragma once
#include <cstdint>
#include <cstdio>
struct StubSerial {
  void begin(long) {}
  void print(const char *s) { std::fputs(s, stdout); }
  void print(int v) { std::printf("%d", v); }
  void println(const char *s) { std::puts(s); }
};
extern StubSerial Serial;
"""
_ARDUINO_MAIN = """#include "Arduino.h"
StubSerial Serial;
void setup();
void loop();
int main() { setup(); loop(); return 0; }
"""
_REQUIRED = ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "architectures")


def test_arduino_library_layout_and_example_on_the_host(extracted: Path, tmp_path: Path) -> None:
    lib = extracted / "arduino" / PREFIX
    props = dict(line.split("=", 1) for line in (lib / "library.properties").read_text().splitlines() if "=" in line)
    assert set(_REQUIRED) <= set(props) and props["name"] == lib.name and props["includes"] == "edgekd_model.h"
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"]) and props["architectures"] == "*"
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]*", props["name"])
    assert {p.name for p in (lib / "src").iterdir()} == {"edgekd_model.h", "edgekd_model_api.c", "model.h", "model.c",
                                                          "kernels.c", "kernels.h"}
    sketch = lib / "examples" / "edgekd_selftest" / "edgekd_selftest.ino"  # examples/<name>/<name>.ino
    assert sketch.is_file()
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "Arduino.h").write_text(_ARDUINO_H)
    (stub / "main.cpp").write_text(_ARDUINO_MAIN)
    objs = []
    for c in sorted((lib / "src").glob("*.c")):
        obj = tmp_path / f"{c.stem}.o"
        subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-c", str(c), "-o", str(obj)],
                       check=True, timeout=120)
        objs.append(str(obj))
    exe = tmp_path / "sketch"
    proc = subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-x", "c++", "-include", str(stub / "Arduino.h"),
                           "-I", str(lib / "src"), str(sketch), "-x", "none", str(stub / "main.cpp"), *objs, "-o",
                           str(exe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, check=True).stdout
    assert "4/4 vectors match" in out and out.count("(outputs match)") == 4
    labels = np.frombuffer((extracted / "vectors" / "labels_u8.bin").read_bytes(), np.uint8)
    classes = [int(m) for m in re.findall(r": class (\d+)", out)]
    assert len(classes) == 4 and sum(int(c == y) for c, y in zip(classes, labels[:4], strict=True)) >= 2


def test_the_c_api_quantizes_like_the_vectors_on_the_host(extracted: Path, tmp_path: Path) -> None:
    """edgekd_quantize_chw on the float vectors gives the bundle's int8 inputs; sizes and dequantization agree
    with the manifest (host gcc, the library's own sources)."""
    manifest = json.loads((extracted / "manifest.json").read_text())
    q = next(a for a in manifest["artifacts"] if a["path"] == "model_int8.tflite")["quantization"]
    main = tmp_path / "main.c"
    main.write_text(r"""#include <stdio.h>
#include "edgekd_model.h"
int main(void) {
  static float x[EDGEKD_INPUT_SIZE];
  static int8_t q[EDGEKD_INPUT_SIZE];
  FILE *f = fopen("vectors/input_f32.bin", "rb");
  while (fread(x, sizeof x, 1, f) == 1) {
    edgekd_quantize_chw(x, q);
    fwrite(q, sizeof q, 1, stdout);
  }
  fprintf(stderr, "%d %d %.9g %.9g %d\n", (int)edgekd_input_size(), (int)edgekd_output_size(),
          edgekd_dequantize_output(0), edgekd_dequantize_output(127), edgekd_quantize_input(1e9f));
  return 0;
}
""")
    lib = extracted / "library"
    exe = tmp_path / "api"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(lib / "include"), str(main),
                    str(lib / "src" / "edgekd_model_api.c"), "-o", str(exe)], check=True, timeout=120)
    proc = subprocess.run([str(exe)], cwd=extracted, capture_output=True, timeout=30, check=True)
    assert proc.stdout == (extracted / "vectors" / "input_int8.bin").read_bytes()
    n_in, n_out, zero, top, sat = proc.stderr.decode().split()
    out = q["output"]
    assert (int(n_in), int(n_out), int(sat)) == (64, 10, 127)
    assert float(zero) == pytest.approx(out["scale"] * (0 - out["zero_point"]), rel=1e-6)
    assert float(top) == pytest.approx(out["scale"] * (127 - out["zero_point"]), rel=1e-6)


# ------------------------------------------------------------------ Pis and phones

@pytest.mark.slow
def test_pi_bundle_runs_its_vectors_under_qemu_aarch64(pi_build: Path, tmp_path: Path) -> None:
    """The bundle's run_vectors.py, on the emulated Pi 4 (arm64 Python, LiteRT wheels), checks the .tflite with
    LiteRT and the .pte with the shipped ExecuTorch runner; the Python example classifies a vector."""
    from edgekd.emulate.aarch64 import core_of, provision, stand_in_root
    from edgekd.targets import load_target
    from edgekd.verify import verify_build

    build = tmp_path / "pi"
    shutil.copytree(pi_build, build)
    verify_build("raspberry-pi-4b", build, limit=20, emulator="qemu", emulator_limit=4, plot=False)
    bundle = tmp_path / "pi.tar.gz"
    manifest = package_build(build, bundle, vectors=4).manifest
    section = manifest["layouts"]["device"]
    assert "device/executorch/pte_runner" in section["fixed"] and "library" not in manifest["layouts"]
    assert "device/executorch/lib/libexecutorch.so" in section["fixed"]
    assert verify_package(bundle, rerun=False).layout_files == section["regenerated"]
    with tarfile.open(bundle, "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    root_dir = tmp_path / "edgekd-raspberry-pi-4b-digits"
    target = load_target("raspberry-pi-4b")
    root = provision()
    view = stand_in_root(root, target)
    cpu, _ = core_of(target)
    qemu = shutil.which("qemu-aarch64")
    assert qemu
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root.site), "PYTHONNOUSERSITE": "1", "HOME": str(view),
           "LC_ALL": "C.UTF-8"}
    guest = [qemu, "-cpu", cpu, "-L", str(view), str(root.path / "usr" / "bin" / "python3.11")]
    proc = subprocess.run([*guest, str(root_dir / "device" / "run_vectors.py"), "--json", "--prefix",
                           f"{qemu} -cpu {cpu} -L {view}"], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    runs = {(c["artifact"], c["runtime"]): c for c in result["checks"]}
    assert result["passed"] and not result["files_changed"] and not result["skipped"]
    assert runs[("model_int8.tflite", "litert-reference")]["max_diff"] == 0  # int8: byte for byte
    assert {("model_int8.pte", "executorch"), ("model_fp32.pte", "executorch"),
            ("model_fp32.tflite", "litert-reference")} <= set(runs)
    example = subprocess.run([*guest, str(root_dir / "device" / "example.py")], capture_output=True, text=True,
                             timeout=600, env=env)
    assert example.returncode == 0 and re.match(r"model_int8\.tflite: class \d", example.stdout), example.stderr
    # a changed runner is a checksum mismatch even when the manifest is left alone
    (root_dir / "device" / "executorch" / "pte_runner").write_bytes(b"\x7fELF")
    bad = subprocess.run([*guest, str(root_dir / "device" / "run_vectors.py"), "--json"], capture_output=True,
                         text=True, timeout=900, env=env)
    assert bad.returncode == 1 and "device/executorch/pte_runner" in json.loads(bad.stdout)["files_changed"]


@pytest.mark.slow
def test_pi_bundle_without_emulation_ships_scripts_but_no_runner(pi_build: Path, tmp_path: Path) -> None:
    from edgekd.verify import verify_build

    build = tmp_path / "pi"
    shutil.copytree(pi_build, build)
    verify_build("raspberry-pi-4b", build, limit=20, plot=False)
    bundle = tmp_path / "pi.tar.gz"
    section = package_build(build, bundle, vectors=4).manifest["layouts"]["device"]
    assert section["fixed"] == [] and section["executorch_runner"] is None
    assert "did not run the .pte under qemu-aarch64" in section["executorch_runner_source"]
    assert set(section["regenerated"]) == {"device/run_vectors.py", "device/example.py", "device/requirements.txt"}
    files = _entries(bundle)
    assert b"ai-edge-litert==2.3.0" in files["device/requirements.txt"]
    files["device/executorch/pte_runner"] = b"\x7fELF"
    _rehash(files)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(_tar_bytes("edgekd-raspberry-pi-4b-digits", files))
    with pytest.raises(EdgekdError, match="device/executorch/pte_runner is not a file edgekd generates"):
        verify_package(bad, rerun=False)
