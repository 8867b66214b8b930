/* edgekd int8 kernels; see kernels.h. The fixed-point helpers follow gemmlowp / TFLite's double-rounding
 * MultiplyByQuantizedMultiplier exactly (no 64-bit division, so Cortex-M needs no libgcc divide). */
#include "kernels.h"

/* Fast paths for cores with the DSP extension (Cortex-M4, M7, M33, M55: SMLAD, SXTB16, SMLABB, ...). They only
 * reorder exact int32 sums of int8 products, and requantize exactly as the portable path does, so the outputs
 * are bit-identical on every build. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && \
    defined(__GNUC__)
#define EK_DSP 1
#include <arm_acle.h>
#else
#define EK_DSP 0
#endif

/* Helium (MVE) paths for Armv8.1-M cores that have it (Cortex-M55, M85: -mcpu=cortex-m55 defines
 * __ARM_FEATURE_MVE); they reorder exact integer sums only, like the DSP paths. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && defined(__GNUC__)
#define EK_MVE 1
#include <arm_mve.h>
#else
#define EK_MVE 0
#endif

/* Hand-scheduled assembly for the hottest DSP loops (GCC-compatible compilers, optimised builds: at -O0 the frame
 * pointer leaves too few registers for them); the C paths below stay for every other build. Defining EK_SMALL
 * (e.g. -DEK_SMALL=1) chooses size over speed: the C paths only, about 2 KB less code (docs/benchmarks.md). */
#if EK_DSP && !EK_MVE && defined(__OPTIMIZE__) && !defined(EK_SMALL)
#define EK_ASM 1
#else
#define EK_ASM 0
#endif

/* The Helium build's assembly (the matrix product's two-pixel loop, ek_mm_mve_2px), under the same rules. */
#if EK_MVE && defined(__OPTIMIZE__) && !defined(EK_SMALL)
#define EK_MVE_ASM 1
#else
#define EK_MVE_ASM 0
#endif

#if defined(__GNUC__)
#define EK_INLINE static inline __attribute__((always_inline))
#else
#define EK_INLINE static inline
#endif

/* Setup code (once per layer or output row) and the assembly kernels' leftovers: built for size (-Os) in the
 * speed build too, for flash (in the KWS model 52 B for about 5K cycles: docs/benchmarks.md). */
#if (EK_ASM || EK_MVE_ASM) && defined(__GNUC__) && !defined(__clang__)
#define EK_COLD __attribute__((optimize("Os")))
#else
#define EK_COLD
#endif

/* Code that only handles what the assembly kernels leave over: one out-of-line copy there, inlined elsewhere. */
#if EK_ASM
#define EK_LEFTOVER static EK_COLD
#else
#define EK_LEFTOVER EK_INLINE
#endif

/* Set to 1 by generate_c when the assembly kernels cover every ek_conv_mm_q8 layer (k4 % 8 == 0, out_c even) /
 * every ek_dw_q8 layer (3x3, dilation 1, in_c % 4 == 0) of the model, and when no such layer has a lower clamp
 * (act_min -128): an assembly build then leaves those kernels' C leftover paths / ek_clamp_lo out (less flash;
 * the generator, not the firmware, checks the layers). */
#ifndef EK_MM8_ASM
#define EK_MM8_ASM 0
#endif
#ifndef EK_DW8_ASM
#define EK_DW8_ASM 0
#endif
#ifndef EK_Q8_NO_LO
#define EK_Q8_NO_LO 0
#endif
/* Also from generate_c: every Helium matrix-product layer has out_c % 4 == 0 (a lone pixel then pairs with itself
 * in the assembly, no C group path), no matrix-product layer is dilated across or has 4-byte kernel rows, every
 * depthwise layer takes the Helium path. Each only drops code the model's layers never run. */
#ifndef EK_MM4_MVE
#define EK_MM4_MVE 0
#endif
#ifndef EK_MM_DIL1
#define EK_MM_DIL1 0
#endif
#ifndef EK_MM_NO_RUN4
#define EK_MM_NO_RUN4 0
#endif
#ifndef EK_DW_MVE_ALL
#define EK_DW_MVE_ALL 0
#endif
/* From generate_c too: some ek_dw_q* channel has TFLite shift 0 (effective scale in [0.5, 1): r = 0, s = -1, no
 * rounding shift; layout.py lets only depthwise layers have it). The requantization then takes s = -1 exactly
 * (ek_rqv's branch, the Helium paths' masked -(h < 0)), and the 3x3 assembly, which shifts by s, gets those
 * channels recomputed after each row (ek_dw_r0_row). Off (0), every model without such a channel keeps its code. */
#ifndef EK_DW_R0
#define EK_DW_R0 0
#endif

#define EK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EK_MAX(a, b) ((a) > (b) ? (a) : (b))

#if EK_DSP
/* 4 bytes, any alignment (these cores do unaligned LDR/STR). */
EK_INLINE uint32_t ek_ld32(const int8_t *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

/* Bytes 0 and 2 of v sign-extended into two halfwords. */
EK_INLINE int32_t ek_sx02(uint32_t v) { return __sxtb16((int32_t)v); }

/* Bytes 1 and 3 of v sign-extended into two halfwords (one SXTB16 with rotation). */
EK_INLINE int32_t ek_sx13(uint32_t v) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}

/* off2 + bytes 1 and 3 of v, per halfword (one SXTAB16 with rotation). */
EK_INLINE int32_t ek_sxa13(int32_t off2, uint32_t v) {
  int32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(off2), "r"(v));
  return r;
}
#endif

/* (a * b * 2) >> 32 rounded to nearest, saturating the one overflow case (VQRDMULH). TFLite's nudge
 * (+2^30, or 1 - 2^30 for a negative product) then truncating division by 2^31 equals floor((ab + 2^30) / 2^31)
 * for both signs, which is one arithmetic shift. */
int32_t ek_srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* Rounding arithmetic right shift, ties away from zero. */
int32_t ek_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static int32_t ek_shl(int32_t x, int n) { return (int32_t)((uint32_t)x << n); }

int32_t ek_requant(int32_t x, int32_t mult, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return ek_rdbpot(ek_srdhm(ek_shl(x, left), mult), right);
}

/* ek_requant for a multiplier that is not INT32_MIN (conv / fully-connected multipliers lie in [0, 2^31)), so
 * the saturating case cannot occur, plus the output offset and the activation clamp. */
EK_INLINE int8_t ek_out8(int32_t acc, int32_t mult, int32_t shift, int32_t out_offset, int32_t lo, int32_t hi) {
  const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  const int32_t a = (int32_t)((uint32_t)acc << left);
  const int32_t h = (int32_t)(((int64_t)a * mult + ((int64_t)1 << 30)) >> 31);
  const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
  const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)h >> 31);
  int32_t v = (h >> right) + ((h & mask) > threshold ? 1 : 0) + out_offset;
  v = v < lo ? lo : v;
  return (int8_t)(v > hi ? hi : v);
}

void ek_copy(int8_t *dst, const int8_t *src, int32_t n) {
  int32_t i = 0;
  if (dst == src) return;
  if (dst < src || dst >= src + n) { /* forward: each chunk is read whole before it is written, so safe */
#if EK_MVE
    for (; i + 16 <= n; i += 16) vstrbq_s8(dst + i, vldrbq_s8(src + i));
#endif
#if EK_DSP && !EK_MVE
    for (; i + 16 <= n; i += 16) {
      uint32_t v0, v1, v2, v3;
      __builtin_memcpy(&v0, src + i, 4);
      __builtin_memcpy(&v1, src + i + 4, 4);
      __builtin_memcpy(&v2, src + i + 8, 4);
      __builtin_memcpy(&v3, src + i + 12, 4);
      __builtin_memcpy(dst + i, &v0, 4);
      __builtin_memcpy(dst + i + 4, &v1, 4);
      __builtin_memcpy(dst + i + 8, &v2, 4);
      __builtin_memcpy(dst + i + 12, &v3, 4);
    }
    for (; i + 4 <= n; i += 4) {
      const uint32_t v = ek_ld32(src + i);
      __builtin_memcpy(dst + i, &v, 4);
    }
#endif
    for (; i < n; ++i) dst[i] = src[i];
  } else {
    for (i = n - 1; i >= 0; --i) dst[i] = src[i];
  }
}

/* sum(x[i] * w[i]): two 16-bit MACs per SMLAD where the core has the DSP extension. */
int32_t ek_dot(const int8_t *x, const int8_t *w, int32_t n) {
  int32_t acc = 0, i = 0;
#if EK_DSP
  for (; i + 4 <= n; i += 4) {
    const uint32_t xv = ek_ld32(x + i), wv = ek_ld32(w + i);
    acc = __smlad(ek_sx02(xv), ek_sx02(wv), acc);
    acc = __smlad(ek_sx13(xv), ek_sx13(wv), acc);
  }
#else
  for (; i + 4 <= n; i += 4) acc += x[i] * w[i] + x[i + 1] * w[i + 1] + x[i + 2] * w[i + 2] + x[i + 3] * w[i + 3];
#endif
  for (; i < n; ++i) acc += x[i] * w[i];
  return acc;
}

/* sum((x[i] + off) * w[i]): the offset is added to two bytes at once by SXTAB16 where the core has the DSP
 * extension (x + off lies in [-255, 255], so the halfwords never overflow). off2 = off in both halfwords. */
EK_INLINE int32_t ek_dot_off(const int8_t *x, const int8_t *w, int32_t n, int32_t off, int32_t off2) {
  int32_t acc = 0, i = 0;
#if EK_DSP
  for (; i + 4 <= n; i += 4) {
    const uint32_t xv = ek_ld32(x + i), wv = ek_ld32(w + i);
    acc = __smlad(__sxtab16(off2, (int32_t)xv), ek_sx02(wv), acc);
    acc = __smlad(ek_sxa13(off2, xv), ek_sx13(wv), acc);
  }
#else
  (void)off2;
#endif
  for (; i < n; ++i) acc += (x[i] + off) * w[i];
  return acc;
}

/* acc[2 * p + k] = sum(x_p[i] * w_k[i]) for pixels p < (two ? 2 : 1) and filters k < 2: each loaded word serves
 * two products. */
EK_INLINE void ek_dot_2x2(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1, int32_t n,
                          int two, int32_t *acc) {
  int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0, i = 0;
#if EK_DSP
  for (; i + 4 <= n; i += 4) {
    const uint32_t xa = ek_ld32(x0 + i), wa = ek_ld32(w0 + i), wb = ek_ld32(w1 + i);
    const int32_t xal = ek_sx02(xa), xah = ek_sx13(xa);
    int32_t wl = ek_sx02(wa), wh = ek_sx13(wa);
    a00 = __smlad(xal, wl, a00);
    a00 = __smlad(xah, wh, a00);
    if (two) {
      const uint32_t xb = ek_ld32(x1 + i);
      const int32_t xbl = ek_sx02(xb), xbh = ek_sx13(xb);
      a10 = __smlad(xbl, wl, a10);
      a10 = __smlad(xbh, wh, a10);
      wl = ek_sx02(wb);
      wh = ek_sx13(wb);
      a11 = __smlad(xbl, wl, a11);
      a11 = __smlad(xbh, wh, a11);
    } else {
      wl = ek_sx02(wb);
      wh = ek_sx13(wb);
    }
    a01 = __smlad(xal, wl, a01);
    a01 = __smlad(xah, wh, a01);
  }
#endif
  for (; i < n; ++i) {
    const int32_t xa = x0[i], wa = w0[i], wb = w1[i];
    a00 += xa * wa;
    a01 += xa * wb;
    if (two) {
      const int32_t xb = x1[i];
      a10 += xb * wa;
      a11 += xb * wb;
    }
  }
  acc[0] = a00;
  acc[1] = a01;
  acc[2] = a10;
  acc[3] = a11;
}

/* Pixels x0 (and x1 when two) through the 1x1 conv whose input offset is folded into kbias: two output channels
 * per pass, written to d0 (and d1). */
EK_INLINE void ek_pointwise_px(const ek_conv_t *p, const int8_t *x0, const int8_t *x1, int8_t *d0, int8_t *d1,
                               int two) {
  const int32_t n = p->filter_in_c, out_c = p->out_c;
  const int32_t out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int8_t *filter = p->filter, *shift = p->shift;
  const int32_t *kbias = p->kbias, *mult = p->mult;
  int32_t oc;
  for (oc = 0; oc + 2 <= out_c; oc += 2) {
    int32_t acc[4];
    const int32_t b0 = kbias[oc], b1 = kbias[oc + 1], m0 = mult[oc], m1 = mult[oc + 1];
    const int32_t s0 = shift[oc], s1 = shift[oc + 1];
    ek_dot_2x2(x0, x1, filter + oc * n, filter + (oc + 1) * n, n, two, acc);
    d0[oc] = ek_out8(acc[0] + b0, m0, s0, out_offset, lo, hi);
    d0[oc + 1] = ek_out8(acc[1] + b1, m1, s1, out_offset, lo, hi);
    if (two) {
      d1[oc] = ek_out8(acc[2] + b0, m0, s0, out_offset, lo, hi);
      d1[oc + 1] = ek_out8(acc[3] + b1, m1, s1, out_offset, lo, hi);
    }
  }
  if (oc < out_c) {
    const int8_t *w = filter + oc * n;
    d0[oc] = ek_out8(ek_dot(x0, w, n) + kbias[oc], mult[oc], shift[oc], out_offset, lo, hi);
    if (two) d1[oc] = ek_out8(ek_dot(x1, w, n) + kbias[oc], mult[oc], shift[oc], out_offset, lo, hi);
  }
}

/* 1x1, unpadded, one group: every input is in bounds and the input offset is in kbias. Pixels go in pairs along
 * the row, or along the whole image when there is no row buffer. */
static void ek_pointwise(const ek_conv_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  const int32_t out_w = p->out_w, out_c = p->out_c, row = out_w * out_c;
  const int32_t px_step = p->stride_w * p->in_c, row_step = p->stride_h * p->in_w * p->in_c;
  const int32_t rows = tmp ? p->out_h : 1, per_pass = tmp ? out_w : out_w * p->out_h;
  int32_t r;
  for (r = 0; r < rows; ++r) {
    int8_t *dst = tmp ? tmp : out;
    const int8_t *row_in = in + r * row_step, *x = row_in;
    int32_t ox = 0, k;
    /* next pixel's input: along the row, then the first pixel of the next output row */
#define EK_NEXT_PX() (++ox == out_w ? (ox = 0, row_in += row_step, x = row_in) : (x += px_step))
    for (k = 0; k + 2 <= per_pass; k += 2) {
      const int8_t *x0 = x, *x1;
      EK_NEXT_PX();
      x1 = x;
      EK_NEXT_PX();
      ek_pointwise_px(p, x0, x1, dst + k * out_c, dst + (k + 1) * out_c, 1);
    }
    if (k < per_pass) ek_pointwise_px(p, x, x, dst + k * out_c, dst + k * out_c, 0);
#undef EK_NEXT_PX
    if (tmp) ek_copy(out + r * row, tmp, row);
  }
}

/* First and one-past-last filter taps whose input index origin + tap * dilation lies in [0, size). */
static void ek_taps(int32_t origin, int32_t dilation, int32_t size, int32_t k, int32_t *t0, int32_t *t1) {
  *t0 = origin < 0 ? (-origin + dilation - 1) / dilation : 0;
  *t1 = size - origin <= 0 ? 0 : EK_MIN(k, (size - origin + dilation - 1) / dilation);
  if (*t1 < *t0) *t1 = *t0;
}

/* ek_out8 for a layer whose accumulators all satisfy |acc| < 2^30 and whose shifts are all negative (checked
 * when the C is generated): (acc * m + 2^30) >> 31 is SMMULR(2 acc, m) exactly, and TFLite's rounding right shift
 * by r >= 1 (ties away from zero) is (h - (h < 0) + 2^(r-1)) >> r. */
EK_INLINE int32_t ek_smmulr(int32_t a, int32_t b) {
#if EK_DSP
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

/* Requantize one accumulator (bias included) with its channel's qp = {bias, multiplier} and shift sh.
 * mode 0: TFLite's general path (ek_out8; sh is the shift, >0 left). mode 1 / 2 (checked when generated:
 * |acc| < 2^30, sh = s = r - 1 for r = -shift, 1 <= r <= 22): h = SMMULR(2 acc, m) is (acc m + 2^30) >> 31
 * exactly, then ((h - (h < 0) + round) >> r), round = 2^(r-1) + out_offset 2^r = (2 out_offset + 1) 2^s, is
 * TFLite's rounding shift plus the output offset (computed here, not tabled: 4 bytes less per channel; the
 * assembly shifts by s, then by 1 inside SSAT); mode 2 has act_max = 127, so the upper clamp is SSAT. */
EK_INLINE int8_t ek_rqv(int32_t acc, int32_t m, int32_t sh, int32_t out_offset, int32_t lo, int32_t hi, int mode) {
  int32_t h;
  if (mode == 0) return ek_out8(acc, m, sh, out_offset, lo, hi);
  h = ek_smmulr(acc * 2, m);
#if EK_DW_R0
  if (sh < 0) { /* r = 0: TFLite's SRDHM(acc, m) + out_offset, no rounding shift */
    h += out_offset;
  } else
#endif
  h = ((h - (int32_t)((uint32_t)h >> 31) + (2 * out_offset + 1) * (1 << sh)) >> sh) >> 1;
  h = h < lo ? lo : h;
#if EK_DSP
  if (mode == 2) return (int8_t)__ssat(h, 8);
#endif
  return (int8_t)(h > hi ? hi : h);
}

EK_INLINE int8_t ek_rq(int32_t acc, const int32_t *qp, int32_t sh, int32_t out_offset, int32_t lo, int32_t hi,
                       int mode) {
  return ek_rqv(acc, qp[1], sh, out_offset, lo, hi, mode);
}

/* Requantize n channels of accumulators held in memory, buf[k * ps] for pixel a (and buf[k * ps + 1] for pixel
 * b when two), into da[k] (db[k]): one tight loop per layer chunk instead of a few outputs between MAC loops,
 * so the channel's constants are loaded once for both pixels and nothing is spilled. */
#if EK_MVE
/* Four channels of mode 1 / 2 at once: VQRDMULH(acc, m) is SMMULR(2 acc, m) exactly (m >= 0, so it never
 * saturates), then the same rounding shift (round = (2 out_offset + 1) << s, VSHL by -(s + 1) = ~s truncates),
 * clamp and a narrowing byte store. */
EK_INLINE void ek_rq4_mve(int32x4_t acc, int32x4_t m, int32x4_t s, int32_t oo, int32_t lo, int32_t hi, int8_t *d) {
  int32x4_t h = vqrdmulhq_s32(acc, m);
#if EK_DW_R0 /* s = -1 (r = 0): no -(h < 0) (h & ~s keeps the sign only where s >= 0); (2 oo + 1) >> 1 = oo */
  h = vsubq_s32(h, vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(vbicq_s32(h, s)), 31)));
#else
  h = vsubq_s32(h, vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(h), 31)));
#endif
  h = vshlq_s32(vaddq_s32(h, vshlq_s32(vdupq_n_s32(2 * oo + 1), s)), vmvnq_s32(s));
  vstrbq_s32(d, vminq_s32(vmaxq_s32(h, vdupq_n_s32(lo)), vdupq_n_s32(hi)));
}

/* Four scalar sums (VMLADAVA results) as one vector, lane by lane (VDUP, then one VMOV.32 per lane: the
 * two-lane VMOV would save two instructions, but which lane its first register lands in is read differently by
 * different tools, so it is not used). */
EK_INLINE int32x4_t ek_pack4(int32_t a0, int32_t a1, int32_t a2, int32_t a3) {
  return vsetq_lane_s32(a3, vsetq_lane_s32(a2, vsetq_lane_s32(a1, vdupq_n_s32(a0), 1), 2), 3);
}

/* ek_rq4_mve with the channels' constants prepared once for many pixels: m, nr = -(s + 1) = -r, lo, hi. After
 * VQRDMULH, h - (h < 0) rounded-shifted right by r (VRSHL adds 2^(r-1) first, without overflow) plus out_offset is
 * ((h - (h < 0) + 2^(r-1) + out_offset 2^r) >> r): ek_rqv exactly. */
EK_INLINE int32x4_t ek_rq4v(int32x4_t acc, int32x4_t m, int32x4_t nr, int32_t oo, int32x4_t lo, int32x4_t hi) {
  int32x4_t h = vqrdmulhq_s32(acc, m);
#if EK_DW_R0 /* nr = 0 (r = 0): no -(h < 0) (h & nr keeps the sign only where nr < 0); VRSHL by 0 is h */
  h = vsubq_s32(h, vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(vandq_s32(h, nr)), 31)));
#else
  h = vsubq_s32(h, vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(h), 31)));
#endif
  h = vaddq_n_s32(vrshlq_s32(h, nr), oo);
  return vminq_s32(vmaxq_s32(h, lo), hi);
}
#endif

EK_INLINE void ek_rq_run(const int32_t *buf, int32_t n, int32_t ps, const int32_t *qp, const int8_t *sh, int32_t oo,
                         int32_t lo, int32_t hi, int mode, int8_t *da, int8_t *db, int two) {
  int32_t k = 0;
  for (; k < n; ++k) {
    const int32_t m = qp[2 * k + 1], r = sh[k], a0 = buf[ps * k], a1 = two ? buf[ps * k + 1] : 0;
    da[k] = ek_rqv(a0, m, r, oo, lo, hi, mode);
    if (two) db[k] = ek_rqv(a1, m, r, oo, lo, hi, mode);
  }
}

#if EK_MVE
/* n bytes from s to d, 16 a step, the last step predicated (nothing past d + n is written). */
EK_INLINE void ek_run_mve(int8_t *d, const int8_t *s, int32_t n) {
  for (; n >= 16; n -= 16, d += 16, s += 16) vstrbq_s8(d, vldrbq_s8(s));
  if (n > 0) {
    const mve_pred16_t pr = vctp8q((uint32_t)n);
    vstrbq_p_s8(d, vldrbq_z_s8(s, pr), pr);
  }
}

/* n bytes of value z at d, the same way (one out-of-line copy: ek_gather_mve calls it four times, for flash). */
__attribute__((noinline)) static void ek_fill_mve(int8_t *d, int8x16_t z, int32_t n) {
  for (; n >= 16; n -= 16, d += 16) vstrbq_s8(d, z);
  if (n > 0) vstrbq_p_s8(d, z, vctp8q((uint32_t)n));
}

/* ek_gather for dilation 1 across with vector copies: per kernel row its in-bounds columns are one run of
 * input bytes, the zero point before and after it (the columns in bounds are the same for every row). */
static void ek_gather_mve(const ek_mm_t *p, const int8_t *in, int32_t oy, int32_t ox, int8_t *stage) {
  const int32_t in_c = p->in_c, run = p->k_w * in_c, k4 = p->k4;
  const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  const int32_t row_step = p->dil_h * p->in_w * in_c;
  const int8x16_t z = vdupq_n_s8((int8_t)-p->in_offset);
  int32_t t0, t1, ky0, ky1, ky, b0, b1;
  const int8_t *src;
  int8_t *d = stage;
  ek_taps(ix0, 1, p->in_w, p->k_w, &t0, &t1);
  ek_taps(iy0, p->dil_h, p->in_h, p->k_h, &ky0, &ky1);
  t0 = EK_MIN(t0, p->k_w); /* a window wholly outside the input: no taps in bounds */
  t1 = EK_MIN(t1, p->k_w);
  ky0 = EK_MIN(ky0, p->k_h);
  ky1 = EK_MIN(ky1, p->k_h);
  b0 = t0 * in_c;
  b1 = t1 * in_c;
  src = in + ((iy0 + ky0 * p->dil_h) * p->in_w + ix0 + t0) * in_c;
  ek_fill_mve(d, z, ky0 * run); /* rows above the input */
  d += ky0 * run;
  if (!EK_MM_NO_RUN4 && run == 4 && b0 == 0 && b1 == 4) { /* 4-byte kernel rows in bounds: words */
    for (ky = ky0; ky < ky1; ++ky, d += 4, src += row_step) __builtin_memcpy(d, src, 4);
  } else {
    for (ky = ky0; ky < ky1; ++ky, d += run, src += row_step) {
      ek_fill_mve(d, z, b0);
      ek_run_mve(d + b0, src, b1 - b0);
      ek_fill_mve(d + b1, z, run - b1);
    }
  }
  ek_fill_mve(d, z, (int32_t)(stage + k4 - d)); /* rows below the input, and the padding to k4 */
}
#endif

/* The receptive field of output pixel (oy, ox) in filter order (ky, kx, c), out-of-image taps as the input zero
 * point, padded to k4 with it too: `stage` then holds k4 int8 values whose (x + offset) is exact. */
static void ek_gather(const ek_mm_t *p, const int8_t *in, int32_t oy, int32_t ox, int8_t *stage) {
  const int32_t in_c = p->in_c, zp = -p->in_offset, run = p->k_w * in_c;
  const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  int32_t ky, kx, c, n = 0;
#if !defined(EK_SMALL)
  if (!EK_MM_NO_RUN4 && run == 4) { /* a 4-byte kernel row (e.g. one channel, 4 wide): one word per row */
    const int whole = p->dil_w == 1 && ix0 >= 0 && ix0 + p->k_w <= p->in_w;
    const int32_t step = p->dil_h * p->in_w * in_c;
    const int8_t *src = in + (iy0 * p->in_w + ix0) * in_c;
    int32_t iy = iy0;
    for (ky = 0; ky < p->k_h; ++ky, iy += p->dil_h, src += step, n += 4) {
      int8_t b[4] = {(int8_t)zp, (int8_t)zp, (int8_t)zp, (int8_t)zp};
      if (iy >= 0 && iy < p->in_h) {
        if (whole) {
          __builtin_memcpy(b, src, 4);
        } else {
          for (kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int inside = ix >= 0 && ix < p->in_w;
            for (c = 0; c < in_c; ++c) b[kx * in_c + c] = inside ? src[kx * p->dil_w * in_c + c] : (int8_t)zp;
          }
        }
      }
      __builtin_memcpy(stage + n, b, 4);
    }
    for (; n < p->k4; ++n) stage[n] = (int8_t)zp;
    return;
  }
#endif
  for (ky = 0; ky < p->k_h; ++ky) {
    const int32_t iy = iy0 + ky * p->dil_h;
    if (iy < 0 || iy >= p->in_h) {
      for (c = 0; c < run; ++c) stage[n++] = (int8_t)zp;
      continue;
    }
    if (p->dil_w == 1 && ix0 >= 0 && ix0 + p->k_w <= p->in_w) {
      ek_copy(stage + n, in + (iy * p->in_w + ix0) * in_c, run);
      n += run;
      continue;
    }
    for (kx = 0; kx < p->k_w; ++kx) {
      const int32_t ix = ix0 + kx * p->dil_w;
      const int8_t *x = in + (iy * p->in_w + ix) * in_c;
      const int inside = ix >= 0 && ix < p->in_w;
      for (c = 0; c < in_c; ++c) stage[n++] = inside ? x[c] : (int8_t)zp;
    }
  }
  for (; n < p->k4; ++n) stage[n] = (int8_t)zp;
}

/* One pixel's column into slot 0 (col) or 1 (col + 2) of the interleaved two-pixel columns: per 4 taps the
 * words (x0, x2), (x1, x3) of pixel 0, then of pixel 1, as int16: the pairs SXTB16 makes of a filter word. The
 * input offset is in the folded bias (padding holds the zero point, so it folds exactly too). */
static void ek_expand(const int8_t *x, int32_t k4, int32_t *col) {
  int32_t g = 0;
#if EK_DSP
#if EK_ASM
  for (; g + 16 <= k4; g += 16, col += 16) { /* four words loaded in a run, expanded, stored in a run */
    uint32_t v0, v1, v2, v3, l0, l1, l2, l3;
    __asm__ volatile("ldr %[v0], [%[x]]\n\tldr %[v1], [%[x], #4]\n\tldr %[v2], [%[x], #8]\n\tldr %[v3], [%[x], #12]\n\t"
            "sxtb16 %[l0], %[v0]\n\tsxtb16 %[v0], %[v0], ror #8\n\tsxtb16 %[l1], %[v1]\n\t"
            "sxtb16 %[v1], %[v1], ror #8\n\tsxtb16 %[l2], %[v2]\n\tsxtb16 %[v2], %[v2], ror #8\n\t"
            "sxtb16 %[l3], %[v3]\n\tsxtb16 %[v3], %[v3], ror #8\n\t"
            "str %[l0], [%[c]]\n\tstr %[v0], [%[c], #4]\n\tstr %[l1], [%[c], #16]\n\tstr %[v1], [%[c], #20]\n\t"
            "str %[l2], [%[c], #32]\n\tstr %[v2], [%[c], #36]\n\tstr %[l3], [%[c], #48]\n\tstr %[v3], [%[c], #52]"
            : [v0] "=&r"(v0), [v1] "=&r"(v1), [v2] "=&r"(v2), [v3] "=&r"(v3), [l0] "=&r"(l0), [l1] "=&r"(l1),
              [l2] "=&r"(l2), [l3] "=&r"(l3)
            : [x] "r"(x + g), [c] "r"(col)
            : "memory");
  }
#endif
  for (; g < k4; g += 4, col += 4) {
    const uint32_t v = ek_ld32(x + g);
    col[0] = ek_sx02(v);
    col[1] = ek_sx13(v);
  }
#else
  int16_t *h = (int16_t *)col;
  for (g = 0; g < k4; g += 4, h += 8) {
    h[0] = x[g];
    h[1] = x[g + 2];
    h[2] = x[g + 1];
    h[3] = x[g + 3];
  }
#endif
}

/* Two pixels' columns against two output channels' interleaved filters: 8 SMLAD per 4 taps (the hot mode-2 path
 * is the assembly function ek_mm2x2_q8 below). */
EK_INLINE void ek_mm_2x2(const int32_t *col, const int8_t *w, int32_t k4, int32_t b0, int32_t b1, int32_t *acc) {
  int32_t a00 = b0, a01 = b1, a10 = b0, a11 = b1;
  const int32_t *end = col + k4;
#if EK_DSP
#define EK_MM_GROUP(c, wp)                                                \
  do {                                                                    \
    const uint32_t wa = ek_ld32(wp), wb = ek_ld32((wp) + 4);              \
    const int32_t x0l = (c)[0], x0h = (c)[1], x1l = (c)[2], x1h = (c)[3]; \
    int32_t wl = ek_sx02(wa), wh = ek_sx13(wa);                           \
    a00 = __smlad(x0l, wl, a00);                                          \
    a00 = __smlad(x0h, wh, a00);                                          \
    a10 = __smlad(x1l, wl, a10);                                          \
    a10 = __smlad(x1h, wh, a10);                                          \
    wl = ek_sx02(wb);                                                     \
    wh = ek_sx13(wb);                                                     \
    a01 = __smlad(x0l, wl, a01);                                          \
    a01 = __smlad(x0h, wh, a01);                                          \
    a11 = __smlad(x1l, wl, a11);                                          \
    a11 = __smlad(x1h, wh, a11);                                          \
  } while (0)
  for (; col < end; col += 4, w += 8) EK_MM_GROUP(col, w);
#undef EK_MM_GROUP
#else
  for (; col < end; col += 4, w += 8) {
    const int16_t *h = (const int16_t *)col;
    a00 += h[0] * w[0] + h[1] * w[2] + h[2] * w[1] + h[3] * w[3];
    a10 += h[4] * w[0] + h[5] * w[2] + h[6] * w[1] + h[7] * w[3];
    a01 += h[0] * w[4] + h[1] * w[6] + h[2] * w[5] + h[3] * w[7];
    a11 += h[4] * w[4] + h[5] * w[6] + h[6] * w[5] + h[7] * w[7];
  }
#endif
  acc[0] = a00;
  acc[1] = a01;
  acc[2] = a10;
  acc[3] = a11;
}

/* One pixel's column (slot 0) against two output channels' interleaved filters: 4 SMLAD per 4 taps. */
EK_INLINE void ek_mm_1x2(const int32_t *col, const int8_t *w, int32_t k4, int32_t b0, int32_t b1, int32_t *acc) {
  int32_t a00 = b0, a01 = b1;
  const int32_t *end = col + k4;
#if EK_DSP
#define EK_MM_GROUP1(c, wp)                                                   \
  do {                                                                        \
    const uint32_t wa = ek_ld32(wp), wb = ek_ld32((wp) + 4);                  \
    const int32_t x0l = (c)[0], x0h = (c)[1];                                 \
    a00 = __smlad(x0l, ek_sx02(wa), a00);                                     \
    a00 = __smlad(x0h, ek_sx13(wa), a00);                                     \
    a01 = __smlad(x0l, ek_sx02(wb), a01);                                     \
    a01 = __smlad(x0h, ek_sx13(wb), a01);                                     \
  } while (0)
  for (; col + 8 <= end; col += 8, w += 16) {
    EK_MM_GROUP1(col, w);
    EK_MM_GROUP1(col + 4, w + 8);
  }
  if (col < end) EK_MM_GROUP1(col, w);
#undef EK_MM_GROUP1
#else
  for (; col < end; col += 4, w += 8) {
    const int16_t *h = (const int16_t *)col;
    a00 += h[0] * w[0] + h[1] * w[2] + h[2] * w[1] + h[3] * w[3];
    a01 += h[0] * w[4] + h[1] * w[6] + h[2] * w[5] + h[3] * w[7];
  }
#endif
  acc[0] = a00;
  acc[1] = a01;
  acc[2] = acc[3] = 0; /* no second pixel */
}

/* Every pair of output channels against the two columns; `mode` is a constant at each call (see ek_rq). */
#if EK_MVE
/* One pixel's k4 input bytes into its column (16 bytes a step; the bytes past k4 are left as they are). */
EK_INLINE void ek_copy_mve(const int8_t *x, int32_t k4, int8_t *col) {
  int32_t t;
  for (t = 0; t + 16 <= k4; t += 16) vstrbq_s8(col + t, vldrbq_s8(x + t));
  if (t < k4) vstrbq_s8(col + t, vldrbq_z_s8(x + t, vctp8q((uint32_t)(k4 - t))));
}

/* 2 pixels x 4 output channels with VMLADAVA.S8, every lane useful: the filter's Helium layout (layout.py
 * mve_filter) holds, per group of 4 output channels and per 16 taps, the 4 channels' 16 taps in a row, so each
 * 16 taps are 2 column loads, 4 filter loads (one pointer, immediate offsets) and 8 VMLADAVA for 128 MACs. The
 * columns c0, c1 hold k16 = n * 16 taps (the lanes past k4 meet zero taps of the filter); s = [px0 oc0..3,
 * px1 oc0..3] are the bare sums (the input offset is in the folded biases, added by the caller). */
EK_INLINE void ek_mm_mve4(const int8_t *c0, const int8_t *c1, const int8_t *w, int32_t n, int two, int32_t *s) {
  int8x16_t x0 = vldrbq_s8(c0), w0 = vldrbq_s8(w), w1 = vldrbq_s8(w + 16), w2 = vldrbq_s8(w + 32);
  int8x16_t w3 = vldrbq_s8(w + 48), x1;
  int32_t a0 = vmladavq_s8(x0, w0), a1 = vmladavq_s8(x0, w1), a2 = vmladavq_s8(x0, w2), a3 = vmladavq_s8(x0, w3);
  int32_t e0 = 0, e1 = 0, e2 = 0, e3 = 0, t;
  if (two) {
    x1 = vldrbq_s8(c1);
    e0 = vmladavq_s8(x1, w0);
    e1 = vmladavq_s8(x1, w1);
    e2 = vmladavq_s8(x1, w2);
    e3 = vmladavq_s8(x1, w3);
  }
  for (t = 1; t < n; ++t) {
    c0 += 16;
    c1 += 16;
    w += 64;
    x0 = vldrbq_s8(c0);
    w0 = vldrbq_s8(w);
    w1 = vldrbq_s8(w + 16);
    w2 = vldrbq_s8(w + 32);
    w3 = vldrbq_s8(w + 48);
    a0 = vmladavaq_s8(a0, x0, w0);
    a1 = vmladavaq_s8(a1, x0, w1);
    a2 = vmladavaq_s8(a2, x0, w2);
    a3 = vmladavaq_s8(a3, x0, w3);
    if (two) {
      x1 = vldrbq_s8(c1);
      e0 = vmladavaq_s8(e0, x1, w0);
      e1 = vmladavaq_s8(e1, x1, w1);
      e2 = vmladavaq_s8(e2, x1, w2);
      e3 = vmladavaq_s8(e3, x1, w3);
    }
  }
  s[0] = a0;
  s[1] = a1;
  s[2] = a2;
  s[3] = a3;
  s[4] = e0;
  s[5] = e1;
  s[6] = e2;
  s[7] = e3;
}

#if EK_MVE_ASM
/* Two pixels x every group of 4 output channels with ek_rq mode 1 / 2 (out_c a multiple of 4), one assembly
 * function: the 8 VMLADAVA accumulators need the 8 even registers (r0 ... r12, lr; the instruction takes no odd
 * one), which the compiler does not manage without moves. Per 16 taps 2 column loads, 4 filter loads (one
 * pointer, immediate offsets) and 8 VMLADAVA; per group the sums go to the stack with one STM (ascending
 * registers to ascending addresses: lanes 0..3 of each pixel) and back as two vectors, the biases and multipliers
 * come de-interleaved from qp by VLD20/VLD21, and both pixels are requantized as ek_rq4v does (VQRDMULH,
 * h - (h < 0), VRSHL by -r, + out_offset, clamp) and stored with one VSTRB.32 each. */
typedef struct {
  const int8_t *c0, *c1; /* the two columns (k16 bytes each) */
  const int8_t *w;       /* the Helium filter layout (layout.py mve_filter) */
  const int32_t *qp;     /* (bias, multiplier) per channel */
  const int8_t *sh;      /* s = r - 1 per channel */
  int8_t *da, *db;       /* the pixels' outputs */
  int32_t groups, n1;    /* out_c / 4, k16 / 16 - 1 */
  int32_t oo, lo, hi;    /* output offset, activation range */
} ek_mmv_t;

void ek_mm_mve_2px(ek_mmv_t *a);
__asm__(".pushsection .text.ek_mm_mve_2px,\"ax\",%progbits\n\t.syntax unified\n\t.thumb\n\t.align 2\n\t"
        ".type ek_mm_mve_2px, %function\n\t.thumb_func\n"
        "ek_mm_mve_2px:\n\t"
        "push {r4-r11, lr}\n\tvpush {d8-d15}\n\tsub sp, #32\n\t"
        "mov r9, r0\n\tldr r5, [r9, #8]\n\tldr r11, [r9, #12]\n\t"
        "ldr r0, [r9, #40]\n\tvdup.32 q6, r0\n\tldr r0, [r9, #44]\n\tvdup.32 q7, r0\n"
        "1:\n\t"
        "ldr r1, [r9, #0]\n\tldr r3, [r9, #4]\n\t"
        "vldrb.u8 q0, [r1], #16\n\tvldrb.u8 q1, [r3], #16\n\tvldrb.u8 q3, [r5, #16]\n\t"
        "vldrb.u8 q4, [r5, #32]\n\tvldrb.u8 q5, [r5, #48]\n\tvldrb.u8 q2, [r5], #64\n\t"
        "vmladav.s8 r0, q0, q2\n\tvmladav.s8 r2, q0, q3\n\tvmladav.s8 r4, q0, q4\n\tvmladav.s8 r6, q0, q5\n\t"
        "vmladav.s8 r8, q1, q2\n\tvmladav.s8 r10, q1, q3\n\tvmladav.s8 r12, q1, q4\n\tvmladav.s8 lr, q1, q5\n\t"
        "ldr r7, [r9, #32]\n\tcbz r7, 3f\n"
        "2:\n\t"
        "vldrb.u8 q0, [r1], #16\n\tvldrb.u8 q1, [r3], #16\n\tvldrb.u8 q3, [r5, #16]\n\t"
        "vldrb.u8 q4, [r5, #32]\n\tvldrb.u8 q5, [r5, #48]\n\tvldrb.u8 q2, [r5], #64\n\t"
        "vmladava.s8 r0, q0, q2\n\tvmladava.s8 r2, q0, q3\n\tvmladava.s8 r4, q0, q4\n\tvmladava.s8 r6, q0, q5\n\t"
        "vmladava.s8 r8, q1, q2\n\tvmladava.s8 r10, q1, q3\n\tvmladava.s8 r12, q1, q4\n\tvmladava.s8 lr, q1, q5\n\t"
        "subs r7, #1\n\tbne 2b\n"
        "3:\n\t"
        "stm sp, {r0, r2, r4, r6, r8, r10, r12, lr}\n\tvldrw.u32 q0, [sp]\n\tvldrw.u32 q1, [sp, #16]\n\t"
        "vld20.32 {q2, q3}, [r11]\n\tvld21.32 {q2, q3}, [r11]!\n\t"
        "ldr r0, [r9, #16]\n\tvldrb.s32 q4, [r0], #4\n\tstr r0, [r9, #16]\n\tvmvn q4, q4\n\t"
        "ldr r2, [r9, #36]\n\tldr r4, [r9, #20]\n\tldr r6, [r9, #24]\n\t"
        "vadd.i32 q0, q0, q2\n\tvadd.i32 q1, q1, q2\n\tvqrdmulh.s32 q0, q0, q3\n\tvqrdmulh.s32 q1, q1, q3\n\t"
        "vshr.u32 q5, q0, #31\n\tvsub.i32 q0, q0, q5\n\tvshr.u32 q5, q1, #31\n\tvsub.i32 q1, q1, q5\n\t"
        "vrshl.s32 q0, q0, q4\n\tvrshl.s32 q1, q1, q4\n\tvadd.i32 q0, q0, r2\n\tvadd.i32 q1, q1, r2\n\t"
        "vmax.s32 q0, q0, q6\n\tvmax.s32 q1, q1, q6\n\tvmin.s32 q0, q0, q7\n\tvmin.s32 q1, q1, q7\n\t"
        "vstrb.32 q0, [r4], #4\n\tvstrb.32 q1, [r6], #4\n\tstr r4, [r9, #20]\n\tstr r6, [r9, #24]\n\t"
        "ldr r0, [r9, #28]\n\tsubs r0, #1\n\tstr r0, [r9, #28]\n\tbne 1b\n\t"
        "add sp, #32\n\tvpop {d8-d15}\n\tpop {r4-r11, pc}\n\t"
        ".size ek_mm_mve_2px, .-ek_mm_mve_2px\n\t.popsection");
#endif

/* One group of 4 output channels (oc..) for both pixels, requantized as vectors (modes 1, 2); `tail`: the last
 * group of a layer whose out_c is not a multiple of 4 (predicated table loads and stores). */
EK_INLINE void ek_mm_group_mve(const ek_mm_t *p, const int8_t *c0, const int8_t *c1, const int8_t *w, int32_t n,
                               int32_t oc, int8_t *da, int8_t *db, int two, int tail) {
  const int32_t *q = p->qp + 2 * oc;
  const uint32x4_t ev = vidupq_n_u32(0, 2), od = vidupq_n_u32(1, 2);
  const mve_pred16_t pq = vctp32q((uint32_t)(p->out_c - oc));
  const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
  int32x4_t b, m, nr, v;
  int32_t s[8];
  ek_mm_mve4(c0, c1, w, n, two, s);
  if (tail) {
    b = vldrwq_gather_shifted_offset_z_s32(q, ev, pq);
    m = vldrwq_gather_shifted_offset_z_s32(q, od, pq);
    nr = vmvnq_s32(vldrbq_z_s32(p->shift + oc, pq));
  } else {
    b = vldrwq_gather_shifted_offset_s32(q, ev);
    m = vldrwq_gather_shifted_offset_s32(q, od);
    nr = vmvnq_s32(vldrbq_s32(p->shift + oc));
  }
  v = ek_rq4v(vaddq_s32(ek_pack4(s[0], s[1], s[2], s[3]), b), m, nr, p->out_offset, lo, hi);
  if (tail) {
    vstrbq_p_s32(da + oc, v, pq);
  } else {
    vstrbq_s32(da + oc, v);
  }
  if (two) {
    v = ek_rq4v(vaddq_s32(ek_pack4(s[4], s[5], s[6], s[7]), b), m, nr, p->out_offset, lo, hi);
    if (tail) {
      vstrbq_p_s32(db + oc, v, pq);
    } else {
      vstrbq_s32(db + oc, v);
    }
  }
}
#endif

#if EK_ASM
/* Two pixels x every full pair of output channels with ek_rq mode 2 (k4 a multiple of 8), one assembly function
 * with all 14 registers (4 accumulators, 2 pointers, 4 column words, 2 filter words, a temporary, the loop
 * bound): per pair the folded biases, the 2x2 product of ek_mm_2x2 (eight groups of 4 taps per pass, then four,
 * then two), the four requantizations sharing each channel's constants (SMMLAR, as in ek_dw3x3_q8_2px), and
 * per pixel the two outputs packed (BFI) and stored as one halfword (SSAT clamps above; ek_clamp_lo below). */
typedef struct {
  const int32_t *col;  /* the two pixels' interleaved columns (ek_expand) */
  const int8_t *w;     /* the filter of the first pair */
  const int32_t *qp;
  const int8_t *sh;
  int8_t *da;          /* pixel a's outputs; pixel b's at da + db_off */
  int32_t db_off;
  int8_t *da_end;      /* da + 2 * pairs */
  int32_t col_bytes;   /* 4 * k4 */
  int32_t k;           /* 2 out_offset + 1: the rounding constant is k << s */
} ek_mm2_t;

void ek_mm2x2_q8(const ek_mm2_t *a);

#define EK_S(x) #x
#define EK_MM2_GROUP(co, wo)                                                                        \
  "ldr r6, [r4, #" EK_S(co) "]\n\tldr r7, [r4, #" EK_S(co) "+4]\n\tldr r8, [r4, #" EK_S(co) "+8]\n\t" \
  "ldr r9, [r4, #" EK_S(co) "+12]\n\tldr r10, [r5, #" EK_S(wo) "]\n\tldr r11, [r5, #" EK_S(wo) "+4]\n\t" \
  "sxtb16 r12, r10\n\tsmlad r0, r6, r12, r0\n\tsmlad r2, r8, r12, r2\n\t"                          \
  "sxtb16 r10, r10, ror #8\n\tsmlad r0, r7, r10, r0\n\tsmlad r2, r9, r10, r2\n\t"                  \
  "sxtb16 r12, r11\n\tsmlad r1, r6, r12, r1\n\tsmlad r3, r8, r12, r3\n\t"                          \
  "sxtb16 r11, r11, ror #8\n\tsmlad r1, r7, r11, r1\n\tsmlad r3, r9, r11, r3\n\t"
#define EK_MM2_RQ(a, b, m, rnd, r)                                                                  \
  "add r10, " rnd ", " a ", asr #31\n\tlsl " a ", " a ", #1\n\tsmmlar " a ", " a ", " m ", r10\n\t" \
  "add r10, " rnd ", " b ", asr #31\n\tlsl " b ", " b ", #1\n\tsmmlar " b ", " b ", " m ", r10\n\t" \
  "asr " a ", " a ", " r "\n\tasr " b ", " b ", " r "\n\tssat " a ", #8, " a ", asr #1\n\t"      \
  "ssat " b ", #8, " b ", asr #1\n\t"
__asm__(".pushsection .text.ek_mm2x2_q8,\"ax\",%progbits\n\t.syntax unified\n\t.thumb\n\t.align 2\n\t"
        ".type ek_mm2x2_q8, %function\n\t.thumb_func\n"
        "ek_mm2x2_q8:\n\t"
        "push {r4-r11, lr}\n\tsub sp, #36\n\t"
        "ldr r1, [r0, #8]\n\tldr r2, [r0, #12]\n\tldr r3, [r0, #16]\n\tldr r4, [r0, #20]\n\t"
        "ldr r6, [r0, #24]\n\tldr r8, [r0, #0]\n\tldr r9, [r0, #28]\n\tldr r5, [r0, #4]\n\t"
        "add r9, r8\n\tsub lr, r9, #128\n\tldr r7, [r0, #32]\n\tstr r7, [sp, #28]\n\t" /* [sp, #28]: k */
        "stmia sp, {r1-r4, r6, r8, r9}\n\t" /* [sp]: qp, sh, da, db_off, da_end, col, col end; lr: end - 128 */
        "mov r4, r1\n"
        "1:\n\t"
        "ldr r0, [r4, #0]\n\tldr r1, [r4, #8]\n\tldr r4, [sp, #20]\n\tmov r2, r0\n\tmov r3, r1\n\t"
        "cmp r4, lr\n\tbhi 5f\n"
        "2:\n\t" EK_MM2_GROUP(0, 0) EK_MM2_GROUP(16, 8) EK_MM2_GROUP(32, 16) EK_MM2_GROUP(48, 24)
        EK_MM2_GROUP(64, 32) EK_MM2_GROUP(80, 40) EK_MM2_GROUP(96, 48) EK_MM2_GROUP(112, 56)
        "adds r4, #128\n\tadds r5, #64\n\tcmp r4, lr\n\tbls 2b\n"
        "5:\n\tldr r12, [sp, #24]\n\tcmp r4, r12\n\tbeq 4f\n\t"
        "sub r12, r12, r4\n\tcmp r12, #64\n\tblo 3f\n\t"
        EK_MM2_GROUP(0, 0) EK_MM2_GROUP(16, 8) EK_MM2_GROUP(32, 16) EK_MM2_GROUP(48, 24)
        "adds r4, #64\n\tadds r5, #32\n\tldr r12, [sp, #24]\n\tcmp r4, r12\n\tbeq 4f\n"
        "3:\n\t" EK_MM2_GROUP(0, 0) EK_MM2_GROUP(16, 8) "adds r4, #32\n\tadds r5, #16\n"
        "4:\n\t"
        "ldr r4, [sp, #0]\n\tldr r12, [sp, #8]\n\tldr r11, [sp, #4]\n\tldr r6, [r4, #4]\n\tldr r7, [sp, #28]\n\t"
        "ldrsb r8, [r11, #0]\n\tldrsb r9, [r11, #1]\n\tlsl r7, r7, r8\n\t"
        EK_MM2_RQ("r0", "r2", "r6", "r7", "r8")
        "ldr r6, [r4, #12]\n\tldr r7, [sp, #28]\n\tlsl r7, r7, r9\n\t"
        EK_MM2_RQ("r1", "r3", "r6", "r7", "r9")
        "bfi r0, r1, #8, #8\n\tbfi r2, r3, #8, #8\n\tldr r6, [sp, #12]\n\t"
        "adds r4, #16\n\tadds r11, #2\n\t"
        "strh r2, [r12, r6]\n\tstrh r0, [r12], #2\n\tstr r12, [sp, #8]\n\tstr r4, [sp, #0]\n\tstr r11, [sp, #4]\n\t"
        "ldr r6, [sp, #16]\n\tcmp r12, r6\n\tblo 1b\n\t"
        "add sp, #36\n\tpop {r4-r11, pc}\n\t"
        ".size ek_mm2x2_q8, .-ek_mm2x2_q8\n\t.popsection");
#undef EK_MM2_RQ
#undef EK_MM2_GROUP
#undef EK_S
#endif

/* Output channels per requantization pass (even: channel pairs never straddle two chunks). */
#define EK_RQ_CHUNK 32

EK_INLINE void ek_mm_channels(const ek_mm_t *p, const int32_t *col, int8_t *da, int8_t *db, int two, int mode) {
  const int32_t k4 = p->k4, out_c = p->out_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int8_t *w = p->filter, *sh = p->shift;
  const int32_t *qp = p->qp;
  int32_t oc, acc[4];
#if EK_MVE
  {
    const int32_t k16 = (k4 + 15) & ~15, n = k16 >> 4;
    const int8_t *c0 = (const int8_t *)col, *c1 = c0 + k16;
    (void)acc;
    if (mode != 0) {
#if EK_MVE_ASM
      if (EK_MM4_MVE || (two && (out_c & 3) == 0)) { /* EK_MM4_MVE: a lone pixel comes paired with itself */
        ek_mmv_t a;
        a.c0 = c0;
        a.c1 = c1;
        a.w = w;
        a.qp = qp;
        a.sh = sh;
        a.da = da;
        a.db = db;
        a.groups = out_c >> 2;
        a.n1 = n - 1;
        a.oo = oo;
        a.lo = lo;
        a.hi = hi;
        ek_mm_mve_2px(&a);
        return;
      }
#endif
      for (oc = 0; oc + 4 <= out_c; oc += 4, w += 4 * k16) ek_mm_group_mve(p, c0, c1, w, n, oc, da, db, two, 0);
      if (oc < out_c) ek_mm_group_mve(p, c0, c1, w, n, oc, da, db, two, 1);
      return;
    }
    for (oc = 0; oc < out_c; oc += 4, w += 4 * k16) { /* TFLite's general requantization, per output */
      int32_t s[8], j;
      ek_mm_mve4(c0, c1, w, n, two, s);
      for (j = 0; j < 4 && oc + j < out_c; ++j) {
        da[oc + j] = ek_rqv(s[j] + qp[2 * (oc + j)], qp[2 * (oc + j) + 1], sh[oc + j], oo, lo, hi, 0);
        if (two) db[oc + j] = ek_rqv(s[4 + j] + qp[2 * (oc + j)], qp[2 * (oc + j) + 1], sh[oc + j], oo, lo, hi, 0);
      }
    }
    return;
  }
#endif
  oc = 0;
#if EK_ASM
  if (mode == 2 && two && (EK_MM8_ASM || ((k4 & 7) == 0 && out_c >= 2))) { /* every full pair of channels */
    const int32_t pairs = out_c >> 1;
    ek_mm2_t a;
    a.col = col;
    a.w = w;
    a.qp = qp;
    a.sh = sh;
    a.da = da;
    a.db_off = (int32_t)(db - da);
    a.da_end = da + 2 * pairs;
    a.col_bytes = 4 * k4;
    a.k = 2 * oo + 1;
    ek_mm2x2_q8(&a);
    oc = 2 * pairs;
    w += oc * k4;
    if (EK_MM8_ASM) return; /* out_c is even: nothing is left */
  }
#endif
  if (!two) { /* one pixel (a fully connected layer, an odd last pixel): each pair straight to its outputs; an odd
               * last channel's partner is a zero filter with a zero qp entry (layout.py pads both) */
    for (; oc < out_c; oc += 2, w += 2 * k4) {
      const int32_t *q = qp + 2 * oc;
      ek_mm_1x2(col, w, k4, q[0], q[2], acc);
      da[oc] = ek_rq(acc[0], q, sh[oc], oo, lo, hi, mode);
      if (oc + 1 < out_c) da[oc + 1] = ek_rq(acc[1], q + 2, sh[oc + 1], oo, lo, hi, mode);
    }
    return;
  }
  for (; oc < out_c; oc += EK_RQ_CHUNK) { /* accumulators of a chunk of channels, then its outputs */
    const int32_t n = EK_MIN(EK_RQ_CHUNK, out_c - oc);
    int32_t buf[2 * EK_RQ_CHUNK], k;
    for (k = 0; k + 2 <= n; k += 2, w += 2 * k4) {
      const int32_t *q = qp + 2 * (oc + k);
      ek_mm_2x2(col, w, k4, q[0], q[2], acc);
      buf[2 * k] = acc[0];
      buf[2 * k + 1] = acc[2];
      buf[2 * k + 2] = acc[1];
      buf[2 * k + 3] = acc[3];
    }
    if (k < n) { /* the odd last channel's partner is a zero filter */
      ek_mm_2x2(col, w, k4, qp[2 * (oc + k)], 0, acc);
      buf[2 * k] = acc[0];
      buf[2 * k + 1] = acc[2];
      w += 2 * k4;
    }
    ek_rq_run(buf, n, 2, qp + 2 * oc, sh + oc, oo, lo, hi, mode, da + oc, db + oc, two);
  }
}

/* Output pixels a and b (when two) of a matrix-product layer. */
EK_INLINE void ek_mm_pixels(const ek_mm_t *p, const int8_t *in, int32_t ay, int32_t ax, int32_t by, int32_t bx,
                            int two, int8_t *da, int8_t *db, int mode) {
  const int32_t k4 = p->k4;
  int8_t *stage = p->scratch;
  int32_t *col = (int32_t *)(void *)(((uintptr_t)(p->scratch + k4) + 3u) & ~(uintptr_t)3u);
#if EK_MVE
  const int32_t k16 = (k4 + 15) & ~15;
  (void)stage;
  if (p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0 && p->in_c == k4) {
    /* copied, not read in place: the outputs may overwrite these pixels (in-place layers, ek_mm_direct) */
    ek_copy_mve(in + (ay * p->stride_h * p->in_w + ax * p->stride_w) * k4, k4, (int8_t *)col);
    if (two) ek_copy_mve(in + (by * p->stride_h * p->in_w + bx * p->stride_w) * k4, k4, (int8_t *)col + k16);
  } else if (EK_MM_DIL1 || p->dil_w == 1) { /* the receptive fields straight into the two k16-byte columns
                                               * (bytes k4.. meet zero taps) */
    ek_gather_mve(p, in, ay, ax, (int8_t *)col);
    if (two) ek_gather_mve(p, in, by, bx, (int8_t *)col + k16);
  } else {
    ek_gather(p, in, ay, ax, (int8_t *)col);
    if (two) ek_gather(p, in, by, bx, (int8_t *)col + k16);
  }
  ek_mm_channels(p, col, da, db, two, mode);
  return;
#endif
  if (p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0 && p->in_c == k4) {
    ek_expand(in + (ay * p->stride_h * p->in_w + ax * p->stride_w) * k4, k4, col);
    if (two) ek_expand(in + (by * p->stride_h * p->in_w + bx * p->stride_w) * k4, k4, col + 2);
  } else {
    ek_gather(p, in, ay, ax, stage);
    ek_expand(stage, k4, col);
    if (two) {
      ek_gather(p, in, by, bx, stage);
      ek_expand(stage, k4, col + 2);
    }
  }
  ek_mm_channels(p, col, da, db, two, mode);
}

#if EK_ASM
/* The lower activation clamp of a whole output tensor, 4 bytes at a time (SSUB8 sets a byte's GE flag where it is
 * >= lo, SEL keeps it there): the assembly kernels leave it out of their loops, so a layer whose act_min is
 * -128 (no ReLU, or ReLU onto zero point -128) pays nothing; it is idempotent, so outputs the C paths already
 * clamped may pass through it again. Inlined: a tail call would make it a kernel of its own for the counters. */
EK_INLINE void ek_clamp_lo(int8_t *d, int32_t n, int32_t lo) {
  const uint32_t lo4 = (uint32_t)(uint8_t)lo * 0x01010101u;
  int32_t i = 0;
  if (EK_Q8_NO_LO || lo <= -128) return;
  for (; i + 4 <= n; i += 4) {
    uint32_t v, t;
    __builtin_memcpy(&v, d + i, 4);
    __asm__("ssub8 %1, %0, %2\n\tsel %0, %0, %2" : "+r"(v), "=&r"(t) : "r"(lo4) : "cc");
    __builtin_memcpy(d + i, &v, 4);
  }
  for (; i < n; ++i) d[i] = (int8_t)EK_MAX(d[i], lo);
}

/* The upper clamp of a whole output tensor, 4 bytes at a time (SSUB8 sets a byte's GE flag where hi >= it, SEL
 * keeps it there, else hi). Why: requantization mode 1 (act_max < 127, a ReLU6 whose range a trained model's
 * calibration stretched past 6) is mode 2's arithmetic then this clamp, so those layers run the assembly
 * kernels too instead of the C path (a trained mbv2 counted 1.35x its untrained twin on the M4 before). */
EK_INLINE void ek_clamp_hi(int8_t *d, int32_t n, int32_t hi) {
  const uint32_t hi4 = (uint32_t)(uint8_t)hi * 0x01010101u;
  int32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    uint32_t v, t;
    __builtin_memcpy(&v, d + i, 4);
    __asm__("ssub8 %1, %2, %0\n\tsel %0, %0, %2" : "+r"(v), "=&r"(t) : "r"(hi4) : "cc");
    __builtin_memcpy(d + i, &v, 4);
  }
  for (; i < n; ++i) d[i] = (int8_t)EK_MIN(d[i], hi);
}
#endif

/* Whether writing each pair of output pixels straight to `out` (once both are expanded) never overwrites input
 * a later pixel still reads: the first input byte pixels k + 2, ... read is exact for an unpadded 1x1 layer and
 * its row's start otherwise. Then the row buffer and its copies are not needed (in-place 1x1 layers). */
EK_COLD static int ek_mm_direct(const ek_mm_t *p, const int8_t *in, const int8_t *out) {
  const int32_t out_w = p->out_w, n = out_w * p->out_h, ic = p->in_c, oc = p->out_c;
  const int8_t *in_end = in + p->in_h * p->in_w * ic;
  const int exact = p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0;
  int32_t k, oy = 0, ox = 2;
  for (k = 0; k + 2 < n; k += 2, ox += 2) {
    const int8_t *first;
    for (; ox >= out_w; ox -= out_w) ++oy;
    first = in + (EK_MAX(oy * p->stride_h - p->pad_top, 0) * p->in_w + (exact ? ox * p->stride_w : 0)) * ic;
    if (out + (k + 2) * oc > first && out + k * oc < in_end) return 0;
  }
  return 1;
}

/* Pixels in pairs in raster order (a pair may span two rows); an odd last pixel pairs with itself. With a row buffer
 * (two rows, used in turn) each output row is copied out once complete, so the output may overlap the input;
 * it is skipped when writing straight to the output is safe (ek_mm_direct). */
EK_INLINE void ek_mm_run(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp, int mode) {
  const int32_t out_w = p->out_w, out_c = p->out_c, row = out_w * out_c, n = out_w * p->out_h;
  int32_t k, copied = 0, ay = 0, ax = 0;
  if (tmp && ek_mm_direct(p, in, out)) tmp = 0;
  for (k = 0; k < n; k += 2) { /* pixel a = k at (ay, ax), b = k + 1 at (by, bx) */
    const int two = k + 1 < n;
    const int32_t by = ax + 1 == out_w ? ay + 1 : ay, bx = ax + 1 == out_w ? 0 : ax + 1;
    int8_t *da = tmp ? tmp + (ay & 1) * row + ax * out_c : out + k * out_c;
    int8_t *db = tmp ? tmp + (by & 1) * row + bx * out_c : out + (k + 1) * out_c;
#if defined(EK_SMALL) || (EK_MVE && EK_MM4_MVE)
    /* one copy of the pixel code: a lone pixel goes as a pair with itself (same bytes written twice) */
    ek_mm_pixels(p, in, ay, ax, two ? by : ay, two ? bx : ax, 1, da, two ? db : da, mode);
#elif EK_MVE
    if (two) { /* two as a constant in each copy: Helium's product and requantization loops are specialised */
      ek_mm_pixels(p, in, ay, ax, by, bx, 1, da, db, mode);
    } else {
      ek_mm_pixels(p, in, ay, ax, ay, ax, 0, da, da, mode);
    }
#else
    ek_mm_pixels(p, in, ay, ax, by, bx, two, da, db, mode); /* one copy of the pixel code; a lone one in C */
#endif
    ay = bx + 1 == out_w ? by + 1 : by;
    ax = bx + 1 == out_w ? 0 : bx + 1;
    if (tmp) {
      for (; copied < p->out_h && (copied + 1) * out_w <= k + 1 + two; ++copied) {
        ek_copy(out + copied * row, tmp + (copied & 1) * row, row);
      }
    }
  }
#if EK_ASM
  if (mode == 2) ek_clamp_lo(out, n * out_c, p->act_min);
#endif
}

/* Depthwise conv, one filter per channel (multiplier 1), with the SMMULR requantization (ek_rq modes 1, 2).
 * Per output row the k_h input rows it reads are copied into `scratch` with their padding (the input zero point,
 * so the input offset folds exactly into the bias, qp[0]) and regrouped by 4 channels: [group][column][k_h][4].
 * Every output pixel then has the same in-bounds window, and a group's taps are consecutive words at fixed
 * offsets from its pixel (the next pixel's at + k_h * 4 * stride_w). The filter is laid out at generation time
 * to match, [group][k_w][k_h][4], so one offset addresses a tap's weights and its input. Channels are padded to
 * a multiple of 4 with zero weights; the padding columns are written once a layer (oy < 0). */
#if EK_ASM
/* One in-bounds input row into the window of a 3-row depthwise layer whose channels fill groups of 16: per column
 * (ncols of them, src contiguous) `chunks` runs of four words, each loaded in a run and stored to four groups
 * (gsz apart) in a run; d is the window at the first column's slot of this row. */
void ek_dw_fill_row3(const int8_t *src, int8_t *d, int32_t ncols, int32_t gsz, int32_t chunks);
__asm__(".pushsection .text.ek_dw_fill_row3,\"ax\",%progbits\n\t.syntax unified\n\t.thumb\n\t.align 2\n\t"
        ".type ek_dw_fill_row3, %function\n\t.thumb_func\n"
        "ek_dw_fill_row3:\n\t"
        "push {r4-r11, lr}\n\tldr r12, [sp, #36]\n\tadd r10, r3, r3\n\tadd r11, r10, r3\n"
        "1:\n\tmov r9, r1\n\tmov lr, r12\n"
        "2:\n\tldr r4, [r0, #0]\n\tldr r5, [r0, #4]\n\tldr r6, [r0, #8]\n\tldr r7, [r0, #12]\n\t"
        "str r4, [r9]\n\tstr r5, [r9, r3]\n\tstr r6, [r9, r10]\n\tstr r7, [r9, r11]\n\t"
        "adds r0, #16\n\tadd r9, r9, r10, lsl #1\n\tsubs lr, #1\n\tbne 2b\n\t"
        "adds r1, #12\n\tsubs r2, #1\n\tbne 1b\n\t"
        "pop {r4-r11, pc}\n\t"
        ".size ek_dw_fill_row3, .-ek_dw_fill_row3\n\t.popsection");
#endif

EK_COLD static void ek_dw_fill(const ek_mm_t *p, const int8_t *in, int32_t oy, int32_t span, int32_t groups) {
  const int32_t in_c = p->in_c, kh = p->k_h, cstep = kh * 4, gsz = span * cstep, zp = -p->in_offset;
  const int32_t c0 = EK_MIN(p->pad_left, span), c1 = EK_MAX(EK_MIN(span, p->pad_left + p->in_w), c0);
  const int32_t full = in_c >> 2;
  const uint32_t zp4 = (uint32_t)(uint8_t)zp * 0x01010101u;
  int32_t ky, col, g;
  for (ky = 0; ky < kh; ++ky) {
    const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
    int8_t *row = p->scratch + ky * 4;
    if (oy < 0 || iy < 0 || iy >= p->in_h) { /* padding: the zero point (oy < 0: the padding columns, once) */
      const int32_t from = oy < 0 ? 0 : c0, to = oy < 0 ? span : c1;
      for (col = from; col < to; ++col) {
        int8_t *d = row + col * cstep;
        if (oy < 0 && col == c0) col = c1; /* in-bounds columns: written per row */
        if (col >= to) break;
        d = row + col * cstep;
        for (g = 0; g < groups; ++g, d += gsz) __builtin_memcpy(d, &zp4, 4);
      }
      continue;
    }
    {
      const int8_t *src = in + (iy * p->in_w + c0 - p->pad_left) * in_c;
#if EK_ASM
      if (kh == 3 && (in_c & 15) == 0 && c1 > c0) {
        ek_dw_fill_row3(src, row + c0 * cstep, c1 - c0, gsz, in_c >> 4);
        continue;
      }
#endif
      for (col = c0; col < c1; ++col) {
        int8_t *d = row + col * cstep;
        const int8_t *e = src + 4 * (full & ~3);
        for (; src < e; src += 16, d += 4 * gsz) { /* loads, then stores, in runs */
          uint32_t v0, v1, v2, v3;
          __builtin_memcpy(&v0, src, 4);
          __builtin_memcpy(&v1, src + 4, 4);
          __builtin_memcpy(&v2, src + 8, 4);
          __builtin_memcpy(&v3, src + 12, 4);
          __builtin_memcpy(d, &v0, 4);
          __builtin_memcpy(d + gsz, &v1, 4);
          __builtin_memcpy(d + 2 * gsz, &v2, 4);
          __builtin_memcpy(d + 3 * gsz, &v3, 4);
        }
        for (g = full & ~3; g < full; ++g, d += gsz, src += 4) {
          uint32_t v;
          __builtin_memcpy(&v, src, 4);
          __builtin_memcpy(d, &v, 4);
        }
        if (full < groups) { /* a last, partial group: the missing channels have zero weights */
          int32_t k;
          for (k = 0; k < 4; ++k) d[k] = (int8_t)(k < (in_c & 3) ? src[k] : zp);
          src += in_c & 3;
        }
      }
    }
  }
}

/* One output pixel's 4 channels of group data x (the window's first column) and filter w: acc[k] += taps. */
EK_INLINE void ek_dw_group(const int8_t *x, const int8_t *w, int32_t kh, int32_t kw, int32_t col_step,
                           int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], kx, ky;
#if EK_DSP
#define EK_DW_TAP(xp, wp)                                                                  \
  do {                                                                                     \
    const uint32_t xv_ = ek_ld32(xp), wv_ = ek_ld32(wp);                                   \
    const int32_t xl_ = ek_sx02(xv_), xh_ = ek_sx13(xv_), wl_ = ek_sx02(wv_), wh_ = ek_sx13(wv_); \
    a0 = __smlabb(xl_, wl_, a0);                                                           \
    a2 = __smlatt(xl_, wl_, a2);                                                           \
    a1 = __smlabb(xh_, wh_, a1);                                                           \
    a3 = __smlatt(xh_, wh_, a3);                                                           \
  } while (0)
  {
    for (kx = 0; kx < kw; ++kx, x += col_step) {
      for (ky = 0; ky < kh; ++ky, w += 4) EK_DW_TAP(x + 4 * ky, w);
    }
  }
#undef EK_DW_TAP
#else
  for (kx = 0; kx < kw; ++kx, x += col_step) {
    for (ky = 0; ky < kh; ++ky, w += 4) {
      const int8_t *xt = x + 4 * ky;
      a0 += xt[0] * w[0];
      a1 += xt[1] * w[1];
      a2 += xt[2] * w[2];
      a3 += xt[3] * w[3];
    }
  }
#endif
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

#if EK_ASM
/* The full groups of one output pixel of a 3x3 depthwise layer with ek_rq mode 2, in one hand-scheduled loop:
 * per group of 4 channels the folded biases, 9 taps (ek_dw_group), the requantization, then the four outputs
 * packed into one word (BFI) and stored at once (SSAT clamps above; ek_clamp_lo below, after the layer). The
 * accumulators never leave registers; the table and output pointers live on the stack between groups. It takes
 * the odd last pixel of a row (ek_dw3x3_q8_2px the pairs) and strided layers. */
EK_INLINE void ek_dw3x3_q8(const int8_t *x, const int8_t *w, int32_t col_step, const int32_t *qp, const int8_t *sh,
                           int8_t *dst, int32_t groups, int32_t gsz, int32_t k) {
  int32_t a0, a1, a2, a3, xa, wa, xb, wb, t0, t1;
  int8_t *end = dst + 4 * groups;
#define EK_DW_ASM_TAP(xv, wv)                                                                       \
  "sxtb16 %[t0], %[" #xv "]\n\tsxtb16 %[t1], %[" #wv "]\n\t"                                       \
  "smlabb %[a0], %[t0], %[t1], %[a0]\n\tsmlatt %[a2], %[t0], %[t1], %[a2]\n\t"                     \
  "sxtb16 %[" #xv "], %[" #xv "], ror #8\n\tsxtb16 %[" #wv "], %[" #wv "], ror #8\n\t"             \
  "smlabb %[a1], %[" #xv "], %[" #wv "], %[a1]\n\tsmlatt %[a3], %[" #xv "], %[" #wv "], %[a3]\n\t"
#define EK_DW_ASM_COLUMN(wo, next)                                                                  \
  "ldr %[xa], [%[x], #0]\n\tldr %[wa], [%[w], #" #wo "]\n\t"                                       \
  "ldr %[xb], [%[x], #4]\n\tldr %[wb], [%[w], #" #wo "+4]\n\t"                                     \
  EK_DW_ASM_TAP(xa, wa) EK_DW_ASM_TAP(xb, wb)                                                      \
  "ldr %[xa], [%[x], #8]\n\tldr %[wa], [%[w], #" #wo "+8]\n\t" next                                \
  EK_DW_ASM_TAP(xa, wa)
#define EK_DW_ASM_RQ(a, j)                                                                          \
  "ldr %[t0], [%[xb], #" #j "*8+4]\n\tldr %[t1], %[k]\n\tldrsb %[wa], [%[wb], #" #j "]\n\t"        \
  "lsl %[t1], %[t1], %[wa]\n\tadd %[t1], %[t1], %[" #a "], asr #31\n\tlsl %[" #a "], %[" #a "], #1\n\t" \
  "smmlar %[" #a "], %[" #a "], %[t0], %[t1]\n\t"                                                 \
  "asr %[" #a "], %[" #a "], %[wa]\n\tssat %[" #a "], #8, %[" #a "], asr #1\n\t"
  __asm__ volatile("1:\n\t"
                   "ldr %[t0], %[qp]\n\tldr %[a0], [%[t0], #0]\n\tldr %[a1], [%[t0], #8]\n\t"
                   "ldr %[a2], [%[t0], #16]\n\tldr %[a3], [%[t0], #24]\n\t"
                   EK_DW_ASM_COLUMN(0, "add %[x], %[cs]\n\t") EK_DW_ASM_COLUMN(12, "add %[x], %[cs]\n\t")
                   EK_DW_ASM_COLUMN(24, "")
                   "ldr %[xb], %[qp]\n\tldr %[wb], %[sh]\n\t"
                   EK_DW_ASM_RQ(a0, 0) EK_DW_ASM_RQ(a1, 1) EK_DW_ASM_RQ(a2, 2) EK_DW_ASM_RQ(a3, 3)
                   "bfi %[a0], %[a1], #8, #8\n\tbfi %[a0], %[a2], #16, #8\n\tbfi %[a0], %[a3], #24, #8\n\t"
                   "ldr %[t1], %[dst]\n\tstr %[a0], [%[t1]], #4\n\t"
                   "adds %[xb], #32\n\tadds %[wb], #4\n\tstr %[t1], %[dst]\n\tstr %[xb], %[qp]\n\tstr %[wb], %[sh]\n\t"
                   "ldr %[t0], %[gsz]\n\tsub %[x], %[x], %[cs], lsl #1\n\tadd %[x], %[t0]\n\tadds %[w], #36\n\t"
                   "ldr %[t0], %[end]\n\tcmp %[t1], %[t0]\n\tblo 1b"
                   : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x] "+r"(x), [w] "+r"(w),
                     [xa] "=&r"(xa), [wa] "=&r"(wa), [xb] "=&r"(xb), [wb] "=&r"(wb), [t0] "=&r"(t0),
                     [t1] "=&r"(t1), [qp] "+m"(qp), [sh] "+m"(sh), [dst] "+m"(dst)
                   : [cs] "r"(col_step), [end] "m"(end), [gsz] "m"(gsz), [k] "m"(k)
                   : "cc", "memory");
#undef EK_DW_ASM_RQ
#undef EK_DW_ASM_COLUMN
#undef EK_DW_ASM_TAP
}
#endif

#if EK_ASM
/* Two neighbouring output pixels (stride 1, no dilation) of a 3x3 depthwise layer with ek_rq mode 2, every full
 * group of 4 channels, in one assembly function (it needs all 14 registers: 8 accumulators, 2 pointers, 4
 * temporaries): per tap one filter word is loaded and sign-extended once for both pixels (whose inputs lie 12
 * bytes apart in the window); then per channel the constants are loaded once for both pixels, and
 * h - (h < 0) + round = SMMLAR(2 acc, m, round + (acc >> 31)) (acc < 0 exactly when h < 0, or h = 0, where
 * the -1 cannot change the shifted result), shifted, SSAT, packed with BFI and stored as one word per pixel
 * (the lower clamp is ek_clamp_lo's, after the layer). */
typedef struct {
  const int8_t *x;     /* the window at group 0 of the first pixel */
  const int8_t *w;     /* the filter at group 0 */
  const int32_t *qp;
  const int8_t *sh;
  int8_t *dst;         /* the first pixel's outputs; the second's at dst + step */
  int32_t step;
  int8_t *end;         /* dst + 4 * full groups */
  int32_t gsz;         /* window bytes per group */
  int32_t k;           /* 2 out_offset + 1: the rounding constant is k << s */
} ek_dw2_t;

void ek_dw3x3_q8_2px(const ek_dw2_t *a);

#define EK_S(x) #x
#define EK_DW2_TAP(o, o1)                                                                           \
  "ldr r11, [r9, #" EK_S(o) "]\n\tldr r10, [r8, #" EK_S(o) "]\n\t"                                 \
  "sxtb16 lr, r11\n\tsxtb16 r11, r11, ror #8\n\tsxtb16 r12, r10\n\tsxtb16 r10, r10, ror #8\n\t"    \
  "smlabb r0, r12, lr, r0\n\tsmlatt r2, r12, lr, r2\n\tsmlabb r1, r10, r11, r1\n\t"                 \
  "smlatt r3, r10, r11, r3\n\tldr r10, [r8, #" EK_S(o1) "]\n\t"                                    \
  "sxtb16 r12, r10\n\tsxtb16 r10, r10, ror #8\n\t"                                                  \
  "smlabb r4, r12, lr, r4\n\tsmlatt r6, r12, lr, r6\n\tsmlabb r5, r10, r11, r5\n\t"                 \
  "smlatt r7, r10, r11, r7\n\t"
#define EK_DW2_RQ(j, qm, a, b)                                                                      \
  "ldr r10, [r8, #" EK_S(qm) "]\n\tldr r11, [sp, #32]\n\tldrsb r12, [r9, #" EK_S(j) "]\n\t"         \
  "lsl r11, r11, r12\n\t"                                                                          \
  "add lr, r11, " a ", asr #31\n\tlsl " a ", " a ", #1\n\tsmmlar " a ", " a ", r10, lr\n\t"         \
  "add lr, r11, " b ", asr #31\n\tlsl " b ", " b ", #1\n\tsmmlar " b ", " b ", r10, lr\n\t"         \
  "asr " a ", " a ", r12\n\tasr " b ", " b ", r12\n\tssat " a ", #8, " a ", asr #1\n\t"            \
  "ssat " b ", #8, " b ", asr #1\n\t"
__asm__(".pushsection .text.ek_dw3x3_q8_2px,\"ax\",%progbits\n\t.syntax unified\n\t.thumb\n\t.align 2\n\t"
        ".type ek_dw3x3_q8_2px, %function\n\t.thumb_func\n"
        "ek_dw3x3_q8_2px:\n\t"
        "push {r4-r11, lr}\n\tsub sp, #36\n\t"
        "ldr r1, [r0, #8]\n\tldr r2, [r0, #12]\n\tldr r3, [r0, #16]\n\tldr r4, [r0, #20]\n\t"
        "ldr r5, [r0, #24]\n\tldr r6, [r0, #28]\n\tldr r8, [r0, #0]\n\tldr r9, [r0, #4]\n\t"
        "ldr r7, [r0, #32]\n\tstr r7, [sp, #32]\n\t"
        "stmia sp, {r1-r6}\n"  /* [sp]: qp, sh, dst, step, end, gsz; x, w saved at 24, 28; k at 32 */
        "1:\n\t"
        "ldr r12, [sp, #0]\n\tldr r0, [r12, #0]\n\tldr r1, [r12, #8]\n\tldr r2, [r12, #16]\n\t"
        "ldr r3, [r12, #24]\n\tldr r4, [r12, #0]\n\tldr r5, [r12, #8]\n\tldr r6, [r12, #16]\n\t"
        "ldr r7, [r12, #24]\n\t" /* loads, not MOVs: one run with the first tap's */
        EK_DW2_TAP(0, 12) EK_DW2_TAP(4, 16) EK_DW2_TAP(8, 20) EK_DW2_TAP(12, 24) EK_DW2_TAP(16, 28)
        EK_DW2_TAP(20, 32) EK_DW2_TAP(24, 36) EK_DW2_TAP(28, 40) EK_DW2_TAP(32, 44)
        "str r8, [sp, #24]\n\tstr r9, [sp, #28]\n\tldr r8, [sp, #0]\n\tldr r9, [sp, #4]\n\t"
        EK_DW2_RQ(0, 4, "r0", "r4") EK_DW2_RQ(1, 12, "r1", "r5") EK_DW2_RQ(2, 20, "r2", "r6")
        EK_DW2_RQ(3, 28, "r3", "r7")
        "bfi r0, r1, #8, #8\n\tbfi r0, r2, #16, #8\n\tbfi r0, r3, #24, #8\n\t"
        "bfi r4, r5, #8, #8\n\tbfi r4, r6, #16, #8\n\tbfi r4, r7, #24, #8\n\t"
        "ldr r11, [sp, #8]\n\tldr r12, [sp, #12]\n\t"
        "adds r8, #32\n\tadds r9, #4\n\t"
        "str r4, [r11, r12]\n\tstr r0, [r11], #4\n\tstr r11, [sp, #8]\n\tstr r8, [sp, #0]\n\tstr r9, [sp, #4]\n\t"
        "ldr r8, [sp, #24]\n\tldr r9, [sp, #28]\n\tldr r10, [sp, #20]\n\tldr r12, [sp, #16]\n\t"
        "add r8, r10\n\tadds r9, #36\n\tcmp r11, r12\n\tblo 1b\n\t"
        "add sp, #36\n\tpop {r4-r11, pc}\n\t"
        ".size ek_dw3x3_q8_2px, .-ek_dw3x3_q8_2px\n\t.popsection");
#undef EK_DW2_RQ
#undef EK_DW2_TAP
#undef EK_S
#endif

/* Groups g.. of one output pixel (x: its window at group 0) in C (or Helium), from the bias to the output. With
 * the assembly kernels it only takes leftovers (a last partial group, other shapes), so it is not inlined. */
EK_LEFTOVER void ek_dw_groups(const ek_mm_t *p, const int8_t *x, int32_t g, int8_t *dst, int32_t gsz, int32_t tap_col,
                            int mode) {
  const int32_t in_c = p->in_c, kh = p->k_h, kw = p->k_w, groups = (in_c + 3) / 4, wstep = kh * kw * 4;
  const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int8_t *sh = p->shift, *w = p->filter + g * wstep;
  const int32_t *qp = p->qp + 8 * g;
  for (x += g * gsz; g < groups; ++g, x += gsz, w += wstep, qp += 8) {
    const int32_t c = 4 * g;
#if EK_MVE
    int32_t acc[4] = {qp[0], qp[2], qp[4], qp[6]}, kx, ky;
    int32x4_t v = vld1q_s32(acc); /* the folded biases */
    const int8_t *xk = x, *wk = w;
    for (kx = 0; kx < kw; ++kx, xk += tap_col) {
      for (ky = 0; ky < kh; ++ky, wk += 4) v = vaddq_s32(v, vmulq_s32(vldrbq_s32(xk + 4 * ky), vldrbq_s32(wk)));
    }
    if (mode != 0 && c + 4 <= in_c) { /* the four channels' requantization as vectors too */
      ek_rq4_mve(v, vldrwq_gather_shifted_offset_s32(qp, vidupq_n_u32(1, 2)), vldrbq_s32(sh + c), oo, lo, hi,
                 dst + c);
      continue;
    }
    vst1q_s32(acc, v);
#else
    int32_t acc[4];
    acc[0] = qp[0];
    acc[1] = qp[2];
    acc[2] = qp[4];
    acc[3] = qp[6];
    ek_dw_group(x, w, kh, kw, tap_col, acc);
#endif
    if (c + 4 <= in_c) {
      dst[c] = ek_rq(acc[0], qp, sh[c], oo, lo, hi, mode);
      dst[c + 1] = ek_rq(acc[1], qp + 2, sh[c + 1], oo, lo, hi, mode);
      dst[c + 2] = ek_rq(acc[2], qp + 4, sh[c + 2], oo, lo, hi, mode);
      dst[c + 3] = ek_rq(acc[3], qp + 6, sh[c + 3], oo, lo, hi, mode);
    } else {
      int32_t k;
      for (k = 0; c + k < in_c; ++k) dst[c + k] = ek_rq(acc[k], qp + 2 * k, sh[c + k], oo, lo, hi, mode);
    }
  }
}

#if EK_MVE
/* Helium depthwise (multiplier 1, dilation 1 across, k_h * k_w <= 16 taps; ek_rq modes 1 / 2). The window holds,
 * per channel, the k_h input rows an output row reads column by column: [channel][column][k_h] (S = span * k_h
 * bytes per channel, padding = the input zero point), so one output's taps are k_w * k_h consecutive bytes and
 * its channel's filter one row of k_h * k_w taps in the same order (layout.py dw_layout, the Helium filter; loaded
 * predicated to the taps, so the lanes past them are zero and the rows need no padding): one VLDRB and
 * one VMLADAVA.S8 per output, the four filter rows of a group held in registers across the row's pixels, and
 * four channels requantized as one vector. Channels are written into the window by byte scatters (VSTRB with
 * 16-bit offsets c * S, 8 channels per store); padding columns are written once a layer (oy < 0). */
/* n channels of value z (pad) or of src into the window at d (channel stride S), 8 channels per scatter. */
EK_INLINE void ek_dw_col_mve(int8_t *d, const int8_t *src, int32_t n, int32_t S, uint16x8_t off, int16x8_t z,
                             int pad) {
  int32_t c;
  for (c = 0; c + 8 <= n; c += 8, d += 8 * S) vstrbq_scatter_offset_s16(d, off, pad ? z : vldrbq_s16(src + c));
  if (c < n) {
    const mve_pred16_t pr = vctp16q((uint32_t)(n - c));
    vstrbq_scatter_offset_p_s16(d, off, pad ? z : vldrbq_z_s16(src + c, pr), pr);
  }
}

static void ek_dw_fill_mve(const ek_mm_t *p, const int8_t *in, int32_t oy, int32_t span, int32_t S) {
  const int32_t in_c = p->in_c, kh = p->k_h, c0 = EK_MIN(p->pad_left, span);
  const int32_t c1 = EK_MAX(EK_MIN(span, p->pad_left + p->in_w), c0);
  const uint16x8_t off = vmulq_n_u16(vidupq_n_u16(0, 1), (uint16_t)S);
  const int16x8_t z = vdupq_n_s16((int16_t)-p->in_offset);
  int32_t ky, col;
  for (ky = 0; ky < kh; ++ky) {
    const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
    int8_t *d = p->scratch + ky;
    if (oy < 0) { /* the padding columns, once a layer */
      for (col = 0; col < c0; ++col) ek_dw_col_mve(d + col * kh, in, in_c, S, off, z, 1);
      for (col = c1; col < span; ++col) ek_dw_col_mve(d + col * kh, in, in_c, S, off, z, 1);
    } else if (iy < 0 || iy >= p->in_h) { /* a padding row */
      for (col = c0; col < c1; ++col) ek_dw_col_mve(d + col * kh, in, in_c, S, off, z, 1);
    } else if ((in_c & 7) == 0) { /* the hot case: whole scatters, the row's columns in one run of input */
      const int8_t *src = in + (iy * p->in_w + c0 - p->pad_left) * in_c;
      const int32_t n8 = in_c >> 3, dstep = 8 * S;
      for (col = c0, d += c0 * kh; col < c1; ++col, d += kh) {
        int8_t *dd = d;
        int32_t k;
        for (k = 0; k < n8; ++k, src += 8, dd += dstep) vstrbq_scatter_offset_s16(dd, off, vldrbq_s16(src));
      }
    } else {
      const int8_t *src = in + (iy * p->in_w + c0 - p->pad_left) * in_c;
      for (col = c0; col < c1; ++col, src += in_c) ek_dw_col_mve(d + col * kh, src, in_c, S, off, z, 0);
    }
  }
}

/* One output row, four channels (c..c + 3) at a time; `tail`: the last group, whose last channel's taps end the
 * window (a predicated load, no read past it) and whose store may be partial. */
EK_INLINE void ek_dw_group_mve(const ek_mm_t *p, const int8_t *x, int32_t S, int32_t c, int8_t *d, int tail) {
  const int32_t in_c = p->in_c, step = p->stride_w * p->k_h, oo = p->out_offset;
  const int32_t taps = p->k_h * p->k_w;
  const int8_t *w = p->filter + taps * c;
  const int32_t *q = p->qp + 2 * c;
  const mve_pred16_t pt = vctp8q((uint32_t)taps), ps = vctp32q((uint32_t)(in_c - c));
  const int8x16_t w0 = vldrbq_z_s8(w, pt), w1 = vldrbq_z_s8(w + taps, pt), w2 = vldrbq_z_s8(w + 2 * taps, pt);
  const int8x16_t w3 = vldrbq_z_s8(w + 3 * taps, pt);
  const int32_t b0 = q[0], b1 = q[2], b2 = q[4], b3 = q[6];
  const int32x4_t m = vldrwq_gather_shifted_offset_s32(q, vidupq_n_u32(1, 2));
  const int32x4_t nr = vmvnq_s32(vldrbq_s32(p->shift + c));
  const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
  int32_t ox;
  for (ox = 0; ox < p->out_w; ++ox, x += step, d += in_c) {
    const int32_t a0 = vmladavaq_s8(b0, vldrbq_s8(x), w0), a1 = vmladavaq_s8(b1, vldrbq_s8(x + S), w1);
    const int32_t a2 = vmladavaq_s8(b2, vldrbq_s8(x + 2 * S), w2);
    const int32_t a3 = vmladavaq_s8(b3, tail ? vldrbq_z_s8(x + 3 * S, pt) : vldrbq_s8(x + 3 * S), w3);
    const int32x4_t v = ek_rq4v(ek_pack4(a0, a1, a2, a3), m, nr, oo, lo, hi);
    if (tail) {
      vstrbq_p_s32(d, v, ps);
    } else {
      vstrbq_s32(d, v);
    }
  }
}

#if EK_MVE_ASM
/* ek_dw_group_mve for `groups` full groups of 4 channels (not the layer's last group: its last channel's 16-byte
 * load would read past the window) in one assembly function: the four VMLADAVA sums need even registers, and the
 * four filter rows stay in q4..q7 across the row; the biases and the clamp bounds wait on the stack (the eight
 * vector registers are taken), the sums go there by one STM and come back as one vector (the narrowing store
 * takes a low base register: r0, free once the sums are stored). */
typedef struct {
  const int8_t *x;       /* the window at the first group's first channel (advances a group a pass) */
  const int8_t *w;       /* its filter rows (taps bytes a channel, loaded predicated: zeros past the taps) */
  const int32_t *qp;     /* (bias, multiplier) per channel */
  const int8_t *sh;      /* s = r - 1 per channel */
  int8_t *d;             /* the row's output at the first group's channel */
  int32_t S, step, in_c, out_w, groups; /* window bytes a channel, a pixel; output pixel step; pixels; groups */
  int32_t oo, lo, hi;    /* output offset, activation range */
  int32_t taps;          /* k_h * k_w */
} ek_dwv_t;

void ek_dw_mve_groups(ek_dwv_t *a);
#if EK_DW_R0 /* ek_rq4v's masked -(h < 0): q2 = nr */
#define EK_DWV_NEG "vand q0, q1, q2\n\tvshr.u32 q0, q0, #31\n\t"
#else
#define EK_DWV_NEG "vshr.u32 q0, q1, #31\n\t"
#endif
__asm__(".pushsection .text.ek_dw_mve_groups,\"ax\",%progbits\n\t.syntax unified\n\t.thumb\n\t.align 2\n\t"
        ".type ek_dw_mve_groups, %function\n\t.thumb_func\n"
        "ek_dw_mve_groups:\n\t"
        "push {r4-r11, lr}\n\tvpush {d8-d15}\n\tsub sp, #64\n\tmov r9, r0\n\t"
        "ldr r0, [r9, #44]\n\tvdup.32 q0, r0\n\tvstrw.32 q0, [sp, #32]\n\t"
        "ldr r0, [r9, #48]\n\tvdup.32 q0, r0\n\tvstrw.32 q0, [sp, #48]\n\t"
        "ldr r10, [r9, #24]\n\tldr r11, [r9, #28]\n\tldr lr, [r9, #40]\n"
        "1:\n\t"
        "ldr r1, [r9, #0]\n\tldr r0, [r9, #20]\n\tadd r3, r1, r0\n\tadd r5, r3, r0\n\tadd r7, r5, r0\n\t"
        "add r2, r7, r0\n\tstr r2, [r9, #0]\n\t"
        "ldr r2, [r9, #4]\n\tldr r0, [r9, #52]\n\tadd r4, r2, r0\n\tadd r6, r4, r0\n\tadd r12, r6, r0\n\t"
        "vctp.8 r0\n\tvpstttt\n\tvldrbt.u8 q4, [r2]\n\tvldrbt.u8 q5, [r4]\n\tvldrbt.u8 q6, [r6]\n\t"
        "vldrbt.u8 q7, [r12]\n\tadd r2, r12, r0\n\tstr r2, [r9, #4]\n\t"
        "ldr r2, [r9, #8]\n\tvld20.32 {q2, q3}, [r2]\n\tvld21.32 {q2, q3}, [r2]!\n\tstr r2, [r9, #8]\n\t"
        "vstrw.32 q2, [sp, #16]\n\t"
        "ldr r2, [r9, #12]\n\tvldrb.s32 q2, [r2], #4\n\tstr r2, [r9, #12]\n\tvmvn q2, q2\n\t"
        "ldr r8, [r9, #16]\n\tadds r2, r8, #4\n\tstr r2, [r9, #16]\n\tldr r12, [r9, #32]\n"
        "2:\n\t"
        "vldrb.u8 q0, [r1]\n\tadd r1, r10\n\tvmladav.s8 r0, q0, q4\n\t"
        "vldrb.u8 q0, [r3]\n\tadd r3, r10\n\tvmladav.s8 r2, q0, q5\n\t"
        "vldrb.u8 q0, [r5]\n\tadd r5, r10\n\tvmladav.s8 r4, q0, q6\n\t"
        "vldrb.u8 q0, [r7]\n\tadd r7, r10\n\tvmladav.s8 r6, q0, q7\n\t"
        "stm sp, {r0, r2, r4, r6}\n\tvldrw.u32 q1, [sp]\n\tvldrw.u32 q0, [sp, #16]\n\tvadd.i32 q1, q1, q0\n\t"
        "vqrdmulh.s32 q1, q1, q3\n\t" EK_DWV_NEG "vsub.i32 q1, q1, q0\n\tvrshl.s32 q1, q1, q2\n\t"
        "vadd.i32 q1, q1, lr\n\tvldrw.u32 q0, [sp, #32]\n\tvmax.s32 q1, q1, q0\n\tvldrw.u32 q0, [sp, #48]\n\t"
        "vmin.s32 q1, q1, q0\n\tmov r0, r8\n\tvstrb.32 q1, [r0]\n\tadd r8, r11\n\tsubs r12, #1\n\tbne 2b\n\t"
        "ldr r0, [r9, #36]\n\tsubs r0, #1\n\tstr r0, [r9, #36]\n\tbne 1b\n\t"
        "add sp, #64\n\tvpop {d8-d15}\n\tpop {r4-r11, pc}\n\t"
        ".size ek_dw_mve_groups, .-ek_dw_mve_groups\n\t.popsection");
#undef EK_DWV_NEG
#endif

/* Where ek_dw_q* take the Helium path, as layout.py dw_layout decides when it writes the Helium filter: dilation 1
 * across, at most 16 taps, and at least 16 window bytes a channel (a 16-byte load from any channel but the last
 * then stays inside the window; the last one's is predicated). */
#define EK_DW_MVE(p) \
  ((p)->dil_w == 1 && (p)->k_h * (p)->k_w <= 16 && (((p)->out_w - 1) * (p)->stride_w + (p)->k_w) * (p)->k_h >= 16)

static void ek_dw_mve(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  const int32_t in_c = p->in_c, c4 = (in_c + 3) & ~3, row = p->out_w * in_c, in_row = p->in_w * in_c;
  const int32_t span = (p->out_w - 1) * p->stride_w + p->k_w, S = span * p->k_h;
  const int8_t *in_end = in + p->in_h * in_row;
  int32_t oy, c;
  ek_dw_fill_mve(p, in, -1, span, S);
  for (oy = 0; oy < p->out_h; ++oy) {
    /* the row buffer only when this output row would overwrite input a later row still reads */
    const int32_t next = EK_MIN(EK_MAX((oy + 1) * p->stride_h - p->pad_top, 0), p->in_h);
    int8_t *direct = out + oy * row;
    const int in_place = tmp && direct + row > in + next * in_row && direct < in_end && next < p->in_h;
    int8_t *dst = in_place ? tmp : direct;
    ek_dw_fill_mve(p, in, oy, span, S);
    c = 0;
#if EK_MVE_ASM
    if (c4 > 4) { /* every group but the last */
      ek_dwv_t a;
      a.x = p->scratch;
      a.w = p->filter;
      a.qp = p->qp;
      a.sh = p->shift;
      a.d = dst;
      a.S = S;
      a.step = p->stride_w * p->k_h;
      a.in_c = in_c;
      a.out_w = p->out_w;
      a.groups = (c4 >> 2) - 1;
      a.oo = p->out_offset;
      a.lo = p->act_min;
      a.hi = p->act_max;
      a.taps = p->k_h * p->k_w;
      ek_dw_mve_groups(&a);
      c = c4 - 4;
    }
#else
    for (; c + 4 < c4; c += 4) ek_dw_group_mve(p, p->scratch + c * S, S, c, dst + c, 0);
#endif
    ek_dw_group_mve(p, p->scratch + c * S, S, c, dst + c, 1);
    if (in_place) ek_copy(direct, tmp, row);
  }
}
#endif

#if EK_ASM && EK_DW_R0
/* The channels with s = -1 (TFLite shift 0) of one output row at dst, recomputed from the window after the 3x3
 * assembly (which shifts by s, so it cannot take r = 0) wrote them: with dilation 1 across a channel's 9 taps are
 * every 4th byte of its window (and of its filter, held in registers for the row as halfword pairs for SMLABB /
 * SMLABT); then ek_rqv mode 2, exact (the upper clamp, if any, is ek_dw_q's pass after the layer). A layer has
 * few such channels (effective scale >= 0.5), so this costs little: about 60 cycles an output on the M4 (counted,
 * with the scan of the shifts). */
#define EK_PAIR(lo16, hi16) ((int32_t)(((uint32_t)(lo16) & 0xFFFFu) | ((uint32_t)(hi16) << 16)))
static void ek_dw_r0_row(const ek_mm_t *p, int8_t *dst, int32_t gsz, int32_t px_step) {
  const int32_t in_c = p->in_c, out_w = p->out_w, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  int32_t c;
  for (c = 0; c < in_c; ++c) {
    if (p->shift[c] < 0) {
      const int8_t *w = p->filter + (c >> 2) * 36 + (c & 3), *x = p->scratch + (c >> 2) * gsz + (c & 3);
      const int32_t w01 = EK_PAIR(w[0], w[4]), w23 = EK_PAIR(w[8], w[12]), w45 = EK_PAIR(w[16], w[20]);
      const int32_t w67 = EK_PAIR(w[24], w[28]), w8 = w[32], b = p->qp[2 * c], m = p->qp[2 * c + 1];
      int8_t *d = dst + c;
      const int8_t *end = x + out_w * px_step;
      for (; x < end; x += px_step, d += in_c) {
        int32_t acc = __smlabt(x[4], w01, __smlabb(x[0], w01, b));
        acc = __smlabt(x[12], w23, __smlabb(x[8], w23, acc));
        acc = __smlabt(x[20], w45, __smlabb(x[16], w45, acc));
        acc = __smlabt(x[28], w67, __smlabb(x[24], w67, acc));
        *d = ek_rqv(__smlabb(x[32], w8, acc), m, -1, oo, lo, hi, 2);
      }
    }
  }
}
#undef EK_PAIR
#endif

EK_INLINE void ek_dw_run(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp, int mode) {
  const int32_t in_c = p->in_c, out_w = p->out_w, row = out_w * in_c, kh = p->k_h, kw = p->k_w;
  const int32_t groups = (in_c + 3) / 4, cstep = kh * 4;
  const int32_t span = (out_w - 1) * p->stride_w + (kw - 1) * p->dil_w + 1;
  const int32_t gsz = span * cstep, px_step = p->stride_w * cstep, tap_col = p->dil_w * cstep;
  const int32_t in_row = p->in_w * in_c;
  const int8_t *in_end = in + p->in_h * in_row;
  int32_t oy, ox;
#if EK_ASM
  const int fast = mode == 2 && (EK_DW8_ASM || (kh == 3 && kw == 3 && in_c >= 4 && p->dil_w == 1));
  const int pairs = fast && p->stride_w == 1;
  const int32_t full = fast && EK_DW8_ASM ? groups : in_c >> 2; /* full groups (EK_DW8_ASM: in_c % 4 == 0) */
  ek_dw2_t a2;
  a2.w = p->filter;
  a2.qp = p->qp;
  a2.sh = p->shift;
  a2.step = in_c;
  a2.gsz = gsz;
  a2.k = 2 * p->out_offset + 1;
#endif
  ek_dw_fill(p, in, -1, span, groups);
  for (oy = 0; oy < p->out_h; ++oy) {
    /* the row buffer only when this output row would overwrite input a later row still reads */
    const int32_t next = EK_MIN(EK_MAX((oy + 1) * p->stride_h - p->pad_top, 0), p->in_h);
    int8_t *direct = out + oy * row;
    const int in_place = tmp && direct + row > in + next * in_row && direct < in_end && next < p->in_h;
    int8_t *dst = in_place ? tmp : direct;
    ek_dw_fill(p, in, oy, span, groups);
    for (ox = 0; ox < out_w; ++ox, dst += in_c) {
      const int8_t *x = p->scratch + ox * px_step;
      int32_t g = 0;
#if EK_ASM
      if (pairs && ox + 1 < out_w) { /* pixels ox and ox + 1 */
        a2.x = x;
        a2.dst = dst;
        a2.end = dst + 4 * full;
        ek_dw3x3_q8_2px(&a2);
        if (full < groups) { /* a last, partial group */
          ek_dw_groups(p, x, full, dst, gsz, tap_col, mode);
          ek_dw_groups(p, x + px_step, full, dst + in_c, gsz, tap_col, mode);
        }
        ++ox;
        dst += in_c;
        continue;
      }
      if (fast) { /* the full groups in one loop */
        g = full;
        ek_dw3x3_q8(x, p->filter, tap_col, p->qp, p->shift, dst, g, gsz, 2 * p->out_offset + 1);
      }
#endif
      if (g < groups) ek_dw_groups(p, x, g, dst, gsz, tap_col, mode);
    }
#if EK_ASM && EK_DW_R0
    if (fast) ek_dw_r0_row(p, in_place ? tmp : direct, gsz, px_step);
#endif
    if (in_place) ek_copy(direct, tmp, row);
  }
#if EK_ASM
  if (fast) ek_clamp_lo(out, p->out_h * row, p->act_min);
#endif
}

void ek_dw_q(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
#if EK_MVE
  if (EK_DW_MVE_ALL || EK_DW_MVE(p)) { /* the Helium filter layout (layout.py dw_layout) */
    ek_dw_mve(p, in, out, tmp);
    return;
  }
#endif
#if EK_ASM
  ek_dw_q8(p, in, out, tmp); /* mode 2 (SSAT at 127), then the upper clamp: exactly mode 1 (one copy of the code) */
  ek_clamp_hi(out, p->out_h * p->out_w * p->in_c, p->act_max);
#else
  ek_dw_run(p, in, out, tmp, 1);
#endif
}

void ek_dw_q8(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
#if EK_MVE
  if (EK_DW_MVE_ALL || EK_DW_MVE(p)) { /* the Helium filter layout (layout.py dw_layout) */
    ek_dw_mve(p, in, out, tmp);
    return;
  }
#endif
  ek_dw_run(p, in, out, tmp, 2);
}

/* One function per requantization mode, so a firmware links only the ones its layers use. */
void ek_conv_mm(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_mm_run(p, in, out, tmp, 0); }

void ek_conv_mm_q(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
#if EK_ASM
  ek_conv_mm_q8(p, in, out, tmp); /* mode 2 (SSAT at 127), then the upper clamp: exactly mode 1 (one copy) */
  ek_clamp_hi(out, p->out_h * p->out_w * p->out_c, p->act_max);
#else
  ek_mm_run(p, in, out, tmp, 1);
#endif
}

void ek_conv_mm_q8(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_mm_run(p, in, out, tmp, 2); }


/* General conv: per output pixel the in-bounds taps are found once; along a tap row the input pixels and the
 * filter taps are both contiguous when there is no dilation and no grouping, so a whole row is one dot product. */
void ek_conv2d(const ek_conv_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  const int32_t row = p->out_w * p->out_c;
  const int32_t fic = p->filter_in_c, in_c = p->in_c, in_w = p->in_w, off = p->in_offset;
  const int32_t off2 = (int32_t)(((uint32_t)(uint16_t)off << 16) | (uint16_t)off);
  const int32_t per_group = p->out_c / (in_c / fic);
  const int32_t ksize = p->k_h * p->k_w * fic;
  const int contiguous = p->dil_w == 1 && fic == in_c;
  int32_t oy, ox, oc, ky, kx;
  if (p->kbias) {
    ek_pointwise(p, in, out, tmp);
    return;
  }
  for (oy = 0; oy < p->out_h; ++oy) {
    int8_t *dst = tmp ? tmp : out + oy * row;
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t ky0, ky1;
    ek_taps(iy0, p->dil_h, p->in_h, p->k_h, &ky0, &ky1);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      int32_t kx0, kx1;
      ek_taps(ix0, p->dil_w, in_w, p->k_w, &kx0, &kx1);
      for (oc = 0; oc < p->out_c; ++oc) {
        const int8_t *f = p->filter + oc * ksize;
        const int32_t c0 = (oc / per_group) * fic;
        int32_t acc = p->bias ? p->bias[oc] : 0;
        for (ky = ky0; ky < ky1; ++ky) {
          const int8_t *x = in + ((iy0 + ky * p->dil_h) * in_w + ix0 + kx0 * p->dil_w) * in_c + c0;
          const int8_t *w = f + (ky * p->k_w + kx0) * fic;
          if (contiguous) {
            acc += ek_dot_off(x, w, (kx1 - kx0) * fic, off, off2);
          } else {
            for (kx = kx0; kx < kx1; ++kx, x += p->dil_w * in_c, w += fic) acc += ek_dot_off(x, w, fic, off, off2);
          }
        }
        dst[ox * p->out_c + oc] = ek_out8(acc, p->mult[oc], p->shift[oc], p->out_offset, p->act_min, p->act_max);
      }
    }
    if (tmp) ek_copy(out + oy * row, tmp, row);
  }
}

static int8_t ek_clamp(int32_t v, int32_t lo, int32_t hi) { return (int8_t)EK_MIN(EK_MAX(v, lo), hi); }

/* Four consecutive output channels c..c+3 of a depthwise pixel: add the bias, requantize, clamp, store. The
 * caller's locals are passed (not the params struct) so the inlined code keeps them in registers. */
EK_INLINE void ek_out4(int8_t *d, int32_t c, int32_t a0, int32_t a1, int32_t a2, int32_t a3, const int32_t *bias,
                       const int32_t *mult, const int8_t *shift, int32_t out_offset, int32_t lo, int32_t hi) {
  if (bias) {
    a0 += bias[c];
    a1 += bias[c + 1];
    a2 += bias[c + 2];
    a3 += bias[c + 3];
  }
  d[c] = ek_out8(a0, mult[c], shift[c], out_offset, lo, hi);
  d[c + 1] = ek_out8(a1, mult[c + 1], shift[c + 1], out_offset, lo, hi);
  d[c + 2] = ek_out8(a2, mult[c + 2], shift[c + 2], out_offset, lo, hi);
  d[c + 3] = ek_out8(a3, mult[c + 3], shift[c + 3], out_offset, lo, hi);
}

/* One output pixel of a depthwise conv: x and w point at the first in-bounds tap (channel 0), the taps span
 * ny x nx with strides x_row / w_row between tap rows and x_step / w_step along them. */
EK_INLINE void ek_depthwise_px(const ek_conv_t *p, const int8_t *x, const int8_t *w, int8_t *d, int32_t ny,
                               int32_t nx, int32_t x_row, int32_t w_row, int32_t x_step, int32_t w_step) {
  const int32_t in_c = p->in_c, dm = p->filter_in_c, off = p->in_offset;
  const int32_t out_offset = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int32_t *bias = p->bias, *mult = p->mult;
  const int8_t *shift = p->shift;
  int32_t c = 0, ky, kx;
  if (dm == 1) {
#if EK_DSP
    const int32_t off2 = (int32_t)(((uint32_t)off & 0xFFFFu) | ((uint32_t)off << 16));
    const int32_t x_step2 = 2 * x_step, w_step2 = 2 * w_step;
    for (; c + 4 <= in_c; c += 4) {
      int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      const int8_t *xr = x + c, *wr = w + c;
      /* channels c..c+3 of one tap: (x + offset) per halfword by SXTAB16, then four 16x16 MACs */
#define EK_DW_TAP(xp, wp)                                                                  \
  do {                                                                                     \
    const uint32_t xv_ = ek_ld32(xp), wv_ = ek_ld32(wp);                                   \
    const int32_t xl_ = __sxtab16(off2, (int32_t)xv_), xh_ = ek_sxa13(off2, xv_);          \
    const int32_t wl_ = ek_sx02(wv_), wh_ = ek_sx13(wv_);                                  \
    a0 = __smlabb(xl_, wl_, a0);                                                           \
    a2 = __smlatt(xl_, wl_, a2);                                                           \
    a1 = __smlabb(xh_, wh_, a1);                                                           \
    a3 = __smlatt(xh_, wh_, a3);                                                           \
  } while (0)
      if (nx == 3) { /* the whole row of a 3-wide filter (the interior, for 3x3 kernels) */
        for (ky = 0; ky < ny; ++ky, xr += x_row, wr += w_row) {
          EK_DW_TAP(xr, wr);
          EK_DW_TAP(xr + x_step, wr + w_step);
          EK_DW_TAP(xr + x_step2, wr + w_step2);
        }
      } else {
        for (ky = 0; ky < ny; ++ky, xr += x_row, wr += w_row) {
          const int8_t *xk = xr, *wk = wr;
          for (kx = 0; kx < nx; ++kx, xk += x_step, wk += w_step) EK_DW_TAP(xk, wk);
        }
      }
#undef EK_DW_TAP
      ek_out4(d, c, a0, a1, a2, a3, bias, mult, shift, out_offset, lo, hi);
    }
#endif
    for (; c < in_c; ++c) {
      int32_t acc = bias ? bias[c] : 0;
      for (ky = 0; ky < ny; ++ky) {
        const int8_t *xk = x + ky * x_row + c, *wk = w + ky * w_row + c;
        for (kx = 0; kx < nx; ++kx, xk += x_step, wk += w_step) acc += (*xk + off) * *wk;
      }
      d[c] = ek_out8(acc, mult[c], shift[c], out_offset, lo, hi);
    }
  } else {
    int32_t m;
    for (c = 0; c < in_c; ++c) {
      m = 0;
#if EK_DSP
      for (; m + 4 <= dm; m += 4) { /* one input value, four multipliers: SMLABB / SMLABT on unpacked weights */
        const int32_t oc = c * dm + m;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (ky = 0; ky < ny; ++ky) {
          const int8_t *xk = x + ky * x_row + c, *wk = w + ky * w_row + oc;
          for (kx = 0; kx < nx; ++kx, xk += x_step, wk += w_step) {
            const int32_t xv = *xk + off;
            const uint32_t wv = ek_ld32(wk);
            const int32_t wl = ek_sx02(wv), wh = ek_sx13(wv);
            a0 = __smlabb(xv, wl, a0);
            a2 = __smlabt(xv, wl, a2);
            a1 = __smlabb(xv, wh, a1);
            a3 = __smlabt(xv, wh, a3);
          }
        }
        ek_out4(d, oc, a0, a1, a2, a3, bias, mult, shift, out_offset, lo, hi);
      }
#endif
      for (; m < dm; ++m) {
        const int32_t oc = c * dm + m;
        int32_t acc = bias ? bias[oc] : 0;
        for (ky = 0; ky < ny; ++ky) {
          const int8_t *xk = x + ky * x_row + c, *wk = w + ky * w_row + oc;
          for (kx = 0; kx < nx; ++kx, xk += x_step, wk += w_step) acc += (*xk + off) * *wk;
        }
        d[oc] = ek_out8(acc, mult[oc], shift[oc], out_offset, lo, hi);
      }
    }
  }
}

void ek_depthwise(const ek_conv_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  const int32_t row = p->out_w * p->out_c, in_c = p->in_c, out_c = p->out_c;
  const int32_t x_step = p->dil_w * in_c, w_step = out_c;
  const int32_t x_row = p->dil_h * p->in_w * in_c, w_row = p->k_w * out_c;
  int32_t oy, ox;
  for (oy = 0; oy < p->out_h; ++oy) {
    int8_t *dst = tmp ? tmp : out + oy * row;
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t ky0, ky1;
    ek_taps(iy0, p->dil_h, p->in_h, p->k_h, &ky0, &ky1);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      int32_t kx0, kx1;
      const int8_t *x, *w;
      ek_taps(ix0, p->dil_w, p->in_w, p->k_w, &kx0, &kx1);
      x = in + ((iy0 + ky0 * p->dil_h) * p->in_w + ix0 + kx0 * p->dil_w) * in_c;
      w = p->filter + (ky0 * p->k_w + kx0) * out_c;
      ek_depthwise_px(p, x, w, dst + ox * out_c, ky1 - ky0, kx1 - kx0, x_row, w_row, x_step, w_step);
    }
    if (tmp) ek_copy(out + oy * row, tmp, row);
  }
}

EK_INLINE void ek_pool(const ek_conv_t *p, const int8_t *in, int8_t *out, int8_t *tmp, int average) {
  const int32_t row = p->out_w * p->out_c;
  int32_t oy, ox, c, y, x;
  for (oy = 0; oy < p->out_h; ++oy) {
    int8_t *dst = tmp ? tmp : out + oy * row;
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    const int32_t y0 = EK_MAX(0, -iy0), y1 = EK_MIN(p->k_h, p->in_h - iy0);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      const int32_t x0 = EK_MAX(0, -ix0), x1 = EK_MIN(p->k_w, p->in_w - ix0);
      c = 0;
#if EK_MVE
      if (average && p->k_h * p->k_w <= 256) { /* 8 channels per vector: halfword sums cannot overflow */
        const int32_t count = (y1 - y0) * (x1 - x0), half = count / 2;
        for (; c + 8 <= p->out_c && count > 0; c += 8) {
          int16x8_t sum = vdupq_n_s16(0);
          int16_t v[8];
          int32_t k;
          for (y = y0; y < y1; ++y) {
            const int8_t *px = in + ((iy0 + y) * p->in_w + ix0 + x0) * p->in_c + c;
            for (x = x0; x < x1; ++x, px += p->in_c) sum = vaddq_s16(sum, vldrbq_s16(px));
          }
          vst1q_s16(v, sum);
          for (k = 0; k < 8; ++k) {
            const int32_t a = v[k] > 0 ? (v[k] + half) / count : (v[k] - half) / count;
            dst[ox * p->out_c + c + k] = ek_clamp(a, p->act_min, p->act_max);
          }
        }
      }
#endif
#if EK_DSP && !EK_MVE
      if (average && p->k_h * p->k_w <= 256) { /* 4 channels per word: halfword sums cannot overflow */
        const int32_t count = (y1 - y0) * (x1 - x0), half = count / 2;
        for (; c + 4 <= p->out_c && count > 0; c += 4) {
          int32_t s02 = 0, s13 = 0, k, v[4];
          for (y = y0; y < y1; ++y) {
            const int8_t *px = in + ((iy0 + y) * p->in_w + ix0 + x0) * p->in_c + c;
            for (x = x0; x < x1; ++x, px += p->in_c) {
              const uint32_t w = ek_ld32(px);
              s02 = __sxtab16(s02, (int32_t)w);
              s13 = ek_sxa13(s13, w);
            }
          }
          v[0] = (int16_t)s02;
          v[1] = (int16_t)s13;
          v[2] = s02 >> 16;
          v[3] = s13 >> 16;
          for (k = 0; k < 4; ++k) {
            const int32_t a = v[k] > 0 ? (v[k] + half) / count : (v[k] - half) / count;
            dst[ox * p->out_c + c + k] = ek_clamp(a, p->act_min, p->act_max);
          }
        }
      }
#endif
      for (; c < p->out_c; ++c) {
        int32_t acc = average ? 0 : -128, count = 0;
        for (y = y0; y < y1; ++y) {
          for (x = x0; x < x1; ++x) {
            const int32_t v = in[((iy0 + y) * p->in_w + ix0 + x) * p->in_c + c];
            if (average) acc += v; else acc = EK_MAX(acc, v);
            ++count;
          }
        }
        if (average && count > 0) {
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        dst[ox * p->out_c + c] = ek_clamp(acc, p->act_min, p->act_max);
      }
    }
    if (tmp) ek_copy(out + oy * row, tmp, row);
  }
}

void ek_avgpool(const ek_conv_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_pool(p, in, out, tmp, 1); }

void ek_maxpool(const ek_conv_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_pool(p, in, out, tmp, 0); }

void ek_fully_connected(const ek_fc_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  int32_t b, oc, c;
  int8_t *dst = tmp ? tmp : out;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = in + b * p->in_c;
    for (oc = 0; oc < p->out_c; ++oc) {
      const int8_t *w = p->filter + oc * p->in_c;
      const int32_t ch = p->per_channel ? oc : 0;
      int32_t acc = 0;
      if (p->kbias) {
        acc = p->kbias[oc] + ek_dot(x, w, p->in_c);
      } else {
        for (c = 0; c < p->in_c; ++c) acc += (x[c] + p->in_offset) * (w[c] + p->filter_offset);
        if (p->bias) acc += p->bias[oc];
      }
      acc = ek_requant(acc, p->mult[ch], p->shift[ch]) + p->out_offset;
      dst[b * p->out_c + oc] = ek_clamp(acc, p->act_min, p->act_max);
    }
  }
  if (tmp) ek_copy(out, tmp, p->batches * p->out_c);
}

void ek_mean(const ek_mean_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  int32_t o[4], r[4], lim_o[4], lim_r[4], k, n = 0;
  int8_t *dst = tmp ? tmp : out;
  for (k = 0; k < 4; ++k) {
    lim_o[k] = p->reduce[k] ? 1 : p->dims[k];
    lim_r[k] = p->reduce[k] ? p->dims[k] : 1;
  }
  for (o[0] = 0; o[0] < lim_o[0]; ++o[0])
    for (o[1] = 0; o[1] < lim_o[1]; ++o[1])
      for (o[2] = 0; o[2] < lim_o[2]; ++o[2])
        for (o[3] = 0; o[3] < lim_o[3]; ++o[3]) {
          int32_t sum = 0, v;
          for (r[0] = 0; r[0] < lim_r[0]; ++r[0])
            for (r[1] = 0; r[1] < lim_r[1]; ++r[1])
              for (r[2] = 0; r[2] < lim_r[2]; ++r[2])
                for (r[3] = 0; r[3] < lim_r[3]; ++r[3]) {
                  const int32_t i0 = o[0] + r[0], i1 = o[1] + r[1], i2 = o[2] + r[2], i3 = o[3] + r[3];
                  sum += in[((i0 * p->dims[1] + i1) * p->dims[2] + i2) * p->dims[3] + i3];
                }
          v = ek_requant(sum - p->in_zp * p->count, p->mult, p->shift) + p->out_zp;
          dst[n++] = ek_clamp(v, -128, 127);
        }
  if (tmp) ek_copy(out, tmp, n);
}

static int32_t ek_scale_down(int32_t x, int32_t mult, int32_t shift) {
  return ek_rdbpot(ek_srdhm(x, mult), -shift);
}

void ek_add(const ek_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  int32_t i[4], n = 0;
  for (i[0] = 0; i[0] < p->out_dims[0]; ++i[0])
    for (i[1] = 0; i[1] < p->out_dims[1]; ++i[1])
      for (i[2] = 0; i[2] < p->out_dims[2]; ++i[2])
        for (i[3] = 0; i[3] < p->out_dims[3]; ++i[3]) {
          const int32_t a = in1[i[0] * p->in1_strides[0] + i[1] * p->in1_strides[1] + i[2] * p->in1_strides[2] +
                                i[3] * p->in1_strides[3]] + p->in1_offset;
          const int32_t b = in2[i[0] * p->in2_strides[0] + i[1] * p->in2_strides[1] + i[2] * p->in2_strides[2] +
                                i[3] * p->in2_strides[3]] + p->in2_offset;
          const int32_t sa = ek_scale_down(ek_shl(a, p->left_shift), p->in1_mult, p->in1_shift);
          const int32_t sb = ek_scale_down(ek_shl(b, p->left_shift), p->in2_mult, p->in2_shift);
          const int32_t v = ek_scale_down(sa + sb, p->out_mult, p->out_shift) + p->out_offset;
          out[n++] = ek_clamp(v, p->act_min, p->act_max);
        }
}

/* Rounding right shift by e >= 0 (ties away from zero), as ek_rdbpot, branch-free. */
EK_INLINE int32_t ek_rshift(int32_t x, int32_t e) {
  const int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
  return (x >> e) + ((x & mask) > (mask >> 1) + (int32_t)((uint32_t)x >> 31) ? 1 : 0);
}

#if EK_MVE
/* ek_rshift of 4 lanes: for e >= 1 ties away from zero is VRSHL's round-half-up of x - (x < 0); `neg` is all
 * ones for e >= 1 and zero for e = 0 (no shift, no correction). */
EK_INLINE int32x4_t ek_rshift_mve(int32x4_t x, int32_t e, int32x4_t neg) {
  return vrshlq_n_s32(vaddq_s32(x, vandq_s32(vshrq_n_s32(x, 31), neg)), -e);
}
#endif

/* ADD of two same-shape tensors, one flat loop. TFLite's int8 add: left shift 20 (<= 22 checked when generated),
 * multipliers below one, so |(x + offset) << 20| < 2^28, |a + b| < 2^29, and each ek_srdhm is SMMULR of the
 * doubled value, exactly. */
void ek_add_flat(const ek_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const int32_t n = p->out_dims[0] * p->out_dims[1] * p->out_dims[2] * p->out_dims[3];
  const int32_t ls = p->left_shift + 1, o1 = p->in1_offset, o2 = p->in2_offset;
  const int32_t m1 = p->in1_mult, m2 = p->in2_mult, mo = p->out_mult;
  const int32_t e1 = -p->in1_shift, e2 = -p->in2_shift, eo = -p->out_shift;
  const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  int32_t i = 0;
#if EK_MVE
  if (e1 >= 0 && e2 >= 0 && eo >= 0) { /* 4 elements a vector (TFLite's add shifts right: e >= 0) */
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    const int32x4_t n1 = vdupq_n_s32(e1 ? -1 : 0), n2 = vdupq_n_s32(e2 ? -1 : 0), no = vdupq_n_s32(eo ? -1 : 0);
    for (; i + 4 <= n; i += 4) { /* SMMULR(x << ls, m) is VQRDMULH(x << (ls - 1), m) */
      const int32x4_t xa = vshlq_r_s32(vaddq_n_s32(vldrbq_s32(in1 + i), o1), ls - 1);
      const int32x4_t xb = vshlq_r_s32(vaddq_n_s32(vldrbq_s32(in2 + i), o2), ls - 1);
      const int32x4_t a = ek_rshift_mve(vqrdmulhq_n_s32(xa, m1), e1, n1);
      const int32x4_t b = ek_rshift_mve(vqrdmulhq_n_s32(xb, m2), e2, n2);
      const int32x4_t v = vaddq_n_s32(ek_rshift_mve(vqrdmulhq_n_s32(vaddq_s32(a, b), mo), eo, no), oo);
      vstrbq_s32(out + i, vminq_s32(vmaxq_s32(v, vlo), vhi));
    }
  }
#endif
  for (; i < n; ++i) {
    const int32_t a = ek_rshift(ek_smmulr((int32_t)((uint32_t)(in1[i] + o1) << ls), m1), e1);
    const int32_t b = ek_rshift(ek_smmulr((int32_t)((uint32_t)(in2[i] + o2) << ls), m2), e2);
    int32_t v = ek_rshift(ek_smmulr((a + b) * 2, mo), eo) + oo;
    v = v < lo ? lo : v;
    out[i] = (int8_t)(v > hi ? hi : v);
  }
}

/* Saturating multiply by 2^exponent (exponent > 0), gemmlowp's SaturatingRoundingMultiplyByPOT. */
static int32_t ek_sat_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return ek_shl(x, exponent);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t ek_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;  /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = a + (1 << 28);
  const int32_t x2 = ek_srdhm(x, x);
  const int32_t x3 = ek_srdhm(x2, x);
  const int32_t x4 = ek_srdhm(x2, x2);
  const int32_t x4_over_4 = ek_rdbpot(x4, 2);
  const int32_t poly = ek_rdbpot(ek_srdhm(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + ek_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 given in Q5.26; result Q0.31 (gemmlowp exp_on_negative_values<5>). */
static int32_t ek_exp_negative(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t quarter = 1 << 24;
  const int32_t a_mod = (a & (quarter - 1)) - quarter;
  const int32_t remainder = a_mod - a;
  int32_t result = ek_exp_quarter(ek_sat_shl(a_mod, 5));
  int k;
  for (k = 0; k < 7; ++k) {
    if (remainder & (1 << (24 + k))) result = ek_srdhm(result, multipliers[k]);
  }
  return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, three iterations). */
static int32_t ek_one_over_one_plus(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_den = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x = 1515870810 + ek_srdhm(half_den, -1010580540);
  int k;
  for (k = 0; k < 3; ++k) {
    const int32_t one_minus = (1 << 29) - ek_srdhm(half_den, x);
    x = x + ek_sat_shl(ek_srdhm(x, one_minus), 2);
  }
  return ek_sat_shl(x, 1);
}

static int ek_clz(uint32_t x) {
  int n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) { x <<= 1; ++n; }
  return n;
}

void ek_softmax(const ek_softmax_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  int32_t r, c;
  for (r = 0; r < p->rows; ++r) {
    const int8_t *x = in + r * p->depth;
    int8_t *dst = tmp ? tmp : out + r * p->depth;
    int32_t max_v = -128, sum = 0, scale, bits_over_unit, exponent;
    int headroom;
    for (c = 0; c < p->depth; ++c) max_v = EK_MAX(max_v, x[c]);
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max_v;
      if (diff >= p->diff_min) {
        sum += ek_rdbpot(ek_exp_negative(ek_srdhm(ek_shl(diff, p->left_shift), p->mult)), 12);
      }
    }
    headroom = ek_clz((uint32_t)sum);
    bits_over_unit = 12 - headroom;
    scale = ek_one_over_one_plus((int32_t)(((uint32_t)sum << headroom) - 0x80000000u));
    exponent = bits_over_unit + 31 - 8;
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max_v;
      if (diff >= p->diff_min) {
        const int32_t e = ek_exp_negative(ek_srdhm(ek_shl(diff, p->left_shift), p->mult));
        dst[c] = ek_clamp(ek_rdbpot(ek_srdhm(scale, e), exponent) - 128, -128, 127);
      } else {
        dst[c] = -128;
      }
    }
    if (tmp) ek_copy(out + r * p->depth, tmp, p->depth);
  }
}

void ek_pad(const ek_pad_t *p, const int8_t *in, int8_t *out, int8_t *tmp) {
  const int32_t row = p->out_dims[2] * p->out_dims[3];
  int32_t b, y, x, c;
  for (b = 0; b < p->out_dims[0]; ++b) {
    for (y = 0; y < p->out_dims[1]; ++y) {
      const int32_t ib = b - p->before[0], iy = y - p->before[1];
      const int row_in = ib >= 0 && ib < p->in_dims[0] && iy >= 0 && iy < p->in_dims[1];
      int8_t *dst = tmp ? tmp : out + (b * p->out_dims[1] + y) * row;
      for (x = 0; x < p->out_dims[2]; ++x) {
        const int32_t ix = x - p->before[2];
        for (c = 0; c < p->out_dims[3]; ++c) {
          const int32_t ic = c - p->before[3];
          const int inside = row_in && ix >= 0 && ix < p->in_dims[2] && ic >= 0 && ic < p->in_dims[3];
          dst[x * p->out_dims[3] + c] =
              inside ? in[((ib * p->in_dims[1] + iy) * p->in_dims[2] + ix) * p->in_dims[3] + ic] : (int8_t)p->value;
        }
      }
      if (tmp) ek_copy(out + (b * p->out_dims[1] + y) * row, tmp, row);
    }
  }
}

void ek_activation(const ek_act_t *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    int32_t v = in[i];
    if (p->rescale) v = p->out_offset + ek_requant(v - p->in_offset, p->mult, p->shift);
    out[i] = ek_clamp(v, p->act_min, p->act_max);
  }
}
