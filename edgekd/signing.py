"""Ed25519 signatures for release bundles, checkable on a device team's machine with OpenSSL alone.

What is signed: ``manifest.sig`` in the bundle holds 64 raw bytes, the Ed25519 (RFC 8032) signature of the
*exact bytes* of ``manifest.json``. The manifest lists every other entry with its sha256 (``files``), so the
signature pins the content of every file and the set of entries: ``edgekd package verify`` refuses an entry the
manifest does not list (other than ``manifest.json`` and ``manifest.sig``) and a listed one that is missing,
so adding or removing a file, even from both tar and manifest, breaks the signature. The rest of the ``.tar.gz``
carries no information of its own: verify also requires the tar stream to be exactly the canonical one edgekd
writes for those files (sorted entries, zero mtime/owner, mode 0644, the manifest's ``name`` as the folder) and
the gzip header edgekd writes, with nothing after the gzip stream, so no byte of the bundle can change unnoticed.
Ed25519 signatures are deterministic: the same build and key give a byte-identical signed bundle.

Checking a bundle by hand (OpenSSL 3)::

    tar xzf bundle.tar.gz && cd edgekd-TARGET-TASK
    openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in manifest.json -sigfile manifest.sig
    python3 -c 'import json; [print(h, n) for n, h in json.load(open("manifest.json"))["files"].items()]' \\
        | sha256sum -c

Keys (``edgekd keygen --out KEY``): ``KEY`` is the private key as unencrypted PKCS#8 PEM, mode 0600;
``KEY.pub`` the public key as SubjectPublicKeyInfo PEM. Keys are also read as DER or as the raw 32 bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, sha256_bytes

ALGORITHM = "ed25519"
SIGNATURE_BYTES = 64
#: A key file is a few hundred bytes; anything much larger is not one (and is not read into memory).
MAX_KEY_FILE_BYTES = 64 << 10
_KEYGEN_HINT = "make a key pair with `edgekd keygen --out KEY`"


def public_key_sha256(key: Ed25519PublicKey) -> str:
    """The key's fingerprint: sha256 of its raw 32 bytes (what the manifest and verify report name)."""
    return sha256_bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _key_bytes(path: Path, flag: str) -> bytes:
    if not path.is_file():
        raise EdgekdError(f"{flag} {path}: no such key file; {_KEYGEN_HINT}")
    try:
        if path.stat().st_size > MAX_KEY_FILE_BYTES:
            raise EdgekdError(f"{flag} {path}: {path.stat().st_size:,} bytes is not a key file; {_KEYGEN_HINT}")
        return path.read_bytes()
    except OSError as exc:
        raise EdgekdError(f"{flag} {path}: cannot read it ({exc.strerror or type(exc).__name__})") from None


def _kind(key: object) -> str:
    return type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "") or "unknown"


def load_private_key(path: str | Path, flag: str = "--sign") -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM, DER or raw 32 bytes; anything else is one EdgekdError line."""
    path = Path(path)
    data = _key_bytes(path, flag)
    if b"PUBLIC KEY-----" in data:
        raise EdgekdError(f"{flag} {path}: is a public key; signing needs the private key (KEY, not KEY.pub)")
    try:
        if len(data) == 32:
            return Ed25519PrivateKey.from_private_bytes(data)
        loader = serialization.load_pem_private_key if data.lstrip().startswith(b"-----") else \
            serialization.load_der_private_key
        key: Any = loader(data, password=None)
    except TypeError:
        raise EdgekdError(f"{flag} {path}: the private key is encrypted; edgekd reads unencrypted PKCS#8 keys "
                          f"({_KEYGEN_HINT})") from None
    except Exception as exc:  # noqa: BLE001  (garbage raises ValueError, UnsupportedAlgorithm, ...)
        raise EdgekdError(f"{flag} {path}: not a readable private key ({type(exc).__name__}); {_KEYGEN_HINT}") \
            from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgekdError(f"{flag} {path}: key type {_kind(key)}; edgekd signs with Ed25519 ({_KEYGEN_HINT})")
    return key


def load_public_key(path: str | Path, flag: str = "--key") -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, DER or raw 32 bytes; a private key is refused (hand out KEY.pub only)."""
    path = Path(path)
    data = _key_bytes(path, flag)
    if b"PRIVATE KEY-----" in data:
        raise EdgekdError(f"{flag} {path}: is a private key; verify with the public key ({path}.pub), and keep "
                          "the private key away from where bundles are checked")
    try:
        if len(data) == 32:
            return Ed25519PublicKey.from_public_bytes(data)
        loader = serialization.load_pem_public_key if data.lstrip().startswith(b"-----") else \
            serialization.load_der_public_key
        key: Any = loader(data)
    except Exception as exc:  # noqa: BLE001  (garbage raises ValueError, UnsupportedAlgorithm, ...)
        raise EdgekdError(f"{flag} {path}: not a readable public key ({type(exc).__name__}); give the KEY.pub "
                          "that `edgekd keygen` wrote") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EdgekdError(f"{flag} {path}: key type {_kind(key)}; edgekd bundles are signed with Ed25519")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def check_signature(key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``key``'s Ed25519 signature of exactly ``data``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def keygen(out: str | Path, force: bool = False) -> dict[str, Any]:
    """Write a new Ed25519 private key to ``out`` (PKCS#8 PEM, mode 0600) and its public key to ``out.pub``.

    Existing files are kept unless ``force``: overwriting a signing key by accident cannot be undone.
    """
    from edgekd.io import check_writable_file

    priv_path = check_writable_file(out, "--out")
    pub_path = Path(f"{priv_path}.pub")
    if not force:
        existing = [str(p) for p in (priv_path, pub_path) if p.exists() or p.is_symlink()]
        if existing:
            raise EdgekdError(f"--out {priv_path}: {' and '.join(existing)} already "
                              f"{'exists' if len(existing) == 1 else 'exist'}; choose another name or pass --force "
                              "to replace the key pair")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    old_umask = os.umask(0o077)  # the private key is 0600 from its first byte: no moment others can read it
    try:
        with atomic_path(priv_path) as tmp:
            tmp.write_bytes(private_pem)
            os.chmod(tmp, 0o600)
    finally:
        os.umask(old_umask)
    os.chmod(priv_path, 0o600)
    with atomic_path(pub_path) as tmp:
        tmp.write_bytes(public_pem)
    os.chmod(pub_path, 0o644)
    return {"private_key": str(priv_path), "public_key": str(pub_path), "algorithm": ALGORITHM,
            "public_key_sha256": public_key_sha256(key.public_key())}
