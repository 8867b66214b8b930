"""How the int8 kernels want their constants: weights laid out offline for the inner loops, per-channel
requantization tables, and the requantization mode that picks the kernel variant.

This is the half of lowering that mirrors ``c/kernels.c`` (change a kernel's data layout here and there
together); :mod:`edgekd.codegen.lower` decides which operator becomes which kernel step and plans its buffers.
"""

from __future__ import annotations

import numpy as np

from edgekd.errors import EdgekdError

Arrays = dict[str, tuple[str, np.ndarray]]


def folded_bias(bias: np.ndarray | None, in_offset: int, filters: np.ndarray) -> np.ndarray:
    """``bias + in_offset * sum(filter row)``: sum((x + off) * w) = sum(x * w) + off * sum(w), exactly."""
    folded = filters.astype(np.int64).sum(axis=1) * in_offset
    if bias is not None:
        folded = folded + bias.astype(np.int64)
    if np.abs(folded).max(initial=0) >= 1 << 31:
        raise EdgekdError("folded bias exceeds int32; the model's weights or zero points are out of int8 range")
    return folded.astype(np.int32)


def requant_tables(filters: np.ndarray, bias: np.ndarray | None, mults: list[int], shifts: list[int],
                   out_offset: int, act_max: int, table_bias: np.ndarray | None = None,
                   shift0: bool = False) -> tuple[int, Arrays]:
    """Requantization mode and per-channel tables: qp [out_c][2] = bias, multiplier; shift (mode 1 / 2: s = r - 1
    for r = -shift; the kernels compute the rounding constant (2 out_offset + 1) << s).

    Mode 1 (2 when act_max is 127: SSAT clamps) is exact when every shift is in [-22, -1] (the rounding constant
    2^(r-1) + out_offset * 2^r stays in int32) and every accumulator, bias + sum((x + offset) * w) with
    |x + offset| <= 255, is below 2^30 in magnitude (so 2 * acc does not overflow for SMMULR); else mode 0.
    ``table_bias`` replaces the bias in qp (a folded bias: the accumulator, and so the bound, is the same).
    ``shift0``: shift 0 (r = 0, s = -1: no rounding shift) is exact too; the depthwise kernels take it (kernels.c
    EK_DW_R0, which emit.py sets for a model with such a channel)."""
    out_c = filters.shape[0]
    b = bias.astype(np.int64) if bias is not None else np.zeros(out_c, np.int64)
    bound = np.abs(b) + 255 * np.abs(filters.astype(np.int64)).sum(axis=1)
    fast = int(all(-22 <= s <= (0 if shift0 else -1) for s in shifts) and int(bound.max(initial=0)) < (1 << 30))
    if fast and act_max == 127:
        fast = 2
    r = np.array([-s for s in shifts], np.int64)
    tb = b if table_bias is None else table_bias.astype(np.int64)
    qp = np.stack([tb, np.array(mults, np.int64)], axis=1).reshape(-1)
    return fast, {"qp": ("int32_t", qp), "shift": ("int8_t", r - 1 if fast else np.array(shifts, np.int64))}


def mm_layout(filters: np.ndarray, bias: np.ndarray | None, mults: list[int], shifts: list[int], in_offset: int,
              out_offset: int, act_max: int) -> tuple[str, int, Arrays]:
    """A layer as one matrix product (``ek_conv_mm*``): kernel, k4 and constants. ``filters`` [out_c][taps] is
    laid out for the kernel (taps padded to a multiple of 4, pairs of output channels interleaved per 4 taps);
    the bias with the input offset folded in (bias + offset * sum(w): exact for padding taps too, which hold
    the zero point), multiplier and rounding constant go in one per-channel table; the requantization mode
    (:func:`requant_tables`) picks the kernel."""
    out_c, taps = filters.shape
    k4 = -(-taps // 4) * 4
    padded = np.zeros((out_c + out_c % 2, k4), np.int8)
    padded[:out_c, :taps] = filters
    laid = padded.reshape(-1, 2, k4 // 4, 4).transpose(0, 2, 1, 3).reshape(-1)
    folded = folded_bias(bias, in_offset, filters)  # the columns hold raw x, padding the zero point
    fast, arrays = requant_tables(filters, bias, mults, shifts, out_offset, act_max, folded)
    if out_c % 2:  # the zero filter's qp entry: the one-pixel path loads each pair's biases unconditionally
        arrays["qp"] = ("int32_t", np.concatenate([arrays["qp"][1], np.zeros(2, np.int64)]))
    arrays["filter"] = ("int8_t", laid)
    arrays["filter" + MVE_SUFFIX] = ("int8_t", mve_filter(filters))
    return ("ek_conv_mm", "ek_conv_mm_q", "ek_conv_mm_q8")[fast], k4, arrays


#: An array named ``NAME`` + this is ``NAME``'s layout for Helium (MVE) cores: emit.py writes both under
#: ``#if __ARM_FEATURE_MVE``, so the firmware holds only its core's (the code generator does not know the core).
MVE_SUFFIX = "@mve"


def mve_filter(filters: np.ndarray) -> np.ndarray:
    """The matrix product's filter for Helium: taps padded with zeros to a multiple of 16 (one VMLADAVA.S8 per 16
    taps, every lane useful), channels to a multiple of 4 with zero rows, laid out [out_c / 4][k16 / 16][4][16]:
    per group of 4 channels (the kernel takes 4 channels x 2 pixels per pass) and per 16 taps, the 4 channels'
    taps in a row, so the kernel walks one pointer with immediate offsets."""
    out_c, taps = filters.shape
    k16 = -(-taps // 16) * 16
    c4 = -(-out_c // 4) * 4
    rows = np.zeros((c4, k16), np.int8)
    rows[:out_c, :taps] = filters
    return rows.reshape(c4 // 4, 4, k16 // 16, 16).transpose(0, 2, 1, 3).reshape(-1)


def dw_layout(filters: np.ndarray, bias: np.ndarray | None, mults: list[int], shifts: list[int], in_offset: int,
              out_offset: int, act_max: int, span: int, dil_w: int = 1) -> tuple[str, int, Arrays] | None:
    """Depthwise, multiplier 1 (``ek_dw_q*``): kernel, scratch bytes and constants, or None when the fast
    requantization is not exact (the general ``ek_depthwise`` runs it). ``filters`` is [k_h][k_w][c]; channels
    are padded to groups of 4 (zero weights) and laid out per group as [group][k_w][k_h][4], the order the
    kernel walks its scratch window ([group][column][k_h][4]: ``span`` padded columns of the k_h input rows of
    an output row, padding = the input zero point, so the input offset folds into the bias exactly). With
    dilation 1 across, at most 16 taps and at least 16 window bytes a channel (``span * k_h``) the Helium kernel's
    layout (:func:`mve_dw_filter`) goes along."""
    kh, kw, out_c = filters.shape
    per_channel = filters.reshape(kh * kw, out_c).T
    fast, tables = requant_tables(per_channel, bias, mults, shifts, out_offset, act_max,
                                  folded_bias(bias, in_offset, per_channel), shift0=True)
    if not fast:
        return None
    c4 = -(-out_c // 4) * 4
    padded = np.zeros((kh, kw, c4), np.int8)
    padded[:, :, :out_c] = filters
    laid = padded.reshape(kh, kw, c4 // 4, 4).transpose(2, 1, 0, 3).reshape(-1)
    qp = np.zeros(2 * c4, np.int64)
    qp[:2 * out_c] = tables["qp"][1]
    shift = np.zeros(c4, np.int64)
    shift[:out_c] = tables["shift"][1]
    arrays = {"filter": ("int8_t", laid), "qp": ("int32_t", qp), "shift": ("int8_t", shift)}
    if dil_w == 1 and kh * kw <= 16 and span * kh >= 16:  # kernels.c's EK_DW_MVE: where ek_dw_q* take Helium
        arrays["filter" + MVE_SUFFIX] = ("int8_t", mve_dw_filter(filters))
    return ("ek_dw_q", "ek_dw_q8")[fast - 1], kh * span * c4, arrays


def mve_dw_filter(filters: np.ndarray) -> np.ndarray:
    """The depthwise filter [k_h][k_w][c] for Helium: one row of k_h * k_w taps per channel (channels padded to
    4s) in [k_w][k_h] order, the order of the kernel's window ([channel][column][k_h]), so one output is one
    16-byte load and one VMLADAVA.S8 against its channel's row; the kernel loads each row once a row of outputs,
    predicated to the taps (zeros after them), so the rows need no padding (flash)."""
    kh, kw, out_c = filters.shape
    rows = np.zeros((-(-out_c // 4) * 4, kh * kw), np.int8)
    rows[:out_c, :kh * kw] = filters.transpose(2, 1, 0).reshape(out_c, kw * kh)
    return rows.reshape(-1)
