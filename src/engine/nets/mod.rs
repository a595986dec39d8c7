//! The networks: GPT-2 and T5's forward passes, built from a checkpoint's tensors. Knows
//! nothing of tokens' text, sampling or the tasks that drive them.

pub mod gpt2;
pub mod t5net;
