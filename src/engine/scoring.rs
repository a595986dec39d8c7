//! Per-token log-probabilities of a text, with the model's BOS token in front so that the first
//! token is scored too. Text longer than the context is scored in overlapping windows, each
//! token with at least half a window of context.

use candle_core::Tensor;

use super::gpt2::Gpt2;
use super::{Cancel, EngineError};

/// Rows of logits computed at once (a row is a vocabulary's worth of floats).
const LOGIT_ROWS: usize = 64;

/// Tokens per forward pass while scoring (cancellation is checked between them).
const SCORE_CHUNK: usize = 64;

/// How many of the most likely tokens are kept per position.
pub const TOP_ALTERNATIVES: usize = 8;

/// The model's view of one position.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionScore {
    /// `log p(token | everything before it)`.
    pub logprob: f32,
    /// The model's most likely token at this position, and its log-probability.
    pub best_id: u32,
    pub best_logprob: f32,
    /// The most likely tokens at this position with their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
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
        // Fed in short pieces, checking for cancellation between them: scoring runs in the
        // background and must give way quickly to a keystroke.
        let mut cache = model.new_cache()?;
        let mut pieces = Vec::new();
        for piece in seq[a..b].chunks(SCORE_CHUNK) {
            cancel.check()?;
            pieces.push(model.forward(piece, &mut cache)?);
        }
        let hidden = Tensor::cat(&pieces, 0)?;
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

/// Log-probabilities of `want[r]` in row `r` of `logits` `(rows, vocab)`, with each row's
/// most likely tokens. The normaliser is summed in f64: a vocabulary of exponentials summed in
/// f32 costs precision.
fn score_rows(logits: &Tensor, want: &[u32]) -> Result<Vec<PositionScore>, EngineError> {
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    Ok(rows
        .iter()
        .zip(want)
        .map(|(row, &id)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
            let log_z = max + sum.ln();
            let lp = |i: usize| (row[i] as f64 - log_z) as f32;
            let top = top_k(row, TOP_ALTERNATIVES)
                .into_iter()
                .map(|i| (i as u32, lp(i)))
                .collect::<Vec<_>>();
            PositionScore {
                logprob: lp(id as usize),
                best_id: top[0].0,
                best_logprob: top[0].1,
                top,
            }
        })
        .collect())
}

/// The indices of the `k` largest values, largest first (the lower index first on ties).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let order = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    let k = k.min(idx.len());
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx
}
