"""The microcontroller tokenizers (hashed, frequent words + hashed) and the token table in C.

A microcontroller bundle's pipeline is all C: ``edgekd_tokenize`` (text -> ids, the Python
:class:`edgekd.text.tokenize.HashedTokenizer` or :class:`~edgekd.text.tokenize.FrequentWordsTokenizer` on ASCII
text), ``edgekd_token_rows`` (ids -> int8 rows of the table, a ``const`` array in flash) and edgekd's generated
model (``edgekd.codegen``: rows -> int8 embedding). The frequent-words tokenizer's list becomes a ``const``
array of the words' sorted FNV-1a hashes (4 bytes a word, binary search), which is how the Python tokenizer
decides ids too. The sources are generated from ``tokenizer.json`` (+ ``vocab.txt``) and
``token_table.json``/``.bin`` only, so ``package verify``
regenerates them from a bundle's own files, requires them byte-identical, and compiles and runs its regenerated
copy with the host gcc (never the bundle's).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.io import atomic_write_text

TEMPLATES = Path(__file__).resolve().parent / "c"
FILES = ("edgekd_tokenizer.h", "edgekd_tokenizer.c", "edgekd_token_table.c")
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")
_HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "edgekd_tokenizer.h"
/* argv[1]: sentences separated by NUL bytes; argv[2]: int32 ids out, (n, max_len) little-endian. */
int main(int argc, char **argv) {
  if (argc != 3) return 2;
  FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
  if (!in || !out) return 3;
  fseek(in, 0, SEEK_END);
  long size = ftell(in);
  fseek(in, 0, SEEK_SET);
  char *buf = malloc((size_t)size + 1);
  if (!buf || fread(buf, 1, (size_t)size, in) != (size_t)size) return 4;
  buf[size] = 0;
  for (long start = 0; start < size;) {
    int32_t ids[EDGEKD_TOKENIZER_MAX_LEN];
    edgekd_tokenize(buf + start, ids);
    fwrite(ids, sizeof ids[0], EDGEKD_TOKENIZER_MAX_LEN, out);
    while (start < size && buf[start]) ++start;
    ++start;
  }
  free(buf);
  fclose(in);
  return fclose(out) == 0 ? 0 : 5;
}
"""


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    if re.search(r"@[A-Z_]+@", text):
        raise EdgekdError("a C tokenizer template placeholder was left unfilled; this is a bug in edgekd")
    return text


_HASHED_BUCKET = ("static int32_t bucket(uint32_t hash) { return (int32_t)(1u + hash % (EDGEKD_TOKENIZER_BUCKETS - "
                  "1u)); }")
_FREQUENT_BUCKET = """/* A listed word's id is 1 + the index of its hash among the listed words' sorted hashes (binary
 * search); any other word is hashed into the ids after them. */
static int32_t bucket(uint32_t hash) {
  uint32_t lo = 0u, hi = EDGEKD_TOKENIZER_WORDS;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2u;
    if (edgekd_tokenizer_word_hashes[mid] < hash) lo = mid + 1u;
    else hi = mid;
  }
  if (lo < EDGEKD_TOKENIZER_WORDS && edgekd_tokenizer_word_hashes[lo] == hash) return (int32_t)(1u + lo);
  return (int32_t)(1u + EDGEKD_TOKENIZER_WORDS +
                   hash % (EDGEKD_TOKENIZER_BUCKETS - 1u - EDGEKD_TOKENIZER_WORDS));
}"""
_FREQUENT_DECL = """

/* Frequent-words tokenizer: the EDGEKD_TOKENIZER_WORDS listed words (vocab.txt) take ids 1..WORDS in the order
 * of their sorted FNV-1a hashes; every other word 1 + WORDS + hash % (BUCKETS - 1 - WORDS). */
#define EDGEKD_TOKENIZER_WORDS @WORDS@u
extern const uint32_t edgekd_tokenizer_word_hashes[EDGEKD_TOKENIZER_WORDS];"""


def _comment(text: str) -> str:
    """``text`` safe inside a C block comment: printable ASCII, no comment end (it may name the user's file)."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text).replace("*/", "* /")[:300]


def c_sources(tokenizer: dict[str, Any], table_meta: dict[str, Any], table: bytes,
              words: list[str] | None = None) -> dict[str, str]:
    """The three C files for a hashed or frequent-words tokenizer's settings (and word list) and its int8 table
    (deterministic text)."""
    from edgekd.text.tokenize import BUILTIN_WORDS, FrequentWordsTokenizer

    kind = tokenizer.get("kind")
    if kind not in ("hashed", "frequent"):
        raise EdgekdError(f"the C tokenizer is for the hashed and frequent-words vocabularies; this student uses "
                          f"{kind!r} (WordPiece needs its 30,522-word vocabulary: phones and Pis run the Python "
                          "tokenizer)")
    buckets, width = int(tokenizer["vocab_size"]), int(table_meta["width"])
    if len(table) != buckets * width:
        raise EdgekdError(f"token table holds {len(table)} bytes, expected {buckets} x {width}")
    values = {"BUCKETS": str(buckets), "MAX_LEN": str(int(tokenizer["max_len"])), "WIDTH": str(width),
              "SCALE": repr(float(table_meta["scale"])), "ZERO_POINT": str(int(table_meta["zero_point"])),
              "BUCKET_FN": _HASHED_BUCKET, "WORDS_DECL": ""}
    hashes = ""
    if kind == "frequent":
        if words is None:
            raise EdgekdError("the frequent-words C tokenizer needs the word list (vocab.txt)")
        tok = FrequentWordsTokenizer(words, buckets, int(tokenizer["max_len"]))
        if tok.settings()["vocab_sha256"] != tokenizer.get("vocab_sha256"):
            raise EdgekdError("vocab.txt does not match the vocab_sha256 in tokenizer.json; re-export")
        values |= {"BUCKET_FN": _FREQUENT_BUCKET, "WORDS_DECL": _FREQUENT_DECL.replace("@WORDS@", str(len(words)))}
        lines = (", ".join(f"0x{h:08X}u" for h in tok.hashes[i : i + 8]) for i in range(0, len(tok.hashes), 8))
        origin = _comment(str(tokenizer.get("words_from", BUILTIN_WORDS)))
        hashes = (f"\n\n/* The {len(words):,} listed words (vocab.txt, sha256 {tokenizer['vocab_sha256']}): "
                  f"{origin}. */\nconst uint32_t edgekd_tokenizer_word_hashes[EDGEKD_TOKENIZER_WORDS] = {{\n"
                  + ",\n".join("  " + line for line in lines) + "\n};\n")
    out = {name: _fill((TEMPLATES / name).read_text(), values) for name in FILES[:2]}
    rows = np.frombuffer(table, dtype=np.int8).reshape(buckets, width)
    body = ",\n".join("  " + ", ".join(str(int(v)) for v in row) for row in rows)
    out["edgekd_token_table.c"] = ("/* Generated by edgekd from token_table.bin; do not edit. */\n"
                                   '#include "edgekd_tokenizer.h"\n\n'
                                   "const int8_t edgekd_token_table[EDGEKD_TOKENIZER_BUCKETS * "
                                   f"EDGEKD_TOKEN_TABLE_WIDTH] = {{\n{body}\n}};\n{hashes}")
    return out


def _words(data: bytes | None) -> list[str] | None:
    return None if data is None else data.decode("utf-8").splitlines()


def write_c_tokenizer(folder: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the C tokenizer and table for the export in ``folder`` (tokenizer.json, vocab.txt, token_table.*)."""
    import json

    folder, out = Path(folder), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    sources = c_sources(json.loads((folder / "tokenizer.json").read_text()),
                        json.loads((folder / "token_table.json").read_text()),
                        (folder / "token_table.bin").read_bytes(),
                        _words(vocab.read_bytes() if vocab.exists() else None))
    return [atomic_write_text(out / name, text) for name, text in sources.items()]


def run_c_tokenizer(src_dir: str | Path, texts: list[str], max_len: int) -> np.ndarray:
    """Compile ``src_dir``'s tokenizer with the host gcc (in a temporary folder) and tokenize ``texts``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise EdgekdError("gcc not found: install it (Debian package gcc) to check the C tokenizer on the host")
    if any("\0" in t for t in texts):
        raise EdgekdError("sentences for the C tokenizer cannot hold NUL characters")
    src = Path(src_dir)
    if not texts:
        return np.zeros((0, max_len), dtype=np.int32)
    with tempfile.TemporaryDirectory(prefix="edgekd-ctok-") as tmp:
        root = Path(tmp)
        (root / "main.c").write_text(_HARNESS)
        exe = root / "tokenize"
        proc = subprocess.run([gcc, *CFLAGS, "-I", str(src), str(src / "edgekd_tokenizer.c"),
                               str(src / "edgekd_token_table.c"), str(root / "main.c"), "-o", str(exe)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgekdError(f"gcc failed on the C tokenizer in {src}: {proc.stderr.strip()[-1000:]}")
        (root / "in.bin").write_bytes(b"\0".join(t.encode("utf-8") for t in texts) + b"\0")
        run = subprocess.run([str(exe), str(root / "in.bin"), str(root / "ids.bin")], capture_output=True,
                             timeout=600)
        if run.returncode != 0:
            raise EdgekdError(f"the C tokenizer failed (exit {run.returncode})")
        return np.frombuffer((root / "ids.bin").read_bytes(), dtype="<i4").reshape(len(texts), max_len).copy()


def export_c(folder: str | Path, texts: list[str], tokenizer: Any) -> dict[str, Any]:
    """Write ``folder/c/``: edgekd's generated C for ``student.tflite`` and the C tokenizer and table; check the
    C model against TFLite Micro and the C tokenizer against ``tokenizer`` on ``texts`` (host gcc, copies)."""
    import json

    from edgekd.codegen import compile_host, generate_c, run_host
    from edgekd.text.export import TFLM_ARENA, int8_rows
    from edgekd.verify.tflm import run_tflm

    folder = Path(folder)
    out = folder / "c"
    gen = generate_c(folder / "student.tflite", out)
    write_c_tokenizer(folder, out)
    ids = tokenizer.encode(texts)
    c_ids = run_c_tokenizer(out, texts, ids.shape[1])
    same_ids = int((c_ids == ids).all(1).sum())
    meta = json.loads((folder / "token_table.json").read_text())
    table = np.frombuffer((folder / "token_table.bin").read_bytes(), np.int8).reshape(meta["rows"], -1)
    x = int8_rows(table, ids)
    with tempfile.TemporaryDirectory(prefix="edgekd-text-c-") as tmp:
        copy = Path(tmp) / "c"
        shutil.copytree(out, copy)
        ours = run_host(compile_host(copy, Path(tmp) / "runner"), x, gen.output_size)
    ref = run_tflm(folder / "student.tflite", x, TFLM_ARENA).outputs.reshape(ours.shape)
    diff = int(np.abs(ours.astype(int) - ref.astype(int)).max(initial=0))
    return {"files": sorted(p.name for p in out.iterdir()), "ops": gen.ops, "arena_bytes": gen.arena_bytes,
            "const_bytes": gen.const_bytes, "sentences": len(texts), "bit_exact_vs_tflm": diff == 0,
            "max_diff_vs_tflm": diff, "tokenizer_sentences_identical": same_ids,
            "tokenizer_note": "the C tokenizer matches the Python one on ASCII text"}


def check_bundle_c(bundle: Path, files: dict[str, bytes], texts: list[str], want_ids: np.ndarray,
                   rows: np.ndarray, want: np.ndarray) -> list[Any]:
    """``package verify`` of a bundle's ``c/``: regenerate every file from the bundle's own .tflite, tokenizer
    and table, require them byte-identical, then compile *the regenerated copy* with the host gcc and run the
    vectors: text -> ids (C tokenizer), rows -> int8 embedding (C model, against TFLite Micro's outputs)."""
    import json

    from edgekd.codegen import compile_host, generate_c, run_host
    from edgekd.formats.base import VectorCheck

    bundled = {n.removeprefix("c/"): data for n, data in files.items() if n.startswith("c/")}
    with tempfile.TemporaryDirectory(prefix="edgekd-text-c-verify-") as tmp:
        root = Path(tmp)
        (root / "student.tflite").write_bytes(files["student.tflite"])
        regen = root / "c"
        generate_c(root / "student.tflite", regen)
        sources = c_sources(json.loads(files["tokenizer.json"]), json.loads(files["token_table.json"]),
                            files["token_table.bin"], _words(files.get("vocab.txt")))
        for name, text in sources.items():
            (regen / name).write_text(text)
        expected = {p.name: p.read_bytes() for p in regen.iterdir()}
        if set(expected) != set(bundled):
            raise EdgekdError(f"{bundle}: c/ holds {sorted(bundled)}, edgekd generates {sorted(expected)}; the bundle "
                              "was modified")
        changed = sorted(n for n in expected if expected[n] != bundled[n])
        if changed:
            raise EdgekdError(f"{bundle}: c/{changed[0]} differs from the C edgekd generates from the bundle's own "
                              "files; the bundle was modified")
        ids = run_c_tokenizer(regen, texts, want_ids.shape[1])
        id_diff = int((ids != want_ids).sum())
        got = run_host(compile_host(regen, root / "runner"), rows, want.shape[1])
    diff = int(np.abs(got.astype(int) - want.astype(int)).max(initial=0))
    method = "regenerated by edgekd from the bundle's files; bundle sources byte-identical; host gcc"
    return [VectorCheck("c/edgekd_tokenizer.c", "edgekd-c", id_diff, "token ids differing", id_diff == 0, method),
            VectorCheck("c/model.c", "edgekd-c", diff, "int8 steps", diff == 0,
                        method + "; against TFLite Micro's outputs")]
