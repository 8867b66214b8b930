#!/usr/bin/env python3
"""Reliability suite (issue 12): bad inputs and faults against every edgekd verb, through the real CLI.

Every case prepares a bad input (a corrupt file, a tampered build or bundle, a hostile pickle, a fault such as
a second build into the same folder or a file-size limit), runs ``edgekd ...`` as a subprocess with a timeout
and classifies what came back against the exit-code contract of the README:

* ``clean``: exit 2 and stderr is exactly one non-empty line starting ``edgekd: error:`` (expected refusal);
* ``met``: an expected gate failure (exit 1) or an expected success (exit 0, with its check passed);
* ``traceback`` (a Python traceback on stderr), ``internal`` (exit 3), ``gate`` (exit 1 where bad input was
  expected), ``accepted`` (exit 0 where a refusal was expected), ``noisy`` (exit 2 but not one clean line),
  ``timeout``, ``crash`` (killed by a signal / another exit code), ``slow`` (a "fast refusal" that took too
  long or too much memory), ``check-failed`` (the exit code was right but the outputs were not);

and two hard checks: CODE EXECUTED (the marker file a hostile payload would create exists afterwards) and
CHANGED OUTPUT TRUSTED (a tampered output was reported as fine: a rerun build whose report.json / export.json
sha256 no longer matches the files, a re-hashed bundle accepted with ``--key``, a replaced teacher-cache entry
used without a warning, ...).

Usage::

    .venv/bin/python scripts/probe_reliability.py [--work DIR] [--only SUBSTRING] [--list] [--jobs N] [--json]

Writes docs/reliability.json and docs/reliability.md (with ``--only``: W/reliability.{json,md} instead, so a
partial run does not replace the full results). Exit 0 when the goal is met (0 tracebacks, 0 internal errors,
0 changed outputs trusted, 0 code executed), else 1. Only the standard library is used here; everything heavy
runs in the edgekd subprocesses (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import gzip
import hashlib
import io
import json
import os
import pickle
import platform
import random
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
VENV_PY = VENV_BIN / "python"
TARGET = "nrf52840-dk"
LINUX_TARGET = "raspberry-pi-4b"
MARKER = "PWNED"  # what a payload would create in its case folder
DEFAULT_TIMEOUT = 150.0
BUILD_TIMEOUT = 480.0
GOOD_BUILD = ["build", "--target", TARGET, "--task", "digits", "--fast"]

SUMMARY_COLUMNS = [("tried", "tried"), ("clean", "clean exit 2 with one line"),
                   ("met", "expected gate or success outcome met"), ("traceback", "tracebacks"),
                   ("internal", "internal errors (exit 3)"), ("trusted", "changed outputs trusted"),
                   ("code_executed", "code executed"), ("other", "other failures"), ("skipped", "skipped")]
REQUIRED_FIXTURES = {"good", "teacher", "torchfiles"}
OTHER = ("gate", "accepted", "noisy", "timeout", "crash", "slow", "check-failed", "refused", "error")


def edgekd_cmd() -> list[str]:
    exe = VENV_BIN / "edgekd"
    if exe.is_file():
        return [str(exe)]
    py = VENV_PY if VENV_PY.is_file() else Path(sys.executable)
    return [str(py), "-m", "edgekd.cli"]


# ----------------------------------------------------------------------------------------------- running


class Skip(Exception):
    """A case (or fixture) that cannot run here; the message says why."""


@dataclass
class Run:
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float
    timed_out: bool = False
    argv: list[str] = field(default_factory=list)


def run_cli(argv: list[str], cwd: Path, env: dict[str, str], timeout: float, fsize: int | None = None,
            tag: str = "") -> Run:
    """Run ``argv`` in its own session; stdout/stderr to files in ``cwd``; per-child time and max RSS."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = cwd / f"stdout{tag}.txt", cwd / f"stderr{tag}.txt"

    def limits() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=limits if fsize is not None else None)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                timed_out = True
                _killpg(proc.pid)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        _killpg(proc.pid)  # leftovers of the run (an emulator, a compiler), never anything else
    return Run(None if timed_out else proc.returncode, _read(out_path), _read(err_path), round(seconds, 2),
               round(usage.ru_maxrss / 1024, 1), timed_out, argv)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""


# ----------------------------------------------------------------------------------------------- files


def sha(path: Path | bytes) -> str:
    if isinstance(path, bytes):
        return hashlib.sha256(path).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def flip_byte(path: Path, offset: int | None = None) -> int:
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    return offset


def truncate(path: Path, keep: float | int = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])


def rand_bytes(n: int, seed: int = 12) -> bytes:
    return random.Random(seed).randbytes(n)


class _Payload:
    """Unpickling this runs ``cmd`` through os.system (what a hostile pickle does)."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.cmd,))


def evil_pickle(marker: Path) -> bytes:
    """A legacy-format torch file / plain pickle: ``torch.load(weights_only=False)`` would run the command."""
    return pickle.dumps(_Payload(f"touch {shlex.quote(str(marker))}"), protocol=2)


def npy_bytes(descr: str, shape: tuple[int, ...], data: bytes = b"") -> bytes:
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    header += " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def f32(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def i64(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}q", *values)


def small_npz_members(n_train: int = 40, n_test: int = 10, classes: int = 2, seed: int = 3) -> dict[str, bytes]:
    rng = random.Random(seed)
    members = {}
    for split, n in (("train", n_train), ("test", n_test)):
        members[f"x_{split}.npy"] = npy_bytes("<f4", (n, 8, 8), f32([rng.random() for _ in range(n * 64)]))
        members[f"y_{split}.npy"] = npy_bytes("<i8", (n,), i64([i % classes for i in range(n)]))
    return members


def write_npz(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def png_bytes(width: int, height: int, bit_depth: int = 8, fill: int = 0) -> bytes:
    """A grayscale PNG (stdlib only); a 20000x20000 1-bit one compresses to a few KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes([fill]) * ((width * bit_depth + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------------- bundles


def bundle_members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]


def bundle_files(path: Path) -> tuple[str, dict[str, bytes]]:
    """(prefix, {name inside the prefix: bytes}) of a good bundle."""
    members = bundle_members(path)
    prefix = members[0][0].name.split("/")[0]
    return prefix, {m.name.split("/", 1)[1]: data for m, data in members if m.isfile()}


def tar_gz(entries: list[tuple[tarfile.TarInfo, bytes]], level: int = 9) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=level) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def file_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def repack(src: Path, dst: Path, mutate: Callable[[dict[str, bytes]], None] | None = None, rehash: bool = True,
           extra: list[tuple[tarfile.TarInfo, bytes]] | None = None, manifest_edit: Callable[[Any], Any] | None = None,
           prefix_override: str | None = None) -> Path:
    """Copy bundle ``src`` to ``dst`` with ``mutate`` applied to its files; ``rehash`` rewrites manifest.json's
    ``files`` map to the new sha256s (what a tamperer who knows the format does). Members that were not in the
    manifest (a signature) are kept as they are; sibling files ``src.*`` (a detached signature) are copied."""
    prefix, files = bundle_files(src)
    before = set(files)
    if mutate:
        mutate(files)
    if "manifest.json" in files and (rehash or manifest_edit):
        try:
            manifest = json.loads(files["manifest.json"])
        except ValueError:
            manifest = None
        if isinstance(manifest, dict):
            if rehash and isinstance(manifest.get("files"), dict):
                listed = set(manifest["files"])
                manifest["files"] = {n: sha(files[n]) for n in sorted(files)
                                     if n != "manifest.json" and (n in listed or n not in before)}
            if manifest_edit:
                manifest = manifest_edit(manifest)
            files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    pre = prefix_override or prefix
    entries = [file_entry(f"{pre}/{n}", files[n]) for n in sorted(files)] + (extra or [])
    write(dst, tar_gz(entries))
    for sib in src.parent.glob(src.name + ".*"):
        shutil.copyfile(sib, dst.parent / (dst.name + sib.name[len(src.name):]))
    return dst


def gz(data: bytes) -> bytes:
    """gzip the way edgekd writes bundles (GzipFile, no name, mtime 0), so header checks pass."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as f:
        f.write(data)
    return out.getvalue()


def big_entry_bundle(dst: Path, size: int, with_data: bool) -> Path:
    """A .tar.gz whose first entry declares ``size`` bytes: either really that many zeros (a gzip bomb of a few
    MB) or a header with no data behind it. The gzip header is a copy of the one edgekd writes."""
    info = tarfile.TarInfo("edgekd-bomb/model_int8.tflite")
    info.size, info.mode = size, 0o644
    header = gz(b"")[:10]
    comp = zlib.compressobj(1, zlib.DEFLATED, -15)
    crc, total = 0, 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as f:
        f.write(header)

        def put(data: bytes) -> None:
            nonlocal crc, total
            crc = zlib.crc32(data, crc)
            total += len(data)
            f.write(comp.compress(data))
        put(info.tobuf(format=tarfile.PAX_FORMAT))
        if with_data:
            zeros = bytes(16 << 20)
            left = size
            while left:
                n = min(left, len(zeros))
                put(zeros[:n] if n < len(zeros) else zeros)
                left -= n
            put(bytes(-size % 512) + bytes(1024))
        else:
            put(bytes(4096))
        f.write(comp.flush())
        f.write(struct.pack("<II", crc & 0xFFFFFFFF, total & 0xFFFFFFFF))
    return dst


# ----------------------------------------------------------------------------------------------- fixtures


class Ctx:
    """The work folder, the environment every case runs in, and fixtures built once, on first use."""

    def __init__(self, work: Path, jobs: int) -> None:
        self.work = work
        self.fix_dir = work / "fixtures"
        self.cases_dir = work / "cases"
        self.jobs = jobs
        self.ek = edgekd_cmd()
        self.env = dict(os.environ)
        self.env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                         "EDGEKD_CACHE": str(work / "cache"), "EDGEKD_LOG_DIR": str(work / "logs"),
                         "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"})
        for var in ("EDGEKD_TARGETS", "EDGEKD_VERBOSE"):
            self.env.pop(var, None)
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._done: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        self.fixture_failures: dict[str, str] = {}
        self.reused: list[str] = []

    # fixtures are cached in memory and, with --work, on disk (a stamp file), so a rerun reuses them
    def fixture(self, name: str) -> Any:
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._done:
                value = self._done[name]
                if isinstance(value, Skip):
                    raise Skip(str(value))
                return value
            try:
                value = getattr(self, f"_fix_{name}")()
            except Skip as exc:
                self._done[name] = exc
                self.fixture_failures[name] = self.rel(str(exc))
                raise
            self._done[name] = value
            return value

    def _cli_fixture(self, name: str, argv: list[str], result: Path, timeout: float = BUILD_TIMEOUT) -> Path:
        stamp = self.fix_dir / f".{name}.ok"
        if stamp.is_file() and result.exists():
            self.reused.append(name)
            return result
        if result.exists():
            shutil.rmtree(result) if result.is_dir() else result.unlink()
        log(f"fixture {name}: edgekd {' '.join(self.rel(a) for a in argv)}")
        run = run_cli(self.ek + argv, self.fix_dir / f"_{name}", self.env, timeout)
        if run.rc != 0 or not result.exists():
            line = first_line(run.stderr) or f"exit {run.rc}"
            raise Skip(f"fixture {name} failed (exit {run.rc}): {self.rel(line)}")
        log(f"fixture {name}: done in {run.seconds:.0f} s")
        stamp.write_text("ok\n")
        return result

    def _fix_good(self) -> Path:
        out = self.fix_dir / "good"
        return self._cli_fixture("good", GOOD_BUILD + ["--emulator", "none", "--out", str(out)], out)

    def _fix_goodc(self) -> Path:
        missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc") if shutil.which(t) is None]
        if missing:
            raise Skip(f"{', '.join(missing)} not installed, so no bundle with generated C sources")
        teacher = self.fixture("good") / "teacher" / "digits.pt"
        out = self.fix_dir / "goodc"
        return self._cli_fixture("goodc", GOOD_BUILD + ["--emulator", "qemu", "--teacher", str(teacher), "--out",
                                                        str(out)], out)

    def _fix_teacher(self) -> Path:
        out = self.fix_dir / "teacher.pt"
        return self._cli_fixture("teacher", ["teacher", "--task", "digits", "--epochs", "1", "--limit", "300",
                                             "--out", str(out)], out, 300)

    def _fix_pi(self) -> Path:
        out = self.fix_dir / "pi"
        self._cli_fixture("pi", ["export", "--target", LINUX_TARGET, "--student",
                                 str(self.fixture("good") / "student"), "--out", str(out), "--formats", "pte",
                                 "--precision", "fp32"], out, 300)
        return out / "model_fp32.pte"

    def _fix_torchfiles(self) -> Path:
        """Teacher/student/checkpoint variants and .pt2 teachers, written by one venv-python subprocess; also
        checks that the hostile payloads are armed (an unsafe loader does run them)."""
        out = self.fix_dir / "torchfiles"
        stamp = self.fix_dir / ".torchfiles.ok"
        if stamp.is_file() and out.is_dir():
            self.notes["payloads_armed"] = stamp.read_text().strip()
            return out
        teacher, good = self.fixture("teacher"), self.fixture("good")
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        payload_dir = out / "armed"
        payload_dir.mkdir()
        write(payload_dir / "legacy.pt", evil_pickle(payload_dir / "legacy.marker"))
        write(payload_dir / "object.npy", npy_bytes("|O", (1,), evil_pickle(payload_dir / "npy.marker")))
        code = TORCH_FIXTURES.format(out=str(out), teacher=str(teacher), student=str(good / "student"))
        log("fixture torchfiles: teacher/student/checkpoint variants and .pt2 teachers")
        proc = subprocess.run([str(VENV_PY), "-c", code], cwd=out, env=self.env, capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise Skip(f"fixture torchfiles failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        # the .pt2 payloads are made here (zip surgery), then checked armed by plain torch.export.load
        for kind in ("sample_inputs", "weights"):
            evil_pt2(out / "tiny.pt2", payload_dir / f"{kind}.pt2", payload_dir / f"{kind}.marker", kind)
        proc = subprocess.run([str(VENV_PY), "-c", ARM_CHECK.format(d=str(payload_dir))], cwd=out, env=self.env,
                              capture_output=True, text=True, timeout=300)
        armed = {m.stem: True for m in payload_dir.glob("*.marker")}
        self.notes["payloads_armed"] = ", ".join(
            f"{k}: {'yes' if armed.get(k) else 'NO'}" for k in ("legacy", "npy", "sample_inputs", "weights"))
        log(f"fixture torchfiles: payloads armed under unsafe loaders: {self.notes['payloads_armed']}")
        stamp.write_text(self.notes["payloads_armed"] + "\n")
        return out

    def _fix_noqemu_path(self) -> str:
        """A PATH with the venv and every system tool except QEMU (symlinks), to simulate QEMU not installed."""
        bindir = self.fix_dir / "noqemu-bin"
        if not bindir.is_dir():
            bindir.mkdir(parents=True)
            for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
                if not os.path.isdir(d):
                    continue
                for entry in os.scandir(d):
                    if entry.name.startswith("qemu") or (bindir / entry.name).exists():
                        continue
                    try:
                        os.symlink(entry.path, bindir / entry.name)
                    except OSError:
                        pass
        return f"{VENV_BIN}{os.pathsep}{bindir}"

    def _fix_keys(self) -> dict[str, Path]:
        """A signing key pair from `edgekd keygen`, when that verb exists."""
        probe = run_cli(self.ek + ["keygen", "-h"], self.fix_dir / "_keygen-help", self.env, 60)
        if probe.rc != 0:
            raise Skip("`edgekd keygen` is not available in this edgekd (keygen -h: exit "
                       f"{probe.rc}: {first_line(probe.stderr)[:120]})")
        create_help = run_cli(self.ek + ["package", "create", "-h"], self.fix_dir / "_keygen-help", self.env, 60)
        verify_help = run_cli(self.ek + ["package", "verify", "-h"], self.fix_dir / "_keygen-help", self.env, 60)
        if "--sign" not in create_help.stdout or "--key" not in verify_help.stdout:
            raise Skip("edgekd has keygen but not `package --sign` / `package verify --key` yet")
        kdir = self.fix_dir / "keys"
        for sub, argv in (("a", None), ("b", None)):
            d = kdir / sub
            if not any(d.glob("*")):
                d.mkdir(parents=True, exist_ok=True)
                key = d / "edgekd.key"
                argv = ["keygen", "--out", str(key)] if "--out" in probe.stdout else ["keygen", str(key)]
                run = run_cli(self.ek + argv, self.fix_dir / "_keygen", self.env, 120)
                if run.rc != 0:
                    raise Skip(f"edgekd keygen failed (exit {run.rc}): {self.rel(first_line(run.stderr))}")
        keys = {}
        for sub in ("a", "b"):
            files = sorted(p for p in (kdir / sub).rglob("*") if p.is_file())
            pubs = [p for p in files if p.name.endswith(".pub") or "pub" in p.name.lower()]
            privs = [p for p in files if p not in pubs]
            if not pubs or not privs:
                raise Skip(f"edgekd keygen wrote {[p.name for p in files]}: cannot tell the public key from the "
                           "private one")
            keys[f"{sub}_priv"], keys[f"{sub}_pub"] = privs[0], pubs[0]
        return keys

    def _fix_signed(self) -> Path:
        keys = self.fixture("keys")
        out = self.fix_dir / "signed" / "signed.tar.gz"
        return self._cli_fixture("signed", ["package", str(self.fixture("good") / "artifacts"), "--out", str(out),
                                            "--vectors", "8", "--sign", str(keys["a_priv"])], out, 300)

    # helpers for cases
    def bundle(self, which: str = "good") -> Path:
        build = self.fixture(which)
        found = sorted(build.glob("edgekd-*.tar.gz"))
        if not found:
            raise Skip(f"the {which} build has no bundle")
        return found[0]

    def copy_build(self, dst: Path, which: str = "good") -> Path:
        """A private copy of a fixture build (stages.json's absolute paths moved along, so skipping works)."""
        src = self.fixture(which)
        shutil.copytree(src, dst, symlinks=True)
        stages = dst / "stages.json"
        if stages.is_file():
            stages.write_text(stages.read_text().replace(str(src), str(dst)))
        (dst / ".edgekd.lock").unlink(missing_ok=True)
        return dst

    def rel(self, text: str) -> str:
        return str(text).replace(str(self.work), "W")


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def evil_pt2(src: Path, dst: Path, marker: Path, kind: str) -> Path:
    """A copy of a torch.export archive with one pickled member replaced by a hostile pickle: the sample inputs
    (``*/data/sample_inputs/*.pt``, loaded with a weights_only=False fallback) or a weight switched to the
    pickled form in ``model_weights_config.json`` (loaded with weights_only=False)."""
    with zipfile.ZipFile(src) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    out = []
    for name, data in members:
        if kind == "sample_inputs" and "/data/sample_inputs/" in name:
            data = evil_pickle(marker)
        if kind == "weights" and name.endswith("/data/weights/model_weights_config.json"):
            cfg = json.loads(data)
            first = next(iter(cfg["config"].values()))
            first["use_pickle"] = True
            target = first["path_name"]
            data = json.dumps(cfg).encode()
            members_by = dict(members)
            prefix = name.rsplit("/", 1)[0]
            members_by[f"{prefix}/{target}"] = evil_pickle(marker)
            out_members = [(n, members_by[n] if n != name else data) for n, _ in members]
            return _write_zip(dst, out_members)
        out.append((name, data))
    return _write_zip(dst, out)


def _write_zip(dst: Path, members: list[tuple[str, bytes]]) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)
    return dst


TORCH_FIXTURES = r'''
import copy, torch
out, teacher, student = {out!r}, {teacher!r}, {student!r}
t = torch.load(teacher, weights_only=True)
def save(obj, name): torch.save(obj, f"{{out}}/{{name}}")
a = copy.deepcopy(t)
k = next(iter(a["state_dict"]))
a["state_dict"][k] = torch.zeros(3, 3)
save(a, "teacher_wrong_shape.pt")
a = copy.deepcopy(t)
a["state_dict"].pop(next(iter(a["state_dict"])))
a["state_dict"]["bogus.weight"] = torch.zeros(1)
save(a, "teacher_wrong_keys.pt")
a = copy.deepcopy(t); a.pop("arch"); save(a, "teacher_no_arch.pt")
a = copy.deepcopy(t); a["params"] = dict(a["params"], width=-3); save(a, "teacher_width_neg.pt")
a = copy.deepcopy(t); a["arch"] = "no-such-arch"; save(a, "teacher_unknown_arch.pt")
a = copy.deepcopy(t); a["params"] = "width=32"; save(a, "teacher_params_str.pt")
a = copy.deepcopy(t); a["task"] = dict(a["task"], input_shape=[3, 32, 32]); save(a, "teacher_other_task.pt")
save(t["state_dict"], "teacher_state_only.pt")
s = torch.load(f"{{student}}/student.pt", weights_only=True)
a = copy.deepcopy(s)
k = next(iter(a["state_dict"]))
a["state_dict"][k] = torch.zeros(2)
save(a, "student_wrong_shape.pt")
a = copy.deepcopy(s); a["family"] = "no-such-family"; save(a, "student_unknown_family.pt")
a = copy.deepcopy(s); a["config"] = dict(a["config"], width=-3); save(a, "student_width_neg.pt")
a = copy.deepcopy(s); a.pop("format"); save(a, "student_no_format.pt")
a = copy.deepcopy(s); a.pop("task"); save(a, "student_no_task.pt")
c = torch.load(f"{{student}}/checkpoint.pt", weights_only=True)
a = copy.deepcopy(c); a["config"] = dict(a["config"], lr=0.5); save(a, "checkpoint_other_settings.pt")
a = copy.deepcopy(c); a.pop("optimizer"); save(a, "checkpoint_no_optimizer.pt")
a = copy.deepcopy(c); a["epoch"] = "five"; save(a, "checkpoint_epoch_str.pt")

class Tiny(torch.nn.Module):
    def __init__(self, classes=10):
        super().__init__(); self.l = torch.nn.Linear(64, classes)
    def forward(self, x): return self.l(x.flatten(1))
torch.manual_seed(0)
x = torch.randn(2, 1, 8, 8)
batch = torch.export.Dim("batch", min=1, max=4096)
torch.export.save(torch.export.export(Tiny().eval(), (x,), dynamic_shapes=({{0: batch}},)), f"{{out}}/tiny.pt2")
torch.export.save(torch.export.export(Tiny().eval(), (torch.randn(1, 1, 8, 8),)), f"{{out}}/static_batch1.pt2")
seven = torch.export.export(Tiny(7).eval(), (x,), dynamic_shapes=({{0: batch}},))
torch.export.save(seven, f"{{out}}/seven_classes.pt2")
torch.save(Tiny().state_dict(), f"{{out}}/tiny_state.pt")
torch.save(Tiny(7).state_dict(), f"{{out}}/tiny7_state.pt")
'''

ARM_CHECK = r'''
import numpy as np, torch
d = {d!r}
for name, fn in (("legacy", lambda: torch.load(f"{{d}}/legacy.pt", weights_only=False)),
                 ("npy", lambda: np.load(f"{{d}}/object.npy", allow_pickle=True)),
                 ("sample_inputs", lambda: torch.export.load(f"{{d}}/sample_inputs.pt2")),
                 ("weights", lambda: torch.export.load(f"{{d}}/weights.pt2"))):
    try:
        fn()
    except Exception as exc:
        print(name, type(exc).__name__)
'''

FACTORIES = '''
import torch

class Tiny(torch.nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.l = torch.nn.Linear(64, classes)

    def forward(self, x):
        return self.l(x.flatten(1))

def good():
    return Tiny()

def seven():
    return Tiny(7)

def raises():
    raise RuntimeError("factory exploded on purpose")

def not_module():
    return 42

def exits():
    raise SystemExit(7)
'''


# ----------------------------------------------------------------------------------------------- cases


@dataclass
class Plan:
    argv: list[str]
    env: dict[str, str | None] = field(default_factory=dict)
    fsize: int | None = None
    timeout: float | None = None


@dataclass
class Case:
    name: str
    category: str
    desc: str
    prep: Callable[[Ctx, Path], Plan | list[str]]
    expect: tuple[str, ...] = ("refused",)
    check: Callable[[Ctx, Path, Run], dict[str, Any]] | None = None
    runner: Callable[[Ctx, Path, Plan], Run] | None = None
    payload: bool = False
    limit_s: float | None = None
    max_rss_mb: float | None = None
    timeout: float = DEFAULT_TIMEOUT


CASES: list[Case] = []


def add(name: str, category: str, desc: str, prep: Callable[[Ctx, Path], Plan | list[str]], **kw: Any) -> None:
    assert all(c.name != name for c in CASES), name
    CASES.append(Case(name, category, desc, prep, **kw))


def P(*args: Any, **kw: Any) -> Plan:
    return Plan([str(a) for a in args], **kw)


def profile_text(name: str = "my-board", edits: list[tuple[str, str]] = ()) -> str:
    text = (REPO / "targets" / f"{TARGET}.yaml").read_text().replace(f"name: {TARGET}", f"name: {name}")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


def profile_case(name: str, desc: str, edits: list[tuple[str, str]] | None = None,
                 raw: Callable[[], bytes] | None = None, fname: str = "my-board.yaml", **kw: Any) -> None:
    def prep(ctx: Ctx, d: Path) -> Plan:
        data = raw() if raw is not None else profile_text(Path(fname).stem, edits or []).encode()
        return P("targets", "validate", write(d / fname, data))
    add(name, "targets", desc, prep, **kw)


def register_targets() -> None:
    add("targets-show-unknown", "targets", "targets show of a name no profile has",
        lambda c, d: P("targets", "show", "no-such-board"))
    add("targets-show-directory", "targets", "targets show given a folder path",
        lambda c, d: P("targets", "show", str(d) + "/"))
    add("targets-validate-missing", "targets", "targets validate of a file that does not exist",
        lambda c, d: P("targets", "validate", d / "missing.yaml"))
    add("targets-validate-directory", "targets", "targets validate given a folder",
        lambda c, d: P("targets", "validate", d))
    profile_case("targets-validate-empty", "a 0-byte profile", raw=lambda: b"")
    profile_case("targets-validate-binary-garbage", "4 KiB of random bytes as a profile", raw=lambda: rand_bytes(4096))
    profile_case("targets-validate-not-utf8", "a profile with Latin-1 bytes (not UTF-8)",
                 raw=lambda: profile_text().replace("Nordic", "Nordic caf\u00e9").encode("latin-1", "replace"))
    profile_case("targets-validate-deep-nesting", "'[' * 5000 (deeply nested YAML)", raw=lambda: b"[" * 5000)
    profile_case("targets-validate-deep-mapping", "'{a: ' * 5000 (deeply nested mappings)", raw=lambda: b"{a: " * 5000)
    profile_case("targets-validate-10mb", "a 10 MB profile (10 MB of comments, then an unknown key); timed",
                 raw=lambda: (b"# padding padding padding padding padding padding padding padding padding\n" * 140_000)
                 + profile_text(edits=[("quantization:", "turbo: true\nquantization:")]).encode(), limit_s=30)
    profile_case("targets-validate-alias-bomb", "YAML 'billion laughs' (9 levels of 9 aliases)",
                 raw=lambda: ("a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
                     f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
                     + "name: *a8\n").encode(), limit_s=30, max_rss_mb=2048)
    add("targets-validate-python-tag", "targets", "a profile whose title is a !!python/object/apply:os.system tag",
        lambda c, d: P("targets", "validate", write(d / "my-board.yaml", profile_text(edits=[(
            "title: Nordic", f"title: !!python/object/apply:os.system [\"touch {d / MARKER}\"]\nnotes: Nordic")]))),
        payload=True)
    profile_case("targets-validate-cpu-m99", "emulator.cpu cortex-m99 (no such core)",
                 [("  cpu: cortex-m4\n  note", "  cpu: cortex-m99\n  note")])
    profile_case("targets-validate-unknown-machine", "emulator.machine mps9-an999 (no such QEMU board)",
                 [("machine: mps2-an386", "machine: mps9-an999")])
    profile_case("targets-validate-unknown-key", "an unknown top-level key",
                 [("quantization:", "turbo: true\nquantization:")])
    profile_case("targets-validate-missing-field", "latency_budget removed",
                 [("latency_budget: 200 ms\n", "")])
    profile_case("targets-validate-negative-clock", "cpu.clock_mhz: -64", [("clock_mhz: 64", "clock_mhz: -64")])
    profile_case("targets-validate-zero-clock", "cpu.clock_mhz: 0", [("clock_mhz: 64", "clock_mhz: 0")])
    profile_case("targets-validate-inf-clock", "cpu.clock_mhz: .inf", [("clock_mhz: 64", "clock_mhz: .inf")])
    profile_case("targets-validate-nan-throughput", "throughput.int8_macs_per_cycle: .nan",
                 [("int8_macs_per_cycle: 0.23", "int8_macs_per_cycle: .nan")])
    profile_case("targets-validate-arena-gt-ram", "memory.ram_budget 512 KiB > ram 256 KiB",
                 [("ram_budget: 64 KiB", "ram_budget: 512 KiB")])
    profile_case("targets-validate-bad-unit", "memory.flash: 1 MiBB", [("flash: 1 MiB", "flash: 1 MiBB")])
    profile_case("targets-validate-wrong-type", "cpu.count: \"one\"", [("count: 1", "count: \"one\"")])
    profile_case("targets-validate-list-top", "a YAML list instead of a mapping",
                 raw=lambda: b"- name: my-board\n- x\n")
    profile_case("targets-validate-unknown-operator", "operators lists FROBNICATE",
                 [("operators: [CONV_2D,", "operators: [FROBNICATE, CONV_2D,")])
    profile_case("targets-validate-name-mismatch", "name: other-board in my-board.yaml",
                 [("name: my-board", "name: other-board")])
    profile_case("targets-validate-duplicate-key", "the key 'class' twice",
                 [("class: mcu", "class: mcu\nclass: sbc")], expect=("refused",))
    add("targets-list-bad-class", "targets", "targets list --class toaster",
        lambda c, d: P("targets", "list", "--class", "toaster"))

    def broken_dir(c: Ctx, d: Path) -> Plan:
        write(d / "profiles" / "broken.yaml", rand_bytes(512, 5))
        return P("targets", "list", env={"EDGEKD_TARGETS": str(d / "profiles")})
    add("targets-list-broken-profile-dir", "targets", "targets list with $EDGEKD_TARGETS holding a garbage profile "
        "(refusing or listing the others are both fine)", broken_dir, expect=("refused", "ok"))

    def env_file(c: Ctx, d: Path) -> Plan:
        return P("targets", "show", TARGET, env={"EDGEKD_TARGETS": str(write(d / "afile", "x"))})
    add("targets-env-is-file", "targets", "$EDGEKD_TARGETS naming a regular file (ignoring it is fine)", env_file,
        expect=("refused", "ok"))


def register_plan() -> None:
    cat = "plan/cost"
    add("plan-unknown-target", cat, "plan --target no-such-board", lambda c, d: P("plan", "--target", "no-such-board"))
    add("plan-garbage-profile", cat, "plan --target a garbage .yaml",
        lambda c, d: P("plan", "--target", write(d / "x.yaml", rand_bytes(300, 9))))
    add("plan-unknown-task", cat, "plan --task no-such-task",
        lambda c, d: P("plan", "--target", TARGET, "--task", "no-such-task"))
    add("plan-bad-budget-unit", cat, "plan --ram-budget 64XB",
        lambda c, d: P("plan", "--target", TARGET, "--ram-budget", "64XB"))
    add("plan-negative-budget", cat, "plan --ram-budget -5KiB",
        lambda c, d: P("plan", "--target", TARGET, "--ram-budget", "-5KiB"))
    add("plan-zero-budget", cat, "plan --flash-budget 0",
        lambda c, d: P("plan", "--target", TARGET, "--flash-budget", "0"))
    add("plan-bad-latency-unit", cat, "plan --latency-budget 10parsecs",
        lambda c, d: P("plan", "--target", TARGET, "--latency-budget", "10parsecs"))
    add("plan-nan-budget", cat, "plan --latency-budget nanms",
        lambda c, d: P("plan", "--target", TARGET, "--latency-budget", "nanms"))
    add("plan-nothing-fits", cat, "plan --flash-budget 1KiB: no student fits (README: exit 2)",
        lambda c, d: P("plan", "--target", TARGET, "--flash-budget", "1KiB"))
    add("plan-unknown-family", cat, "plan --family transformer",
        lambda c, d: P("plan", "--target", TARGET, "--family", "transformer"))
    add("plan-plot-into-directory", cat, "plan --plot naming an existing folder",
        lambda c, d: P("plan", "--target", TARGET, "--plot", d))
    add("plan-plot-under-file", cat, "plan --plot under a regular file",
        lambda c, d: P("plan", "--target", TARGET, "--plot", write(d / "afile", "x") / "plan.png"))
    add("plan-data-dir-missing", cat, "plan --task fashion-mnist --data-dir /nonexistent",
        lambda c, d: P("plan", "--target", TARGET, "--task", "fashion-mnist", "--data-dir", d / "nope"))

    def npz(make: Callable[[Path], Path], verb: str = "plan") -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            path = make(d)
            if verb == "plan":
                return P("plan", "--target", TARGET, "--task", path)
            return P("teacher", "--task", path, "--epochs", "1", "--out", d / "t.pt")
        return prep

    def huge_header(d: Path) -> Path:
        m = small_npz_members()
        m["x_train.npy"] = npy_bytes("<f4", (1_000_000, 13_100))  # 48.8 GiB declared, nothing behind it
        return write_npz(d / "huge.npz", m)

    def truncated_member(d: Path) -> Path:
        m = small_npz_members()
        m["x_train.npy"] = m["x_train.npy"][:300]
        return write_npz(d / "trunc_member.npz", m)

    def truncated_file(d: Path) -> Path:
        p = write_npz(d / "trunc.npz", small_npz_members())
        truncate(p, 0.6)
        return p

    def missing_key(d: Path) -> Path:
        m = small_npz_members()
        m.pop("y_test.npy")
        return write_npz(d / "nokey.npz", m)

    def pickled(d: Path) -> Path:
        m = small_npz_members()
        m["x_train.npy"] = npy_bytes("|O", (1,), evil_pickle(d / MARKER))
        return write_npz(d / "pickled.npz", m)

    def bad_labels(d: Path) -> Path:
        m = small_npz_members()
        m["y_train.npy"] = npy_bytes("<i8", (40,), i64([99] + [i % 2 for i in range(39)]))
        return write_npz(d / "labels.npz", m)

    def length_mismatch(d: Path) -> Path:
        m = small_npz_members()
        m["y_train.npy"] = npy_bytes("<i8", (30,), i64([i % 2 for i in range(30)]))
        return write_npz(d / "lengths.npz", m)

    def nan_data(d: Path) -> Path:
        m = small_npz_members()
        m["x_train.npy"] = npy_bytes("<f4", (40, 8, 8), f32([float("nan")] * (40 * 64)))
        return write_npz(d / "nan.npz", m)

    def empty_train(d: Path) -> Path:
        m = small_npz_members()
        m["x_train.npy"] = npy_bytes("<f4", (0, 8, 8))
        m["y_train.npy"] = npy_bytes("<i8", (0,))
        return write_npz(d / "empty.npz", m)

    add("plan-npz-48gib-header", cat, "an .npz whose x_train header declares a 48.8 GiB array", npz(huge_header),
        limit_s=30, max_rss_mb=2048)
    add("teacher-npz-48gib-header", "teacher", "teacher on the 48.8 GiB-header .npz (reads the data)",
        npz(huge_header, "teacher"), limit_s=30, max_rss_mb=2048)
    add("teacher-npz-truncated-member", "teacher", "an .npz whose x_train member is cut after 300 bytes",
        npz(truncated_member, "teacher"))
    add("plan-npz-truncated-file", cat, "an .npz cut at 60% (broken zip)", npz(truncated_file))
    add("plan-npz-missing-key", cat, "an .npz without y_test", npz(missing_key))
    add("teacher-npz-object-pickle", "teacher", "an .npz whose x_train is a pickled object array (os.system payload)",
        npz(pickled, "teacher"), payload=True)
    add("teacher-npz-label-out-of-range", "teacher", "y_train holds label 99 among 0/1", npz(bad_labels, "teacher"))
    add("teacher-npz-length-mismatch", "teacher", "40 x_train rows, 30 labels", npz(length_mismatch, "teacher"))
    add("teacher-npz-nan", "teacher", "x_train is all NaN", npz(nan_data, "teacher"))
    add("plan-npz-empty-train", cat, "an .npz with 0 training samples", npz(empty_train))
    add("plan-task-txt-file", cat, "--task naming a .txt file",
        lambda c, d: P("plan", "--target", TARGET, "--task", write(d / "data.txt", "hello")))
    add("plan-task-missing-npz", cat, "--task naming a missing .npz",
        lambda c, d: P("plan", "--target", TARGET, "--task", d / "missing.npz"))

    def big_png_folder(d: Path) -> Path:
        big = png_bytes(20000, 20000, bit_depth=1)
        for klass in ("a", "b"):
            for i in range(2):
                write(d / "images" / klass / f"{i}.png", big)
        return d / "images"
    add("plan-image-20000px-png", cat, "an image folder of 20000x20000 PNGs (a few KB each, 400 Mpixel)",
        lambda c, d: P("plan", "--target", TARGET, "--task", big_png_folder(d)), limit_s=60, max_rss_mb=2048)
    add("teacher-image-20000px-png", "teacher", "teacher on the 20000x20000 PNG folder",
        lambda c, d: P("teacher", "--task", big_png_folder(d), "--epochs", "1", "--out", d / "t.pt"),
        limit_s=60, max_rss_mb=2048)

    def mixed_sizes(c: Ctx, d: Path) -> Plan:
        for klass in ("a", "b"):
            for i in range(3):
                write(d / "images" / klass / f"{i}.png", png_bytes(8 + i, 8))
        return P("teacher", "--task", d / "images", "--epochs", "1", "--out", d / "t.pt")
    add("teacher-image-mixed-sizes", "teacher", "an image folder whose images differ in size", mixed_sizes)

    def corrupt_png(c: Ctx, d: Path) -> Plan:
        for klass in ("a", "b"):
            for i in range(3):
                write(d / "images" / klass / f"{i}.png", png_bytes(8, 8)[:40] if i == 1 else png_bytes(8, 8))
        return P("teacher", "--task", d / "images", "--epochs", "1", "--out", d / "t.pt")
    add("teacher-image-truncated-png", "teacher", "an image folder with one truncated PNG", corrupt_png)

    def one_class(c: Ctx, d: Path) -> Plan:
        for i in range(4):
            write(d / "images" / "only" / f"{i}.png", png_bytes(8, 8, fill=i))
        return P("plan", "--target", TARGET, "--task", d / "images")
    add("plan-image-one-class", cat, "an image folder with a single class", one_class)

    base = ["cost", "--family", "dscnn"]
    add("cost-unknown-family", cat, "cost --family transformer", lambda c, d: P("cost", "--family", "transformer"))
    add("cost-config-negative", cat, "cost --config width=-3", lambda c, d: P(*base, "--config", "width=-3"))
    add("cost-config-not-number", cat, "cost --config width=abc", lambda c, d: P(*base, "--config", "width=abc"))
    add("cost-config-unknown-key", cat, "cost --config frobs=1", lambda c, d: P(*base, "--config", "frobs=1"))
    add("cost-config-no-value", cat, "cost --config width", lambda c, d: P(*base, "--config", "width"))
    add("cost-config-dropout-1", cat, "cost --config dropout=1.5", lambda c, d: P(*base, "--config", "dropout=1.5"))
    add("cost-bad-dtype", cat, "cost --dtype int4", lambda c, d: P(*base, "--dtype", "int4"))
    add("cost-unknown-target", cat, "cost --target no-such-board",
        lambda c, d: P(*base, "--target", "no-such-board"))


def register_teacher() -> None:
    cat = "teacher"
    add("teacher-unknown-task", cat, "teacher --task no-such-task",
        lambda c, d: P("teacher", "--task", "no-such-task", "--out", d / "t.pt"))
    add("teacher-out-is-directory", cat, "teacher --out an existing folder",
        lambda c, d: P("teacher", "--task", "digits", "--epochs", "1", "--limit", "100", "--out", d))
    add("teacher-out-under-file", cat, "teacher --out under a regular file (unwritable path)",
        lambda c, d: P("teacher", "--task", "digits", "--epochs", "1", "--limit", "100", "--out",
                       write(d / "afile", "x") / "t.pt"))
    add("teacher-epochs-zero", cat, "teacher --epochs 0",
        lambda c, d: P("teacher", "--epochs", "0", "--out", d / "t.pt"))
    add("teacher-limit-zero", cat, "teacher --limit 0", lambda c, d: P("teacher", "--limit", "0", "--out", d / "t.pt"))
    add("teacher-fashion-data-dir-missing", cat, "teacher --task fashion-mnist --data-dir missing",
        lambda c, d: P("teacher", "--task", "fashion-mnist", "--data-dir", d / "nope", "--epochs", "1", "--out",
                       d / "t.pt"))


def distill_argv(c: Ctx, d: Path, teacher: Any = None, *extra: Any) -> Plan:
    t = teacher if teacher is not None else c.fixture("teacher")
    return P("distill", "--target", TARGET, "--task", "digits", "--teacher", t, "--out", d / "out", "--epochs", "1",
             "--limit", "300", "--no-int8-check", *extra)


def register_distill() -> None:
    cat = "distill"

    def tf(name: str) -> Callable[[Ctx, Path], Plan]:
        return lambda c, d: distill_argv(c, d, c.fixture("torchfiles") / name)

    def pt2_payload(kind: str, verb: str) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            evil = evil_pt2(c.fixture("torchfiles") / "tiny.pt2", d / "teacher.pt2", d / MARKER, kind)
            if verb == "distill":
                return distill_argv(c, d, evil)
            return P(*GOOD_BUILD, "--emulator", "none", "--teacher", evil, "--out", d / "b")
        return prep

    add("distill-pt2-pickle-sample-inputs", cat, ".pt2 teacher whose data/sample_inputs/*.pt is a pickle with "
        "__reduce__ -> os.system(touch MARKER)", pt2_payload("sample_inputs", "distill"), payload=True)
    add("distill-pt2-pickle-weight", cat, ".pt2 teacher whose first weight is switched to use_pickle and replaced "
        "by an os.system pickle", pt2_payload("weights", "distill"), payload=True)
    add("build-pt2-pickle-sample-inputs", "build", "build --teacher the .pt2 with the hostile sample_inputs pickle",
        pt2_payload("sample_inputs", "build"), payload=True, timeout=BUILD_TIMEOUT)
    add("build-pt2-pickle-weight", "build", "build --teacher the .pt2 with the hostile pickled weight",
        pt2_payload("weights", "build"), payload=True, timeout=BUILD_TIMEOUT)

    def pt2_truncated(c: Ctx, d: Path) -> Plan:
        p = d / "t.pt2"
        shutil.copyfile(c.fixture("torchfiles") / "tiny.pt2", p)
        truncate(p, 0.5)
        return distill_argv(c, d, p)
    add("distill-pt2-truncated", cat, "a .pt2 teacher cut in half", pt2_truncated)
    add("distill-pt2-garbage", cat, "8 KiB of random bytes named teacher.pt2",
        lambda c, d: distill_argv(c, d, write(d / "t.pt2", rand_bytes(8192))))
    add("distill-pt2-static-batch", cat, "a .pt2 exported with a fixed batch of 1 (needs a dynamic batch dim)",
        tf("static_batch1.pt2"))
    add("distill-pt2-wrong-classes", cat, "a .pt2 teacher with 7 outputs for a 10-class task", tf("seven_classes.pt2"))
    add("distill-teacher-wrong-state-shape", cat, "edgekd teacher file whose state_dict has a wrong-shaped tensor",
        tf("teacher_wrong_shape.pt"))
    add("distill-teacher-wrong-state-keys", cat, "edgekd teacher file with a missing and an unexpected key",
        tf("teacher_wrong_keys.pt"))
    add("distill-teacher-no-arch", cat, "edgekd teacher file without 'arch'", tf("teacher_no_arch.pt"))
    add("distill-teacher-width-neg", cat, "edgekd teacher file with params width=-3", tf("teacher_width_neg.pt"))
    add("distill-teacher-other-task", cat, "edgekd teacher trained for a (3, 32, 32) task",
        tf("teacher_other_task.pt"))
    add("distill-teacher-plain-state-dict", cat, "a bare state dict given as --teacher", tf("teacher_state_only.pt"))
    add("distill-teacher-pickle-payload", cat, "--teacher a pickle with __reduce__ -> os.system (legacy torch file)",
        lambda c, d: distill_argv(c, d, write(d / "t.pt", evil_pickle(d / MARKER))), payload=True)
    add("distill-teacher-truncated", cat, "the edgekd teacher file cut in half",
        lambda c, d: distill_argv(c, d, write(d / "t.pt", c.fixture("teacher").read_bytes()[:4000])))
    add("distill-teacher-empty", cat, "a 0-byte teacher.pt", lambda c, d: distill_argv(c, d, write(d / "t.pt", b"")))
    add("distill-teacher-missing", cat, "--teacher a file that does not exist",
        lambda c, d: distill_argv(c, d, d / "missing.pt"))
    add("distill-teacher-directory", cat, "--teacher a folder", lambda c, d: distill_argv(c, d, d))

    def factory(ref: str, *extra: Any) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            write(d / "mods" / "probe_factories.py", FACTORIES)
            args = [a(c, d) if callable(a) else a for a in extra]
            plan = distill_argv(c, d, ref, *args)
            plan.env["PYTHONPATH"] = str(d / "mods")
            return plan
        return prep

    add("distill-factory-raises", cat, "--teacher module:factory whose factory raises RuntimeError",
        factory("probe_factories:raises"))
    add("distill-factory-system-exit", cat, "--teacher module:factory whose factory calls SystemExit(7)",
        factory("probe_factories:exits"))
    add("distill-factory-not-module", cat, "--teacher module:factory returning 42",
        factory("probe_factories:not_module"))
    add("distill-factory-missing-module", cat, "--teacher no_such_module:make", factory("no_such_module:make"))
    add("distill-factory-wrong-classes", cat, "--teacher module:factory with 7 outputs for 10 classes",
        factory("probe_factories:seven"))
    add("distill-factory-weights-pickle-payload", cat, "--teacher-weights a pickle with an os.system payload",
        factory("probe_factories:good", "--teacher-weights", lambda c, d: write(d / "w.pt", evil_pickle(d / MARKER))),
        payload=True)
    add("distill-factory-weights-mismatch", cat, "--teacher-weights a state dict of another shape",
        factory("probe_factories:good", "--teacher-weights", lambda c, d: c.fixture("torchfiles") / "tiny7_state.pt"))
    add("distill-factory-weights-missing", cat, "--teacher-weights a missing file",
        factory("probe_factories:good", "--teacher-weights", lambda c, d: d / "missing.pt"))
    add("distill-pt2-teacher-layer", cat, "--teacher-layer with a .pt2 teacher (logits only)",
        lambda c, d: distill_argv(c, d, c.fixture("torchfiles") / "tiny.pt2", "--loss", "feature", "--teacher-layer",
                                  "l"))
    add("distill-unknown-teacher-layer", cat, "--teacher-layer no.such.module",
        lambda c, d: distill_argv(c, d, None, "--loss", "feature", "--teacher-layer", "no.such.module"))
    add("distill-unknown-loss", cat, "--loss magic", lambda c, d: distill_argv(c, d, None, "--loss", "magic"))
    add("distill-loss-arg-not-number", cat, "--loss-arg temperature=abc",
        lambda c, d: distill_argv(c, d, None, "--loss-arg", "temperature=abc"))
    add("distill-loss-arg-unknown", cat, "--loss-arg frobs=2 (kd has no such parameter)",
        lambda c, d: distill_argv(c, d, None, "--loss-arg", "frobs=2"))
    add("distill-loss-arg-negative-temperature", cat, "--loss-arg temperature=-1",
        lambda c, d: distill_argv(c, d, None, "--loss-arg", "temperature=-1"))
    add("distill-lr-zero", cat, "--lr 0", lambda c, d: distill_argv(c, d, None, "--lr", "0"))
    add("distill-batch-size-zero", cat, "--batch-size 0", lambda c, d: distill_argv(c, d, None, "--batch-size", "0"))
    add("distill-nothing-fits", cat, "--flash-budget 1KiB: no student fits",
        lambda c, d: distill_argv(c, d, None, "--flash-budget", "1KiB"))
    add("distill-out-is-file", cat, "--out a regular file",
        lambda c, d: P("distill", "--target", TARGET, "--teacher", c.fixture("teacher"), "--out",
                       write(d / "afile", "x"), "--epochs", "1", "--limit", "300", "--no-int8-check"))
    add("distill-unknown-target", cat, "--target no-such-board",
        lambda c, d: P("distill", "--target", "no-such-board", "--out", d / "o"))

    def resume(setup: Callable[[Ctx, Path, Path], None]) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            out = d / "out"
            shutil.copytree(c.fixture("good") / "student", out)
            setup(c, d, out / "checkpoint.pt")
            return P("distill", "--target", TARGET, "--task", "digits", "--teacher", c.fixture("teacher"), "--out", out,
                     "--epochs", "6", "--limit", "3000", "--no-int8-check", "--resume")
        return prep

    add("distill-resume-truncated-checkpoint", cat, "--resume with checkpoint.pt cut in half",
        resume(lambda c, d, p: truncate(p, 0.5)))
    add("distill-resume-empty-checkpoint", cat, "--resume with a 0-byte checkpoint.pt",
        resume(lambda c, d, p: p.write_bytes(b"")))
    add("distill-resume-pickle-checkpoint", cat, "--resume with a checkpoint.pt pickle whose __reduce__ runs "
        "os.system", resume(lambda c, d, p: p.write_bytes(evil_pickle(d / MARKER))), payload=True)
    add("distill-resume-empty-student", cat, "--resume with a 0-byte student.pt beside a good checkpoint",
        resume(lambda c, d, p: (p.parent / "student.pt").write_bytes(b"")), expect=("refused", "ok"))
    add("distill-resume-other-settings", cat, "--resume with a checkpoint made with another --lr",
        resume(lambda c, d, p: shutil.copyfile(c.fixture("torchfiles") / "checkpoint_other_settings.pt", p)))
    add("distill-resume-epoch-string", cat, "--resume with a checkpoint whose epoch is the string 'five'",
        resume(lambda c, d, p: shutil.copyfile(c.fixture("torchfiles") / "checkpoint_epoch_str.pt", p)))

    def cache_is_file(c: Ctx, d: Path) -> Plan:
        plan = distill_argv(c, d)
        plan.env["EDGEKD_CACHE"] = str(write(d / "cachefile", "not a folder"))
        return plan
    add("distill-cache-env-is-file", "cache", "EDGEKD_CACHE pointing at a regular file", cache_is_file)


def register_export_verify_codegen() -> None:
    def student(setup: Callable[[Ctx, Path, Path], None], *extra: str) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            s = d / "student"
            shutil.copytree(c.fixture("good") / "student", s)
            setup(c, d, s / "student.pt")
            return P("export", "--target", TARGET, "--student", s, "--out", d / "build", *extra)
        return prep

    cat = "export"
    add("export-student-empty-folder", cat, "export --student an empty folder",
        lambda c, d: P("export", "--target", TARGET, "--student", (d / "empty").mkdir() or d / "empty", "--out",
                       d / "build"))
    add("export-student-missing", cat, "export --student a missing folder",
        lambda c, d: P("export", "--target", TARGET, "--student", d / "nope", "--out", d / "build"))
    add("export-student-zero-bytes", cat, "a 0-byte student.pt", student(lambda c, d, p: p.write_bytes(b"")))
    add("export-student-truncated", cat, "student.pt cut in half", student(lambda c, d, p: truncate(p, 0.5)))
    add("export-student-pickle-payload", cat, "student.pt is a pickle with an os.system payload",
        student(lambda c, d, p: p.write_bytes(evil_pickle(d / MARKER))), payload=True)
    for variant, desc in (("wrong_shape", "a wrong-shaped tensor in the state dict"),
                          ("unknown_family", "family 'no-such-family'"), ("width_neg", "config width=-3"),
                          ("no_format", "no 'format' marker"), ("no_task", "no 'task' record")):
        add(f"export-student-{variant.replace('_', '-')}", cat, f"student.pt with {desc}",
            student(lambda c, d, p, v=variant: shutil.copyfile(c.fixture("torchfiles") / f"student_{v}.pt", p)))
    add("export-student-is-teacher", cat, "a teacher file given as student.pt",
        student(lambda c, d, p: shutil.copyfile(c.fixture("teacher"), p)))
    add("export-unknown-format", cat, "export --formats onnx", student(lambda c, d, p: None, "--formats", "onnx"))
    add("export-pte-on-mcu", cat, "export --formats pte for a microcontroller",
        student(lambda c, d, p: None, "--formats", "pte"))
    add("export-bad-precision", cat, "export --precision int4", student(lambda c, d, p: None, "--precision", "int4"))
    add("export-fp32-on-int8-full", cat, "export --precision fp32 for an int8-full target",
        student(lambda c, d, p: None, "--precision", "fp32"))
    add("export-calib-size-zero", cat, "export --calib-size 0", student(lambda c, d, p: None, "--calib-size", "0"))
    add("export-out-is-file", cat, "export --out a regular file",
        lambda c, d: P("export", "--target", TARGET, "--student", c.fixture("good") / "student", "--out",
                       write(d / "afile", "x")))

    cat = "verify"

    def art(setup: Callable[[Ctx, Path, Path], None] | None, *extra: Any,
            target: str = TARGET) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            a = d / "artifacts"
            shutil.copytree(c.fixture("good") / "artifacts", a)
            (a / ".edgekd.lock").unlink(missing_ok=True)
            if setup:
                setup(c, d, a)
            return P("verify", "--target", target, a, "--limit", "50", *[x(c, d) if callable(x) else x for x in extra])
        return prep

    add("verify-empty-folder", cat, "verify on an empty folder",
        lambda c, d: P("verify", "--target", TARGET, (d / "empty").mkdir() or d / "empty"))
    add("verify-missing-folder", cat, "verify on a missing folder",
        lambda c, d: P("verify", "--target", TARGET, d / "x"))
    add("verify-export-json-truncated", cat, "export.json cut in half",
        art(lambda c, d, a: truncate(a / "export.json", 0.5)))
    add("verify-export-json-list", cat, "export.json is a JSON list",
        art(lambda c, d, a: write(a / "export.json", "[]")))
    add("verify-artifact-missing", cat, "model_int8.tflite deleted",
        art(lambda c, d, a: (a / "model_int8.tflite").unlink()))

    def flipped_trust(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        a = d / "artifacts"
        exp = json.loads((a / "export.json").read_text())
        listed = {x["path"]: x["sha256"] for x in exp["artifacts"]}
        changed = sha(a / "model_int8.tflite") != listed.get("model_int8.tflite")
        return {"ok": True, "trusted": r.rc == 0 and changed,
                "note": "verify passed a .tflite whose sha256 differs from export.json"
                if r.rc == 0 and changed else ""}
    add("verify-tflite-byte-flipped", cat, "one byte of model_int8.tflite flipped (export.json not updated)",
        art(lambda c, d, a: flip_byte(a / "model_int8.tflite")), check=flipped_trust)
    add("verify-tflite-garbage", cat, "model_int8.tflite replaced by random bytes",
        art(lambda c, d, a: write(a / "model_int8.tflite", rand_bytes(144_000))))
    add("verify-max-drop-negative", cat, "verify --max-drop -1", art(None, "--max-drop", "-1"))
    add("verify-limit-zero", cat, "verify --limit 0", art(None, "--limit", "0"))

    def noqemu(plan: Plan, c: Ctx) -> Plan:
        plan.env["PATH"] = c.fixture("noqemu_path")
        return plan
    add("verify-emulator-qemu-not-installed", cat, "verify --emulator qemu with QEMU missing from PATH (must fail "
        "within seconds)", lambda c, d: noqemu(art(None, "--emulator", "qemu")(c, d), c), limit_s=45)

    cat = "codegen"

    def tflite(setup: Callable[[Path], None], *extra: Any) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            m = d / "model_int8.tflite"
            shutil.copyfile(c.fixture("good") / "artifacts" / "model_int8.tflite", m)
            setup(m)
            return P("codegen", m, "--out", d / "c", "--check", "4", *[x(c, d) if callable(x) else x for x in extra])
        return prep

    add("codegen-truncated-tflite", cat, "codegen on a .tflite cut in half", tflite(lambda m: truncate(m, 0.5)))
    add("codegen-truncated-tflite-header", cat, "codegen on the first 64 bytes of a .tflite",
        tflite(lambda m: truncate(m, 64)))
    add("codegen-garbage-tflite", cat, "codegen on random bytes", tflite(lambda m: m.write_bytes(rand_bytes(50_000))))
    add("codegen-empty-tflite", cat, "codegen on a 0-byte .tflite", tflite(lambda m: m.write_bytes(b"")))
    add("codegen-missing", cat, "codegen on a missing file",
        lambda c, d: P("codegen", d / "x.tflite", "--out", d / "c"))
    add("codegen-directory", cat, "codegen on a folder", lambda c, d: P("codegen", d, "--out", d / "c"))
    add("codegen-out-is-file", cat, "codegen --out a regular file",
        tflite(lambda m: None, "--out", lambda c, d: write(d / "afile", "x")))
    add("codegen-linux-target", cat, "codegen --target raspberry-pi-4b (not a microcontroller)",
        tflite(lambda m: None, "--target", LINUX_TARGET))
    add("codegen-pte-input", cat, "codegen on a .pte", lambda c, d: P("codegen", c.fixture("pi"), "--out", d / "c"))


def register_latency() -> None:
    cat = "latency"

    def lat(model: Callable[[Ctx, Path], Path], *extra: str, target: str = TARGET) -> Callable[[Ctx, Path], Plan]:
        return lambda c, d: P("latency", "--target", target, model(c, d), *extra)

    good = lambda c, d: c.fixture("good") / "artifacts" / "model_int8.tflite"  # noqa: E731
    add("latency-pte", cat, "latency on a real .pte (ExecuTorch program): costed or cleanly refused",
        lat(lambda c, d: c.fixture("pi"), target=LINUX_TARGET), expect=("refused", "ok"))
    add("latency-garbage-pte", cat, "latency on random bytes named model.pte",
        lat(lambda c, d: write(d / "model.pte", rand_bytes(4096))))
    add("latency-truncated-tflite", cat, "latency on a .tflite cut in half",
        lat(lambda c, d: write(d / "m.tflite", good(c, d).read_bytes()[: 70_000])))
    add("latency-missing", cat, "latency on a missing file", lat(lambda c, d: d / "missing.tflite"))
    add("latency-empty-folder", cat, "latency on an empty folder",
        lat(lambda c, d: (d / "empty").mkdir() or d / "empty"))
    add("latency-npz", cat, "latency on an .npz", lat(lambda c, d: write_npz(d / "x.npz", small_npz_members())))
    add("latency-unknown-target", cat, "latency --target no-such-board", lat(good, target="no-such-board"))
    add("latency-bad-budget-unit", cat, "latency --latency-budget 5parsecs", lat(good, "--latency-budget", "5parsecs"))
    add("latency-over-budget", cat, "latency with --latency-budget 1us: a real budget failure (exit 1 expected)",
        lat(good, "--latency-budget", "1us"), expect=("fails-gate",))

    def noqemu(c: Ctx, d: Path) -> Plan:
        return P("latency", "--target", LINUX_TARGET, good(c, d), "--emulator", "qemu",
                 env={"PATH": c.fixture("noqemu_path")})
    add("latency-emulator-qemu-not-installed", cat, "latency --target raspberry-pi-4b --emulator qemu with "
        "qemu-aarch64 missing from PATH (MCU targets count with unicorn and need no QEMU)", noqemu, limit_s=45)


# --- build


def stale_outputs(build: Path) -> list[str]:
    """Files whose sha256 differs from what report.json, export.json or the bundle's manifest say."""
    stale = []
    try:
        report = json.loads((build / "report.json").read_text())
        for a in report.get("artifacts", []):
            p = build / a["path"]
            if a.get("sha256") and (not p.is_file() or sha(p) != a["sha256"]):
                stale.append(f"report.json {a['path']}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        stale.append(f"report.json unreadable ({type(exc).__name__})")
    try:
        export = json.loads((build / "artifacts" / "export.json").read_text())
        for a in export.get("artifacts", []):
            p = build / "artifacts" / a["path"]
            if not p.is_file() or sha(p) != a["sha256"]:
                stale.append(f"export.json {a['path']}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        stale.append(f"export.json unreadable ({type(exc).__name__})")
    for bundle in build.glob("edgekd-*.tar.gz"):
        try:
            _, files = bundle_files(bundle)
            manifest = json.loads(files["manifest.json"])
            for name, digest in manifest["files"].items():
                p = build / "artifacts" / name
                if p.is_file() and "/" not in name and sha(p) != digest:
                    stale.append(f"bundle {name}")
                if name in files and sha(files[name]) != digest:
                    stale.append(f"bundle member {name}")
        except (OSError, ValueError, KeyError, TypeError, tarfile.TarError, EOFError) as exc:
            stale.append(f"bundle unreadable ({type(exc).__name__})")
    return sorted(set(stale))


def rebuilt_check(rel: str, exact: bool = True) -> Callable[[Ctx, Path, Run], dict[str, Any]]:
    """After a tamper and a rerun: no stale sha256 anywhere, and the tampered file rebuilt (to its original bytes
    when ``exact``: the .tflite, the C array and the bundle are byte-reproducible; .pt files carry a random
    serialization id and export/verify.json paths and timings, so for those "rebuilt" means "not the tampered
    bytes any more")."""
    def check(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        b = d / "b"
        stale = stale_outputs(b) if r.rc == 0 else []
        orig = (d / "orig.sha256").read_text().strip()
        tampered = (d / "tampered.sha256").read_text().strip()
        now = sha(b / rel) if (b / rel).is_file() else "missing"
        repaired = now == orig if exact else now not in (tampered, "missing")
        skipped = "skipped unchanged stages" in r.stdout
        notes = []
        if stale:
            notes.append("stale sha256 in " + ", ".join(stale))
        if not repaired:
            notes.append(f"{rel} not rebuilt" + (" to its original bytes" if exact else ""))
        if skipped:
            notes.append("skipped: " + r.stdout.split("skipped unchanged stages:")[-1].strip().splitlines()[0][:100])
        return {"ok": repaired and not stale, "trusted": bool(stale) or (r.rc == 0 and now == tampered != orig),
                "note": "; ".join(notes)}
    return check


def register_build() -> None:
    cat = "build"
    add("build-no-target", cat, "build without --target/--targets/--all", lambda c, d: P("build", "--fast"))
    add("build-unknown-target", cat, "build --target no-such-board",
        lambda c, d: P("build", "--target", "no-such-board", "--fast", "--out", d / "b"))
    add("build-targets-with-unknown", cat, "build --targets nrf52840-dk,,no-such-board",
        lambda c, d: P("build", "--targets", f"{TARGET},,no-such-board", "--fast", "--out", d / "b"))
    add("build-data-missing", cat, "build --data missing.npz",
        lambda c, d: P("build", "--target", TARGET, "--data", d / "missing.npz", "--fast", "--out", d / "b"))
    add("build-data-txt", cat, "build --data a .txt file",
        lambda c, d: P("build", "--target", TARGET, "--data", write(d / "x.txt", "x"), "--fast", "--out", d / "b"))

    def huge(c: Ctx, d: Path) -> Plan:
        m = small_npz_members()
        m["x_train.npy"] = npy_bytes("<f4", (1_000_000, 13_100))
        return P("build", "--target", TARGET, "--data", write_npz(d / "huge.npz", m), "--fast", "--emulator", "none",
                 "--out", d / "b")
    add("build-data-npz-48gib-header", cat, "build --data the .npz declaring a 48.8 GiB x_train", huge, limit_s=60,
        max_rss_mb=2048)
    add("build-teacher-garbage", cat, "build --teacher random bytes named t.pt",
        lambda c, d: P(*GOOD_BUILD, "--emulator", "none", "--teacher", write(d / "t.pt", rand_bytes(5000)), "--out",
                       d / "b"))
    add("build-teacher-missing", cat, "build --teacher a missing file",
        lambda c, d: P(*GOOD_BUILD, "--emulator", "none", "--teacher", d / "missing.pt", "--out", d / "b"))
    add("build-epochs-zero", cat, "build --epochs 0", lambda c, d: P(*GOOD_BUILD, "--epochs", "0", "--out", d / "b"))
    add("build-max-drop-negative", cat, "build --max-drop -1",
        lambda c, d: P(*GOOD_BUILD, "--max-drop", "-1", "--out", d / "b"))
    add("build-bad-emulator", cat, "build --emulator bochs", lambda c, d: P(*GOOD_BUILD, "--emulator", "bochs"))
    add("build-emulator-timeout-zero", cat, "build --emulator-timeout 0",
        lambda c, d: P(*GOOD_BUILD, "--emulator-timeout", "0", "--out", d / "b"))
    add("build-bad-ram-budget", cat, "build --ram-budget lots",
        lambda c, d: P(*GOOD_BUILD, "--ram-budget", "lots", "--out", d / "b"))

    def noqemu(c: Ctx, d: Path) -> Plan:
        return P(*GOOD_BUILD, "--emulator", "qemu", "--teacher", c.fixture("teacher"), "--out", d / "b",
                 env={"PATH": c.fixture("noqemu_path")})
    add("build-emulator-qemu-not-installed", cat, "build --emulator qemu with QEMU missing from PATH: must fail "
        "within seconds, before training", noqemu, limit_s=45, timeout=240)

    def cache_file(c: Ctx, d: Path) -> Plan:
        return P(*GOOD_BUILD, "--emulator", "none", "--teacher", c.fixture("teacher"), "--out", d / "b",
                 env={"EDGEKD_CACHE": str(write(d / "cachefile", "x"))})
    add("build-cache-env-is-file", "cache", "build with EDGEKD_CACHE pointing at a regular file", cache_file,
        timeout=240)

    def tamper(mutate: Callable[[Path], None], rel: str) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            b = c.copy_build(d / "b")
            write(d / "orig.sha256", sha(b / rel) if (b / rel).is_file() else "missing")
            mutate(b)
            write(d / "tampered.sha256", sha(b / rel) if (b / rel).is_file() else "missing")
            return P(*GOOD_BUILD, "--emulator", "none", "--out", b)
        return prep

    rebuild = dict(expect=("ok",), timeout=BUILD_TIMEOUT)

    def unchanged_check(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        stale = stale_outputs(d / "b") if r.rc == 0 else []
        skipped = r.stdout.split("skipped unchanged stages:")[-1].strip().splitlines()[0] \
            if "skipped unchanged stages" in r.stdout else "none"
        note = f"skipped: {skipped[:100]}" + ("" if skipped.count(",") >= 4 else
                                               " (not all: edgekd's sources changed since the fixture build?)")
        return {"ok": not stale, "trusted": bool(stale), "note": note + (f"; stale: {stale}" if stale else "")}
    add("build-rerun-unchanged", cat, "control: rerun the same build on an untouched copy (every stage should be "
        "skipped when edgekd's sources did not change meanwhile)",
        tamper(lambda b: None, "artifacts/model_int8.tflite"), check=unchanged_check, **rebuild)
    add("build-rerun-tflite-byte-flipped", cat, "flip one byte of artifacts/model_int8.tflite, rerun the same build: "
        "must rebuild it (not report a stale sha256 / all skipped)",
        tamper(lambda b: flip_byte(b / "artifacts" / "model_int8.tflite"), "artifacts/model_int8.tflite"),
        check=rebuilt_check("artifacts/model_int8.tflite"), **rebuild)
    add("build-rerun-model-data-c-emptied", cat, "empty artifacts/model_data.c, rerun the same build",
        tamper(lambda b: (b / "artifacts" / "model_data.c").write_bytes(b""), "artifacts/model_data.c"),
        check=rebuilt_check("artifacts/model_data.c"), **rebuild)
    add("build-rerun-student-byte-flipped", cat, "flip one byte of student/student.pt, rerun the same build",
        tamper(lambda b: flip_byte(b / "student" / "student.pt"), "student/student.pt"),
        check=rebuilt_check("student/student.pt", exact=False), **rebuild)
    add("build-rerun-teacher-byte-flipped", cat, "flip one byte of teacher/digits.pt, rerun the same build",
        tamper(lambda b: flip_byte(b / "teacher" / "digits.pt"), "teacher/digits.pt"),
        check=rebuilt_check("teacher/digits.pt", exact=False), **rebuild)
    add("build-rerun-bundle-byte-flipped", cat, "flip one byte of the build's bundle, rerun the same build",
        tamper(lambda b: flip_byte(next(b.glob("edgekd-*.tar.gz"))), f"edgekd-{TARGET}-digits.tar.gz"),
        check=rebuilt_check(f"edgekd-{TARGET}-digits.tar.gz"), **rebuild)
    add("build-rerun-export-json-edited", cat, "rewrite the .tflite's sha256 in artifacts/export.json, rerun",
        tamper(lambda b: write(b / "artifacts" / "export.json", (b / "artifacts" / "export.json").read_text()
                               .replace(sha(b / "artifacts" / "model_int8.tflite"), "0" * 64)),
               "artifacts/export.json"), check=rebuilt_check("artifacts/export.json", exact=False), **rebuild)
    add("build-rerun-stages-json-garbage", cat, "stages.json replaced by random bytes, rerun (rebuilding or one "
        "clean refusal are both fine)", tamper(lambda b: write(b / "stages.json", rand_bytes(300)),
                                               "artifacts/model_int8.tflite"),
        check=rebuilt_check("artifacts/model_int8.tflite"), expect=("ok", "refused"), timeout=BUILD_TIMEOUT)
    add("build-out-is-file", "disk", "build --out a regular file",
        lambda c, d: P(*GOOD_BUILD, "--emulator", "none", "--out", write(d / "afile", "x")))
    add("build-out-under-file", "disk", "build --out under a regular file (stands in for an unwritable folder)",
        lambda c, d: P(*GOOD_BUILD, "--emulator", "none", "--out", write(d / "afile", "x") / "b"))

    def fsize_export(c: Ctx, d: Path) -> Plan:
        return P("export", "--target", TARGET, "--student", c.fixture("good") / "student", "--out", d / "build",
                 fsize=100_000)
    add("export-disk-full", "disk", "export with RLIMIT_FSIZE 100 kB (writes fail with EFBIG: the non-root stand-in "
        "for a full disk); nothing may be left half-written", fsize_export, check=no_partial("build/model_int8.tflite"))

    def fsize_build(c: Ctx, d: Path) -> Plan:
        b = c.copy_build(d / "b")
        for p in (b / "artifacts" / "export.json", b / "artifacts" / "model_int8.tflite", b / "report.json"):
            p.unlink()
        return P(*GOOD_BUILD, "--emulator", "none", "--out", b, fsize=100_000)
    add("build-disk-full", "disk", "rerun a build (export stage) under RLIMIT_FSIZE 100 kB", fsize_build,
        check=no_partial("b/artifacts/model_int8.tflite"), timeout=BUILD_TIMEOUT)
    if os.geteuid() != 0:
        def readonly(c: Ctx, d: Path) -> Plan:
            (d / "ro").mkdir()
            os.chmod(d / "ro", 0o555)
            return P("package", c.fixture("good") / "artifacts", "--out", d / "ro" / "b.tar.gz")
        add("package-read-only-folder", "disk", "package --out into a read-only folder", readonly)


def no_partial(rel: str) -> Callable[[Ctx, Path, Run], dict[str, Any]]:
    def check(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        p = d / rel
        temps = [t.name for t in p.parent.glob(f".{p.stem}*")] if p.parent.is_dir() else []
        left = p.is_file() and r.rc != 0
        note = ("half-written " + rel if left else "") + (f" temporary files left: {temps}" if temps else "")
        return {"ok": not left and not temps, "trusted": False, "note": note.strip()}
    return check


# --- package and package verify


def unchanged(rel: str, data: bytes) -> Callable[[Ctx, Path, Run], dict[str, Any]]:
    def check(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        same = (d / rel).is_file() and (d / rel).read_bytes() == data
        return {"ok": same, "trusted": False, "note": "" if same else f"{rel} was overwritten"}
    return check


def register_package() -> None:
    cat = "package"

    def arts(setup: Callable[[Ctx, Path, Path], None] | None, *extra: Any) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            a = d / "artifacts"
            shutil.copytree(c.fixture("good") / "artifacts", a)
            (a / ".edgekd.lock").unlink(missing_ok=True)
            if setup:
                setup(c, d, a)
            return P("package", a, "--out", d / "bundle.tar.gz", "--vectors", "8",
                     *[x(c, d) if callable(x) else x for x in extra])
        return prep

    add("package-empty-folder", cat, "package on an empty folder",
        lambda c, d: P("package", (d / "e").mkdir() or d / "e", "--out", d / "b.tar.gz"))
    add("package-missing-folder", cat, "package on a missing folder",
        lambda c, d: P("package", d / "nope", "--out", d / "b.tar.gz"))
    add("package-export-json-truncated", cat, "package with export.json cut in half",
        arts(lambda c, d, a: truncate(a / "export.json", 0.5)))
    add("package-export-json-garbage", cat, "package with export.json of random bytes",
        arts(lambda c, d, a: write(a / "export.json", rand_bytes(700))))
    add("package-export-json-list", cat, "package with export.json a JSON list",
        arts(lambda c, d, a: write(a / "export.json", "[]\n")))
    add("package-export-json-no-artifacts", cat, "package with export.json missing 'artifacts'",
        arts(lambda c, d, a: write(a / "export.json", json.dumps(
            {k: v for k, v in json.loads((a / "export.json").read_text()).items() if k != "artifacts"}))))
    add("package-artifact-changed", cat, "package after a byte of model_int8.tflite changed since export",
        arts(lambda c, d, a: flip_byte(a / "model_int8.tflite")))
    add("package-no-verify-json", cat, "package without verify.json",
        arts(lambda c, d, a: (a / "verify.json").unlink()))
    add("package-verify-json-truncated", cat, "package with verify.json cut in half",
        arts(lambda c, d, a: truncate(a / "verify.json", 0.5)))
    add("package-verify-json-empty-object", cat, "package with verify.json '{}'",
        arts(lambda c, d, a: write(a / "verify.json", "{}\n")))
    add("package-vectors-zero", cat, "package --vectors 0", arts(None, "--vectors", "0"))
    add("package-out-is-directory", cat, "package --out an existing folder",
        lambda c, d: P("package", c.fixture("good") / "artifacts", "--out", d))
    add("package-out-under-file", "disk", "package --out under a regular file",
        lambda c, d: P("package", c.fixture("good") / "artifacts", "--out", write(d / "afile", "x") / "b.tar.gz"))
    add("package-disk-full", "disk", "package with RLIMIT_FSIZE 64 KiB (EFBIG, the stand-in for a full disk); no "
        "partial bundle may be left", lambda c, d: P("package", c.fixture("good") / "artifacts", "--out",
                                                    d / "b.tar.gz", "--vectors", "8", fsize=65536),
        check=no_partial("b.tar.gz"))

    def twice(c: Ctx, d: Path) -> Plan:
        run_cli(c.ek + ["package", str(c.fixture("good") / "artifacts"), "--out", str(d / "one.tar.gz"), "--vectors",
                        "8"], d, c.env, DEFAULT_TIMEOUT, tag="-first")
        return P("package", c.fixture("good") / "artifacts", "--out", d / "two.tar.gz", "--vectors", "8")

    def same_bytes(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        one, two = d / "one.tar.gz", d / "two.tar.gz"
        if not (one.is_file() and two.is_file()):
            return {"ok": False, "trusted": False, "note": "a bundle is missing"}
        build_bundle = c.bundle()
        same = one.read_bytes() == two.read_bytes()
        same_build = two.read_bytes() == build_bundle.read_bytes()
        return {"ok": same, "trusted": False, "note": ("identical" if same else "the two bundles differ")
                + ("; identical to the build's own bundle" if same_build else "; differs from the build's bundle")}
    add("package-twice-identical", cat, "the same inputs packaged twice give byte-identical bundles", twice,
        expect=("ok",), check=same_bytes)

    def sign(c: Ctx, d: Path, key: Callable[[Ctx, Path], Path]) -> Plan:
        c.fixture("keys")
        return P("package", c.fixture("good") / "artifacts", "--out", d / "b.tar.gz", "--sign", key(c, d))
    add("package-sign-missing-key", cat, "package --sign a missing key file",
        lambda c, d: sign(c, d, lambda c, d: d / "missing.key"))
    add("package-sign-garbage-key", cat, "package --sign a key file of random bytes",
        lambda c, d: sign(c, d, lambda c, d: write(d / "garbage.key", rand_bytes(64))))
    add("package-sign-with-public-key", cat, "package --sign given the public key",
        lambda c, d: sign(c, d, lambda c, d: c.fixture("keys")["a_pub"]))

    def keygen(c: Ctx, d: Path, *args: Any) -> Plan:
        c.fixture("keys")
        return P("keygen", *[a(c, d) if callable(a) else a for a in args])
    add("keygen-existing-without-force", cat, "keygen --out an existing key without --force (must not overwrite)",
        lambda c, d: keygen(c, d, "--out", write(d / "k.key", "keep me")), check=unchanged("k.key", b"keep me"))
    add("keygen-out-under-file", cat, "keygen --out under a regular file",
        lambda c, d: keygen(c, d, "--out", write(d / "afile", "x") / "k.key"))
    add("keygen-out-is-directory", cat, "keygen --out an existing folder", lambda c, d: keygen(c, d, "--out", d))
    add("keygen-no-out", cat, "keygen without --out", lambda c, d: keygen(c, d))

    cat = "package-verify"

    def pv(path: Callable[[Ctx, Path], Path], *extra: Any) -> Callable[[Ctx, Path], Plan]:
        return lambda c, d: P("package", "verify", path(c, d), *[x(c, d) if callable(x) else x for x in extra])

    def variant(mutate: Callable[[dict[str, bytes]], None] | None = None, rehash: bool = True,
                extra: Callable[[str], list[tuple[tarfile.TarInfo, bytes]]] | None = None,
                manifest_edit: Callable[[Any], Any] | None = None, which: str = "good",
                src: str | None = None) -> Callable[[Ctx, Path], Path]:
        def make(c: Ctx, d: Path) -> Path:
            source = c.fixture("signed") if src == "signed" else c.bundle(which)
            prefix = bundle_files(source)[0]
            return repack(source, d / "bundle.tar.gz", mutate, rehash, extra(prefix) if extra else None,
                          manifest_edit)
        return make

    def raw(make: Callable[[Path], bytes]) -> Callable[[Ctx, Path], Path]:
        return lambda c, d: write(d / "bundle.tar.gz", make(d))

    add("pv-good-bundle", cat, "control: the good bundle verifies", pv(lambda c, d: c.bundle()), expect=("ok",))
    add("pv-missing", cat, "package verify on a missing file", pv(lambda c, d: d / "missing.tar.gz"))
    add("pv-directory", cat, "package verify on a folder", pv(lambda c, d: d))
    add("pv-empty-file", cat, "package verify on a 0-byte file", pv(raw(lambda d: b"")))
    add("pv-not-gzip", cat, "package verify on random bytes", pv(raw(lambda d: rand_bytes(10_000))))
    add("pv-gzip-not-tar", cat, "package verify on gzip'd random bytes",
        pv(raw(lambda d: gz(rand_bytes(10_000)))))
    add("pv-plain-tar", cat, "package verify on an uncompressed tar of the good bundle",
        pv(lambda c, d: write(d / "bundle.tar.gz", gzip.decompress(c.bundle().read_bytes()))))
    add("pv-truncated-gzip", cat, "the good bundle cut in half",
        pv(lambda c, d: write(d / "bundle.tar.gz", c.bundle().read_bytes()[: c.bundle().stat().st_size // 2])))
    add("pv-trailing-bytes", cat, "1 KiB of random bytes after the gzip stream",
        pv(lambda c, d: write(d / "bundle.tar.gz", c.bundle().read_bytes() + rand_bytes(1024))))
    add("pv-trailing-gzip-member", cat, "a second gzip member (a tar with an extra file) appended",
        pv(lambda c, d: write(d / "bundle.tar.gz", c.bundle().read_bytes() + tar_gz(
            [file_entry(bundle_files(c.bundle())[0] + "/extra.bin", b"hello")]))))
    add("pv-gzip-bomb-3gib", cat, "a .tar.gz whose entry really holds 3 GiB of zeros (a few MB compressed): must "
        "be refused fast and without reading it into memory",
        pv(lambda c, d: big_entry_bundle(d / "bundle.tar.gz", 3 << 30, True)), limit_s=30, max_rss_mb=1024,
        timeout=300)
    add("pv-declared-3gib-no-data", cat, "a .tar.gz whose entry header declares 3 GiB with no data behind it",
        pv(lambda c, d: big_entry_bundle(d / "bundle.tar.gz", 3 << 30, False)), limit_s=30, max_rss_mb=1024)

    def special(kind: str) -> Callable[[str], list[tuple[tarfile.TarInfo, bytes]]]:
        def make(prefix: str) -> list[tuple[tarfile.TarInfo, bytes]]:
            if kind == "dotdot":
                return [file_entry(f"{prefix}/../escaped.txt", b"x")]
            if kind == "absolute":
                return [file_entry("/tmp/edgekd-probe-absolute.txt", b"x")]
            if kind == "other-prefix":
                return [file_entry("other-folder/x.txt", b"x")]
            if kind == "no-prefix":
                return [file_entry("toplevel.txt", b"x")]
            if kind == "long-name":
                return [file_entry(f"{prefix}/{'a' * 5000}.txt", b"x")]
            info = tarfile.TarInfo(f"{prefix}/special")
            info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "device": tarfile.CHRTYPE,
                         "fifo": tarfile.FIFOTYPE, "dir": tarfile.DIRTYPE}[kind]
            info.mode = 0o644
            if kind == "symlink":
                info.linkname = "/etc/passwd"
            if kind == "hardlink":
                info.linkname = f"{prefix}/manifest.json"
            if kind == "device":
                info.devmajor, info.devminor = 1, 3
            return [(info, b"")]
        return make

    for kind, desc in (("symlink", "a symlink entry to /etc/passwd"), ("hardlink", "a hard-link entry"),
                       ("device", "a character-device entry (/dev/null's numbers)"), ("fifo", "a FIFO entry"),
                       ("dotdot", "an entry named PREFIX/../escaped.txt"), ("absolute", "an absolute entry name"),
                       ("other-prefix", "an entry outside the bundle folder"),
                       ("no-prefix", "a top-level entry with no folder"),
                       ("long-name", "an entry with a 5000-character name")):
        add(f"pv-entry-{kind}", cat, f"the good bundle plus {desc}", pv(variant(rehash=False, extra=special(kind))))

    def dup(first_tampered: bool) -> Callable[[Ctx, Path], Path]:
        def make(c: Ctx, d: Path) -> Path:
            prefix, files = bundle_files(c.bundle())
            good = files["model_int8.tflite"]
            bad = bytearray(good)
            bad[len(bad) // 2] ^= 0x5A
            pair = [bytes(bad), good] if first_tampered else [good, bytes(bad)]
            entries = [file_entry(f"{prefix}/{n}", files[n]) for n in sorted(files) if n != "model_int8.tflite"]
            entries += [file_entry(f"{prefix}/model_int8.tflite", data) for data in pair]
            return write(d / "bundle.tar.gz", tar_gz(entries))
        return make
    add("pv-duplicate-entry-last-good", cat, "model_int8.tflite twice: a tampered copy, then the genuine one",
        pv(dup(True)))
    add("pv-duplicate-entry-last-tampered", cat, "model_int8.tflite twice: the genuine copy, then a tampered one",
        pv(dup(False)))
    add("pv-many-entries", cat, "the good bundle plus 5000 small entries not in the manifest",
        pv(variant(rehash=False, extra=lambda p: [file_entry(f"{p}/junk/{i:05d}", b"") for i in range(5000)])),
        limit_s=60)

    def pop(name: str) -> Callable[[dict[str, bytes]], None]:
        return lambda f: f.pop(name)

    def setf(name: str, data: Callable[[bytes], bytes]) -> Callable[[dict[str, bytes]], None]:
        def m(f: dict[str, bytes]) -> None:
            f[name] = data(f.get(name, b""))
        return m

    def flipped(b: bytes) -> bytes:
        x = bytearray(b)
        x[len(x) // 2] ^= 0x5A
        return bytes(x)

    add("pv-tflite-flipped-not-rehashed", cat, "one .tflite byte flipped, manifest left as it was",
        pv(variant(setf("model_int8.tflite", flipped), rehash=False)))
    add("pv-tflite-flipped-rehashed", cat, "one .tflite byte flipped and manifest.json re-hashed (no key: the "
        "vectors must catch it)", pv(variant(setf("model_int8.tflite", flipped))), expect=("fails-gate", "refused"))
    add("pv-tflite-flipped-rehashed-no-rerun", cat, "the re-hashed flipped bundle with --no-rerun (checksums only; "
        "unsigned, so exit 0 is the documented outcome)", pv(variant(setf("model_int8.tflite", flipped)), "--no-rerun"),
        expect=("ok", "refused"))
    add("pv-header-removed", cat, "model_data.h removed from both the tar and manifest.json",
        pv(variant(pop("model_data.h"))))
    add("pv-extra-file", cat, "an extra file not in the manifest",
        pv(variant(setf("notes.txt", lambda b: b"hello"), rehash=False)))
    add("pv-missing-file", cat, "model_data.c removed from the tar only",
        pv(variant(pop("model_data.c"), rehash=False)))
    add("pv-no-manifest", cat, "manifest.json removed", pv(variant(pop("manifest.json"), rehash=False)))
    add("pv-manifest-truncated", cat, "manifest.json cut in half",
        pv(variant(setf("manifest.json", lambda b: b[: len(b) // 2]), rehash=False)))
    add("pv-manifest-binary", cat, "manifest.json of random bytes",
        pv(variant(setf("manifest.json", lambda b: rand_bytes(2000)), rehash=False)))
    add("pv-manifest-list", cat, "manifest.json is a JSON list", pv(variant(setf("manifest.json", lambda b: b"[]\n"),
                                                                            rehash=False)))
    add("pv-manifest-no-files", cat, "manifest.json without 'files'",
        pv(variant(manifest_edit=lambda m: {k: v for k, v in m.items() if k != "files"}, rehash=False)))
    add("pv-manifest-files-list", cat, "manifest.json whose 'files' is a list",
        pv(variant(manifest_edit=lambda m: m | {"files": list(m["files"])}, rehash=False)))
    add("pv-manifest-files-null-sha", cat, "manifest.json 'files' with null checksums",
        pv(variant(manifest_edit=lambda m: m | {"files": {k: None for k in m["files"]}}, rehash=False)))
    add("pv-manifest-files-escaping", cat, "manifest.json 'files' listing ../../etc/passwd",
        pv(variant(manifest_edit=lambda m: m | {"files": m["files"] | {"../../etc/passwd": "0" * 64}}, rehash=False)))
    add("pv-manifest-wrong-format", cat, "manifest.json with format 'something-else/9'",
        pv(variant(manifest_edit=lambda m: m | {"format": "something-else/9"})))
    add("pv-manifest-vector-count-wrong", cat, "manifest.json vectors.count 9999 (the files hold 8)",
        pv(variant(manifest_edit=lambda m: m | {"vectors": m["vectors"] | {"count": 9999}})))
    add("pv-manifest-vector-count-zero", cat, "manifest.json vectors.count 0",
        pv(variant(manifest_edit=lambda m: m | {"vectors": m["vectors"] | {"count": 0}})))
    add("pv-manifest-vector-count-string", cat, "manifest.json vectors.count \"eight\"",
        pv(variant(manifest_edit=lambda m: m | {"vectors": m["vectors"] | {"count": "eight"}})))
    add("pv-manifest-input-shape-wrong", cat, "manifest.json preprocessing.input_shape [3, 32, 32]",
        pv(variant(manifest_edit=lambda m: m | {"preprocessing": m["preprocessing"] | {"input_shape": [3, 32, 32]}})))
    add("pv-manifest-artifacts-not-list", cat, "manifest.json artifacts is a string",
        pv(variant(manifest_edit=lambda m: m | {"artifacts": "model_int8.tflite"})))
    add("pv-manifest-artifact-missing-file", cat, "manifest.json artifacts names a file that is not in the bundle",
        pv(variant(manifest_edit=lambda m: m | {"artifacts": m["artifacts"] + [m["artifacts"][0] | {
            "path": "model_other.tflite"}]})))
    add("pv-tflite-truncated-rehashed", cat, "model_int8.tflite cut in half, manifest re-hashed",
        pv(variant(setf("model_int8.tflite", lambda b: b[: len(b) // 2]))))
    add("pv-tflite-garbage-rehashed", cat, "model_int8.tflite replaced by random bytes, manifest re-hashed",
        pv(variant(setf("model_int8.tflite", lambda b: rand_bytes(len(b))))))
    add("pv-tflite-empty-rehashed", cat, "model_int8.tflite emptied, manifest re-hashed",
        pv(variant(setf("model_int8.tflite", lambda b: b""))))
    add("pv-vectors-input-truncated-rehashed", cat, "vectors/input_f32.bin cut in half, manifest re-hashed",
        pv(variant(setf("vectors/input_f32.bin", lambda b: b[: len(b) // 2 + 3]))))
    add("pv-vectors-expected-changed-rehashed", cat, "expected outputs changed, manifest re-hashed: a vector "
        "mismatch (exit 1 expected)",
        pv(variant(setf("vectors/expected_model_int8_int8.bin", lambda b: bytes((x + 7) % 256 for x in b)))),
        expect=("fails-gate",))

    def with_pte(content: Callable[[Ctx], bytes]) -> Callable[[Ctx, Path], Path]:
        def make(c: Ctx, d: Path) -> Path:
            data = content(c)

            def mutate(f: dict[str, bytes]) -> None:
                f["model_fp32.pte"] = data
                f["vectors/expected_model_fp32_f32.bin"] = bytes(8 * 10 * 4)

            def edit(m: Any) -> Any:
                m["artifacts"].append({"path": "model_fp32.pte", "format": "pte", "precision": "fp32",
                                       "runtime": "executorch", "bytes": len(data), "sha256": sha(data)})
                m["vectors"]["expected"] = sorted(m["vectors"]["expected"] + ["vectors/expected_model_fp32_f32.bin"])
                return m
            return repack(c.bundle(), d / "bundle.tar.gz", mutate, True, None, edit)
        return make
    add("pv-pte-truncated-rehashed", cat, "a real .pte cut in half added as an artifact, manifest re-hashed",
        pv(with_pte(lambda c: c.fixture("pi").read_bytes()[: c.fixture("pi").stat().st_size // 2])))
    add("pv-pte-garbage-rehashed", cat, "random bytes as model_fp32.pte added as an artifact, manifest re-hashed",
        pv(with_pte(lambda c: rand_bytes(50_000))))

    # generated C (needs the emulated build's bundle)
    def c_payload(where: str) -> Callable[[Ctx, Path], Path]:
        def make(c: Ctx, d: Path) -> Path:
            bundle = c.bundle("goodc")
            _, files = bundle_files(bundle)
            manifest = json.loads(files["manifest.json"])
            sources = (manifest.get("generated_c") or {}).get("sources") or []
            model_c = next((s for s in sources if s.endswith("model.c")), None)
            if model_c is None:
                raise Skip("the emulated build's bundle has no generated C sources (c/model.c)")
            evil = (f'\n#include <stdlib.h>\n__attribute__((constructor)) static void edgekd_probe_payload(void) '
                    f'{{ system("touch {d / MARKER}"); }}\n').encode()

            def mutate(f: dict[str, bytes]) -> None:
                if where == "model.c":
                    f[model_c] = f[model_c] + evil
                else:
                    f[model_c.rsplit("/", 1)[0] + "/zz_probe.c"] = evil

            def edit(m: Any) -> Any:
                if where != "model.c":
                    m["generated_c"]["sources"] = sorted(m["generated_c"]["sources"] + [
                        model_c.rsplit("/", 1)[0] + "/zz_probe.c"])
                return m
            return repack(bundle, d / "bundle.tar.gz", mutate, True, None, edit)
        return make
    add("pv-c-constructor-payload", cat, "c/model.c gains __attribute__((constructor)) calling system(\"touch "
        "MARKER\"), manifest re-hashed", pv(c_payload("model.c")), payload=True, expect=("refused", "fails-gate"),
        timeout=300)
    add("pv-c-extra-source-payload", cat, "a new c/zz_probe.c with a constructor payload listed in "
        "generated_c.sources, manifest re-hashed", pv(c_payload("extra")), payload=True,
        expect=("refused", "fails-gate"), timeout=300)
    add("pv-good-c-bundle", cat, "control: the emulated build's bundle (with generated C) verifies",
        pv(lambda c, d: c.bundle("goodc")), expect=("ok",), timeout=300)

    # signatures (once edgekd has keygen / --sign / --key)
    def keyed(make: Callable[[Ctx, Path], Path], key: str = "a_pub") -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            keys = c.fixture("keys")
            k = keys[key] if key in keys else (write(d / "garbage.pub", rand_bytes(64)) if key == "garbage"
                                               else d / "missing.pub")
            return P("package", "verify", make(c, d), "--key", k)
        return prep

    def trust_if_ok(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        return {"ok": True, "trusted": r.rc == 0,
                "note": "a tampered, re-hashed bundle verified with --key" if r.rc == 0 else ""}

    signed = lambda c, d: c.fixture("signed")  # noqa: E731
    add("pv-signed-good", cat, "control: the signed bundle verifies with --key", keyed(signed), expect=("ok",))
    add("pv-signed-wrong-key", cat, "the signed bundle verified with another key pair's public key",
        keyed(signed, "b_pub"))
    add("pv-signed-garbage-key", cat, "--key a file of random bytes", keyed(signed, "garbage"))
    add("pv-signed-missing-key", cat, "--key a missing file", keyed(signed, "missing"))
    add("pv-unsigned-with-key", cat, "an unsigned bundle verified with --key", keyed(lambda c, d: c.bundle()))
    add("pv-signed-tflite-flipped-rehashed", cat, "signed bundle: one .tflite byte flipped, manifest re-hashed, "
        "verified with --key", keyed(variant(setf("model_int8.tflite", flipped), src="signed")), check=trust_if_ok)
    add("pv-signed-header-removed", cat, "signed bundle: model_data.h removed from tar and manifest, --key",
        keyed(variant(pop("model_data.h"), src="signed")), check=trust_if_ok)
    add("pv-signed-vectors-changed", cat, "signed bundle: expected vectors and the .tflite both changed "
        "consistently-looking, manifest re-hashed, --key",
        keyed(variant(lambda f: (setf("model_int8.tflite", flipped)(f), setf(
            "vectors/expected_model_int8_int8.bin", lambda b: bytes((x + 1) % 256 for x in b))(f)), src="signed")),
        check=trust_if_ok)
    add("pv-signed-signature-garbage", cat, "signed bundle whose manifest.sig member is random bytes, --key",
        keyed(variant(setf("manifest.sig", lambda b: rand_bytes(max(len(b), 64))), rehash=False, src="signed")),
        check=trust_if_ok)
    add("pv-signed-private-key-as-key", cat, "--key given the private key instead of KEY.pub",
        keyed(signed, "a_priv"))
    add("pv-signed-trailing-bytes", cat, "signed bundle with 1 KiB appended after the gzip stream, --key",
        keyed(lambda c, d: write(d / "bundle.tar.gz", c.fixture("signed").read_bytes() + rand_bytes(1024))))

    def strip_sig(c: Ctx, d: Path) -> Path:
        src = c.fixture("signed")
        prefix, files = bundle_files(src)
        manifest = json.loads(files["manifest.json"])
        keep = {n: b for n, b in files.items() if n in manifest.get("files", {}) or n == "manifest.json"}
        out = write(d / "bundle.tar.gz", tar_gz([file_entry(f"{prefix}/{n}", keep[n]) for n in sorted(keep)]))
        return out
    add("pv-signed-signature-stripped", cat, "signed bundle with its signature member removed, --key",
        keyed(strip_sig), check=trust_if_ok)


# --- cache


def register_cache() -> None:
    cat = "cache"

    def cache_case(mutate: Callable[[Path, Path], None]) -> Callable[[Ctx, Path], Plan]:
        def prep(c: Ctx, d: Path) -> Plan:
            good = c.fixture("good")
            key = Path(json.loads((good / "student" / "distill.json").read_text())["teacher_cache"]["dir"]).name
            src = c.work / "cache" / "teacher-outputs" / key
            if not (src / "epoch-0000.npy").is_file():
                raise Skip(f"the good build's teacher-cache entry {key}/epoch-0000.npy is not in the cache")
            dst = d / "cache" / "teacher-outputs" / key
            shutil.copytree(src, dst)
            write(d / "key.txt", key)
            write(d / "orig.sha256", sha(dst / "epoch-0000.npy"))
            mutate(dst / "epoch-0000.npy", d)
            return P("distill", "--target", TARGET, "--task", "digits", "--teacher", good / "teacher" / "digits.pt",
                     "--out", d / "out", "--epochs", "1", "--limit", "3000", "--no-int8-check",
                     env={"EDGEKD_CACHE": str(d / "cache")})
        return prep

    def cache_check(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        key = (d / "key.txt").read_text()
        entry = d / "cache" / "teacher-outputs" / key / "epoch-0000.npy"
        try:
            tc = json.loads((d / "out" / "distill.json").read_text())["teacher_cache"]
        except (OSError, ValueError, KeyError):
            tc = {}
        used_key = Path(tc.get("dir", "")).name
        warned = any(w in r.stderr.lower() for w in ("cache", "recomput"))
        repaired = entry.is_file() and sha(entry) == (d / "orig.sha256").read_text()
        hit = bool(tc.get("hits")) and used_key == key
        trusted = r.rc == 0 and hit and not warned and not repaired
        note = f"cache {'hit' if hit else 'miss'}" + (f" under another key {used_key}" if used_key and
                                                        used_key != key else "")
        note += ", warned" if warned else ", no warning"
        note += ", entry restored" if repaired else ", entry still tampered" if entry.is_file() else ", entry removed"
        return {"ok": r.rc != 0 or not trusted, "trusted": trusted, "note": note}

    def rand_logits(p: Path, d: Path) -> None:
        data = p.read_bytes()
        hlen = struct.unpack("<H", data[8:10])[0]
        body = data[10 + hlen:]
        p.write_bytes(data[: 10 + hlen] + f32([random.Random(7).uniform(-30, 30) for _ in range(len(body) // 4)]))

    def wrong_shape(p: Path, d: Path) -> None:
        p.write_bytes(npy_bytes("<f4", (5, 3), f32([0.0] * 15)))

    common = dict(expect=("ok", "refused"), check=cache_check, timeout=240)
    add("cache-entry-random-logits", cat, "teacher-cache epoch-0000.npy replaced by random logits of the same shape: "
        "a hit without a warning is a changed output trusted", cache_case(rand_logits), **common)
    add("cache-entry-truncated", cat, "teacher-cache epoch-0000.npy cut in half",
        cache_case(lambda p, d: truncate(p, 0.5)), **common)
    add("cache-entry-wrong-shape", cat, "teacher-cache epoch-0000.npy holds a (5, 3) array",
        cache_case(wrong_shape), **common)
    add("cache-entry-pickle-payload", cat, "teacher-cache epoch-0000.npy is an object array whose pickle runs "
        "os.system", cache_case(lambda p, d: p.write_bytes(npy_bytes("|O", (1,), evil_pickle(d / MARKER))))
        , payload=True, **common)


# --- concurrency


def register_concurrency() -> None:
    cat = "concurrency"

    def two_builds(c: Ctx, d: Path, plan: Plan) -> Run:
        env = c.env | {k: v for k, v in plan.env.items() if v is not None}
        runs: list[Run | None] = [None, None]

        def one(i: int) -> None:
            time.sleep(2.0 * i)
            runs[i] = run_cli(c.ek + plan.argv, d, env, BUILD_TIMEOUT, tag=f"-{i}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        a, b = runs  # type: ignore[misc]
        assert a is not None and b is not None
        (d / "rcs.json").write_text(json.dumps([a.rc, b.rc]))
        order = sorted((a, b), key=lambda r: (0 if "Traceback" in r.stderr else 1 if r.rc == 3 else
                                              2 if r.rc == 2 else 3 if r.rc not in (0,) else 4))
        chosen = order[0]
        return Run(chosen.rc, chosen.stdout, chosen.stderr, max(a.seconds, b.seconds + 2.0),
                   max(a.max_rss_mb, b.max_rss_mb), a.timed_out or b.timed_out, chosen.argv)

    def prep(c: Ctx, d: Path) -> Plan:
        b = c.copy_build(d / "b")
        return P(*GOOD_BUILD, "--emulator", "none", "--epochs", "5", "--out", b)

    def check(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        rcs = json.loads((d / "rcs.json").read_text())
        in_use = "in use" in r.stderr
        winner_ok = 0 in rcs
        stale = stale_outputs(d / "b") if winner_ok else []
        notes = [f"exit codes {rcs}"] + (["refusal does not say 'in use'"] if r.rc == 2 and not in_use else []) + \
            ([f"stale: {', '.join(stale)}"] if stale else [])
        return {"ok": winner_ok and not stale and (r.rc != 2 or in_use), "trusted": bool(stale),
                "note": "; ".join(notes)}
    add("concurrent-builds-same-out", cat, "two builds into one --out at once (second starts 2 s later): one must "
        "exit 2 'in use by another edgekd run', the other succeed", prep, runner=two_builds, check=check,
        timeout=BUILD_TIMEOUT)

    def killed(c: Ctx, d: Path, plan: Plan) -> Run:
        env = c.env | {k: v for k, v in plan.env.items() if v is not None}
        first = run_cli(c.ek + plan.argv, d, env, 12.0, tag="-killed")  # SIGKILLed by the timeout
        (d / "first.json").write_text(json.dumps({"rc": first.rc, "seconds": first.seconds}))
        return run_cli(c.ek + plan.argv, d, env, BUILD_TIMEOUT)

    def killed_check(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        stale = stale_outputs(d / "b") if r.rc == 0 else []
        first = json.loads((d / "first.json").read_text())
        return {"ok": not stale, "trusted": bool(stale),
                "note": (f"first run killed after {first['seconds']} s" if first["rc"] is None else
                         f"first run ended before the kill (exit {first['rc']})")
                + (f"; stale: {', '.join(stale)}" if stale else "")}
    add("killed-build-rerun", cat, "a build SIGKILLed after 12 s (lock and half-done stages left), then rerun: "
        "must finish with consistent outputs", prep, runner=killed, check=killed_check, expect=("ok",),
        timeout=BUILD_TIMEOUT)

    def two_packages(c: Ctx, d: Path, plan: Plan) -> Run:
        env = c.env
        runs: list[Run | None] = [None, None]

        def one(i: int) -> None:
            runs[i] = run_cli(c.ek + plan.argv, d, env, DEFAULT_TIMEOUT, tag=f"-{i}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        a, b = runs  # type: ignore[misc]
        assert a is not None and b is not None
        (d / "rcs.json").write_text(json.dumps([a.rc, b.rc]))
        worst = max((a, b), key=lambda r: ("Traceback" in r.stderr, r.rc not in (0, 2), r.rc == 2))
        return Run(worst.rc, worst.stdout, worst.stderr, max(a.seconds, b.seconds), max(a.max_rss_mb, b.max_rss_mb),
                   a.timed_out or b.timed_out, worst.argv)

    def bundle_ok(c: Ctx, d: Path, r: Run) -> dict[str, Any]:
        out = d / "bundle.tar.gz"
        rcs = json.loads((d / "rcs.json").read_text())
        try:
            _, files = bundle_files(out)
            manifest = json.loads(files["manifest.json"])
            bad = [n for n, h in manifest["files"].items() if sha(files[n]) != h]
        except Exception as exc:  # noqa: BLE001
            bad = [f"unreadable bundle ({type(exc).__name__})"]
        return {"ok": not bad, "trusted": False, "note": f"exit codes {rcs}" + (f"; bad: {bad}" if bad else "")}
    add("concurrent-package-same-out", cat, "two `package` runs writing the same bundle at once: both may succeed "
        "or one be refused, but the bundle must be whole",
        lambda c, d: P("package", c.fixture("good") / "artifacts", "--out", d / "bundle.tar.gz", "--vectors", "8"),
        runner=two_packages, check=bundle_ok, expect=("ok", "refused"))


def register_all() -> None:
    if CASES:
        return
    register_targets()
    register_plan()
    register_teacher()
    register_distill()
    register_export_verify_codegen()
    register_latency()
    register_build()
    register_package()
    register_cache()
    register_concurrency()


# ----------------------------------------------------------------------------------------------- running cases


def classify(case: Case, run: Run) -> tuple[str, str]:
    """(outcome, kind of exit) for a run against the case's expectation."""
    err = run.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    if run.timed_out:
        return "timeout", "timeout"
    if "Traceback (most recent call last)" in err:
        return "traceback", "traceback"
    if run.rc == 3:
        return "internal", "internal"
    if run.rc == 2:
        kind = "refused" if len(lines) == 1 and lines[0].startswith("edgekd: error:") else "noisy"
    elif run.rc == 1:
        kind = "gate"
    elif run.rc == 0:
        kind = "ok"
    else:
        return "crash", f"exit {run.rc}"
    if kind == "refused":
        return ("clean" if "refused" in case.expect else "refused"), kind
    if kind == "gate":
        return ("met" if "fails-gate" in case.expect else "gate"), kind
    if kind == "ok":
        return ("met" if "ok" in case.expect else "accepted"), kind
    return "noisy", kind


def run_case(ctx: Ctx, case: Case) -> dict[str, Any]:
    d = ctx.cases_dir / case.name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    rec: dict[str, Any] = {"name": case.name, "category": case.category, "description": case.desc,
                           "expected": "/".join(case.expect), "argv": [], "outcome": None, "exit_code": None,
                           "first_stderr_line": "", "error_line": "", "stderr_lines": 0, "seconds": None,
                           "max_rss_mb": None,
                           "code_executed": False, "changed_output_trusted": False, "note": ""}
    try:
        plan = case.prep(ctx, d)
        if isinstance(plan, list):
            plan = Plan([str(a) for a in plan])
        env = dict(ctx.env)
        for k, v in plan.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        rec["argv"] = ["edgekd", *(ctx.rel(a) for a in plan.argv)]
        if plan.env:
            rec["env"] = {k: ctx.rel(v) if v else v for k, v in plan.env.items()}
            if "PATH" in plan.env:
                rec["env"]["PATH"] = "venv/bin + system tools without qemu*"
        if plan.fsize is not None:
            rec["rlimit_fsize"] = plan.fsize
        if case.runner:
            run = case.runner(ctx, d, plan)
        else:
            run = run_cli(ctx.ek + plan.argv, d, env, plan.timeout or case.timeout, plan.fsize)
    except Skip as exc:
        rec.update(outcome="skipped", note=ctx.rel(str(exc)))
        return rec
    except Exception as exc:  # noqa: BLE001 - a bug in the probe itself, reported, not fatal
        rec.update(outcome="error", note=f"probe error: {type(exc).__name__}: {exc}"[:300],
                   probe_traceback=traceback.format_exc()[-2000:])
        return rec
    outcome, kind = classify(case, run)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = [ln.strip() for ln in lines if ln.startswith("edgekd: error:")]
    rec.update(outcome=outcome, exit_code=run.rc, first_stderr_line=ctx.rel(first_line(run.stderr))[:400],
               error_line=ctx.rel(errors[-1])[:400] if errors else "", stderr_lines=len(lines),
               seconds=run.seconds, max_rss_mb=run.max_rss_mb, exit_kind=kind)
    if kind == "noisy":
        edgekd_lines = [ln for ln in lines if ln.startswith("edgekd: error:")]
        rec["note"] = f"{len(lines)} stderr lines" + ("" if edgekd_lines else ", none starting 'edgekd: error:'")
    if outcome == "traceback":
        tail = [ln for ln in lines if not ln.startswith(" ")]
        rec["note"] = ctx.rel(tail[-1])[:300] if tail else ""
    if case.payload:
        rec["code_executed"] = (d / MARKER).exists()
    notes = [rec["note"]] if rec["note"] else []
    if case.check:
        try:
            result = case.check(ctx, d, run)
        except Exception as exc:  # noqa: BLE001
            result = {"ok": False, "trusted": False, "note": f"check error: {type(exc).__name__}: {exc}"}
        rec["changed_output_trusted"] = bool(result.get("trusted"))
        if result.get("note"):
            notes.append(ctx.rel(result["note"]))
        if outcome in ("clean", "met") and not result.get("ok", True):
            rec["outcome"] = "check-failed"
    if rec["outcome"] in ("clean", "met"):
        if case.limit_s is not None and run.seconds > case.limit_s:
            rec["outcome"] = "slow"
            notes.append(f"took {run.seconds:.1f} s (limit {case.limit_s:g} s)")
        if case.max_rss_mb is not None and run.max_rss_mb > case.max_rss_mb:
            rec["outcome"] = "slow"
            notes.append(f"max RSS {run.max_rss_mb:.0f} MiB (limit {case.max_rss_mb:g} MiB)")
    if case.limit_s is not None or case.max_rss_mb is not None:
        notes.append(f"{run.seconds:.1f} s, max RSS {run.max_rss_mb:.0f} MiB")
    rec["note"] = "; ".join(n for n in notes if n)
    return rec


def summarize(records: list[dict[str, Any]]) -> dict[str, int]:
    s = {k: 0 for k, _ in SUMMARY_COLUMNS}
    for r in records:
        o = r["outcome"]
        if o == "skipped":
            s["skipped"] += 1
            continue
        s["tried"] += 1
        if o in ("clean", "met", "traceback", "internal"):
            s[o] += 1
        else:
            s["other"] += 1
        s["trusted"] += bool(r["changed_output_trusted"])
        s["code_executed"] += bool(r["code_executed"])
    return s


def goal_met(s: dict[str, int]) -> bool:
    return s["traceback"] == 0 and s["internal"] == 0 and s["trusted"] == 0 and s["code_executed"] == 0


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_md(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    s = summarize(records)
    lines = ["# Reliability: bad inputs and faults against every verb", "",
             f"Produced by `{meta['command']}` on {meta['date']} ({meta['machine']}), edgekd commit "
             f"{meta['commit']}; {meta['wall_s']:.0f} s wall clock"
             + (f" (fixtures reused from an earlier run: {', '.join(meta['fixtures_reused'])})"
                if meta.get("fixtures_reused") else ", fixtures built in the run") + ". Each case runs the real CLI "
             f"(`{meta['cli']}`) in a subprocess with `OMP_NUM_THREADS=1`, `EDGEKD_CACHE` and `EDGEKD_LOG_DIR` in "
             "the work folder (W). Results for every case, with its argv: "
             "[reliability.json](reliability.json).", "",
             "Outcomes: **clean** = exit 2 with exactly one stderr line starting `edgekd: error:`; **met** = an "
             "expected gate failure (exit 1) or success (exit 0, its check passed); **traceback** / **internal** "
             "(exit 3); other failures: `gate` (exit 1 for bad input), `accepted` (exit 0 where a refusal was "
             "expected), `noisy` (exit 2 but not one clean line), `slow` (a fast-refusal case over its time or "
             "memory limit), `check-failed` (right exit code, wrong outputs), `timeout`, `crash`, `refused` (exit 2 "
             "where success was expected), `error` (the probe itself failed). CODE EXECUTED: the marker a hostile "
             "payload (pickle `__reduce__`, YAML python tag, C constructor) would create exists afterwards. CHANGED "
             "OUTPUT TRUSTED: a tampered output reported as good (a rerun build whose report.json / export.json / "
             "bundle sha256 no longer matches the files, a tampered re-hashed bundle accepted with `--key`, a "
             "replaced teacher-cache entry used as a hit without a warning, a changed artifact verified).", "",
             f"**Goal (0 tracebacks, 0 internal errors, 0 changed outputs trusted, 0 code executed): "
             f"{'met' if goal_met(s) and not set(meta.get('fixture_failures', {})) & REQUIRED_FIXTURES else 'NOT met'}"
             ".**", ""]
    if meta.get("fixture_failures"):
        lines += ["Fixtures that could not be made (their cases are skipped; a required one failing means the run "
                  "does not count):", ""]
        lines += [f"- `{k}`{' (required)' if k in REQUIRED_FIXTURES else ''}: {md_escape(v)}"
                  for k, v in meta["fixture_failures"].items()]
        lines.append("")
    lines += ["| " + " | ".join(label for _, label in SUMMARY_COLUMNS) + " |",
              "|" + "---|" * len(SUMMARY_COLUMNS),
              "| " + " | ".join(str(s[k]) for k, _ in SUMMARY_COLUMNS) + " |", "",
              "## Per category", "",
              "| category | " + " | ".join(label for _, label in SUMMARY_COLUMNS) + " |",
              "|---|" + "---|" * len(SUMMARY_COLUMNS)]
    cats: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        cats.setdefault(r["category"], []).append(r)
    for cat, rs in cats.items():
        cs = summarize(rs)
        lines.append(f"| {cat} | " + " | ".join(str(cs[k]) for k, _ in SUMMARY_COLUMNS) + " |")
    bad = [r for r in records if r["outcome"] not in ("clean", "met", "skipped") or r["code_executed"]
           or r["changed_output_trusted"]]
    lines += ["", f"## Cases that are not clean ({len(bad)})", ""]
    if bad:
        lines += ["| case | category | expected | outcome | exit | s | `edgekd: error:` line (else first stderr line) "
                  "/ note |", "|---|---|---|---|---|---|---|"]
        for r in bad:
            flags = (" **CODE EXECUTED**" if r["code_executed"] else "") + \
                (" **CHANGED OUTPUT TRUSTED**" if r["changed_output_trusted"] else "")
            text = md_escape((r.get("error_line") or r["first_stderr_line"])[:240] or "(no stderr)")
            if r.get("error_line") and r["first_stderr_line"] != r["error_line"]:
                text = f"{md_escape(r['error_line'][:240])} (first line: `{md_escape(r['first_stderr_line'][:100])}`)"
            if r["note"]:
                text += f" — _{md_escape(r['note'][:240])}_"
            lines.append(f"| {r['name']} | {r['category']} | {r['expected']} | {r['outcome']}{flags} | "
                         f"{r['exit_code']} | {r['seconds'] if r['seconds'] is not None else '-'} | {text} |")
    else:
        lines.append("None.")
    met = [r for r in records if r["outcome"] == "met"]
    lines += ["", f"## Expected gate failures and successes ({len(met)})", "",
              "| case | expected | exit | s | note |", "|---|---|---|---|---|"]
    for r in met:
        lines.append(f"| {r['name']} | {r['expected']} | {r['exit_code']} | {r['seconds']} | "
                     f"{md_escape(r['note'][:240])} |")
    skipped = [r for r in records if r["outcome"] == "skipped"]
    if skipped:
        lines += ["", f"## Skipped ({len(skipped)})", "", "| case | why |", "|---|---|"]
        lines += [f"| {r['name']} | {md_escape(r['note'][:300])} |" for r in skipped]
    lines += ["", "## Not simulated", "",
              "- A read-only folder: the probe runs as root here, and permissions do not stop root's writes; "
              "`--out` under a regular file (ENOTDIR) stands in for an unwritable path."
              if os.geteuid() == 0 else "- (read-only folder: tested by `package-read-only-folder`.)",
              "- A full disk: no small file system can be mounted without root tricks; `RLIMIT_FSIZE` (writes "
              "past the limit fail with EFBIG, as Python ignores SIGXFSZ) stands in for it (`*-disk-full`).",
              ""]
    if meta.get("payloads_armed"):
        lines += [f"Payloads checked armed (plain unsafe loaders do run them): {meta['payloads_armed']}.", ""]
    lines += ["## All cases", "", "| case | category | description | expected | outcome | exit | s |",
              "|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {r['category']} | {md_escape(r['description'])} | {r['expected']} | "
                     f"{r['outcome']} | {r['exit_code']} | {r['seconds'] if r['seconds'] is not None else '-'} |")
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "edgekd"], cwd=REPO,
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head + (" + uncommitted changes under edgekd/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_print_lock = threading.Lock()


def log(message: str) -> None:
    with _print_lock:
        print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="Work folder to use and keep (fixtures in it are reused).")
    ap.add_argument("--only", help="Run only cases whose name or category contains this substring.")
    ap.add_argument("--list", action="store_true", help="List the cases and exit.")
    ap.add_argument("--jobs", type=int, default=1, help="Cases run at once (default 1).")
    ap.add_argument("--json", action="store_true", help="Print the results as JSON on stdout.")
    args = ap.parse_args(argv)
    register_all()
    cases = [c for c in CASES if not args.only or args.only in c.name or args.only in c.category]
    if args.list:
        for c in cases:
            print(f"{c.name:<44} {c.category:<15} {'/'.join(c.expect):<16} {c.desc}")
        print(f"{len(cases)} cases", file=sys.stderr)
        return 0
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="edgekd-probe-"))
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("fixtures", "cases", "logs", "cache"):
        (work / sub).mkdir(exist_ok=True)
    ctx = Ctx(work, max(1, args.jobs))
    started = time.perf_counter()
    log(f"edgekd reliability probe: {len(cases)} cases, work folder {work}, {ctx.jobs} job(s)")
    records: list[dict[str, Any] | None] = [None] * len(cases)
    done = [0]

    def one(i: int) -> None:
        rec = run_case(ctx, cases[i])
        records[i] = rec
        with _print_lock:
            done[0] += 1
            flags = (" CODE-EXECUTED" if rec["code_executed"] else "") + \
                (" TRUSTED" if rec["changed_output_trusted"] else "")
            secs = f"{rec['seconds']:6.1f}s" if rec["seconds"] is not None else "     - "
            line = rec.get("error_line") or rec["first_stderr_line"] or rec["note"]
            print(f"[{done[0]:3d}/{len(cases)}] {rec['outcome']:<12}{flags} {secs} {rec['name']}: {line[:110]}",
                  file=sys.stderr, flush=True)

    if ctx.jobs == 1:
        for i in range(len(cases)):
            one(i)
    else:
        with concurrent.futures.ThreadPoolExecutor(ctx.jobs) as pool:
            list(pool.map(one, range(len(cases))))
    final = [r for r in records if r is not None]
    wall = time.perf_counter() - started
    meta = {"command": "scripts/probe_reliability.py" + (f" --only {args.only}" if args.only else "")
            + (f" --jobs {args.jobs}" if args.jobs != 1 else ""),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": f"{os.cpu_count()}-core {platform.machine()}, {platform.system()} {platform.release()}, "
                       f"Python {platform.python_version()}",
            "commit": git_commit(), "cli": " ".join(ctx.rel(a) for a in ctx.ek).replace(str(REPO) + "/", ""),
            "wall_s": round(wall, 1), "payloads_armed": ctx.notes.get("payloads_armed", ""),
            "fixture_failures": ctx.fixture_failures, "fixtures_reused": sorted(ctx.reused)}
    summary = summarize(final)
    required = sorted(set(ctx.fixture_failures) & REQUIRED_FIXTURES)
    met = goal_met(summary) and not required
    payload = {"meta": meta, "summary": summary, "goal_met": met, "cases": final}
    out_dir = work if args.only else REPO / "docs"
    (out_dir / "reliability.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "reliability.md").write_text(render_md(final, meta))
    log(f"wrote {out_dir / 'reliability.md'} and reliability.json in {wall:.0f} s")
    log("  " + ", ".join(f"{label}: {summary[k]}" for k, label in SUMMARY_COLUMNS))
    if args.json:
        print(json.dumps(payload, indent=2))
    if not args.work and not args.only:
        shutil.rmtree(work, ignore_errors=True)
    elif not args.work:
        log(f"kept the work folder {work} (--only without --work)")
    if required:
        log(f"required fixture(s) failed: {', '.join(required)}; the run does not count as meeting the goal")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
