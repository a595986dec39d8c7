//! Accumulates paragraphs from document slices and glue.

use super::text::*;
use super::Paragraph;

// Building paragraphs
// ---------------------------------------------------------------------------------------------

/// A pending separator that stands for a source newline with no document byte behind it.
const GLUE_NL: usize = usize::MAX;

/// Accumulates the current paragraph from document slices and glue.
pub(crate) struct Builder<'a> {
    doc: &'a str,
    text: String,
    pieces: Vec<(usize, usize, usize)>,
    replaced: Vec<(usize, usize, usize, usize)>,
    /// A line break to put before the next text: the document offset of its '\n' (or
    /// [`GLUE_NL`]).
    sep: Option<usize>,
    out: Vec<Paragraph>,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(doc: &'a str) -> Self {
        Builder {
            doc,
            text: String::new(),
            pieces: Vec::new(),
            replaced: Vec::new(),
            sep: None,
            out: Vec::new(),
        }
    }

    /// Appends `doc[s..e]`. Text that follows removed markup loses its leading whitespace when
    /// the paragraph already ends with whitespace (so "a `x` b" reads "a b"), and a space left
    /// before punctuation by a removal is dropped ("see `x`." reads "see.").
    pub(crate) fn push(&mut self, mut s: usize, e: usize) {
        if s >= e {
            return;
        }
        let bytes = self.doc.as_bytes();
        let contiguous = self.sep.is_none()
            && self
                .pieces
                .last()
                .is_some_and(|&(t, d, l)| t + l == self.text.len() && d + l == s);
        if !contiguous {
            if self.sep.is_none() && !self.text.is_empty() {
                s = self.after_removal(s, e);
            }
            if self.text.is_empty() || self.sep.is_some() || ends_ws(&self.text) {
                while s < e && is_ws(bytes[s]) {
                    s += 1;
                }
            }
            if s >= e {
                return;
            }
            if self.sep.is_some() {
                self.flush_separator();
            } else if ends_ws(&self.text)
                && matches!(bytes[s], b'.' | b',' | b';' | b':' | b'!' | b'?' | b')')
            {
                self.trim_end();
            }
        }
        self.add_piece(s, e);
    }

    /// Text resumes at `s` after removed markup: separators left directly inside an opening
    /// bracket or after another separator are dropped, and a bracket pair left empty goes
    /// ("a library (`x`) and" reads "a library and", "(`a`, `b`)" disappears, "x, `a`, `b`)"
    /// reads "x)").
    fn after_removal(&mut self, mut s: usize, e: usize) -> usize {
        let bytes = self.doc.as_bytes();
        while s < e {
            let last = self
                .text
                .trim_end_matches(is_ws_char)
                .as_bytes()
                .last()
                .copied();
            match (last, bytes[s]) {
                (Some(b'(' | b'['), b',' | b';' | b':' | b'/' | b'|')
                | (Some(b',' | b';'), b',' | b';') => {
                    s = skip_blank(bytes, s + 1, e);
                }
                (Some(b',' | b';'), b')' | b']') => {
                    self.trim_end();
                    let len = self.text.len() - 1;
                    self.truncate(len);
                }
                (Some(b'('), b')') | (Some(b'['), b']') => {
                    self.trim_end();
                    let len = self.text.len() - 1;
                    self.truncate(len);
                    s += 1;
                }
                _ => break,
            }
        }
        s
    }

    fn add_piece(&mut self, s: usize, e: usize) {
        debug_assert!(self.doc.is_char_boundary(s) && self.doc.is_char_boundary(e));
        let t = self.text.len();
        match self.pieces.last_mut() {
            Some(p) if p.0 + p.2 == t && p.1 + p.2 == s => p.2 += e - s,
            _ => self.pieces.push((t, s, e - s)),
        }
        self.text.push_str(&self.doc[s..e]);
    }

    /// Glue: a space standing for removed markup, unless the text already ends with one.
    pub(crate) fn space(&mut self) {
        if self.sep.is_none() && !self.text.is_empty() && !ends_ws(&self.text) {
            self.text.push(' ');
        }
    }

    /// Ends a source line: the next text of this paragraph goes after a '\n' (the document's
    /// own newline at `nl` when there is one).
    pub(crate) fn line_break(&mut self, nl: Option<usize>) {
        if !self.text.is_empty() {
            self.sep = Some(nl.unwrap_or(GLUE_NL));
        }
    }

    fn truncate(&mut self, len: usize) {
        self.text.truncate(len);
        while self.replaced.last().is_some_and(|r| r.0 + r.1 > len) {
            self.replaced.pop();
        }
        while let Some(p) = self.pieces.last_mut() {
            if p.0 >= len {
                self.pieces.pop();
            } else {
                if p.0 + p.2 > len {
                    p.2 = len - p.0;
                }
                break;
            }
        }
    }

    fn trim_end(&mut self) {
        let len = self.text.trim_end_matches(is_ws_char).len();
        self.truncate(len);
    }

    /// Ends the current paragraph: trimmed, and kept only if it has a letter.
    pub(crate) fn flush(&mut self) {
        self.trim_end();
        self.sep = None;
        let text = std::mem::take(&mut self.text);
        let pieces = std::mem::take(&mut self.pieces);
        let replaced = std::mem::take(&mut self.replaced);
        if !text.chars().any(char::is_alphabetic) {
            return;
        }
        let lead = text.len() - text.trim_start_matches(is_ws_char).len();
        let pieces = pieces
            .into_iter()
            .filter_map(|(t, d, l)| {
                if t + l <= lead {
                    None
                } else if t < lead {
                    Some((0, d + (lead - t), l - (lead - t)))
                } else {
                    Some((t - lead, d, l))
                }
            })
            .collect();
        let replaced = replaced
            .into_iter()
            .filter(|r| r.0 >= lead)
            .map(|(t, l, ds, de)| (t - lead, l, ds, de))
            .collect();
        self.out.push(Paragraph {
            text: text[lead..].to_string(),
            pieces,
            replaced,
            known: None,
        });
    }

    /// Appends `text`, which stands for the document bytes `s..e` (a decoded entity).
    pub(crate) fn replace(&mut self, text: &str, s: usize, e: usize) {
        if text.is_empty() {
            return;
        }
        if text.chars().all(is_ws_char) {
            self.space();
            return;
        }
        self.flush_separator();
        self.replaced.push((self.text.len(), text.len(), s, e));
        self.text.push_str(text);
    }

    /// Writes the pending separator, if any, before the next text: a line break in the
    /// document (`sep` is its byte) or a glued `\n`; nothing at the paragraph's start.
    fn flush_separator(&mut self) {
        if let Some(nl) = self.sep.take() {
            if !self.text.is_empty() {
                self.trim_end();
                if nl == GLUE_NL {
                    self.text.push('\n');
                } else {
                    self.add_piece(nl, nl + 1);
                }
            }
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Paragraph> {
        self.flush();
        self.out
    }
}

// ---------------------------------------------------------------------------------------------
// Small byte helpers (all markers are ASCII, so byte scanning never cuts a character)
