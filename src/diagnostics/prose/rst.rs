//! reStructuredText (hand-written: no maintained Rust parser gives offsets).

use super::builder::Builder;
use super::inline::{inline, Flavor};
use super::text::*;

/// Directives whose body is prose.
const RST_ADMONITIONS: &[&str] = &[
    "note",
    "warning",
    "tip",
    "hint",
    "important",
    "caution",
    "danger",
    "error",
    "attention",
    "admonition",
    "seealso",
    "topic",
    "sidebar",
    "epigraph",
    "highlights",
    "pull-quote",
    "rubric",
];

/// reStructuredText: directives (other than admonitions), comments, targets, substitution
/// definitions, literal blocks (after `::`) and doctests are left out; section adornments
/// and table borders split paragraphs; bullets, enumerators, field markers and line-block
/// bars are removed.
pub(crate) fn rst_document(doc: &str, b: &mut Builder) {
    let mut st = Rst {
        doc,
        bytes: doc.as_bytes(),
        skip_deeper: None,
        literal_next: None,
        doctest: false,
        options: false,
    };
    for line in split_lines(doc, 0, doc.len()) {
        st.line(line, b);
    }
    b.flush();
}

struct Rst<'a> {
    doc: &'a str,
    bytes: &'a [u8],
    /// Skip the indented body of a directive or comment: non-blank lines indented deeper.
    skip_deeper: Option<usize>,
    literal_next: Option<usize>,
    doctest: bool,
    options: bool,
}

impl Rst<'_> {
    fn line(&mut self, line: Line, b: &mut Builder) {
        let bytes = self.bytes;
        let (cols, t) = indent_cols(bytes, line.start, line.end);
        let ce = trim_end(bytes, t, line.end);
        if t >= ce {
            b.flush();
            self.doctest = false;
            self.options = false;
            return;
        }
        if self.skipped(cols, t, b) {
            return;
        }
        let text = &self.doc[t..ce];
        if text.starts_with(">>>") {
            b.flush();
            self.doctest = true;
        } else if text == ".." || text.starts_with(".. ") {
            b.flush();
            self.explicit_markup(line, cols, t, ce, b);
        } else if text == "::" {
            b.flush();
            self.literal_next = Some(cols);
        } else if !has_alnum(self.doc, t, ce) {
            // Section adornments, transitions, table borders.
            b.flush();
        } else if text.len() > 1 && text.starts_with('|') && text.ends_with('|') {
            b.flush();
            table_cells_rst(self.doc, t + 1, ce - 1, b);
        } else {
            self.body(line, cols, t, ce, b);
        }
    }

    /// Lines inside a directive's body, a literal block, an option list or a doctest.
    fn skipped(&mut self, cols: usize, t: usize, b: &mut Builder) -> bool {
        if let Some(lim) = self.skip_deeper {
            if cols > lim {
                return true;
            }
            self.skip_deeper = None;
        }
        if let Some(lim) = self.literal_next.take() {
            if cols > lim {
                b.flush();
                self.skip_deeper = Some(lim);
                return true;
            }
        }
        if self.options {
            if self.bytes[t] == b':' {
                return true;
            }
            self.options = false;
        }
        self.doctest
    }

    /// `.. ` lines: footnotes and admonitions keep their text; any other directive, a
    /// comment, a target or a substitution definition is left out with its body.
    fn explicit_markup(&mut self, line: Line, cols: usize, t: usize, ce: usize, b: &mut Builder) {
        let (doc, bytes) = (self.doc, self.bytes);
        let rs = skip_blank(bytes, t + 2, ce);
        let rest = &doc[rs..ce];
        if rest.starts_with('[') {
            if let Some(p) = find_byte(bytes, rs, ce, b']') {
                let cs = skip_blank(bytes, p + 1, ce);
                inline(doc, cs, ce, Flavor::Rst, b);
                b.line_break(line.nl);
                return;
            }
        }
        if let Some(k) = rest.find("::") {
            let name = &rest[..k];
            let directive = !name.is_empty()
                && name.bytes().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b':' | b'.' | b'+')
                });
            if directive && RST_ADMONITIONS.contains(&name.to_ascii_lowercase().as_str()) {
                let cs = skip_blank(bytes, rs + k + 2, ce);
                inline(doc, cs, ce, Flavor::Rst, b);
                b.line_break(line.nl);
                self.options = true;
                return;
            }
        }
        self.skip_deeper = Some(cols);
    }

    /// A line of body text: bullets, line-block bars and field markers removed; a trailing
    /// `::` starts a literal block.
    fn body(&mut self, line: Line, cols: usize, t: usize, ce: usize, b: &mut Builder) {
        let (doc, bytes) = (self.doc, self.bytes);
        let text = &doc[t..ce];
        let mut start = t;
        if text.starts_with("| ") {
            start = skip_blank(bytes, t + 1, ce);
        } else if let Some(cs) = rst_bullet(bytes, t, ce) {
            start = cs;
        } else if bytes[t] == b':' {
            if let Some(p) = super::comments::machine::field_marker(bytes, t, ce) {
                b.flush();
                start = p;
            }
        }
        let mut end = ce;
        if text.ends_with("::") {
            self.literal_next = Some(cols);
            end = if ce >= start + 3 && is_ws(bytes[ce - 3]) {
                trim_end(bytes, start, ce - 2)
            } else {
                ce - 1
            };
        }
        inline(doc, start, end, Flavor::Rst, b);
        b.line_break(line.nl);
    }
}

pub(crate) fn table_cells_rst(doc: &str, s: usize, e: usize, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut cell = s;
    for j in s..=e {
        if j == e || bytes[j] == b'|' {
            let cs = skip_blank(bytes, cell, j);
            inline(doc, cs, trim_end(bytes, cs, j), Flavor::Rst, b);
            b.flush();
            cell = j + 1;
        }
    }
}

/// A reStructuredText bullet or enumerator at `t`: where the item text starts.
pub(crate) fn rst_bullet(bytes: &[u8], t: usize, e: usize) -> Option<usize> {
    let c = bytes[t];
    let after = if matches!(c, b'-' | b'*' | b'+') {
        t + 1
    } else if starts_at(bytes, t, "•".as_bytes()) {
        t + "•".len()
    } else if starts_at(bytes, t, b"#.") {
        t + 2
    } else if c == b'(' || c.is_ascii_digit() {
        let paren = c == b'(';
        let ds = if paren { t + 1 } else { t };
        let n = ds
            + (ds..e.min(ds + 9))
                .take_while(|&j| bytes[j].is_ascii_digit())
                .count();
        if n == ds || n >= e {
            return None;
        }
        let closed = if paren {
            bytes[n] == b')'
        } else {
            bytes[n] == b'.' || bytes[n] == b')'
        };
        if !closed {
            return None;
        }
        n + 1
    } else {
        return None;
    };
    if after < e && (bytes[after] == b' ' || bytes[after] == b'\t') {
        Some(skip_blank(bytes, after, e))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// LaTeX
