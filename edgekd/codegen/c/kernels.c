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
  if (dst < src) {
#if EK_DSP
    if (src - dst >= 4) {
      for (; i + 4 <= n; i += 4) {
        const uint32_t v = ek_ld32(src + i);
        __builtin_memcpy(dst + i, &v, 4);
      }
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

static void ek_pool(const ek_conv_t *p, const int8_t *in, int8_t *out, int8_t *tmp, int average) {
  const int32_t row = p->out_w * p->out_c;
  int32_t oy, ox, c, y, x;
  for (oy = 0; oy < p->out_h; ++oy) {
    int8_t *dst = tmp ? tmp : out + oy * row;
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    const int32_t y0 = EK_MAX(0, -iy0), y1 = EK_MIN(p->k_h, p->in_h - iy0);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      const int32_t x0 = EK_MAX(0, -ix0), x1 = EK_MIN(p->k_w, p->in_w - ix0);
      for (c = 0; c < p->out_c; ++c) {
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
