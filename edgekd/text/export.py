"""Ship a text student: fully-integer int8 ``.tflite`` body, int8 ``.pte`` (XNNPACK), the int8 token table, the
tokenizer files and test vectors from text to token ids to embedding; checked on the host runtimes.

Device pipeline (what the vectors pin down): ``text -> tokenizer -> ids (max_len) -> rows of token_table.bin
(int8, already in the .tflite input's scale) -> .tflite -> int8 embedding (dequantize with the output scale)``.
The ``.pte`` takes the same rows as float NCHW ``(1, E, 1, L)`` (``scale * (q - zero_point)``, transposed: with
the permute inside, XNNPACK leaves an ``as_strided_copy`` on the portable kernels) and returns float.
The table lives outside the models because litert-torch 0.10 leaves ``nn.Embedding`` as a float
EMBEDDING_LOOKUP (see :mod:`edgekd.text.model`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.io import atomic_write_bytes, sha256_bytes, sha256_file, write_json
from edgekd.text.metrics import mean_cosine
from edgekd.text.model import TextStudent
from edgekd.text.tokenize import Tokenizer
from edgekd.verify.litert import quantize

TFLM_ARENA = 1 << 20  # generous: the host TFLite Micro run checks bit-exactness, not the minimum arena


@dataclass
class TextArtifacts:
    folder: str
    files: dict[str, dict[str, Any]]  # name -> bytes, sha256
    tflite_ops: list[str]
    tflite_float_islands: list[str]
    fully_integer: bool
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    pte_delegation: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, dict[str, float]] = field(default_factory=dict)  # runtime -> cosine/max err vs float

    @property
    def shipped_bytes(self) -> int:
        """What a phone/Pi app ships for one runtime: the .tflite, the table and the tokenizer files."""
        return sum(v["bytes"] for k, v in self.files.items() if k not in ("student.pte", "vectors.json"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"shipped_bytes_tflite": self.shipped_bytes}


def token_table_meta(rows: int, width: int, scale: float, zero_point: int, sha256: str) -> dict[str, Any]:
    """token_table.json: the table's shape, layout and quantization (one place for the exporter and the planner's
    flash charge, :mod:`edgekd.text.footprint`)."""
    return {"format": "edgekd-token-table/1", "rows": rows, "width": width, "dtype": "int8",
            "layout": "row-major (rows, width)", "scale": scale, "zero_point": zero_point, "sha256": sha256}


def int8_rows(table_q: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(N, 1, L, E) int8 .tflite inputs: a copy of each token's row (what the device does)."""
    return table_q[ids][:, None]


def pte_rows(table_q: np.ndarray, ids: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """(N, E, 1, L) float ``.pte`` inputs: the int8 rows dequantized and transposed (the ``.pte``'s NCHW)."""
    rows_f = (table_q.astype(np.float32) - zero_point) * scale
    return np.ascontiguousarray(np.transpose(rows_f[ids], (0, 2, 1))[:, :, None, :])


def _run_litert_int8(path: Path, x: np.ndarray, reference: bool) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgekd.logs import native_quiet

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    with native_quiet():
        it = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
        it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for row in x:
        it.set_tensor(inp["index"], row[None])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(ys)


def export_text_student(model: TextStudent, tokenizer: Tokenizer, calib_texts: list[str], check_texts: list[str],
                        out_dir: str | Path, pte: bool = True, tflm: bool = True) -> TextArtifacts:
    """Write every file a text bundle needs into ``out_dir`` and check the models against the float student."""
    from edgekd.export.tflite import export_tflite_int8

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if len(calib_texts) == 0 or len(check_texts) == 0:
        raise EdgekdError("text export needs calibration and check sentences")
    width = model.embed.embedding_dim
    with torch.no_grad():
        calib = model.rows(torch.from_numpy(tokenizer.encode(calib_texts)).long()).numpy()
    art = export_tflite_int8(model.body, model.body_input_shape, calib, out / "student.tflite", channels_last=True)
    g = art.graph
    table = model.embed.weight.detach().numpy()
    table_q = quantize(table, g.input.scale, g.input.zero_point, np.int8)
    atomic_write_bytes(out / "token_table.bin", table_q.tobytes())
    write_json(out / "token_table.json", token_table_meta(int(table.shape[0]), int(width), g.input.scale,
                                                          g.input.zero_point, sha256_bytes(table_q.tobytes())))
    tokenizer.save(out)

    ids = tokenizer.encode(check_texts)
    with torch.no_grad():
        ref = model(torch.from_numpy(ids).long()).numpy()
    x_q = int8_rows(table_q, ids)
    runs: dict[str, np.ndarray] = {}
    raw_ref = _run_litert_int8(out / "student.tflite", x_q, reference=True)
    runs["litert-ref"] = raw_ref
    runs["litert-xnnpack"] = _run_litert_int8(out / "student.tflite", x_q, reference=False)
    if tflm:
        from edgekd.verify.tflm import run_tflm

        runs["tflm"] = run_tflm(out / "student.tflite", x_q, TFLM_ARENA).outputs.reshape(raw_ref.shape)
    fidelity: dict[str, dict[str, float]] = {}
    deq = {k: (v.astype(np.float32) - g.output.zero_point) * g.output.scale for k, v in runs.items()}
    for name, y in deq.items():
        fidelity[name] = {"cosine_vs_float": mean_cosine(y, ref), "max_abs_err": float(np.abs(y - ref).max()),
                          "max_step_diff_vs_ref": int(np.abs(runs[name].astype(int) - raw_ref.astype(int)).max())}
    delegation: dict[str, Any] = {}
    pte_out: np.ndarray | None = None
    if pte:
        from edgekd.export.pte import export_pte
        from edgekd.verify.executorch import run_pte

        info = export_pte(model.body, model.body_input_shape, out / "student.pte", calibration=calib)
        delegation = info["delegation"]
        y = run_pte(out / "student.pte", pte_rows(table_q, ids, g.input.scale, g.input.zero_point))
        pte_out = y
        fidelity["executorch-xnnpack"] = {"cosine_vs_float": mean_cosine(y, ref),
                                          "max_abs_err": float(np.abs(y - ref).max())}
    n_vec = min(8, len(check_texts))
    write_json(out / "vectors.json", {
        "format": "edgekd-text-vectors/1",
        "pipeline": "text -> tokenizer.json (+vocab.txt) -> ids -> token_table.bin rows (int8) -> student.tflite "
                    "-> int8 embedding; dequantize: scale * (q - zero_point)",
        "output_scale": g.output.scale, "output_zero_point": g.output.zero_point,
        "vectors": [{"text": check_texts[i], "ids": ids[i].tolist(), "int8_embedding": raw_ref[i].astype(int).tolist(),
                     "float_student": [round(float(v), 6) for v in ref[i]]}
                    | ({"pte_embedding": [float(v) for v in pte_out[i]]} if pte_out is not None else {})
                    | ({"tflm_int8_embedding": runs["tflm"][i].astype(int).tolist()} if "tflm" in runs else {})
                    for i in range(n_vec)]})
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(out.iterdir())
             if p.is_file()}
    return TextArtifacts(str(out), files, g.ops, g.float_islands, g.fully_integer, g.input.scale,
                         g.input.zero_point, g.output.scale, g.output.zero_point, delegation, fidelity)


def check_vectors(folder: str | Path) -> int:
    """Rerun a folder's vectors.json from the text with the shipped tokenizer, table and .tflite (reference
    kernels); returns how many matched bit for bit, raises naming the first that does not."""
    from edgekd.text.tokenize import load_tokenizer

    folder = Path(folder)
    tok = load_tokenizer(folder)
    meta = json.loads((folder / "token_table.json").read_text())
    table_q = np.frombuffer((folder / "token_table.bin").read_bytes(), dtype=np.int8).reshape(meta["rows"], -1)
    vectors = json.loads((folder / "vectors.json").read_text())["vectors"]
    ids = tok.encode([v["text"] for v in vectors])
    y = _run_litert_int8(folder / "student.tflite", int8_rows(table_q, ids), reference=True)
    for i, v in enumerate(vectors):
        if ids[i].tolist() != v["ids"]:
            raise EdgekdError(f"vector {i}: token ids differ from vectors.json for {v['text']!r}")
        if y[i].astype(int).tolist() != v["int8_embedding"]:
            raise EdgekdError(f"vector {i}: int8 embedding differs from vectors.json for {v['text']!r}")
    return len(vectors)
