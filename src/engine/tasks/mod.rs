//! Inference tasks: a prompt's session and its cache, sampling, scoring, proofreading, T5's
//! text tasks and tokenizers. Drives the networks; knows nothing of the LSP.

pub mod proofread;
pub mod sampling;
pub mod scoring;
pub mod session;
pub mod t5;
pub mod tokens;
