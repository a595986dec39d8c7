//! SIMD helpers the x86-64 kernels share (the AVX2 path, [`super::isa::Isa::Avx2`]).

use std::arch::x86_64::*;

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
