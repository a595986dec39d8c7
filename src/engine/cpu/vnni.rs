//! Prompt products of quantized weights (`q4_K`, `q8_0`) by AVX-512 VNNI: integer products of
//! the weights' bytes with the activations' bytes, sixteen weight rows a register; and `q8_0`
//! on AVX2 without AVX-512 in the same layout, eight rows a register, by `maddubs`
//! ([`kernel_avx2_q8`]).
//!
//! `vpdpbusd` multiplies unsigned bytes by signed ones and adds each four products into an i32
//! lane. With lane `i` holding four consecutive weights of row `i`, one instruction multiplies
//! four inputs of sixteen weight rows by the same four activation bytes (a broadcast): no
//! horizontal sums, and each weight register serves every activation row of a tile. Each task
//! lays out the 32 weight rows it multiplies that way (a transposition of 4-byte words, into a
//! buffer of its own: the weights stay as stored and nothing is kept beside them), then streams
//! the activation rows past them [`ROWS`] at a time.
//!
//! Per 32-input sub-block `s` of weight row `c` and activation row `r`, with `u` the unsigned
//! weight bytes and `a` the activations' signed bytes:
//! `out[r][c] = Σ_s wscale[c][s] · ascale[r][s] · Σ u·a + offset[c][s] · asum[r][s]`.
//! - `q4_K`: `u = q` (4 bits, two a byte in the layout), `wscale = d · sc[s]`,
//!   `offset = -dmin · m[s]`; activations in `q8_K` ([`q4k::quantize_activations`]),
//!   `ascale` their block's scale, `asum = ascale · Σ a`: ggml's `q4_K · q8_K` product.
//! - `q8_0`: `u = w + 128`, `wscale = d`, `offset = -128 · d` (which takes the 128 back out);
//!   activations in `q8_0` blocks as the decoding kernels quantize them: the same integers as
//!   ggml's `q8_0 · q8_0`.

use super::gemm::SharedOut;
use super::isa::Isa;
use super::matrix::{quantize_q8_0, QK8_0};
use super::q4k;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Inputs per sub-block (one weight scale each).
const SUB: usize = 32;

/// Weight rows a task lays out and a kernel call multiplies: two registers of sixteen.
const COLS: usize = 32;

/// Activation rows a kernel call multiplies against them.
const ROWS: usize = 4;

/// The activations as the kernel reads them: signed bytes, row-major, and per row and
/// sub-block their scale and (for the VNNI kernel, whose weights are unsigned) scaled sum.
struct Activations<'a> {
    qs: &'a [i8],
    ascale: Vec<f32>,
    asum: Vec<f32>,
}

/// One task's 32 weight rows laid out for the kernel: per sub-block, panel 0's `CH` 64-byte
/// chunks then panel 1's (lane `i` of a chunk: four bytes of row `i`), and per sub-block 32
/// `wscale`s and 32 `offset`s. Rows past the matrix are zero.
struct Pair {
    quants: Vec<u8>,
    wscale: Vec<f32>,
    offset: Vec<f32>,
}

impl Pair {
    fn new(k: usize, chunks: usize) -> Self {
        let subs = k / SUB;
        Self {
            quants: vec![0; subs * 2 * chunks * 64],
            wscale: vec![0.0; subs * COLS],
            offset: vec![0.0; subs * COLS],
        }
    }

    /// Where the 4-byte word of group `g` of sub-block `s` of row `c` (of 32) goes.
    fn word_at(s: usize, c: usize, g: usize, chunks: usize) -> usize {
        ((s * 2 + c / 16) * chunks + g) * 64 + (c % 16) * 4
    }

    fn clear_from(&mut self, first_missing: usize, chunks: usize) {
        let subs = self.wscale.len() / COLS;
        for c in first_missing..COLS {
            for s in 0..subs {
                self.wscale[s * COLS + c] = 0.0;
                self.offset[s * COLS + c] = 0.0;
                for g in 0..chunks {
                    let at = Self::word_at(s, c, g, chunks);
                    self.quants[at..at + 4].fill(0);
                }
            }
        }
    }

    /// `q4_K` rows (`rows.len() / row_bytes` of them, at most 32): each sub-block's 32 nibbles
    /// regrouped so that byte `j` of group `g` holds input `4g + j` low and `16 + 4g + j` high.
    fn fill_q4k(&mut self, rows: &[u8], row_bytes: usize) {
        const LOW: u128 = 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;
        let count = rows.len() / row_bytes;
        for (c, row) in rows.chunks_exact(row_bytes).enumerate() {
            for (b, block) in row.chunks_exact(q4k::BLOCK_BYTES).enumerate() {
                let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
                let dmin = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
                let (sc, m) = q4k::scales_mins(&block[4..16]);
                for run in 0..4 {
                    let q = &block[16 + run * 32..16 + (run + 1) * 32];
                    let lo = u128::from_le_bytes(q[..16].try_into().unwrap());
                    let hi = u128::from_le_bytes(q[16..].try_into().unwrap());
                    // Run `run` holds sub-block 2·run in its low nibbles, 2·run + 1 in its high.
                    let subs = [
                        (lo & LOW) | ((hi & LOW) << 4),
                        ((lo >> 4) & LOW) | (hi & !LOW),
                    ];
                    for (half, packed) in subs.into_iter().enumerate() {
                        let j = 2 * run + half;
                        let s = b * 8 + j;
                        let bytes = packed.to_le_bytes();
                        for g in 0..4 {
                            let at = Self::word_at(s, c, g, 4);
                            self.quants[at..at + 4].copy_from_slice(&bytes[4 * g..4 * g + 4]);
                        }
                        self.wscale[s * COLS + c] = d * sc[j] as f32;
                        self.offset[s * COLS + c] = -dmin * m[j] as f32;
                    }
                }
            }
        }
        self.clear_from(count, 4);
    }

    /// `q8_0` rows (`qs.len() / k` of them, at most 32, with their block scales), each byte
    /// made unsigned by adding 128 (VNNI), or kept signed (`signed`: AVX2, offsets 0).
    fn fill_q8(&mut self, qs: &[i8], scales: &[f32], k: usize, signed: bool) {
        let subs = k / SUB;
        let count = qs.len() / k;
        for c in 0..count {
            for s in 0..subs {
                let q = &qs[c * k + s * SUB..c * k + (s + 1) * SUB];
                for g in 0..8 {
                    let word = [q[4 * g], q[4 * g + 1], q[4 * g + 2], q[4 * g + 3]];
                    let flip = if signed { 0 } else { 0x8080_8080 };
                    let word = u32::from_le_bytes(word.map(|v| v as u8)) ^ flip;
                    let at = Self::word_at(s, c, g, 8);
                    self.quants[at..at + 4].copy_from_slice(&word.to_le_bytes());
                }
                let d = scales[c * subs + s];
                self.wscale[s * COLS + c] = d;
                self.offset[s * COLS + c] = if signed { 0.0 } else { -128.0 * d };
            }
        }
        self.clear_from(count, 8);
    }
}

/// `x · wᵀ` for `q4_K` weights `[n, k]` (ggml's blocks, row after row) and `x` `[m, k]`.
///
/// Panics unless `isa` is the AVX-512 path (which the CPU has: [`Isa`] is chosen so).
pub fn q4k_product(isa: Isa, blocks: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let xa = q4k::quantize_activations(x);
    let nb = k / q4k::QK_K;
    let per_block = q4k::QK_K / SUB;
    let ascale: Vec<f32> = xa
        .scales
        .iter()
        .flat_map(|&d| std::iter::repeat_n(d, per_block))
        .collect();
    let asum = xa.min_terms();
    debug_assert_eq!(ascale.len(), m * nb * per_block);
    let acts = Activations {
        qs: &xa.qs,
        ascale,
        asum,
    };
    let row_bytes = nb * q4k::BLOCK_BYTES;
    product::<4>(isa, &acts, n, k, m, |pair, first, count| {
        pair.fill_q4k(
            &blocks[first * row_bytes..(first + count) * row_bytes],
            row_bytes,
        )
    })
}

/// `x · wᵀ` for `q8_0` weights `[n, k]` (`qs` row-major, `scales[row * k / 32 + block]`).
///
/// Panics unless `isa` is an AVX2 path (which the CPU has: [`Isa`] is chosen so): with
/// AVX-512, by VNNI; without, by AVX2's `maddubs` on `|w|` and the activations' bytes with
/// `w`'s sign (at most 2 · 127 · 127 a pair of products, no saturation, as ggml's AVX2
/// `q8_0` dot product).
pub fn q8_0_product(
    isa: Isa,
    qs: &[i8],
    scales: &[f32],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
) -> Vec<f32> {
    let (xq, xd) = quantize_q8_0(x, false);
    let signed = isa == (Isa::Avx2 { avx512: false });
    // The offsets' term: only VNNI's unsigned weights (`w + 128`) need it.
    let asum = if signed {
        Vec::new()
    } else {
        xq.par_chunks(QK8_0)
            .zip(&xd)
            .map(|(q, &d)| d * q.iter().map(|&v| v as i32).sum::<i32>() as f32)
            .collect()
    };
    let acts = Activations {
        qs: &xq,
        ascale: xd,
        asum,
    };
    let subs = k / SUB;
    product::<8>(isa, &acts, n, k, m, |pair, first, count| {
        let rows = first..first + count;
        pair.fill_q8(
            &qs[rows.start * k..rows.end * k],
            &scales[rows.start * subs..rows.end * subs],
            k,
            signed,
        )
    })
}

/// Runs `$body` with the const `$r` set to `$rows` (1 to [`ROWS`]), so that the kernels
/// unroll over a tile's activation rows.
macro_rules! rows {
    ($rows:expr, $r:ident => $body:expr) => {
        match $rows {
            1 => {
                const $r: usize = 1;
                $body
            }
            2 => {
                const $r: usize = 2;
                $body
            }
            3 => {
                const $r: usize = 3;
                $body
            }
            4 => {
                const $r: usize = 4;
                $body
            }
            _ => unreachable!("at most ROWS rows a tile"),
        }
    };
}

/// The product's tasks: each lays out 32 weight rows (`fill(pair, first row, count)`) and
/// multiplies every activation row by them.
fn product<const CH: usize>(
    isa: Isa,
    acts: &Activations,
    n: usize,
    k: usize,
    m: usize,
    fill: impl Fn(&mut Pair, usize, usize) + Sync,
) -> Vec<f32> {
    let wide = match isa {
        Isa::Avx2 { avx512 } => avx512,
        _ => panic!("the integer prompt kernels need AVX2"),
    };
    assert!(wide || CH == 8, "AVX2 has the q8_0 kernel only");
    assert!(k.is_multiple_of(SUB) && acts.qs.len() == m * k);
    assert!(acts.ascale.len() == m * k / SUB && (!wide || acts.asum.len() == m * k / SUB));
    let subs = k / SUB;
    let mut out = vec![0f32; m * n];
    let shared = SharedOut(out.as_mut_ptr());
    (0..n.div_ceil(COLS)).into_par_iter().for_each_init(
        || Pair::new(k, CH),
        |pair, task| {
            let first = task * COLS;
            let count = COLS.min(n - first);
            fill(pair, first, count);
            for r0 in (0..m).step_by(ROWS) {
                let (a, ascale) = (
                    acts.qs[r0 * k..].as_ptr(),
                    acts.ascale[r0 * subs..].as_ptr(),
                );
                // SAFETY: `product` asserted an AVX2 path, chosen only where the CPU has AVX2
                // and FMA, and with `wide` AVX-512 F, BW, VL and VNNI too; the pair holds
                // `subs` sub-blocks, the activations rows r0.. of `k` bytes and `subs` scales
                // (and, wide, sums); each task writes its own 32 columns of rows r0.. of `out`.
                rows!(ROWS.min(m - r0), R => unsafe {
                    let out = shared.at(r0 * n + first);
                    if wide {
                        let asum = acts.asum[r0 * subs..].as_ptr();
                        let tot = kernel::<R, CH>(pair, a, k, ascale, asum, subs);
                        store(&tot, out, n, count);
                    } else {
                        store_avx2(&kernel_avx2_q8::<R>(pair, a, k, ascale, subs), out, n, count);
                    }
                });
            }
        },
    );
    out
}

/// Writes `R` rows of 32 sums, the first `count` columns of each, `ld` apart.
///
/// # Safety
/// The CPU must have AVX-512 F; `out` valid for `R` rows of `count` at stride `ld`.
#[target_feature(enable = "avx512f")]
unsafe fn store<const R: usize>(tot: &[[__m512; 2]; R], out: *mut f32, ld: usize, count: usize) {
    let masks = [
        ((1u32 << count.min(16)) - 1) as u16,
        ((1u32 << count.saturating_sub(16)) - 1) as u16,
    ];
    for (r, row) in tot.iter().enumerate() {
        for (p, v) in row.iter().enumerate() {
            _mm512_mask_storeu_ps(out.add(r * ld + 16 * p), masks[p], *v);
        }
    }
}

/// `R` activation rows against a task's 32 weight rows, every sub-block: per sub-block the
/// integer sums in i32 lanes (`CH` chunks a panel: 4 nibble chunks holding two groups each, or
/// 8 byte chunks), then scaled into the f32 sums with the offsets' term.
///
/// # Safety
/// The CPU must have AVX-512 F, BW, VL and VNNI and FMA; `a` valid for `R` rows of `lda`
/// bytes (`subs` sub-blocks), `ascale` and `asum` for `R` rows of `subs`; `CH` is 4 or 8.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
unsafe fn kernel<const R: usize, const CH: usize>(
    pair: &Pair,
    a: *const i8,
    lda: usize,
    ascale: *const f32,
    asum: *const f32,
    subs: usize,
) -> [[__m512; 2]; R] {
    assert!(pair.quants.len() >= subs * 2 * CH * 64 && pair.wscale.len() >= subs * COLS);
    let nibble = _mm512_set1_epi8(0x0f);
    let bcast = |p: *const i8| _mm512_set1_epi32((p as *const i32).read_unaligned());
    let mut tot = [[_mm512_setzero_ps(); 2]; R];
    for s in 0..subs {
        let q = pair.quants.as_ptr().add(s * 2 * CH * 64);
        let chunk = |p: usize, g: usize| _mm512_loadu_si512(q.add((p * CH + g) * 64) as *const _);
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        if CH == 4 {
            for g in 0..4 {
                let (v0, v1) = (chunk(0, g), chunk(1, g));
                let lo = [_mm512_and_si512(v0, nibble), _mm512_and_si512(v1, nibble)];
                let hi = [
                    _mm512_and_si512(_mm512_srli_epi16(v0, 4), nibble),
                    _mm512_and_si512(_mm512_srli_epi16(v1, 4), nibble),
                ];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let at = a.add(r * lda + s * SUB + 4 * g);
                    let (x_lo, x_hi) = (bcast(at), bcast(at.add(16)));
                    for p in 0..2 {
                        acc[p] = _mm512_dpbusd_epi32(acc[p], lo[p], x_lo);
                        acc[p] = _mm512_dpbusd_epi32(acc[p], hi[p], x_hi);
                    }
                }
            }
        } else {
            for g in 0..CH {
                let w = [chunk(0, g), chunk(1, g)];
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = bcast(a.add(r * lda + s * SUB + 4 * g));
                    for p in 0..2 {
                        acc[p] = _mm512_dpbusd_epi32(acc[p], w[p], x);
                    }
                }
            }
        }
        let ws = pair.wscale.as_ptr().add(s * COLS);
        let of = pair.offset.as_ptr().add(s * COLS);
        let ws = [_mm512_loadu_ps(ws), _mm512_loadu_ps(ws.add(16))];
        let of = [_mm512_loadu_ps(of), _mm512_loadu_ps(of.add(16))];
        for (r, (tot, acc)) in tot.iter_mut().zip(&acc).enumerate() {
            let sa = _mm512_set1_ps(*ascale.add(r * subs + s));
            let sm = _mm512_set1_ps(*asum.add(r * subs + s));
            for p in 0..2 {
                let sums = _mm512_cvtepi32_ps(acc[p]);
                tot[p] = _mm512_fmadd_ps(sums, _mm512_mul_ps(ws[p], sa), tot[p]);
                tot[p] = _mm512_fmadd_ps(of[p], sm, tot[p]);
            }
        }
    }
    tot
}

/// [`store`] for AVX2's sums: `R` rows of four registers of eight.
///
/// # Safety
/// The CPU must have AVX; `out` valid for `R` rows of `count` at stride `ld`.
#[target_feature(enable = "avx")]
unsafe fn store_avx2<const R: usize>(
    tot: &[[__m256; 4]; R],
    out: *mut f32,
    ld: usize,
    count: usize,
) {
    for (r, row) in tot.iter().enumerate() {
        if count == COLS {
            for (i, v) in row.iter().enumerate() {
                _mm256_storeu_ps(out.add(r * ld + 8 * i), *v);
            }
        } else {
            let mut all = [0f32; COLS];
            for (i, v) in row.iter().enumerate() {
                _mm256_storeu_ps(all.as_mut_ptr().add(8 * i), *v);
            }
            std::ptr::copy_nonoverlapping(all.as_ptr(), out.add(r * ld), count);
        }
    }
}

/// [`kernel`] for `q8_0` on AVX2 (signed weight bytes, `CH` = 8): per group of four inputs,
/// `maddubs(|w|, sign(x, w))` into i16 pairs, `madd` with ones into the i32 lanes; a 64-byte
/// chunk is two registers of eight weight rows.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` valid for `R` rows of `lda` bytes (`subs` sub-blocks),
/// `ascale` for `R` rows of `subs`; the pair filled with signed bytes.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2_q8<const R: usize>(
    pair: &Pair,
    a: *const i8,
    lda: usize,
    ascale: *const f32,
    subs: usize,
) -> [[__m256; 4]; R] {
    const CH: usize = 8;
    assert!(pair.quants.len() >= subs * 2 * CH * 64 && pair.wscale.len() >= subs * COLS);
    let ones = _mm256_set1_epi16(1);
    let mut tot = [[_mm256_setzero_ps(); 4]; R];
    for s in 0..subs {
        let q = pair.quants.as_ptr().add(s * 2 * CH * 64);
        let mut acc = [[_mm256_setzero_si256(); 4]; R];
        for g in 0..CH {
            // Register i: rows 8i..8i + 8 of the 32 (panel i / 2, half i % 2 of its chunk).
            let w: [__m256i; 4] = std::array::from_fn(|i| {
                _mm256_loadu_si256(q.add(((i / 2) * CH + g) * 64 + (i % 2) * 32) as *const _)
            });
            let abs: [__m256i; 4] = std::array::from_fn(|i| _mm256_sign_epi8(w[i], w[i]));
            for (r, acc) in acc.iter_mut().enumerate() {
                let at = a.add(r * lda + s * SUB + 4 * g) as *const i32;
                let x = _mm256_set1_epi32(at.read_unaligned());
                for i in 0..4 {
                    let pairs = _mm256_maddubs_epi16(abs[i], _mm256_sign_epi8(x, w[i]));
                    acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        let ws = pair.wscale.as_ptr().add(s * COLS);
        let ws: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(ws.add(8 * i)));
        for (r, (tot, acc)) in tot.iter_mut().zip(&acc).enumerate() {
            let sa = _mm256_set1_ps(*ascale.add(r * subs + s));
            for i in 0..4 {
                let sums = _mm256_cvtepi32_ps(acc[i]);
                tot[i] = _mm256_fmadd_ps(sums, _mm256_mul_ps(ws[i], sa), tot[i]);
            }
        }
    }
    tot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::matrix::{Format, Matrix};
    use crate::engine::cpu::testutil::random;

    fn avx512() -> Option<Isa> {
        let isa = Isa::Avx2 { avx512: true };
        super::super::isa::test_paths()
            .contains(&isa)
            .then_some(isa)
    }

    /// The portable decoding kernel one row at a time: the same quantized activations and
    /// integer sums (its prompt path would multiply dequantized f32 weights instead).
    fn row_by_row(matrix: &Matrix, x: &[f32], m: usize) -> Vec<f32> {
        let k = x.len() / m;
        x.chunks(k)
            .flat_map(|row| matrix.matmul_t_on(Isa::Portable, row, 1))
            .collect()
    }

    fn close(ours: &[f32], theirs: &[f32]) {
        assert_eq!(ours.len(), theirs.len());
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{i}: {a} vs {b}");
        }
    }

    #[test]
    fn q4_k_products_equal_the_portable_kernels() {
        let Some(isa) = avx512() else { return };
        for (n, k, m) in [(16, 256, 9), (45, 512, 13), (64, 256, 40), (33, 768, 4)] {
            let w = random(n * k, 3);
            let x = random(m * k, 4);
            let matrix = Matrix::from_f32(&w, n, k, Format::Q4K);
            let blocks = matrix.q4_k_bytes().unwrap();
            let ours = q4k_product(isa, blocks, n, k, &x, m);
            let theirs = row_by_row(&matrix, &x, m);
            close(&ours, &theirs);
        }
    }

    #[test]
    fn q8_0_products_equal_the_portable_kernels() {
        let paths = super::super::isa::test_paths();
        for isa in paths.into_iter().filter(|i| matches!(i, Isa::Avx2 { .. })) {
            q8_0_products_on(isa);
        }
    }

    fn q8_0_products_on(isa: Isa) {
        for (n, k, m) in [(16, 32, 9), (45, 96, 13), (64, 256, 40), (33, 768, 4)] {
            let w = random(n * k, 5);
            let x = random(m * k, 6);
            let (qs, scales) = quantize_q8_0(&w, true);
            let ours = q8_0_product(isa, &qs, &scales, n, k, &x, m);
            let theirs = row_by_row(&Matrix::from_f32(&w, n, k, Format::Q8_0), &x, m);
            close(&ours, &theirs);
        }
    }
}
