"""The bundle file itself: the canonical ``.tar.gz`` edgekd writes, and a streaming reader with limits.

The same files give a byte-identical bundle: sorted entries, fixed mtime, owner and mode, gzip without a
timestamp. The reader takes the archive as a stream (one gzip member and nothing after it; entry sizes, their
total and the entry count are capped before anything is read) and refuses links, devices, escaping and duplicate
entries; :func:`is_canonical` then requires the tar stream to be exactly the one edgekd writes for those files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from edgekd.errors import EdgekdError

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


def write_tar(out: IO[bytes], prefix: str, files: dict[str, bytes]) -> None:
    """The canonical tar of ``files`` under ``prefix/``: sorted, mtime 0, root-owned, mode 0644, PAX."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))


def tar_bytes(prefix: str, files: dict[str, bytes]) -> bytes:
    """A gzip'd tar of ``files`` under ``prefix/``, byte-identical for identical content."""
    raw = io.BytesIO()
    write_tar(raw, prefix, files)
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


class GzipStream:
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


def read_bundle(bundle: Path) -> tuple[str, dict[str, bytes], GzipStream]:
    """Every entry of the bundle into memory, streaming and within the limits; refuses links, devices,
    duplicates, absolute paths and anything escaping one folder before reading its data."""
    prefix: str | None = None
    files: dict[str, bytes] = {}
    total = 0
    with bundle.open("rb") as f:
        stream = GzipStream(f, bundle)
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


def is_canonical(prefix: str, files: dict[str, bytes], stream: GzipStream) -> bool:
    """Whether the tar stream read is the one :func:`write_tar` makes for ``files`` (hashed, never built)."""
    canonical = _HashSink()
    write_tar(canonical, prefix, files)  # type: ignore[arg-type]
    return (canonical.size, canonical.sha.digest()) == (stream.delivered, stream.sha.digest())


def check_listing(bundle: Path, prefix: str, manifest: dict, files: dict[str, bytes], stream: GzipStream,
                  manifest_entry: str, signature_entry: str) -> None:
    """The bundle holds exactly what its manifest lists, each file with its listed sha256, under the manifest's
    name, in the canonical tar stream: every kind of bundle is checked by this one function, so none is weaker."""
    from edgekd.io import sha256_bytes

    listed = manifest["files"]
    expected = set(listed) | {manifest_entry} | ({signature_entry} if "signature" in manifest else set())
    missing, extra = sorted(expected - set(files)), sorted(set(files) - expected)
    bad = sorted(name for name in set(listed) & set(files) if sha256_bytes(files[name]) != listed[name])
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + \
        ([f"not in the manifest: {', '.join(extra)}"] if extra else []) + \
        ([f"checksum mismatch: {', '.join(bad)}"] if bad else [])
    if problems:
        raise EdgekdError(f"{bundle}: " + "; ".join(problems))
    if prefix != manifest["name"]:
        raise EdgekdError(f"{bundle}: the bundle folder {prefix!r} is not the manifest's name {manifest['name']!r}; "
                          "the bundle was modified")
    if not is_canonical(prefix, files, stream):
        raise EdgekdError(f"{bundle}: the tar stream is not the canonical one edgekd writes for these files (entry "
                          "order, headers or padding changed); the bundle was modified")
