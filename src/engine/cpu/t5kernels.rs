//! CPU kernels for T5's forward pass over slices, where candle 0.11's generic ops spent more
//! than half of the encoder's time outside the matrix products (measured with `cargo bench
//! --bench t5`; see the README):
//!
//! - multi-head attention of many queries, no mask and no scaling, with an additive bias that
//!   depends only on the key's position minus the query's (T5's relative position bias): the
//!   bias goes into the softmax as each row is exponentiated, both products run on the blocked
//!   gemm, and the heads are read from and written to the `(tokens, heads · d)` rows the linear
//!   layers use, without transposed copies;
//! - T5's layer norm (an RMS norm, scale only);
//! - residual adds and the feed-forward activations, in place.
//!
//! Every kernel takes f32 row-major slices; the callers keep candle's ops for other dtypes and
//! devices.

use rayon::prelude::*;

use super::gemm::{self, Weights};
use super::isa::{isa, Isa};
use super::kernels::{exp_in_place, gelu_tanh_into, max_lanes, rows_dot, sum_lanes};

/// Query rows per attention task: a multiple of the gemm's 6-row tiles, and few enough that a
/// block of scores over 512 keys (192 KB) stays in L2 (48 rows took 7% longer in the encoder).
const QUERY_BLOCK: usize = 96;

/// Queries up to which attention reads keys and values in place, one dot product at a time
/// (decoding), instead of copying each head's keys and values for the gemm.
const FEW_QUERIES: usize = 8;

/// Values per task of the elementwise kernels.
const CHUNK: usize = 16 * 1024;

/// A matrix `(n, k)` as an operand of `x · wᵀ`: in the gemm's panels where `isa` has the
/// blocked kernel, else row-major for the gemm crate.
enum Operand {
    Panels(Vec<f32>),
    Rows(Vec<f32>),
}

impl Operand {
    /// Columns `c0..c0 + n` of the `k` rows of `src` (rows `stride` apart) as `w` `(n, k)`:
    /// `w[j][l] = src[l][c0 + j]`, the transposed block.
    fn transposed(isa: Isa, src: &[f32], stride: usize, c0: usize, n: usize, k: usize) -> Self {
        if gemm::has_kernel(isa) {
            // Panel `p` holds `w[p · NR + j][l]` at `l · NR + j` (see `gemm::pack`): a run of
            // NR consecutive values of row `l` of `src`.
            let nr = gemm::NR;
            let mut panels = vec![0f32; n.div_ceil(nr) * nr * k];
            for (p, panel) in panels.chunks_exact_mut(nr * k).enumerate() {
                let live = nr.min(n - p * nr);
                for (l, dst) in panel.chunks_exact_mut(nr).enumerate() {
                    let at = l * stride + c0 + p * nr;
                    dst[..live].copy_from_slice(&src[at..at + live]);
                }
            }
            Operand::Panels(panels)
        } else {
            let mut rows = vec![0f32; n * k];
            for l in 0..k {
                for (j, &x) in src[l * stride + c0..l * stride + c0 + n].iter().enumerate() {
                    rows[j * k + l] = x;
                }
            }
            Operand::Rows(rows)
        }
    }

    /// Columns `c0..c0 + k` of the `n` rows of `src` (rows `stride` apart) as `w` `(n, k)`.
    fn rows(isa: Isa, src: &[f32], stride: usize, c0: usize, n: usize, k: usize) -> Self {
        let mut rows = vec![0f32; n * k];
        for (j, row) in rows.chunks_exact_mut(k).enumerate() {
            row.copy_from_slice(&src[j * stride + c0..j * stride + c0 + k]);
        }
        if gemm::has_kernel(isa) {
            Operand::Panels(gemm::pack_rows(isa, &rows, n, k))
        } else {
            Operand::Rows(rows)
        }
    }
}

/// `out = x · wᵀ` for `x` `(m, k)`, `w` `(n, k)`, `out` rows `ldc` apart.
#[allow(clippy::too_many_arguments)]
fn product(
    isa: Isa,
    x: &[f32],
    m: usize,
    k: usize,
    w: &Operand,
    n: usize,
    out: &mut [f32],
    ldc: usize,
) {
    match w {
        Operand::Panels(p) => {
            let done = gemm::product(isa, x, m, k, Weights::Panels(p), n, out, ldc);
            assert!(done, "panels are made only where the gemm has a kernel");
        }
        Operand::Rows(r) => gemm::xwt_gemm_crate(x, m, k, r, n, out, ldc),
    }
}

/// Multi-head attention, all heads in one call: queries `q` `(t, heads · d)`, keys and values
/// `k`, `v` `(kv, heads · d)`, row-major as the linear layers give them (head `h` in columns
/// `h · d..(h + 1) · d`). No mask and no `1/sqrt(d)` scaling (T5 folds it into its weights).
/// `bias`, `(heads, t + kv - 1)`, is added to the scores: score `(i, j)` of head `h` gets
/// `bias[h · (t + kv - 1) + j + t - 1 - i]`, a function of `j - i` (see
/// [`relative_bias_table`]). Returns `(t, heads · d)`.
#[allow(clippy::too_many_arguments)]
pub fn attention_biased(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    kv: usize,
    heads: usize,
    d: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    attention_biased_on(isa(), q, k, v, t, kv, heads, d, bias)
}

#[allow(clippy::too_many_arguments)]
fn attention_biased_on(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    kv: usize,
    heads: usize,
    d: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let width = heads * d;
    assert_eq!(q.len(), t * width, "queries");
    assert_eq!(k.len(), kv * width, "keys");
    assert_eq!(v.len(), kv * width, "values");
    let span = (t + kv).saturating_sub(1);
    if let Some(b) = bias {
        assert_eq!(
            b.len(),
            heads * span,
            "one bias per head and relative position"
        );
    }
    let mut out = vec![0f32; t * width];
    if t == 0 || kv == 0 || width == 0 {
        return out;
    }
    if t <= FEW_QUERIES {
        few_queries(isa, q, k, v, t, kv, heads, d, bias, &mut out);
        return out;
    }
    // Each head's keys `(kv, d)` and transposed values `(d, kv)`, so that both products are
    // `x · wᵀ`.
    let per_head: Vec<(Operand, Operand)> = (0..heads)
        .into_par_iter()
        .map(|h| {
            (
                Operand::rows(isa, k, width, h * d, kv, d),
                Operand::transposed(isa, v, width, h * d, d, kv),
            )
        })
        .collect();
    out.par_chunks_mut(QUERY_BLOCK * width)
        .enumerate()
        .for_each(|(block, ob)| {
            let i0 = block * QUERY_BLOCK;
            let rows = ob.len() / width;
            let mut qb = vec![0f32; rows * d];
            let mut scores = vec![0f32; rows * kv];
            let mut inv = vec![0f32; rows];
            for (h, (kh, vt)) in per_head.iter().enumerate() {
                for (r, qr) in qb.chunks_exact_mut(d).enumerate() {
                    let at = (i0 + r) * width + h * d;
                    qr.copy_from_slice(&q[at..at + d]);
                }
                product(isa, &qb, rows, d, kh, kv, &mut scores, kv);
                for (r, row) in scores.chunks_exact_mut(kv).enumerate() {
                    if let Some(b) = bias {
                        let at = h * span + t - 1 - (i0 + r);
                        for (s, &b) in row.iter_mut().zip(&b[at..at + kv]) {
                            *s += b;
                        }
                    }
                    let max = max_lanes(row);
                    for s in row.iter_mut() {
                        *s -= max;
                    }
                    exp_in_place(isa, row);
                    inv[r] = 1.0 / sum_lanes(row);
                }
                // Unnormalised probabilities times values, each row scaled once after.
                product(isa, &scores, rows, kv, vt, d, &mut ob[h * d..], width);
                for (r, &inv) in inv.iter().enumerate() {
                    for y in &mut ob[r * width + h * d..r * width + (h + 1) * d] {
                        *y *= inv;
                    }
                }
            }
        });
    out
}

/// [`attention_biased`] for a few queries: one task per head, reading the keys and values
/// where they are.
#[allow(clippy::too_many_arguments)]
fn few_queries(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    kv: usize,
    heads: usize,
    d: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let width = heads * d;
    let span = t + kv - 1;
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let mut y = vec![0f32; t * d];
            let mut scores = vec![0f32; kv];
            for (i, yi) in y.chunks_exact_mut(d).enumerate() {
                let qi = &q[i * width + h * d..i * width + (h + 1) * d];
                for (j, s) in scores.iter_mut().enumerate() {
                    let mut dot = [0f32];
                    rows_dot(
                        isa,
                        qi,
                        &k[j * width + h * d..j * width + (h + 1) * d],
                        &mut dot,
                    );
                    *s = dot[0];
                }
                if let Some(b) = bias {
                    let at = h * span + t - 1 - i;
                    for (s, &b) in scores.iter_mut().zip(&b[at..at + kv]) {
                        *s += b;
                    }
                }
                let max = max_lanes(&scores);
                for s in scores.iter_mut() {
                    *s -= max;
                }
                exp_in_place(isa, &mut scores);
                let inv = 1.0 / sum_lanes(&scores);
                for (j, &p) in scores.iter().enumerate() {
                    let p = p * inv;
                    let vj = &v[j * width + h * d..j * width + (h + 1) * d];
                    for (y, &v) in yi.iter_mut().zip(vj) {
                        *y += p * v;
                    }
                }
            }
            y
        })
        .collect();
    for (h, y) in per_head.iter().enumerate() {
        for (i, yi) in y.chunks_exact(d).enumerate() {
            out[i * width + h * d..i * width + (h + 1) * d].copy_from_slice(yi);
        }
    }
}

/// The bias table [`attention_biased`] reads for queries at positions `q0..q0 + t` over keys
/// at `0..kv`: entry `(h, idx)` is `bias(h, j - i)` for the relative position
/// `idx - (t - 1) - q0`, where `bias(h, rel)` is `embeddings[bucket(rel) · heads + h]`.
pub fn relative_bias_table(
    embeddings: &[f32],
    heads: usize,
    q0: usize,
    t: usize,
    kv: usize,
    bucket: impl Fn(i64) -> usize,
) -> Vec<f32> {
    let span = (t + kv).saturating_sub(1);
    let mut table = vec![0f32; heads * span];
    for idx in 0..span {
        let b = bucket(idx as i64 - (t as i64 - 1) - q0 as i64);
        for h in 0..heads {
            table[h * span + idx] = embeddings[b * heads + h];
        }
    }
    table
}

/// T5's layer norm of each row of `w.len()` values: `x / sqrt(mean(x²) + eps) · w`, no mean
/// removed and no bias.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    rms_norm_on(isa(), x, w, eps)
}

fn rms_norm_on(isa: Isa, x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let n = w.len();
    assert!(
        n > 0 && x.len().is_multiple_of(n),
        "rows of the weight's length"
    );
    let mut out = vec![0f32; x.len()];
    let rows_per_task = (CHUNK / n).max(1);
    out.par_chunks_mut(rows_per_task * n)
        .zip(x.par_chunks(rows_per_task * n))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                let mut sq = [0f32];
                rows_dot(isa, x, x, &mut sq);
                let scale = 1.0 / (sq[0] / n as f32 + eps).sqrt();
                for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                    *o = x * scale * w;
                }
            }
        });
    out
}

/// `x += y`.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    x.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK))
        .for_each(|(x, y)| {
            for (x, &y) in x.iter_mut().zip(y) {
                *x += y;
            }
        });
}

/// `x *= y`, elementwise.
pub fn mul_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len());
    x.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK))
        .for_each(|(x, y)| {
            for (x, &y) in x.iter_mut().zip(y) {
                *x *= y;
            }
        });
}

/// `x = max(x, 0)`.
pub fn relu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(|x| {
        for x in x {
            *x = x.max(0.0);
        }
    });
}

/// GELU, the tanh approximation (transformers' `gelu_new`), as [`super::kernels::gelu_tanh`].
pub fn gelu_tanh_in_place(x: &mut [f32]) {
    gelu_tanh_in_place_on(isa(), x)
}

fn gelu_tanh_in_place_on(isa: Isa, x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(|x| {
        let input = x.to_vec();
        gelu_tanh_into(isa, &input, x);
    });
}

/// SiLU, `x · sigmoid(x) = x / (1 + e^-x)`.
pub fn silu_in_place(x: &mut [f32]) {
    silu_in_place_on(isa(), x)
}

fn silu_in_place_on(isa: Isa, x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(|x| {
        let mut e: Vec<f32> = x.iter().map(|&v| -v).collect();
        exp_in_place(isa, &mut e);
        for (x, e) in x.iter_mut().zip(e) {
            *x /= 1.0 + e;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::isa::test_paths;
    use crate::engine::cpu::testutil::{max_diff, random};

    /// Attention computed plainly, in f64: scores, bias, softmax, weighted values.
    #[allow(clippy::too_many_arguments)]
    fn reference_attention(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        t: usize,
        kv: usize,
        heads: usize,
        d: usize,
        bias: impl Fn(usize, usize, usize) -> f32,
    ) -> Vec<f32> {
        let width = heads * d;
        let mut out = vec![0f32; t * width];
        for h in 0..heads {
            for i in 0..t {
                let scores: Vec<f64> = (0..kv)
                    .map(|j| {
                        (0..d)
                            .map(|c| {
                                q[i * width + h * d + c] as f64 * k[j * width + h * d + c] as f64
                            })
                            .sum::<f64>()
                            + bias(h, i, j) as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..d {
                    out[i * width + h * d + c] = (0..kv)
                        .map(|j| e[j] / sum * v[j * width + h * d + c] as f64)
                        .sum::<f64>() as f32;
                }
            }
        }
        out
    }

    #[test]
    fn biased_attention_equals_the_plain_computation() {
        for isa in test_paths() {
            // Blocks of 96 queries with a partial last one, head widths on and off the gemm's
            // 16 columns, as many keys as queries (the encoder), fewer, more; a few queries
            // (read in place): one late in a sequence (a decoder step), one over many keys
            // (cross-attention), eight.
            for (t, kv, heads, d, q0) in [
                (200, 200, 3, 16, 0),
                (9, 5, 2, 17, 0),
                (50, 70, 1, 33, 0),
                (1, 9, 4, 8, 8),
                (1, 300, 2, 64, 0),
                (8, 20, 3, 16, 12),
            ] {
                let width = heads * d;
                let seed = (t * 1000 + kv) as u64;
                let q = random(t * width, seed);
                let k = random(kv * width, seed + 1);
                let v = random(kv * width, seed + 2);
                // Scale the scores up so that the softmax is far from uniform.
                let q: Vec<f32> = q.iter().map(|x| x * 3.0).collect();
                let buckets = 7;
                let emb: Vec<f32> = random(buckets * heads, seed + 3)
                    .iter()
                    .map(|x| x * 4.0)
                    .collect();
                let bucket = |rel: i64| (rel + 1000) as usize % buckets;
                let table = relative_bias_table(&emb, heads, q0, t, kv, bucket);
                let want = reference_attention(&q, &k, &v, t, kv, heads, d, |h, i, j| {
                    emb[bucket(j as i64 - (q0 + i) as i64) * heads + h]
                });
                let got = attention_biased_on(isa, &q, &k, &v, t, kv, heads, d, Some(&table));
                let diff = max_diff(&got, &want);
                assert!(
                    diff < 2e-5,
                    "{isa} t {t} kv {kv} heads {heads} d {d}: {diff}"
                );
                // Without a bias.
                let want = reference_attention(&q, &k, &v, t, kv, heads, d, |_, _, _| 0.0);
                let got = attention_biased_on(isa, &q, &k, &v, t, kv, heads, d, None);
                let diff = max_diff(&got, &want);
                assert!(diff < 2e-5, "{isa} t {t} kv {kv} no bias: {diff}");
            }
        }
    }

    #[test]
    fn rms_norm_equals_the_plain_computation() {
        for isa in test_paths() {
            for (rows, n) in [(3, 64), (70, 17), (1, 1), (5, 512)] {
                let x: Vec<f32> = random(rows * n, n as u64).iter().map(|v| v * 5.0).collect();
                let w = random(n, 9);
                let got = rms_norm_on(isa, &x, &w, 1e-6);
                let mut want = vec![0f32; rows * n];
                for r in 0..rows {
                    let row = &x[r * n..(r + 1) * n];
                    let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
                    let scale = 1.0 / (ms + 1e-6).sqrt();
                    for c in 0..n {
                        want[r * n + c] = (row[c] as f64 * scale * w[c] as f64) as f32;
                    }
                }
                let diff = max_diff(&got, &want);
                assert!(diff < 1e-5, "{isa} rows {rows} n {n}: {diff}");
            }
        }
    }

    #[test]
    fn elementwise_kernels_equal_the_plain_formulas() {
        // 40,000 values: tasks of 16,384 and a tail off the vector width.
        let x: Vec<f32> = random(40_000, 5).iter().map(|v| v * 12.0).collect();
        let y = random(40_000, 6);
        let mut sum = x.clone();
        add_in_place(&mut sum, &y);
        let mut prod = x.clone();
        mul_in_place(&mut prod, &y);
        let mut relu = x.clone();
        relu_in_place(&mut relu);
        for i in 0..x.len() {
            assert_eq!(sum[i], x[i] + y[i]);
            assert_eq!(prod[i], x[i] * y[i]);
            assert_eq!(relu[i], if x[i] > 0.0 { x[i] } else { 0.0 });
        }
        for isa in test_paths() {
            let mut silu = x.clone();
            silu_in_place_on(isa, &mut silu);
            let want: Vec<f32> = x
                .iter()
                .map(|&v| (v as f64 / (1.0 + (-v as f64).exp())) as f32)
                .collect();
            assert!(max_diff(&silu, &want) < 1e-5, "{isa} silu");
            let mut gelu = x.clone();
            gelu_tanh_in_place_on(isa, &mut gelu);
            let want: Vec<f32> = x
                .iter()
                .map(|&v| {
                    let v = v as f64;
                    let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
                    (0.5 * v * (1.0 + inner.tanh())) as f32
                })
                .collect();
            assert!(max_diff(&gelu, &want) < 1e-5, "{isa} gelu");
        }
    }
}
