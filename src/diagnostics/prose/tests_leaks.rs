//! Regression cases for the leaks of the hand-written markdown and comment scanners, the
//! comments of every tree-sitter language, and bounded work on hostile input.

use super::tests::{map_errors, prose_langs};
use super::*;

fn texts(doc: &str, lang: &str) -> Vec<String> {
    let ps = paragraphs(doc, lang, &prose_langs());
    let errors = map_errors(doc, &ps);
    assert!(errors.is_empty(), "{lang} {doc:?}:\n{}", errors.join("\n"));
    ps.into_iter().map(|p| p.text).collect()
}

/// (what, language, document, the exact paragraphs).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// Every leak the issue lists, each a false flag before.
const LEAKS: &[Case] = &[
    (
        "a code span wrapped onto a second line",
        "markdown",
        "Call the `very long\nfunction name` when ready.",
        &["Call the when ready."],
    ),
    (
        "a link whose text wraps",
        "markdown",
        "Read [the whole\nmanual](https://example.com) first.",
        &["Read the whole\nmanual first."],
    ),
    (
        "unmatched emphasis markers are text",
        "markdown",
        "The glob `*.rs` matches; so does a*b here.",
        &["The glob matches; so does a*b here."],
    ),
    (
        "entities are decoded",
        "markdown",
        "A caf&eacute; at AT&amp;T.",
        &["A café at AT&T."],
    ),
    (
        "numeric entities",
        "markdown",
        "Na&#xEF;ve r&#233;sum&#233; text.",
        &["Naïve résumé text."],
    ),
    (
        "inline and display math",
        "markdown",
        "Energy $E = mc^2$ holds.\n\n$$\n\\int_0^1 x\\,dx\n$$\n\nAfter math.",
        &["Energy holds.", "After math."],
    ),
    (
        "a regex literal does not open a block comment",
        "javascript",
        "s = s.replace(/\\/*$/, \"\");\nlet x = 1; // a real comment\nconst y = \"*/\";\n",
        &["a real comment"],
    ),
    (
        "a regex with a quote does not open a string",
        "javascript",
        "const re = /\"/; // the trailing comment\n",
        &["the trailing comment"],
    ),
    (
        "a regex in TypeScript",
        "typescript",
        "const r: RegExp = /\\/*x/g; // typed comment here\n",
        &["typed comment here"],
    ),
];

/// Markup cases with the exact text expected.
const MARKUP: &[Case] = &[
    (
        "footnotes",
        "markdown",
        "Text with a note.[^1]\n\n[^1]: The note itself.",
        &["Text with a note.", "The note itself."],
    ),
    (
        "task lists",
        "markdown",
        "- [ ] open task\n- [x] done task",
        &["open task", "done task"],
    ),
    (
        "GFM table",
        "markdown",
        "| Name | Role |\n|---|---|\n| Ann | lead `dev` |",
        &["Name", "Role", "Ann", "lead"],
    ),
    (
        "YAML front matter",
        "markdown",
        "---\ntitle: Not prose\n---\nBody text.",
        &["Body text."],
    ),
    (
        "TOML front matter",
        "markdown",
        "+++\ntitle = \"x\"\n+++\nBody text.",
        &["Body text."],
    ),
    (
        "HTML skipped",
        "markdown",
        "<div class=\"x\">\nhidden block\n</div>\n\nSeen <span>inline</span> text.",
        &["Seen inline text."],
    ),
    (
        "unterminated fence",
        "markdown",
        "Before.\n\n```\ncode forever\nstill code",
        &["Before."],
    ),
    (
        "rustdoc is markdown",
        "rust",
        "/// Returns the `len` of a [`Vec`] for\n/// the caller.\nfn f() {}\n",
        &["Returns the of a for\nthe caller."],
    ),
    (
        "JSDoc text and tags",
        "javascript",
        "/**\n * Adds two *numbers* together.\n * @param {number} a the first one\n */\nfunction add(a, b) {}\n",
        &["Adds two numbers together.", "the first one"],
    ),
    (
        "Python docstring is markdown",
        "python",
        "def f():\n    \"\"\"Compute the `value` of things.\n\n    More text here.\n    \"\"\"\n    return 1\n",
        &["Compute the of things.", "More text here."],
    ),
    (
        "LaTeX",
        "latex",
        "Some \\emph{text} with $x$ math.\n",
        &["Some text with math."],
    ),
    (
        "reStructuredText",
        "restructuredtext",
        "Use ``code`` and :func:`name` here.\n",
        &["Use and here."],
    ),
    (
        "markdown backslash escapes",
        "markdown",
        "Not \\*emphasis\\* and a\\_b here.",
        &["Not *emphasis* and a_b here."],
    ),
    (
        "intraword emphasis",
        "markdown",
        "Some foo**bar**baz word.",
        &["Some foobarbaz word."],
    ),
    (
        "reStructuredText escapes",
        "restructuredtext",
        "An \\*escaped\\* star.\n",
        &["An *escaped* star."],
    ),
    (
        "LaTeX escapes",
        "latex",
        "AT\\&T costs 5\\% more.\n",
        &["AT&T costs 5% more."],
    ),
    (
        "commit message",
        "gitcommit",
        "Fix the parser\n\nIt read past the end.\n# Please enter the commit message\nSigned-off-by: A <a@b.c>\n",
        &["Fix the parser", "It read past the end."],
    ),
];

/// One comment per tree-sitter language, with a string that looks like a comment.
const COMMENTS: &[Case] = &[
    (
        "rust",
        "rust",
        "let s = \"// no\"; // Rust comment here\n/* block one */\n",
        &["Rust comment here", "block one"],
    ),
    (
        "c",
        "c",
        "char *s = \"/* no */\"; /* C comment here */\n",
        &["C comment here"],
    ),
    (
        "cpp",
        "cpp",
        "auto s = R\"(// no)\"; // C++ comment here\n",
        &["C++ comment here"],
    ),
    (
        "go",
        "go",
        "s := `// no` // Go comment here\n",
        &["Go comment here"],
    ),
    (
        "java",
        "java",
        "String s = \"/* no\"; // Java comment here\n",
        &["Java comment here"],
    ),
    (
        "javascript",
        "javascript",
        "const s = `// no ${x}`; // JS comment here\n",
        &["JS comment here"],
    ),
    (
        "typescript",
        "typescript",
        "let s: string = '/* no'; // TS comment here\n",
        &["TS comment here"],
    ),
    (
        "python",
        "python",
        "s = \"# no\"  # Python comment here\n",
        &["Python comment here"],
    ),
    (
        "shell",
        "shellscript",
        "echo \"# no\" # Shell comment here\ncat <<EOF\n# not a comment\nEOF\n",
        &["Shell comment here"],
    ),
    (
        "lua",
        "lua",
        "local s = \"-- no\" -- Lua comment here\n--[[ long one ]]\n",
        &["Lua comment here", "long one"],
    ),
    (
        "ruby",
        "ruby",
        "s = \"# no\" # Ruby comment here\n",
        &["Ruby comment here"],
    ),
    (
        "csharp",
        "csharp",
        "var s = @\"// no\"; // C# comment here\n",
        &["C# comment here"],
    ),
    (
        "php",
        "php",
        "<?php\n$s = \"// no\"; // PHP comment here\n# hash one\n",
        &["PHP comment here", "hash one"],
    ),
];

fn check(cases: &[Case]) {
    let mut failures = Vec::new();
    for &(what, lang, doc, want) in cases {
        let ps = paragraphs(doc, lang, &prose_langs());
        for e in map_errors(doc, &ps) {
            failures.push(format!("{what}: {e}"));
        }
        let got: Vec<String> = ps.into_iter().map(|p| p.text).collect();
        if got != want {
            failures.push(format!("{what} ({lang}):\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn leaks_of_the_old_scanner_are_gone() {
    check(LEAKS);
}

#[test]
fn markup_cases_give_exact_text() {
    check(MARKUP);
}

#[test]
fn comments_of_every_tree_sitter_language() {
    check(COMMENTS);
    for (_, lang, _, _) in COMMENTS {
        assert!(comments::treesitter::grammar_of(lang).is_some(), "{lang}");
    }
}

#[test]
fn entity_words_map_to_the_whole_entity() {
    let doc = "A caf&eacute; here.";
    let ps = paragraphs(doc, "markdown", &prose_langs());
    let p = &ps[0];
    let start = p.text.find("café").unwrap();
    let (ds, de) = p.range_to_document(start, start + "café".len());
    assert_eq!(&doc[ds..de], "caf&eacute;");
}

#[test]
fn escaped_words_map_to_the_whole_escape() {
    for (lang, doc, word, source) in [
        ("markdown", "Read \\*args now.", "*args", "\\*args"),
        ("markdown", "See AT\\&T here.", "AT&T", "AT\\&T"),
        (
            "restructuredtext",
            "Read \\*args now.\n",
            "*args",
            "\\*args",
        ),
        ("latex", "See AT\\&T here.\n", "AT&T", "AT\\&T"),
        (
            "markdown",
            "Some foo**bar**baz word.",
            "foobarbaz",
            "foo**bar**baz",
        ),
    ] {
        let ps = paragraphs(doc, lang, &prose_langs());
        let p = &ps[0];
        let start = p
            .text
            .find(word)
            .unwrap_or_else(|| panic!("{lang}: {:?}", p.text));
        let (ds, de) = p.range_to_document(start, start + word.len());
        assert_eq!(&doc[ds..de], source, "{lang} {doc:?}");
    }
}

#[test]
fn identifiers_of_the_file_are_known_words() {
    let doc = "fn frobnicate(widget_count: usize) {}\n// Calls frobnicate with the widget_count.\n";
    let ps = paragraphs(doc, "rust", &prose_langs());
    assert_eq!(ps.len(), 1);
    assert!(ps[0].is_known("frobnicate"));
    assert!(ps[0].is_known("widget_count"));
    assert!(!ps[0].is_known("Calls"));
    // Prose documents have none.
    let ps = paragraphs("frobnicate is a word.", "markdown", &prose_langs());
    assert!(!ps[0].is_known("frobnicate"));
}

/// Work is bounded by the input's size: the parser's events (the markdown work) grow at most
/// linearly, and the result is still right.
#[test]
fn hostile_inputs_take_bounded_work() {
    let nested = format!("{}deep text", "> ".repeat(5_000));
    let brackets = format!("{}x{}", "[".repeat(50_000), "]".repeat(50_000));
    let emphasis = "*a **b ".repeat(20_000);
    let mut table = String::from("| a | b |\n|---|---|\n");
    while table.len() < 1_000_000 {
        table.push_str("| cell text | more `code` |\n");
    }
    let fences = "```\n".repeat(10_000) + "text";
    let binary: String = (0..200_000u32)
        .map(|i| char::from_u32((i * 7919) % 0x2FF).unwrap_or('\u{fffd}'))
        .collect();
    for (what, doc) in [
        ("nested quotes", &nested),
        ("brackets", &brackets),
        ("emphasis", &emphasis),
        ("1 MB table", &table),
        ("unterminated fences", &fences),
        ("binary-looking", &binary),
    ] {
        let events = markdown::event_count(doc, markdown::Mode::Document);
        assert!(
            events <= 4 * doc.len() + 16,
            "{what}: {events} events for {} bytes",
            doc.len()
        );
        let ps = paragraphs(doc, "markdown", &prose_langs());
        let errors = map_errors(doc, &ps);
        assert!(
            errors.is_empty(),
            "{what}: {}",
            errors[..errors.len().min(5)].join("\n")
        );
    }
    assert!(texts(&nested, "markdown").iter().any(|t| t == "deep text"));
    let cells = texts(&table, "markdown");
    assert_eq!(
        cells.iter().filter(|c| *c == "cell text").count(),
        (table.lines().count() - 2)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any mix of markup and text: no panic, and the offset map holds, in every format.
    #[test]
    fn random_markup_keeps_the_offset_map(parts in proptest::collection::vec(
        proptest::sample::select(vec![
            "`", "``", "*", "_", "[", "](", ")", "<b>", "</b>", "&amp;", "&#x41;", "$", "$$",
            "\n", "\n\n", "# ", "> ", "- ", "| ", "---", "```", "\\", "word", "é", "//", "/*",
            "*/", "\"", "'", "#", "--", "%", "{", "}", ".. ", "::",
        ]), 0..60)) {
        let doc: String = parts.concat();
        for lang in ["markdown", "latex", "restructuredtext", "gitcommit", "rust", "javascript", "python", "lua"] {
            let ps = paragraphs(&doc, lang, &prose_langs());
            let errors = map_errors(&doc, &ps);
            proptest::prop_assert!(errors.is_empty(), "{} {:?}: {:?}", lang, doc, errors);
        }
    }
}
