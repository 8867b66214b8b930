"""Crafting bundles in tests: the canonical tar edgekd writes, in a gzip member with edgekd's header.

Deflated at level 1, not 9: ``package verify`` checks the gzip header and the inflated tar stream, never how it
was deflated, and level 9 takes ~2.5 s per microcontroller bundle here, which the tampering tests would pay a
dozen times over.
"""

from __future__ import annotations

import io
import struct
import zlib

from edgekd.package import GZIP_HEADER
from edgekd.package.bundle import write_tar


def fast_gz(raw: bytes) -> bytes:
    """gzip with edgekd's header but fast compression (the deflate bytes differ; the content is what counts)."""
    z = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    return GZIP_HEADER + z.compress(raw) + z.flush() + struct.pack("<II", zlib.crc32(raw), len(raw) & 0xFFFFFFFF)


def tar_gz(prefix: str, files: dict[str, bytes]) -> bytes:
    """The bundle edgekd would write for ``files`` under ``prefix/`` (same tar stream), deflated fast."""
    raw = io.BytesIO()
    write_tar(raw, prefix, files)
    return fast_gz(raw.getvalue())
