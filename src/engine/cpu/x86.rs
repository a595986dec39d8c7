//! SIMD helpers the x86-64 kernels share (the AVX2 path, [`super::isa::Isa::Avx2`]).

use std::arch::x86_64::*;

/// How far ahead of its reads a decoding kernel asks for weights (`prefetcht0`), in bytes:
/// 8 KB, for the f16 panels and `q8_0` rows. These kernels spend many instructions on each
/// line (f16 widened, `q8_0` blocks unpacked), so the out-of-order window holds few lines in
/// flight, and with the hardware prefetcher and 1 KB ahead each thread read below the
/// memory's rate. Per-token decode, 8 KB against 1 KB, medians of paired interleaved runs on
/// a Zen 5: `q8_0` 0.84x-0.95x (five runs), f16 0.86x-0.98x (four); 4 KB gave about half the
/// gain, 16-32 KB less. f32 panels (64 bytes an input) read at the memory's rate either way
/// and keep 1 KB; `q4_K` keeps 1 KB too (0.91x in one run, 0.99x and 1.00x in the next two).
pub(super) const PREFETCH_AHEAD: usize = 8 << 10;

/// The sum of the eight lanes.
///
/// # Safety
/// The CPU must have AVX (every CPU [`super::isa::Isa::Avx2`] is chosen on has).
#[inline]
#[target_feature(enable = "avx")]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}
