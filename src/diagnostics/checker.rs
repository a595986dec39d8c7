//! From a document to findings: which paragraphs to proofread (see [`super::prose`]), a cache
//! of results keyed by paragraph text so that unchanged paragraphs are not scored again, and
//! the findings mapped back to document byte offsets with their messages.

use std::collections::HashMap;

use super::prose::{self, DocumentProse, Paragraph, TextEdit};
use crate::engine::tasks::proofread::Proofread;

/// What was found, in document byte offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub kind: FindingKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FindingKind {
    /// A word the model did not expect, with the whole words it prefers (best first) and
    /// their log-probabilities.
    Word {
        word: String,
        logprob: f32,
        alternatives: Vec<(String, f32)>,
    },
    /// A sentence of very high perplexity.
    Sentence { perplexity: f64 },
}

impl Finding {
    /// The diagnostic code: `unlikely-token` or `unlikely-sentence`.
    pub fn code(&self) -> &'static str {
        match self.kind {
            FindingKind::Word { .. } => "unlikely-token",
            FindingKind::Sentence { .. } => "unlikely-sentence",
        }
    }

    /// A one-line message, e.g. "unlikely word 'there' (p=0.02); expected 'their' (p=0.41)".
    pub fn message(&self) -> String {
        match &self.kind {
            FindingKind::Word {
                word,
                logprob,
                alternatives,
            } => {
                let mut m = format!("unlikely word '{word}' (p={})", prob(*logprob));
                if let Some((alt, lp)) = alternatives.first() {
                    m.push_str(&format!("; expected '{alt}' (p={})", prob(*lp)));
                }
                m
            }
            FindingKind::Sentence { perplexity } => {
                format!("this sentence reads as very unlikely (perplexity {perplexity:.0})")
            }
        }
    }
}

/// A probability for people: two decimals, or scientific when tiny.
pub fn prob(logprob: f32) -> String {
    let p = (logprob as f64).exp();
    if p >= 0.01 {
        format!("{p:.2}")
    } else {
        format!("{p:.1e}")
    }
}

/// Maps one paragraph's proofreading to document findings.
pub fn findings(paragraph: &Paragraph, result: &Proofread) -> Vec<Finding> {
    let mut out = Vec::new();
    // A word that names something of the document itself (an identifier) is meant.
    for w in result.words.iter().filter(|w| !paragraph.is_known(&w.word)) {
        let (start, end) = paragraph.range_to_document(w.start, w.end);
        out.push(Finding {
            start,
            end,
            kind: FindingKind::Word {
                word: w.word.clone(),
                logprob: w.logprob,
                alternatives: w.alternatives.clone(),
            },
        });
    }
    for s in &result.sentences {
        let (start, end) = paragraph.range_to_document(s.start, s.end);
        out.push(Finding {
            start,
            end,
            kind: FindingKind::Sentence {
                perplexity: s.perplexity,
            },
        });
    }
    out
}

/// Paragraphs longer than this many bytes are not checked in one pass (a single 200 KB line
/// would hold the engine for long): they are cut into pieces of about this size.
pub const MAX_PARAGRAPH_BYTES: usize = 4000;

/// The paragraphs of a document to check, long ones cut at word boundaries.
pub fn plan(text: &str, language_id: &str, prose_languages: &[String]) -> Vec<Paragraph> {
    prose::paragraphs(text, language_id, prose_languages)
        .into_iter()
        .flat_map(split_long)
        .collect()
}

/// [`plan`] for an open document whose extractor is kept between passes: `edits` are those
/// since its last extraction (`None`: not known, parse anew).
pub fn plan_document(
    prose: &mut DocumentProse,
    text: &str,
    edits: Option<&[TextEdit]>,
) -> Vec<Paragraph> {
    prose
        .extract(text, edits)
        .into_iter()
        .flat_map(split_long)
        .collect()
}

fn split_long(p: Paragraph) -> Vec<Paragraph> {
    if p.text.len() <= MAX_PARAGRAPH_BYTES {
        return vec![p];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < p.text.len() {
        let mut end = (start + MAX_PARAGRAPH_BYTES).min(p.text.len());
        while !p.text.is_char_boundary(end) {
            end -= 1;
        }
        if end < p.text.len() {
            if let Some(space) = p.text[start..end].rfind(char::is_whitespace) {
                if space > 0 {
                    end = start + space;
                }
            }
        }
        out.push(p.slice(start, end));
        start = end;
        while start < p.text.len() && !p.text.is_char_boundary(start) {
            start += 1;
        }
    }
    out
}

/// Proofreading results by paragraph text, so that unchanged paragraphs cost nothing.
#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<String, (Proofread, u64)>,
    clock: u64,
}

/// Paragraph results kept at most.
const CACHE_ENTRIES: usize = 4096;

impl Cache {
    pub fn get(&mut self, text: &str) -> Option<Proofread> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(text).map(|(r, t)| {
            *t = clock;
            r.clone()
        })
    }

    pub fn insert(&mut self, text: String, result: Proofread) {
        self.clock += 1;
        if self.entries.len() >= CACHE_ENTRIES {
            // Drop the older half at once: eviction stays cheap on average.
            let mut ages: Vec<u64> = self.entries.values().map(|(_, t)| *t).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.entries.retain(|_, (_, t)| *t > cut);
        }
        self.entries.insert(text, (result, self.clock));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The LSP language id for a file name, from its extension (`plaintext` when unknown).
pub fn language_for_path(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == "COMMIT_EDITMSG" {
        return "gitcommit";
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "md" | "markdown" | "mdx" => "markdown",
        "rst" => "restructuredtext",
        "tex" | "latex" => "latex",
        "rs" => "rust",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" => "cpp",
        "go" => "go",
        "java" => "java",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" | "mts" | "cts" => "typescript",
        "jsx" => "javascriptreact",
        "tsx" => "typescriptreact",
        "py" => "python",
        "sh" | "bash" | "zsh" => "shellscript",
        "lua" => "lua",
        "rb" => "ruby",
        "kt" | "kts" => "kotlin",
        "swift" => "swift",
        "cs" => "csharp",
        "php" => "php",
        "sql" => "sql",
        "hs" => "haskell",
        "ml" | "mli" => "ocaml",
        "toml" => "toml",
        "yaml" | "yml" => "yaml",
        "html" | "htm" => "html",
        "css" => "css",
        _ => "plaintext",
    }
}
