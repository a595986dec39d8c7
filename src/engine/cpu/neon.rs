//! NEON kernels for aarch64 (Apple Silicon, ARM Linux), the [`Isa::Neon`](super::isa::Isa::Neon) path: the same
//! products and elementwise functions as the portable and AVX2 ones, over the same data
//! layouts.
//!
//! - Decoding (`x · wᵀ` for a few activation rows, each weight read once for all of them):
//!   f32 and f16 panels ([`super::gemm::pack`]'s `[k][16]` layout, f16 widened with `fcvtl` as
//!   it is loaded), bf16 rows, `q8_0` blocks and `q4_K` blocks against `q8_K` activations.
//! - Integer dot products of signed bytes take `sdot` where the CPU has the dot-product
//!   extension (`Isa::Neon { dotprod: true }`, ARMv8.2+: every Apple M chip, Neoverse,
//!   Cortex-A76 and later) and widening multiplies (`smull`) with pairwise adds (`sadalp`)
//!   otherwise: both are exact, so both give the same integer sums.
//! - `e^x` for GELU and softmax by the AVX2 kernel's range reduction and polynomial, and the
//!   f32 row dot products of fused attention.
//!
//! Rust's intrinsics for `sdot` and for f16 vectors are unstable, so those two instructions are
//! written as inline assembly; everything else is `std::arch::aarch64`.
//!
//! Every kernel is `unsafe`: its caller must hold an `Isa::Neon` from [`super::isa`] (which
//! chose it only where the CPU has NEON), and for the `*_dotprod` kernels
//! `Isa::Neon { dotprod: true }` (chosen only where the CPU has the dot-product extension).
//! NEON is part of every aarch64 target Rust supports, but the kernels go by the one check
//! anyway, as the x86-64 ones do.

use std::arch::aarch64::*;
use std::arch::asm;

use half::{bf16, f16};

use super::kernels::{
    dot_from, weighted_columns, CacheValue, EXP_LN2_HI, EXP_LN2_LO, EXP_MAX, EXP_MIN, EXP_POLY,
};
use super::matrix::QK8_0;
use super::q4k::{self, Activations, Layout, BLOCK_BYTES, QK_K};

/// Four halves at `p` widened to f32 (`fcvtl`, base Advanced SIMD).
///
/// # Safety
/// `p` must be valid for reading four `f16`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn load_f16(p: *const f16) -> float32x4_t {
    let h = vld1_u16(p as *const u16);
    let out: float32x4_t;
    // SAFETY: `fcvtl` reads and writes registers only.
    unsafe {
        asm!(
            "fcvtl {out:v}.4s, {h:v}.4h",
            h = in(vreg) h,
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// Four bfloat16 at `p` widened to f32: each is the top half of its f32.
///
/// # Safety
/// `p` must be valid for reading four `bf16`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_bf16(p: *const bf16) -> float32x4_t {
    vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16)))
}

/// # Safety
/// `p` must be valid for reading four `f32`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn load_f32(p: *const f32) -> float32x4_t {
    vld1q_f32(p)
}

macro_rules! panel_dots {
    ($name:ident, $group:ident, $w:ty, $load:ident) => {
        /// `R` (at most 4) input rows, `k` apart from `x`, against one panel: four f32 vectors
        /// of accumulators per row, each FMA taking its input from a vector lane. One or two
        /// rows keep four or two such sets, the four inputs of a vector of `x` taking turns,
        /// so that sixteen FMA chains are in flight whatever `R` is (four chains, one input
        /// per FMA latency, would hold a core to 16 bytes of f32 weights a cycle, 8 of f16).
        ///
        /// # Safety
        /// `x` must hold `R` rows of `k`, `panel` `16 · k` weights, `tile` 16 values per row.
        #[inline]
        #[target_feature(enable = "neon")]
        unsafe fn $group<const R: usize>(
            x: *const f32,
            k: usize,
            panel: *const $w,
            tile: *mut f32,
        ) {
            let sets: usize = match R {
                1 => 4,
                2 => 2,
                _ => 1,
            };
            let mut acc = [[[vdupq_n_f32(0.0); 4]; R]; 4];
            let full = k / 4 * 4;
            let mut l = 0;
            // SAFETY: every load is at an input `l < k` of a row `r < R` or of the panel.
            unsafe {
                macro_rules! step {
                    ($lane:literal, $xv:ident) => {
                        let wp = panel.add((l + $lane) * 16);
                        let w = [
                            $load(wp),
                            $load(wp.add(4)),
                            $load(wp.add(8)),
                            $load(wp.add(12)),
                        ];
                        for (acc, xv) in acc[$lane % sets].iter_mut().zip(&$xv) {
                            for (a, w) in acc.iter_mut().zip(&w) {
                                *a = vfmaq_laneq_f32::<$lane>(*a, *w, *xv);
                            }
                        }
                    };
                }
                while l < full {
                    let xv: [float32x4_t; R] = std::array::from_fn(|r| vld1q_f32(x.add(r * k + l)));
                    step!(0, xv);
                    step!(1, xv);
                    step!(2, xv);
                    step!(3, xv);
                    l += 4;
                }
                while l < k {
                    let wp = panel.add(l * 16);
                    let w = [
                        $load(wp),
                        $load(wp.add(4)),
                        $load(wp.add(8)),
                        $load(wp.add(12)),
                    ];
                    for (r, acc) in acc[0].iter_mut().enumerate() {
                        let xv = *x.add(r * k + l);
                        for (a, w) in acc.iter_mut().zip(&w) {
                            *a = vfmaq_n_f32(*a, *w, xv);
                        }
                    }
                    l += 1;
                }
                for set in 1..sets {
                    for r in 0..R {
                        for c in 0..4 {
                            acc[0][r][c] = vaddq_f32(acc[0][r][c], acc[set][r][c]);
                        }
                    }
                }
                for (r, acc) in acc[0].iter().enumerate() {
                    for (c, a) in acc.iter().enumerate() {
                        vst1q_f32(tile.add(r * 16 + c * 4), *a);
                    }
                }
            }
        }

        /// One packed panel of 16 weight rows (`[k][16]`) against the `M` rows of `x`:
        /// `tile[r * 16 + j] = dot(x[r], row j)`, rows four at a time (sixteen accumulator
        /// vectors of the 32 registers).
        ///
        /// # Safety
        /// The CPU must have NEON (`Isa::Neon`).
        #[target_feature(enable = "neon")]
        pub unsafe fn $name<const M: usize>(x: &[f32], panel: &[$w], tile: &mut [f32; 128]) {
            let k = panel.len() / 16;
            assert!(x.len() >= M * k && M <= 8);
            let mut r = 0;
            while r < M {
                let (xp, tp) = (x[r * k..].as_ptr(), tile[r * 16..].as_mut_ptr());
                // SAFETY: rows r..r + group of `x` and of `tile` exist (asserted above).
                unsafe {
                    match (M - r).min(4) {
                        1 => $group::<1>(xp, k, panel.as_ptr(), tp),
                        2 => $group::<2>(xp, k, panel.as_ptr(), tp),
                        3 => $group::<3>(xp, k, panel.as_ptr(), tp),
                        _ => $group::<4>(xp, k, panel.as_ptr(), tp),
                    }
                }
                r += 4;
            }
        }
    };
}

panel_dots!(panel_f32, panel_group_f32, f32, load_f32);
panel_dots!(panel_f16, panel_group_f16, f16, load_f16);

/// `out[r] = dot(x[r], w)` for the `M` rows of `x` and one row of bf16 weights, each weight
/// widened once for all rows. One or two rows keep four or two pairs of sums each (eight
/// weights each, in turns): one pair took 16 bytes of weights per FMA latency.
///
/// # Safety
/// The CPU must have NEON (`Isa::Neon`).
#[target_feature(enable = "neon")]
pub unsafe fn dots_bf16<const M: usize>(x: &[f32], w: &[bf16], out: &mut [f32]) {
    let k = w.len();
    assert!(x.len() >= M * k && out.len() >= M);
    let unroll: usize = match M {
        1 => 4,
        2 => 2,
        _ => 1,
    };
    let full = k / (8 * unroll) * (8 * unroll);
    let mut acc = [[[vdupq_n_f32(0.0); 2]; M]; 4];
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    // SAFETY: i + 8 <= k, within `w` and within each of the M rows of `x`.
    let step = |acc: &mut [[float32x4_t; 2]; M], i: usize| unsafe {
        let w0 = load_bf16(wp.add(i));
        let w1 = load_bf16(wp.add(i + 4));
        for (r, acc) in acc.iter_mut().enumerate() {
            acc[0] = vfmaq_f32(acc[0], vld1q_f32(xp.add(r * k + i)), w0);
            acc[1] = vfmaq_f32(acc[1], vld1q_f32(xp.add(r * k + i + 4)), w1);
        }
    };
    let mut i = 0;
    while i < full {
        for (u, acc) in acc.iter_mut().take(unroll).enumerate() {
            step(acc, i + 8 * u);
        }
        i += 8 * unroll;
    }
    while i + 8 <= k {
        step(&mut acc[0], i);
        i += 8;
    }
    for r in 0..M {
        let mut sum = vaddq_f32(acc[0][r][0], acc[0][r][1]);
        for set in &acc[1..unroll] {
            sum = vaddq_f32(sum, vaddq_f32(set[r][0], set[r][1]));
        }
        let mut s = vaddvq_f32(sum);
        for j in i..k {
            s += x[r * k + j] * w[j].to_f32();
        }
        out[r] = s;
    }
}

/// The dot product of 32 signed bytes, `(a0, a1) · (b0, b1)`, in four i32 lanes: widening
/// multiplies (`smull`, `smull2`) and pairwise widening adds (`sadalp`); no product or sum
/// can overflow its lane.
#[inline]
#[target_feature(enable = "neon")]
fn dot32(a0: int8x16_t, a1: int8x16_t, b0: int8x16_t, b1: int8x16_t) -> int32x4_t {
    let s = vpaddlq_s16(vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
    let s = vpadalq_s16(s, vmull_high_s8(a0, b0));
    let s = vpadalq_s16(s, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
    vpadalq_s16(s, vmull_high_s8(a1, b1))
}

/// [`dot32`] with `sdot` (four byte products summed into each i32 lane).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn dot32_dotprod(a0: int8x16_t, a1: int8x16_t, b0: int8x16_t, b1: int8x16_t) -> int32x4_t {
    let mut s = vdupq_n_s32(0);
    // SAFETY: `sdot` reads and writes registers only; the function requires `dotprod`.
    unsafe {
        asm!(
            "sdot {s:v}.4s, {a0:v}.16b, {b0:v}.16b",
            "sdot {s:v}.4s, {a1:v}.16b, {b1:v}.16b",
            s = inout(vreg) s,
            a0 = in(vreg) a0,
            a1 = in(vreg) a1,
            b0 = in(vreg) b0,
            b1 = in(vreg) b1,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    s
}

macro_rules! q8_dots {
    ($name:ident, $dot:ident, $features:literal, $doc:literal) => {
        /// `out[r] = Σ_blocks wd · xd[r] · dot(wq, xq[r])` for the `M` rows of `xq` (whole
        /// `q8_0` blocks): each block's 32-byte integer dot product in i32 lanes, scaled by
        /// both blocks' scales into f32 lanes, summed across lanes once at the end.
        ///
        /// # Safety
        #[doc = $doc]
        /// `xq` holds `M` rows of `wq.len()` (whole blocks), `xd` their scales, `wd` the
        /// weights' (asserted).
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize>(
            xq: &[i8],
            xd: &[f32],
            wq: &[i8],
            wd: &[f32],
            out: &mut [f32],
        ) {
            let k = wq.len();
            let nb = k / QK8_0;
            assert!(k.is_multiple_of(QK8_0));
            assert!(xq.len() >= M * k && xd.len() >= M * nb && wd.len() >= nb && out.len() >= M);
            // Even and odd blocks in separate accumulators: two chains of FMAs, not one.
            let mut acc = [[vdupq_n_f32(0.0); 2]; M];
            let (xp, wp) = (xq.as_ptr(), wq.as_ptr());
            for b in 0..nb {
                // SAFETY: block b of the weights and of each of the M rows lies inside the
                // slices (asserted above).
                unsafe {
                    let w0 = vld1q_s8(wp.add(b * QK8_0));
                    let w1 = vld1q_s8(wp.add(b * QK8_0 + 16));
                    let d = wd[b];
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let x = xp.add(r * k + b * QK8_0);
                        let sums = $dot(w0, w1, vld1q_s8(x), vld1q_s8(x.add(16)));
                        let a = &mut acc[b & 1];
                        *a = vfmaq_n_f32(*a, vcvtq_f32_s32(sums), d * xd[r * nb + b]);
                    }
                }
            }
            for (o, acc) in out.iter_mut().zip(&acc) {
                *o = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
            }
        }
    };
}

q8_dots!(
    dots_q8,
    dot32,
    "neon",
    "The CPU must have NEON (`Isa::Neon`);"
);
q8_dots!(
    dots_q8_dotprod,
    dot32_dotprod,
    "neon,dotprod",
    "The CPU must have NEON and the dot-product extension (`Isa::Neon { dotprod: true }`);"
);

macro_rules! q4k_dots {
    ($name:ident, $dot:ident, $features:literal, $doc:literal) => {
        /// [`q4k::dots`] with NEON, for decoding: per block the quants of each 32-byte run
        /// are split into low and high nibbles once for all `M` rows; each sub-block's
        /// integer dot product (i32 lanes) is multiplied by its 6-bit scale and summed across
        /// lanes once per block, then scaled exactly as the portable kernel does, so the two
        /// give the same sums.
        ///
        /// # Safety
        #[doc = $doc]
        /// `x` holds rows `first..first + M`, `k` wide (asserted), and `out` every place `at`
        /// names for them and `w`'s rows.
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const M: usize>(
            x: &Activations,
            first: usize,
            w: &[u8],
            out: &mut [f32],
            at: Layout,
            k: usize,
        ) {
            let nb = k / QK_K;
            assert!(nb > 0 && k.is_multiple_of(QK_K) && w.len().is_multiple_of(nb * BLOCK_BYTES));
            let rows = w.len() / (nb * BLOCK_BYTES);
            assert!(x.qs.len() >= (first + M) * k && x.sums.len() >= (first + M) * nb * 8);
            assert!(x.scales.len() >= (first + M) * nb);
            assert!(rows == 0 || out.len() > (M - 1) * at.row + (rows - 1) * at.col);
            let nibble = vdupq_n_u8(0x0f);
            for (i, w) in w.chunks_exact(nb * BLOCK_BYTES).enumerate() {
                let mut total = [0f32; M];
                for (b, block) in w.chunks_exact(BLOCK_BYTES).enumerate() {
                    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
                    let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
                    let (sc, m) = q4k::scales_mins(&block[4..16]);
                    let mut sums = [vdupq_n_s32(0); M];
                    for run in 0..4 {
                        let q = &block[16 + run * 32..16 + (run + 1) * 32];
                        // SAFETY: `q` holds 32 bytes; each row's 64 activations of this run
                        // lie inside row `first + r` (asserted above).
                        unsafe {
                            let (q0, q1) = (vld1q_u8(q.as_ptr()), vld1q_u8(q[16..].as_ptr()));
                            let lo0 = vreinterpretq_s8_u8(vandq_u8(q0, nibble));
                            let lo1 = vreinterpretq_s8_u8(vandq_u8(q1, nibble));
                            let hi0 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0));
                            let hi1 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1));
                            let (s_lo, s_hi) = (sc[2 * run] as i32, sc[2 * run + 1] as i32);
                            for (r, sum) in sums.iter_mut().enumerate() {
                                let a = x.qs[(first + r) * k + b * QK_K + run * 64..].as_ptr();
                                let (a0, a1) = (vld1q_s8(a), vld1q_s8(a.add(16)));
                                let (a2, a3) = (vld1q_s8(a.add(32)), vld1q_s8(a.add(48)));
                                *sum = vmlaq_n_s32(*sum, $dot(lo0, lo1, a0, a1), s_lo);
                                *sum = vmlaq_n_s32(*sum, $dot(hi0, hi1, a2, a3), s_hi);
                            }
                        }
                    }
                    for (r, (total, sum)) in total.iter_mut().zip(&sums).enumerate() {
                        let row = first + r;
                        let sumi = vaddvq_s32(*sum);
                        let bsums = &x.sums[(row * nb + b) * 8..][..8];
                        let summ: i32 = m
                            .iter()
                            .zip(bsums)
                            .map(|(&m, &s)| m as i32 * s as i32)
                            .sum();
                        let da = x.scales[row * nb + b];
                        *total += d * da * sumi as f32 - dmin * da * summ as f32;
                    }
                }
                for (r, total) in total.iter().enumerate() {
                    out[r * at.row + i * at.col] = *total;
                }
            }
        }
    };
}

q4k_dots!(
    dots_q4k,
    dot32,
    "neon",
    "The CPU must have NEON (`Isa::Neon`);"
);
q4k_dots!(
    dots_q4k_dotprod,
    dot32_dotprod,
    "neon,dotprod",
    "The CPU must have NEON and the dot-product extension (`Isa::Neon { dotprod: true }`);"
);

/// `e^x` of four lanes: `2^n · e^r` with `n = round(x / ln 2)`, `|r| <= ln 2 / 2`, `e^r` by
/// Cephes' degree-6 polynomial, the AVX2 kernel's steps (clamped to `[-87.3, 88.3]`).
#[inline]
#[target_feature(enable = "neon")]
fn exp4(x: float32x4_t) -> float32x4_t {
    let x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(EXP_MIN)), vdupq_n_f32(EXP_MAX));
    let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(x, n, vdupq_n_f32(EXP_LN2_HI));
    let r = vfmsq_f32(r, n, vdupq_n_f32(EXP_LN2_LO));
    let mut p = vdupq_n_f32(EXP_POLY[0]);
    for c in &EXP_POLY[1..] {
        p = vfmaq_f32(vdupq_n_f32(*c), p, r);
    }
    let e = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), vmulq_f32(p, r), r);
    let pow2 = vshlq_n_s32::<23>(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)));
    vmulq_f32(e, vreinterpretq_f32_s32(pow2))
}

/// `x = e^x` for each value, eight at a time (within 2 ulp of `expf` over the clamped range;
/// below `-87.3` about 1e-38 instead of 0, above 88.3 about 2e38 instead of infinity).
///
/// # Safety
/// The CPU must have NEON (`Isa::Neon`).
#[target_feature(enable = "neon")]
pub unsafe fn exp_in_place(xs: &mut [f32]) {
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: each chunk holds 8 values.
        unsafe {
            let p = c.as_mut_ptr();
            let (a, b) = (vld1q_f32(p), vld1q_f32(p.add(4)));
            vst1q_f32(p, exp4(a));
            vst1q_f32(p.add(4), exp4(b));
        }
    }
    for x in chunks.into_remainder() {
        *x = x.exp();
    }
}

/// `out[r] = dot(xs[r], w)` for each row `r` of `xs` (rows of `w.len()`), sixteen lanes at a
/// time.
///
/// # Safety
/// The CPU must have NEON (`Isa::Neon`).
#[target_feature(enable = "neon")]
pub unsafe fn rows_dot(xs: &[f32], w: &[f32], out: &mut [f32]) {
    let k = w.len();
    assert!(xs.len() >= out.len() * k);
    let full = k / 16 * 16;
    for (r, o) in out.iter_mut().enumerate() {
        let x = &xs[r * k..(r + 1) * k];
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= k, inside `x` and `w`.
            unsafe {
                for (j, a) in acc.iter_mut().enumerate() {
                    let xv = vld1q_f32(x.as_ptr().add(i + 4 * j));
                    *a = vfmaq_f32(*a, xv, vld1q_f32(w.as_ptr().add(i + 4 * j)));
                }
            }
            i += 16;
        }
        let mut s = vaddvq_f32(vaddq_f32(
            vaddq_f32(acc[0], acc[1]),
            vaddq_f32(acc[2], acc[3]),
        ));
        for j in full..k {
            s += x[j] * w[j];
        }
        *o = s;
    }
}

/// `scores[j] = scale · q · keys[j]` for the `scores.len()` rows of `keys` (rows of
/// `q.len()`, f32 or f16 widened with `fcvtl`): four keys at a time, one running sum each.
/// Decoding reads the whole cache once per token; with this and [`weighted_values`] an f16
/// cache is half the bytes, as on x86-64.
///
/// # Safety
/// The CPU must have NEON (`Isa::Neon`).
#[target_feature(enable = "neon")]
pub unsafe fn scores<T: CacheValue>(q: &[f32], keys: &[T], scale: f32, scores: &mut [f32]) {
    let (d, seen) = (q.len(), scores.len());
    assert!(keys.len() >= seen * d);
    let full = d / 4 * 4;
    let (qp, kp) = (q.as_ptr(), keys.as_ptr());
    let tail = |j: usize| dot_from(q, &keys[j * d..(j + 1) * d], full);
    let mut j = 0;
    while j + 4 <= seen {
        let mut acc = [vdupq_n_f32(0.0); 4];
        for l in (0..full).step_by(4) {
            // SAFETY: l + 4 <= d and j + u < seen: inside `q` and `keys`.
            unsafe {
                let qv = vld1q_f32(qp.add(l));
                for (u, acc) in acc.iter_mut().enumerate() {
                    *acc = vfmaq_f32(*acc, qv, T::load4(kp.add((j + u) * d + l)));
                }
            }
        }
        for (u, acc) in acc.iter().enumerate() {
            scores[j + u] = (vaddvq_f32(*acc) + tail(j + u)) * scale;
        }
        j += 4;
    }
    for (j, score) in scores.iter_mut().enumerate().skip(j) {
        let mut acc = vdupq_n_f32(0.0);
        for l in (0..full).step_by(4) {
            // SAFETY: as above.
            unsafe { acc = vfmaq_f32(acc, vld1q_f32(qp.add(l)), T::load4(kp.add(j * d + l))) };
        }
        *score = (vaddvq_f32(acc) + tail(j)) * scale;
    }
}

/// `out (+)= Σ_j probs[j] · values[j]` (rows of `out.len()`, f32 or f16); `first` writes,
/// else adds: 32 dimensions at a time held in eight registers over all keys.
///
/// # Safety
/// The CPU must have NEON (`Isa::Neon`).
#[target_feature(enable = "neon")]
pub unsafe fn weighted_values<T: CacheValue>(
    probs: &[f32],
    values: &[T],
    out: &mut [f32],
    first: bool,
) {
    let d = out.len();
    assert!(values.len() >= probs.len() * d);
    let full = d / 4 * 4;
    let (vp, op) = (values.as_ptr(), out.as_mut_ptr());
    // SAFETY (both closures and the loops): every offset is below `d` in `out`, and below
    // `probs.len() * d` in `values`.
    let start = |at: usize| {
        if first {
            vdupq_n_f32(0.0)
        } else {
            unsafe { vld1q_f32(op.add(at)) }
        }
    };
    let mut c = 0;
    while c + 32 <= full {
        let mut acc = [vdupq_n_f32(0.0); 8];
        for (u, acc) in acc.iter_mut().enumerate() {
            *acc = start(c + 4 * u);
        }
        for (j, &p) in probs.iter().enumerate() {
            let p = vdupq_n_f32(p);
            for (u, acc) in acc.iter_mut().enumerate() {
                *acc = vfmaq_f32(*acc, p, unsafe { T::load4(vp.add(j * d + c + 4 * u)) });
            }
        }
        for (u, acc) in acc.iter().enumerate() {
            unsafe { vst1q_f32(op.add(c + 4 * u), *acc) };
        }
        c += 32;
    }
    while c < full {
        let mut acc = start(c);
        for (j, &p) in probs.iter().enumerate() {
            acc = vfmaq_f32(acc, vdupq_n_f32(p), unsafe { T::load4(vp.add(j * d + c)) });
        }
        unsafe { vst1q_f32(op.add(c), acc) };
        c += 4;
    }
    weighted_columns(probs, values, out, first, full);
}

/// Each kernel against plain scalar products at its block edges and odd sizes, on each NEON
/// path [`super::isa::test_paths`] lists (with `sdot` and without where the CPU has it; none
/// where `QUILL_CPU=portable` forces the portable path). The products, GELU and softmax that
/// dispatch here are tested with the other paths' in `matrix.rs` and `kernels.rs`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::gemm;
    use crate::engine::cpu::isa::{test_paths, Isa};
    use crate::engine::cpu::matrix::quantize_q8_0;
    use crate::engine::cpu::testutil::random;

    /// The NEON paths to test, as their `dotprod` flags.
    fn neon_paths() -> Vec<bool> {
        test_paths()
            .into_iter()
            .filter_map(|isa| match isa {
                Isa::Neon { dotprod } => Some(dotprod),
                _ => None,
            })
            .collect()
    }

    /// Whether any NEON path is tested (where one is, the plain-NEON kernels always are: a CPU
    /// with `sdot` runs them too).
    fn neon() -> bool {
        !neon_paths().is_empty()
    }

    fn dot64(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    /// f32 sums of `k` products of values below 1: a few roundings of values up to ~`k`.
    fn float_tol(k: usize) -> f32 {
        2e-6 * (k as f32 + 1.0)
    }

    /// Input widths around the kernels' steps (4, 8, 16).
    const WIDTHS: [usize; 10] = [1, 3, 4, 5, 8, 15, 16, 17, 64, 131];

    #[test]
    fn f32_and_f16_panels_equal_plain_dot_products() {
        if !neon() {
            return;
        }
        for k in WIDTHS {
            let w = random(16 * k, k as u64);
            let x = random(8 * k, 100 + k as u64);
            let halves: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let widened: Vec<f32> = halves.iter().map(|v| v.to_f32()).collect();
            let (p32, p16) = (gemm::pack(&w, 16, k), gemm::pack(&halves, 16, k));
            macro_rules! rows {
                ($($m:literal)+) => {$({
                    let (mut t32, mut t16) = ([f32::NAN; 128], [f32::NAN; 128]);
                    // SAFETY: neon() found a NEON path in test_paths, listed only where the
                    // CPU has NEON.
                    unsafe {
                        panel_f32::<$m>(&x, &p32, &mut t32);
                        panel_f16::<$m>(&x, &p16, &mut t16);
                    }
                    for r in 0..$m {
                        for j in 0..16 {
                            let xr = &x[r * k..(r + 1) * k];
                            let want = dot64(xr, &w[j * k..(j + 1) * k]) as f32;
                            let got = t32[r * 16 + j];
                            let tol = float_tol(k);
                            assert!((got - want).abs() <= tol, "f32 {k} {r} {j}: {got} {want}");
                            let want = dot64(xr, &widened[j * k..(j + 1) * k]) as f32;
                            let got = t16[r * 16 + j];
                            assert!((got - want).abs() <= tol, "f16 {k} {r} {j}: {got} {want}");
                        }
                    }
                })+};
            }
            rows!(1 2 3 4 5 6 7 8);
        }
    }

    #[test]
    fn bf16_rows_equal_plain_dot_products() {
        if !neon() {
            return;
        }
        for k in WIDTHS {
            let w: Vec<bf16> = random(k, k as u64)
                .iter()
                .map(|&v| bf16::from_f32(v))
                .collect();
            let widened: Vec<f32> = w.iter().map(|v| v.to_f32()).collect();
            let x = random(8 * k, 7 + k as u64);
            macro_rules! rows {
                ($($m:literal)+) => {$({
                    let mut out = [f32::NAN; $m];
                    // SAFETY: neon() found a NEON path in test_paths, listed only where the
                    // CPU has NEON.
                    unsafe { dots_bf16::<$m>(&x, &w, &mut out) };
                    for (r, got) in out.iter().enumerate() {
                        let want = dot64(&x[r * k..(r + 1) * k], &widened) as f32;
                        assert!((got - want).abs() <= float_tol(k), "bf16 {k} {r}: {got} {want}");
                    }
                })+};
            }
            rows!(1 2 3 4 5 6 7 8);
        }
    }

    /// `Σ_blocks wd · xd · Σ wq · xq` with exact integer sums, in f64.
    fn q8_reference(xq: &[i8], xd: &[f32], wq: &[i8], wd: &[f32]) -> f64 {
        xq.chunks(QK8_0)
            .zip(wq.chunks(QK8_0))
            .enumerate()
            .map(|(b, (x, w))| {
                let dot: i32 = x.iter().zip(w).map(|(&a, &b)| a as i32 * b as i32).sum();
                dot as f64 * wd[b] as f64 * xd[b] as f64
            })
            .sum()
    }

    /// The q8_0 kernel of each NEON path, `M` rows.
    fn q8_paths<const M: usize>(xq: &[i8], xd: &[f32], wq: &[i8], wd: &[f32]) -> Vec<[f32; M]> {
        let mut out = Vec::new();
        for dotprod in neon_paths() {
            let mut got = [f32::NAN; M];
            if dotprod {
                // SAFETY: test_paths lists Isa::Neon { dotprod: true } only where the CPU
                // has NEON and the dot-product extension.
                unsafe { dots_q8_dotprod::<M>(xq, xd, wq, wd, &mut got) };
            } else {
                // SAFETY: test_paths lists Isa::Neon only where the CPU has NEON.
                unsafe { dots_q8::<M>(xq, xd, wq, wd, &mut got) };
            }
            out.push(got);
        }
        out
    }

    #[test]
    fn q8_0_blocks_equal_exact_integer_sums() {
        for k in [32, 64, 96, 800] {
            let nb = k / QK8_0;
            let (wq, wd) = quantize_q8_0(&random(k, k as u64), true);
            let (xq, xd) = quantize_q8_0(&random(8 * k, 3 + k as u64), false);
            macro_rules! rows {
                ($($m:literal)+) => {$({
                    for out in q8_paths::<$m>(&xq, &xd, &wq, &wd) {
                        for (r, got) in out.iter().enumerate() {
                            let want = q8_reference(
                                &xq[r * k..(r + 1) * k],
                                &xd[r * nb..(r + 1) * nb],
                                &wq,
                                &wd,
                            ) as f32;
                            assert!(
                                (got - want).abs() <= 1e-5 * (want.abs() + 1.0),
                                "q8_0 {k} {r}: {got} {want}"
                            );
                        }
                    }
                })+};
            }
            rows!(1 2 3 4 5 6 7 8);
        }
    }

    #[test]
    fn q8_0_sums_at_the_extremes_of_a_byte_neither_overflow_nor_saturate() {
        // Weights at -128 (a GGUF file may hold it), activations at ±127: the largest
        // products.
        let k = 64;
        let wq = vec![-128i8; k];
        let xq: Vec<i8> = (0..3 * k)
            .map(|i| {
                if i < k {
                    -127
                } else if i < 2 * k {
                    127
                } else {
                    (i % 255) as i8
                }
            })
            .collect();
        let (wd, xd) = (vec![1f32; k / QK8_0], vec![1f32; 3 * k / QK8_0]);
        let third: i64 = xq[2 * k..].iter().map(|&v| -128 * v as i64).sum();
        let want = [
            (128 * 127 * k) as f32,
            -((128 * 127 * k) as f32),
            third as f32,
        ];
        for out in q8_paths::<3>(&xq, &xd, &wq, &wd) {
            assert_eq!(out, want);
        }
    }

    #[test]
    fn q4_k_blocks_equal_the_portable_kernels_sums() {
        for (k, n) in [(256, 5), (512, 3), (768, 2)] {
            let w = random(n * k, k as u64);
            let blocks = q4k::quantize(&w, k);
            let mut x = random(8 * k, 9 + k as u64);
            // One block of activations at its extremes: the integer sums' largest values.
            for (i, v) in x[..QK_K].iter_mut().enumerate() {
                *v = if i % 2 == 0 { 1.0 } else { -1.0 };
            }
            let xa = q4k::quantize_activations(&x);
            macro_rules! rows {
                ($($m:literal)+) => {$({
                    // Both layouts: decoding's (n, m) and a prompt's (m, n).
                    for at in [Layout { row: 1, col: $m }, Layout { row: n, col: 1 }] {
                        let mut plain = vec![f32::NAN; n * $m];
                        q4k::dots::<$m>(&xa, 8 - $m, &blocks, &mut plain, at, k);
                        for dotprod in neon_paths() {
                            let mut got = vec![f32::NAN; n * $m];
                            if dotprod {
                                // SAFETY: test_paths lists Isa::Neon { dotprod: true } only
                                // where the CPU has NEON and the dot-product extension.
                                unsafe {
                                    dots_q4k_dotprod::<$m>(&xa, 8 - $m, &blocks, &mut got, at, k)
                                };
                            } else {
                                // SAFETY: test_paths lists Isa::Neon only where the CPU has
                                // NEON.
                                unsafe { dots_q4k::<$m>(&xa, 8 - $m, &blocks, &mut got, at, k) };
                            }
                            assert_eq!(got, plain, "q4_k {k} x {n}, {} rows, dotprod {dotprod}", $m);
                        }
                    }
                })+};
            }
            rows!(1 2 3 4 5 6 7 8);
        }
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_clamps_to_finite_values() {
        if !neon() {
            return;
        }
        let xs: Vec<f32> = (0..20_003).map(|i| -87.0 + i as f32 * 0.00875).collect();
        let mut got = xs.clone();
        // SAFETY: neon() found a NEON path in test_paths, listed only where the CPU has NEON.
        unsafe { exp_in_place(&mut got) };
        for (&x, &e) in xs.iter().zip(&got) {
            let want = x.exp();
            assert!(
                (e - want).abs() <= 2.5e-7 * want,
                "exp({x}) = {e}, libm {want}"
            );
        }
        // Past the clamp: tiny and finite, never NaN or infinite; the tail by libm.
        let mut far = [-1e4f32, -100.0, -88.0, 89.0, 100.0, 1e4, 0.0, 1.0, 1.0];
        // SAFETY: as above.
        unsafe { exp_in_place(&mut far) };
        assert!(
            far[..3].iter().all(|&v| (0.0..2e-38).contains(&v)),
            "{far:?}"
        );
        assert!(
            far[3..6].iter().all(|&v| v.is_finite() && v > 1e38),
            "{far:?}"
        );
        assert_eq!(&far[6..], &[1.0, std::f32::consts::E, std::f32::consts::E]);
    }

    #[test]
    fn row_dots_equal_plain_dot_products() {
        if !neon() {
            return;
        }
        for k in WIDTHS {
            let w = random(k, k as u64);
            let xs = random(3 * k, 5 + k as u64);
            let mut out = [f32::NAN; 3];
            // SAFETY: neon() found a NEON path in test_paths, listed only where the CPU has
            // NEON.
            unsafe { rows_dot(&xs, &w, &mut out) };
            for (r, got) in out.iter().enumerate() {
                let want = dot64(&xs[r * k..(r + 1) * k], &w) as f32;
                assert!((got - want).abs() <= float_tol(k), "{k} {r}: {got} {want}");
            }
        }
    }
}
