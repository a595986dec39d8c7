//! Per-token log-probabilities of a text, with the model's BOS token in front so that the first
//! token is scored too. Text longer than the context is scored in overlapping windows, each
//! token with at least half a window of context.

use candle_core::Tensor;

use crate::engine::nets::gpt2::Gpt2;
use crate::engine::{Cancel, EngineError};

/// Rows of logits computed at once (a row is a vocabulary's worth of floats).
const LOGIT_ROWS: usize = 512;

/// Tokens per forward pass while scoring; cancellation is checked between them, so this bounds
/// how long a keystroke waits behind background scoring (about 0.35 s at 124M's shapes here).
/// gemm packs every weight once per pass, so smaller pieces cost throughput (measured on the
/// diagnostics bench: 64 -> 241 tokens/s, 128 -> 248, 256 -> 280 but 0.73 s keystrokes).
const SCORE_CHUNK: usize = 128;

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
            // A keystroke waits at most one layer of the piece.
            match model.forward_or_stop(piece, &mut cache, &|| cancel.is_cancelled())? {
                Some(hidden) => pieces.push(hidden),
                None => return Err(EngineError::Cancelled),
            }
        }
        let hidden = Tensor::cat(&pieces, 0)?;
        // Row r of `hidden` predicts seq[a + r + 1], i.e. target a + r.
        let first_row = scored - a;
        let rows = b - a - 1 - first_row;
        let mut row = first_row;
        while row < first_row + rows {
            cancel.check()?;
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
/// f32 costs precision. Rows are independent and run in parallel.
fn score_rows(logits: &Tensor, want: &[u32]) -> Result<Vec<PositionScore>, EngineError> {
    use rayon::prelude::*;
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    Ok(rows
        .par_iter()
        .zip(want.par_iter())
        .map(|(row, &id)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&l| (l - max).exp() as f64).sum();
            let log_z = max as f64 + sum.ln();
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

/// The indices of the `k` largest values, largest first (the lower index first on ties), in
/// one pass that keeps the best `k` so far.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(values.len());
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for (i, &v) in values.iter().enumerate() {
        if best.len() == k && k > 0 && v <= values[best[k - 1]] {
            continue;
        }
        // Insert after every kept value that is larger or equal (earlier indices win ties).
        let at = best
            .iter()
            .position(|&j| values[j] < v)
            .unwrap_or(best.len());
        best.insert(at, i);
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_largest_in_order_with_earlier_indices_first_on_ties() {
        let v = [1.0, 5.0, 3.0, 5.0, -1.0, 4.0, f32::NEG_INFINITY];
        assert_eq!(top_k(&v, 3), vec![1, 3, 5]);
        assert_eq!(top_k(&v, 1), vec![1]);
        assert_eq!(top_k(&v, 10), vec![1, 3, 5, 2, 0, 4, 6]);
        assert_eq!(top_k(&v, 0), Vec::<usize>::new());
        assert_eq!(top_k(&[], 3), Vec::<usize>::new());
    }
}
