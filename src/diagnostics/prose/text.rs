//! Small byte helpers shared by the formats (all markers are ASCII, so byte scanning never
//! cuts a character), and lines.

// ---------------------------------------------------------------------------------------------

pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

pub(crate) fn is_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{b}' | '\u{c}')
}

pub(crate) fn ends_ws(s: &str) -> bool {
    s.as_bytes().last().is_some_and(|&b| is_ws(b))
}

/// A byte that can be part of an identifier (non-ASCII counts, conservatively).
pub(crate) fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

pub(crate) fn floor_char(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(crate) fn ceil_char(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

pub(crate) fn utf8_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

pub(crate) fn starts_at(bytes: &[u8], i: usize, pat: &[u8]) -> bool {
    bytes.len() >= i + pat.len() && &bytes[i..i + pat.len()] == pat
}

pub(crate) fn find_byte(bytes: &[u8], from: usize, to: usize, b: u8) -> Option<usize> {
    if from >= to {
        return None;
    }
    bytes[from..to]
        .iter()
        .position(|&x| x == b)
        .map(|p| p + from)
}

pub(crate) fn rfind_byte(bytes: &[u8], from: usize, to: usize, b: u8) -> Option<usize> {
    if from >= to {
        return None;
    }
    bytes[from..to]
        .iter()
        .rposition(|&x| x == b)
        .map(|p| p + from)
}

pub(crate) fn find(bytes: &[u8], from: usize, to: usize, pat: &[u8]) -> Option<usize> {
    let first = pat[0];
    let mut i = from;
    while let Some(p) = find_byte(bytes, i, to, first) {
        if p + pat.len() <= to && &bytes[p..p + pat.len()] == pat {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

/// Skips spaces and tabs.
pub(crate) fn skip_blank(bytes: &[u8], mut i: usize, e: usize) -> usize {
    while i < e && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

pub(crate) fn trim_end(bytes: &[u8], s: usize, mut e: usize) -> usize {
    while e > s && is_ws(bytes[e - 1]) {
        e -= 1;
    }
    e
}

pub(crate) fn run_len(bytes: &[u8], i: usize, e: usize, b: u8) -> usize {
    let mut j = i;
    while j < e && bytes[j] == b {
        j += 1;
    }
    j - i
}

/// The end of the line that holds `i` (the position of its '\n', or the end of the text).
pub(crate) fn eol(bytes: &[u8], i: usize) -> usize {
    find_byte(bytes, i, bytes.len(), b'\n').unwrap_or(bytes.len())
}

/// Indentation width (tabs to multiples of 4) and the first byte after it.
pub(crate) fn indent_cols(bytes: &[u8], s: usize, e: usize) -> (usize, usize) {
    let mut cols = 0;
    let mut p = s;
    while p < e {
        match bytes[p] {
            b' ' => cols += 1,
            b'\t' => cols += 4 - cols % 4,
            _ => break,
        }
        p += 1;
    }
    (cols, p)
}

pub(crate) fn has_alnum(doc: &str, s: usize, e: usize) -> bool {
    s < e && doc[s..e].chars().any(char::is_alphanumeric)
}

/// A line of the document (or of a comment): content `start..end` without its line ending,
/// and the offset of the '\n' that ends it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub start: usize,
    pub end: usize,
    pub nl: Option<usize>,
}

pub(crate) fn split_lines(doc: &str, from: usize, to: usize) -> Vec<Line> {
    let bytes = doc.as_bytes();
    let mut lines = Vec::new();
    let mut s = from;
    while s < to {
        let nl = find_byte(bytes, s, to, b'\n');
        let raw_end = nl.unwrap_or(to);
        let end = if raw_end > s && bytes[raw_end - 1] == b'\r' {
            raw_end - 1
        } else {
            raw_end
        };
        lines.push(Line { start: s, end, nl });
        s = raw_end + 1;
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// Inline markup
// ---------------------------------------------------------------------------------------------

pub(crate) fn starts_at_ci(bytes: &[u8], i: usize, pat: &[u8]) -> bool {
    bytes.len() >= i + pat.len() && bytes[i..i + pat.len()].eq_ignore_ascii_case(pat)
}

pub(crate) fn url_start(bytes: &[u8], i: usize, e: usize) -> bool {
    const SCHEMES: [&[u8]; 6] = [
        b"http://",
        b"https://",
        b"www.",
        b"ftp://",
        b"file://",
        b"mailto:",
    ];
    SCHEMES
        .iter()
        .any(|s| i + s.len() < e && starts_at_ci(bytes, i, s))
}

/// The end of a bare URL starting at `i`, without trailing punctuation or an unbalanced ')'.
pub(crate) fn url_end(bytes: &[u8], i: usize, e: usize) -> usize {
    let mut j = i;
    let (mut parens, mut squares) = (0isize, 0isize);
    while j < e && !is_ws(bytes[j]) && !matches!(bytes[j], b'<' | b'>' | b'"' | b'`' | b'\'') {
        match bytes[j] {
            b'(' => parens += 1,
            b')' => parens -= 1,
            b'[' => squares += 1,
            b']' => squares -= 1,
            _ => {}
        }
        j += 1;
    }
    // `parens` < 0: more ')' than '(' in i..j (so a trailing ')' is not the URL's).
    while j > i {
        match bytes[j - 1] {
            b'.' | b',' | b':' | b';' | b'!' | b'?' | b'*' | b'_' | b'~' => j -= 1,
            b')' if parens < 0 => {
                parens += 1;
                j -= 1;
            }
            b']' if squares < 0 => {
                squares += 1;
                j -= 1;
            }
            _ => break,
        }
    }
    j
}
