//! Inline markup of the hand-written formats: plain text (bare URLs left out) and
//! reStructuredText (literals, roles, references, substitutions, emphasis markers, URLs).

use super::builder::Builder;
use super::text::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Only bare URLs are left out.
    Plain,
    /// reStructuredText.
    Rst,
}

/// Pushes the checkable text of `doc[s..e]` (one line, or one table cell) to `b`.
pub(crate) fn inline(doc: &str, s: usize, e: usize, fl: Flavor, b: &mut Builder) {
    let mut scan = Scan {
        doc,
        bytes: doc.as_bytes(),
        s,
        e,
        i: s,
        run: s,
        no_closer: [false; 17],
        open: None,
    };
    while scan.i < e {
        scan.step(fl, b);
    }
    b.push(scan.run, e);
}

struct Scan<'a> {
    doc: &'a str,
    bytes: &'a [u8],
    s: usize,
    e: usize,
    i: usize,
    /// Where the pending run of text started.
    run: usize,
    /// Backtick runs of a length known to have no closer on this line (lengths over 16 share
    /// the last slot): keeps a line full of unmatched backticks linear.
    no_closer: [bool; 17],
    /// The length of an open `*` emphasis run.
    open: Option<usize>,
}

impl Scan<'_> {
    /// Leaves out `i..to`: text resumes at `to`.
    fn cut(&mut self, b: &mut Builder, to: usize) {
        b.push(self.run, self.i);
        self.i = to;
        self.run = to;
    }

    fn boundary(&self) -> bool {
        self.i == self.s || !is_ident(self.bytes[self.i - 1])
    }

    fn step(&mut self, fl: Flavor, b: &mut Builder) {
        let c = self.bytes[self.i];
        let rst = fl == Flavor::Rst;
        match c {
            b'\\' if rst => self.backslash(b),
            b'`' if rst => self.backticks(b),
            b'*' | b'_' if rst => self.emphasis(c, b),
            b':' if rst && self.boundary() => self.role(b),
            b'|' if rst && self.boundary() => self.substitution(b),
            b'[' if rst => self.footnote(b),
            b'h' | b'H' | b'w' | b'W' | b'f' | b'F' | b'm' | b'M'
                if self.boundary() && url_start(self.bytes, self.i, self.e) =>
            {
                let end = url_end(self.bytes, self.i, self.e);
                self.cut(b, end);
            }
            _ => self.i += 1,
        }
    }

    fn backslash(&mut self, b: &mut Builder) {
        let (i, e) = (self.i, self.e);
        if i + 1 == e {
            // A hard line break.
            self.cut(b, e);
        } else if self.bytes[i + 1].is_ascii_punctuation() {
            // The escaped character stands for both bytes, so a flag on it covers the escape.
            b.push(self.run, i);
            b.replace(&self.doc[i + 1..i + 2], i, i + 2);
            self.run = i + 2;
            self.i += 2;
        } else {
            self.i += 1;
        }
    }

    fn backticks(&mut self, b: &mut Builder) {
        let (i, e) = (self.i, self.e);
        let n = run_len(self.bytes, i, e, b'`');
        let slot = n.min(16);
        if !self.no_closer[slot] {
            if let Some(close) = find_run(self.bytes, i + n, e, b'`', n) {
                b.push(self.run, i);
                let after = if n == 1 {
                    rst_interpreted(self.bytes, i, close, e, b)
                } else {
                    close + n
                };
                self.i = after;
                self.run = after;
                return;
            }
            self.no_closer[slot] = true;
        }
        self.i += n;
    }

    /// Emphasis markers go: `*` runs that open (before a non-space, with a closer later on
    /// the line) or close an open one; `_` when it is not inside a word. Anything else is text.
    fn emphasis(&mut self, c: u8, b: &mut Builder) {
        let (i, s, e) = (self.i, self.s, self.e);
        let n = run_len(self.bytes, i, e, c);
        let before = (i > s)
            .then(|| self.doc[s..i].chars().next_back())
            .flatten();
        let after = (i + n < e)
            .then(|| self.doc[i + n..e].chars().next())
            .flatten();
        let markup = if c == b'*' {
            self.star_markup(n, before, after)
        } else {
            before.is_some_and(char::is_alphanumeric) != after.is_some_and(char::is_alphanumeric)
        };
        if markup {
            b.push(self.run, i);
            self.run = i + n;
        }
        self.i += n;
    }

    fn star_markup(&mut self, n: usize, before: Option<char>, after: Option<char>) -> bool {
        let spaced_before = before.is_none_or(char::is_whitespace);
        if self.open == Some(n) && !spaced_before {
            self.open = None;
            return true;
        }
        let opens = after.is_some_and(|a| !a.is_whitespace())
            && before.is_none_or(|x| x.is_whitespace() || "-:/'\"<([{".contains(x));
        if !opens || self.open.is_some() {
            return false;
        }
        let (bytes, from) = (self.bytes, self.i + n);
        let mut j = from;
        while let Some(p) = find_run(bytes, j, self.e, b'*', n) {
            if !is_ws(bytes[p - 1]) {
                self.open = Some(n);
                return true;
            }
            j = p + n;
        }
        false
    }

    /// A role prefix `:name:` before interpreted text: both left out.
    fn role(&mut self, b: &mut Builder) {
        let (i, e) = (self.i, self.e);
        match role_end(self.bytes, i, e) {
            Some(p) if p < e && self.bytes[p] == b'`' => {
                let close = find_run(self.bytes, p + 1, e, b'`', 1).map_or(e, |q| q + 1);
                self.cut(b, close);
            }
            _ => self.i += 1,
        }
    }

    /// A substitution reference: |name|.
    fn substitution(&mut self, b: &mut Builder) {
        let (i, e, bytes) = (self.i, self.e, self.bytes);
        match find_byte(bytes, i + 1, e.min(i + 64), b'|') {
            Some(p)
                if p > i + 1
                    && !is_ws(bytes[i + 1])
                    && !is_ws(bytes[p - 1])
                    && (p + 1 >= e || !is_ident(bytes[p + 1])) =>
            {
                let end = p + 1 + run_len(bytes, p + 1, e, b'_');
                self.cut(b, end);
            }
            _ => self.i += 1,
        }
    }

    /// A footnote or citation reference: [1]_, [#]_, [CIT2002]_.
    fn footnote(&mut self, b: &mut Builder) {
        let (i, e, bytes) = (self.i, self.e, self.bytes);
        match find_byte(bytes, i + 1, e.min(i + 64), b']') {
            Some(p) if p + 1 < e && bytes[p + 1] == b'_' => self.cut(b, p + 2),
            _ => self.i += 1,
        }
    }
}

/// The start of the next run of exactly `n` bytes `ch` in `bytes[from..e]`.
fn find_run(bytes: &[u8], from: usize, e: usize, ch: u8, n: usize) -> Option<usize> {
    let mut j = from;
    while let Some(p) = find_byte(bytes, j, e, ch) {
        let m = run_len(bytes, p, e, ch);
        if m == n {
            return Some(p);
        }
        j = p + m;
    }
    None
}

/// The end of a reStructuredText role marker `:name:` (or `:domain:name:`) at `i`.
fn role_end(bytes: &[u8], i: usize, e: usize) -> Option<usize> {
    let limit = e.min(i + 64);
    let mut j = i + 1;
    let mut last_colon = None;
    while j < limit {
        let c = bytes[j];
        if c == b':' {
            if j == i + 1 || bytes[j - 1] == b':' {
                return None;
            }
            last_colon = Some(j);
        } else if !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'+' | b'-')) {
            break;
        }
        j += 1;
    }
    last_colon.filter(|&p| p + 1 == j).map(|p| p + 1)
}

/// reStructuredText interpreted text `` `...` `` from `open` to `close` (the backticks):
/// a hyperlink reference (`` `text <url>`_ ``) keeps its text; anything else (default role,
/// a role suffix) is left out. Returns where the text resumes.
fn rst_interpreted(bytes: &[u8], open: usize, close: usize, e: usize, b: &mut Builder) -> usize {
    let mut after = close + 1;
    if after < e && bytes[after] == b'_' {
        while after < e && bytes[after] == b'_' {
            after += 1;
        }
        let mut te = close;
        if close > open + 1 && bytes[close - 1] == b'>' {
            if let Some(lt) = rfind_byte(bytes, open + 1, close, b'<') {
                te = lt;
            }
        }
        b.push(open + 1, trim_end(bytes, open + 1, te));
    } else if after < e && bytes[after] == b':' {
        if let Some(p) = role_end(bytes, after, e) {
            after = p;
        }
    }
    after
}
