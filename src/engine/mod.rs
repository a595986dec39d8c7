//! Models and inference. Knows nothing of LSP: it takes text and token ids, and returns text,
//! ids and numbers.

pub mod backend;
pub mod checkpoint;
pub mod cpu;
mod model;
pub mod nets;
pub mod tasks;
pub mod worker;

pub use model::LanguageModel;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::models::{self, ModelError, ModelFiles};
use tasks::sampling::{SamplingParams, StopAt};
use tasks::session::PrimeStats;
use tasks::tokens::TextTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Model(Box<ModelError>),
    #[error("model computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> Self {
        EngineError::Model(Box::new(e))
    }
}

/// A flag that a job checks between forward passes. A child flag is also raised by its
/// parent's: the engine thread gives a job a child of the requester's flag, so that it can
/// stop the job (to let an interactive job go first) without cancelling the request.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    own: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag raised by `cancel()` on itself or on `self`.
    pub fn child(&self) -> Cancel {
        Cancel {
            own: Arc::new(AtomicBool::new(false)),
            parent: Some(self.own.clone()),
        }
    }

    pub fn cancel(&self) {
        self.own.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::Relaxed)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    pub fn check(&self) -> Result<(), EngineError> {
        if self.is_cancelled() {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: usize,
    /// Number of candidates, decoded as one batch.
    pub n: usize,
    pub sampling: SamplingParams,
    pub stop: StopAt,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 16,
            n: 1,
            sampling: SamplingParams::default(),
            stop: StopAt::Never,
        }
    }
}

/// One continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<u32>,
    /// The model's log-probability of each token (at temperature 1, before top-k/top-p).
    pub logprobs: Vec<f32>,
}

/// The result of a completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionOutput {
    /// Distinct continuations, in the order they were sampled.
    pub completions: Vec<Completion>,
    pub prime: PrimeStats,
}

/// One scored token of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredToken {
    pub id: u32,
    pub text: String,
    /// Byte offsets into the scored text.
    pub start: usize,
    pub end: usize,
    pub logprob: f32,
    pub best_id: u32,
    pub best_logprob: f32,
    /// The most likely tokens at this position, best first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScoredText {
    pub tokens: Vec<ScoredToken>,
    pub total_logprob: f64,
    pub perplexity: f64,
}

impl ScoredText {
    /// The text's scores from its tokens': the sum of their log-probabilities and the
    /// perplexity `exp(-mean)` (1 for no tokens).
    pub fn from_tokens(tokens: Vec<ScoredToken>) -> Self {
        let total: f64 = tokens.iter().map(|t| t.logprob as f64).sum();
        let perplexity = if tokens.is_empty() {
            1.0
        } else {
            (-total / tokens.len() as f64).exp()
        };
        ScoredText {
            tokens,
            total_logprob: total,
            perplexity,
        }
    }
}

/// Reads a checkpoint's `tokenizer.json`.
pub(crate) fn load_tokenizer(files: &ModelFiles) -> Result<TextTokenizer, ModelError> {
    TextTokenizer::from_file(&files.tokenizer).map_err(|e| ModelError::BadTokenizer {
        path: files.tokenizer.clone(),
        reason: format!("{e:#}"),
    })
}

/// Checks a checkpoint's safetensors files and maps them for a model to load from.
pub(crate) fn load_weights(
    files: &ModelFiles,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>, ModelError> {
    models::check_weights(&files.weights)?;
    // SAFETY: the files were just checked; candle maps them read only.
    unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device) }
        .map_err(|e| weights_mismatch(files, e))
}

/// The error for weights that a model cannot be built from.
pub(crate) fn weights_mismatch(files: &ModelFiles, e: candle_core::Error) -> ModelError {
    ModelError::BadWeights {
        path: files.weights[0].clone(),
        reason: format!("they do not match config.json ({e})"),
    }
}

/// The compute threads for a `threads` setting: the number asked for, or with 0 every core but
/// one, which the editor keeps (an oversubscribed core makes every step wait for it).
pub fn compute_threads(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1)
}
