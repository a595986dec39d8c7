//! Which text of a document the sentence-probability diagnostics check.
//!
//! [`paragraphs`] turns a document into [`Paragraph`]s: the prose of a prose document
//! (markdown, LaTeX, reStructuredText, plain text, commit messages) or the comments of a
//! code document, with markup, code and machine text (URLs, lint pragmas, shebangs,
//! commented-out code) left out. Each paragraph keeps a map from its text back to the
//! document's bytes, so that an unlikely word found in the text lands on the same word in
//! the document.
//!
//! Everything here is a single forward pass over the document (plus small per-line tables),
//! so the cost is linear in the document's size. All offsets are byte offsets into UTF-8
//! text; every cut is made at an ASCII byte or a line end, so no piece splits a character.

/// A stretch of checkable text: what the model scores, and where each byte came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// The text to score: markers removed (comment leaders, markdown heading #, list bullets,
    /// quote >), lines of one paragraph joined with '\n' kept as in the source where possible.
    pub text: String,
    /// Contiguous pieces: (offset in `text`, byte offset in the document, length in bytes).
    /// Sorted by text offset; bytes of `text` between pieces are inserted glue (a space that
    /// stands for removed markup, or a '\n' where no source newline could be used).
    pub pieces: Vec<(usize, usize, usize)>,
}

impl Paragraph {
    /// The document byte offset of a byte offset into `text` (an offset at the very end maps
    /// to the end of the last piece). Offsets inside inserted glue map to the start of the
    /// next piece. An offset inside a multi-byte character is first moved back to the
    /// character's start, so the result is always a character boundary of the document.
    pub fn to_document(&self, offset: usize) -> usize {
        let offset = floor_char(&self.text, offset);
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

    /// The document byte range of a text byte range (start mapped forward, end mapped back so
    /// that a range never spans glue it does not contain). A start inside a character moves
    /// back to its start and an end inside a character moves forward to its end. Empty or
    /// inverted ranges give an empty range at the mapped start.
    pub fn range_to_document(&self, start: usize, end: usize) -> (usize, usize) {
        let doc_start = self.to_document(start);
        let end = ceil_char(&self.text, end);
        if end <= floor_char(&self.text, start) {
            return (doc_start, doc_start);
        }
        let idx = self.pieces.partition_point(|p| p.0 < end);
        if idx == 0 {
            return (doc_start, doc_start);
        }
        let (t, d, l) = self.pieces[idx - 1];
        let doc_end = d + (end - t).min(l);
        (doc_start, doc_end.max(doc_start))
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
/// other language is code, and only its comments are checked (see the table in this module);
/// a language the table does not know gives no paragraphs.
pub fn paragraphs(text: &str, language_id: &str, prose_languages: &[String]) -> Vec<Paragraph> {
    let mut b = Builder::new(text);
    if is_prose(language_id, prose_languages) {
        match language_id.to_ascii_lowercase().as_str() {
            "markdown" | "md" | "mdx" | "rmarkdown" | "rmd" | "quarto" | "gfm" => {
                markdown_document(text, &mut b)
            }
            "latex" | "tex" | "plaintex" | "context" | "bibtex" => latex_document(text, &mut b),
            "restructuredtext" | "rst" => rst_document(text, &mut b),
            "gitcommit" | "git-commit" => gitcommit_document(text, &mut b),
            _ => plain_document(text, &mut b),
        }
    } else if let Some(syntax) = syntax_of(language_id) {
        for group in comment_groups(text, syntax) {
            let mode = CommentMode::of(text, &group);
            markdown_block(text, &group.lines, Some(mode), &mut b);
        }
    }
    b.finish()
}

// ---------------------------------------------------------------------------------------------
// Building paragraphs
// ---------------------------------------------------------------------------------------------

/// A pending separator that stands for a source newline with no document byte behind it.
const GLUE_NL: usize = usize::MAX;

/// Accumulates the current paragraph from document slices and glue.
struct Builder<'a> {
    doc: &'a str,
    text: String,
    pieces: Vec<(usize, usize, usize)>,
    /// A line break to put before the next text: the document offset of its '\n' (or
    /// [`GLUE_NL`]).
    sep: Option<usize>,
    out: Vec<Paragraph>,
}

impl<'a> Builder<'a> {
    fn new(doc: &'a str) -> Self {
        Builder {
            doc,
            text: String::new(),
            pieces: Vec::new(),
            sep: None,
            out: Vec::new(),
        }
    }

    /// Appends `doc[s..e]`. Text that follows removed markup loses its leading whitespace when
    /// the paragraph already ends with whitespace (so "a `x` b" reads "a b"), and a space left
    /// before punctuation by a removal is dropped ("see `x`." reads "see.").
    fn push(&mut self, mut s: usize, e: usize) {
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
            if let Some(nl) = self.sep.take() {
                if !self.text.is_empty() {
                    self.trim_end();
                    if nl == GLUE_NL {
                        self.text.push('\n');
                    } else {
                        self.add_piece(nl, nl + 1);
                    }
                }
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
    fn space(&mut self) {
        if self.sep.is_none() && !self.text.is_empty() && !ends_ws(&self.text) {
            self.text.push(' ');
        }
    }

    /// Ends a source line: the next text of this paragraph goes after a '\n' (the document's
    /// own newline at `nl` when there is one).
    fn line_break(&mut self, nl: Option<usize>) {
        if !self.text.is_empty() {
            self.sep = Some(nl.unwrap_or(GLUE_NL));
        }
    }

    fn truncate(&mut self, len: usize) {
        self.text.truncate(len);
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
    fn flush(&mut self) {
        self.trim_end();
        self.sep = None;
        let text = std::mem::take(&mut self.text);
        let pieces = std::mem::take(&mut self.pieces);
        if !text.chars().any(char::is_alphabetic) {
            return;
        }
        let lead = text.len() - text.trim_start_matches(is_ws_char).len();
        if lead == 0 {
            self.out.push(Paragraph { text, pieces });
            return;
        }
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
        self.out.push(Paragraph {
            text: text[lead..].to_string(),
            pieces,
        });
    }

    fn finish(mut self) -> Vec<Paragraph> {
        self.flush();
        self.out
    }
}

// ---------------------------------------------------------------------------------------------
// Small byte helpers (all markers are ASCII, so byte scanning never cuts a character)
// ---------------------------------------------------------------------------------------------

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn is_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{b}' | '\u{c}')
}

fn ends_ws(s: &str) -> bool {
    s.as_bytes().last().is_some_and(|&b| is_ws(b))
}

/// A byte that can be part of an identifier (non-ASCII counts, conservatively).
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn floor_char(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn utf8_len(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn starts_at(bytes: &[u8], i: usize, pat: &[u8]) -> bool {
    bytes.len() >= i + pat.len() && &bytes[i..i + pat.len()] == pat
}

fn find_byte(bytes: &[u8], from: usize, to: usize, b: u8) -> Option<usize> {
    if from >= to {
        return None;
    }
    bytes[from..to]
        .iter()
        .position(|&x| x == b)
        .map(|p| p + from)
}

fn rfind_byte(bytes: &[u8], from: usize, to: usize, b: u8) -> Option<usize> {
    if from >= to {
        return None;
    }
    bytes[from..to]
        .iter()
        .rposition(|&x| x == b)
        .map(|p| p + from)
}

fn find(bytes: &[u8], from: usize, to: usize, pat: &[u8]) -> Option<usize> {
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
fn skip_blank(bytes: &[u8], mut i: usize, e: usize) -> usize {
    while i < e && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

fn trim_end(bytes: &[u8], s: usize, mut e: usize) -> usize {
    while e > s && is_ws(bytes[e - 1]) {
        e -= 1;
    }
    e
}

fn run_len(bytes: &[u8], i: usize, e: usize, b: u8) -> usize {
    let mut j = i;
    while j < e && bytes[j] == b {
        j += 1;
    }
    j - i
}

/// The end of the line that holds `i` (the position of its '\n', or the end of the text).
fn eol(bytes: &[u8], i: usize) -> usize {
    find_byte(bytes, i, bytes.len(), b'\n').unwrap_or(bytes.len())
}

/// Indentation width (tabs to multiples of 4) and the first byte after it.
fn indent_cols(bytes: &[u8], s: usize, e: usize) -> (usize, usize) {
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

fn has_alnum(doc: &str, s: usize, e: usize) -> bool {
    s < e && doc[s..e].chars().any(char::is_alphanumeric)
}

/// A line of the document (or of a comment): content `start..end` without its line ending,
/// and the offset of the '\n' that ends it.
#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    nl: Option<usize>,
}

fn split_lines(doc: &str, from: usize, to: usize) -> Vec<Line> {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// Only bare URLs are left out.
    Plain,
    /// Markdown (also used for comments): code spans, links, images, HTML, entities,
    /// emphasis markers, URLs.
    Markdown,
    /// reStructuredText: literals, roles, references, substitutions, emphasis, URLs.
    Rst,
}

/// Inline state that can continue onto the next line.
#[derive(Default)]
struct Inline {
    html_comment: bool,
    in_tag: bool,
    raw_tag: Option<&'static str>,
}

impl Inline {
    fn pending(&self) -> bool {
        self.html_comment || self.in_tag || self.raw_tag.is_some()
    }
}

/// Elements whose content is not prose.
const RAW_TAGS: [&str; 4] = ["script", "style", "pre", "textarea"];

/// Pushes the checkable text of `doc[s..e]` (one line, or one table cell) to `b`.
fn inline(doc: &str, s: usize, e: usize, fl: Flavor, st: &mut Inline, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut i = s;
    let mut run = s;
    // Backtick runs of a length known to have no closer on this line (lengths over 16 share
    // the last slot): keeps a line full of unmatched backticks linear.
    let mut no_closer = [false; 17];
    let mut brackets: Option<Vec<(usize, usize)>> = None;
    let mut parens: Option<Vec<(usize, usize)>> = None;
    // An open link: the position of its ']' and where to resume after its target.
    let mut link: Option<(usize, usize)> = None;
    while i < e {
        if st.pending() {
            let resume = if st.html_comment {
                find(bytes, i, e, b"-->").map(|p| p + 3)
            } else if st.in_tag {
                find_byte(bytes, i, e, b'>').map(|p| p + 1)
            } else {
                st.raw_tag.and_then(|tag| close_tag_end(bytes, i, e, tag))
            };
            match resume {
                Some(p) => {
                    *st = Inline::default();
                    i = p;
                    run = p;
                    continue;
                }
                None => return,
            }
        }
        if link.is_some_and(|(close, _)| i > close) {
            link = None;
        }
        let c = bytes[i];
        match c {
            b'\\' if fl != Flavor::Plain => {
                if i + 1 == e {
                    // A hard line break.
                    b.push(run, i);
                    run = e;
                    i = e;
                } else if bytes[i + 1].is_ascii_punctuation() {
                    b.push(run, i);
                    run = i + 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            b'`' if fl != Flavor::Plain => {
                let n = run_len(bytes, i, e, b'`');
                let slot = n.min(16);
                if !no_closer[slot] {
                    if let Some(close) = find_run(bytes, i + n, e, b'`', n) {
                        b.push(run, i);
                        let mut after = close + n;
                        if fl == Flavor::Rst && n == 1 {
                            after = rst_interpreted(bytes, i, close, e, b);
                        }
                        i = after;
                        run = after;
                        continue;
                    }
                    no_closer[slot] = true;
                }
                i += n;
            }
            b'*' | b'_' if fl != Flavor::Plain => {
                let n = run_len(bytes, i, e, c);
                let before = if i > s {
                    doc[s..i].chars().next_back()
                } else {
                    None
                };
                let after = if i + n < e {
                    doc[i + n..e].chars().next()
                } else {
                    None
                };
                let space_before = before.is_none_or(char::is_whitespace);
                let space_after = after.is_none_or(char::is_whitespace);
                let literal = if c == b'*' {
                    (space_before && space_after)
                        || (before.is_some_and(|x| x.is_ascii_digit())
                            && after.is_some_and(|x| x.is_ascii_digit()))
                } else {
                    let word_before = before.is_some_and(char::is_alphanumeric);
                    let word_after = after.is_some_and(char::is_alphanumeric);
                    word_before == word_after
                };
                if !literal {
                    b.push(run, i);
                    run = i + n;
                }
                i += n;
            }
            b'~' if fl == Flavor::Markdown => {
                let n = run_len(bytes, i, e, b'~');
                if n >= 2 {
                    b.push(run, i);
                    run = i + n;
                }
                i += n;
            }
            b'[' if fl == Flavor::Markdown => {
                let br = brackets.get_or_insert_with(|| pairs(bytes, s, e, b'[', b']'));
                if let Ok(k) = br.binary_search_by_key(&i, |p| p.0) {
                    let close = br[k].1;
                    if i + 1 < close && bytes[i + 1] == b'^' {
                        // A footnote reference.
                        b.push(run, i);
                        i = close + 1;
                        run = i;
                        continue;
                    }
                    let mut resume = close + 1;
                    let mut target = false;
                    if resume < e && bytes[resume] == b'(' {
                        let pr = parens.get_or_insert_with(|| pairs(bytes, s, e, b'(', b')'));
                        if let Ok(k) = pr.binary_search_by_key(&resume, |p| p.0) {
                            resume = pr[k].1 + 1;
                            target = true;
                        }
                    } else if resume < e && bytes[resume] == b'[' {
                        if let Ok(k) = br.binary_search_by_key(&resume, |p| p.0) {
                            resume = br[k].1 + 1;
                            target = true;
                        }
                    }
                    if i > s && bytes[i - 1] == b'!' && target {
                        // An image (also one inside a link, as in badges): left out whole.
                        b.push(run, i - 1);
                        i = resume;
                        run = i;
                        continue;
                    }
                    if link.is_none() && close > i + 1 {
                        b.push(run, i);
                        run = i + 1;
                        link = Some((close, resume));
                    }
                }
                i += 1;
            }
            b']' if link.is_some_and(|(close, _)| close == i) => {
                let (_, resume) = link.take().unwrap_or((i, i + 1));
                b.push(run, i);
                i = resume;
                run = resume;
            }
            b'<' if fl == Flavor::Markdown => match html_at(bytes, i, e, i == s) {
                Some((end, state)) => {
                    b.push(run, i);
                    *st = state;
                    i = end;
                    run = end;
                }
                None => i += 1,
            },
            b'&' if fl == Flavor::Markdown => {
                let mut j = i + 1;
                if j < e && bytes[j] == b'#' {
                    j += 1;
                    if j < e && (bytes[j] == b'x' || bytes[j] == b'X') {
                        j += 1;
                    }
                }
                let name = j;
                while j < e && j - name < 32 && bytes[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                if j > name && j < e && bytes[j] == b';' {
                    b.push(run, i);
                    b.space();
                    i = j + 1;
                    run = i;
                } else {
                    i += 1;
                }
            }
            b'{' if fl == Flavor::Markdown && bytes.get(i + 1) == Some(&b'@') => {
                // A JSDoc inline tag: {@link Foo}.
                match find_byte(bytes, i + 2, e.min(i + 256), b'}') {
                    Some(p) => {
                        b.push(run, i);
                        i = p + 1;
                        run = i;
                    }
                    None => i += 1,
                }
            }
            b':' if fl == Flavor::Rst && (i == s || !is_ident(bytes[i - 1])) => {
                match role_end(bytes, i, e) {
                    Some(p) if p < e && bytes[p] == b'`' => {
                        // A role prefix: the interpreted text after it is left out.
                        b.push(run, i);
                        let close = find_run(bytes, p + 1, e, b'`', 1).map_or(e, |q| q + 1);
                        i = close;
                        run = close;
                    }
                    _ => i += 1,
                }
            }
            b'|' if fl == Flavor::Rst && (i == s || !is_ident(bytes[i - 1])) => {
                // A substitution reference: |name|.
                let close = find_byte(bytes, i + 1, e.min(i + 64), b'|');
                match close {
                    Some(p)
                        if p > i + 1
                            && !is_ws(bytes[i + 1])
                            && !is_ws(bytes[p - 1])
                            && (p + 1 >= e || !is_ident(bytes[p + 1])) =>
                    {
                        b.push(run, i);
                        i = p + 1;
                        while i < e && bytes[i] == b'_' {
                            i += 1;
                        }
                        run = i;
                    }
                    _ => i += 1,
                }
            }
            b'[' if fl == Flavor::Rst => {
                // A footnote or citation reference: [1]_, [#]_, [CIT2002]_.
                match find_byte(bytes, i + 1, e.min(i + 64), b']') {
                    Some(p) if p + 1 < e && bytes[p + 1] == b'_' => {
                        b.push(run, i);
                        i = p + 2;
                        run = i;
                    }
                    _ => i += 1,
                }
            }
            _ => {
                if matches!(c, b'h' | b'H' | b'w' | b'W' | b'f' | b'F' | b'm' | b'M')
                    && (i == s || !is_ident(bytes[i - 1]))
                    && url_start(bytes, i, e)
                {
                    b.push(run, i);
                    // A URL that is a link's text ends at the link's ']'.
                    let limit = link.map_or(e, |(close, _)| close.clamp(i, e));
                    i = url_end(bytes, i, limit);
                    run = i;
                } else {
                    i += 1;
                }
            }
        }
    }
    b.push(run, e);
}

/// Matching pairs of `open`/`close` bytes in `bytes[s..e]` (backslash escapes skipped),
/// sorted by the opening position.
fn pairs(bytes: &[u8], s: usize, e: usize, open: u8, close: u8) -> Vec<(usize, usize)> {
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut j = s;
    while j < e {
        let c = bytes[j];
        if c == b'\\' {
            j += 1;
        } else if c == open {
            stack.push(j);
        } else if c == close {
            if let Some(o) = stack.pop() {
                out.push((o, j));
            }
        }
        j += 1;
    }
    out.sort_unstable();
    out
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

fn starts_at_ci(bytes: &[u8], i: usize, pat: &[u8]) -> bool {
    bytes.len() >= i + pat.len() && bytes[i..i + pat.len()].eq_ignore_ascii_case(pat)
}

fn url_start(bytes: &[u8], i: usize, e: usize) -> bool {
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
fn url_end(bytes: &[u8], i: usize, e: usize) -> usize {
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

/// The end of the closing tag `</tag ...>` in `bytes[from..e]`.
fn close_tag_end(bytes: &[u8], from: usize, e: usize, tag: &str) -> Option<usize> {
    let mut j = from;
    while let Some(p) = find(bytes, j, e, b"</") {
        if starts_at_ci(bytes, p + 2, tag.as_bytes()) {
            return Some(find_byte(bytes, p, e, b'>').map_or(e, |q| q + 1));
        }
        j = p + 2;
    }
    None
}

/// HTML at `i` (a '<'): a comment, a tag, an autolink, a declaration. Returns where the text
/// resumes and the state to continue with on the next line.
fn html_at(bytes: &[u8], i: usize, e: usize, line_start: bool) -> Option<(usize, Inline)> {
    if starts_at(bytes, i, b"<!--") {
        return Some(match find(bytes, i + 4, e, b"-->") {
            Some(p) => (p + 3, Inline::default()),
            None => (
                e,
                Inline {
                    html_comment: true,
                    ..Inline::default()
                },
            ),
        });
    }
    let next = *bytes.get(i + 1)?;
    if next == b'!' || next == b'?' {
        return find_byte(bytes, i + 2, e, b'>').map(|p| (p + 1, Inline::default()));
    }
    // Autolink: <scheme:...> or <user@host>.
    if next.is_ascii_alphabetic() {
        let mut j = i + 1;
        while j < e && !is_ws(bytes[j]) && bytes[j] != b'<' && bytes[j] != b'>' {
            j += 1;
        }
        if j < e && bytes[j] == b'>' && bytes[i + 1..j].iter().any(|&c| c == b':' || c == b'@') {
            return Some((j + 1, Inline::default()));
        }
    }
    // A tag.
    let closing = next == b'/';
    let ns = if closing { i + 2 } else { i + 1 };
    if ns >= e || !bytes[ns].is_ascii_alphabetic() {
        return None;
    }
    let mut ne = ns;
    while ne < e && (bytes[ne].is_ascii_alphanumeric() || bytes[ne] == b'-') {
        ne += 1;
    }
    if ne < e && !(is_ws(bytes[ne]) || bytes[ne] == b'>' || bytes[ne] == b'/') {
        return None;
    }
    let mut k = ne;
    while k < e && bytes[k] != b'>' && bytes[k] != b'<' {
        k += 1;
    }
    if k >= e {
        // A tag that goes on over the next lines (only at the start of a line).
        return line_start.then(|| {
            (
                e,
                Inline {
                    in_tag: true,
                    ..Inline::default()
                },
            )
        });
    }
    if bytes[k] != b'>' {
        return None;
    }
    let end = k + 1;
    if !closing && bytes[k - 1] != b'/' {
        let name = &bytes[ns..ne];
        if let Some(tag) = RAW_TAGS
            .iter()
            .find(|t| name.eq_ignore_ascii_case(t.as_bytes()))
        {
            return Some(match close_tag_end(bytes, end, e, tag) {
                Some(p) => (p, Inline::default()),
                None => (
                    e,
                    Inline {
                        raw_tag: Some(tag),
                        ..Inline::default()
                    },
                ),
            });
        }
    }
    Some((end, Inline::default()))
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

// ---------------------------------------------------------------------------------------------
// Markdown blocks (documents, and the text of comments)
// ---------------------------------------------------------------------------------------------

/// How the lines of one comment are read.
#[derive(Clone, Copy)]
struct CommentMode {
    /// Indentation common to the comment's lines (not counted as indentation).
    base: usize,
    /// The first line follows the opening marker: its indentation is not counted.
    first_zero: bool,
}

impl CommentMode {
    fn of(doc: &str, group: &Group) -> CommentMode {
        let bytes = doc.as_bytes();
        let skip = usize::from(group.block);
        let base = group
            .lines
            .iter()
            .skip(skip)
            .filter_map(|l| {
                let (cols, p) = indent_cols(bytes, l.start, l.end);
                (p < l.end).then_some(cols)
            })
            .min()
            .unwrap_or(0);
        CommentMode {
            base,
            first_zero: group.block,
        }
    }
}

fn markdown_document(doc: &str, b: &mut Builder) {
    let lines = split_lines(doc, 0, doc.len());
    let mut first = 0;
    if let Some(line) = lines.first() {
        let head = doc[line.start..line.end]
            .trim_start_matches('\u{feff}')
            .trim_end();
        if head == "---" || head == "+++" {
            let close = lines.iter().skip(1).position(|l| {
                let t = doc[l.start..l.end].trim_end();
                t == head || (head == "---" && t == "...")
            });
            if let Some(k) = close {
                first = k + 2;
            }
        }
    }
    markdown_block(doc, &lines[first..], None, b);
}

/// The blocks of markdown text in `lines`: paragraphs, headings, list items, quotes and table
/// cells are kept; code blocks, HTML comments, reference definitions and rules are not. With
/// a comment mode, lines of machine text (pragmas, commented-out code, doctests) are skipped
/// and doc-comment tags (@param ...) are reduced to their prose.
fn markdown_block(doc: &str, lines: &[Line], comment: Option<CommentMode>, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut st = Inline::default();
    let mut fence: Option<(u8, usize, usize)> = None;
    let mut indented_code = false;
    let mut in_para = false;
    let mut list_indent: Option<usize> = None;
    let mut prev_blank = true;
    let mut quote_prev = 0;
    let mut table = false;
    let mut doctest = false;
    let mut example = false;
    let mut li = 0;
    while li < lines.len() {
        let line = lines[li];
        let first = li == 0;
        li += 1;
        let (mut s, e) = (line.start, line.end);
        if st.pending() {
            inline(doc, s, e, Flavor::Markdown, &mut st, b);
            b.line_break(line.nl);
            continue;
        }
        if comment.is_some() && fence.is_none() {
            let t = skip_blank(bytes, s, e);
            if t < e && (doctest || starts_at(bytes, t, b">>>")) {
                doctest = true;
                b.flush();
                in_para = false;
                continue;
            }
        }
        // Blockquote markers (inside a fence, only as many as the fence's own).
        let max_depth = fence.map_or(usize::MAX, |f| f.2);
        let mut depth = 0;
        while depth < max_depth {
            let p = skip_blank(bytes, s, e);
            if p < e && bytes[p] == b'>' {
                depth += 1;
                s = p + 1;
                if s < e && bytes[s] == b' ' {
                    s += 1;
                }
            } else {
                break;
            }
        }
        let (mut cols, t) = indent_cols(bytes, s, e);
        if depth == 0 {
            if let Some(cm) = comment {
                cols = if first && cm.first_zero {
                    0
                } else {
                    cols.saturating_sub(cm.base)
                };
            }
        }
        if let Some((ch, n, _)) = fence {
            let m = if t < e && bytes[t] == ch {
                run_len(bytes, t, e, ch)
            } else {
                0
            };
            if m >= n && skip_blank(bytes, t + m, e) == e {
                fence = None;
            }
            continue;
        }
        if t >= e {
            b.flush();
            in_para = false;
            prev_blank = true;
            table = false;
            doctest = false;
            continue;
        }
        if depth != quote_prev {
            b.flush();
            in_para = false;
            quote_prev = depth;
        }
        let item = list_marker(bytes, t, e);
        if let Some(lim) = list_indent {
            if prev_blank && cols < lim && item.is_none() {
                list_indent = None;
            }
        }
        let base = list_indent.unwrap_or(0);
        prev_blank = false;
        if indented_code {
            if cols >= base + 4 {
                continue;
            }
            indented_code = false;
        }
        if !in_para && cols >= base + 4 {
            indented_code = true;
            b.flush();
            continue;
        }
        if let Some((ch, n)) = fence_open(bytes, t, e) {
            b.flush();
            in_para = false;
            fence = Some((ch, n, depth));
            continue;
        }
        let ce = trim_end(bytes, t, e);
        let mut start = t;
        if comment.is_some() {
            let content = &doc[t..ce];
            if is_machine_line(content) || looks_like_code(content) {
                b.flush();
                in_para = false;
                continue;
            }
            let tag = bytes[t] == b'@'
                || (bytes[t] == b'\\' && t + 1 < ce && bytes[t + 1].is_ascii_alphabetic());
            if tag {
                b.flush();
                in_para = false;
                match doc_tag(doc, t, ce) {
                    Tag::Text(p) => {
                        example = false;
                        start = p;
                    }
                    Tag::Skip => {
                        example = false;
                        continue;
                    }
                    Tag::Example => {
                        example = true;
                        continue;
                    }
                }
            } else if example {
                continue;
            }
            if start < ce && bytes[start] == b':' {
                if let Some(p) = field_marker(bytes, start, ce) {
                    b.flush();
                    in_para = false;
                    start = p;
                }
            }
        }
        if !has_alnum(doc, start, ce) {
            // Rules, setext underlines, decoration, empty list items.
            b.flush();
            in_para = false;
            continue;
        }
        if bytes[start] == b'#' {
            let n = run_len(bytes, start, ce, b'#');
            if n <= 6 && (start + n == ce || bytes[start + n] == b' ' || bytes[start + n] == b'\t')
            {
                b.flush();
                let hs = skip_blank(bytes, start + n, ce);
                let mut he = ce;
                let k = he - run_len_back(bytes, hs, he, b'#');
                if k == hs || (k < he && is_ws(bytes[k - 1])) {
                    he = trim_end(bytes, hs, k);
                }
                inline(doc, hs, he, Flavor::Markdown, &mut st, b);
                b.flush();
                in_para = false;
                continue;
            }
        }
        if bytes[start] == b'[' {
            if let Some(rb) = find_byte(bytes, start + 1, ce, b']') {
                if rb + 1 < ce && bytes[rb + 1] == b':' && (rb + 2 == ce || is_ws(bytes[rb + 2])) {
                    b.flush();
                    in_para = false;
                    if bytes[start + 1] != b'^' {
                        // A reference definition.
                        continue;
                    }
                    // A footnote definition: its text is prose.
                    start = skip_blank(bytes, rb + 2, ce);
                }
            }
        }
        let pipe = find_byte(bytes, start, ce, b'|').is_some();
        if table && !pipe {
            table = false;
        }
        if table || (pipe && li < lines.len() && is_delimiter_row(bytes, lines[li])) {
            if !table {
                table = true;
                b.flush();
                in_para = false;
                table_cells(doc, start, ce, &mut st, b);
                li += 1;
            } else {
                table_cells(doc, start, ce, &mut st, b);
            }
            continue;
        }
        if start == t {
            if let Some(cs) = item {
                list_indent = Some(cols + (cs - t));
                start = task_box(bytes, cs, ce);
            }
        }
        inline(doc, start, ce, Flavor::Markdown, &mut st, b);
        b.line_break(line.nl);
        in_para = true;
    }
    b.flush();
}

fn run_len_back(bytes: &[u8], s: usize, e: usize, b: u8) -> usize {
    let mut j = e;
    while j > s && bytes[j - 1] == b {
        j -= 1;
    }
    e - j
}

/// A fence opening at `t`: ``` or ~~~ (three or more), with an info string.
fn fence_open(bytes: &[u8], t: usize, e: usize) -> Option<(u8, usize)> {
    let c = *bytes.get(t)?;
    if c != b'`' && c != b'~' {
        return None;
    }
    let n = run_len(bytes, t, e, c);
    if n < 3 || (c == b'`' && find_byte(bytes, t + n, e, b'`').is_some()) {
        return None;
    }
    Some((c, n))
}

/// A list item marker at `t` (-, *, +, 1., 1)): where its content starts.
fn list_marker(bytes: &[u8], t: usize, e: usize) -> Option<usize> {
    let c = *bytes.get(t)?;
    let after = if matches!(c, b'-' | b'*' | b'+') {
        t + 1
    } else if c.is_ascii_digit() {
        let n = t
            + (t..e.min(t + 9))
                .take_while(|&j| bytes[j].is_ascii_digit())
                .count();
        if n < e && (bytes[n] == b'.' || bytes[n] == b')') {
            n + 1
        } else {
            return None;
        }
    } else {
        return None;
    };
    if after == e {
        Some(e)
    } else if bytes[after] == b' ' || bytes[after] == b'\t' {
        Some(skip_blank(bytes, after, e))
    } else {
        None
    }
}

fn task_box(bytes: &[u8], cs: usize, e: usize) -> usize {
    let boxed = starts_at(bytes, cs, b"[ ]")
        || starts_at(bytes, cs, b"[x]")
        || starts_at(bytes, cs, b"[X]");
    if boxed && (cs + 3 == e || (cs + 3 < e && is_ws(bytes[cs + 3]))) {
        skip_blank(bytes, cs + 3, e)
    } else {
        cs
    }
}

fn is_delimiter_row(bytes: &[u8], line: Line) -> bool {
    let s = skip_blank(bytes, line.start, line.end);
    let row = &bytes[s..trim_end(bytes, s, line.end)];
    row.contains(&b'-')
        && row.contains(&b'|')
        && row
            .iter()
            .all(|&c| matches!(c, b'|' | b'-' | b':' | b' ' | b'\t'))
}

/// Each cell of a table row is a paragraph of its own.
fn table_cells(doc: &str, s: usize, e: usize, st: &mut Inline, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut cell = s;
    let mut code = 0;
    let mut j = s;
    while j <= e {
        if j == e || (bytes[j] == b'|' && code == 0) {
            let cs = skip_blank(bytes, cell, j);
            inline(doc, cs, trim_end(bytes, cs, j), Flavor::Markdown, st, b);
            b.flush();
            cell = j + 1;
            j += 1;
            continue;
        }
        match bytes[j] {
            b'\\' => j = (j + 2).min(e),
            b'`' => {
                let n = run_len(bytes, j, e, b'`');
                if code == 0 {
                    code = n;
                } else if code == n {
                    code = 0;
                }
                j += n;
            }
            _ => j += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comment text: machine lines, code lines, doc tags
// ---------------------------------------------------------------------------------------------

/// Prefixes (lowercase) of comment lines that talk to tools, not to people. Sorted by their
/// first byte (a test checks it), so a lookup only compares the prefixes of one bucket.
const MACHINE_PREFIXES: &[&str] = &[
    "# sourcemappingurl",
    "#![",
    "#[",
    "#endregion",
    "#region",
    "#sourcemappingurl",
    "+build",
    "-*-",
    "//nolint",
    "</editor-fold",
    "<editor-fold",
    "@flow",
    "@generated",
    "@jsx",
    "@license",
    "@phpstan-",
    "@preserve",
    "@psalm-",
    "@ts-",
    "biome-ignore",
    "c8 ignore",
    "check=",
    "checkov:",
    "clang-format",
    "clang-tidy",
    "codespell:",
    "coding:",
    "coding=",
    "cspell:",
    "cython:",
    "deno-fmt",
    "deno-lint",
    "escape=",
    "eslint ",
    "eslint-",
    "flake8:",
    "fmt:",
    "frozen_string_literal:",
    "ignore:",
    "isort:",
    "istanbul ignore",
    "jshint",
    "jslint",
    "language=",
    "lint:file-ignore",
    "lint:ignore",
    "luacheck:",
    "markdownlint-",
    "mypy:",
    "noinspection",
    "nolint",
    "noqa",
    "nosec",
    "phpcs:",
    "pragma:",
    "prettier-ignore",
    "pylint:",
    "pyre-",
    "pyright:",
    "resharper ",
    "rubocop:",
    "ruff:",
    "rustfmt::",
    "shellcheck ",
    "sourcemappingurl=",
    "spdx-",
    "spell-checker:",
    "stylelint-",
    "swift-format",
    "swiftlint:",
    "syntax=",
    "tfsec:",
    "tslint:",
    "type:",
    "v8 ignore",
    "vi:",
    "vim:",
    "webpackchunkname",
    "yamllint ",
];

/// A comment line that is for a tool or is machine text: pragmas, lint directives, modelines,
/// SPDX lines, commented-out attributes, a lone URL, a go:/build directive.
fn is_machine_line(line: &str) -> bool {
    let l = line.trim().as_bytes();
    if l.is_empty() {
        return false;
    }
    // The start of the line in ASCII lower case (enough for every prefix).
    let mut head = [0u8; 32];
    let n = l.len().min(head.len());
    for (h, c) in head.iter_mut().zip(&l[..n]) {
        *h = c.to_ascii_lowercase();
    }
    let head = &head[..n];
    let from = MACHINE_PREFIXES.partition_point(|p| p.as_bytes()[0] < head[0]);
    let to = MACHINE_PREFIXES.partition_point(|p| p.as_bytes()[0] <= head[0]);
    if MACHINE_PREFIXES[from..to]
        .iter()
        .any(|p| head.starts_with(p.as_bytes()))
    {
        return true;
    }
    // go:build, go:generate, go:embed ...
    if head.len() > 3 && &head[..3] == b"go:" && l[3].is_ascii_lowercase() {
        return true;
    }
    // A lone URL, bare or in <>.
    let s = if l[0] == b'<' { 1 } else { 0 };
    let e = if l[l.len() - 1] == b'>' {
        l.len() - 1
    } else {
        l.len()
    };
    s < e && url_start(l, s, e) && !l[s..e].iter().any(|&c| is_ws(c))
}

/// A comment line that looks like commented-out code rather than prose. One pass over the
/// bytes, code spans (`x = 1` in prose is fine) not counted; long lines are prose.
fn looks_like_code(line: &str) -> bool {
    let l = line.trim().as_bytes();
    if l.is_empty() || l.len() > 1000 {
        return false;
    }
    let mut letters = 0usize;
    let mut symbols = 0usize;
    let mut spaced = false;
    let mut call = false;
    let mut close_paren = false;
    let mut in_code = false;
    let mut prev = b' ';
    let (mut first, mut last) = (0u8, 0u8);
    for &c in l {
        if c == b'`' {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if first == 0 {
            first = c;
        }
        last = c;
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | 0xc0..=0xff => letters += 1,
            b' ' | b'\t' => spaced = true,
            b'(' => {
                symbols += 1;
                call |= prev.is_ascii_alphanumeric() || prev == b'_';
            }
            b')' => {
                symbols += 1;
                close_paren = true;
            }
            b'{' | b'}' | b'[' | b']' | b';' | b'=' | b'<' | b'>' | b'&' | b'|' | b'+' | b'*'
            | b'/' | b'\\' | b'$' | b'@' | b'^' => symbols += 1,
            _ => {}
        }
        prev = c;
    }
    if first == 0 {
        return false;
    }
    let call = call && close_paren;
    let ends = matches!(last, b';' | b'{' | b'}') || first == b'}';
    const KEYWORDS: [&[u8]; 16] = [
        b"#include",
        b"#define",
        b"#if",
        b"#endif",
        b"#pragma",
        b"#import",
        b"import ",
        b"from ",
        b"let ",
        b"const ",
        b"var ",
        b"fn ",
        b"def ",
        b"func ",
        b"return ",
        b"use ",
    ];
    let keyword = KEYWORDS.iter().any(|k| l.starts_with(k));
    if l.starts_with(b"#include") || l.starts_with(b"#define") {
        return true;
    }
    let dense = symbols * 3 >= letters;
    if !(ends || !spaced || keyword || dense) {
        return false;
    }
    const OPERATORS: [&str; 14] = [
        "==", "!=", "=>", "->", "::", "&&", "||", "+=", "-=", ":=", " = ", "();", "){", ") {",
    ];
    let operators = OPERATORS.iter().any(|o| line.contains(o));
    if ends && (call || operators || keyword || symbols * 4 >= letters || !spaced) {
        return true;
    }
    if !spaced && (call || operators || (symbols > 0 && l.contains(&b'=')) || last == b';') {
        return true;
    }
    if keyword && (call || operators) {
        return true;
    }
    operators && dense
}

enum Tag {
    /// A tag with prose: the text starts here.
    Text(usize),
    /// A tag line with no prose.
    Skip,
    /// An example follows (code) until the next tag.
    Example,
}

/// A JSDoc/Javadoc/Doxygen tag line at `t` (`@param {T} name text`, `\brief text`).
fn doc_tag(doc: &str, t: usize, e: usize) -> Tag {
    let bytes = doc.as_bytes();
    let mut p = t + 1;
    while p < e && bytes[p].is_ascii_alphabetic() {
        p += 1;
    }
    if p == t + 1 {
        return Tag::Text(t);
    }
    let name = doc[t + 1..p].to_ascii_lowercase();
    let skip_type = |mut p: usize| {
        p = skip_blank(bytes, p, e);
        if p < e && bytes[p] == b'{' {
            let mut depth = 0;
            while p < e {
                match bytes[p] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            p += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                p += 1;
            }
        }
        skip_blank(bytes, p, e)
    };
    let skip_token = |mut p: usize| {
        if p < e && bytes[p] == b'[' {
            p = find_byte(bytes, p, e, b']').map_or(e, |q| q + 1);
        } else {
            while p < e && !is_ws(bytes[p]) {
                p += 1;
            }
        }
        p = skip_blank(bytes, p, e);
        if p + 1 < e && bytes[p] == b'-' && bytes[p + 1] == b' ' {
            p = skip_blank(bytes, p + 1, e);
        }
        p
    };
    match name.as_str() {
        "param" | "arg" | "argument" | "property" | "prop" | "tparam" | "typeparam"
        | "template" | "field" | "key" | "member" => {
            // Doxygen's \param[in].
            if p < e && bytes[p] == b'[' {
                p = find_byte(bytes, p, e, b']').map_or(e, |q| q + 1);
            }
            let p = skip_type(p);
            Tag::Text(skip_token(p))
        }
        "throws" | "throw" | "exception" | "raise" | "raises" => {
            let p = skip_type(p);
            Tag::Text(skip_token(p))
        }
        "return" | "returns" | "yield" | "yields" | "retval" | "result" => Tag::Text(skip_type(p)),
        "deprecated" | "description" | "desc" | "summary" | "remarks" | "remark" | "note"
        | "brief" | "details" | "todo" | "warning" | "warn" | "abstract" | "classdesc"
        | "fileoverview" | "overview" | "attention" | "bug" | "par" | "short" => {
            Tag::Text(skip_blank(bytes, p, e))
        }
        "example" | "examples" | "code" | "usage" => Tag::Example,
        _ => Tag::Skip,
    }
}

/// A field list marker at `p` (`:param x:`, `:returns:`): where its text starts.
fn field_marker(bytes: &[u8], p: usize, e: usize) -> Option<usize> {
    let close = find_byte(bytes, p + 1, e.min(p + 64), b':')?;
    let name = &bytes[p + 1..close];
    if name.is_empty() || is_ws(name[0]) || name.contains(&b'`') {
        return None;
    }
    if close + 1 < e && !is_ws(bytes[close + 1]) {
        return None;
    }
    Some(skip_blank(bytes, close + 1, e))
}

// ---------------------------------------------------------------------------------------------
// Other prose languages
// ---------------------------------------------------------------------------------------------

/// Plain text: paragraphs at blank lines; bare URLs left out.
fn plain_document(doc: &str, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut st = Inline::default();
    for line in split_lines(doc, 0, doc.len()) {
        let t = skip_blank(bytes, line.start, line.end);
        let ce = trim_end(bytes, t, line.end);
        if t >= ce {
            b.flush();
            continue;
        }
        inline(doc, t, ce, Flavor::Plain, &mut st, b);
        b.line_break(line.nl);
    }
    b.flush();
}

/// Trailer keys of commit messages (`Signed-off-by: ...`).
fn is_trailer(line: &str) -> bool {
    let Some((key, value)) = line.split_once(": ") else {
        return false;
    };
    if key.is_empty()
        || value.is_empty()
        || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
    {
        return false;
    }
    let key = key.to_ascii_lowercase();
    key.ends_with("-by")
        || matches!(
            key.as_str(),
            "change-id"
                | "fixes"
                | "closes"
                | "resolves"
                | "refs"
                | "reviewed-on"
                | "cc"
                | "bug"
                | "link"
                | "ref"
                | "see-also"
        )
}

/// A commit message: plain text without `#` lines, trailers, and anything below the scissors
/// line or a diff.
fn gitcommit_document(doc: &str, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut st = Inline::default();
    for line in split_lines(doc, 0, doc.len()) {
        let text = &doc[line.start..line.end];
        if text.starts_with('#') {
            if text.starts_with("# ------------------------ >8") {
                break;
            }
            continue;
        }
        if text.starts_with("diff --git ") {
            break;
        }
        let t = skip_blank(bytes, line.start, line.end);
        let ce = trim_end(bytes, t, line.end);
        if t >= ce {
            b.flush();
            continue;
        }
        if is_trailer(&doc[t..ce]) {
            b.flush();
            continue;
        }
        inline(doc, t, ce, Flavor::Plain, &mut st, b);
        b.line_break(line.nl);
    }
    b.flush();
}

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
fn rst_document(doc: &str, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut st = Inline::default();
    // Skip the indented body of a directive or comment: non-blank lines indented deeper.
    let mut skip_deeper: Option<usize> = None;
    let mut literal_next: Option<usize> = None;
    let mut doctest = false;
    let mut options = false;
    for line in split_lines(doc, 0, doc.len()) {
        let (cols, t) = indent_cols(bytes, line.start, line.end);
        let ce = trim_end(bytes, t, line.end);
        if t >= ce {
            b.flush();
            doctest = false;
            options = false;
            continue;
        }
        if let Some(lim) = skip_deeper {
            if cols > lim {
                continue;
            }
            skip_deeper = None;
        }
        if let Some(lim) = literal_next.take() {
            if cols > lim {
                b.flush();
                skip_deeper = Some(lim);
                continue;
            }
        }
        if options {
            if bytes[t] == b':' {
                continue;
            }
            options = false;
        }
        if doctest {
            continue;
        }
        let text = &doc[t..ce];
        if text.starts_with(">>>") {
            b.flush();
            doctest = true;
            continue;
        }
        if text == ".." || text.starts_with(".. ") {
            b.flush();
            let rs = skip_blank(bytes, t + 2, ce);
            let rest = &doc[rs..ce];
            if rest.starts_with('[') {
                // A footnote or citation: its text is prose.
                if let Some(p) = find_byte(bytes, rs, ce, b']') {
                    let cs = skip_blank(bytes, p + 1, ce);
                    inline(doc, cs, ce, Flavor::Rst, &mut st, b);
                    b.line_break(line.nl);
                    continue;
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
                    inline(doc, cs, ce, Flavor::Rst, &mut st, b);
                    b.line_break(line.nl);
                    options = true;
                    continue;
                }
            }
            // Any other directive, a comment, a target, a substitution definition.
            skip_deeper = Some(cols);
            continue;
        }
        if text == "::" {
            b.flush();
            literal_next = Some(cols);
            continue;
        }
        if !has_alnum(doc, t, ce) {
            // Section adornments, transitions, table borders.
            b.flush();
            continue;
        }
        if text.len() > 1 && text.starts_with('|') && text.ends_with('|') {
            b.flush();
            table_cells_rst(doc, t + 1, ce - 1, &mut st, b);
            continue;
        }
        let mut start = t;
        if text.starts_with("| ") {
            start = skip_blank(bytes, t + 1, ce);
        } else if let Some(cs) = rst_bullet(bytes, t, ce) {
            start = cs;
        } else if bytes[t] == b':' {
            if let Some(p) = field_marker(bytes, t, ce) {
                b.flush();
                start = p;
            }
        }
        let mut end = ce;
        if text.ends_with("::") {
            literal_next = Some(cols);
            end = if ce >= start + 3 && is_ws(bytes[ce - 3]) {
                trim_end(bytes, start, ce - 2)
            } else {
                ce - 1
            };
        }
        inline(doc, start, end, Flavor::Rst, &mut st, b);
        b.line_break(line.nl);
    }
    b.flush();
}

fn table_cells_rst(doc: &str, s: usize, e: usize, st: &mut Inline, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let mut cell = s;
    for j in s..=e {
        if j == e || bytes[j] == b'|' {
            let cs = skip_blank(bytes, cell, j);
            inline(doc, cs, trim_end(bytes, cs, j), Flavor::Rst, st, b);
            b.flush();
            cell = j + 1;
        }
    }
}

/// A reStructuredText bullet or enumerator at `t`: where the item text starts.
fn rst_bullet(bytes: &[u8], t: usize, e: usize) -> Option<usize> {
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
// ---------------------------------------------------------------------------------------------

/// Environments whose content is not prose (math, verbatim, code, pictures).
const LATEX_SKIP_ENVS: &[&str] = &[
    "equation",
    "align",
    "alignat",
    "flalign",
    "gather",
    "multline",
    "eqnarray",
    "math",
    "displaymath",
    "verbatim",
    "Verbatim",
    "lstlisting",
    "minted",
    "comment",
    "tikzpicture",
    "pgfpicture",
    "filecontents",
    "algorithmic",
    "thebibliography",
];

/// Commands that start a paragraph of their own, with their text argument.
const LATEX_SECTIONS: &[&str] = &[
    "part",
    "chapter",
    "section",
    "subsection",
    "subsubsection",
    "paragraph",
    "subparagraph",
    "title",
    "subtitle",
    "caption",
    "frametitle",
];

/// Commands whose first N brace arguments are not prose (keys, labels, paths, code, lengths).
/// Any other command is dropped with its [optional] arguments and its brace arguments are
/// read as text (so \emph{x}, \textbf{x} keep x).
const LATEX_SKIP_ARGS: &[(&str, usize)] = &[
    ("label", 1),
    ("ref", 1),
    ("eqref", 1),
    ("pageref", 1),
    ("autoref", 1),
    ("cref", 1),
    ("Cref", 1),
    ("nameref", 1),
    ("cite", 1),
    ("citep", 1),
    ("citet", 1),
    ("citeauthor", 1),
    ("citeyear", 1),
    ("parencite", 1),
    ("textcite", 1),
    ("autocite", 1),
    ("footcite", 1),
    ("nocite", 1),
    ("usepackage", 1),
    ("RequirePackage", 1),
    ("documentclass", 1),
    ("input", 1),
    ("include", 1),
    ("includeonly", 1),
    ("includegraphics", 1),
    ("includepdf", 1),
    ("url", 1),
    ("href", 1),
    ("bibliography", 1),
    ("bibliographystyle", 1),
    ("addbibresource", 1),
    ("bibitem", 1),
    ("newcommand", 2),
    ("renewcommand", 2),
    ("providecommand", 2),
    ("newenvironment", 3),
    ("renewenvironment", 3),
    ("DeclareMathOperator", 2),
    ("newtheorem", 2),
    ("setlength", 2),
    ("addtolength", 2),
    ("setcounter", 2),
    ("addtocounter", 2),
    ("newcounter", 1),
    ("vspace", 1),
    ("hspace", 1),
    ("color", 1),
    ("textcolor", 1),
    ("colorbox", 1),
    ("definecolor", 3),
    ("pagestyle", 1),
    ("thispagestyle", 1),
    ("pagenumbering", 1),
    ("hypersetup", 1),
    ("geometry", 1),
    ("graphicspath", 1),
    ("lstinputlisting", 1),
    ("inputminted", 2),
    ("mintinline", 2),
    ("texttt", 1),
    ("fontsize", 2),
    ("linespread", 1),
    ("hyphenation", 1),
    ("ensuremath", 1),
    ("footnote", 1),
    ("footnotetext", 1),
    ("marginpar", 1),
    ("todo", 1),
    ("SI", 2),
    ("si", 1),
    ("num", 1),
];

/// Memo of the next ']' (keeps optional-argument lookups linear).
struct NextBracket {
    /// The memo holds the first ']' at or after `from` (`usize::MAX`: nothing known yet).
    from: usize,
    at: Option<usize>,
}

impl Default for NextBracket {
    fn default() -> Self {
        NextBracket {
            from: usize::MAX,
            at: None,
        }
    }
}

impl NextBracket {
    fn next(&mut self, bytes: &[u8], p: usize, end: usize) -> Option<usize> {
        let valid = self.from <= p && self.at.is_none_or(|a| a >= p);
        if !valid {
            self.from = p;
            self.at = find_byte(bytes, p, end, b']');
        }
        self.at
    }
}

/// Skips an [optional argument] at `p` (none longer than 1000 bytes).
fn skip_opt(bytes: &[u8], p: usize, end: usize, memo: &mut NextBracket) -> usize {
    if p >= end || bytes[p] != b'[' {
        return p;
    }
    match memo.next(bytes, p + 1, end) {
        Some(q) if q - p <= 1000 => q + 1,
        _ => p,
    }
}

/// Skips a {balanced} group at `p` (which holds '{').
fn skip_brace(bytes: &[u8], p: usize, end: usize) -> usize {
    let mut depth = 0usize;
    let mut j = p;
    while j < end {
        match bytes[j] {
            b'\\' => j += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    end
}

/// Skips [optional] arguments and `braces` brace arguments after a command name.
fn skip_args(
    bytes: &[u8],
    mut p: usize,
    end: usize,
    braces: usize,
    memo: &mut NextBracket,
) -> usize {
    let mut got = 0;
    loop {
        let mut q = skip_blank(bytes, p, end);
        if q < end && bytes[q] == b'\r' {
            q += 1;
        }
        if q < end && bytes[q] == b'\n' && got < braces {
            q = skip_blank(bytes, q + 1, end);
        }
        if q < end && bytes[q] == b'[' {
            let r = skip_opt(bytes, q, end, memo);
            if r == q {
                return p;
            }
            p = r;
        } else if got < braces && q < end && bytes[q] == b'{' {
            p = skip_brace(bytes, q, end);
            got += 1;
        } else {
            return p;
        }
    }
}

/// Skips inline ($...$) or display ($$...$$) math at `i`. A '$' with no closing '$' in its
/// paragraph is dropped alone.
fn skip_dollar(bytes: &[u8], i: usize, end: usize) -> usize {
    if i + 1 < end && bytes[i + 1] == b'$' {
        return find(bytes, i + 2, end, b"$$").map_or(end, |p| p + 2);
    }
    let mut j = i + 1;
    while j < end {
        match bytes[j] {
            b'\\' => j += 2,
            b'$' => return j + 1,
            b'\n' => {
                let mut q = j + 1;
                while q < end && matches!(bytes[q], b' ' | b'\t' | b'\r') {
                    q += 1;
                }
                if q >= end || bytes[q] == b'\n' {
                    return i + 1;
                }
                j += 1;
            }
            _ => j += 1,
        }
    }
    i + 1
}

/// LaTeX: the body of the document (between \begin{document} and \end{document} when they
/// are there); paragraphs at blank lines; sectioning commands are paragraphs of their own.
fn latex_document(doc: &str, b: &mut Builder) {
    let bytes = doc.as_bytes();
    let n = bytes.len();
    let (start, end) = match find(bytes, 0, n, b"\\begin{document}") {
        Some(p) => {
            let s = p + "\\begin{document}".len();
            (s, find(bytes, s, n, b"\\end{document}").unwrap_or(n))
        }
        None => (0, n),
    };
    let mut memo = NextBracket::default();
    // Open brace groups: whether closing the group ends a paragraph (a section title).
    let mut groups: Vec<bool> = Vec::new();
    let mut i = start;
    let mut run = start;
    let mut line_blank = true;
    while i < end {
        let c = bytes[i];
        match c {
            b'\n' => {
                b.push(run, i);
                if line_blank {
                    b.flush();
                } else {
                    b.line_break(Some(i));
                }
                i += 1;
                run = i;
                line_blank = true;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            _ => line_blank = false,
        }
        match c {
            b'%' => {
                b.push(run, i);
                i = find_byte(bytes, i, end, b'\n').unwrap_or(end);
                run = i;
            }
            b'$' => {
                b.push(run, i);
                i = skip_dollar(bytes, i, end);
                run = i;
            }
            b'{' => {
                b.push(run, i);
                groups.push(false);
                i += 1;
                run = i;
            }
            b'}' => {
                b.push(run, i);
                if groups.pop() == Some(true) {
                    b.flush();
                }
                i += 1;
                run = i;
            }
            b'~' | b'&' => {
                b.push(run, i);
                b.space();
                i += 1;
                run = i;
            }
            b'\\' => {
                b.push(run, i);
                i = latex_command(doc, i, end, b, &mut groups, &mut memo);
                run = i;
            }
            _ => i += 1,
        }
    }
    b.push(run, end);
    b.flush();
}

/// A command at `i` (a backslash): what it contributes, and where the text resumes.
fn latex_command(
    doc: &str,
    i: usize,
    end: usize,
    b: &mut Builder,
    groups: &mut Vec<bool>,
    memo: &mut NextBracket,
) -> usize {
    let bytes = doc.as_bytes();
    let j = i + 1;
    if j >= end {
        return end;
    }
    let c = bytes[j];
    if !c.is_ascii_alphabetic() {
        return match c {
            b'%' | b'$' | b'&' | b'#' | b'_' | b'{' | b'}' => {
                b.push(j, j + 1);
                j + 1
            }
            b'[' => find(bytes, j + 1, end, b"\\]").map_or(end, |p| p + 2),
            b'(' => find(bytes, j + 1, end, b"\\)").map_or(end, |p| p + 2),
            b'\\' => {
                b.space();
                skip_opt(bytes, j + 1, end, memo)
            }
            b'\n' | b'\r' => {
                b.space();
                j
            }
            b' ' | b'\t' | b',' | b';' | b':' | b'>' => {
                b.space();
                j + 1
            }
            _ => j + utf8_len(c),
        };
    }
    let mut k = j;
    while k < end && bytes[k].is_ascii_alphabetic() {
        k += 1;
    }
    let name = &doc[j..k];
    if k < end && bytes[k] == b'*' {
        k += 1;
    }
    match name {
        "begin" => {
            let q = skip_blank(bytes, k, end);
            if q >= end || bytes[q] != b'{' {
                return k;
            }
            let close = skip_brace(bytes, q, end);
            let env_end = if bytes[close - 1] == b'}' && close > q + 1 {
                close - 1
            } else {
                close
            };
            let env = &doc[q + 1..env_end];
            let base = env.trim_end_matches('*');
            if LATEX_SKIP_ENVS.contains(&base) {
                let pat = format!("\\end{{{env}}}");
                return find(bytes, close, end, pat.as_bytes()).map_or(end, |p| p + pat.len());
            }
            b.flush();
            let extra = match env {
                "tabular*" | "tabularx" => 2,
                "tabular" | "array" | "longtable" | "tabu" | "multicols" | "wrapfigure"
                | "wraptable" => 1,
                _ => 0,
            };
            skip_args(bytes, close, end, extra, memo)
        }
        "end" => {
            b.flush();
            let q = skip_blank(bytes, k, end);
            if q < end && bytes[q] == b'{' {
                skip_brace(bytes, q, end)
            } else {
                k
            }
        }
        "verb" | "lstinline" => {
            if k >= end {
                return end;
            }
            if bytes[k] == b'{' {
                return skip_brace(bytes, k, end);
            }
            let delim = bytes[k];
            find_byte(bytes, k + 1, eol(bytes, k).min(end), delim).map_or(k + 1, |p| p + 1)
        }
        "def" | "gdef" | "edef" | "xdef" => {
            let mut p = skip_blank(bytes, k, end);
            if p < end && bytes[p] == b'\\' {
                p += 1;
                while p < end && bytes[p].is_ascii_alphabetic() {
                    p += 1;
                }
            }
            match find_byte(bytes, p, eol(bytes, p).min(end).min(p + 200), b'{') {
                Some(q) => skip_brace(bytes, q, end),
                None => p,
            }
        }
        _ if LATEX_SECTIONS.contains(&name) => {
            b.flush();
            let p = skip_args(bytes, k, end, 0, memo);
            let q = skip_blank(bytes, p, end);
            if q < end && bytes[q] == b'{' {
                groups.push(true);
                q + 1
            } else {
                p
            }
        }
        _ => {
            let braces = LATEX_SKIP_ARGS
                .iter()
                .find(|(m, _)| *m == name)
                .map_or(0, |x| x.1);
            skip_args(bytes, k, end, braces, memo)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comments of code: the language table and the scanner
// ---------------------------------------------------------------------------------------------

/// Block comments nest (Rust, Swift, Kotlin, Scala, Dart, Haskell, OCaml).
const NESTED: u32 = 1;
/// "..." strings with backslash escapes.
const DQ: u32 = 1 << 1;
/// '...' strings with backslash escapes.
const SQ: u32 = 1 << 2;
/// '...' strings without escapes (shell, SQL, YAML, TOML literals).
const SQ_RAW: u32 = 1 << 3;
/// 'x' character literals; a quote after an identifier ('a lifetimes, x' primes, 1'000) is
/// not a literal.
const CHAR: u32 = 1 << 4;
/// `...` strings with escapes (JavaScript templates).
const BT: u32 = 1 << 5;
/// `...` raw strings (Go).
const BT_RAW: u32 = 1 << 6;
/// """...""" strings.
const TRIPLE: u32 = 1 << 7;
/// '''...''' strings.
const TRIPLE_SQ: u32 = 1 << 8;
/// A triple-quoted string that starts a statement is documentation (Python docstrings).
const DOCSTRING: u32 = 1 << 9;
/// Quoted strings may span lines.
const MULTILINE: u32 = 1 << 10;
/// Rust raw strings r#"..."#, br"...".
const RUST_RAW: u32 = 1 << 11;
/// C++ raw strings R"delim(...)delim".
const CPP_RAW: u32 = 1 << 12;
/// C# verbatim strings @"...".
const VERBATIM: u32 = 1 << 13;
/// Lua long brackets [[...]], [==[...]==] (strings and --[==[ comments ]==]).
const LUA_LONG: u32 = 1 << 14;
/// '#' starts a comment only at the start of a word (shell, YAML).
const HASH_WORD: u32 = 1 << 15;
/// Line comments only at the start of a line (Dockerfile, Vim script, INI).
const LINE_START: u32 = 1 << 16;
/// Shell here-documents (<<EOF, <<-'EOF').
const HEREDOC: u32 = 1 << 17;
/// Ruby/Perl here-documents (<<~EOS, <<"EOS": upper-case or quoted).
const HEREDOC_UPPER: u32 = 1 << 18;
/// PHP here/nowdocs (<<<EOT).
const HEREDOC_PHP: u32 = 1 << 19;
/// Haskell: a run of dashes followed by a symbol is an operator (-->), not a comment.
const HASKELL_DASH: u32 = 1 << 20;
/// Zig multiline string lines (\\...).
const ZIG_STR: u32 = 1 << 21;
/// PHP attributes #[...] are not comments.
const NO_HASH_BRACKET: u32 = 1 << 22;
/// A quote right after a letter or digit is an apostrophe, not a string (shell, YAML).
const QUOTE_BOUNDARY: u32 = 1 << 23;
/// Block comment markers only at the start of a line (Ruby =begin/=end).
const LINE_START_BLOCK: u32 = 1 << 24;

/// The comment syntax of one family of languages.
struct Syntax {
    /// Language ids (VS Code ids first, then common editor aliases); matched case-insensitively.
    names: &'static [&'static str],
    line: &'static [&'static str],
    block: &'static [(&'static str, &'static str)],
    flags: u32,
}

const C_BLOCK: &[(&str, &str)] = &[("/*", "*/")];

/// The comment syntax of the common languages: the one table.
static SYNTAXES: &[Syntax] = &[
    Syntax {
        names: &["rust", "rs"],
        line: &["//"],
        block: C_BLOCK,
        flags: NESTED | DQ | MULTILINE | CHAR | RUST_RAW,
    },
    Syntax {
        names: &[
            "c",
            "cpp",
            "c++",
            "objective-c",
            "objective-cpp",
            "objc",
            "objcpp",
            "cuda",
            "cuda-cpp",
            "arduino",
            "hlsl",
            "glsl",
            "cc",
            "h",
            "hpp",
        ],
        line: &["//"],
        block: C_BLOCK,
        flags: DQ | CHAR | CPP_RAW,
    },
    Syntax {
        names: &["csharp", "cs", "c#", "c-sharp"],
        line: &["//"],
        block: C_BLOCK,
        flags: DQ | CHAR | VERBATIM | TRIPLE,
    },
    Syntax {
        names: &["java"],
        line: &["//"],
        block: C_BLOCK,
        flags: DQ | CHAR | TRIPLE,
    },
    Syntax {
        names: &["kotlin", "kt", "kts"],
        line: &["//"],
        block: C_BLOCK,
        flags: NESTED | DQ | CHAR | TRIPLE,
    },
    Syntax {
        names: &["scala", "sbt"],
        line: &["//"],
        block: C_BLOCK,
        flags: NESTED | DQ | CHAR | TRIPLE,
    },
    Syntax {
        names: &["swift"],
        line: &["//"],
        block: C_BLOCK,
        flags: NESTED | DQ | TRIPLE,
    },
    Syntax {
        names: &["go", "golang"],
        line: &["//"],
        block: C_BLOCK,
        flags: DQ | CHAR | BT_RAW,
    },
    Syntax {
        names: &[
            "javascript",
            "typescript",
            "javascriptreact",
            "typescriptreact",
            "js",
            "ts",
            "jsx",
            "tsx",
            "mjs",
            "cjs",
            "jsonc",
            "json5",
        ],
        line: &["//"],
        block: C_BLOCK,
        flags: DQ | SQ | BT | QUOTE_BOUNDARY,
    },
    Syntax {
        names: &[
            "groovy", "gradle", "solidity", "proto", "proto3", "protobuf",
        ],
        line: &["//"],
        block: C_BLOCK,
        flags: DQ | SQ | TRIPLE | TRIPLE_SQ,
    },
    Syntax {
        names: &["php"],
        line: &["//", "#"],
        block: C_BLOCK,
        flags: DQ | SQ | MULTILINE | HEREDOC_PHP | NO_HASH_BRACKET,
    },
    Syntax {
        names: &["python", "py", "python3", "starlark", "bazel", "cython"],
        line: &["#"],
        block: &[],
        flags: DQ | SQ | TRIPLE | TRIPLE_SQ | DOCSTRING,
    },
    Syntax {
        names: &[
            "shellscript",
            "sh",
            "bash",
            "zsh",
            "ksh",
            "fish",
            "shell",
            "dotenv",
        ],
        line: &["#"],
        block: &[],
        flags: DQ | SQ_RAW | MULTILINE | HASH_WORD | HEREDOC | QUOTE_BOUNDARY,
    },
    Syntax {
        names: &["perl", "perl6", "raku"],
        line: &["#"],
        block: &[],
        flags: DQ | SQ | MULTILINE | HEREDOC_UPPER | QUOTE_BOUNDARY,
    },
    Syntax {
        names: &["ruby", "rb"],
        line: &["#"],
        block: &[("=begin", "=end")],
        flags: DQ | SQ | MULTILINE | HEREDOC_UPPER | LINE_START_BLOCK,
    },
    Syntax {
        names: &["lua", "luau"],
        line: &["--"],
        block: &[("--[[", "]]")],
        flags: DQ | SQ | LUA_LONG,
    },
    Syntax {
        names: &[
            "sql",
            "mysql",
            "postgres",
            "pgsql",
            "plsql",
            "sqlite",
            "tsql",
            "postgresql",
        ],
        line: &["--"],
        block: C_BLOCK,
        flags: DQ | SQ_RAW | MULTILINE,
    },
    Syntax {
        names: &["haskell", "hs", "purescript", "elm"],
        line: &["--"],
        block: &[("{-", "-}")],
        flags: NESTED | DQ | CHAR | HASKELL_DASH,
    },
    Syntax {
        names: &["ocaml", "ocaml.interface", "reason"],
        line: &[],
        block: &[("(*", "*)")],
        flags: NESTED | DQ | CHAR | MULTILINE,
    },
    Syntax {
        names: &["fsharp"],
        line: &["//"],
        block: &[("(*", "*)")],
        flags: DQ | CHAR | TRIPLE,
    },
    Syntax {
        names: &["elixir", "ex", "exs"],
        line: &["#"],
        block: &[],
        flags: DQ | SQ | TRIPLE | TRIPLE_SQ | MULTILINE,
    },
    Syntax {
        names: &["r"],
        line: &["#"],
        block: &[],
        flags: DQ | SQ | MULTILINE,
    },
    Syntax {
        names: &["julia"],
        line: &["#"],
        block: &[("#=", "=#")],
        flags: NESTED | DQ | CHAR | TRIPLE,
    },
    Syntax {
        names: &["powershell", "ps1", "pwsh"],
        line: &["#"],
        block: &[("<#", "#>")],
        flags: DQ | SQ_RAW | MULTILINE,
    },
    Syntax {
        names: &["yaml", "yml", "github-actions-workflow"],
        line: &["#"],
        block: &[],
        flags: DQ | SQ_RAW | HASH_WORD | QUOTE_BOUNDARY,
    },
    Syntax {
        names: &["toml"],
        line: &["#"],
        block: &[],
        flags: DQ | SQ_RAW | TRIPLE | TRIPLE_SQ,
    },
    Syntax {
        names: &["dockerfile", "docker", "containerfile"],
        line: &["#"],
        block: &[],
        flags: LINE_START,
    },
    Syntax {
        names: &[
            "makefile",
            "make",
            "cmake",
            "graphql",
            "nix",
            "terraform",
            "hcl",
            "gitignore",
            "ignore",
        ],
        line: &["#"],
        block: &[],
        flags: DQ | SQ | QUOTE_BOUNDARY,
    },
    Syntax {
        names: &[
            "html", "xml", "xhtml", "htm", "svg", "xsl", "xslt", "vue", "svelte", "astro",
        ],
        line: &[],
        block: &[("<!--", "-->")],
        flags: 0,
    },
    Syntax {
        names: &["css"],
        line: &[],
        block: C_BLOCK,
        flags: DQ | SQ,
    },
    Syntax {
        names: &["scss", "less", "sass", "stylus"],
        line: &["//"],
        block: C_BLOCK,
        flags: DQ | SQ,
    },
    Syntax {
        names: &["vim", "vimscript", "viml"],
        line: &["\""],
        block: &[],
        flags: LINE_START,
    },
    Syntax {
        names: &["zig"],
        line: &["//"],
        block: &[],
        flags: DQ | CHAR | ZIG_STR,
    },
    Syntax {
        names: &["dart"],
        line: &["//"],
        block: C_BLOCK,
        flags: NESTED | DQ | SQ | TRIPLE | TRIPLE_SQ,
    },
    Syntax {
        names: &[
            "latex", "tex", "bibtex", "erlang", "matlab", "octave", "prolog",
        ],
        line: &["%"],
        block: &[],
        flags: DQ | SQ | QUOTE_BOUNDARY,
    },
    Syntax {
        names: &[
            "clojure",
            "lisp",
            "commonlisp",
            "scheme",
            "racket",
            "elisp",
            "emacs-lisp",
            "fennel",
        ],
        line: &[";"],
        block: &[("#|", "|#")],
        flags: DQ,
    },
    Syntax {
        names: &["ini", "properties", "editorconfig", "gitconfig", "desktop"],
        line: &[";", "#"],
        block: &[],
        flags: LINE_START,
    },
    Syntax {
        names: &["asm", "nasm", "gas", "assembly"],
        line: &[";", "#", "//"],
        block: C_BLOCK,
        flags: DQ | LINE_START,
    },
];

fn syntax_of(language_id: &str) -> Option<&'static Syntax> {
    SYNTAXES
        .iter()
        .find(|s| s.names.iter().any(|n| n.eq_ignore_ascii_case(language_id)))
}

/// The lines of one comment (a block comment, or consecutive line comments).
struct Group {
    lines: Vec<Line>,
    block: bool,
}

/// The last line comment seen, to join the next one to it.
struct LastComment {
    group: usize,
    leader: (usize, usize),
    nl: Option<usize>,
    full: bool,
    col: usize,
}

/// A string literal at `i`: where it ends, and the content of a docstring.
struct Str {
    end: usize,
    doc: Option<(usize, usize)>,
}

impl Str {
    fn plain(end: usize) -> Option<Str> {
        Some(Str { end, doc: None })
    }
}

/// The comments of a code document, in order, with strings (and here-documents) skipped.
fn comment_groups(doc: &str, syn: &Syntax) -> Vec<Group> {
    let bytes = doc.as_bytes();
    let n = bytes.len();
    let f = syn.flags;
    let mut starters = [false; 256];
    for l in syn.line {
        starters[l.as_bytes()[0] as usize] = true;
    }
    for (o, _) in syn.block {
        starters[o.as_bytes()[0] as usize] = true;
    }
    for &c in b"\"'`[\\<@$rbcRuUL" {
        starters[c as usize] = true;
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut last: Option<LastComment> = None;
    let mut i = 0;
    let mut line_start = 0;
    let mut line_code = false;
    let mut heredoc: Option<(usize, usize)> = None;
    while i < n {
        let c = bytes[i];
        if c == b'\n' {
            i += 1;
            line_start = i;
            line_code = false;
            if let Some((ws, we)) = heredoc.take() {
                i = skip_heredoc(bytes, i, &bytes[ws..we]);
                line_start = i;
            }
            continue;
        }
        if matches!(c, b' ' | b'\t' | b'\r') {
            i += 1;
            continue;
        }
        if !starters[c as usize] {
            line_code = true;
            i += 1;
            continue;
        }
        if let Some(end) = block_comment_at(doc, i, line_start, syn, &mut groups) {
            if let Some(p) = rfind_byte(bytes, i, end, b'\n') {
                line_start = p + 1;
                line_code = false;
            }
            i = end;
            last = None;
            continue;
        }
        let leader = syn.line.iter().find(|l| {
            starts_at(bytes, i, l.as_bytes()) && line_comment_ok(bytes, i, l, f, line_code)
        });
        if let Some(&l) = leader {
            let eol = eol(bytes, i);
            let ce = if eol > i && bytes[eol - 1] == b'\r' {
                eol - 1
            } else {
                eol
            };
            let lb = l.as_bytes();
            let mut p = i + lb.len();
            while p < ce && bytes[p] == lb[lb.len() - 1] {
                p += 1;
            }
            if l == "//" && p < ce && matches!(bytes[p], b'!' | b'<') {
                p += 1;
            }
            let leader_end = p;
            if l == "#" && p < ce && bytes[p] == b'!' && (i == 0 || bytes.get(p + 1) == Some(&b'/'))
            {
                // A shebang.
                i = eol;
                last = None;
                continue;
            }
            if l == "#" && p < ce && bytes[p] == b'\'' {
                // R's roxygen #'.
                p += 1;
            }
            if f & HASKELL_DASH != 0 {
                let q = skip_blank(bytes, p, ce);
                if q < ce && matches!(bytes[q], b'|' | b'^') && (q + 1 == ce || is_ws(bytes[q + 1]))
                {
                    p = q + 1;
                }
            }
            let line = Line {
                start: p,
                end: ce.max(p),
                nl: (eol < n).then_some(eol),
            };
            let full = !line_code;
            let col = i - line_start;
            let join = last.as_ref().is_some_and(|lc| {
                lc.group + 1 == groups.len()
                    && lc.nl.map(|x| x + 1) == Some(line_start)
                    && bytes[lc.leader.0..lc.leader.1] == bytes[i..leader_end]
                    && full
                    && (lc.full || lc.col == col)
            });
            if join {
                if let Some(g) = groups.last_mut() {
                    g.lines.push(line);
                }
            } else {
                groups.push(Group {
                    lines: vec![line],
                    block: false,
                });
            }
            last = Some(LastComment {
                group: groups.len() - 1,
                leader: (i, leader_end),
                nl: line.nl,
                full,
                col,
            });
            i = eol;
            continue;
        }
        if let Some(s) = string_at(bytes, i, line_start, f) {
            if let Some((cs, ce)) = s.doc {
                emit_block(doc, cs, ce, "\"\"\"", "\"\"\"", &mut groups);
                last = None;
            }
            let end = s.end.max(i + 1).min(n);
            if let Some(p) = rfind_byte(bytes, i, end, b'\n') {
                line_start = p + 1;
            }
            line_code = true;
            i = end;
            continue;
        }
        if c == b'<' && f & (HEREDOC | HEREDOC_UPPER | HEREDOC_PHP) != 0 {
            if let Some((ws, we, end)) = heredoc_at(bytes, i, f) {
                heredoc = Some((ws, we));
                line_code = true;
                i = end;
                continue;
            }
        }
        line_code = true;
        i += 1;
    }
    groups
}

/// Whether the line-comment leader `l` at `i` starts a comment here.
fn line_comment_ok(bytes: &[u8], i: usize, l: &str, f: u32, line_code: bool) -> bool {
    if f & LINE_START != 0 && line_code {
        return false;
    }
    let prev = if i > 0 { bytes[i - 1] } else { b'\n' };
    match l {
        "#" => {
            if i > 0 && (prev == b'$' || prev == b'\\') {
                return false;
            }
            if f & NO_HASH_BRACKET != 0 && bytes.get(i + 1) == Some(&b'[') {
                return false;
            }
            f & HASH_WORD == 0 || is_ws(prev) || matches!(prev, b';' | b'|' | b'&' | b'(')
        }
        // http://... in unquoted contexts (CSS url(), YAML) is not a comment.
        "//" => prev != b':',
        "--" if f & HASKELL_DASH != 0 => {
            let r = run_len(bytes, i, bytes.len(), b'-');
            !bytes
                .get(i + r)
                .is_some_and(|c| b"!#$%&*+./<=>?@\\^|~:".contains(c))
        }
        _ => true,
    }
}

/// A block comment at `i`: its lines go to `groups`; returns where the code resumes.
fn block_comment_at(
    doc: &str,
    i: usize,
    line_start: usize,
    syn: &Syntax,
    groups: &mut Vec<Group>,
) -> Option<usize> {
    let bytes = doc.as_bytes();
    let n = bytes.len();
    for &(open, close) in syn.block {
        if !starts_at(bytes, i, open.as_bytes()) {
            continue;
        }
        if syn.flags & LINE_START_BLOCK != 0 && i != line_start {
            continue;
        }
        if open == "{-" && bytes.get(i + 2) == Some(&b'#') {
            // A Haskell pragma {-# ... #-}.
            return Some(find(bytes, i + 2, n, b"-}").map_or(n, |p| p + 2));
        }
        let cs = i + open.len();
        let (ce, end) = if syn.flags & LINE_START_BLOCK != 0 {
            let mut j = cs;
            loop {
                match find_byte(bytes, j, n, b'\n') {
                    Some(p) if starts_at(bytes, p + 1, close.as_bytes()) => {
                        break (p, eol(bytes, p + 1))
                    }
                    Some(p) => j = p + 1,
                    None => break (n, n),
                }
            }
        } else if syn.flags & NESTED != 0 {
            nested_close(bytes, cs, open.as_bytes(), close.as_bytes())
                .map_or((n, n), |p| (p, p + close.len()))
        } else {
            find(bytes, cs, n, close.as_bytes()).map_or((n, n), |p| (p, p + close.len()))
        };
        emit_block(doc, cs, ce, open, close, groups);
        return Some(end);
    }
    if syn.flags & LUA_LONG != 0 && starts_at(bytes, i, b"--[") {
        let level = run_len(bytes, i + 3, n, b'=');
        if level > 0 && bytes.get(i + 3 + level) == Some(&b'[') {
            let close = format!("]{}]", "=".repeat(level));
            let cs = i + 4 + level;
            let (ce, end) =
                find(bytes, cs, n, close.as_bytes()).map_or((n, n), |p| (p, p + close.len()));
            emit_block(doc, cs, ce, "--[[", "]]", groups);
            return Some(end);
        }
    }
    None
}

fn nested_close(bytes: &[u8], from: usize, open: &[u8], close: &[u8]) -> Option<usize> {
    let mut depth = 1;
    let mut j = from;
    while j < bytes.len() {
        if starts_at(bytes, j, open) {
            depth += 1;
            j += open.len();
        } else if starts_at(bytes, j, close) {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
            j += close.len();
        } else {
            j += 1;
        }
    }
    None
}

/// The lines of a block comment's content `cs..ce`: doc markers (/** /*! {-|) and the
/// leading '*' of Javadoc-style lines removed.
fn emit_block(doc: &str, cs: usize, ce: usize, open: &str, close: &str, groups: &mut Vec<Group>) {
    let bytes = doc.as_bytes();
    let star = open == "/*" || open == "(*";
    let open_last = open.as_bytes()[open.len() - 1];
    let close_first = close.as_bytes()[0];
    let mut lines = Vec::new();
    let mut ls = cs;
    let mut first = true;
    loop {
        let nl = find_byte(bytes, ls, ce, b'\n');
        let mut s = ls;
        let mut e = nl.unwrap_or(ce);
        if e > s && bytes[e - 1] == b'\r' {
            e -= 1;
        }
        if first {
            if matches!(open_last, b'*' | b'-') {
                while s < e && bytes[s] == open_last {
                    s += 1;
                }
            }
            if s < e && (bytes[s] == b'!' || (open == "{-" && matches!(bytes[s], b'|' | b'^'))) {
                s += 1;
            }
        } else if star {
            let p = skip_blank(bytes, s, e);
            if p < e && bytes[p] == b'*' {
                s = p + 1;
            }
        }
        if nl.is_none() {
            e = trim_end(bytes, s, e);
            if matches!(close_first, b'*' | b'-') {
                while e > s && bytes[e - 1] == close_first {
                    e -= 1;
                }
            }
        }
        lines.push(Line {
            start: s,
            end: e.max(s),
            nl,
        });
        match nl {
            Some(p) => {
                ls = p + 1;
                first = false;
            }
            None => break,
        }
    }
    groups.push(Group { lines, block: true });
}

/// Only whitespace and a string prefix (r, u, b, f) before `i` on its line.
fn statement_start(bytes: &[u8], line_start: usize, i: usize) -> bool {
    let mut k = i;
    while k > line_start
        && i - k < 2
        && matches!(
            bytes[k - 1],
            b'r' | b'R' | b'u' | b'U' | b'b' | b'B' | b'f' | b'F'
        )
    {
        k -= 1;
    }
    bytes[line_start..k]
        .iter()
        .all(|&b| b == b' ' || b == b'\t')
}

/// The end of a quoted string whose content starts at `from`.
fn scan_quoted(bytes: &[u8], from: usize, q: u8, escapes: bool, multiline: bool) -> usize {
    let n = bytes.len();
    let mut j = from;
    while j < n {
        let b = bytes[j];
        if escapes && b == b'\\' {
            j += 2;
            continue;
        }
        if b == q {
            return j + 1;
        }
        if b == b'\n' && !multiline {
            return j;
        }
        j += 1;
    }
    n
}

/// A character literal at `i` ('x', '\n', '\u{1F600}'); None for lifetimes and primes.
fn char_literal(bytes: &[u8], i: usize) -> Option<usize> {
    let n = bytes.len();
    if i > 0 && is_ident(bytes[i - 1]) {
        // Only a one-letter prefix (b'x', L'x', u'x') may touch the quote.
        let prefix =
            matches!(bytes[i - 1], b'b' | b'L' | b'u' | b'U') && (i < 2 || !is_ident(bytes[i - 2]));
        if !prefix {
            return None;
        }
    }
    let j = i + 1;
    if j >= n {
        return None;
    }
    match bytes[j] {
        b'\\' => {
            let limit = n.min(j + 12);
            let mut k = j + 2;
            while k < limit && bytes[k] != b'\n' {
                if bytes[k] == b'\'' {
                    return Some(k + 1);
                }
                k += 1;
            }
            None
        }
        b'\n' | b'\'' => None,
        lead => {
            let l = utf8_len(lead);
            (bytes.get(j + l) == Some(&b'\'')).then_some(j + l + 1)
        }
    }
}

/// A string literal at `i`, by the language's flags.
fn string_at(bytes: &[u8], i: usize, line_start: usize, f: u32) -> Option<Str> {
    let n = bytes.len();
    let c = bytes[i];
    let word_start = i == 0 || !is_ident(bytes[i - 1]);
    match c {
        b'r' | b'b' | b'c' if f & RUST_RAW != 0 && word_start => {
            let mut p = i;
            if c != b'r' {
                p += 1;
                if bytes.get(p) != Some(&b'r') {
                    return None;
                }
            }
            p += 1;
            let h = run_len(bytes, p, n, b'#');
            if bytes.get(p + h) != Some(&b'"') {
                return None;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', h));
            Str::plain(find(bytes, p + h + 1, n, &close).map_or(n, |q| q + close.len()))
        }
        b'R' | b'u' | b'U' | b'L' if f & CPP_RAW != 0 && word_start => {
            let mut p = i;
            if starts_at(bytes, p, b"u8") {
                p += 2;
            } else if c != b'R' {
                p += 1;
            }
            if !starts_at(bytes, p, b"R\"") {
                return None;
            }
            let ds = p + 2;
            let mut de = ds;
            while de < n && de - ds <= 16 && bytes[de] != b'(' {
                if matches!(bytes[de], b' ' | b')' | b'\\' | b'\n' | b'"') {
                    return None;
                }
                de += 1;
            }
            if bytes.get(de) != Some(&b'(') {
                return None;
            }
            let mut close = vec![b')'];
            close.extend_from_slice(&bytes[ds..de]);
            close.push(b'"');
            Str::plain(find(bytes, de + 1, n, &close).map_or(n, |q| q + close.len()))
        }
        b'@' | b'$' if f & VERBATIM != 0 => {
            let p = if starts_at(bytes, i, b"@\"") {
                i + 2
            } else if starts_at(bytes, i, b"$@\"") || starts_at(bytes, i, b"@$\"") {
                i + 3
            } else {
                return None;
            };
            let mut j = p;
            while j < n {
                if bytes[j] == b'"' {
                    if bytes.get(j + 1) == Some(&b'"') {
                        j += 2;
                        continue;
                    }
                    return Str::plain(j + 1);
                }
                j += 1;
            }
            Str::plain(n)
        }
        b'"' | b'\'' => {
            let triple = if c == b'"' {
                f & TRIPLE != 0
            } else {
                f & TRIPLE_SQ != 0
            };
            if triple && bytes.get(i + 1) == Some(&c) && bytes.get(i + 2) == Some(&c) {
                let q = [c, c, c];
                let cs = i + 3;
                let mut j = cs;
                let mut close = None;
                while j < n {
                    if bytes[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    if starts_at(bytes, j, &q) {
                        close = Some(j);
                        break;
                    }
                    j += 1;
                }
                let (ce, end) = close.map_or((n, n), |p| (p, p + 3));
                let doc = f & DOCSTRING != 0 && statement_start(bytes, line_start, i);
                return Some(Str {
                    end,
                    doc: doc.then_some((cs, ce)),
                });
            }
            if c == b'"' {
                return if f & DQ != 0 {
                    Str::plain(scan_quoted(bytes, i + 1, b'"', true, f & MULTILINE != 0))
                } else {
                    None
                };
            }
            if f & (SQ | SQ_RAW) != 0 {
                if f & QUOTE_BOUNDARY != 0 && i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
                    return None;
                }
                return Str::plain(scan_quoted(
                    bytes,
                    i + 1,
                    b'\'',
                    f & SQ != 0,
                    f & MULTILINE != 0,
                ));
            }
            if f & CHAR != 0 {
                return char_literal(bytes, i).and_then(Str::plain);
            }
            None
        }
        b'`' if f & (BT | BT_RAW) != 0 => {
            Str::plain(scan_quoted(bytes, i + 1, b'`', f & BT != 0, true))
        }
        b'[' if f & LUA_LONG != 0 => {
            let level = run_len(bytes, i + 1, n, b'=');
            if bytes.get(i + 1 + level) != Some(&b'[') {
                return None;
            }
            let close = format!("]{}]", "=".repeat(level));
            Str::plain(
                find(bytes, i + 2 + level, n, close.as_bytes()).map_or(n, |q| q + close.len()),
            )
        }
        b'\\' if f & ZIG_STR != 0 && bytes.get(i + 1) == Some(&b'\\') => Str::plain(eol(bytes, i)),
        _ => None,
    }
}

/// A here-document operator at `i`: the terminator word's range and where the code resumes.
fn heredoc_at(bytes: &[u8], i: usize, f: u32) -> Option<(usize, usize, usize)> {
    let n = bytes.len();
    if !starts_at(bytes, i, b"<<") {
        return None;
    }
    let mut p = i + 2;
    if f & HEREDOC_PHP != 0 {
        if bytes.get(p) != Some(&b'<') {
            return None;
        }
        p = skip_blank(bytes, p + 1, n);
    } else {
        if bytes.get(p) == Some(&b'<') {
            return None;
        }
        if matches!(bytes.get(p), Some(b'-') | Some(b'~')) {
            p += 1;
        }
        if f & HEREDOC != 0 {
            p = skip_blank(bytes, p, n);
        }
    }
    let quote = matches!(bytes.get(p), Some(b'"') | Some(b'\''));
    if quote {
        p += 1;
    }
    let ws = p;
    while p < n && (bytes[p].is_ascii_alphanumeric() || bytes[p] == b'_') {
        p += 1;
    }
    if p == ws || bytes[ws].is_ascii_digit() {
        return None;
    }
    if f & HEREDOC_UPPER != 0 && !quote && !bytes[ws].is_ascii_uppercase() {
        return None;
    }
    let we = p;
    if quote && matches!(bytes.get(p), Some(b'"') | Some(b'\'')) {
        p += 1;
    }
    Some((ws, we, p))
}

/// Skips a here-document body starting at `i`: through the line that holds its terminator.
fn skip_heredoc(bytes: &[u8], i: usize, word: &[u8]) -> usize {
    let n = bytes.len();
    let mut ls = i;
    while ls < n {
        let le = eol(bytes, ls);
        let t = skip_blank(bytes, ls, le);
        if starts_at(bytes, t, word) {
            let r = t + word.len();
            if r == trim_end(bytes, t, le)
                || (r < le && matches!(bytes[r], b';' | b',' | b')' | b'.'))
            {
                return (le + 1).min(n);
            }
        }
        ls = le + 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prose_langs() -> Vec<String> {
        [
            "markdown",
            "plaintext",
            "latex",
            "restructuredtext",
            "gitcommit",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn paras(doc: &str, lang: &str) -> Vec<Paragraph> {
        let ps = paragraphs(doc, lang, &prose_langs());
        check_map(doc, &ps);
        ps
    }

    fn texts(doc: &str, lang: &str) -> Vec<String> {
        paras(doc, lang).into_iter().map(|p| p.text).collect()
    }

    /// Every piece copies the document, and every word of every paragraph maps back to the
    /// same word in the document.
    fn check_map(doc: &str, ps: &[Paragraph]) {
        let errors = map_errors(doc, ps);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    fn short(s: &str) -> String {
        if s.len() <= 80 {
            return format!("{s:?}");
        }
        let cut = floor_char(s, 80);
        format!("{:?}... ({} bytes)", &s[..cut], s.len())
    }

    fn map_errors(doc: &str, ps: &[Paragraph]) -> Vec<String> {
        let mut errors = Vec::new();
        for p in ps {
            if p.text != p.text.trim() {
                errors.push(format!("paragraph not trimmed: {}", short(&p.text)));
            }
            let mut prev_end = 0;
            for &(t, d, l) in &p.pieces {
                if t < prev_end || p.text.get(t..t + l) != doc.get(d..d + l) {
                    errors.push(format!("bad piece {t},{d},{l} of {}", short(&p.text)));
                }
                prev_end = t + l;
            }
            let mut pos = 0;
            for word in p.text.split_whitespace() {
                let start = pos + p.text[pos..].find(word).unwrap();
                let end = start + word.len();
                let (ds, de) = p.range_to_document(start, end);
                if &doc[ds..de] != word {
                    errors.push(format!(
                        "word {} maps to {} in {}",
                        short(word),
                        short(&doc[ds..de]),
                        short(&p.text)
                    ));
                }
                pos = end;
            }
        }
        errors
    }

    struct Case {
        name: &'static str,
        lang: &'static str,
        doc: &'static str,
        want: &'static [&'static str],
    }

    const CASES: &[Case] = &[
        Case {
            name: "markdown front matter and headings",
            lang: "markdown",
            doc: "---\ntitle: Hello there\ntags: [a, b]\n---\n# The heading\n\nFirst line of text\nsecond line here.\n",
            want: &["The heading", "First line of text\nsecond line here."],
        },
        Case {
            name: "markdown toml front matter",
            lang: "markdown",
            doc: "+++\ntitle = \"Hello there\"\n+++\nBody text here.",
            want: &["Body text here."],
        },
        Case {
            name: "markdown fences with info strings",
            lang: "markdown",
            doc: "Intro text.\n\n```rust\nlet x = \"not prose\";\n```\n\n~~~~ python title=\"x\"\nprint(\"no\")\n~~~\nstill code\n~~~~\n\n````\n```\nnested fence\n````\nOutro text.",
            want: &["Intro text.", "Outro text."],
        },
        Case {
            name: "markdown inline code, links, bare URLs",
            lang: "markdown",
            doc: "Use the `foo` function and ``a ` b`` here.\nSee [the docs](https://example.com/x_(y)) or https://example.com now.\nVisit www.example.org for more.",
            want: &["Use the function and here.\nSee the docs or now.\nVisit for more."],
        },
        Case {
            name: "markdown HTML, autolinks, images, references",
            lang: "markdown",
            doc: "<!-- a hidden\ncomment -->\nText with <b>bold</b> and <https://x.y> link.\n\n[ref]: https://example.com \"Title\"\n\n![logo](logo.png) Caption here.\n\n<script>\nvar x = 1;\n</script>\nAfter script.",
            want: &["Text with bold and link.", "Caption here.", "After script."],
        },
        Case {
            name: "markdown lists, tasks and blockquotes",
            lang: "markdown",
            doc: "- first item\n- second *item*\n  1. nested one\n\n> quoted text\n> continues here\n\n* [ ] task box\n+ [x] done box",
            want: &["first item\nsecond item\nnested one", "quoted text\ncontinues here", "task box\ndone box"],
        },
        Case {
            name: "markdown tables, closed headings, setext headings",
            lang: "markdown",
            doc: "## Title ##\n\n| Name | Description |\n|------|:-----------:|\n| foo  | Does `x` things |\n\nSetext title\n============\nBody.\n\n***\n",
            want: &["Title", "Name", "Description", "foo", "Does things", "Setext title", "Body."],
        },
        Case {
            name: "markdown indented code and lazy lines",
            lang: "markdown",
            doc: "Para one.\n\n    let x = 1;\n    more code\n\n\tcode with a tab\n\nPara two.\n    lazy continuation\n\n- item\n\n    item paragraph",
            want: &["Para one.", "Para two.\nlazy continuation", "item", "item paragraph"],
        },
        Case {
            name: "markdown footnotes, references, entities, reference links",
            lang: "markdown",
            doc: "Some claim[^1] and [a link][ref] here &amp; there.\n\n[^1]: The footnote text.",
            want: &["Some claim and a link here there.", "The footnote text."],
        },
        Case {
            name: "markdown badges",
            lang: "markdown",
            doc: "[![Build](https://img.shields.io/b.svg)](https://ci.example.com) [![Docs](d.svg)](https://docs.rs)\n\nA crate for words.",
            want: &["A crate for words."],
        },
        Case {
            name: "rust comments",
            lang: "rust",
            doc: "//! Crate docs here.\n//! More crate docs.\n\n/// Adds two numbers.\n///\n/// ```\n/// assert_eq!(add(1, 2), 3);\n/// ```\nfn add(a: i32, b: i32) -> i32 {\n    let s = \"http://x // not a comment\"; // real comment\n    let c = '\"'; // after a char\n    /* block comment\n       on two lines */\n    a + b\n}\n",
            want: &["Crate docs here.\nMore crate docs.", "Adds two numbers.", "real comment", "after a char", "block comment\non two lines"],
        },
        Case {
            name: "rust strings, lifetimes, raw strings, attributes",
            lang: "rust",
            doc: "#![allow(dead_code)]\nfn f<'a>(x: &'a str) -> &'a str { x } // lifetimes here\nlet r = r#\"a \"// no\" b\"#; // raw ok\nlet b = b'\"'; let m = \"multi\n// still string\"; // after multi\n// #[derive(Debug)]\n/** Doc block.\n * Second line.\n */\n",
            want: &["lifetimes here", "raw ok", "after multi", "Doc block.\nSecond line."],
        },
        Case {
            name: "python comments and docstrings",
            lang: "python",
            doc: "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n\"\"\"Module docstring here.\n\nSecond paragraph of the docstring.\n\"\"\"\nimport os  # noqa: F401\n\ndef f(x):\n    \"\"\"Return the value.\n\n    >>> f(1)\n    1\n    \"\"\"\n    s = \"# not a comment\"\n    t = '''# not a docstring'''\n    return x  # the result\n# type: ignore\n",
            want: &["Module docstring here.", "Second paragraph of the docstring.", "Return the value.", "the result"],
        },
        Case {
            name: "python docstring fields and commented-out code",
            lang: "python",
            doc: "def g(a):\n    r\"\"\"Compute things.\n\n    :param a: The input value.\n    :returns: The output.\n    \"\"\"\n    # print(a)\n    # x = compute(a)\n    # Explain the step.\n",
            want: &["Compute things.", "The input value.", "The output.", "Explain the step."],
        },
        Case {
            name: "shell",
            lang: "shellscript",
            doc: "#!/bin/bash\n# Install the tool.\necho \"# not a comment\" 'it''s' $# ${#arr[@]} don't\ncat <<EOF\n# inside heredoc\nEOF\nls # list files\n",
            want: &["Install the tool.", "list files"],
        },
        Case {
            name: "lua",
            lang: "lua",
            doc: "-- Compute the sum.\nlocal s = \"-- not a comment\"\n--[[ A block\ncomment here. ]]\n--[==[ Level two\ncomment. ]==]\nlocal t = [[ -- inside long string ]]\n",
            want: &["Compute the sum.", "A block\ncomment here.", "Level two\ncomment."],
        },
        Case {
            name: "gitcommit",
            lang: "gitcommit",
            doc: "Fix the parser crash\n\nThe parser crashed on empty input.\n# Please enter the commit message for your changes.\nIt now returns an error.\n\nSigned-off-by: A Person <a@example.com>\n# ------------------------ >8 ------------------------\ndiff --git a/x b/x\n+added words\n",
            want: &["Fix the parser crash", "The parser crashed on empty input.\nIt now returns an error."],
        },
        Case {
            name: "latex",
            lang: "latex",
            doc: "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n\\section{Introduction}\nThis is \\emph{important} text with math $x^2$ and a citation \\cite{knuth} here.\n% a comment line\nSecond \\textbf{bold} line.\\footnote{A note.}\n\n\\begin{equation}\n  E = mc^2\n\\end{equation}\nDisplay \\[ a + b \\] done.\n\\end{document}\nafter the end\n",
            want: &["Introduction", "This is important text with math and a citation here.\nSecond bold line.", "Display done."],
        },
        Case {
            name: "latex without document, lists and labels",
            lang: "latex",
            doc: "\\begin{itemize}\n  \\item[a] First point.\n  \\item Second point.\\label{x}\n\\end{itemize}\n\\subsection*{Star title}\n",
            want: &["First point.\nSecond point.", "Star title"],
        },
        Case {
            name: "restructuredtext",
            lang: "restructuredtext",
            doc: "Title\n=====\n\nThis is *emphasis* and ``code`` with a `link <https://x.y>`_ here.\n\n.. code-block:: python\n\n   print(\"skip\")\n\n.. note:: Keep this note.\n\nExample::\n\n    literal block skipped\n\nAfter the block.\n\n- A bullet :ref:`target` item.\n\n.. a comment\n   continued\n",
            want: &["Title", "This is emphasis and with a link here.", "Keep this note.", "Example:", "After the block.", "A bullet item."],
        },
        Case {
            name: "plaintext",
            lang: "plaintext",
            doc: "Plain *text* stays `as` is.\nSee https://example.com for more.\n\nSecond paragraph.",
            want: &["Plain *text* stays `as` is.\nSee for more.", "Second paragraph."],
        },
        Case {
            name: "unknown language",
            lang: "brainfuck",
            doc: "// looks like a comment\n# and this\n",
            want: &[],
        },
        Case {
            name: "javascript and jsdoc",
            lang: "typescript",
            doc: "const u = `template // no`; // eslint-disable-line\nconst re = '// no'; // @ts-ignore\n/**\n * JSDoc summary.\n * @param {string} name - The name.\n * @returns {number} The count.\n * @example\n * foo(1)\n * @since 1.0\n */\n",
            want: &["JSDoc summary.", "The name.", "The count."],
        },
        Case {
            name: "go raw strings",
            lang: "go",
            doc: "s := `raw // no\n// still raw` // yes\n//go:generate stringer\n// Package doc.\n",
            want: &["yes", "Package doc."],
        },
        Case {
            name: "ruby",
            lang: "ruby",
            doc: "=begin\nBlock doc.\n=end\nputs 'x # no' # yes\nx = <<~EOS\n  # heredoc\nEOS\n# frozen_string_literal: true\n",
            want: &["Block doc.", "yes"],
        },
        Case {
            name: "c and c++",
            lang: "cpp",
            doc: "char c = '\\''; /* ok */\nprintf(\"%d // no\\n\", x); // yes\nauto s = R\"x(// no)x\"; // raw\nint n = 1'000; // digits\n// SPDX-License-Identifier: MIT\n",
            want: &["ok", "yes", "raw", "digits"],
        },
        Case {
            name: "csharp verbatim",
            lang: "csharp",
            doc: "var p = @\"C:\\dir\\\"; // verbatim ok\n",
            want: &["verbatim ok"],
        },
        Case {
            name: "sql",
            lang: "sql",
            doc: "SELECT '-- no', 'it''s' FROM t; -- yes\n/* block */",
            want: &["yes", "block"],
        },
        Case {
            name: "haskell",
            lang: "haskell",
            doc: "-- | Doc for f.\n-- More doc.\nf x = x --> y -- trailing\n{-# LANGUAGE GADTs #-}\n{- Block\n   comment. -}\n",
            want: &["Doc for f.\nMore doc.", "trailing", "Block\ncomment."],
        },
        Case {
            name: "yaml",
            lang: "yaml",
            doc: "key: value # trailing note\nurl: http://x#frag\ntitle: Don't stop # after apostrophe\n# full line\n",
            want: &["trailing note", "after apostrophe", "full line"],
        },
        Case {
            name: "dockerfile and makefile",
            lang: "dockerfile",
            doc: "# syntax=docker/dockerfile:1\n# Build stage.\nRUN echo hi # not a comment\n",
            want: &["Build stage."],
        },
        Case {
            name: "makefile",
            lang: "makefile",
            doc: "# Build all.\nall:\n\techo '#no'\n",
            want: &["Build all."],
        },
        Case {
            name: "php",
            lang: "php",
            doc: "<?php\n#[Attr]\n# hash comment\n// slash comment\n$s = <<<EOT\n// heredoc\nEOT;\n",
            want: &["hash comment", "slash comment"],
        },
        Case {
            name: "html",
            lang: "html",
            doc: "<p>Don't check this</p>\n<!-- An HTML comment. -->\n",
            want: &["An HTML comment."],
        },
        Case {
            name: "css and scss",
            lang: "scss",
            doc: "a { background: url(http://x/y.png); } // scss line\n/* Style note. */\n",
            want: &["scss line", "Style note."],
        },
        Case {
            name: "vim",
            lang: "vim",
            doc: "\" Vim comment.\nlet x = \"str\"\n",
            want: &["Vim comment."],
        },
        Case {
            name: "elixir, r, toml, perl",
            lang: "elixir",
            doc: "# Elixir note.\nx = \"#{y}\"\n",
            want: &["Elixir note."],
        },
        Case {
            name: "r roxygen",
            lang: "r",
            doc: "x <- \"#no\" # yes\n\n#' Roxygen doc.\n",
            want: &["yes", "Roxygen doc."],
        },
        Case {
            name: "toml",
            lang: "toml",
            doc: "a = \"# no\" # yes\nb = '''\n# no\n'''\n",
            want: &["yes"],
        },
        Case {
            name: "perl",
            lang: "perl",
            doc: "my $n = $#arr; # yes\n",
            want: &["yes"],
        },
        Case {
            name: "zig",
            lang: "zig",
            doc: "const s =\n    \\\\ // no\n;\n/// Doc comment.\n",
            want: &["Doc comment."],
        },
        Case {
            name: "kotlin nested and trailing-then-continued",
            lang: "kotlin",
            doc: "val s = \"\"\"// no\"\"\" // first part\n                    // continues\n/* a /* b */ c */ // after nest\n",
            // The nested comment ends at its own close; its inner markers read as text.
            want: &["first part\ncontinues", "a / b / c", "after nest"],
        },
        Case {
            name: "ocaml",
            lang: "ocaml",
            doc: "let c = 'a' (* OCaml note. *)\nlet f 'a = 1\n",
            want: &["OCaml note."],
        },
        Case {
            name: "crlf markdown",
            lang: "markdown",
            doc: "Line one\r\nline two\r\n\r\n# Head\r\n",
            want: &["Line one\nline two", "Head"],
        },
        Case {
            name: "crlf rust",
            lang: "rust",
            doc: "// a b\r\n// c d\r\nfn x() {}\r\n",
            want: &["a b\nc d"],
        },
        Case {
            name: "crlf plaintext",
            lang: "plaintext",
            doc: "one two\r\nthree\r\n\r\nfour\r\n",
            want: &["one two\nthree", "four"],
        },
        Case {
            name: "emoji and cjk",
            lang: "markdown",
            doc: "Hello 🌍 world, 日本語のテキスト。\n\n`code` 🎉 done ✅",
            want: &["Hello 🌍 world, 日本語のテキスト。", "🎉 done ✅"],
        },
        Case {
            name: "cjk comments",
            lang: "rust",
            doc: "let s = \"🚀 // no\"; // 中文注释 with emoji 🚀\n",
            want: &["中文注释 with emoji 🚀"],
        },
    ];

    #[test]
    fn table_of_documents() {
        let mut failures = Vec::new();
        for case in CASES {
            let ps = paragraphs(case.doc, case.lang, &prose_langs());
            for err in map_errors(case.doc, &ps) {
                failures.push(format!("{} ({}): {err}", case.name, case.lang));
            }
            let got: Vec<String> = ps.into_iter().map(|p| p.text).collect();
            if got != case.want {
                failures.push(format!(
                    "{} ({}):\n  got  {:?}\n  want {:?}",
                    case.name, case.lang, got, case.want
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn empty_and_blank_documents() {
        for lang in [
            "markdown",
            "plaintext",
            "latex",
            "restructuredtext",
            "gitcommit",
            "rust",
            "python",
            "html",
            "lua",
            "nope",
        ] {
            for doc in ["", "\n", "   \n\t\n", "\r\n\r\n"] {
                assert!(paras(doc, lang).is_empty(), "{lang} {doc:?}");
            }
        }
        // Comments and markup with no letters are dropped too.
        assert!(paras("// 123\n// ---\nfn f() {}\n", "rust").is_empty());
        assert!(paras("```\ncode\n```\n\n---\n", "markdown").is_empty());
    }

    #[test]
    fn is_prose_matches_ignoring_case() {
        let langs = prose_langs();
        assert!(is_prose("markdown", &langs));
        assert!(is_prose("Markdown", &langs));
        assert!(!is_prose("rust", &langs));
        assert!(!is_prose("markdown", &[]));
        // A language listed as prose is checked whole, even one that has a comment syntax.
        let custom = vec!["rust".to_string()];
        assert_eq!(
            texts_with("fn main() {}\n// hi there", "rust", &custom),
            vec!["fn main() {}\n// hi there"]
        );
        // And markdown not listed as prose is code without a comment syntax: nothing.
        assert!(paragraphs("# Hello there", "markdown", &custom).is_empty());
    }

    fn texts_with(doc: &str, lang: &str, langs: &[String]) -> Vec<String> {
        let ps = paragraphs(doc, lang, langs);
        check_map(doc, &ps);
        ps.into_iter().map(|p| p.text).collect()
    }

    #[test]
    fn every_listed_language_has_comment_syntax() {
        let listed = [
            "rust",
            "c",
            "cpp",
            "objective-c",
            "csharp",
            "java",
            "kotlin",
            "scala",
            "swift",
            "go",
            "javascript",
            "typescript",
            "javascriptreact",
            "typescriptreact",
            "php",
            "python",
            "shellscript",
            "sh",
            "bash",
            "zsh",
            "perl",
            "ruby",
            "lua",
            "sql",
            "haskell",
            "ocaml",
            "elixir",
            "r",
            "yaml",
            "toml",
            "dockerfile",
            "makefile",
            "html",
            "xml",
            "css",
            "scss",
            "vim",
            "zig",
            "dart",
        ];
        for lang in listed {
            assert!(syntax_of(lang).is_some(), "{lang}");
        }
        // Each id appears once in the table.
        let mut seen = std::collections::HashSet::new();
        for s in SYNTAXES {
            for n in s.names {
                assert!(seen.insert(n.to_ascii_lowercase()), "{n} listed twice");
            }
        }
        // Something in each language's comment syntax is found.
        let samples = [
            ("java", "int x; // Java note here\n"),
            ("scala", "val x = 'c' // Scala note here\n"),
            ("swift", "let s = \"x\" // Swift note here\n"),
            ("dart", "var s = r'x'; // Dart note here\n"),
            ("xml", "<a x=\"1\"/><!-- XML note here -->\n"),
            ("css", "a { color: red; } /* CSS note here */\n"),
            ("objective-c", "@interface X // ObjC note here\n"),
            (
                "javascriptreact",
                "const a = <p>Don't</p>; // JSX note here\n",
            ),
            ("zsh", "echo $HOME # Zsh note here\n"),
        ];
        for (lang, doc) in samples {
            let got = texts(doc, lang);
            assert_eq!(got.len(), 1, "{lang}: {got:?}");
            assert!(got[0].ends_with("note here"), "{lang}: {got:?}");
        }
    }

    #[test]
    fn string_literals_do_not_start_comments() {
        assert_eq!(
            texts("let s = \"http://x\"; // real comment", "rust"),
            vec!["real comment"]
        );
        assert_eq!(
            texts("s = 'a # b' # real comment", "python"),
            vec!["real comment"]
        );
        assert_eq!(
            texts("const s = \"/* no */\"; /* real comment */", "javascript"),
            vec!["real comment"]
        );
        assert_eq!(
            texts("let s = \"esc \\\" // still\"; // real comment", "rust"),
            vec!["real comment"]
        );
        // An unterminated string ends at the line end (where the language has no multi-line strings).
        assert_eq!(
            texts("x = \"open\n# real comment", "python"),
            vec!["real comment"]
        );
    }

    #[test]
    fn machine_text_is_skipped() {
        let doc = "// eslint-disable-next-line no-console\n// @ts-expect-error\n// https://example.com/issue/1\n// TODO(ann): tidy this up.\n// prettier-ignore\n";
        assert_eq!(texts(doc, "typescript"), vec!["TODO(ann): tidy this up."]);
        let doc = "# SPDX-License-Identifier: Apache-2.0\n# pylint: disable=foo\n# vim: set ft=python:\nx = 1\n";
        assert!(texts(doc, "python").is_empty());
        let doc = "// let x = compute(y);\n// if a == b {\n// }\n// Explain why.\n";
        assert_eq!(texts(doc, "rust"), vec!["Explain why."]);
        // Prose that mentions code stays.
        let doc = "// Call `foo()` with x = 1 before using it.\n";
        assert_eq!(texts(doc, "rust"), vec!["Call with x = 1 before using it."]);
    }

    #[test]
    fn machine_prefixes_are_sorted_by_first_byte_and_lowercase() {
        assert!(MACHINE_PREFIXES
            .windows(2)
            .all(|w| w[0].as_bytes()[0] <= w[1].as_bytes()[0]));
        assert!(MACHINE_PREFIXES
            .iter()
            .all(|p| *p == p.to_ascii_lowercase()));
    }

    #[test]
    fn comment_paragraphs_split_at_blank_comment_lines_and_code() {
        let doc = "// First para line one\n// line two.\n//\n// Second para.\nlet x = 1;\n// Third para.\n\n// Fourth para.\n";
        assert_eq!(
            texts(doc, "rust"),
            vec![
                "First para line one\nline two.",
                "Second para.",
                "Third para.",
                "Fourth para."
            ]
        );
        // Doc comments and plain comments do not join.
        assert_eq!(
            texts("/// Doc line.\n// Plain line.\n", "rust"),
            vec!["Doc line.", "Plain line."]
        );
        // Trailing comments on consecutive lines stay apart.
        assert_eq!(
            texts("a(); // one\nb(); // two\n", "rust"),
            vec!["one", "two"]
        );
    }

    #[test]
    fn to_document_maps_glue_and_ends() {
        // "ab" + glue " " + "cd": "ab" from doc 10, "cd" from doc 20.
        let p = Paragraph {
            text: "ab cd".into(),
            pieces: vec![(0, 10, 2), (3, 20, 2)],
        };
        assert_eq!(p.to_document(0), 10);
        assert_eq!(p.to_document(1), 11);
        assert_eq!(p.to_document(2), 20, "glue maps to the next piece");
        assert_eq!(p.to_document(3), 20);
        assert_eq!(p.to_document(4), 21);
        assert_eq!(
            p.to_document(5),
            22,
            "the very end maps to the end of the last piece"
        );
        assert_eq!(p.to_document(99), 22);
        assert_eq!(p.range_to_document(0, 2), (10, 12));
        assert_eq!(p.range_to_document(0, 3), (10, 12), "end in glue maps back");
        assert_eq!(
            p.range_to_document(2, 5),
            (20, 22),
            "start in glue maps forward"
        );
        assert_eq!(
            p.range_to_document(2, 3),
            (20, 20),
            "a range of glue only is empty"
        );
        assert_eq!(p.range_to_document(0, 5), (10, 22));
        assert_eq!(p.range_to_document(4, 4), (21, 21));
        assert_eq!(p.range_to_document(4, 1), (21, 21));
    }

    #[test]
    fn offsets_inside_characters_snap_to_boundaries() {
        let doc = "// 日本 🚀 go\n";
        let ps = paras(doc, "rust");
        assert_eq!(ps.len(), 1);
        let p = &ps[0];
        assert_eq!(p.text, "日本 🚀 go");
        // An offset inside 本 (bytes 3..6 of the text) maps to 本's start.
        let d = p.to_document(4);
        assert!(doc.is_char_boundary(d));
        assert_eq!(&doc[d..d + 3], "本");
        // A token that covers half of the rocket covers all of it.
        let rocket = p.text.find('🚀').unwrap();
        let (s, e) = p.range_to_document(rocket + 1, rocket + 2);
        assert_eq!(&doc[s..e], "🚀");
        let (s, e) = p.range_to_document(rocket, rocket + 2);
        assert_eq!(&doc[s..e], "🚀");
    }

    #[test]
    fn words_fused_with_removed_markup_map_over_it() {
        // "**important**." reads "important." in the text; its range covers the markers.
        let doc = "This is **important**. See [docs](x).";
        let ps = paragraphs(doc, "markdown", &prose_langs());
        assert_eq!(ps.len(), 1);
        let p = &ps[0];
        assert_eq!(p.text, "This is important. See docs.");
        let w = p.text.find("important.").unwrap();
        let (s, e) = p.range_to_document(w, w + "important.".len());
        assert_eq!(&doc[s..e], "important**.");
        let w = p.text.find("docs.").unwrap();
        let (s, e) = p.range_to_document(w, w + "docs".len());
        assert_eq!(&doc[s..e], "docs");
    }

    #[test]
    fn removed_code_leaves_no_empty_brackets_or_stray_separators() {
        let doc = "A library (`src/lib.rs`) and (`a`, `b`, `c`) here, hub (cache, `A`, `B`).";
        let ps = paragraphs(doc, "markdown", &prose_langs());
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].text, "A library and here, hub (cache).");
        for &(t, d, l) in &ps[0].pieces {
            assert_eq!(&ps[0].text[t..t + l], &doc[d..d + l]);
        }
        // Brackets with text in them stay.
        let plain = |doc: &str, lang: &str| -> Vec<String> {
            paragraphs(doc, lang, &prose_langs())
                .into_iter()
                .map(|p| p.text)
                .collect()
        };
        assert_eq!(
            plain("Call it (see `x`) now.", "markdown"),
            vec!["Call it (see) now."]
        );
        assert_eq!(
            texts("// Returns (`None`) when empty.", "rust"),
            vec!["Returns when empty."]
        );
    }

    #[test]
    fn paragraph_offsets_point_into_the_document() {
        let doc = "# Title\n\nSome text here.\n";
        let ps = paras(doc, "markdown");
        assert_eq!(ps[0].pieces, vec![(0, 2, 5)]);
        assert_eq!(ps[1].pieces, vec![(0, 9, 15)]);
        let doc = "fn a() {}\n  // one\n  // two\n";
        let ps = paras(doc, "rust");
        assert_eq!(ps[0].text, "one\ntwo");
        // "one", the source newline after it, then "two".
        assert_eq!(ps[0].pieces, vec![(0, 15, 4), (4, 24, 3)]);
    }

    #[test]
    fn large_inputs_stay_linear() {
        // A single 200 KB line of prose.
        let line = "word ".repeat(40_000);
        let ps = paragraphs(&line, "markdown", &prose_langs());
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].text.len(), line.len() - 1);
        let ps = paragraphs(&line, "plaintext", &prose_langs());
        assert_eq!(ps[0].text.len(), line.len() - 1);
        let ps = paragraphs(&line, "latex", &prose_langs());
        assert_eq!(ps[0].text.len(), line.len() - 1);
        let comment = format!("// {line}");
        let ps = paragraphs(&comment, "rust", &prose_langs());
        assert_eq!(ps[0].text.len(), line.len() - 1);

        // 10,000 paragraphs.
        let mut md = String::new();
        let mut rs = String::new();
        for k in 0..10_000 {
            md.push_str(&format!("Paragraph number {k} is here.\n\n"));
            rs.push_str(&format!("// Comment number {k}.\nfn f{k}() {{}}\n"));
        }
        assert_eq!(paragraphs(&md, "markdown", &prose_langs()).len(), 10_000);
        assert_eq!(paragraphs(&rs, "rust", &prose_langs()).len(), 10_000);

        // Pathological single lines: unmatched markup everywhere.
        let started = std::time::Instant::now();
        for (pattern, lang) in [
            ("[a", "markdown"),
            ("`a", "markdown"),
            ("``a", "markdown"),
            ("<a ", "markdown"),
            ("*a_", "markdown"),
            ("[a](", "markdown"),
            ("&a", "markdown"),
            ("\\a[", "latex"),
            ("$a", "latex"),
            ("{a", "latex"),
            ("`a", "restructuredtext"),
            (":a", "restructuredtext"),
            ("|a", "restructuredtext"),
            ("'\"", "rust"),
            ("/*", "rust"),
            ("\"\"\"", "python"),
            ("<<A ", "shellscript"),
            ("[=", "lua"),
            ("R\"", "cpp"),
        ] {
            let doc = pattern.repeat(200_000 / pattern.len());
            let ps = paragraphs(&doc, lang, &prose_langs());
            assert!(
                ps.len() <= 1,
                "{pattern:?} in {lang}: {} paragraphs",
                ps.len()
            );
            // Removed markup fuses the letters around it into long words here, so only the
            // pieces are checked.
            for p in &ps {
                for &(t, d, l) in &p.pieces {
                    assert_eq!(&p.text[t..t + l], &doc[d..d + l], "{pattern:?} in {lang}");
                }
            }
        }
        eprintln!("pathological inputs: {:?}", started.elapsed());
    }

    const SNIPPETS: &[&str] = &[
        "`",
        "```",
        "~~~",
        "*",
        "_",
        "[",
        "]",
        "(",
        ")",
        "<",
        ">",
        "!",
        "#",
        "//",
        "/*",
        "*/",
        "\"",
        "'",
        "\\",
        "\n",
        "\r\n",
        "\n\n",
        " ",
        "    ",
        "\t",
        "a",
        "word",
        "Ünïcode",
        "日本語",
        "🚀",
        "👩‍💻",
        "$",
        "$$",
        "%",
        "{",
        "}",
        "--",
        "--[[",
        "]]",
        "\"\"\"",
        "'''",
        "=begin",
        "=end",
        ":",
        "::",
        "|",
        ".. ",
        "&amp;",
        "&#x1F600;",
        "http://x.y/z",
        "www.a.b",
        "~",
        "-",
        "1.",
        ">>>",
        "@param",
        "<!--",
        "-->",
        "<b>",
        "</p>",
        "\\emph{",
        "\\begin{",
        "\\section",
        "\\[",
        "\\]",
        "---",
        "+++",
        "r#\"",
        "\"#",
        "<<EOF",
        "EOF",
        "{-",
        "-}",
        "(*",
        "*)",
        "#!",
        "=",
        ";",
        "@\"",
        "R\"x(",
        ")x\"",
        "[^1]",
        "![",
        "](",
        ":ref:",
        "é",
    ];

    const LANGS: &[&str] = &[
        "markdown",
        "plaintext",
        "latex",
        "restructuredtext",
        "gitcommit",
        "rust",
        "python",
        "cpp",
        "csharp",
        "javascript",
        "go",
        "shellscript",
        "ruby",
        "lua",
        "sql",
        "haskell",
        "ocaml",
        "yaml",
        "html",
        "php",
        "zig",
        "vim",
        "dockerfile",
        "kotlin",
        "elixir",
        "perl",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// On any input, in any language: no panic, pieces copy the document, text is
        /// trimmed and has a letter, and every text offset maps to a character boundary.
        #[test]
        fn any_input_maps_consistently(
            parts in proptest::collection::vec(0..SNIPPETS.len(), 0..60),
            lang in 0..LANGS.len(),
        ) {
            let doc: String = parts.iter().map(|&k| SNIPPETS[k]).collect();
            let ps = paragraphs(&doc, LANGS[lang], &prose_langs());
            let mut last_doc = 0;
            for p in &ps {
                proptest::prop_assert!(!p.text.is_empty());
                proptest::prop_assert_eq!(p.text.trim(), p.text.as_str());
                proptest::prop_assert!(p.text.chars().any(char::is_alphabetic));
                let mut prev = 0;
                for &(t, d, l) in &p.pieces {
                    proptest::prop_assert!(t >= prev && l > 0);
                    proptest::prop_assert_eq!(&p.text[t..t + l], &doc[d..d + l]);
                    prev = t + l;
                }
                // Paragraphs come in document order.
                let first = p.pieces[0].1;
                proptest::prop_assert!(first >= last_doc);
                last_doc = first;
                for off in 0..=p.text.len() {
                    let d = p.to_document(off);
                    proptest::prop_assert!(doc.is_char_boundary(d));
                    let (s, e) = p.range_to_document(off, (off + 3).min(p.text.len()));
                    proptest::prop_assert!(s <= e && doc.is_char_boundary(s) && doc.is_char_boundary(e));
                }
            }
        }
    }
}
