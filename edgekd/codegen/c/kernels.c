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

/* Hand-scheduled inline assembly for the hottest DSP loops (GCC-compatible compilers, optimised builds: at -O0
 * the frame pointer leaves too few registers for them); the C paths below stay for every other build. */
#if EK_DSP && !EK_MVE && defined(__OPTIMIZE__)
#define EK_ASM 1
#else
#define EK_ASM 0
#endif

#if defined(__GNUC__)
#define EK_INLINE static inline __attribute__((always_inline))
#else
#define EK_INLINE static inline
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
#if EK_DSP
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

/* Requantize one accumulator (bias included) with its channel's qp = {bias, multiplier, round} and shift sh.
 * mode 0: TFLite's general path (ek_out8; sh is the shift, >0 left). mode 1 / 2 (checked when generated:
 * |acc| < 2^30, sh = r = -shift with 1 <= r <= 22): h = SMMULR(2 acc, m) is (acc m + 2^30) >> 31 exactly, then
 * ((h - (h < 0) + round) >> r), round = 2^(r-1) + out_offset 2^r, is TFLite's rounding shift plus the output
 * offset; mode 2 has act_max = 127, so the upper clamp is SSAT. */
EK_INLINE int8_t ek_rqv(int32_t acc, int32_t m, int32_t rnd, int32_t sh, int32_t out_offset, int32_t lo, int32_t hi,
                        int mode) {
  int32_t h;
  if (mode == 0) return ek_out8(acc, m, sh, out_offset, lo, hi);
  h = ek_smmulr(acc * 2, m);
  h = (h - (int32_t)((uint32_t)h >> 31) + rnd) >> sh;
  h = h < lo ? lo : h;
#if EK_DSP
  if (mode == 2) return (int8_t)__ssat(h, 8);
#endif
  return (int8_t)(h > hi ? hi : h);
}

EK_INLINE int8_t ek_rq(int32_t acc, const int32_t *qp, int32_t sh, int32_t out_offset, int32_t lo, int32_t hi,
                       int mode) {
  return ek_rqv(acc, qp[1], qp[2], sh, out_offset, lo, hi, mode);
}

/* Requantize n channels of accumulators held in memory, buf[k * ps] for pixel a (and buf[k * ps + 1] for pixel
 * b when two), into da[k] (db[k]): one tight loop per layer chunk instead of a few outputs between MAC loops,
 * so the channel's constants are loaded once for both pixels and nothing is spilled. */
#if EK_MVE
/* Four channels of mode 1 / 2 at once: VQRDMULH(acc, m) is SMMULR(2 acc, m) exactly (m >= 0, so it never
 * saturates), then the same rounding shift (VSHL by -r truncates), clamp and a narrowing byte store. */
EK_INLINE void ek_rq4_mve(int32x4_t acc, int32x4_t m, int32x4_t rnd, int32x4_t nr, int32_t lo, int32_t hi,
                          int8_t *d) {
  int32x4_t h = vqrdmulhq_s32(acc, m);
  h = vsubq_s32(h, vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(h), 31)));
  h = vshlq_s32(vaddq_s32(h, rnd), nr);
  vstrbq_s32(d, vminq_s32(vmaxq_s32(h, vdupq_n_s32(lo)), vdupq_n_s32(hi)));
}
#endif

EK_INLINE void ek_rq_run(const int32_t *buf, int32_t n, int32_t ps, const int32_t *qp, const int8_t *sh, int32_t oo,
                         int32_t lo, int32_t hi, int mode, int8_t *da, int8_t *db, int two) {
  int32_t k = 0;
#if EK_MVE
  if (mode != 0) {
    static const uint32_t off_m[4] = {1, 4, 7, 10}, off_r[4] = {2, 5, 8, 11};
    const uint32x4_t om = vld1q_u32(off_m), orr = vld1q_u32(off_r);
    const uint32x4_t ob = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)ps);
    for (; k + 4 <= n; k += 4) {
      const int32_t *q = qp + 3 * k, *b = buf + ps * k;
      const int32x4_t m = vldrwq_gather_shifted_offset_s32(q, om), rnd = vldrwq_gather_shifted_offset_s32(q, orr);
      const int32x4_t nr = vnegq_s32(vldrbq_s32(sh + k));
      ek_rq4_mve(vldrwq_gather_shifted_offset_s32(b, ob), m, rnd, nr, lo, hi, da + k);
      if (two) ek_rq4_mve(vldrwq_gather_shifted_offset_s32(b + 1, ob), m, rnd, nr, lo, hi, db + k);
    }
  }
#endif
  for (; k < n; ++k) {
    const int32_t *q = qp + 3 * k;
    const int32_t m = q[1], rnd = q[2], r = sh[k], a0 = buf[ps * k], a1 = two ? buf[ps * k + 1] : 0;
    da[k] = ek_rqv(a0, m, rnd, r, oo, lo, hi, mode);
    if (two) db[k] = ek_rqv(a1, m, rnd, r, oo, lo, hi, mode);
  }
}

/* The receptive field of output pixel (oy, ox) in filter order (ky, kx, c), out-of-image taps as the input zero
 * point, padded to k4 with it too: `stage` then holds k4 int8 values whose (x + offset) is exact. */
static void ek_gather(const ek_mm_t *p, const int8_t *in, int32_t oy, int32_t ox, int8_t *stage) {
  const int32_t in_c = p->in_c, zp = -p->in_offset, run = p->k_w * in_c;
  const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  int32_t ky, kx, c, n = 0;
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
  int32_t g;
#if EK_DSP
  for (g = 0; g < k4; g += 4, col += 4) {
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

/* Two pixels' columns against two output channels' interleaved filters: 8 SMLAD per 4 taps. On the DSP cores
 * the loop is scheduled by hand (GCC splits the six loads of a group into short runs and keeps fewer values in
 * registers): per group of 4 taps the six words are loaded back to back (the M4 pipelines neighbouring loads),
 * then 4 SXTB16 and 8 SMLAD; four groups per pass. */
#if EK_ASM
#define EK_MM_ASM_GROUP(co, wo)                                                                     \
  "ldr %[x0l], [%[c], #" #co "]\n\tldr %[x0h], [%[c], #" #co "+4]\n\t"                            \
  "ldr %[x1l], [%[c], #" #co "+8]\n\tldr %[x1h], [%[c], #" #co "+12]\n\t"                         \
  "ldr %[wa], [%[w], #" #wo "]\n\tldr %[wb], [%[w], #" #wo "+4]\n\t"                              \
  "sxtb16 %[t], %[wa]\n\tsmlad %[a00], %[x0l], %[t], %[a00]\n\tsmlad %[a10], %[x1l], %[t], %[a10]\n\t" \
  "sxtb16 %[wa], %[wa], ror #8\n\tsmlad %[a00], %[x0h], %[wa], %[a00]\n\t"                       \
  "smlad %[a10], %[x1h], %[wa], %[a10]\n\t"                                                        \
  "sxtb16 %[t], %[wb]\n\tsmlad %[a01], %[x0l], %[t], %[a01]\n\tsmlad %[a11], %[x1l], %[t], %[a11]\n\t" \
  "sxtb16 %[wb], %[wb], ror #8\n\tsmlad %[a01], %[x0h], %[wb], %[a01]\n\t"                       \
  "smlad %[a11], %[x1h], %[wb], %[a11]\n\t"
#define EK_MM_ASM_OPERANDS                                                                          \
  [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [c] "+r"(col), [w] "+r"(w),   \
  [x0l] "=&r"(x0l), [x0h] "=&r"(x0h), [x1l] "=&r"(x1l), [x1h] "=&r"(x1h), [wa] "=&r"(wa), [wb] "=&r"(wb), \
  [t] "=&r"(t)
#endif

EK_INLINE void ek_mm_2x2(const int32_t *col, const int8_t *w, int32_t k4, int32_t b0, int32_t b1, int32_t *acc) {
  int32_t a00 = b0, a01 = b1, a10 = b0, a11 = b1;
  const int32_t *end = col + k4;
#if EK_ASM
  int32_t x0l, x0h, x1l, x1h, wa, wb, t;
  if (col + 16 <= end) {
    const int32_t *last = end - 16;
    __asm__ volatile("1:\n\t" EK_MM_ASM_GROUP(0, 0) EK_MM_ASM_GROUP(16, 8) EK_MM_ASM_GROUP(32, 16)
                     EK_MM_ASM_GROUP(48, 24) "adds %[c], #64\n\tadds %[w], #32\n\tcmp %[c], %[last]\n\tbls 1b"
                     : EK_MM_ASM_OPERANDS : [last] "r"(last) : "cc", "memory");
  }
  if (col + 8 <= end) {
    __asm__ volatile(EK_MM_ASM_GROUP(0, 0) EK_MM_ASM_GROUP(16, 8) "adds %[c], #32\n\tadds %[w], #16"
                     : EK_MM_ASM_OPERANDS : : "memory");
  }
  if (col < end) {
    __asm__ volatile(EK_MM_ASM_GROUP(0, 0) : EK_MM_ASM_OPERANDS : : "memory");
  }
#elif EK_DSP
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
/* One pixel's raw int8 receptive field x (k4 taps) as the MVE column: per 8 taps 16 bytes, each group of 4 taps
 * twice ([x0..3, x0..3, x4..7, x4..7]), the shape of 16 bytes of interleaved filter ([oc0 4 taps, oc1 4 taps,
 * oc0 next 4, oc1 next 4]). After an odd last group the vector runs on into whatever follows: ek_mm_mve
 * loads that block's filter with only 8 lanes live, the others zero, so those bytes never count. */
static void ek_expand_mve(const int8_t *x, int32_t k4, int8_t *col) {
  int32_t g;
  for (g = 0; g < k4; g += 4, col += 8) {
    uint32_t v;
    __builtin_memcpy(&v, x + g, 4);
    __builtin_memcpy(col, &v, 4);
    __builtin_memcpy(col + 4, &v, 4);
  }
}

/* 2 pixels x 2 output channels with VMLADAVA.S8 (16 int8 MACs per instruction): each 16-byte filter vector
 * holds both channels' taps, so it is split by masks (VAND) into one per channel. The input offset is in the
 * folded bias. a = [px0 oc0, px0 oc1, px1 oc0, px1 oc1]. */
EK_INLINE void ek_mm_mve(const int8_t *c0, const int8_t *c1, const int8_t *w, int32_t k4, int32_t b0, int32_t b1,
                         int two, int32_t *a) {
  static const int8_t mask[16] = {-1, -1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1, 0, 0, 0, 0};
  const int8x16_t ma = vldrbq_s8(mask);
  const int8x16_t mb = vmvnq_s8(ma);
  int32_t a00 = b0, a01 = b1, a10 = b0, a11 = b1, t;
  for (t = 0; t < k4; t += 8, c0 += 16, c1 += 16, w += 16) {
    int8x16_t wv, x0;
    if (t + 8 <= k4) {
      wv = vldrbq_s8(w);
    } else { /* 4 taps left: read only the 8 bytes they have */
      wv = vldrbq_z_s8(w, vctp8q(8));
    }
    x0 = vldrbq_s8(c0);
    a00 = vmladavaq_s8(a00, x0, vandq_s8(wv, ma));
    a01 = vmladavaq_s8(a01, x0, vandq_s8(wv, mb));
    if (two) {
      const int8x16_t x1 = vldrbq_s8(c1);
      a10 = vmladavaq_s8(a10, x1, vandq_s8(wv, ma));
      a11 = vmladavaq_s8(a11, x1, vandq_s8(wv, mb));
    }
  }
  a[0] = a00;
  a[1] = a01;
  a[2] = a10;
  a[3] = a11;
}
#endif

#if EK_ASM
/* Two pixels x every full pair of output channels with ek_rq mode 2, in one hand-scheduled loop (k4 a multiple
 * of 8): per pair the folded biases, the 2x2 product of ek_mm_2x2 (four groups per pass, then two), the four
 * requantizations sharing each channel's constants, and per pixel the two outputs packed (BFI), clamped below by
 * SSUB8 + SEL and stored as one halfword. Table and output pointers live on the stack between pairs. */
EK_INLINE void ek_mm_2x2_q8(const int32_t *col, const int8_t *w, int32_t k4, const int32_t *qp, const int8_t *sh,
                            int8_t *da, int8_t *db, int32_t pairs, uint32_t lo4) {
  int32_t a00, a01, a10, a11, x0l, x0h, x1l, x1h, wa, wb, t, c;
  const int32_t *last32 = col + k4 - 32, *last16 = col + k4 - 16, *end = col + k4;
  int8_t *da_end = da + 2 * pairs;
#define EK_MM_RQ(a, b, j)                                                                           \
  "ldr %[x0l], [%[c], #" #j "*12+4]\n\tldr %[x0h], [%[c], #" #j "*12+8]\n\tldrsb %[x1l], [%[wb], #" #j "]\n\t" \
  "lsl %[" #a "], %[" #a "], #1\n\tlsl %[" #b "], %[" #b "], #1\n\t"                               \
  "smmulr %[" #a "], %[" #a "], %[x0l]\n\tsmmulr %[" #b "], %[" #b "], %[x0l]\n\t"                 \
  "sub %[" #a "], %[" #a "], %[" #a "], lsr #31\n\tsub %[" #b "], %[" #b "], %[" #b "], lsr #31\n\t" \
  "add %[" #a "], %[" #a "], %[x0h]\n\tadd %[" #b "], %[" #b "], %[x0h]\n\t"                       \
  "asr %[" #a "], %[" #a "], %[x1l]\n\tasr %[" #b "], %[" #b "], %[x1l]\n\t"                       \
  "ssat %[" #a "], #8, %[" #a "]\n\tssat %[" #b "], #8, %[" #b "]\n\t"
  __asm__ volatile("1:\n\t"
                   "ldr %[t], %[qp]\n\tldr %[a00], [%[t], #0]\n\tldr %[a01], [%[t], #12]\n\t"
                   "ldr %[c], %[col]\n\tmov %[a10], %[a00]\n\tmov %[a11], %[a01]\n\t"
                   "ldr %[t], %[last32]\n\tcmp %[c], %[t]\n\tbhi 5f\n"
                   "2:\n\t" EK_MM_ASM_GROUP(0, 0) EK_MM_ASM_GROUP(16, 8) EK_MM_ASM_GROUP(32, 16)
                   EK_MM_ASM_GROUP(48, 24) EK_MM_ASM_GROUP(64, 32) EK_MM_ASM_GROUP(80, 40) EK_MM_ASM_GROUP(96, 48)
                   EK_MM_ASM_GROUP(112, 56) "adds %[c], #128\n\tadds %[w], #64\n\tldr %[t], %[last32]\n\t"
                   "cmp %[c], %[t]\n\tbls 2b\n"
                   "5:\n\tldr %[t], %[last16]\n\tcmp %[c], %[t]\n\tbhi 3f\n\t"
                   EK_MM_ASM_GROUP(0, 0) EK_MM_ASM_GROUP(16, 8) EK_MM_ASM_GROUP(32, 16) EK_MM_ASM_GROUP(48, 24)
                   "adds %[c], #64\n\tadds %[w], #32\n"
                   "3:\n\tldr %[t], %[end]\n\tcmp %[c], %[t]\n\tbhs 4f\n\t"
                   EK_MM_ASM_GROUP(0, 0) EK_MM_ASM_GROUP(16, 8) "adds %[c], #32\n\tadds %[w], #16\n"
                   "4:\n\tldr %[c], %[qp]\n\tldr %[wb], %[sh]\n\t"
                   EK_MM_RQ(a00, a10, 0) EK_MM_RQ(a01, a11, 1)
                   "bfi %[a00], %[a01], #8, #8\n\tbfi %[a10], %[a11], #8, #8\n\tldr %[t], %[lo4]\n\t"
                   "ssub8 %[x0l], %[a00], %[t]\n\tsel %[a00], %[a00], %[t]\n\t"
                   "ssub8 %[x0l], %[a10], %[t]\n\tsel %[a10], %[a10], %[t]\n\t"
                   "adds %[c], #24\n\tadds %[wb], #2\n\tstr %[c], %[qp]\n\tstr %[wb], %[sh]\n\t"
                   "ldr %[t], %[da]\n\tldr %[x1h], %[db]\n\tstrh %[a00], [%[t]], #2\n\tstrh %[a10], [%[x1h]], #2\n\t"
                   "str %[t], %[da]\n\tstr %[x1h], %[db]\n\t"
                   "ldr %[x0l], %[da_end]\n\tcmp %[t], %[x0l]\n\tblo 1b"
                   : [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11), [c] "=&r"(c),
                     [w] "+r"(w), [x0l] "=&r"(x0l), [x0h] "=&r"(x0h), [x1l] "=&r"(x1l), [x1h] "=&r"(x1h),
                     [wa] "=&r"(wa), [wb] "=&r"(wb), [t] "=&r"(t), [qp] "+m"(qp), [sh] "+m"(sh),
                     [da] "+m"(da), [db] "+m"(db)
                   : [col] "m"(col), [last32] "m"(last32), [last16] "m"(last16), [end] "m"(end), [lo4] "m"(lo4), [da_end] "m"(da_end)
                   : "cc", "memory");
#undef EK_MM_RQ
}
#endif

/* Output channels per requantization pass (even: channel pairs never straddle two chunks). */
#define EK_RQ_CHUNK 32

EK_INLINE void ek_mm_channels(const ek_mm_t *p, const int32_t *col, int8_t *da, int8_t *db, int two, int mode) {
  const int32_t k4 = p->k4, out_c = p->out_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int8_t *w = p->filter, *sh = p->shift;
  const int32_t *qp = p->qp;
  int32_t oc, acc[4];
#if EK_MVE
  const int8_t *c0 = (const int8_t *)col, *c1 = c0 + 2 * k4;
  for (oc = 0; oc < out_c; oc += EK_RQ_CHUNK) {
    const int32_t n = EK_MIN(EK_RQ_CHUNK, out_c - oc);
    int32_t buf[2 * EK_RQ_CHUNK], k;
    for (k = 0; k < n; k += 2, w += 2 * k4) {
      const int32_t *q = qp + 3 * (oc + k);
      ek_mm_mve(c0, c1, w, k4, q[0], k + 1 < n ? q[3] : 0, two, acc);
      buf[2 * k] = acc[0];
      buf[2 * k + 1] = acc[2];
      buf[2 * k + 2] = acc[1];
      buf[2 * k + 3] = acc[3];
    }
    ek_rq_run(buf, n, 2, qp + 3 * oc, sh + oc, oo, lo, hi, mode, da + oc, db + oc, two);
  }
  return;
#endif
  oc = 0;
#if EK_ASM
  if (mode == 2 && two && (k4 & 7) == 0 && out_c >= 2) { /* every full pair of channels in one loop */
    const int32_t pairs = out_c >> 1;
    const uint32_t lo4 = (uint32_t)(uint8_t)(int8_t)EK_MAX(lo, -128) * 0x01010101u;
    ek_mm_2x2_q8(col, w, k4, qp, sh, da, db, pairs, lo4);
    oc = 2 * pairs;
    w += oc * k4;
  }
#endif
  if (!two) { /* one pixel (a fully connected layer, an odd last pixel): each pair straight to its outputs */
    for (; oc + 2 <= out_c; oc += 2, w += 2 * k4) {
      const int32_t *q = qp + 3 * oc;
      ek_mm_1x2(col, w, k4, q[0], q[3], acc);
      da[oc] = ek_rq(acc[0], q, sh[oc], oo, lo, hi, mode);
      da[oc + 1] = ek_rq(acc[1], q + 3, sh[oc + 1], oo, lo, hi, mode);
    }
    if (oc < out_c) { /* the odd channel's partner is a zero filter */
      ek_mm_1x2(col, w, k4, qp[3 * oc], 0, acc);
      da[oc] = ek_rq(acc[0], qp + 3 * oc, sh[oc], oo, lo, hi, mode);
    }
    return;
  }
  for (; oc < out_c; oc += EK_RQ_CHUNK) { /* accumulators of a chunk of channels, then its outputs */
    const int32_t n = EK_MIN(EK_RQ_CHUNK, out_c - oc);
    int32_t buf[2 * EK_RQ_CHUNK], k;
    for (k = 0; k + 2 <= n; k += 2, w += 2 * k4) {
      const int32_t *q = qp + 3 * (oc + k);
      ek_mm_2x2(col, w, k4, q[0], q[3], acc);
      buf[2 * k] = acc[0];
      buf[2 * k + 1] = acc[2];
      buf[2 * k + 2] = acc[1];
      buf[2 * k + 3] = acc[3];
    }
    if (k < n) { /* the odd last channel's partner is a zero filter */
      ek_mm_2x2(col, w, k4, qp[3 * (oc + k)], 0, acc);
      buf[2 * k] = acc[0];
      buf[2 * k + 1] = acc[2];
      w += 2 * k4;
    }
    ek_rq_run(buf, n, 2, qp + 3 * oc, sh + oc, oo, lo, hi, mode, da + oc, db + oc, two);
  }
}

/* Output pixels a and b (when two) of a matrix-product layer. */
EK_INLINE void ek_mm_pixels(const ek_mm_t *p, const int8_t *in, int32_t a, int32_t b, int two, int8_t *da,
                            int8_t *db, int mode) {
  const int32_t k4 = p->k4, out_w = p->out_w;
  const int32_t ay = a / out_w, ax = a % out_w, by = b / out_w, bx = b % out_w;
  int8_t *stage = p->scratch;
  int32_t *col = (int32_t *)(void *)(((uintptr_t)(p->scratch + k4) + 3u) & ~(uintptr_t)3u);
#if EK_MVE
  if (p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0 && p->in_c == k4) {
    ek_expand_mve(in + (ay * p->stride_h * p->in_w + ax * p->stride_w) * k4, k4, (int8_t *)col);
    if (two) ek_expand_mve(in + (by * p->stride_h * p->in_w + bx * p->stride_w) * k4, k4, (int8_t *)col + 2 * k4);
  } else {
    ek_gather(p, in, ay, ax, stage);
    ek_expand_mve(stage, k4, (int8_t *)col);
    if (two) {
      ek_gather(p, in, by, bx, stage);
      ek_expand_mve(stage, k4, (int8_t *)col + 2 * k4);
    }
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

/* Pixels in pairs in raster order (a pair may span two rows); an odd last pixel goes alone. With a row buffer
 * (two rows, used in turn) each output row is copied out once complete, so the output may overlap the input. */
EK_INLINE void ek_mm_run(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp, int mode) {
  const int32_t out_w = p->out_w, out_c = p->out_c, row = out_w * out_c, n = out_w * p->out_h;
  int32_t k, copied = 0;
  for (k = 0; k < n; k += 2) {
    const int two = k + 1 < n;
    int8_t *da = tmp ? tmp + ((k / out_w) & 1) * row + (k % out_w) * out_c : out + k * out_c;
    int8_t *db = tmp ? tmp + (((k + 1) / out_w) & 1) * row + ((k + 1) % out_w) * out_c : out + (k + 1) * out_c;
    if (two) { /* two as a constant in each copy: the requantization loop is specialised */
      ek_mm_pixels(p, in, k, k + 1, 1, da, db, mode);
    } else {
      ek_mm_pixels(p, in, k, k, 0, da, da, mode);
    }
    if (tmp) {
      for (; copied < p->out_h && (copied + 1) * out_w <= k + 1 + two; ++copied) {
        ek_copy(out + copied * row, tmp + (copied & 1) * row, row);
      }
    }
  }
}

/* Depthwise conv, one filter per channel (multiplier 1), with the SMMULR requantization (ek_rq modes 1, 2).
 * Per output row the k_h input rows it reads are copied into `scratch` with their padding (the input zero point,
 * so the input offset folds exactly into the bias, qp[0]) and regrouped by 4 channels: [column][group][k_h][4].
 * Every output pixel then has the same in-bounds window, and a group's taps under one filter column are
 * consecutive words. The filter is laid out at generation time to match, [group][k_w][k_h][4], so a group's
 * whole filter is consecutive words too. Channels are padded to a multiple of 4 with zero weights. */
static void ek_dw_fill(const ek_mm_t *p, const int8_t *in, int32_t oy, int32_t span, int32_t groups) {
  const int32_t in_c = p->in_c, kh = p->k_h, gstep = kh * 4, zp = -p->in_offset;
  const uint32_t zp4 = (uint32_t)(uint8_t)zp * 0x01010101u;
  int32_t ky, col, g;
  for (ky = 0; ky < kh; ++ky) {
    const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
    int8_t *dst = p->scratch + ky * 4;
    for (col = 0; col < span; ++col, dst += groups * gstep) {
      const int32_t ix = col - p->pad_left;
      int8_t *d = dst;
      if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
        for (g = 0; g < groups; ++g, d += gstep) __builtin_memcpy(d, &zp4, 4);
      } else {
        const int8_t *src = in + (iy * p->in_w + ix) * in_c;
        const int32_t full = in_c >> 2;
        for (g = 0; g + 4 <= full; g += 4, d += 4 * gstep, src += 16) { /* loads, then stores, in runs */
          uint32_t v0, v1, v2, v3;
          __builtin_memcpy(&v0, src, 4);
          __builtin_memcpy(&v1, src + 4, 4);
          __builtin_memcpy(&v2, src + 8, 4);
          __builtin_memcpy(&v3, src + 12, 4);
          __builtin_memcpy(d, &v0, 4);
          __builtin_memcpy(d + gstep, &v1, 4);
          __builtin_memcpy(d + 2 * gstep, &v2, 4);
          __builtin_memcpy(d + 3 * gstep, &v3, 4);
        }
        for (; g < full; ++g, d += gstep, src += 4) {
          uint32_t v;
          __builtin_memcpy(&v, src, 4);
          __builtin_memcpy(d, &v, 4);
        }
        if (g < groups) { /* a last, partial group: the missing channels have zero weights */
          int32_t k;
          for (k = 0; k < 4; ++k) d[k] = (int8_t)(k < (in_c & 3) ? src[k] : zp);
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
#if EK_ASM
  if (kh == 3 && kw == 3) { /* scheduled by hand: loads in runs, no spills (GCC spills the accumulators) */
    int32_t xa, wa, xb, wb, t0, t1;
#define EK_DW_ASM_TAP(xv, wv)                                                                       \
  "sxtb16 %[t0], %[" #xv "]\n\tsxtb16 %[t1], %[" #wv "]\n\t"                                       \
  "smlabb %[a0], %[t0], %[t1], %[a0]\n\tsmlatt %[a2], %[t0], %[t1], %[a2]\n\t"                     \
  "sxtb16 %[" #xv "], %[" #xv "], ror #8\n\tsxtb16 %[" #wv "], %[" #wv "], ror #8\n\t"             \
  "smlabb %[a1], %[" #xv "], %[" #wv "], %[a1]\n\tsmlatt %[a3], %[" #xv "], %[" #wv "], %[a3]\n\t"
#define EK_DW_ASM_COLUMN(wo)                                                                        \
  "ldr %[xa], [%[x], #0]\n\tldr %[wa], [%[w], #" #wo "]\n\t"                                       \
  "ldr %[xb], [%[x], #4]\n\tldr %[wb], [%[w], #" #wo "+4]\n\t"                                     \
  EK_DW_ASM_TAP(xa, wa) EK_DW_ASM_TAP(xb, wb)                                                      \
  "ldr %[xa], [%[x], #8]\n\tldr %[wa], [%[w], #" #wo "+8]\n\tadd %[x], %[cs]\n\t"                  \
  EK_DW_ASM_TAP(xa, wa)
    __asm__(EK_DW_ASM_COLUMN(0) EK_DW_ASM_COLUMN(12) EK_DW_ASM_COLUMN(24)
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [xa] "=&r"(xa),
              [wa] "=&r"(wa), [xb] "=&r"(xb), [wb] "=&r"(wb), [t0] "=&r"(t0), [t1] "=&r"(t1)
            : [w] "r"(w), [cs] "r"(col_step)
            : "memory");
#undef EK_DW_ASM_COLUMN
#undef EK_DW_ASM_TAP
  } else
#endif
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
 * packed into one word (BFI), clamped below by SSUB8 + SEL against lo4 (lo in every byte; SSAT clamped above)
 * and stored at once. The accumulators never leave registers; the table and output pointers live on the
 * stack between groups (every register is taken during the taps). */
EK_INLINE void ek_dw3x3_q8(const int8_t *x, const int8_t *w, int32_t col_step, const int32_t *qp, const int8_t *sh,
                           int8_t *dst, int32_t groups, uint32_t lo4) {
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
  "ldr %[t0], [%[xb], #" #j "*12+4]\n\tldr %[t1], [%[xb], #" #j "*12+8]\n\tldrsb %[wa], [%[wb], #" #j "]\n\t" \
  "lsl %[" #a "], %[" #a "], #1\n\tsmmulr %[" #a "], %[" #a "], %[t0]\n\t"                         \
  "sub %[" #a "], %[" #a "], %[" #a "], lsr #31\n\tadd %[" #a "], %[" #a "], %[t1]\n\t"            \
  "asr %[" #a "], %[" #a "], %[wa]\n\tssat %[" #a "], #8, %[" #a "]\n\t"
  __asm__ volatile("1:\n\t"
                   "ldr %[t0], %[qp]\n\tldr %[a0], [%[t0], #0]\n\tldr %[a1], [%[t0], #12]\n\t"
                   "ldr %[a2], [%[t0], #24]\n\tldr %[a3], [%[t0], #36]\n\t"
                   EK_DW_ASM_COLUMN(0, "add %[x], %[cs]\n\t") EK_DW_ASM_COLUMN(12, "add %[x], %[cs]\n\t")
                   EK_DW_ASM_COLUMN(24, "")
                   "ldr %[xb], %[qp]\n\tldr %[wb], %[sh]\n\t"
                   EK_DW_ASM_RQ(a0, 0) EK_DW_ASM_RQ(a1, 1) EK_DW_ASM_RQ(a2, 2) EK_DW_ASM_RQ(a3, 3)
                   "bfi %[a0], %[a1], #8, #8\n\tbfi %[a0], %[a2], #16, #8\n\tbfi %[a0], %[a3], #24, #8\n\t"
                   "ldr %[t0], %[lo4]\n\tldr %[t1], %[dst]\n\t"
                   "ssub8 %[xa], %[a0], %[t0]\n\tsel %[a0], %[a0], %[t0]\n\tstr %[a0], [%[t1]], #4\n\t"
                   "adds %[xb], #48\n\tadds %[wb], #4\n\tstr %[t1], %[dst]\n\tstr %[xb], %[qp]\n\tstr %[wb], %[sh]\n\t"
                   "sub %[x], %[x], %[cs], lsl #1\n\tadds %[x], #12\n\tadds %[w], #36\n\t"
                   "ldr %[t0], %[end]\n\tcmp %[t1], %[t0]\n\tblo 1b"
                   : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x] "+r"(x), [w] "+r"(w),
                     [xa] "=&r"(xa), [wa] "=&r"(wa), [xb] "=&r"(xb), [wb] "=&r"(wb), [t0] "=&r"(t0),
                     [t1] "=&r"(t1), [qp] "+m"(qp), [sh] "+m"(sh), [dst] "+m"(dst)
                   : [cs] "r"(col_step), [lo4] "m"(lo4), [end] "m"(end)
                   : "cc", "memory");
#undef EK_DW_ASM_RQ
#undef EK_DW_ASM_COLUMN
#undef EK_DW_ASM_TAP
}
#endif

EK_INLINE void ek_dw_run(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp, int mode) {
  const int32_t in_c = p->in_c, row = p->out_w * in_c, oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int32_t kh = p->k_h, kw = p->k_w, groups = (in_c + 3) / 4, gstep = kh * 4;
  const int32_t span = (p->out_w - 1) * p->stride_w + (kw - 1) * p->dil_w + 1;
  const int32_t col_bytes = groups * gstep, px_step = p->stride_w * col_bytes, tap_col = p->dil_w * col_bytes;
  const int32_t wstep = kh * kw * 4;
  const int8_t *sh = p->shift;
#if EK_ASM
  const uint32_t lo4 = (uint32_t)(uint8_t)(int8_t)EK_MAX(lo, -128) * 0x01010101u;
#endif
  int32_t oy, ox, g;
  for (oy = 0; oy < p->out_h; ++oy) {
    int8_t *dst = tmp ? tmp : out + oy * row;
    ek_dw_fill(p, in, oy, span, groups);
    for (ox = 0; ox < p->out_w; ++ox, dst += in_c) {
      const int8_t *x = p->scratch + ox * px_step, *w = p->filter;
      const int32_t *qp = p->qp;
      g = 0;
#if EK_ASM
      if (mode == 2 && kh == 3 && kw == 3 && in_c >= 4) { /* the full groups in one loop */
        g = in_c >> 2;
        ek_dw3x3_q8(x, w, tap_col, qp, sh, dst, g, lo4);
        x += g * gstep;
        w += g * wstep;
        qp += 12 * g;
      }
#endif
      for (; g < groups; ++g, x += gstep, w += wstep, qp += 12) {
        const int32_t c = 4 * g;
#if EK_MVE
        int32_t acc[4] = {qp[0], qp[3], qp[6], qp[9]}, kx, ky;
        int32x4_t v = vld1q_s32(acc); /* the folded biases */
        const int8_t *xk = x, *wk = w;
        for (kx = 0; kx < kw; ++kx, xk += tap_col) {
          for (ky = 0; ky < kh; ++ky, wk += 4) v = vaddq_s32(v, vmulq_s32(vldrbq_s32(xk + 4 * ky), vldrbq_s32(wk)));
        }
        if (mode != 0 && c + 4 <= in_c) { /* the four channels' requantization as vectors too */
          static const uint32_t off_m[4] = {1, 4, 7, 10}, off_r[4] = {2, 5, 8, 11};
          ek_rq4_mve(v, vldrwq_gather_shifted_offset_s32(qp, vld1q_u32(off_m)),
                     vldrwq_gather_shifted_offset_s32(qp, vld1q_u32(off_r)), vnegq_s32(vldrbq_s32(sh + c)), lo, hi,
                     dst + c);
          continue;
        }
        vst1q_s32(acc, v);
#else
        int32_t acc[4];
        acc[0] = qp[0];
        acc[1] = qp[3];
        acc[2] = qp[6];
        acc[3] = qp[9];
        ek_dw_group(x, w, kh, kw, tap_col, acc);
#endif
        if (c + 4 <= in_c) {
          dst[c] = ek_rq(acc[0], qp, sh[c], oo, lo, hi, mode);
          dst[c + 1] = ek_rq(acc[1], qp + 3, sh[c + 1], oo, lo, hi, mode);
          dst[c + 2] = ek_rq(acc[2], qp + 6, sh[c + 2], oo, lo, hi, mode);
          dst[c + 3] = ek_rq(acc[3], qp + 9, sh[c + 3], oo, lo, hi, mode);
        } else {
          int32_t k;
          for (k = 0; c + k < in_c; ++k) dst[c + k] = ek_rq(acc[k], qp + 3 * k, sh[c + k], oo, lo, hi, mode);
        }
      }
    }
    if (tmp) ek_copy(out + oy * row, tmp, row);
  }
}

void ek_dw_q(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_dw_run(p, in, out, tmp, 1); }

void ek_dw_q8(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_dw_run(p, in, out, tmp, 2); }

/* One function per requantization mode, so a firmware links only the ones its layers use. */
void ek_conv_mm(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_mm_run(p, in, out, tmp, 0); }

void ek_conv_mm_q(const ek_mm_t *p, const int8_t *in, int8_t *out, int8_t *tmp) { ek_mm_run(p, in, out, tmp, 1); }

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
#if EK_DSP
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

/* ADD of two same-shape tensors, one flat loop. TFLite's int8 add: left shift 20 (<= 22 checked when generated),
 * multipliers below one, so |(x + offset) << 20| < 2^28, |a + b| < 2^29, and each ek_srdhm is SMMULR of the
 * doubled value, exactly. */
void ek_add_flat(const ek_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const int32_t n = p->out_dims[0] * p->out_dims[1] * p->out_dims[2] * p->out_dims[3];
  const int32_t ls = p->left_shift + 1, o1 = p->in1_offset, o2 = p->in2_offset;
  const int32_t m1 = p->in1_mult, m2 = p->in2_mult, mo = p->out_mult;
  const int32_t e1 = -p->in1_shift, e2 = -p->in2_shift, eo = -p->out_shift;
  const int32_t oo = p->out_offset, lo = p->act_min, hi = p->act_max;
  int32_t i;
  for (i = 0; i < n; ++i) {
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
