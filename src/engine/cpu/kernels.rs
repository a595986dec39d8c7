//! CPU kernels for what candle 0.11's generic CPU ops do slowly at GPT-2's shapes (measured in
//! `cargo bench --bench engine`; see the README):
//!
//! - attention of queries over the cache: a few (decoding) fused into one pass per head, many
//!   (a prompt) in causal chunks on quill's gemm;
//! - GELU (tanh form): candle maps `tanh` on one thread; here `exp`, on every core;
//! - the causal, scaled softmax of attention scores, without building a mask: rows only touch
//!   the positions they may see.
//!
//! Each kernel applies to f32 tensors on the CPU and returns `None` otherwise, so that callers
//! fall back to candle's ops (f16, GPUs).

use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;

use super::isa::{isa, Isa};

/// Queries up to which [`attention`] reads the cache in place, one fused pass per head.
pub const MAX_ROWS: usize = 8;

/// Runs `f` on the f32 data of a contiguous CPU tensor.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    with_slice(t, f)
}

/// Runs `f` on the data of a contiguous CPU tensor of `T`s.
fn with_slice<T: candle_core::WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Option<R> {
    if t.dtype() != T::DTYPE || !t.device().is_cpu() {
        return None;
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let offsets = layout.contiguous_offsets()?;
    let data = cpu.as_slice::<T>().ok()?;
    Some(f(&data[offsets.0..offsets.1]))
}

/// `out[r] = dot(xs[r], w)` for each row `r` of `xs` (rows of `w.len()`).
// One arm on targets without SIMD kernels.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(clippy::match_single_binding)
)]
pub(super) fn rows_dot(isa: Isa, xs: &[f32], w: &[f32], out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 is chosen only where the CPU has AVX2, FMA and F16C (cpu::isa).
        Isa::Avx2 { .. } => unsafe { rows_dot_fma(xs, w, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: Isa::Neon is chosen only where the CPU has NEON (cpu::isa).
        Isa::Neon { .. } => unsafe { super::neon::rows_dot(xs, w, out) },
        _ => rows_dot_portable(xs, w, out),
    }
}

/// Lanes summed independently: wide enough for two 8-float vectors.
const LANES: usize = 16;

/// The largest value of `xs` (NaN-free), in [`LANES`] independent lanes (a fold one value at a
/// time waits on each comparison).
pub fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let full = xs.len() / LANES * LANES;
    for c in xs[..full].chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    xs[full..]
        .iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// `Σ xs`, in [`LANES`] independent lanes.
pub(super) fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let full = xs.len() / LANES * LANES;
    for c in xs[..full].chunks_exact(LANES) {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + xs[full..].iter().sum::<f32>()
}

macro_rules! rows_dot_body {
    ($xs:expr, $w:expr, $out:expr, $fma:expr) => {{
        let (xs, w, out): (&[f32], &[f32], &mut [f32]) = ($xs, $w, $out);
        let k = w.len();
        let full = k / LANES * LANES;
        for (r, o) in out.iter_mut().enumerate() {
            let x = &xs[r * k..(r + 1) * k];
            let mut acc = [0f32; LANES];
            for (xc, wc) in x[..full]
                .chunks_exact(LANES)
                .zip(w[..full].chunks_exact(LANES))
            {
                for l in 0..LANES {
                    acc[l] = $fma(xc[l], wc[l], acc[l]);
                }
            }
            let mut s: f32 = acc.iter().sum();
            for i in full..k {
                s += x[i] * w[i];
            }
            *o = s;
        }
    }};
}

fn rows_dot_portable(xs: &[f32], w: &[f32], out: &mut [f32]) {
    rows_dot_body!(xs, w, out, |a: f32, b: f32, c: f32| a * b + c)
}

/// Compiled for AVX2 and FMA so that the sixteen lanes become two 8-float FMAs.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_dot_fma(xs: &[f32], w: &[f32], out: &mut [f32]) {
    rows_dot_body!(xs, w, out, |a: f32, b: f32, c: f32| a.mul_add(b, c))
}

/// `x = e^x` for each value, eight at a time with AVX2 or NEON where the CPU has it (libm's
/// `expf` one at a time was 6% of a prompt's time, in GELU and softmax); sixteen at a time
/// with AVX-512 (the same operations, so the same values).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(clippy::match_single_binding)
)]
pub(super) fn exp_in_place(isa: Isa, xs: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 { avx512: true } is chosen only where the CPU has AVX2, FMA, F16C
        // and AVX-512 F, BW, VL and VNNI (cpu::isa).
        Isa::Avx2 { avx512: true } => unsafe { exp_avx512(xs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Isa::Avx2 is chosen only where the CPU has AVX2, FMA and F16C (cpu::isa).
        Isa::Avx2 { .. } => unsafe { exp_avx2(xs) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: Isa::Neon is chosen only where the CPU has NEON (cpu::isa).
        Isa::Neon { .. } => unsafe { super::neon::exp_in_place(xs) },
        _ => {
            for x in xs {
                *x = x.exp();
            }
        }
    }
}

/// `Σ e^(x - shift)` over `xs`, summed in f64, the exponentials eight at a time as in
/// [`exp_in_place`] (within 2 ulp of `expf`): a generated token's log-probability sums 50,257
/// of them, which f64 `exp` one at a time made most of the time spent sampling. The sums run
/// in eight f64 lanes: one running sum waited on each addition (about 50 µs a token).
pub fn sum_exp(xs: &[f32], shift: f32) -> f64 {
    let isa = isa();
    let mut buf = [0f32; 512];
    let mut lanes = [0f64; 8];
    let mut rest = 0f64;
    for chunk in xs.chunks(buf.len()) {
        let b = &mut buf[..chunk.len()];
        for (o, &x) in b.iter_mut().zip(chunk) {
            *o = x - shift;
        }
        exp_in_place(isa, b);
        let mut eights = b.chunks_exact(lanes.len());
        for c in &mut eights {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += f64::from(v);
            }
        }
        rest += eights
            .remainder()
            .iter()
            .map(|&v| f64::from(v))
            .sum::<f64>();
    }
    lanes.iter().sum::<f64>() + rest
}

/// The SIMD `exp` kernels' constants (AVX2 here, NEON in `neon.rs`): the clamp, ln 2 in two
/// parts (so that n · ln 2 is exact enough), and Cephes' polynomial for `e^r`, highest degree
/// first.
pub(super) const EXP_MIN: f32 = -87.3;
pub(super) const EXP_MAX: f32 = 88.3;
pub(super) const EXP_LN2_HI: f32 = 0.693_359_4;
pub(super) const EXP_LN2_LO: f32 = -2.121_944_4e-4;
pub(super) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `e^x = 2^n · e^r` with `n = round(x / ln 2)` and `|r| <= ln 2 / 2`, `e^r` by Cephes'
/// degree-6 polynomial (within 2 ulp of `expf` over the clamped range; below `-87.3` it gives
/// about 1e-38 instead of 0, above 88.3 about 2e38 instead of infinity).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let full = xs.len() / 8 * 8;
    let set = _mm256_set1_ps;
    for chunk in xs[..full].chunks_exact_mut(8) {
        let x = _mm256_loadu_ps(chunk.as_ptr());
        let x = _mm256_min_ps(_mm256_max_ps(x, set(EXP_MIN)), set(EXP_MAX));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, set(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, set(EXP_LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, set(EXP_LN2_LO), r);
        let mut p = set(EXP_POLY[0]);
        for c in &EXP_POLY[1..] {
            p = _mm256_fmadd_ps(p, r, set(*c));
        }
        let e = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, set(1.0)));
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_storeu_ps(
            chunk.as_mut_ptr(),
            _mm256_mul_ps(e, _mm256_castsi256_ps(pow2)),
        );
    }
    for x in &mut xs[full..] {
        *x = x.exp();
    }
}

/// [`exp_avx2`] sixteen at a time, the same operations in 512-bit registers; the last fewer
/// than sixteen go to [`exp_avx2`].
///
/// # Safety
/// The CPU must have AVX2, FMA and AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn exp_avx512(xs: &mut [f32]) {
    use std::arch::x86_64::*;
    let full = xs.len() / 16 * 16;
    let set = _mm512_set1_ps;
    for chunk in xs[..full].chunks_exact_mut(16) {
        let x = _mm512_loadu_ps(chunk.as_ptr());
        let x = _mm512_min_ps(_mm512_max_ps(x, set(EXP_MIN)), set(EXP_MAX));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, set(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, set(EXP_LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, set(EXP_LN2_LO), r);
        let mut p = set(EXP_POLY[0]);
        for c in &EXP_POLY[1..] {
            p = _mm512_fmadd_ps(p, r, set(*c));
        }
        let e = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, set(1.0)));
        let pow2 = _mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_cvtps_epi32(n),
            _mm512_set1_epi32(127),
        ));
        _mm512_storeu_ps(
            chunk.as_mut_ptr(),
            _mm512_mul_ps(e, _mm512_castsi512_ps(pow2)),
        );
    }
    exp_avx2(&mut xs[full..]);
}

/// GPT-2's GELU, the tanh approximation, with `tanh(z) = 1 - 2 / (exp(2z) + 1)`.
pub fn gelu_tanh(x: &Tensor) -> candle_core::Result<Option<Tensor>> {
    gelu_tanh_on(isa(), x)
}

/// GELU (tanh form) of `xs` into `out`, on one thread.
pub(super) fn gelu_tanh_into(isa: Isa, xs: &[f32], out: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (y, &v) in out.iter_mut().zip(xs) {
        *y = 2.0 * SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v);
    }
    exp_in_place(isa, out);
    for (y, &v) in out.iter_mut().zip(xs) {
        let tanh = 1.0 - 2.0 / (*y + 1.0);
        *y = 0.5 * v * (1.0 + tanh);
    }
}

fn gelu_tanh_on(isa: Isa, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let x = x.contiguous()?;
    let out = with_f32(&x, |xs| {
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(4096)
            .zip(xs.par_chunks(4096))
            .for_each(|(o, i)| gelu_tanh_into(isa, i, o));
        out
    });
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, x.shape(), x.device())?)),
        None => Ok(None),
    }
}

/// `a + b` for two contiguous f32 CPU tensors of one shape (a residual connection), split
/// over quill's threads past [`PARALLEL_ADD`] values. candle's own add sends large tensors to
/// its barrier pool, a second set of threads that spin on the same cores for a while after
/// each job: perf put that spinning at 7% of an f16 prompt on 2 cores. Other shapes and
/// dtypes take candle's add.
pub fn add(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if a.shape() == b.shape() {
        let sum = with_f32(a, |x| {
            with_f32(b, |y| {
                let mut out = vec![0f32; x.len()];
                let add = |(o, (x, y)): (&mut [f32], (&[f32], &[f32]))| {
                    for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                        *o = x + y;
                    }
                };
                if x.len() < PARALLEL_ADD {
                    add((&mut out, (x, y)));
                } else {
                    out.par_chunks_mut(PARALLEL_ADD / 4)
                        .zip(
                            x.par_chunks(PARALLEL_ADD / 4)
                                .zip(y.par_chunks(PARALLEL_ADD / 4)),
                        )
                        .for_each(add);
                }
                out
            })
        })
        .flatten();
        if let Some(sum) = sum {
            return Tensor::from_vec(sum, a.shape(), a.device());
        }
    }
    a + b
}

/// `t` as `dtype`; f32 to f16 (keys and values going into an f16 cache) by `half`'s slice
/// conversion, eight values an instruction with F16C, where candle's `to_dtype` converts one
/// value at a time and asks the CPU for F16C at each (2% of an f16 prompt). Anything else goes
/// to candle.
pub fn to_dtype(t: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if dtype == DType::F16 {
        if let Some(halves) = with_f32(t, to_halves) {
            return Tensor::from_vec(halves, t.shape(), t.device());
        }
    }
    t.to_dtype(dtype)
}

/// `xs` rounded to f16 (to nearest, ties to even, as `f16::from_f32`), by `half`'s slice
/// conversion (F16C's eight at a time where the CPU has it), 64K values a task on the pool's
/// threads: the cache's keys and values, and f32 weights packed as f16 (one value at a time,
/// converting an f32 checkpoint to f16 took a third of its load).
pub(super) fn to_halves(xs: &[f32]) -> Vec<half::f16> {
    use half::slice::HalfFloatSliceExt;
    const CHUNK: usize = 1 << 16;
    let mut out = vec![half::f16::ZERO; xs.len()];
    if xs.len() <= CHUNK {
        // A decoding step's keys or values: no task to hand out.
        out.convert_from_f32_slice(xs);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(o, x)| o.convert_from_f32_slice(x));
    }
    out
}

/// Values from which [`add`] splits its work over threads (below, one thread is faster than
/// handing work out).
const PARALLEL_ADD: usize = 1 << 16;

/// `softmax(scale * scores)` over the last dimension of `(heads, t, past + t)` scores, where
/// row `i` sees positions `0..=past + i` only (the rest come out 0).
pub fn causal_softmax(
    scores: &Tensor,
    past: usize,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    causal_softmax_on(isa(), scores, past, scale)
}

fn causal_softmax_on(
    isa: Isa,
    scores: &Tensor,
    past: usize,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    let (h, t, s) = scores.dims3()?;
    if s != past + t {
        return Ok(None);
    }
    let scores = scores.contiguous()?;
    let out = with_f32(&scores, |xs| {
        let mut out = vec![0f32; h * t * s];
        out.par_chunks_mut(s).enumerate().for_each(|(row, o)| {
            let i = row % t;
            let seen = past + i + 1;
            let x = &xs[row * s..row * s + seen];
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
            for (y, &v) in o[..seen].iter_mut().zip(x) {
                *y = v * scale - max;
            }
            exp_in_place(isa, &mut o[..seen]);
            let sum: f32 = o[..seen].iter().sum();
            let inv = 1.0 / sum;
            for y in &mut o[..seen] {
                *y *= inv;
            }
        });
        out
    });
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, (h, t, s), scores.device())?)),
        None => Ok(None),
    }
}

/// Causal attention of queries over a cache: `q` `(heads, t, d)` are the queries at positions
/// `past..past + t`, `keys` and `values` `(heads, capacity, d)` hold positions `0..past + t`.
/// Query `i` sees keys `0..=past + i`. Returns `(heads, t, d)`: up to [`MAX_ROWS`] queries
/// fused, more on the gemm ([`attention_prompt`]); `None` where neither applies (not f32 on
/// the CPU, or a prompt on a path without a gemm kernel), for candle's ops.
pub fn attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    past: usize,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    attention_on(isa(), q, keys, values, past, scale)
}

fn attention_on(
    isa: Isa,
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    past: usize,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    let (h, t, d) = q.dims3()?;
    let (hk, cap, dk) = keys.dims3()?;
    if t == 0 || hk != h || dk != d || past + t > cap || q.dtype() != DType::F32 {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let shape = (h, t, d, cap);
    match keys.dtype() {
        DType::F16 => attention_of::<half::f16>(isa, &q, keys, values, past, scale, shape),
        _ => attention_of::<f32>(isa, &q, keys, values, past, scale, shape),
    }
}

/// [`attention_on`] over a cache of `T`s: a few queries fused, more on the gemm.
fn attention_of<T: CacheValue>(
    isa: Isa,
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    past: usize,
    scale: f32,
    shape: (usize, usize, usize, usize),
) -> candle_core::Result<Option<Tensor>> {
    if shape.1 <= MAX_ROWS {
        attention_few::<T>(isa, q, keys, values, past, scale, shape)
    } else {
        attention_prompt::<T>(isa, q, keys, values, past, scale, shape)
    }
}

/// [`attention`] of a few queries, fused: per head, each query's scores, softmax and values
/// in one pass over the cache. `shape` is `(heads, t, d, capacity)`, checked by the caller;
/// `q` is contiguous.
fn attention_few<T: CacheValue>(
    isa: Isa,
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    past: usize,
    scale: f32,
    (h, t, d, cap): (usize, usize, usize, usize),
) -> candle_core::Result<Option<Tensor>> {
    let Some(qs) = with_f32(q, |s| s.to_vec()) else {
        return Ok(None);
    };
    let out = with_slice::<T, _>(keys, |ks| {
        with_slice::<T, _>(values, |vs| {
            let mut out = vec![0f32; h * t * d];
            out.par_chunks_mut(t * d).enumerate().for_each(|(head, o)| {
                let kh = &ks[head * cap * d..(head * cap + past + t) * d];
                let vh = &vs[head * cap * d..(head * cap + past + t) * d];
                let mut scores = vec![0f32; past + t];
                for i in 0..t {
                    let seen = past + i + 1;
                    let qi = &qs[(head * t + i) * d..(head * t + i + 1) * d];
                    let oi = &mut o[i * d..(i + 1) * d];
                    attend(isa, qi, kh, vh, scale, &mut scores[..seen], oi);
                }
            });
            out
        })
    })
    .flatten();
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, (h, t, d), q.device())?)),
        None => Ok(None),
    }
}

/// Attention of `n` candidates' next queries `q` `(heads, n, d)`, each over the shared
/// prompt's `p` cached positions (`prompt_keys`, `prompt_values` `(heads, capacity, d)`, f32
/// or f16) and its own `steps` positions (`own_keys`, `own_values` `(heads, n, own_capacity,
/// d)`, f32) in one softmax: what [`crate::engine::nets::gpt2::Gpt2::forward_shared`] needs.
/// Returns `(heads, n, d)`; `None` where the tensors are not f32 (or an f16 prompt) on the CPU
/// or the shapes do not fit, for candle's ops.
#[allow(clippy::too_many_arguments)]
pub fn attention_shared(
    q: &Tensor,
    prompt_keys: &Tensor,
    prompt_values: &Tensor,
    p: usize,
    own_keys: &Tensor,
    own_values: &Tensor,
    steps: usize,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    let prompt = (prompt_keys, prompt_values, p);
    let own = (own_keys, own_values, steps);
    match prompt_keys.dtype() {
        DType::F16 => attention_shared_of::<half::f16>(isa(), q, prompt, own, scale),
        _ => attention_shared_of::<f32>(isa(), q, prompt, own, scale),
    }
}

/// Keys, values and how many of their positions are seen.
type Seen<'a> = (&'a Tensor, &'a Tensor, usize);

/// [`attention_shared`] over a prompt cache of `T`s.
fn attention_shared_of<T: CacheValue>(
    isa: Isa,
    q: &Tensor,
    (pk, pv, p): Seen,
    (ok, ov, steps): Seen,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    let (h, n, d) = q.dims3()?;
    let (hp, pcap, dp) = pk.dims3()?;
    let (ho, no, ocap, dq) = ok.dims4()?;
    if (hp, dp, ho, no, dq) != (h, d, h, n, d)
        || pv.dims() != pk.dims()
        || ov.dims() != ok.dims()
        || p > pcap
        || steps > ocap
        || q.dtype() != DType::F32
    {
        return Ok(None);
    }
    let Some(qs) = with_f32(&q.contiguous()?, |s| s.to_vec()) else {
        return Ok(None);
    };
    let out = with_slice::<T, _>(pk, |pks| {
        with_slice::<T, _>(pv, |pvs| {
            with_f32(ok, |oks| {
                with_f32(ov, |ovs| {
                    let mut out = vec![0f32; h * n * d];
                    out.par_chunks_mut(n * d).enumerate().for_each(|(head, o)| {
                        let prompt = head * pcap * d..(head * pcap + p) * d;
                        let (pkh, pvh) = (&pks[prompt.clone()], &pvs[prompt]);
                        let mut scores = vec![0f32; p + steps];
                        for (i, oi) in o.chunks_exact_mut(d).enumerate() {
                            let qi = &qs[(head * n + i) * d..(head * n + i + 1) * d];
                            let first = (head * n + i) * ocap * d;
                            let own = first..first + steps * d;
                            let (okh, ovh) = (&oks[own.clone()], &ovs[own]);
                            let (sp, so) = scores.split_at_mut(p);
                            scores_of(isa, qi, pkh, scale, sp);
                            scores_of(isa, qi, okh, scale, so);
                            softmax_in_place(isa, &mut scores);
                            weighted_values(isa, &scores[..p], pvh, oi, true);
                            weighted_values(isa, &scores[p..], ovh, oi, false);
                        }
                    });
                    out
                })
            })
        })
    })
    .flatten()
    .flatten()
    .flatten();
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, (h, n, d), q.device())?)),
        None => Ok(None),
    }
}

/// Query rows of a head that [`attention_prompt`] multiplies together: the rows of a chunk see
/// at most the keys its last row sees, so the masked upper triangle costs half a chunk a row.
const PROMPT_CHUNK: usize = 64;

/// [`attention`] of many queries (a prompt), on quill's gemm: per head and chunk of
/// [`PROMPT_CHUNK`] query rows, the scores against the keys the chunk's last row sees (one
/// product), the causal scaled softmax in place (positions a row may not see set to 0), and
/// the weighted values (a second product, with the values transposed). `shape` and `q` as
/// [`attention_few`]; `None` where the path has no gemm kernel.
fn attention_prompt<T: CacheValue>(
    isa: Isa,
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    past: usize,
    scale: f32,
    (h, t, d, cap): (usize, usize, usize, usize),
) -> candle_core::Result<Option<Tensor>> {
    use super::gemm::{self, Weights};
    if !gemm::has_kernel(isa) {
        return Ok(None);
    }
    let out = with_f32(q, |qs| {
        with_slice::<T, _>(keys, |ks| {
            with_slice::<T, _>(values, |vs| {
                let mut out = vec![0f32; h * t * d];
                let chunks = t.div_ceil(PROMPT_CHUNK);
                // One task per (head, chunk): a head's output is its own t rows.
                let tasks: Vec<(usize, &mut [f32])> = out
                    .chunks_mut(t * d)
                    .enumerate()
                    .flat_map(|(head, oh)| oh.chunks_mut(PROMPT_CHUNK * d).map(move |o| (head, o)))
                    .collect();
                debug_assert_eq!(tasks.len(), h * chunks);
                tasks
                    .into_par_iter()
                    .enumerate()
                    .for_each(|(task, (head, o))| {
                        let first = (task % chunks) * PROMPT_CHUNK;
                        let rows = PROMPT_CHUNK.min(t - first);
                        let o = &mut o[..rows * d];
                        let seen = past + first + rows;
                        let kh = &ks[head * cap * d..(head * cap + seen) * d];
                        let vh = &vs[head * cap * d..(head * cap + seen) * d];
                        let qh = &qs[(head * t + first) * d..(head * t + first + rows) * d];
                        let mut scores = vec![0f32; rows * seen];
                        let mut wide_kh = Vec::new();
                        let kh = as_f32_in(kh, &mut wide_kh);
                        // The keys `(seen, d)` in the gemm's panels, by its 8x8 transposes.
                        let nr = gemm::NR;
                        let mut key_panels = vec![0f32; seen.div_ceil(nr) * nr * d];
                        for (p, panel) in key_panels.chunks_exact_mut(nr * d).enumerate() {
                            let live = nr.min(seen - p * nr);
                            let keys = &kh[p * nr * d..(p * nr + live) * d];
                            gemm::pack_panel(isa, keys, live, d, panel);
                        }
                        let done = gemm::product(
                            isa,
                            qh,
                            rows,
                            d,
                            Weights::Panels(&key_panels),
                            seen,
                            &mut scores,
                            seen,
                        );
                        assert!(done, "has_kernel(isa) was checked");
                        for (i, row) in scores.chunks_exact_mut(seen).enumerate() {
                            let visible = past + first + i + 1;
                            let (x, hidden) = row.split_at_mut(visible);
                            let max = max_lanes(x) * scale;
                            for y in x.iter_mut() {
                                *y = *y * scale - max;
                            }
                            exp_in_place(isa, x);
                            let inv = 1.0 / sum_lanes(x);
                            for y in x.iter_mut() {
                                *y *= inv;
                            }
                            hidden.fill(0.0);
                        }
                        let mut wide_vh = Vec::new();
                        let vh = as_f32_in(vh, &mut wide_vh);
                        // The values transposed, `(d, seen)`, in panels: panel `p` holds
                        // columns `p · NR..` of each value row, a plain copy of each run.
                        let mut value_panels = vec![0f32; d.div_ceil(nr) * nr * seen];
                        for (p, panel) in value_panels.chunks_exact_mut(nr * seen).enumerate() {
                            gemm::column_panel(vh, d, p, panel);
                        }
                        let values = Weights::Panels(&value_panels);
                        let done = gemm::product(isa, &scores, rows, seen, values, d, o, d);
                        assert!(done, "has_kernel(isa) was checked");
                    });
                out
            })
        })
    })
    .flatten()
    .flatten();
    match out {
        Some(out) => Ok(Some(Tensor::from_vec(out, (h, t, d), q.device())?)),
        None => Ok(None),
    }
}

/// What a cache row holds: f32, or f16 ([`cache_dtype`]), read as f32.
pub(super) trait CacheValue: candle_core::WithDType {
    /// The values as f32 where they are f32 (the SIMD dot products' operands).
    fn as_f32(xs: &[Self]) -> Option<&[f32]>;

    /// `out = xs` widened to f32 (SIMD where the CPU has it).
    fn widen(xs: &[Self], out: &mut [f32]);

    /// Eight values from `p`, widened.
    ///
    /// # Safety
    /// The CPU must have AVX and F16C; `p` valid for 8 values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;

    /// Four values from `p`, widened.
    ///
    /// # Safety
    /// The CPU must have NEON; `p` valid for 4 values.
    #[cfg(target_arch = "aarch64")]
    unsafe fn load4(p: *const Self) -> std::arch::aarch64::float32x4_t;
}

impl CacheValue for f32 {
    fn as_f32(xs: &[f32]) -> Option<&[f32]> {
        Some(xs)
    }

    fn widen(xs: &[f32], out: &mut [f32]) {
        out.copy_from_slice(xs);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    unsafe fn load4(p: *const f32) -> std::arch::aarch64::float32x4_t {
        // SAFETY: the caller's.
        unsafe { super::neon::load_f32(p) }
    }
}

impl CacheValue for half::f16 {
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }

    fn widen(xs: &[Self], out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        xs.convert_to_f32_slice(out);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn load8(p: *const half::f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    unsafe fn load4(p: *const half::f16) -> std::arch::aarch64::float32x4_t {
        // SAFETY: the caller's.
        unsafe { super::neon::load_f16(p) }
    }
}

/// The dtype a sequence's cached keys and values take on the CPU, for weights of `format`:
/// f16 where the weights are not f32 and the attention kernels read f16 (the AVX2 and NEON
/// paths), as llama.cpp's cache; else f32. Decoding reads the whole cache each token (at 600 positions,
/// 44 MB at f32 for GPT-2 124M, a third of its `q8_0` weights), so half the bytes is most of
/// a tenth of a token's time. f32 weights keep an f32 cache, and so their exact parity.
pub fn cache_dtype(isa: Isa, weights_f32: bool) -> DType {
    let f16_kernels = cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx2 { .. })
        || cfg!(target_arch = "aarch64") && matches!(isa, Isa::Neon { .. });
    if f16_kernels && !weights_f32 {
        DType::F16
    } else {
        DType::F32
    }
}

/// `xs` as f32: the slice itself where it is f32, else widened into `buf`.
fn as_f32_in<'a, T: CacheValue>(xs: &'a [T], buf: &'a mut Vec<f32>) -> &'a [f32] {
    match T::as_f32(xs) {
        Some(xs) => xs,
        None => {
            buf.resize(xs.len(), 0.0);
            T::widen(xs, buf);
            buf
        }
    }
}

/// `scores[j] = scale · q · keys[j]` for the `scores.len()` rows of `keys` (rows of `q.len()`).
fn scores_of<T: CacheValue>(isa: Isa, q: &[f32], keys: &[T], scale: f32, scores: &mut [f32]) {
    let d = q.len();
    assert!(keys.len() >= scores.len() * d);
    #[cfg(target_arch = "x86_64")]
    if let Isa::Avx2 { .. } = isa {
        // SAFETY: Isa::Avx2 is chosen only where the CPU has AVX2, FMA and F16C (cpu::isa);
        // the shapes are asserted above.
        unsafe { scores_avx2(q, keys, scale, scores) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if let Isa::Neon { .. } = isa {
        // SAFETY: Isa::Neon is chosen only where the CPU has NEON (cpu::isa); the shapes are
        // asserted above.
        unsafe { super::neon::scores(q, keys, scale, scores) };
        return;
    }
    for (j, s) in scores.iter_mut().enumerate() {
        let row = &keys[j * d..(j + 1) * d];
        *s = scale
            * match T::as_f32(row) {
                Some(row) => {
                    let mut dot = [0f32];
                    rows_dot(isa, q, row, &mut dot);
                    dot[0]
                }
                None => q.iter().zip(row).map(|(a, b)| a * b.to_f64() as f32).sum(),
            };
    }
}

/// `out (+)= Σ_j probs[j] · values[j]` (rows of `out.len()`); `first` writes, else adds.
fn weighted_values<T: CacheValue>(
    isa: Isa,
    probs: &[f32],
    values: &[T],
    out: &mut [f32],
    first: bool,
) {
    let d = out.len();
    assert!(values.len() >= probs.len() * d);
    #[cfg(target_arch = "x86_64")]
    if let Isa::Avx2 { .. } = isa {
        // SAFETY: as in `scores_of`.
        unsafe { weighted_values_avx2(probs, values, out, first) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if let Isa::Neon { .. } = isa {
        // SAFETY: as in `scores_of`.
        unsafe { super::neon::weighted_values(probs, values, out, first) };
        return;
    }
    let _ = isa;
    if first {
        out.fill(0.0);
    }
    for (j, &p) in probs.iter().enumerate() {
        for (y, v) in out.iter_mut().zip(&values[j * d..(j + 1) * d]) {
            *y += p * v.to_f64() as f32;
        }
    }
}

/// The columns `from..` of [`weighted_values`], one at a time: the SIMD kernels' tails past
/// their last whole vector.
pub(super) fn weighted_columns<T: CacheValue>(
    probs: &[f32],
    values: &[T],
    out: &mut [f32],
    first: bool,
    from: usize,
) {
    let d = out.len();
    for (l, y) in out.iter_mut().enumerate().skip(from) {
        let sum: f32 = probs
            .iter()
            .enumerate()
            .map(|(j, &p)| p * values[j * d + l].to_f64() as f32)
            .sum();
        *y = if first { sum } else { *y + sum };
    }
}

/// `Σ q[l] · row[l]` over `l` in `from..q.len()`: the SIMD score kernels' tails.
pub(super) fn dot_from<T: CacheValue>(q: &[f32], row: &[T], from: usize) -> f32 {
    (from..q.len()).map(|l| q[l] * row[l].to_f64() as f32).sum()
}

/// `s = softmax(s)` in place (the exponentials by [`exp_in_place`]).
fn softmax_in_place(isa: Isa, scores: &mut [f32]) {
    let max = max_lanes(scores);
    for s in scores.iter_mut() {
        *s -= max;
    }
    exp_in_place(isa, scores);
    let inv = 1.0 / sum_lanes(scores);
    for s in scores.iter_mut() {
        *s *= inv;
    }
}

/// One query of one head over the `scores.len()` keys and values it sees (rows of
/// `q.len()`): `out = softmax(scale · K q) V`, the probabilities left in `scores`.
fn attend<T: CacheValue>(
    isa: Isa,
    q: &[f32],
    keys: &[T],
    values: &[T],
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    assert_eq!(out.len(), q.len());
    scores_of(isa, q, keys, scale, scores);
    softmax_in_place(isa, scores);
    weighted_values(isa, scores, values, out, true);
}

/// [`scores_of`] with AVX2: eight keys at a time (eight running sums, reduced together by a
/// tree of horizontal adds, where one key at a time spent more on its horizontal sum than on
/// its products). Decoding reads the whole cache once per token, so this and
/// [`weighted_values_avx2`] are most of its attention.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `keys` holds `scores.len()` rows of `q.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scores_avx2<T: CacheValue>(q: &[f32], keys: &[T], scale: f32, scores: &mut [f32]) {
    use std::arch::x86_64::*;
    let (d, seen) = (q.len(), scores.len());
    let full = d / 8 * 8;
    let (qp, kp) = (q.as_ptr(), keys.as_ptr());
    let tail_dot = |j: usize| dot_from(q, &keys[j * d..(j + 1) * d], full);
    // Cache lines of a group of eight keys, and the prefetch distance: two groups ahead.
    let group_bytes = 8 * d * size_of::<T>();
    let mut j = 0;
    while j + 8 <= seen {
        for off in (0..group_bytes).step_by(64) {
            // A hint, never a fault.
            let ahead = (kp as *const u8).wrapping_add((j + 16) * d * size_of::<T>() + off);
            _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
        }
        let mut acc = [_mm256_setzero_ps(); 8];
        for l in (0..full).step_by(8) {
            let qv = _mm256_loadu_ps(qp.add(l));
            for (u, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(qv, T::load8(kp.add((j + u) * d + l)), *acc);
            }
        }
        // Lane u of the result: key j + u's sum.
        let t0 = _mm256_hadd_ps(acc[0], acc[1]);
        let t1 = _mm256_hadd_ps(acc[2], acc[3]);
        let t2 = _mm256_hadd_ps(acc[4], acc[5]);
        let t3 = _mm256_hadd_ps(acc[6], acc[7]);
        let (u0, u1) = (_mm256_hadd_ps(t0, t1), _mm256_hadd_ps(t2, t3));
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps(u0, u1, 0x20),
            _mm256_permute2f128_ps(u0, u1, 0x31),
        );
        let mut s = [0f32; 8];
        _mm256_storeu_ps(s.as_mut_ptr(), sums);
        for (u, s) in s.iter().enumerate() {
            scores[j + u] = (s + tail_dot(j + u)) * scale;
        }
        j += 8;
    }
    for (j, score) in scores.iter_mut().enumerate().skip(j) {
        let mut acc = _mm256_setzero_ps();
        for l in (0..full).step_by(8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(l)), T::load8(kp.add(j * d + l)), acc);
        }
        *score = (super::x86::hsum(acc) + tail_dot(j)) * scale;
    }
}

/// [`weighted_values`] with AVX2: 64 dimensions at a time held in eight registers over all
/// keys (where a loop over keys stored and reloaded the output each time).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `values` holds `probs.len()` rows of `out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn weighted_values_avx2<T: CacheValue>(
    probs: &[f32],
    values: &[T],
    out: &mut [f32],
    first: bool,
) {
    use std::arch::x86_64::*;
    let d = out.len();
    let full = d / 8 * 8;
    let (vp, op) = (values.as_ptr(), out.as_mut_ptr());
    let start = |at: usize| {
        if first {
            _mm256_setzero_ps()
        } else {
            _mm256_loadu_ps(op.add(at))
        }
    };
    let mut c = 0;
    while c + 64 <= full {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (u, acc) in acc.iter_mut().enumerate() {
            *acc = start(c + 8 * u);
        }
        for (j, &p) in probs.iter().enumerate() {
            // The row eight keys ahead, as in `scores_avx2`.
            let ahead = vp.wrapping_add((j + 8) * d + c) as *const u8;
            for off in (0..64 * size_of::<T>()).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(off) as *const i8);
            }
            let p = _mm256_set1_ps(p);
            for (u, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(p, T::load8(vp.add(j * d + c + 8 * u)), *acc);
            }
        }
        for (u, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(op.add(c + 8 * u), *acc);
        }
        c += 64;
    }
    while c < full {
        let mut acc = start(c);
        for (j, &p) in probs.iter().enumerate() {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(p), T::load8(vp.add(j * d + c)), acc);
        }
        _mm256_storeu_ps(op.add(c), acc);
        c += 8;
    }
    weighted_columns(probs, values, out, first, full);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let d: f32 = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(d <= tol, "differ by {d}");
    }

    use crate::engine::cpu::isa::test_paths;

    /// `t` random queries `(h, t, d)` and a random cache of `cap` positions in `dtype`
    /// (keys, values), with the f32 copies of its first `past + t` positions a reference
    /// reads (for f16: the rounded values): `(q, keys, values, k, v)`.
    fn cached_case(
        (h, t, d, past, cap): (usize, usize, usize, usize, usize),
        dtype: DType,
    ) -> (Tensor, Tensor, Tensor, Tensor, Tensor) {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (h, t, d), &dev).unwrap();
        let cache = || {
            Tensor::randn(0f32, 1.0, (h, cap, d), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let (keys, values) = (cache(), cache());
        let wide = |c: &Tensor| {
            c.narrow(1, 0, past + t)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
        };
        let (k, v) = (wide(&keys), wide(&values));
        (q, keys, values, k, v)
    }

    #[test]
    fn gelu_equals_candles() {
        for isa in test_paths() {
            // 7000 values: chunks of 4096 and a tail that is not a multiple of 8.
            let x = Tensor::randn(0f32, 3.0, (7, 1000), &Device::Cpu).unwrap();
            close(
                &gelu_tanh_on(isa, &x).unwrap().unwrap(),
                &x.gelu().unwrap(),
                1e-5,
            );
            let extreme = Tensor::new(
                &[-100f32, -10.0, -1e-6, 0.0, 1e-6, 10.0, 100.0, -5.0, 5.0],
                &Device::Cpu,
            )
            .unwrap();
            close(
                &gelu_tanh_on(isa, &extreme).unwrap().unwrap(),
                &extreme.gelu().unwrap(),
                1e-6,
            );
        }
    }

    #[test]
    fn add_equals_candles_on_one_thread_and_split() {
        // Below PARALLEL_ADD, and above it with a last chunk of another length.
        for (rows, cols) in [(3, 768), (100, 768)] {
            let a = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
            let b = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
            let want: Vec<f32> = (&a + &b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let got = add(&a, &b).unwrap();
            assert_eq!(got.dims(), &[rows, cols]);
            assert_eq!(got.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
        }
        // Other dtypes and a transposed (strided) operand go to candle, with its answer.
        let a = Tensor::randn(0f32, 1.0, (4, 4), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, (4, 4), &Device::Cpu).unwrap();
        for (x, y) in [
            (
                a.to_dtype(DType::F16).unwrap(),
                b.to_dtype(DType::F16).unwrap(),
            ),
            (a.clone(), b.t().unwrap()),
        ] {
            let want = (&x + &y).unwrap().to_dtype(DType::F32).unwrap();
            let got = add(&x, &y).unwrap().to_dtype(DType::F32).unwrap();
            close(&got, &want, 0.0);
        }
    }

    #[test]
    fn halves_round_as_one_at_a_time_conversion_does() {
        // Ties at f16's precision, subnormals, beyond its range, signed zeros, infinities;
        // more values than one chunk, so that chunk edges are crossed.
        let mut xs: Vec<f32> = crate::engine::cpu::testutil::random(150_000, 7)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let specials = [
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            6.0e-8,
            3.0e-5,
            65520.0,
            1.0e6,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        xs.extend(specials);
        let bits = |h: &[half::f16]| h.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let want: Vec<half::f16> = xs.iter().map(|&v| half::f16::from_f32(v)).collect();
        assert_eq!(bits(&to_halves(&xs)), bits(&want));
    }

    #[test]
    fn to_f16_equals_candles_bit_for_bit() {
        let mut xs: Vec<f32> = Tensor::randn(0f32, 10.0, 1000, &Device::Cpu)
            .unwrap()
            .to_vec1()
            .unwrap();
        // Ties, subnormals, overflow to infinity, signed zeros, NaN and infinities.
        xs.extend([
            1.000_488_3,
            1e-6,
            -3e-8,
            7e4,
            -1e5,
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        let t = Tensor::from_vec(xs, (2, 505), &Device::Cpu).unwrap();
        let bits = |t: Tensor| -> Vec<u16> {
            let v: Vec<half::f16> = t.flatten_all().unwrap().to_vec1().unwrap();
            v.iter().map(|h| h.to_bits()).collect()
        };
        let got = to_dtype(&t, DType::F16).unwrap();
        assert_eq!(got.dims(), &[2, 505]);
        assert_eq!(bits(got), bits(t.to_dtype(DType::F16).unwrap()));
        // Other conversions are candle's, with its answer.
        let halves = t.to_dtype(DType::F16).unwrap();
        let f32_bits = |t: Tensor| -> Vec<u32> {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        };
        assert_eq!(
            f32_bits(to_dtype(&halves, DType::F32).unwrap()),
            f32_bits(halves.to_dtype(DType::F32).unwrap())
        );
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for isa in test_paths() {
            let xs: Vec<f32> = (0..20_000).map(|i| -87.0 + i as f32 * 0.00875).collect();
            let mut got = xs.clone();
            exp_in_place(isa, &mut got);
            for (&x, &e) in xs.iter().zip(&got) {
                let want = x.exp();
                assert!(
                    (e - want).abs() <= 2.5e-7 * want,
                    "{isa}: exp({x}) = {e}, libm {want}"
                );
            }
            // Past the clamp: tiny or huge, never NaN (AVX2 and NEON clamp to finite values,
            // libm gives 0 and infinity; GELU's tanh and the softmax take either to their limits).
            let mut far = [-1e4f32, -100.0, -88.0, 89.0, 100.0, 1e4, 0.0, 1.0];
            exp_in_place(isa, &mut far);
            assert!(
                far[..3].iter().all(|&v| (0.0..2e-38).contains(&v)),
                "{isa}: {far:?}"
            );
            assert!(far[3..6].iter().all(|&v| v > 1e38), "{isa}: {far:?}");
            if isa != Isa::Portable {
                // AVX2's and NEON's kernels clamp; libm (portable) overflows to infinity.
                assert!(far.iter().all(|v| v.is_finite()), "{isa}: {far:?}");
            }
            assert_eq!(&far[6..], &[1.0, std::f32::consts::E], "{isa}");
            // Every length around the vector width: the tail loop and the vector loop meet.
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 31] {
                let xs: Vec<f32> = (0..len).map(|i| i as f32 * 0.37 - 3.0).collect();
                let mut got = xs.clone();
                exp_in_place(isa, &mut got);
                for (&x, &e) in xs.iter().zip(&got) {
                    assert!((e - x.exp()).abs() <= 2.5e-7 * x.exp(), "{isa} len {len}");
                }
            }
        }
    }

    #[test]
    fn rows_dot_equals_plain_sums_at_every_length() {
        for isa in test_paths() {
            // Lengths around the 16 lanes, for 3 rows.
            for k in [1, 15, 16, 17, 33, 64, 100] {
                let xs: Vec<f32> = (0..3 * k)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0)
                    .collect();
                let w: Vec<f32> = (0..k).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
                let mut got = [f32::NAN; 3];
                rows_dot(isa, &xs, &w, &mut got);
                for (r, got) in got.iter().enumerate() {
                    let want: f32 = xs[r * k..(r + 1) * k]
                        .iter()
                        .zip(&w)
                        .map(|(a, b)| a * b)
                        .sum();
                    assert!((got - want).abs() < 1e-5 * k as f32, "{isa} k {k} row {r}");
                }
            }
        }
    }

    #[test]
    fn fused_attention_equals_the_unfused_one() {
        for isa in test_paths() {
            // Head widths on and off the 16 lanes; one to eight queries.
            // GPT-2's 64 and wider: whole 64-wide value chunks, groups of eight keys and the
            // keys and dimensions past them.
            for (h, t, d, past, cap) in [
                (3, 2, 16, 5, 12),
                (2, 1, 17, 0, 4),
                (1, 8, 33, 3, 11),
                (2, 3, 64, 21, 30),
                (1, 1, 75, 40, 41),
            ] {
                for dtype in [DType::F32, DType::F16] {
                    let (q, keys, values, k, v) = cached_case((h, t, d, past, cap), dtype);
                    let scores = q.matmul(&k.t().unwrap()).unwrap();
                    let probs = causal_softmax_on(isa, &scores, past, 0.25)
                        .unwrap()
                        .unwrap();
                    let want = probs.matmul(&v.contiguous().unwrap()).unwrap();
                    let got = attention_on(isa, &q, &keys, &values, past, 0.25)
                        .unwrap()
                        .unwrap();
                    close(&got, &want, 1e-5);
                }
            }
        }
    }

    #[test]
    fn prompt_attention_equals_the_unfused_one() {
        let dev = Device::Cpu;
        for isa in test_paths() {
            // Chunks of 64 queries and a partial one, with and without keys cached before;
            // GPT-2's head width and one off the gemm's panels.
            for (h, t, d, past, cap) in [
                (2, 9, 64, 0, 9),
                (3, 150, 64, 7, 170),
                (1, 64, 33, 64, 130),
                (2, 65, 17, 1, 66),
            ] {
                let dtype = if t % 2 == 0 { DType::F16 } else { DType::F32 };
                let (q, keys, values, k, v) = cached_case((h, t, d, past, cap), dtype);
                let scores = (q.matmul(&k.t().unwrap()).unwrap() * 0.125).unwrap();
                let mask: Vec<f32> = (0..t)
                    .flat_map(|i| {
                        (0..past + t).map(move |j| {
                            if j <= past + i {
                                0.0
                            } else {
                                f32::NEG_INFINITY
                            }
                        })
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, (t, past + t), &dev).unwrap();
                let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask).unwrap())
                    .unwrap();
                let want = probs.matmul(&v.contiguous().unwrap()).unwrap();
                // Past MAX_ROWS queries: the gemm's path.
                match attention_on(isa, &q, &keys, &values, past, 0.125).unwrap() {
                    Some(got) => close(&got, &want, 1e-5),
                    None => assert!(!super::super::gemm::has_kernel(isa), "{isa:?}"),
                }
            }
        }
    }

    #[test]
    fn shared_attention_equals_candles() {
        let dev = Device::Cpu;
        for isa in test_paths() {
            // Prompts of none, a few and many positions (groups of eight keys and a rest),
            // candidates' own steps from one on; f32 and f16 prompt caches.
            for (h, n, d, p, pcap, steps, ocap) in [
                (2, 1, 64, 0, 0, 1, 4),
                (3, 2, 16, 5, 12, 2, 3),
                (2, 3, 64, 37, 40, 4, 4),
                (1, 2, 75, 9, 9, 1, 2),
            ] {
                for dtype in [DType::F32, DType::F16] {
                    let r = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
                    let q = r(&[h, n, d]);
                    let pk = r(&[h, pcap, d]).to_dtype(dtype).unwrap();
                    let pv = r(&[h, pcap, d]).to_dtype(dtype).unwrap();
                    let (ok, ov) = (r(&[h, n, ocap, d]), r(&[h, n, ocap, d]));
                    // The reference: per head and candidate, softmax over the prompt's
                    // positions then its own, in candle's ops.
                    let wide = |c: &Tensor| {
                        c.narrow(1, 0, p)
                            .unwrap()
                            .to_dtype(DType::F32)
                            .unwrap()
                            .contiguous()
                            .unwrap()
                    };
                    let (pkw, pvw) = (wide(&pk), wide(&pv));
                    let own = |c: &Tensor| c.narrow(2, 0, steps).unwrap().contiguous().unwrap();
                    let (okw, ovw) = (own(&ok), own(&ov));
                    let q4 = q.unsqueeze(2).unwrap();
                    let own_scores = q4.matmul(&okw.t().unwrap()).unwrap().squeeze(2).unwrap();
                    let mut parts = vec![];
                    if p > 0 {
                        parts.push(q.matmul(&pkw.t().unwrap()).unwrap());
                    }
                    parts.push(own_scores);
                    let scores = (Tensor::cat(&parts, 2).unwrap() * 0.3).unwrap();
                    let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
                    let own_p = probs.narrow(2, p, steps).unwrap().unsqueeze(2).unwrap();
                    let mut want = own_p
                        .contiguous()
                        .unwrap()
                        .matmul(&ovw)
                        .unwrap()
                        .squeeze(2)
                        .unwrap();
                    if p > 0 {
                        let pp = probs.narrow(2, 0, p).unwrap().contiguous().unwrap();
                        want = (want + pp.matmul(&pvw).unwrap()).unwrap();
                    }
                    let prompt = (&pk, &pv, p);
                    let got = match dtype {
                        DType::F16 => attention_shared_of::<half::f16>(
                            isa,
                            &q,
                            prompt,
                            (&ok, &ov, steps),
                            0.3,
                        ),
                        _ => attention_shared_of::<f32>(isa, &q, prompt, (&ok, &ov, steps), 0.3),
                    }
                    .unwrap()
                    .unwrap();
                    close(&got, &want, 1e-5);
                }
            }
        }
    }

    #[test]
    fn caches_are_f16_only_where_the_kernels_read_it_and_weights_are_not_f32() {
        for isa in test_paths() {
            assert_eq!(cache_dtype(isa, true), DType::F32, "{isa:?}");
            let f16 = matches!(isa, Isa::Avx2 { .. } | Isa::Neon { .. });
            let want = if f16 { DType::F16 } else { DType::F32 };
            assert_eq!(cache_dtype(isa, false), want, "{isa:?}");
        }
    }

    #[test]
    fn causal_softmax_equals_masked_softmax() {
        let dev = Device::Cpu;
        for isa in test_paths() {
            for (h, t, past) in [(3, 5, 4), (1, 1, 0), (2, 9, 8)] {
                let scores = Tensor::randn(0f32, 2.0, (h, t, past + t), &dev).unwrap();
                let mask: Vec<f32> = (0..t)
                    .flat_map(|i| {
                        (0..past + t)
                            .map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })
                    })
                    .collect();
                let mask = Tensor::from_vec(mask, (t, past + t), &dev).unwrap();
                let want = candle_nn::ops::softmax_last_dim(
                    &(scores.clone() * 0.5)
                        .unwrap()
                        .broadcast_add(&mask)
                        .unwrap(),
                )
                .unwrap();
                close(
                    &causal_softmax_on(isa, &scores, past, 0.5).unwrap().unwrap(),
                    &want,
                    1e-6,
                );
            }
        }
    }
}
