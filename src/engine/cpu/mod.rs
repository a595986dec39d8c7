//! CPU kernels: quill's own weight matrices ([`matrix::Matrix`] in f32, f16, bf16, q8_0 and
//! q4_k), the prompt gemm, and the elementwise operations (GELU, softmax). Knows nothing of
//! models, checkpoints or tasks: it multiplies numbers.

pub mod gemm;
pub mod kernels;
pub mod matrix;
pub mod q4k;
#[cfg(test)]
pub(crate) mod testutil;
