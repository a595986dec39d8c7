//! Comment text that is not prose: machine lines, commented-out code, doc tags.

use crate::diagnostics::prose::text::*;

// ---------------------------------------------------------------------------------------------

/// Prefixes (lowercase) of comment lines that talk to tools, not to people. Sorted by their
/// first byte (a test checks it), so a lookup only compares the prefixes of one bucket.
pub(crate) const MACHINE_PREFIXES: &[&str] = &[
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
pub(crate) fn is_machine_line(line: &str) -> bool {
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
pub(crate) fn looks_like_code(line: &str) -> bool {
    let l = line.trim().as_bytes();
    if l.is_empty() || l.len() > 1000 {
        return false;
    }
    let Some(sh) = Shape::of(l) else {
        return false;
    };
    let ends = matches!(sh.last, b';' | b'{' | b'}') || sh.first == b'}';
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
    let (letters, symbols, spaced, call) = (sh.letters, sh.symbols, sh.spaced, sh.call);
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
    if !spaced && (call || operators || (symbols > 0 && l.contains(&b'=')) || sh.last == b';') {
        return true;
    }
    if keyword && (call || operators) {
        return true;
    }
    operators && dense
}

/// What [`looks_like_code`] counts in a line, code spans left out.
struct Shape {
    letters: usize,
    symbols: usize,
    /// Whether the line has a space or tab.
    spaced: bool,
    /// A name followed by `(`, and a `)` somewhere.
    call: bool,
    first: u8,
    last: u8,
}

impl Shape {
    /// `None` when nothing is left outside code spans.
    fn of(l: &[u8]) -> Option<Shape> {
        let mut sh = Shape {
            letters: 0,
            symbols: 0,
            spaced: false,
            call: false,
            first: 0,
            last: 0,
        };
        let (mut close_paren, mut in_code, mut prev) = (false, false, b' ');
        for &c in l {
            if c == b'`' {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            if sh.first == 0 {
                sh.first = c;
            }
            sh.last = c;
            match c {
                b'a'..=b'z' | b'A'..=b'Z' | 0xc0..=0xff => sh.letters += 1,
                b' ' | b'\t' => sh.spaced = true,
                b'(' => {
                    sh.symbols += 1;
                    sh.call |= prev.is_ascii_alphanumeric() || prev == b'_';
                }
                b')' => {
                    sh.symbols += 1;
                    close_paren = true;
                }
                b'{' | b'}' | b'[' | b']' | b';' | b'=' | b'<' | b'>' | b'&' | b'|' | b'+'
                | b'*' | b'/' | b'\\' | b'$' | b'@' | b'^' => sh.symbols += 1,
                _ => {}
            }
            prev = c;
        }
        sh.call &= close_paren;
        (sh.first != 0).then_some(sh)
    }
}

pub(crate) enum Tag {
    /// A tag with prose: the text starts here.
    Text(usize),
    /// A tag line with no prose.
    Skip,
    /// An example follows (code) until the next tag.
    Example,
}

/// A JSDoc/Javadoc/Doxygen tag line at `t` (`@param {T} name text`, `\brief text`).
pub(crate) fn doc_tag(doc: &str, t: usize, e: usize) -> Tag {
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
pub(crate) fn field_marker(bytes: &[u8], p: usize, e: usize) -> Option<usize> {
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
