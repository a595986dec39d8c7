//! The extraction table and its invariants, over every format.

use super::comments::machine::MACHINE_PREFIXES;
use super::comments::scanner::{syntax_of, SYNTAXES};
use super::text::floor_char;
use super::*;

pub(super) fn prose_langs() -> Vec<String> {
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

/// The word at `text[start..end]` read back from the document through the map: each of its
/// bytes from a piece (the same bytes in the document) or a replacement (the text that stands
/// for the document bytes it replaced), with their document ranges in text order. Glue inside
/// a word reads as nothing, so it shows up as a mismatch.
fn read_back(doc: &str, p: &Paragraph, start: usize, end: usize) -> Vec<(usize, usize, String)> {
    let mut parts = Vec::new();
    for &(t, d, l) in &p.pieces {
        let (a, b) = (t.max(start), (t + l).min(end));
        if a < b {
            parts.push((
                a,
                d + (a - t),
                d + (b - t),
                doc[d + (a - t)..d + (b - t)].to_string(),
            ));
        }
    }
    for &(t, l, rs, re) in &p.replaced {
        if t >= start && t + l <= end {
            parts.push((t, rs, re, p.text[t..t + l].to_string()));
        }
    }
    parts.sort();
    parts
        .into_iter()
        .map(|(_, ds, de, s)| (ds, de, s))
        .collect()
}

/// Whether the word at `text[start..end]` maps back exactly: its document range starts at its
/// first byte and ends after its last, its bytes come in document order, and read back they
/// are the word. Removed markup may lie between them (`foo**bar**` reads "foobar", `a\*b`
/// reads "a*b"): the range covers the whole word as the document writes it.
fn word_maps(doc: &str, p: &Paragraph, start: usize, end: usize) -> bool {
    let (ds, de) = p.range_to_document(start, end);
    let parts = read_back(doc, p, start, end);
    let text: String = parts.iter().map(|x| x.2.as_str()).collect();
    let ordered = parts.windows(2).all(|w| w[0].1 <= w[1].0);
    text == p.text[start..end]
        && ordered
        && parts.first().is_some_and(|x| x.0 == ds)
        && parts.last().is_some_and(|x| x.1 == de)
}

/// Every piece copies the document (each scored byte maps back to the same byte), every
/// replacement stands for document bytes, and every word maps back to the same word.
pub(super) fn map_errors(doc: &str, ps: &[Paragraph]) -> Vec<String> {
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
        for &(t, l, rs, re) in &p.replaced {
            let in_piece = p
                .pieces
                .iter()
                .any(|&(pt, _, pl)| t < pt + pl && pt < t + l);
            if rs >= re || doc.get(rs..re).is_none() || p.text.get(t..t + l).is_none() || in_piece {
                errors.push(format!(
                    "bad replacement {t},{l},{rs},{re} of {}",
                    short(&p.text)
                ));
            }
        }
        let mut pos = 0;
        for word in p.text.split_whitespace() {
            let start = pos + p.text[pos..].find(word).unwrap();
            let end = start + word.len();
            let (ds, de) = p.range_to_document(start, end);
            if !word_maps(doc, p, start, end) {
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
        want: &["first item", "second item", "nested one", "quoted text\ncontinues here", "task box", "done box"],
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
        want: &["Some claim and a link here & there.", "The footnote text."],
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
        doc: "#!/bin/bash\n# Install the tool.\necho \"# not a comment\" 'it''s' $# ${#arr[@]} dont\ncat <<EOF\n# inside heredoc\nEOF\nls # list files\n",
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
        want: &["first part\ncontinues", "a /* b */ c", "after nest"],
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
        ..Paragraph::default()
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
        let t = std::time::Instant::now();
        let ps = paragraphs(&doc, lang, &prose_langs());
        // Each takes milliseconds; before the parser's reads were bounded, Lua's `[=` took
        // minutes. The bound is loose so that a shared machine cannot fail it.
        let took = t.elapsed();
        eprintln!("{pattern:?} {lang}: {took:?}");
        assert!(took.as_secs() < 10, "{pattern:?} in {lang} took {took:?}");
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
