//! The table scanner: comment syntax of about 40 languages, for those without a tree-sitter
//! grammar here.

use super::Group;
use crate::diagnostics::prose::text::*;

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
pub(crate) struct Syntax {
    /// Language ids (VS Code ids first, then common editor aliases); matched case-insensitively.
    pub names: &'static [&'static str],
    line: &'static [&'static str],
    block: &'static [(&'static str, &'static str)],
    flags: u32,
}

const C_BLOCK: &[(&str, &str)] = &[("/*", "*/")];

/// The comment syntax of the common languages: the one table.
pub(crate) static SYNTAXES: &[Syntax] = &[
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

pub(crate) fn syntax_of(language_id: &str) -> Option<&'static Syntax> {
    SYNTAXES
        .iter()
        .find(|s| s.names.iter().any(|n| n.eq_ignore_ascii_case(language_id)))
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
pub(crate) fn comment_groups(doc: &str, syn: &Syntax) -> Vec<Group> {
    comment_groups_in(doc, syn, 0, doc.len())
}

/// The comments that start in `doc[from..to]`: `from` is where scanning starts (code on its
/// line before it counts as code).
pub(crate) fn comment_groups_in(doc: &str, syn: &Syntax, from: usize, to: usize) -> Vec<Group> {
    let bytes = doc.as_bytes();
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
    let line_start = rfind_byte(bytes, 0, from, b'\n').map_or(0, |p| p + 1);
    let mut sc = Scanner {
        doc,
        bytes,
        syn,
        f: syn.flags,
        starters,
        groups: Vec::new(),
        last: None,
        i: from,
        line_start,
        line_code: bytes[line_start..from].iter().any(|&c| !is_ws(c)),
        heredoc: None,
    };
    while sc.i < to {
        sc.step();
    }
    sc.groups
}

struct Scanner<'a> {
    doc: &'a str,
    bytes: &'a [u8],
    syn: &'a Syntax,
    f: u32,
    /// Bytes that may start a comment or a string.
    starters: [bool; 256],
    groups: Vec<Group>,
    last: Option<LastComment>,
    i: usize,
    line_start: usize,
    /// Code before `i` on this line.
    line_code: bool,
    /// A here-document's word: its body starts at the next line.
    heredoc: Option<(usize, usize)>,
}

impl Scanner<'_> {
    fn step(&mut self) {
        let (bytes, i) = (self.bytes, self.i);
        let c = bytes[i];
        if c == b'\n' {
            self.i += 1;
            self.line_start = self.i;
            self.line_code = false;
            if let Some((ws, we)) = self.heredoc.take() {
                self.i = skip_heredoc(bytes, self.i, &bytes[ws..we]);
                self.line_start = self.i;
            }
            return;
        }
        if matches!(c, b' ' | b'\t' | b'\r') {
            self.i += 1;
            return;
        }
        if !self.starters[c as usize] {
            self.line_code = true;
            self.i += 1;
            return;
        }
        if let Some(end) =
            block_comment_at(self.doc, i, self.line_start, self.syn, &mut self.groups)
        {
            if let Some(p) = rfind_byte(bytes, i, end, b'\n') {
                self.line_start = p + 1;
                self.line_code = false;
            }
            self.i = end;
            self.last = None;
            return;
        }
        let (f, line_code) = (self.f, self.line_code);
        let leader = self.syn.line.iter().find(|l| {
            starts_at(bytes, i, l.as_bytes()) && line_comment_ok(bytes, i, l, f, line_code)
        });
        if let Some(&l) = leader {
            self.line_comment(l);
        } else if !self.string_or_heredoc(c) {
            self.line_code = true;
            self.i += 1;
        }
    }

    /// A string literal (a docstring is a comment) or a here-document at `i`.
    fn string_or_heredoc(&mut self, c: u8) -> bool {
        let (bytes, i, f) = (self.bytes, self.i, self.f);
        if let Some(s) = string_at(bytes, i, self.line_start, f) {
            if let Some((cs, ce)) = s.doc {
                emit_block(self.doc, cs, ce, "\"\"\"", "\"\"\"", &mut self.groups);
                self.last = None;
            }
            let end = s.end.max(i + 1).min(bytes.len());
            if let Some(p) = rfind_byte(bytes, i, end, b'\n') {
                self.line_start = p + 1;
            }
            self.line_code = true;
            self.i = end;
            return true;
        }
        if c == b'<' && f & (HEREDOC | HEREDOC_UPPER | HEREDOC_PHP) != 0 {
            if let Some((ws, we, end)) = heredoc_at(bytes, i, f) {
                self.heredoc = Some((ws, we));
                self.line_code = true;
                self.i = end;
                return true;
            }
        }
        false
    }

    /// The end of a line comment's leader (repeated leader bytes, `//!`, `//<`, R's `#'`,
    /// Haddock's `-- |`): where its text starts, and where the leader proper ends.
    fn leader_end(&self, l: &str, ce: usize) -> (usize, usize) {
        let (bytes, i) = (self.bytes, self.i);
        let lb = l.as_bytes();
        let mut p = i + lb.len();
        while p < ce && bytes[p] == lb[lb.len() - 1] {
            p += 1;
        }
        if l == "//" && p < ce && matches!(bytes[p], b'!' | b'<') {
            p += 1;
        }
        let leader_end = p;
        if l == "#" && p < ce && bytes[p] == b'\'' {
            p += 1;
        }
        if self.f & HASKELL_DASH != 0 {
            let q = skip_blank(bytes, p, ce);
            if q < ce && matches!(bytes[q], b'|' | b'^') && (q + 1 == ce || is_ws(bytes[q + 1])) {
                p = q + 1;
            }
        }
        (p, leader_end)
    }

    fn line_comment(&mut self, l: &str) {
        let (bytes, i, n) = (self.bytes, self.i, self.bytes.len());
        let eol = eol(bytes, i);
        let ce = if eol > i && bytes[eol - 1] == b'\r' {
            eol - 1
        } else {
            eol
        };
        let (p, leader_end) = self.leader_end(l, ce);
        if l == "#"
            && i + 1 < ce
            && bytes[i + 1] == b'!'
            && (i == 0 || bytes.get(i + 2) == Some(&b'/'))
        {
            // A shebang.
            self.i = eol;
            self.last = None;
            return;
        }
        let line = Line {
            start: p,
            end: ce.max(p),
            nl: (eol < n).then_some(eol),
        };
        let full = !self.line_code;
        let col = i - self.line_start;
        let groups = &mut self.groups;
        let join = self.last.as_ref().is_some_and(|lc| {
            lc.group + 1 == groups.len()
                && lc.nl.map(|x| x + 1) == Some(self.line_start)
                && bytes[lc.leader.0..lc.leader.1] == bytes[i..leader_end]
                && full
                && (lc.full || lc.col == col)
        });
        match groups.last_mut() {
            Some(g) if join => g.lines.push(line),
            _ => groups.push(Group {
                lines: vec![line],
                block: false,
            }),
        }
        self.last = Some(LastComment {
            group: groups.len() - 1,
            leader: (i, leader_end),
            nl: line.nl,
            full,
            col,
        });
        self.i = eol;
    }
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
pub(crate) fn emit_block(
    doc: &str,
    cs: usize,
    ce: usize,
    open: &str,
    close: &str,
    groups: &mut Vec<Group>,
) {
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
        b'r' | b'b' | b'c' if f & RUST_RAW != 0 && word_start => rust_raw(bytes, i),
        b'R' | b'u' | b'U' | b'L' if f & CPP_RAW != 0 && word_start => cpp_raw(bytes, i),
        b'@' | b'$' if f & VERBATIM != 0 => verbatim(bytes, i),
        b'"' | b'\'' => quoted(bytes, i, line_start, f),
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

/// Rust's r"..", r#".."#, br"..", cr"..".
fn rust_raw(bytes: &[u8], i: usize) -> Option<Str> {
    let n = bytes.len();
    let mut p = i;
    if bytes[i] != b'r' {
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

/// C++'s R"delim(...)delim" (with u8, u, U, L prefixes).
fn cpp_raw(bytes: &[u8], i: usize) -> Option<Str> {
    let n = bytes.len();
    let mut p = i;
    if starts_at(bytes, p, b"u8") {
        p += 2;
    } else if bytes[i] != b'R' {
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

/// C#'s verbatim strings @"..", $@"..", @$"..": "" is a quote.
fn verbatim(bytes: &[u8], i: usize) -> Option<Str> {
    let n = bytes.len();
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

/// A quoted string, a triple-quoted one (maybe a docstring), or a character literal.
fn quoted(bytes: &[u8], i: usize, line_start: usize, f: u32) -> Option<Str> {
    let c = bytes[i];
    let triple = if c == b'"' {
        f & TRIPLE != 0
    } else {
        f & TRIPLE_SQ != 0
    };
    if triple && bytes.get(i + 1) == Some(&c) && bytes.get(i + 2) == Some(&c) {
        return Some(triple_quoted(bytes, i, line_start, f));
    }
    if c == b'"' {
        return (f & DQ != 0)
            .then(|| scan_quoted(bytes, i + 1, b'"', true, f & MULTILINE != 0))
            .and_then(Str::plain);
    }
    if f & (SQ | SQ_RAW) != 0 {
        if f & QUOTE_BOUNDARY != 0 && i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
            return None;
        }
        let end = scan_quoted(bytes, i + 1, b'\'', f & SQ != 0, f & MULTILINE != 0);
        return Str::plain(end);
    }
    if f & CHAR != 0 {
        return char_literal(bytes, i).and_then(Str::plain);
    }
    None
}

fn triple_quoted(bytes: &[u8], i: usize, line_start: usize, f: u32) -> Str {
    let n = bytes.len();
    let c = bytes[i];
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
    Str {
        end,
        doc: doc.then_some((cs, ce)),
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
