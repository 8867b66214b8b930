"""Reading a user's ``torch.export`` teacher (``.pt2``) without running anything it holds.

A ``.pt2`` is a zip of JSON, raw tensor bytes and torch pickles, and ``torch.export.load`` falls back to
``weights_only=False`` (arbitrary code) when a pickle does not load safely, and evaluates the graph's symbolic
shape expressions with ``sympy.sympify`` (Python ``eval``). So :func:`check_pt2` reads the archive itself first:
size limits (zip bombs), every pickled member must load under ``weights_only=True``, no compiled code or pickled
Python objects, and every shape expression must be plain arithmetic; the load then runs from those same checked
bytes with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` set, so nothing a user hands in can run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.distill.teachers import first_line, unpickle_reason
from edgekd.errors import EdgekdError

# A .pt2 teacher: limits, and what in a torch.export archive is read without unpickling.
PT2_MAX_BYTES = 4 << 30  # unpacked size of the whole archive
PT2_MAX_MEMBERS = 100_000
PT2_MAX_RATIO = 200  # unpacked/packed, for members over 1 MiB: beyond it a member is a zip bomb
_PT2_FIX = "re-export the teacher with torch.export.save(torch.export.export(model, args), 'teacher.pt2')"
_PT2_TEXT = {"archive_format", "archive_version", "byteorder"}  # read as strings by torch
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Abs", "floor", "ceiling", "sqrt",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
    "Equality", "Unequality", "And", "Or", "Not", "Xor", "ITE", "Piecewise", "ExprCondPair", "true", "false",
    "True", "False", "None", "oo", "zoo", "nan", "int_oo", "Infinity", "NegativeInfinity", "NaN", "Half", "One",
    "Zero", "NegativeOne", "BooleanTrue", "BooleanFalse",
    # torch.utils._sympy.functions.__all__ (torch 2.13): the names torch's deserializer defines for sympify
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "IntTrueDiv", "FloatTrueDiv", "LShift", "RShift", "IsNonOverlappingAndDenseIndicator", "TruncToFloat",
    "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "FloatPow", "PowByNatural", "Identity"})
_EXPR_TOKEN = re.compile(r"""\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)(?P<kw>\s*=(?!=))?"""
                         r"""|'(?P<sq>[^'\\]*)'|"(?P<dq>[^"\\]*)"|(?P<op>\*\*|//|==|!=|<=|>=|[-+*/%(),<>&|~^]))""")
_EXPR_SYMBOL = re.compile(r"[a-z]+\d+")  # torch's shape symbols: s0, u3
_EXPR_STRING = re.compile(r"[A-Za-z]\w*|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def plain_expression(text: str) -> bool:
    """True when a symbolic-shape string is arithmetic on sympy/torch shape functions and symbols only.

    torch hands these strings to ``sympy.sympify``, which is Python ``eval``: anything else (attribute access,
    dunders, builtins, strings that could be evaluated again) could run code, so it is refused.
    """
    if len(text) > 10_000:
        return False
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _EXPR_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return False
        pos = m.end()
        name, string = m.group("name"), m.group("sq") if m.group("sq") is not None else m.group("dq")
        if name is not None and ("__" in name or not (m.group("kw") or name in _SYMPY_NAMES
                                                      or _EXPR_SYMBOL.fullmatch(name))):
            return False
        if string is not None and ("__" in string or not _EXPR_STRING.fullmatch(string)):
            return False
    return True


def _member_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Any:
    try:
        return json.loads(archive.read(info))
    except (ValueError, RecursionError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise EdgekdError(f"{path}: member {info.filename} is damaged or not JSON ({type(exc).__name__}); "
                          f"{_PT2_FIX}") from None


def _check_graph(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> None:
    """Every ``expr_str`` in a serialized program must be plain arithmetic (torch sympifies = evals them)."""
    stack = [_member_json(archive, info, path)]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if key == "expr_str" and isinstance(value, str) and not plain_expression(value):
                raise EdgekdError(f"{path}: member {info.filename} has a symbolic shape {value[:60]!r} that is not "
                                  "plain arithmetic, and loading evaluates it as Python; refused; " + _PT2_FIX)
            if isinstance(value, (dict, list)):
                stack.append(value)


def check_pt2(data: bytes, path: Path) -> None:
    """Refuse a ``.pt2`` that could run code or exhaust memory when torch loads it (see the module docstring).

    Read as torch does (``torch/export/pt2_archive/_package.py``): JSON and raw tensor bytes are safe; every other
    member is unpickled by ``torch.load``, so it must load under ``weights_only=True``; pickled Python objects
    (``custom_obj_``/``opaque_obj_`` constants) and AOTInductor libraries are refused outright.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise EdgekdError(f"{path}: not a torch.export program (not a zip archive: {exc}); {_PT2_FIX}") from None
    if len(infos) > PT2_MAX_MEMBERS:
        raise EdgekdError(f"{path}: {len(infos):,} members, over edgekd's limit of {PT2_MAX_MEMBERS:,} for a "
                          f"teacher; {_PT2_FIX}")
    total = sum(i.file_size for i in infos)
    if total > PT2_MAX_BYTES:
        raise EdgekdError(f"{path}: unpacks to {total:,} bytes, over edgekd's {PT2_MAX_BYTES >> 30} GiB limit for "
                          f"a teacher (a zip bomb?); {_PT2_FIX}")
    for info in infos:
        if info.file_size > 1 << 20 and info.file_size > PT2_MAX_RATIO * max(1, info.compress_size):
            raise EdgekdError(f"{path}: member {info.filename} unpacks {info.compress_size:,} bytes to "
                              f"{info.file_size:,} (a zip bomb); refused; {_PT2_FIX}")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise EdgekdError(f"{path}: two members are named {dup} (readers disagree on which one counts); refused; "
                          f"{_PT2_FIX}")
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        raise EdgekdError(f"{path}: not a torch.export program (its files are not under one top folder, as "
                          f"torch.export.save writes them); {_PT2_FIX}")
    root = f"{roots.pop()}/"
    members = {n[len(root):]: i for n, i in zip(names, infos, strict=True)}
    for rel in members:
        if rel.startswith("data/aotinductor/"):
            raise EdgekdError(f"{path}: member {root}{rel} is AOTInductor compiled code, which loading would run; "
                              f"edgekd takes plain torch.export programs; {_PT2_FIX}")
    if "archive_format" not in members or archive.read(members["archive_format"]).strip() != b"pt2":
        raise EdgekdError(f"{path}: not a torch.export program (no archive_format 'pt2' member: an older format "
                          f"or another zip); {_PT2_FIX}")
    models = [rel[len("models/"):-len(".json")] for rel in members if rel.startswith("models/")
              and rel.endswith(".json")]
    if not models:
        raise EdgekdError(f"{path}: not a torch.export program (no models/*.json); {_PT2_FIX}")
    raw = set(_PT2_TEXT) | {rel for rel in members if rel.startswith((".data/", "extra/")) or rel.endswith("/")}
    pickled: set[str] = set()
    for model in models:
        raw.add(f"models/{model}.json")
        _check_graph(archive, members[f"models/{model}.json"], path)
        for config, folder in ((f"data/weights/{model}_weights_config.json", "data/weights/"),
                               (f"data/constants/{model}_constants_config.json", "data/constants/")):
            if config not in members:
                continue
            raw.add(config)
            entries = _member_json(archive, members[config], path)
            entries = entries.get("config") if isinstance(entries, dict) else None
            if not isinstance(entries, dict) or not all(
                    isinstance(m, dict) and isinstance(m.get("path_name"), str) for m in entries.values()):
                raise EdgekdError(f"{path}: member {root}{config} is not a torch.export payload config; {_PT2_FIX}")
            for fqn, meta in entries.items():
                name = meta["path_name"]
                if name.startswith(("custom_obj_", "opaque_obj_")):
                    raise EdgekdError(f"{path}: member {root}{folder}{name} holds a pickled Python object ({fqn}) "
                                      f"that loading would run; refused; {_PT2_FIX} with tensor constants only")
                (pickled if meta.get("use_pickle") else raw).add(folder + name)
    for rel, info in members.items():
        if (rel in raw and rel not in pickled) or info.file_size == 0:
            continue
        try:
            blob = archive.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise EdgekdError(f"{path}: member {info.filename} is damaged ({first_line(exc)}); {_PT2_FIX}") from None
        try:
            torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise EdgekdError(f"{path}: member {info.filename} is not plain tensors ({unpickle_reason(exc)}); "
                              "torch.export.load would unpickle it with weights_only=False, which runs code; "
                              f"{_PT2_FIX}") from None


@contextmanager
def _forced_weights_only() -> Iterator[None]:
    """Every ``torch.load`` inside the block is ``weights_only=True``, even where torch asks for False."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_pt2(path: Path) -> tuple[nn.Module, str]:
    """A checked ``.pt2``, loaded from the very bytes that were checked; returns (module, sha256)."""
    size = path.stat().st_size
    if size > PT2_MAX_BYTES:
        raise EdgekdError(f"{path}: {size:,} bytes, over edgekd's {PT2_MAX_BYTES >> 30} GiB limit for a teacher")
    data = path.read_bytes()
    check_pt2(data, path)
    try:
        with _forced_weights_only():
            model = torch.export.load(io.BytesIO(data)).module()
    except Exception as exc:  # deserialisation errors come in many types
        raise EdgekdError(f"{path}: cannot load as a torch.export program ({first_line(exc)}); {_PT2_FIX}") from None
    return model, hashlib.sha256(data).hexdigest()
