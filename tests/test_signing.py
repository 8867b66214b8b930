"""Signed bundles: edgekd keygen, package --sign, package verify --key; any changed byte, a removed entry, a wrong
key, a stripped signature and bad key files are refused; unsigned bundles say what was (not) checked."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import fast_gz, tar_gz
from cli_helpers import one_line_exit_2
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.package import package_build, verify_package
from edgekd.signing import keygen, load_private_key, load_public_key

PREFIX = "edgekd-nrf52840-dk-digits"


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


@pytest.fixture(scope="module")
def build(mcu_host_verified: Path) -> Path:
    """The MCU build verified on the host runtimes only (no emulated board: no generated C in its bundles)."""
    return mcu_host_verified


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    keygen(folder / "release.key")
    return folder / "release.key", folder / "release.key.pub"


@pytest.fixture(scope="module")
def signed(build: Path, keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sign") / "signed.tar.gz"
    package_build(build, out, vectors=4, sign=keys[0])
    return out


@pytest.fixture(scope="module")
def unsigned(build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sign") / "unsigned.tar.gz"
    package_build(build, out, vectors=4)
    return out


def _entries(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}


def _repack(out: Path, files: dict[str, bytes], rehash: bool = True, edit=None) -> Path:
    """A tampered bundle written exactly as edgekd writes one, its manifest's sha256 list recomputed."""
    files = dict(files)
    if rehash:
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = {n: hashlib.sha256(files[n]).hexdigest() for n in manifest["files"] if n in files}
        if edit:
            edit(manifest)
        files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    out.write_bytes(tar_gz(PREFIX, files))
    return out


# ------------------------------------------------------------------ keys

def test_keygen_writes_a_private_0600_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k"
    made = keygen(key)
    pub = tmp_path / "k.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(pub.stat().st_mode) == 0o644
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    raw = load_public_key(pub).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert made["public_key_sha256"] == hashlib.sha256(raw).hexdigest() and made["algorithm"] == "ed25519"
    assert load_private_key(key).public_key().public_bytes(serialization.Encoding.Raw,
                                                           serialization.PublicFormat.Raw) == raw
    before = key.read_bytes()
    with pytest.raises(EdgekdError, match="k.pub already exist; choose another name or pass --force"):
        keygen(key)
    pub.unlink()
    with pytest.raises(EdgekdError, match="already exists"):  # one of the pair is enough to refuse
        keygen(key)
    assert key.read_bytes() == before
    line = one_line_exit_2(["keygen", "--out", str(key)])
    assert "already exists" in line
    r = CliRunner().invoke(main, ["keygen", "--out", str(key), "--force", "--json"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["public_key"] == str(pub) and key.read_bytes() != before and pub.is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_bad_key_files_are_one_line_errors(tmp_path: Path, keys: tuple[Path, Path], unsigned: Path,
                                           build: Path) -> None:
    private, public = keys
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    rsa_pub = tmp_path / "rsa.pub"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pub.write_bytes(rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    huge = tmp_path / "huge.pub"
    huge.write_bytes(b"\0" * (1 << 20))
    for key, pattern in ((tmp_path / "nope.pub", "no such key file"), (garbage, "not a readable public key"),
                         (rsa_pub, "key type RSA"), (private, "is a private key; verify with the public key"),
                         (huge, "is not a key file")):
        with pytest.raises(EdgekdError, match=pattern):
            verify_package(unsigned, rerun=False, key=key)
        line = one_line_exit_2(["package", "verify", str(unsigned), "--key", str(key)])
        assert str(key) in line
    out = tmp_path / "x.tar.gz"
    for key, pattern in ((public, "is a public key; signing needs the private key"),
                         (encrypted, "the private key is encrypted"), (garbage, "is a public key"),
                         (tmp_path / "nope", "no such key file")):
        with pytest.raises(EdgekdError, match=pattern):
            package_build(build, out, vectors=4, sign=key)
        assert pattern.split(";")[0] in one_line_exit_2(["package", str(build), "--out", str(out), "--sign",
                                                          str(key)])
    assert not out.exists()


# ------------------------------------------------------------------ signed bundles

def test_signed_bundle_verifies_with_its_key_and_is_reproducible(build: Path, keys: tuple[Path, Path],
                                                                 signed: Path, tmp_path: Path) -> None:
    private, public = keys
    result = verify_package(signed, key=public).to_json()
    assert result["passed"] and result["signed"] is True
    assert result["signature"].startswith(f"ed25519 signature valid for --key {public}")
    manifest = json.loads(_entries(signed)["manifest.json"])
    assert manifest["signature"]["public_key_sha256"] == result["public_key_sha256"]
    assert "manifest.sig" not in manifest["files"] and len(_entries(signed)["manifest.sig"]) == 64
    again = tmp_path / "again.tar.gz"
    package_build(build, again, vectors=4, sign=private)  # Ed25519 is deterministic
    assert again.read_bytes() == signed.read_bytes()
    r = CliRunner().invoke(main, ["package", "verify", str(signed), "--key", str(public), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["signed"] is True
    plain = verify_package(signed, rerun=False).to_json()
    assert plain["signed"] is True and plain["signature"].startswith("not checked (no --key given)")
    text = CliRunner().invoke(main, ["package", "verify", str(signed), "--no-rerun"])
    assert "signature: not checked (no --key given): the bundle was only checked against its own manifest" \
        in text.output


def test_rehashed_tampering_passes_the_manifest_but_not_the_key(signed: Path, keys: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    _, public = keys
    files = _entries(signed)
    tfl = bytearray(files["model_int8.tflite"])
    tfl[len(tfl) // 2] ^= 1
    flipped = _repack(tmp_path / "flip.tar.gz", {**files, "model_int8.tflite": bytes(tfl)})
    assert verify_package(flipped, rerun=False).to_json()["checksums"] == "ok"  # its own manifest is fooled
    with pytest.raises(EdgekdError, match="the signature does not match --key"):
        verify_package(flipped, key=public)
    assert "signature does not match" in one_line_exit_2(["package", "verify", str(flipped), "--key", str(public)])

    def drop_header(m: dict) -> None:  # the C array's artifact names its header: drop that record too
        m["artifacts"] = [a for a in m["artifacts"] if a["format"] != "c"]

    gone = {k: v for k, v in files.items() if k != "model_data.h"}
    removed = _repack(tmp_path / "removed.tar.gz", gone, edit=drop_header)
    assert verify_package(removed, rerun=False).to_json()["checksums"] == "ok"
    with pytest.raises(EdgekdError, match="the signature does not match"):
        verify_package(removed, key=public)

    def unsign(m: dict) -> None:
        m.pop("signature")

    stripped = _repack(tmp_path / "stripped.tar.gz", {k: v for k, v in files.items() if k != "manifest.sig"},
                       edit=unsign)
    with pytest.raises(EdgekdError, match="is not signed .no manifest.sig. but --key was given"):
        verify_package(stripped, key=public)
    orphan = _repack(tmp_path / "orphan.tar.gz", files, edit=unsign)  # a signature the manifest does not declare
    with pytest.raises(EdgekdError, match="signature does not match|not in the manifest: manifest.sig"):
        verify_package(orphan, key=public)
    with pytest.raises(EdgekdError, match="not in the manifest: manifest.sig"):
        verify_package(orphan)


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_every_byte_of_a_signed_bundle_is_covered(signed: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    """Flip bytes all over the uncompressed tar (headers, data, padding) and re-gzip it the way edgekd does, so
    the gzip layer cannot be what notices: every change is refused with the key; and so is any gzip byte."""
    _, public = keys
    raw = gzip.decompress(signed.read_bytes())
    rng = np.random.default_rng(0)
    positions = sorted({*range(0, 512), *rng.integers(0, len(raw), 150).tolist(), len(raw) - 1})
    bad = tmp_path / "bad.tar.gz"
    for pos in positions:
        changed = bytearray(raw)
        changed[pos] ^= 0x20
        bad.write_bytes(fast_gz(bytes(changed)))
        with pytest.raises(EdgekdError):
            verify_package(bad, rerun=False, key=public)
    data = signed.read_bytes()
    for pos in [*range(10), *range(len(data) - 8, len(data))]:
        changed = bytearray(data)
        changed[pos] ^= 0x01
        bad.write_bytes(bytes(changed))
        with pytest.raises(EdgekdError):
            verify_package(bad, rerun=False, key=public)


def test_wrong_key_and_unsigned_bundles(signed: Path, unsigned: Path, keys: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    _, public = keys
    keygen(tmp_path / "other")
    with pytest.raises(EdgekdError, match="the signature does not match --key .*other.pub"):
        verify_package(signed, rerun=False, key=tmp_path / "other.pub")
    with pytest.raises(EdgekdError, match="is not signed"):
        verify_package(unsigned, rerun=False, key=public)
    result = verify_package(unsigned).to_json()
    assert result["passed"] and result["signed"] is False and result["public_key_sha256"] is None
    assert result["signature"] == "unsigned: checked only against its own manifest"
    r = CliRunner().invoke(main, ["package", "verify", str(unsigned), "--json", "--no-rerun"])
    assert r.exit_code == 0 and json.loads(r.stdout)["signature"] == "unsigned: checked only against its own manifest"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_device_team_can_check_the_signature_with_openssl(signed: Path, keys: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    """The by-hand check in edgekd.signing's docstring: OpenSSL over manifest.json, then sha256 of each file."""
    _, public = keys
    with tarfile.open(signed, "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / PREFIX
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin", "-in", "manifest.json",
           "-sigfile", "manifest.sig"]
    ok = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout, ok.stderr
    manifest = json.loads((folder / "manifest.json").read_bytes())
    assert all(hashlib.sha256((folder / n).read_bytes()).hexdigest() == h for n, h in manifest["files"].items())
    (folder / "manifest.json").write_bytes((folder / "manifest.json").read_bytes().replace(b'"count": 4',
                                                                                        b'"count": 3'))
    assert subprocess.run(cmd, cwd=folder, capture_output=True, text=True).returncode != 0
