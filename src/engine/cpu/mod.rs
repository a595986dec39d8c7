//! CPU kernels: quill's own weight matrices ([`matrix::Matrix`] in f32, f16, bf16, q8_0 and
//! q4_k), the prompt gemm, and the elementwise operations (GELU, softmax), each with a path
//! per instruction set chosen once by [`isa`]. Knows nothing of models, checkpoints or tasks:
//! it multiplies numbers.

pub mod gemm;
pub mod isa;
pub mod kernels;
pub mod matrix;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod pool;
pub mod q4k;
pub mod t5kernels;
#[cfg(test)]
pub(crate) mod testutil;
#[cfg(target_arch = "x86_64")]
mod vnni;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use isa::{isa, Isa};
