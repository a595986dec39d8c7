//! quill: a language server that puts pretrained language models into every editor.
//!
//! - [`engine`]: models and inference (GPT-2, sampling, scoring, prefix reuse, the engine
//!   thread); knows nothing of LSP.
//! - [`models`]: where weights come from (hub or directory), device and dtype.
//! - [`document`]: text buffers and position encodings.
//! - [`lsp`]: the language server; the only module that knows LSP types.
//! - [`cli`]: the command-line subcommands, over the engine.

pub mod cli;
pub mod diagnostics;
pub mod document;
pub mod engine;
pub mod lsp;
pub mod models;
pub mod span_times;
