"""Bundle layouts as plugins: the files that make a bundle usable in the user's own build, beside the artifacts.

A layout (one module, registered with :func:`register_layout`, like a format in :mod:`edgekd.formats`) turns
what a bundle already holds (the manifest, the generated C, the vectors) into more entries: a CMake and Arduino
library for microcontrollers (:mod:`edgekd.package.library`), the on-device runner and scripts for Pis and phones
(:mod:`edgekd.package.device`). Its entries are listed in manifest.json with their sha256 like every other file,
so the signature covers them.

Most entries are a pure function of the manifest and the bundle's other entries (templates under
``edgekd/package/templates/`` filled with ``@NAME@`` values): ``package verify`` regenerates them and requires
byte-identical files, so a changed CMakeLists.txt or script fails even in an unsigned bundle. Entries that cannot
be regenerated (the ExecuTorch runner binary) are named in the layout's manifest section and checked by sha256.
``package verify`` never runs any of them: a CMakeLists.txt can execute commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from edgekd.errors import EdgekdError
from edgekd.formats.base import Bundle

_REGISTRY: dict[str, Layout] = {}
_BUILTIN = ("library", "device")
_loaded = False
#: What a name spliced into CMake, C or library.properties may hold (profile and bundle names are file names).
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Entries no layout reads (they are written after the layouts).
_TOP = ("MODEL_CARD.md", "manifest.json", "manifest.sig")


@dataclass
class LayoutInput:
    """What a layout builds from: the manifest (everything but ``files``, ``layouts`` and the signature), the
    bundle's entries so far, and, when packaging, the build folder (None when ``package verify`` regenerates)."""

    manifest: dict[str, Any]
    files: dict[str, bytes]
    build: Path | None = None
    where: str = "bundle"  # the bundle or build folder, for messages


@dataclass
class LayoutFiles:
    """A layout's entries: ``regenerated`` ones (rebuilt byte for byte by ``package verify``), ``fixed`` ones
    (checked by sha256 only) and its manifest section."""

    regenerated: dict[str, bytes] = field(default_factory=dict)
    fixed: dict[str, bytes] = field(default_factory=dict)
    section: dict[str, Any] = field(default_factory=dict)


class Layout:
    """One bundle layout. Subclass, set ``name``, implement :meth:`applies` and :meth:`files`."""

    name: ClassVar[str]
    #: Bundle folders the layout owns: any entry there that it does not generate is refused by verify.
    folders: ClassVar[tuple[str, ...]] = ()

    def applies(self, inp: LayoutInput) -> bool:
        """Whether this bundle gets the layout (from the manifest: the same answer when packaging and verifying)."""
        raise NotImplementedError

    def files(self, inp: LayoutInput) -> LayoutFiles:
        """The entries; ``regenerated`` must be the same bytes for the same manifest and entries."""
        raise NotImplementedError

    def check_fixed(self, inp: LayoutInput, names: list[Any]) -> str | None:
        """Whether ``names`` (the manifest's list of this layout's binaries) may belong to it: a problem, or None."""
        return f"lists {len(names)} files, but layout {self.name} ships none" if names else None


def register_layout(layout: Layout) -> Layout:
    _REGISTRY[layout.name] = layout
    return layout


def unregister_layout(name: str) -> None:
    _REGISTRY.pop(name, None)


def layouts() -> list[Layout]:
    global _loaded
    if not _loaded:
        _loaded = True
        import importlib

        for name in _BUILTIN:
            importlib.import_module(f"edgekd.package.{name}")
    return list(_REGISTRY.values())


def get_layout(name: str) -> Layout | None:
    return next((lay for lay in layouts() if lay.name == name), None)


# ------------------------------------------------------------------ helpers the layouts share

def template(rel: str) -> str:
    """The text of ``edgekd/package/templates/<rel>``."""
    return resources.files("edgekd.package").joinpath("templates", *rel.split("/")).read_text()


def safe(name: str) -> str:
    """``name`` with anything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``."""
    return _SAFE.sub("_", name)


def c_string(text: str) -> str:
    """A C string literal of ``text`` (UTF-8; quotes, backslashes and non-printable bytes as octal escapes)."""
    out = []
    for b in text.encode():
        out.append(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


# ------------------------------------------------------------------ packaging and verify

def build_layouts(manifest: dict[str, Any], files: dict[str, bytes], build: Path | None) -> tuple[
        dict[str, bytes], dict[str, Any]]:
    """Every applicable layout's entries and the manifest's ``layouts`` section."""
    inp = LayoutInput(manifest, files, build, str(build))
    entries: dict[str, bytes] = {}
    sections: dict[str, Any] = {}
    for lay in layouts():
        if not lay.applies(inp):
            continue
        out = lay.files(inp)
        clash = sorted((set(out.regenerated) | set(out.fixed)) & (set(files) | set(entries)))
        if clash:
            raise EdgekdError(f"bundle layout {lay.name} writes {', '.join(clash)}, which another part of the bundle "
                              "already holds")
        entries |= out.regenerated | out.fixed
        sections[lay.name] = out.section | {"regenerated": sorted(out.regenerated), "fixed": sorted(out.fixed)}
    return entries, sections


def check_layouts(bundle: Bundle) -> list[str]:
    """Regenerate every layout the manifest lists and require its entries byte for byte; returns their names.

    Entries a layout ships ``fixed`` (binaries) were checked by sha256 with every other file; the layout only
    says whether such names belong to it."""
    from edgekd.package.manifest import _Shape
    from edgekd.package.vectors import _version_hint

    s = _Shape(bundle.path)
    listed = s.get(bundle.manifest, "layouts", dict, "") if "layouts" in bundle.manifest else {}
    base = {k: v for k, v in bundle.manifest.items() if k not in ("files", "layouts", "signature")}
    owned = {n for sec in listed.values() if isinstance(sec, dict)
             for key in ("regenerated", "fixed") for n in (sec.get(key) or []) if isinstance(n, str)}
    inp = LayoutInput(base, {n: d for n, d in bundle.files.items() if n not in owned and n not in _TOP}, None,
                      str(bundle.path))
    compared: list[str] = []
    for lay in layouts():
        if lay.applies(inp) and lay.name not in listed:
            raise s.error(f"has no layouts.{lay.name} although edgekd gives this bundle that layout")
        section = listed.get(lay.name) if isinstance(listed.get(lay.name), dict) else {}
        mine = {n for key in ("regenerated", "fixed") for n in (section.get(key) or []) if isinstance(n, str)}
        stray = sorted(n for n in bundle.files if n.startswith(lay.folders) and n not in mine) if lay.folders else []
        if stray:
            raise EdgekdError(f"{bundle.path}: {stray[0]} is not a file edgekd generates for this bundle (layout "
                              f"{lay.name}); the bundle was modified")
    for name, section in sorted(listed.items()):
        lay = get_layout(name)
        if lay is None or not isinstance(section, dict):
            raise s.error(f"layouts.{name} is not a bundle layout this edgekd knows")
        if not lay.applies(inp):
            raise s.error(f"layouts.{name} is listed but edgekd does not give this bundle that layout")
        out = lay.files(inp)
        got = s.get(section, "regenerated", list, f"layouts.{name}.")
        fixed = s.get(section, "fixed", list, f"layouts.{name}.")
        if sorted(got) != sorted(out.regenerated):
            extra, missing = sorted(set(got) - set(out.regenerated)), sorted(set(out.regenerated) - set(got))
            raise EdgekdError(f"{bundle.path}: layout {name} lists other files than edgekd generates for this bundle "
                              f"(extra: {', '.join(extra) or 'none'}; missing: {', '.join(missing) or 'none'}); the "
                              "bundle was modified")
        problem = lay.check_fixed(inp, fixed)
        if problem:
            raise s.error(f"layouts.{name}.fixed {problem}")
        for n in sorted(out.regenerated):
            if bundle.files.get(n) != out.regenerated[n]:
                raise EdgekdError(f"{bundle.path}: {n} differs from what edgekd generates for this bundle (layout "
                                  f"{name}); the bundle was modified{_version_hint(bundle.manifest)}")
        compared += sorted(out.regenerated)
    return compared
