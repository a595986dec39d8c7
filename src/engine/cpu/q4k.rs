//! ggml's `q4_K` blocks and their products with f32 activations.
//!
//! A block holds 256 weights in 144 bytes: an f16 scale `d` and minimum scale `dmin`, twelve
//! bytes packing eight 6-bit sub-block scales and eight 6-bit mins, and 128 bytes of 4-bit
//! quants. Weight `i` of sub-block `j` (32 weights each) is `d · sc[j] · q[i] - dmin · m[j]`.
//! Quants are stored in four 32-byte runs: run `r` holds sub-block `2r` in its low nibbles and
//! `2r + 1` in its high ones.
//!
//! Products quantize the activations to ggml's `q8_K` (one f32 scale per 256 values, signed
//! bytes, and the sum of each 32 bytes): per block the integer sums `Σ sc[j] · Σ q·a` and
//! `Σ m[j] · Σ a` are scaled once. The AVX2 decoding kernel runs up to
//! [`super::matrix::MAX_ROWS`] activation rows against each weight row, unpacking each run of
//! quants once for all of them. Prompts unpack every block's scales once per product
//! ([`Unpacked`]), take the mins' share of all products as one f32 product
//! ([`Activations::min_terms`]), and add the scales' share four activation rows at a time
//! ([`avx::scaled_sums`]) over tiles of weight rows that stay in cache.

use candle_core::quantized::k_quants::{BlockQ4K, GgmlType};
use half::f16;
use rayon::prelude::*;

/// Weights per block.
pub const QK_K: usize = 256;

/// Bytes of a block as ggml stores it.
pub const BLOCK_BYTES: usize = 144;

/// Weights per sub-block (one scale and one min each).
const SUB: usize = 32;

const _: () = assert!(std::mem::size_of::<BlockQ4K>() == BLOCK_BYTES);

/// Quantizes row-major `[rows, cols]` weights (`cols` a multiple of 256) with ggml's
/// reference `q4_K` quantizer (as candle ports it): the bytes llama.cpp's `quantize` writes.
pub fn quantize(w: &[f32], cols: usize) -> Vec<u8> {
    assert!(cols.is_multiple_of(QK_K) && w.len().is_multiple_of(cols.max(1)));
    let per_row = cols / QK_K * BLOCK_BYTES;
    let mut out = vec![0u8; w.len() / QK_K * BLOCK_BYTES];
    out.par_chunks_mut(per_row.max(1))
        .zip(w.par_chunks(cols.max(1)))
        .for_each(|(bytes, row)| {
            let mut blocks = vec![BlockQ4K::zeros(); cols / QK_K];
            BlockQ4K::from_float(row, &mut blocks);
            // SAFETY: BlockQ4K is repr(C), 144 bytes of plain integers and f16s (asserted
            // above), so its blocks read as ggml's bytes.
            let raw = unsafe {
                std::slice::from_raw_parts(blocks.as_ptr() as *const u8, blocks.len() * BLOCK_BYTES)
            };
            bytes.copy_from_slice(raw);
        });
    out
}

/// The eight sub-block scales and eight mins of a block's twelve packed bytes: bytes 0-3 hold
/// scales 0-3 (low 6 bits), bytes 4-7 mins 0-3, bytes 8-11 the low 4 bits of scales 4-7 (low
/// nibble) and mins 4-7 (high nibble), whose top 2 bits are the top bits of bytes 0-3 / 4-7.
#[inline]
pub fn scales_mins(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes(packed[4 * i..4 * i + 4].try_into().unwrap());
    let (a, b, c) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let sc_hi = (c & LOW4) | (((a >> 6) & LOW2) << 4);
    let m_hi = ((c >> 4) & LOW4) | (((b >> 6) & LOW2) << 4);
    let join = |lo: u32, hi: u32| {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&lo.to_le_bytes());
        out[4..].copy_from_slice(&hi.to_le_bytes());
        out
    };
    (join(a & LOW6, sc_hi), join(b & LOW6, m_hi))
}

fn block_scales(block: &[u8]) -> (f32, f32) {
    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
    let dmin = f16::from_le_bytes([block[2], block[3]]).to_f32();
    (d, dmin)
}

/// Whole blocks to f32: `out.len() == blocks.len() / 144 * 256`.
pub fn dequantize(blocks: &[u8], out: &mut [f32]) {
    assert_eq!(blocks.len() / BLOCK_BYTES * QK_K, out.len());
    for (block, out) in blocks
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let (d, dmin) = block_scales(block);
        let (sc, m) = scales_mins(&block[4..16]);
        for (run, out) in out.chunks_exact_mut(2 * SUB).enumerate() {
            let q = &block[16 + run * SUB..16 + (run + 1) * SUB];
            let (lo, hi) = out.split_at_mut(SUB);
            let (d0, m0) = (d * sc[2 * run] as f32, dmin * m[2 * run] as f32);
            let (d1, m1) = (d * sc[2 * run + 1] as f32, dmin * m[2 * run + 1] as f32);
            for ((lo, hi), &q) in lo.iter_mut().zip(hi).zip(q) {
                *lo = d0 * (q & 0xf) as f32 - m0;
                *hi = d1 * (q >> 4) as f32 - m1;
            }
        }
    }
}

/// Activation rows quantized to `q8_K`: per 256 values a scale, the signed bytes, and the
/// sum of each 32 bytes.
pub struct Activations {
    pub qs: Vec<i8>,
    pub scales: Vec<f32>,
    pub sums: Vec<i16>,
}

/// Quantizes rows of whole 256-value blocks: `d = max|x| / 127`, `q = round(x / d)`.
pub fn quantize_activations(x: &[f32]) -> Activations {
    assert!(x.len().is_multiple_of(QK_K));
    let blocks = x.len() / QK_K;
    let mut qs = vec![0i8; x.len()];
    let mut scales = vec![0f32; blocks];
    let mut sums = vec![0i16; blocks * QK_K / SUB];
    qs.par_chunks_mut(QK_K)
        .zip(scales.par_iter_mut())
        .zip(sums.par_chunks_mut(QK_K / SUB))
        .zip(x.par_chunks(QK_K))
        .for_each(|(((q, d), sums), x)| {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            *d = amax / 127.0;
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for (q, &v) in q.iter_mut().zip(x) {
                // Rounded half away from zero, as `f32::round`, without a call to libm.
                let t = v * inv;
                *q = (t + 0.5f32.copysign(t)) as i8;
            }
            for (s, q) in sums.iter_mut().zip(q.chunks_exact(SUB)) {
                *s = q.iter().map(|&v| v as i16).sum();
            }
        });
    Activations { qs, scales, sums }
}

/// A matrix's block scales unpacked for a product with many activation rows: `d` and the
/// eight sub-block scales per block, and each sub-block's `-dmin · m` (its mins term is then
/// an f32 product with the activations' scaled 32-value sums, [`Activations::min_terms`]).
pub struct Unpacked {
    pub d: Vec<f32>,
    pub scales: Vec<[u8; 8]>,
    pub neg_mins: Vec<f32>,
}

impl Unpacked {
    pub fn new(blocks: &[u8]) -> Self {
        let count = blocks.len() / BLOCK_BYTES;
        let mut d = vec![0f32; count];
        let mut scales = vec![[0u8; 8]; count];
        let mut neg_mins = vec![0f32; count * 8];
        d.par_iter_mut()
            .zip(scales.par_iter_mut())
            .zip(neg_mins.par_chunks_mut(8))
            .zip(blocks.par_chunks(BLOCK_BYTES))
            .for_each(|(((d, sc), neg), block)| {
                let (scale, dmin) = block_scales(block);
                let (s, m) = scales_mins(&block[4..16]);
                *d = scale;
                *sc = s;
                for (n, &m) in neg.iter_mut().zip(&m) {
                    *n = -dmin * m as f32;
                }
            });
        Self {
            d,
            scales,
            neg_mins,
        }
    }
}

impl Activations {
    /// Each 32-value sum times its block's scale, `(rows, k / 32)`: with
    /// [`Unpacked::neg_mins`] the mins term of every product.
    pub fn min_terms(&self) -> Vec<f32> {
        let per_block = QK_K / SUB;
        self.sums
            .par_chunks(per_block)
            .zip(self.scales.par_iter())
            .flat_map_iter(|(s, &d)| s.iter().map(move |&s| d * s as f32))
            .collect()
    }
}

/// Where [`Dots`] writes the product of activation row `r` and weight row `i`:
/// `out[r * row + i * col]`.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub row: usize,
    pub col: usize,
}

/// The dot products of activation rows `first..first + M` with each weight row of `w` (whole
/// rows of blocks), written to `out` as `Layout` places them.
pub type Dots = fn(&Activations, usize, &[u8], &mut [f32], Layout, usize);

/// `Σ_blocks d·da·Σ_j sc[j]·(q·a)_j - dmin·da·Σ_j m[j]·Σa_j` for activation rows
/// `first..first + M` against each weight row of `w`, `k` wide.
pub fn dots<const M: usize>(
    x: &Activations,
    first: usize,
    w: &[u8],
    out: &mut [f32],
    at: Layout,
    k: usize,
) {
    let nb = k / QK_K;
    for (i, w) in w.chunks_exact(nb * BLOCK_BYTES).enumerate() {
        for r in 0..M {
            let row = first + r;
            let mut total = 0f32;
            for (b, block) in w.chunks_exact(BLOCK_BYTES).enumerate() {
                let (d, dmin) = block_scales(block);
                let (sc, m) = scales_mins(&block[4..16]);
                let a = &x.qs[row * k + b * QK_K..][..QK_K];
                let mut sumi = 0i32;
                for run in 0..4 {
                    let q = &block[16 + run * SUB..16 + (run + 1) * SUB];
                    let (mut lo, mut hi) = (0i32, 0i32);
                    for (l, &q) in q.iter().enumerate() {
                        lo += (q & 0xf) as i32 * a[2 * run * SUB + l] as i32;
                        hi += (q >> 4) as i32 * a[(2 * run + 1) * SUB + l] as i32;
                    }
                    sumi += lo * sc[2 * run] as i32 + hi * sc[2 * run + 1] as i32;
                }
                let sums = &x.sums[(row * nb + b) * 8..][..8];
                let summ: i32 = m.iter().zip(sums).map(|(&m, &s)| m as i32 * s as i32).sum();
                let da = x.scales[row * nb + b];
                total += d * da * sumi as f32 - dmin * da * summ as f32;
            }
            out[r * at.row + i * at.col] = total;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx {
    use super::{scales_mins, Activations, Layout, BLOCK_BYTES, QK_K};
    use crate::engine::cpu::x86::hsum;
    use std::arch::x86_64::*;

    /// One block's integer sums `Σ_j sc[j] · (q · a)_j` for `M` activation rows, in i32
    /// lanes: per run of 32 quant bytes two nibble masks, then per row two `maddubs`
    /// (unsigned quants by signed bytes, pairs at most 2·15·127) and two `madd`s by the
    /// sub-block scales. `scales` holds the eight scales as i16 in both 128-bit halves;
    /// `a` points at row 0's 256 activations of this block, rows `k` apart.
    ///
    /// # Safety
    /// The CPU must have AVX2; `quants`, `a` valid for the block as above.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn block_sums<const M: usize>(
        quants: *const u8,
        scales: __m256i,
        a: *const i8,
        k: usize,
    ) -> [__m256i; M] {
        let nibble = _mm256_set1_epi8(0x0f);
        let mut sums = [_mm256_setzero_si256(); M];
        for run in 0..4 {
            let q = _mm256_loadu_si256(quants.add(run * 32) as *const __m256i);
            let lo = _mm256_and_si256(q, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), nibble);
            // A byte shuffle spreads sub-block j's scale over all i16 lanes.
            let j = 2 * run as i16;
            let s_lo = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((2 * j) | (2 * j + 1) << 8));
            let s_hi =
                _mm256_shuffle_epi8(scales, _mm256_set1_epi16((2 * j + 2) | (2 * j + 3) << 8));
            for (r, sum) in sums.iter_mut().enumerate() {
                let a = a.add(r * k + run * 64);
                let a_lo = _mm256_loadu_si256(a as *const __m256i);
                let a_hi = _mm256_loadu_si256(a.add(32) as *const __m256i);
                let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), s_lo);
                let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), s_hi);
                *sum = _mm256_add_epi32(*sum, _mm256_add_epi32(p_lo, p_hi));
            }
        }
        sums
    }

    /// Eight u8 scales as i16 lanes in both halves.
    ///
    /// # Safety
    /// The CPU must have AVX2; `sc` valid for 8 bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn widen_scales(sc: *const u8) -> __m256i {
        _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(sc as *const __m128i)))
    }

    /// [`super::dots`] with AVX2, for decoding: each block's scales unpacked as it is read,
    /// its integer sums (`block_sums`) scaled into f32 once, with its mins term (`madd` of
    /// the mins by the activations' 32-value sums). The loop over weight rows is inside, so
    /// that nothing is called per row.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `x` holds rows `first..first + M`, `k` wide, and
    /// `out` every place `at` names for them and `w`'s rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dots<const M: usize>(
        x: &Activations,
        first: usize,
        w: &[u8],
        out: &mut [f32],
        at: Layout,
        k: usize,
    ) {
        let nb = k / QK_K;
        let rows = w.len() / (nb * BLOCK_BYTES);
        assert!(x.qs.len() >= (first + M) * k && x.sums.len() >= (first + M) * nb * 8);
        assert!(x.scales.len() >= (first + M) * nb);
        assert!(rows == 0 || out.len() > (M - 1) * at.row + (rows - 1) * at.col);
        let a0 = x.qs.as_ptr().add(first * k);
        let da0 = x.scales.as_ptr().add(first * nb);
        let bsums0 = x.sums.as_ptr().add(first * nb * 8);
        for i in 0..rows {
            let mut acc = [_mm256_setzero_ps(); M];
            for b in 0..nb {
                let block = w.as_ptr().add((i * nb + b) * BLOCK_BYTES);
                // Rows lie end to end: the lines 1 KB ahead (a hint, never a fault).
                for line in [1024, 1088, 1152] {
                    _mm_prefetch::<_MM_HINT_T0>(block.wrapping_add(line) as *const i8);
                }
                let dd = _mm_cvtph_ps(_mm_cvtsi32_si128((block as *const i32).read_unaligned()));
                let (d, dmin) = (_mm_cvtss_f32(dd), _mm_cvtss_f32(_mm_movehdup_ps(dd)));
                let (sc, m) = scales_mins(std::slice::from_raw_parts(block.add(4), 12));
                let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(m.as_ptr() as _));
                let sums = block_sums::<M>(
                    block.add(16),
                    widen_scales(sc.as_ptr()),
                    a0.add(b * QK_K),
                    k,
                );
                for (r, (acc, sum)) in acc.iter_mut().zip(&sums).enumerate() {
                    let da = *da0.add(r * nb + b);
                    let bsums = _mm_loadu_si128(bsums0.add((r * nb + b) * 8) as *const __m128i);
                    let mins =
                        _mm256_cvtepi32_ps(_mm256_zextsi128_si256(_mm_madd_epi16(mins, bsums)));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*sum), _mm256_set1_ps(d * da), *acc);
                    *acc = _mm256_fnmadd_ps(mins, _mm256_set1_ps(dmin * da), *acc);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                *out.get_unchecked_mut(r * at.row + i * at.col) = hsum(*acc);
            }
        }
    }

    /// The scales term of `M` activation rows against weight rows whose scales were unpacked
    /// beforehand ([`super::Unpacked`]), added to `out[r * n + i]` (which holds the mins term):
    /// per block only the integer sums and one scaling.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `x` holds rows `first..first + M`, `k` wide; `w` whole
    /// rows, `d` and `sc` their blocks' entries; `out` `M` rows of `n` from the first weight
    /// row's column.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn scaled_sums<const M: usize>(
        x: &Activations,
        first: usize,
        w: &[u8],
        d: &[f32],
        sc: &[[u8; 8]],
        out: &mut [f32],
        n: usize,
        k: usize,
    ) {
        let nb = k / QK_K;
        let rows = w.len() / (nb * BLOCK_BYTES);
        assert!(x.qs.len() >= (first + M) * k && x.scales.len() >= (first + M) * nb);
        assert!(d.len() >= rows * nb && sc.len() >= rows * nb);
        assert!(rows == 0 || out.len() >= (M - 1) * n + rows);
        let a0 = x.qs.as_ptr().add(first * k);
        let da0 = x.scales.as_ptr().add(first * nb);
        for i in 0..rows {
            let mut acc = [_mm256_setzero_ps(); M];
            for b in 0..nb {
                let block = w.as_ptr().add((i * nb + b) * BLOCK_BYTES);
                let scales = widen_scales(sc.as_ptr().add(i * nb + b) as *const u8);
                let sums = block_sums::<M>(block.add(16), scales, a0.add(b * QK_K), k);
                let d = *d.get_unchecked(i * nb + b);
                for (r, (acc, sum)) in acc.iter_mut().zip(&sums).enumerate() {
                    let scale = _mm256_set1_ps(d * *da0.add(r * nb + b));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*sum), scale, *acc);
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                *out.get_unchecked_mut(r * n + i) += hsum(*acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::testutil::random;

    #[test]
    fn blocks_dequantize_as_ggml_does() {
        let w = random(4 * QK_K, 1);
        let bytes = quantize(&w, 2 * QK_K);
        assert_eq!(bytes.len(), 4 * BLOCK_BYTES);
        let mut ours = vec![0f32; w.len()];
        dequantize(&bytes, &mut ours);
        let mut blocks = vec![BlockQ4K::zeros(); 4];
        BlockQ4K::from_float(&w, &mut blocks);
        let mut theirs = vec![0f32; w.len()];
        BlockQ4K::to_float(&blocks, &mut theirs);
        assert_eq!(ours, theirs);
        // 4 bits over each sub-block's range: within a step (range / 15) of the weights.
        let worst = w
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2.0 / 15.0, "{worst}");
    }

    #[test]
    fn scales_unpack_from_six_bits() {
        // Scales 0..8 = 1, 9, 17, ..., mins = 63, 62, ...: all bit positions in use.
        let sc: Vec<u8> = (0..8).map(|j| (8 * j + 1) as u8).collect();
        let m: Vec<u8> = (0..8).map(|j| 63 - j as u8).collect();
        let mut packed = [0u8; 12];
        for j in 0..4 {
            packed[j] = sc[j] | (sc[j + 4] >> 4) << 6;
            packed[j + 4] = m[j] | (m[j + 4] >> 4) << 6;
            packed[j + 8] = (sc[j + 4] & 0xf) | (m[j + 4] & 0xf) << 4;
        }
        let (got_sc, got_m) = scales_mins(&packed);
        assert_eq!((got_sc.to_vec(), got_m.to_vec()), (sc, m));
    }

    #[test]
    fn dots_match_the_dequantized_product() {
        let k = 3 * QK_K;
        let w = random(k, 2);
        let x = random(3 * k, 3);
        let bytes = quantize(&w, k);
        let mut wf = vec![0f32; k];
        dequantize(&bytes, &mut wf);
        let xa = quantize_activations(&x);
        let at = Layout { row: 1, col: 2 };
        let mut plain = [0f32; 2];
        dots::<2>(&xa, 1, &bytes, &mut plain, at, k);
        for r in 0..2 {
            let exact: f32 = wf.iter().zip(&x[(r + 1) * k..]).map(|(a, b)| a * b).sum();
            // The activations' rounding: half a step of 1/127 of each block's largest.
            assert!(
                (plain[r] - exact).abs() < 0.05 * (k as f32).sqrt(),
                "{plain:?} {exact}"
            );
        }
        #[cfg(target_arch = "x86_64")]
        if crate::engine::cpu::isa::test_paths()
            .iter()
            .any(|isa| matches!(isa, crate::engine::cpu::Isa::Avx2 { .. }))
        {
            let mut simd = [0f32; 2];
            // SAFETY: test_paths lists Isa::Avx2 only where the CPU has AVX2, FMA and F16C.
            unsafe { avx::dots::<2>(&xa, 1, &bytes, &mut simd, at, k) };
            for (a, b) in simd.iter().zip(&plain) {
                assert!(
                    (a - b).abs() < 1e-3 * b.abs().max(1.0),
                    "{simd:?} vs {plain:?}"
                );
            }
        }
        // The NEON kernels' integer sums are exact and scaled as the portable kernel scales
        // them: the same sums, bit for bit, with `sdot` and without.
        #[cfg(target_arch = "aarch64")]
        for isa in crate::engine::cpu::isa::test_paths() {
            use crate::engine::cpu::{neon, Isa};
            let mut got = [f32::NAN; 2];
            match isa {
                // SAFETY: test_paths lists Isa::Neon only where the CPU has NEON.
                Isa::Neon { dotprod: false } => unsafe {
                    neon::dots_q4k::<2>(&xa, 1, &bytes, &mut got, at, k)
                },
                // SAFETY: test_paths lists Isa::Neon { dotprod: true } only where the CPU
                // has NEON and the dot-product extension.
                Isa::Neon { dotprod: true } => unsafe {
                    neon::dots_q4k_dotprod::<2>(&xa, 1, &bytes, &mut got, at, k)
                },
                _ => continue,
            }
            assert_eq!(got, plain, "{isa}");
        }
    }
}
