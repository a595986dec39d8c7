//! GPT-2 as a proofreader: words the model finds far less likely than its own best guess, with
//! the whole-word alternatives it prefers, and sentences of very high perplexity. Offsets are
//! bytes into the checked text.

use super::sampling::{argmax, log_prob};
use super::session::Session;
use crate::engine::{Cancel, EngineError, LanguageModel, ScoredText};

/// When a word or a sentence is unlikely enough to report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofreadOptions {
    /// A token below this log-probability may flag its word...
    pub min_token_logprob: f32,
    /// ...when the model's best token at that position is at least this much more likely
    /// (a difference of log-probabilities, in nats).
    pub min_gap: f32,
    /// Alternatives offered per word.
    pub max_alternatives: usize,
    /// A sentence whose perplexity exceeds this gets one hint.
    pub max_sentence_perplexity: f64,
}

impl Default for ProofreadOptions {
    fn default() -> Self {
        Self {
            min_token_logprob: -12.5,
            min_gap: 0.0,
            max_alternatives: 3,
            max_sentence_perplexity: 750.0,
        }
    }
}

/// A word the model did not expect.
#[derive(Debug, Clone, PartialEq)]
pub struct UnlikelyWord {
    pub start: usize,
    pub end: usize,
    pub word: String,
    /// Log-probability of the least likely token of the word.
    pub logprob: f32,
    /// Whole-word replacements the model prefers, most likely first, with the log-probability
    /// of the whole word.
    pub alternatives: Vec<(String, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnlikelySentence {
    pub start: usize,
    pub end: usize,
    pub perplexity: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Proofread {
    pub words: Vec<UnlikelyWord>,
    pub sentences: Vec<UnlikelySentence>,
}

pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte spans of the words of `text`: runs of letters, digits, `_`, and apostrophes inside them.
pub fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let inner_apostrophe = (c == '\'' || c == '’')
            && start.is_some()
            && chars.get(k + 1).is_some_and(|&(_, n)| n.is_alphabetic());
        if is_word_char(c) || inner_apostrophe {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            spans.push((s, i));
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// Byte spans of the sentences of `text`: ends at `.`, `!` or `?` followed by whitespace, and
/// at blank lines.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let end_mark = matches!(b[i], b'.' | b'!' | b'?')
            && b.get(i + 1).is_none_or(|c| c.is_ascii_whitespace());
        let blank = b[i] == b'\n' && b.get(i + 1) == Some(&b'\n');
        if end_mark || blank {
            let end = i + 1;
            if !text[start..end].trim().is_empty() {
                spans.push((start, end));
            }
            start = end;
        }
        i += 1;
    }
    if !text[start..].trim().is_empty() {
        spans.push((start, text.len()));
    }
    spans
        .into_iter()
        .map(|(s, e)| {
            let lead = text[s..e].len() - text[s..e].trim_start().len();
            let trail = text[s..e].len() - text[s..e].trim_end().len();
            (s + lead, e - trail)
        })
        .collect()
}

/// What the flagging rules read of one scored token: its byte span in the checked text, its
/// log-probability and the best log-probability at its position. Local scoring and a remote
/// backend's prompt log-probabilities both reduce to this, so that both flag the same words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenScore {
    pub start: usize,
    pub end: usize,
    pub logprob: f32,
    pub best_logprob: f32,
}

/// A word to report: its byte span, the log-probability of its least likely token, and the
/// index of its first token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlaggedWord {
    pub start: usize,
    pub end: usize,
    pub logprob: f32,
    pub first_token: usize,
}

/// The flagging rules' view of a scored text.
pub fn token_scores(scored: &ScoredText) -> Vec<TokenScore> {
    scored
        .tokens
        .iter()
        .map(|t| TokenScore {
            start: t.start,
            end: t.end,
            logprob: t.logprob,
            best_logprob: t.best_logprob,
        })
        .collect()
}

/// The words of `text` that hold a token below `opts.min_token_logprob` whose position's best
/// token is at least `opts.min_gap` more likely, in text order.
pub fn flag_words(text: &str, tokens: &[TokenScore], opts: &ProofreadOptions) -> Vec<FlaggedWord> {
    let words = word_spans(text);
    let mut flagged: Vec<FlaggedWord> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.logprob >= opts.min_token_logprob || t.best_logprob - t.logprob < opts.min_gap {
            continue;
        }
        // The word this token belongs to: the first word its span overlaps.
        let Some(&(ws, we)) = words.iter().find(|&&(ws, we)| ws < t.end && t.start < we) else {
            continue;
        };
        let first = tokens
            .iter()
            .position(|u| ws < u.end && u.start < we)
            .unwrap_or(i);
        match flagged.iter_mut().find(|f| f.start == ws) {
            Some(f) => f.logprob = f.logprob.min(t.logprob),
            None => flagged.push(FlaggedWord {
                start: ws,
                end: we,
                logprob: t.logprob,
                first_token: first,
            }),
        }
    }
    flagged.sort_by_key(|f| f.start);
    flagged
}

/// Sentences of `text` (of at least four tokens) whose perplexity exceeds
/// `opts.max_sentence_perplexity`.
pub fn unlikely_sentences(
    text: &str,
    tokens: &[TokenScore],
    opts: &ProofreadOptions,
) -> Vec<UnlikelySentence> {
    let mut out = Vec::new();
    for (s, e) in sentence_spans(text) {
        let lps: Vec<f64> = tokens
            .iter()
            .filter(|t| t.start >= s && t.end <= e)
            .map(|t| t.logprob as f64)
            .collect();
        if lps.len() < 4 {
            continue;
        }
        let perplexity = (-lps.iter().sum::<f64>() / lps.len() as f64).exp();
        if perplexity > opts.max_sentence_perplexity {
            out.push(UnlikelySentence {
                start: s,
                end: e,
                perplexity,
            });
        }
    }
    out
}

impl LanguageModel {
    /// Finds unlikely words and sentences in `text` (one paragraph), BOS in front.
    pub fn proofread(
        &self,
        text: &str,
        opts: &ProofreadOptions,
        cancel: &Cancel,
    ) -> Result<Proofread, EngineError> {
        let scored = self.score(text, cancel)?;
        let flagged = flag_words(text, &token_scores(&scored), opts);
        let mut out = Proofread::default();
        // One session for the paragraph: the prefixes of its flagged words, in order, extend
        // each other, so each costs only the tokens since the previous one.
        let mut session = Session::new(self.gpt2())?;
        for FlaggedWord {
            start: ws,
            end: we,
            logprob,
            first_token: first,
        } in flagged
        {
            cancel.check()?;
            let word = text[ws..we].to_string();
            let alternatives = self.alternatives(
                &mut session,
                &scored,
                first,
                &word,
                opts.max_alternatives,
                cancel,
            )?;
            out.words.push(UnlikelyWord {
                start: ws,
                end: we,
                word,
                logprob,
                alternatives,
            });
        }
        out.sentences = unlikely_sentences(text, &token_scores(&scored), opts);
        Ok(out)
    }

    /// Whole words the model would put where token `first` (the start of `word`) stands:
    /// its likely tokens at that position, each extended greedily to a word boundary.
    fn alternatives(
        &self,
        session: &mut Session,
        scored: &ScoredText,
        first: usize,
        word: &str,
        max: usize,
        cancel: &Cancel,
    ) -> Result<Vec<(String, f32)>, EngineError> {
        const EXTRA_TOKENS: usize = 3;
        let original = &scored.tokens[first];
        let lead_space = self
            .tokenizer()
            .decode(&[original.id])?
            .starts_with(char::is_whitespace);
        let starts_word = |t: &str| {
            let rest = if lead_space {
                t.strip_prefix(' ')
            } else {
                Some(t)
            };
            rest.and_then(|r| r.chars().next())
                .is_some_and(is_word_char)
        };
        let candidates: Vec<(u32, f32)> = original
            .top
            .iter()
            .copied()
            .filter(|&(id, _)| id != original.id && id != self.eos())
            .filter(|&(id, _)| starts_word(&self.tokenizer().decode(&[id]).unwrap_or_default()))
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // The prompt: BOS and the tokens before the word, within the model's positions.
        let ids: Vec<u32> = scored.tokens[..first].iter().map(|t| t.id).collect();
        let room = self.n_positions().saturating_sub(EXTRA_TOKENS + 2);
        let mut prompt = Vec::with_capacity(ids.len() + 1);
        if ids.len() < room {
            prompt.push(self.bos());
            prompt.extend_from_slice(&ids);
        } else {
            prompt.extend_from_slice(&ids[ids.len() - room..]);
        }
        session.prime(self.gpt2(), &prompt, cancel)?;
        let n = candidates.len();
        let mut words: Vec<Vec<u32>> = candidates.iter().map(|&(id, _)| vec![id]).collect();
        let mut logps: Vec<f32> = candidates.iter().map(|&(_, lp)| lp).collect();
        let mut open = vec![true; n];
        let mut next: Vec<u32> = candidates.iter().map(|&(id, _)| id).collect();
        let mut batch = self.gpt2().new_batch_cache(n, EXTRA_TOKENS)?;
        for _ in 0..EXTRA_TOKENS {
            cancel.check()?;
            let hidden = self
                .gpt2()
                .forward_shared(&next, session.cache(), &mut batch)?;
            let logits: Vec<Vec<f32>> = self.gpt2().logits(&hidden)?.to_vec2()?;
            for k in 0..n {
                if !open[k] {
                    continue;
                }
                let id = argmax(&logits[k]);
                let piece = self.tokenizer().decode(&[id]).unwrap_or_default();
                // The word goes on only with a token that continues it (no space, a letter).
                if id == self.eos() || !piece.chars().next().is_some_and(is_word_char) {
                    open[k] = false;
                    continue;
                }
                logps[k] += log_prob(&logits[k], id);
                words[k].push(id);
                next[k] = id;
            }
            if !open.iter().any(|o| *o) {
                break;
            }
        }
        let mut out: Vec<(String, f32)> = Vec::new();
        for (k, ids) in words.iter().enumerate() {
            if open[k] {
                continue; // still inside a word after the extra tokens: not a whole word
            }
            let (text, _) = self.tokenizer().decode_complete(ids)?;
            let w = text.trim().to_string();
            if w.is_empty() || w == word || !w.chars().all(|c| is_word_char(c) || c == '\'') {
                continue;
            }
            if !out.iter().any(|(x, _)| *x == w) {
                out.push((w, logps[k]));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(max);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_letters_digits_and_inner_apostrophes() {
        let text = "I red the notes, didn't you? café_2 'quoted' 😀x";
        let words: Vec<&str> = word_spans(text).iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(
            words,
            ["I", "red", "the", "notes", "didn't", "you", "café_2", "quoted", "x"]
        );
    }

    #[test]
    fn sentences_end_at_marks_and_blank_lines() {
        let text = "It rained. It cost 3.50 dollars! Why?\n\nNew para";
        let s: Vec<&str> = sentence_spans(text)
            .iter()
            .map(|&(a, b)| &text[a..b])
            .collect();
        assert_eq!(
            s,
            ["It rained.", "It cost 3.50 dollars!", "Why?", "New para"]
        );
    }
}
