//! Choosing the next token: greedy, temperature, top-k, top-p, with a seeded generator; and the
//! rules that end a continuation.

use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::engine::cpu::kernels::max_lanes;

/// How the next token is picked from the logits.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 (or less) means greedy: always the most likely token.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (none: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (none: all).
    pub top_p: Option<f32>,
    /// Seeds the generator, so that runs repeat.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// Where a continuation ends, besides the token budget and end-of-text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopAt {
    #[default]
    Never,
    /// At the end of the first line that has text (code).
    Newline,
    /// After the first sentence, or at a line end (prose).
    Sentence,
}

impl StopAt {
    /// The byte length `text` is cut to, if the rule ends it there.
    pub fn cut(self, text: &str) -> Option<usize> {
        match self {
            StopAt::Never => None,
            StopAt::Newline => first_newline_after_text(text),
            StopAt::Sentence => {
                let newline = first_newline_after_text(text);
                let sentence = sentence_end(text);
                match (newline, sentence) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }
}

/// The offset of the first `\n` that follows some non-blank text.
fn first_newline_after_text(text: &str) -> Option<usize> {
    let content = text.find(|c: char| !c.is_whitespace())?;
    text[content..].find(['\n', '\r']).map(|i| content + i)
}

/// The offset just after the first sentence terminator (`.`, `!`, `?`, with any closing quotes
/// or brackets) that follows text, is not part of a number, and ends its token run: followed by
/// whitespace or the end of the text.
fn sentence_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let content = text.find(|c: char| !c.is_whitespace())?;
    let mut i = content;
    while i < bytes.len() {
        if matches!(bytes[i], b'.' | b'!' | b'?') {
            let prev_digit = i > 0 && bytes[i - 1].is_ascii_digit();
            let mut end = i + 1;
            while end < bytes.len()
                && matches!(bytes[end], b'.' | b'!' | b'?' | b'"' | b'\'' | b')' | b']')
            {
                end += 1;
            }
            let at_break = end == bytes.len() || bytes[end].is_ascii_whitespace();
            if at_break && !prev_digit {
                return Some(end);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}

/// Picks tokens from logits under [`SamplingParams`].
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let t = self.params.temperature;
        let mut idx: Vec<usize> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect();
        if idx.is_empty() {
            return argmax(logits);
        }
        let by_logit_desc = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
        if let Some(k) = self.params.top_k.filter(|&k| k > 0 && k < idx.len()) {
            idx.select_nth_unstable_by(k - 1, by_logit_desc);
            idx.truncate(k);
        }
        idx.sort_unstable_by(by_logit_desc);
        let max = logits[idx[0]] / t;
        let mut weights: Vec<f64> = idx
            .iter()
            .map(|&i| ((logits[i] / t - max) as f64).exp())
            .collect();
        if let Some(p) = self.params.top_p.filter(|&p| p > 0.0 && p < 1.0) {
            let total: f64 = weights.iter().sum();
            let mut cumulative = 0.0;
            let mut keep = weights.len();
            for (n, w) in weights.iter().enumerate() {
                cumulative += w / total;
                if cumulative >= p as f64 {
                    keep = n + 1;
                    break;
                }
            }
            weights.truncate(keep);
            idx.truncate(keep);
        }
        match WeightedIndex::new(&weights) {
            Ok(dist) => idx[dist.sample(&mut self.rng)] as u32,
            Err(_) => idx[0] as u32,
        }
    }
}

/// The index of the largest value; the first one on ties (as `torch.argmax`). The maximum is
/// found in independent lanes, then its first position: a compare-and-keep one value at a
/// time waited on each comparison (50,257 of them a token).
pub fn argmax(values: &[f32]) -> u32 {
    let max = max_lanes(values);
    values.iter().position(|&v| v == max).unwrap_or(0) as u32
}

/// `log_softmax(logits)[id]`, the normaliser summed in f64, without building the whole vector
/// (it runs once per generated token).
pub fn log_prob(logits: &[f32], id: u32) -> f32 {
    let max = max_lanes(logits);
    let sum = crate::engine::cpu::kernels::sum_exp(logits, max);
    let log_z = max as f64 + sum.ln();
    (logits[id as usize] as f64 - log_z) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_probs_equal_an_f64_log_softmax() {
        // GPT-2's vocabulary of logits, spread as a model's are, and one far below the rest.
        let mut logits: Vec<f32> = (0..50_257u32)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32) * 30.0 - 15.0
            })
            .collect();
        logits[7] = -1e30;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_z = max
            + logits
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        for id in [0u32, 7, 1000, 50_256] {
            let want = (logits[id as usize] as f64 - log_z) as f32;
            let got = log_prob(&logits, id);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{id}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&[0.1, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: Some(1),
            top_p: None,
            seed: 7,
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 1.0, 3.0, 2.9]), 2);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03: p = 0.8 keeps the first two only.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.8),
            seed: 1,
        });
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            seen[s.sample(&logits) as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
        assert_eq!(seen[2] + seen[3], 0, "{seen:?}");
    }

    #[test]
    fn a_seed_repeats_and_another_differs() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let params = |seed| SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed,
        };
        let run = |seed| {
            let mut s = Sampler::new(params(seed));
            (0..30).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn log_prob_normalises() {
        let logits = [1.0, 2.0, 3.0];
        let lp: Vec<f32> = (0..3).map(|i| log_prob(&logits, i)).collect();
        let total: f32 = lp.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((lp[2] - (-0.407_605_96)).abs() < 1e-6, "{lp:?}");
    }

    #[test]
    fn stop_rules_cut_where_expected() {
        assert_eq!(StopAt::Never.cut("a\nb"), None);
        assert_eq!(StopAt::Newline.cut("foo(x)\n}"), Some(6));
        assert_eq!(StopAt::Newline.cut("\n    let x = 1;\nmore"), Some(15));
        assert_eq!(StopAt::Newline.cut("   \n"), None);
        assert_eq!(StopAt::Sentence.cut(" It rained. Then"), Some(11));
        assert_eq!(StopAt::Sentence.cut(" It cost 3.50 dollars"), None);
        assert_eq!(StopAt::Sentence.cut(" He said \"no.\" Then"), Some(14));
        assert_eq!(StopAt::Sentence.cut(" Really?"), Some(8));
        assert_eq!(StopAt::Sentence.cut(" a list\n- b"), Some(7));
        assert_eq!(StopAt::Sentence.cut(" e.g"), None);
    }
}
