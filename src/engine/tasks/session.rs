//! Prefix reuse: a document's prompt state between requests, and the window of the document
//! that is the prompt.
//!
//! A [`Session`] remembers the tokens whose keys and values its cache holds. A new request finds
//! the longest common prefix with them, cuts the cache back to it and feeds only the rest, so a
//! keystroke at the end of a document costs a token or two. GPT-2's positions are absolute: a
//! cached entry is only valid at the same position, so [`window`] moves the window's start by a
//! large stride, at a line start, never by one token.
//!
//! Only a bounded tail of the text before the cursor is ever read ([`tail_start`]): a keystroke
//! at the end of a 4 MB document tokenizes a few kilobytes, as in a 4 KB one. The tail starts on
//! a coarse byte grid, so that it stays put (and the cache stays valid) while one types.

use candle_core::Tensor;

use crate::engine::nets::gpt2::{Gpt2, KvCache};
use crate::engine::tasks::tokens::ChunkCache;
use crate::engine::{Cancel, EngineError};

/// Prompt tokens fed to the model per forward pass; cancellation is checked between them.
const PREFILL_CHUNK: usize = 256;

/// How much of a document before the cursor forms the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// At most this many prompt tokens.
    pub context_tokens: usize,
    /// Positions kept free for the generated tokens.
    pub reserve: usize,
    /// The model's number of positions.
    pub n_positions: usize,
}

impl WindowPolicy {
    /// The most prompt tokens the window can hold (at least one).
    pub fn budget(&self) -> usize {
        self.context_tokens
            .min(self.n_positions.saturating_sub(self.reserve))
            .max(1)
    }

    /// The window moves in steps of this many tokens.
    pub fn stride(&self) -> usize {
        (self.budget() / 4).max(1)
    }

    /// The bytes before the cursor that a window is taken from (about; see [`tail_start`]):
    /// [`TAIL_BYTES_PER_TOKEN`] per context token, from `context_tokens` alone so that a caller
    /// who does not know the model's positions computes the same tail.
    pub fn tail_bytes(&self) -> usize {
        self.context_tokens.clamp(1, MAX_TAIL_TOKENS) * TAIL_BYTES_PER_TOKEN
    }
}

/// Bytes of text read per context token: GPT-2's tokens average about 4 bytes in English prose
/// and fewer in code, so a tail of this many bytes per token fills the window.
pub const TAIL_BYTES_PER_TOKEN: usize = 8;

/// Context tokens beyond this do not lengthen the tail (no GPT-2 has more positions).
const MAX_TAIL_TOKENS: usize = 1 << 15;

/// Where the text that the window is read from begins, for a cursor at byte `cursor`: 0 while
/// the text before the cursor is at most [`WindowPolicy::tail_bytes`] long; otherwise a multiple
/// of half that, between one and one and a half tails before the cursor, so that it only moves
/// every half tail of typing. The caller moves it back to a character boundary (the start of
/// the character it falls in) and passes the text from there to [`trim_tail`].
pub fn tail_start(cursor: usize, policy: &WindowPolicy) -> usize {
    let tail = policy.tail_bytes();
    if cursor <= tail {
        return 0;
    }
    let step = (tail / 2).max(1);
    (cursor - tail) / step * step
}

/// The part of a tail (text that starts mid-document) that windows are taken from: from the
/// first line start within its first quarter tail, else all of it.
pub fn trim_tail<'a>(tail: &'a str, policy: &WindowPolicy) -> &'a str {
    let limit = (policy.tail_bytes() / 4).min(tail.len());
    match tail.as_bytes()[..limit].iter().position(|&b| b == b'\n') {
        Some(i) => &tail[i + 1..],
        None => tail,
    }
}

/// Picks the prompt for a document prefix tokenized as `ids` (with `line_start[i]` true when
/// token `i` begins a line). At the document start the prompt is `[bos] + ids`; once that no
/// longer fits, the window starts mid-document, without BOS, at a token index that only changes
/// in steps of [`WindowPolicy::stride`], moved forward to the next line start when one is near.
pub fn window(ids: &[u32], line_start: &[bool], bos: u32, policy: &WindowPolicy) -> Vec<u32> {
    window_from(ids, line_start, Some(bos), policy)
}

/// [`window`] over tokens that start at the document start (`bos` given) or mid-document
/// (`None`: a tail, see [`tail_start`]; no BOS, and the window is all of it while it fits).
pub fn window_from(
    ids: &[u32],
    line_start: &[bool],
    bos: Option<u32>,
    policy: &WindowPolicy,
) -> Vec<u32> {
    let budget = policy.budget();
    if let Some(bos) = bos.filter(|_| ids.len() < budget) {
        let mut prompt = Vec::with_capacity(ids.len() + 1);
        prompt.push(bos);
        prompt.extend_from_slice(ids);
        return prompt;
    }
    if ids.len() <= budget {
        return ids.to_vec();
    }
    let stride = policy.stride();
    let min_start = ids.len() - budget;
    let start = min_start.div_ceil(stride) * stride;
    // A line start within the next stride keeps the window's first tokens natural; positions
    // still only change when `start` does.
    let limit = (start + stride).min(ids.len());
    let start = (start..limit).find(|&i| line_start[i]).unwrap_or(start);
    ids[start..].to_vec()
}

/// What a [`Session::prime`] did: tokens taken from the cache and tokens computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrimeStats {
    pub reused: usize,
    pub fed: usize,
}

/// One document's prompt state: its tokens and their keys and values. Not `Clone`: its cache
/// is written in place, so a copy would share it.
#[derive(Debug)]
pub struct Session {
    tokens: Vec<u32>,
    cache: KvCache,
    /// The pieces of the text last tokenized for this document.
    text: ChunkCache,
}

impl Session {
    pub fn new(model: &Gpt2) -> Result<Self, EngineError> {
        Ok(Self {
            tokens: Vec::new(),
            cache: model.new_cache()?,
            text: ChunkCache::default(),
        })
    }

    /// The tokens whose state the cache holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    pub fn cache_mut(&mut self) -> &mut KvCache {
        &mut self.cache
    }

    /// The pieces of the text last tokenized for this document (see
    /// [`crate::engine::tasks::tokens::TextTokenizer::encode_cached`]).
    pub fn text_cache_mut(&mut self) -> &mut ChunkCache {
        &mut self.text
    }

    /// Brings the cache to exactly `prompt` and returns the hidden state of its last position,
    /// `(1, n_embd)`. Only the tokens after the longest common prefix are fed.
    pub fn prime(
        &mut self,
        model: &Gpt2,
        prompt: &[u32],
        cancel: &Cancel,
    ) -> Result<(Tensor, PrimeStats), EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::Input("the prompt is empty".into()));
        }
        // The last token is always fed again: its hidden state is the answer.
        let common = {
            let _span = tracing::debug_span!(target: "quill::keystroke", "prefix").entered();
            let common = common_prefix(&self.tokens, prompt).min(prompt.len() - 1);
            self.cache.truncate(common);
            self.tokens.truncate(common);
            common
        };
        let mut last = None;
        for chunk in prompt[common..].chunks(PREFILL_CHUNK) {
            cancel.check()?;
            let _span = tracing::debug_span!(
                target: "quill::keystroke",
                "prompt_pass",
                tokens = chunk.len()
            )
            .entered();
            // A newer keystroke or a completion waiting behind proofreading stops the pass
            // between two layers; the cache and its tokens stay as they were.
            let Some(hidden) =
                model.forward_or_stop(chunk, &mut self.cache, &|| cancel.is_cancelled())?
            else {
                return Err(EngineError::Cancelled);
            };
            self.tokens.extend_from_slice(chunk);
            last = Some(hidden.narrow(0, chunk.len() - 1, 1)?);
        }
        let stats = PrimeStats {
            reused: common,
            fed: prompt.len() - common,
        };
        Ok((last.expect("at least one token is fed"), stats))
    }

    /// Forgets positions from `len` on (the generated ones, after a request).
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
        self.cache.truncate(len);
    }
}

/// The length of the longest common prefix of `a` and `b`.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(context: usize) -> WindowPolicy {
        WindowPolicy {
            context_tokens: context,
            reserve: 8,
            n_positions: 128,
        }
    }

    #[test]
    fn short_documents_start_with_bos() {
        let ids = [5, 6, 7];
        assert_eq!(
            window(&ids, &[true, false, false], 0, &policy(64)),
            vec![0, 5, 6, 7]
        );
    }

    #[test]
    fn the_budget_respects_context_and_positions() {
        assert_eq!(policy(64).budget(), 64);
        assert_eq!(policy(1000).budget(), 120);
    }

    #[test]
    fn long_documents_slide_by_strides_and_keep_the_start_between() {
        let p = policy(64); // budget 64, stride 16
        let starts: Vec<usize> = (64..140)
            .map(|n| {
                let ids: Vec<u32> = (0..n as u32).map(|i| i + 1).collect();
                let w = window(&ids, &vec![false; n], 0, &p);
                assert!(w.len() <= 64, "window of {} tokens", w.len());
                assert_ne!(w[0], 0, "no BOS mid-document");
                assert_eq!(
                    *w.last().unwrap(),
                    n as u32,
                    "the window ends at the cursor"
                );
                n - w.len()
            })
            .collect();
        // The start only takes multiples of the stride, and changes rarely.
        assert!(starts.iter().all(|s| s % 16 == 0), "{starts:?}");
        let changes = starts.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes <= 5, "{starts:?}");
    }

    #[test]
    fn the_window_moves_to_a_nearby_line_start() {
        let p = policy(64);
        let n = 100;
        let ids: Vec<u32> = (1..=n as u32).collect();
        let mut line_start = vec![false; n];
        line_start[50] = true;
        let w = window(&ids, &line_start, 0, &p);
        assert_eq!(w[0], 51);
    }

    #[test]
    fn common_prefixes() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
