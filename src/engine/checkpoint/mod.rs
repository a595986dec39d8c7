//! Checkpoint formats: where a network's tensors come from (safetensors, streamed or mapped;
//! GGUF, read and written) and the [`weight::Weight`] each matrix becomes in the format the
//! user chose. Knows nothing of what a network computes with them.

pub mod gguf;
pub mod stream;
pub mod weight;
