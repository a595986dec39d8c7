//! The prose of one open document, kept between passes. For a language with a tree-sitter
//! grammar the tree is kept and edited ([`TextEdit`] → `Tree::edit`, then a reparse with the
//! old tree), the comments and identifiers of the parts that changed are collected again, and
//! a comment whose text did not change is not extracted again (its paragraphs are cached by
//! text). Other languages are extracted whole each time.

use std::collections::HashMap;
use std::sync::Arc;

use std::ops::ControlFlow;

use tree_sitter::{InputEdit, ParseOptions, ParseState, Parser, Point, Tree};

use super::comments::scanner::{self, Syntax};
use super::comments::treesitter::{self, touches, Grammar, Ident, Span};
use super::comments::{group_paragraphs, Group};
use super::text::{is_ws, rfind_byte};
use super::{is_prose, prose_document, KnownWords, Paragraph};

/// One edit of a document in byte offsets (of the text before it for `start` and
/// `old_end`, after it for `new_end`), with (row, byte column) positions for tree-sitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextEdit {
    pub start: usize,
    pub old_end: usize,
    pub new_end: usize,
    pub start_point: (usize, usize),
    pub old_end_point: (usize, usize),
    pub new_end_point: (usize, usize),
}

impl TextEdit {
    fn input_edit(&self) -> InputEdit {
        let p = |(row, column): (usize, usize)| Point { row, column };
        InputEdit {
            start_byte: self.start,
            old_end_byte: self.old_end,
            new_end_byte: self.new_end,
            start_position: p(self.start_point),
            old_end_position: p(self.old_end_point),
            new_end_position: p(self.new_end_point),
        }
    }

    fn delta(&self) -> isize {
        self.new_end as isize - self.old_end as isize
    }
}

enum Kind {
    Prose(String),
    Tree(&'static Grammar, &'static Syntax),
    Scanner(&'static Syntax),
    Nothing,
}

/// The prose of one document, with what can be kept for the next extraction.
pub struct DocumentProse {
    kind: Kind,
    state: Option<TreeState>,
    /// Comments extracted (not found in the cache) by the last [`DocumentProse::extract`].
    pub last_extracted: usize,
    /// Bytes of the document whose tree was walked by the last extraction.
    pub last_walked: usize,
}

struct TreeState {
    parser: Parser,
    tree: Tree,
    /// Comments and docstrings, sorted by start.
    spans: Vec<Span>,
    /// Identifiers, sorted by start.
    idents: Vec<Ident>,
    known: Arc<KnownWords>,
    /// The paragraphs of a comment's text (from its line's start), relative to that start.
    cache: HashMap<(usize, Box<str>), Vec<Paragraph>>,
}

impl DocumentProse {
    /// The extractor for a document in `language_id` (checked whole when it is one of
    /// `prose_languages`).
    pub fn new(language_id: &str, prose_languages: &[String]) -> Self {
        let kind = if is_prose(language_id, prose_languages) {
            Kind::Prose(language_id.to_string())
        } else {
            match (
                treesitter::grammar_of(language_id),
                scanner::syntax_of(language_id),
            ) {
                (Some(g), Some(s)) => Kind::Tree(g, s),
                (None, Some(s)) => Kind::Scanner(s),
                _ => Kind::Nothing,
            }
        };
        DocumentProse {
            kind,
            state: None,
            last_extracted: 0,
            last_walked: 0,
        }
    }

    /// Whether this extractor keeps a tree (edits are worth passing).
    pub fn is_incremental(&self) -> bool {
        matches!(self.kind, Kind::Tree(..))
    }

    /// The paragraphs of `text`. `edits` are the edits since the text of the last call, in
    /// order (`Some(&[])`: the text is the same); `None` when they are not known, and the
    /// document is parsed anew.
    pub fn extract(&mut self, text: &str, edits: Option<&[TextEdit]>) -> Vec<Paragraph> {
        self.last_extracted = 0;
        self.last_walked = 0;
        match self.kind {
            Kind::Prose(ref lang) => prose_document(text, lang),
            Kind::Scanner(syn) => scanned(syn, text),
            Kind::Tree(g, syn) => self.extract_tree(g, syn, text, edits),
            Kind::Nothing => Vec::new(),
        }
    }

    fn extract_tree(
        &mut self,
        g: &'static Grammar,
        syn: &'static Syntax,
        text: &str,
        edits: Option<&[TextEdit]>,
    ) -> Vec<Paragraph> {
        let state = match (self.state.take(), edits) {
            (Some(mut st), Some(edits)) => {
                self.last_walked = st.update(g, text, edits);
                if self.last_walked == usize::MAX {
                    return scanned(syn, text);
                }
                st
            }
            _ => match TreeState::parse(g, text) {
                Some(st) => {
                    self.last_walked = text.len();
                    st
                }
                // Over the parser's work budget (hostile input): the table scanner.
                None => return scanned(syn, text),
            },
        };
        let mut state = state;
        let (out, extracted) = state.paragraphs(syn, text);
        self.last_extracted = extracted;
        self.state = Some(state);
        out
    }
}

impl TreeState {
    fn parse(g: &Grammar, text: &str) -> Option<TreeState> {
        let mut parser = Parser::new();
        parser.set_language(&g.language()).ok()?;
        let tree = parse_bounded(&mut parser, text, None)?;
        let found = treesitter::collect(g, &tree, text, 0, text.len());
        let mut known = KnownWords::default();
        for id in &found.idents {
            known.add(&id.name);
        }
        Some(TreeState {
            parser,
            tree,
            spans: found.spans,
            idents: found.idents,
            known: Arc::new(known),
            cache: HashMap::new(),
        })
    }

    /// Applies `edits`, reparses with the edited tree, and collects again what touches the
    /// changed ranges. Returns the bytes walked.
    fn update(&mut self, g: &Grammar, text: &str, edits: &[TextEdit]) -> usize {
        let mut dirty: Vec<(usize, usize)> = Vec::new();
        for e in edits {
            self.tree.edit(&e.input_edit());
            self.apply_edit(e);
            shift_ranges(&mut dirty, e);
            dirty.push((e.start, e.new_end));
        }
        let Some(tree) = parse_bounded(&mut self.parser, text, Some(&self.tree)) else {
            return usize::MAX;
        };
        dirty.extend(
            self.tree
                .changed_ranges(&tree)
                .map(|r| (r.start_byte, r.end_byte)),
        );
        self.tree = tree;
        let dirty = merge(dirty);
        let mut walked = 0;
        for &(lo, hi) in &dirty {
            walked += hi - lo;
            self.recollect(g, text, lo, hi);
        }
        walked
    }

    /// Drops what the edit touched and moves what follows it.
    fn apply_edit(&mut self, e: &TextEdit) {
        let delta = e.delta();
        let (lo, hi) = (e.start, e.old_end);
        self.spans.retain(|s| !touches(s.start, s.end, lo, hi));
        for s in self.spans.iter_mut().filter(|s| s.start > hi) {
            s.start = s.start.wrapping_add_signed(delta);
            s.end = s.end.wrapping_add_signed(delta);
        }
        let known = Arc::make_mut(&mut self.known);
        self.idents.retain(|i| {
            let keep = !touches(i.start, i.end, lo, hi);
            if !keep {
                known.remove(&i.name);
            }
            keep
        });
        for i in self.idents.iter_mut().filter(|i| i.start > hi) {
            i.start = i.start.wrapping_add_signed(delta);
            i.end = i.end.wrapping_add_signed(delta);
        }
    }

    /// Collects the comments and identifiers touching `lo..=hi` again.
    fn recollect(&mut self, g: &Grammar, text: &str, lo: usize, hi: usize) {
        let found = treesitter::collect(g, &self.tree, text, lo, hi);
        let known = Arc::make_mut(&mut self.known);
        self.spans.retain(|s| !touches(s.start, s.end, lo, hi));
        self.idents.retain(|i| {
            let keep = !touches(i.start, i.end, lo, hi);
            if !keep {
                known.remove(&i.name);
            }
            keep
        });
        for id in &found.idents {
            known.add(&id.name);
        }
        let at = self.spans.partition_point(|s| s.start < lo);
        self.spans.splice(at..at, found.spans);
        let at = self.idents.partition_point(|i| i.start < lo);
        self.idents.splice(at..at, found.idents);
    }

    /// The paragraphs of every comment (cached by text), and how many were extracted.
    fn paragraphs(&mut self, syn: &Syntax, text: &str) -> (Vec<Paragraph>, usize) {
        let mut out = Vec::new();
        let mut cache = HashMap::with_capacity(self.cache.len());
        let mut extracted = 0;
        for (line_start, run, docstring) in runs(text, &self.spans) {
            let from = run.0 - line_start;
            let key = (
                from * 2 + usize::from(docstring),
                text[line_start..run.1].into(),
            );
            let ps = match self.cache.remove(&key) {
                Some(ps) => ps,
                None => {
                    extracted += 1;
                    run_paragraphs(syn, &key.1, from, docstring)
                }
            };
            for p in &ps {
                let mut p = p.clone();
                p.shift(line_start as isize);
                p.known = Some(self.known.clone());
                out.push(p);
            }
            cache.insert(key, ps);
        }
        self.cache = cache;
        (out, extracted)
    }
}

/// Parser work allowed per byte of text, in tree-sitter's progress calls (one per about 100
/// parse operations): ordinary code needs about a quarter of it (0.005 a byte); pathological
/// input (200 KB of unmatched quotes) would otherwise take seconds.
const PARSE_CALLS_PER_BYTE: f64 = 0.02;

/// The text is handed to the parser in chunks of this many bytes, so that reading is counted.
const READ_CHUNK: usize = 1024;

/// Chunks the parser may read, as a multiple of the chunks in the text. A grammar's external
/// scanner can read far ahead without a progress call between (Lua's, looking for the end of
/// a long bracket `[=[` that never comes, reads to the end of the document from each of
/// them): 200 KB of `[=` took minutes. Ordinary code reads each chunk about once.
const READS_PER_CHUNK: usize = 16;

/// Parses within a work budget proportional to the text's length, counted both in progress
/// calls and in bytes read; `None` past either. Past the read budget the parser is shown the
/// end of the text, so it finishes at once, and its tree is thrown away.
fn parse_bounded(parser: &mut Parser, text: &str, old: Option<&Tree>) -> Option<Tree> {
    let bytes = text.as_bytes();
    let budget = 500 + (text.len() as f64 * PARSE_CALLS_PER_BYTE) as usize;
    let mut calls = 0usize;
    let mut progress = |_: &ParseState| {
        calls += 1;
        if calls > budget {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let options = ParseOptions::new().progress_callback(&mut progress);
    let read_budget = 64 + READS_PER_CHUNK * text.len().div_ceil(READ_CHUNK);
    let mut reads = 0usize;
    let mut input = |i: usize, _: Point| {
        reads += 1;
        if reads > read_budget {
            return &[][..];
        }
        bytes.get(i..bytes.len().min(i + READ_CHUNK)).unwrap_or(&[])
    };
    let tree = parser.parse_with_options(&mut input, old, Some(options));
    let tree = tree.filter(|_| reads <= read_budget);
    if tree.is_none() {
        parser.reset();
    }
    tree
}

/// The paragraphs of every comment, from the table scanner.
fn scanned(syn: &Syntax, text: &str) -> Vec<Paragraph> {
    let mut out = Vec::new();
    for group in scanner::comment_groups(text, syn) {
        group_paragraphs(text, &group, &mut out);
    }
    out
}

/// The paragraphs of one run of comments `sub[from..]` (`sub` starts at a line start).
fn run_paragraphs(syn: &Syntax, sub: &str, from: usize, docstring: bool) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let groups = if docstring {
        let mut groups: Vec<Group> = Vec::new();
        scanner::emit_block(sub, from, sub.len(), "\"\"\"", "\"\"\"", &mut groups);
        groups
    } else {
        scanner::comment_groups_in(sub, syn, from, sub.len())
    };
    for group in &groups {
        group_paragraphs(sub, group, &mut out);
    }
    out
}

/// Comments next to each other (only whitespace and one line break between them) form one
/// run: (start of the first one's line, the run's range, whether it is a docstring).
fn runs(text: &str, spans: &[Span]) -> Vec<(usize, (usize, usize), bool)> {
    let bytes = text.as_bytes();
    let mut out: Vec<(usize, (usize, usize), bool)> = Vec::new();
    for s in spans {
        let (start, end) = (s.start.min(text.len()), s.end.min(text.len()));
        if let Some(last) = out.last_mut() {
            let gap = &bytes[last.1 .1.min(start)..start];
            let joins = !s.docstring
                && !last.2
                && gap.iter().all(|&c| is_ws(c))
                && gap.iter().filter(|&&c| c == b'\n').count() <= 1;
            if joins {
                last.1 .1 = end;
                continue;
            }
        }
        let line_start = rfind_byte(bytes, 0, start, b'\n').map_or(0, |p| p + 1);
        out.push((line_start, (start, end), s.docstring));
    }
    out
}

/// Moves recorded ranges over a later edit.
fn shift_ranges(ranges: &mut [(usize, usize)], e: &TextEdit) {
    for r in ranges.iter_mut() {
        if r.0 > e.old_end {
            r.0 = r.0.wrapping_add_signed(e.delta());
        } else if r.0 > e.start {
            r.0 = e.start;
        }
        if r.1 >= e.old_end {
            r.1 = r.1.wrapping_add_signed(e.delta()).max(r.0);
        } else if r.1 > e.start {
            r.1 = e.new_end;
        }
    }
}

/// Sorted, overlapping ranges merged.
fn merge(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}
