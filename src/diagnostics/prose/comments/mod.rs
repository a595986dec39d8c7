//! The comments of code documents. Where the comments are comes from a tree-sitter tree for
//! the common languages ([`treesitter`]) and from the table scanner for the rest
//! ([`scanner`]); either way a comment becomes a [`Group`] of lines with its leaders removed.
//! A group's text is markdown (doc comments are): lines of machine text, commented-out code,
//! doctests and doc-tag markers are taken out, and what is left goes through
//! [`super::markdown`], with the offsets mapped back through the removed leaders.

pub(crate) mod machine;
pub(crate) mod scanner;
pub mod treesitter;

use super::markdown::{self, Mode};
use super::text::*;
use super::Paragraph;
use machine::{doc_tag, field_marker, is_machine_line, looks_like_code, Tag};

/// The lines of one comment (a block comment, or consecutive line comments).
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub lines: Vec<Line>,
    pub block: bool,
}

/// The paragraphs of one comment.
pub(crate) fn group_paragraphs(doc: &str, group: &Group, out: &mut Vec<Paragraph>) {
    let v = comment_text(doc, group);
    for p in markdown::paragraphs(&v.text, Mode::Comment) {
        out.push(v.remap(p));
    }
}

/// A comment's text as one string (leaders gone, skipped lines blank) and where each of its
/// bytes is in the document.
#[derive(Default)]
struct Virtual {
    text: String,
    /// (offset in `text`, document offset, length), sorted.
    segs: Vec<(usize, usize, usize)>,
}

impl Virtual {
    fn line(&mut self, s: usize, e: usize, doc: &str, nl: Option<usize>) {
        if s < e {
            self.segs.push((self.text.len(), s, e - s));
            self.text.push_str(&doc[s..e]);
        }
        if let Some(p) = nl {
            self.segs.push((self.text.len(), p, 1));
        }
        self.text.push('\n');
    }

    /// A line that is not prose: a blank line, which ends the paragraph.
    fn blank(&mut self) {
        self.text.push('\n');
    }

    /// The document offset of text offset `v` (the start of the next mapped byte when `v`
    /// is glue).
    fn doc_offset(&self, v: usize, end: bool) -> usize {
        let k = self.segs.partition_point(|s| s.0 <= v);
        match k.checked_sub(1).map(|k| self.segs[k]) {
            Some((vs, ds, l)) if v < vs + l || (end && v == vs + l) => ds + (v - vs),
            _ => self.segs.get(k).map_or(0, |s| s.1),
        }
    }

    /// `p` (offsets into `text`) with document offsets.
    fn remap(&self, p: Paragraph) -> Paragraph {
        let mut pieces = Vec::with_capacity(p.pieces.len());
        for (t, vd, l) in p.pieces {
            let mut k = self.segs.partition_point(|s| s.0 + s.2 <= vd);
            while let Some(&(vs, ds, sl)) = self.segs.get(k) {
                let (a, b) = (vd.max(vs), (vd + l).min(vs + sl));
                if a >= b {
                    break;
                }
                let (nt, nd) = (t + (a - vd), ds + (a - vs));
                match pieces.last_mut() {
                    Some((pt, pd, pl)) if *pt + *pl == nt && *pd + *pl == nd => *pl += b - a,
                    _ => pieces.push((nt, nd, b - a)),
                }
                k += 1;
            }
        }
        let replaced = p
            .replaced
            .iter()
            .map(|&(t, l, s, e)| (t, l, self.doc_offset(s, false), self.doc_offset(e, true)))
            .collect();
        Paragraph {
            pieces,
            replaced,
            ..p
        }
    }
}

/// The comment's lines with what is not prose blanked out.
fn comment_text(doc: &str, group: &Group) -> Virtual {
    let mut v = Virtual::default();
    let mut st = LineState::default();
    let base = base_indent(doc, group);
    for (k, line) in group.lines.iter().enumerate() {
        let first_of_block = k == 0 && group.block;
        st.line(doc, *line, base, first_of_block, &mut v);
    }
    v
}

/// Indentation (in bytes) that all non-blank lines of the comment share.
fn base_indent(doc: &str, group: &Group) -> usize {
    let bytes = doc.as_bytes();
    group
        .lines
        .iter()
        .skip(usize::from(group.block))
        .filter_map(|l| {
            let p = skip_blank(bytes, l.start, l.end);
            (p < l.end).then_some(p - l.start)
        })
        .min()
        .unwrap_or(0)
}

#[derive(Default)]
struct LineState {
    fence: Option<u8>,
    doctest: bool,
    example: bool,
}

impl LineState {
    fn line(&mut self, doc: &str, line: Line, base: usize, first: bool, v: &mut Virtual) {
        let bytes = doc.as_bytes();
        let t = skip_blank(bytes, line.start, line.end);
        let s = if first {
            t
        } else {
            line.start + base.min(t - line.start)
        };
        let ce = trim_end(bytes, t, line.end);
        if let Some(ch) = self.fence {
            if t + 3 <= ce && run_len(bytes, t, ce, ch) >= 3 {
                self.fence = None;
            }
            return v.line(s, line.end, doc, line.nl);
        }
        if t >= ce {
            self.doctest = false;
            return v.line(s, s, doc, line.nl);
        }
        if self.doctest || starts_at(bytes, t, b">>>") {
            self.doctest = true;
            return v.blank();
        }
        if matches!(bytes[t], b'`' | b'~') && run_len(bytes, t, ce, bytes[t]) >= 3 {
            self.fence = Some(bytes[t]);
            return v.line(s, line.end, doc, line.nl);
        }
        let content = &doc[t..ce];
        if is_machine_line(content) || looks_like_code(content) {
            return v.blank();
        }
        match self.prose_start(doc, t, ce, v) {
            Some(p) if p == t => v.line(s, line.end, doc, line.nl),
            Some(p) => v.line(p, line.end, doc, line.nl),
            None => v.blank(),
        }
    }

    /// Where the prose of a line starts after a doc tag (`@param x`, `\brief`) or a field
    /// marker (`:param x:`), which also start a new paragraph; `None` for a line that is not
    /// prose (a tag without text, an example's code).
    fn prose_start(&mut self, doc: &str, t: usize, ce: usize, v: &mut Virtual) -> Option<usize> {
        let bytes = doc.as_bytes();
        let tag = bytes[t] == b'@'
            || (bytes[t] == b'\\' && t + 1 < ce && bytes[t + 1].is_ascii_alphabetic());
        let mut start = t;
        if tag {
            v.blank();
            match doc_tag(doc, t, ce) {
                Tag::Text(p) => start = p,
                Tag::Skip => {
                    self.example = false;
                    return None;
                }
                Tag::Example => {
                    self.example = true;
                    return None;
                }
            }
            self.example = false;
        } else if self.example {
            return None;
        }
        if start < ce && bytes[start] == b':' {
            if let Some(p) = field_marker(bytes, start, ce) {
                v.blank();
                start = p;
            }
        }
        Some(start)
    }
}
