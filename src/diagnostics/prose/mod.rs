//! Which text of a document the sentence-probability diagnostics check.
//!
//! [`paragraphs`] turns a document into [`Paragraph`]s: the prose of a prose document or the
//! comments of a code document, with markup, code and machine text (URLs, lint pragmas,
//! shebangs, commented-out code) left out. Each paragraph keeps a map from its text back to
//! the document's bytes, so that an unlikely word found in the text lands on the same word in
//! the document. One file per format:
//!
//! - [`markdown`]: pulldown-cmark's offset iterator (CommonMark, GFM tables, footnotes, task
//!   lists, math, front matter); also the text of doc comments.
//! - [`comments`]: where the comments of code are, from a tree-sitter tree for the common
//!   languages (with the identifiers the file uses) and from a table scanner for the rest.
//! - [`rst`], [`latex`], [`gitcommit`] (plain text and commit messages): hand-written.
//! - [`incremental`]: a per-document tree that is edited, not parsed again, on a keystroke.
//!
//! All offsets are byte offsets into UTF-8 text; every cut is made at a character boundary.

mod builder;
pub mod comments;
mod gitcommit;
pub mod incremental;
mod inline;
mod latex;
pub mod markdown;
mod rst;
mod text;

use std::collections::HashMap;
use std::sync::Arc;

pub use incremental::{DocumentProse, TextEdit};

/// A stretch of checkable text: what the model scores, and where each byte came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// The text to score: markers removed (comment leaders, markdown heading #, list bullets,
    /// quote >), lines of one paragraph joined with '\n' kept as in the source where possible.
    pub text: String,
    /// Contiguous pieces: (offset in `text`, byte offset in the document, length in bytes).
    /// Sorted by text offset; bytes of `text` between pieces are inserted glue (a space that
    /// stands for removed markup, a '\n' where no source newline could be used, or a
    /// replacement below).
    pub pieces: Vec<(usize, usize, usize)>,
    /// Text that stands for other document bytes (a decoded character entity: "é" for
    /// `&eacute;`): (offset in `text`, length in `text`, document start, document end).
    pub replaced: Vec<(usize, usize, usize, usize)>,
    /// Names the document itself defines or uses (its identifiers): a flagged word equal to
    /// one of them is not reported.
    pub known: Option<Arc<KnownWords>>,
}

/// The identifiers of a code document, counted (so that an edit can remove one occurrence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownWords(HashMap<String, u32>);

impl KnownWords {
    pub fn contains(&self, word: &str) -> bool {
        self.0.get(word).is_some_and(|&n| n > 0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add(&mut self, word: &str) {
        match self.0.get_mut(word) {
            Some(n) => *n += 1,
            None => {
                self.0.insert(word.to_string(), 1);
            }
        }
    }

    fn remove(&mut self, word: &str) {
        if let Some(n) = self.0.get_mut(word) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(word);
            }
        }
    }
}

impl Paragraph {
    /// Whether `word` (flagged in this paragraph) is a name the document uses.
    pub fn is_known(&self, word: &str) -> bool {
        self.known.as_ref().is_some_and(|k| k.contains(word))
    }

    /// The document byte offset of a byte offset into `text` (an offset at the very end maps
    /// to the end of the last piece). Offsets inside inserted glue map to the start of the
    /// next piece, inside a replacement to the start of what it replaced. An offset inside a
    /// multi-byte character is first moved back to the character's start, so the result is
    /// always a character boundary of the document.
    pub fn to_document(&self, offset: usize) -> usize {
        let offset = text::floor_char(&self.text, offset);
        if let Some(r) = self.replacement_at(offset) {
            return r.2;
        }
        let idx = self.pieces.partition_point(|p| p.0 <= offset);
        if idx == 0 {
            return self.pieces.first().map_or(0, |p| p.1);
        }
        let (t, d, l) = self.pieces[idx - 1];
        if offset < t + l {
            d + (offset - t)
        } else if let Some(next) = self.pieces.get(idx) {
            next.1
        } else {
            d + l
        }
    }

    fn replacement_at(&self, offset: usize) -> Option<(usize, usize, usize, usize)> {
        let k = self.replaced.partition_point(|r| r.0 <= offset);
        let r = *self.replaced.get(k.checked_sub(1)?)?;
        (offset < r.0 + r.1).then_some(r)
    }

    /// The document byte range of a text byte range (start mapped forward, end mapped back so
    /// that a range never spans glue it does not contain; a range that ends in a replacement
    /// ends where the replaced bytes end). A start inside a character moves back to its start
    /// and an end inside a character moves forward to its end. Empty or inverted ranges give
    /// an empty range at the mapped start.
    pub fn range_to_document(&self, start: usize, end: usize) -> (usize, usize) {
        let doc_start = self.to_document(start);
        let end = text::ceil_char(&self.text, end);
        if end <= text::floor_char(&self.text, start) {
            return (doc_start, doc_start);
        }
        let idx = self.pieces.partition_point(|p| p.0 < end);
        let mut doc_end = match idx {
            0 => doc_start,
            _ => {
                let (t, d, l) = self.pieces[idx - 1];
                d + (end - t).min(l)
            }
        };
        if let Some(r) = self.replacement_at(end - 1) {
            doc_end = doc_end.max(r.3);
        }
        (doc_start, doc_end.max(doc_start))
    }

    /// The part of this paragraph at text range `start..end` (character boundaries), rebased
    /// to offset 0.
    pub fn slice(&self, start: usize, end: usize) -> Paragraph {
        let mut pieces = Vec::new();
        for &(t, d, l) in &self.pieces {
            let (a, b) = (t.max(start), (t + l).min(end));
            if a < b {
                pieces.push((a - start, d + (a - t), b - a));
            }
        }
        if pieces.is_empty() {
            let (doc_start, _) = self.range_to_document(start, end);
            pieces.push((0, doc_start, 0));
        }
        let replaced = self
            .replaced
            .iter()
            .filter(|r| r.0 >= start && r.0 + r.1 <= end)
            .map(|&(t, l, ds, de)| (t - start, l, ds, de))
            .collect();
        Paragraph {
            text: self.text[start..end].to_string(),
            pieces,
            replaced,
            known: self.known.clone(),
        }
    }

    /// Moves every document offset by `delta` (the text before this paragraph grew or shrank).
    pub(crate) fn shift(&mut self, delta: isize) {
        for p in &mut self.pieces {
            p.1 = p.1.wrapping_add_signed(delta);
        }
        for r in &mut self.replaced {
            r.2 = r.2.wrapping_add_signed(delta);
            r.3 = r.3.wrapping_add_signed(delta);
        }
    }
}

/// Whether `language_id` is prose (its whole text is checked).
pub fn is_prose(language_id: &str, prose_languages: &[String]) -> bool {
    prose_languages
        .iter()
        .any(|l| l.eq_ignore_ascii_case(language_id))
}

/// The paragraphs to check in `text`, in document order.
///
/// Prose languages (those in `prose_languages`) are checked whole, with the markup of
/// markdown, LaTeX and reStructuredText removed and commit-message comments skipped; every
/// other language is code, and only its comments are checked (tree-sitter for the common
/// languages, the table scanner for the rest); a language neither knows gives no paragraphs.
/// For a document that stays open, [`DocumentProse`] does the same work incrementally.
pub fn paragraphs(text: &str, language_id: &str, prose_languages: &[String]) -> Vec<Paragraph> {
    DocumentProse::new(language_id, prose_languages).extract(text, None)
}

/// The paragraphs of a document checked whole.
pub(crate) fn prose_document(text: &str, language_id: &str) -> Vec<Paragraph> {
    let mut b = builder::Builder::new(text);
    match language_id.to_ascii_lowercase().as_str() {
        "markdown" | "md" | "mdx" | "rmarkdown" | "rmd" | "quarto" | "gfm" => {
            return markdown::paragraphs(text, markdown::Mode::Document)
        }
        "latex" | "tex" | "plaintex" | "context" | "bibtex" => latex::latex_document(text, &mut b),
        "restructuredtext" | "rst" => rst::rst_document(text, &mut b),
        "gitcommit" | "git-commit" => gitcommit::gitcommit_document(text, &mut b),
        _ => gitcommit::plain_document(text, &mut b),
    }
    b.finish()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_incremental;
#[cfg(test)]
mod tests_leaks;
