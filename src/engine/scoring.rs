//! Per-token log-probabilities of a text, with the model's BOS token in front so that the first
//! token is scored too. Text longer than the context is scored in overlapping windows, each
//! token with at least half a window of context.

use candle_core::{DType, Tensor, D};

use super::gpt2::Gpt2;
use super::{Cancel, EngineError};

/// Rows of logits computed at once (a row is a vocabulary's worth of floats).
const LOGIT_ROWS: usize = 64;

/// The model's view of one position.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionScore {
    /// `log p(token | everything before it)`.
    pub logprob: f32,
    /// The model's most likely token at this position, and its log-probability.
    pub best_id: u32,
    pub best_logprob: f32,
}

/// Scores `targets[i]` given `[first] + targets[..i]` for every `i`, where `first` is the token
/// before the text (BOS at a document start). Windows of at most `n_positions` tokens.
pub fn score_ids(
    model: &Gpt2,
    first: u32,
    targets: &[u32],
    cancel: &Cancel,
) -> Result<Vec<PositionScore>, EngineError> {
    let seq: Vec<u32> = std::iter::once(first)
        .chain(targets.iter().copied())
        .collect();
    let w = model.config().n_positions;
    if w < 2 {
        return Err(EngineError::Input(
            "the model's context is too short to score".into(),
        ));
    }
    let mut scores = Vec::with_capacity(targets.len());
    // `scored` counts the targets done; target `i` is `seq[i + 1]`.
    let mut scored = 0;
    while scored < targets.len() {
        cancel.check()?;
        // The window `seq[a..b]` predicts `seq[a+1..b]`; keep half a window of context.
        let a = if scored == 0 {
            0
        } else {
            scored + 1 - (w / 2).min(scored + 1)
        };
        let b = (a + w).min(seq.len());
        let mut cache = model.new_cache()?;
        let hidden = model.forward(&seq[a..b], &mut cache)?;
        // Row r of `hidden` predicts seq[a + r + 1], i.e. target a + r.
        let first_row = scored - a;
        let rows = b - a - 1 - first_row;
        let mut row = first_row;
        while row < first_row + rows {
            let n = LOGIT_ROWS.min(first_row + rows - row);
            let logits = model.logits(&hidden.narrow(0, row, n)?)?;
            let want: Vec<u32> = (0..n).map(|r| seq[a + row + r + 1]).collect();
            scores.extend(score_rows(&logits, &want)?);
            row += n;
        }
        scored += rows;
    }
    Ok(scores)
}

/// Log-probabilities of `want[r]` in row `r` of `logits` `(rows, vocab)`, with each row's best.
fn score_rows(logits: &Tensor, want: &[u32]) -> Result<Vec<PositionScore>, EngineError> {
    // The normaliser in f64: summing a vocabulary of exponentials in f32 costs precision.
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F64)?, D::Minus1)?;
    let idx = Tensor::new(want, logits.device())?.unsqueeze(1)?;
    let picked: Vec<f32> = logp
        .gather(&idx, 1)?
        .squeeze(1)?
        .to_dtype(DType::F32)?
        .to_vec1()?;
    let best_id: Vec<u32> = logp.argmax(D::Minus1)?.to_vec1()?;
    let best: Vec<f32> = logp.max(D::Minus1)?.to_dtype(DType::F32)?.to_vec1()?;
    Ok((0..want.len())
        .map(|r| PositionScore {
            logprob: picked[r],
            best_id: best_id[r],
            best_logprob: best[r],
        })
        .collect())
}
