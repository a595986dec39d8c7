//! Where the comments of the common languages are, from a tree-sitter tree: comments (and
//! Python docstrings) found by the parser, so that strings, regular expression literals
//! (`s.replace(/\/*$/, "")`, `/"/`) and here-documents never open a comment; and the
//! identifiers the file defines or uses. Collection can be limited to a byte range, so that
//! after an edit only the part of the tree that changed is walked again.

use tree_sitter::{Language, Node, Tree};

/// A tree-sitter grammar and the language ids it serves.
pub struct Grammar {
    pub name: &'static str,
    ids: &'static [&'static str],
    language: fn() -> Language,
    docstrings: bool,
}

macro_rules! grammar {
    ($name:expr, $ids:expr, $lang:expr) => {
        grammar!($name, $ids, $lang, false)
    };
    ($name:expr, $ids:expr, $lang:expr, $doc:expr) => {
        Grammar {
            name: $name,
            ids: $ids,
            language: || $lang.into(),
            docstrings: $doc,
        }
    };
}

static GRAMMARS: &[Grammar] = &[
    grammar!("rust", &["rust", "rs"], tree_sitter_rust::LANGUAGE),
    grammar!("c", &["c"], tree_sitter_c::LANGUAGE),
    grammar!(
        "cpp",
        &["cpp", "c++", "cuda-cpp"],
        tree_sitter_cpp::LANGUAGE
    ),
    grammar!("go", &["go", "golang"], tree_sitter_go::LANGUAGE),
    grammar!("java", &["java"], tree_sitter_java::LANGUAGE),
    grammar!(
        "javascript",
        &["javascript", "javascriptreact", "js", "jsx", "mjs", "cjs"],
        tree_sitter_javascript::LANGUAGE
    ),
    grammar!(
        "typescript",
        &["typescript", "ts"],
        tree_sitter_typescript::LANGUAGE_TYPESCRIPT
    ),
    grammar!(
        "tsx",
        &["typescriptreact", "tsx"],
        tree_sitter_typescript::LANGUAGE_TSX
    ),
    grammar!(
        "python",
        &["python", "py", "python3"],
        tree_sitter_python::LANGUAGE,
        true
    ),
    grammar!(
        "bash",
        &["shellscript", "sh", "bash", "zsh", "shell"],
        tree_sitter_bash::LANGUAGE
    ),
    grammar!("lua", &["lua"], tree_sitter_lua::LANGUAGE),
    grammar!("ruby", &["ruby", "rb"], tree_sitter_ruby::LANGUAGE),
    grammar!(
        "csharp",
        &["csharp", "cs", "c#", "c-sharp"],
        tree_sitter_c_sharp::LANGUAGE
    ),
    grammar!("php", &["php"], tree_sitter_php::LANGUAGE_PHP),
];

/// The grammar for a language id (case-insensitive), if there is one.
pub fn grammar_of(language_id: &str) -> Option<&'static Grammar> {
    GRAMMARS
        .iter()
        .find(|g| g.ids.iter().any(|n| n.eq_ignore_ascii_case(language_id)))
}

/// The language ids that have a grammar.
pub fn grammar_ids() -> impl Iterator<Item = &'static str> {
    GRAMMARS.iter().flat_map(|g| g.ids.iter().copied())
}

impl Grammar {
    pub fn language(&self) -> Language {
        (self.language)()
    }
}

/// A comment (or a docstring's content) in document byte offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    pub docstring: bool,
}

/// An identifier and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    pub start: usize,
    pub end: usize,
    pub name: Box<str>,
}

/// What [`collect`] found.
#[derive(Default)]
pub(crate) struct Found {
    pub spans: Vec<Span>,
    pub idents: Vec<Ident>,
}

/// Whether `start..end` touches `lo..=hi` (sharing an end counts: an identifier grown at
/// its end is found again).
pub(crate) fn touches(start: usize, end: usize, lo: usize, hi: usize) -> bool {
    start <= hi && end >= lo
}

/// The comments and identifiers of `tree` that touch `lo..=hi`, in document order.
pub(crate) fn collect(g: &Grammar, tree: &Tree, src: &str, lo: usize, hi: usize) -> Found {
    let mut found = Found::default();
    let mut cursor = tree.walk();
    loop {
        let node = cursor.node();
        let (start, end) = (node.start_byte(), node.end_byte());
        let mut descend = false;
        if touches(start, end, lo, hi) {
            descend = visit(g, node, src, &mut found);
        }
        if descend && cursor.goto_first_child() {
            // Skip the children that end before the range.
            while cursor.node().end_byte() < lo && cursor.goto_next_sibling() {}
            continue;
        }
        loop {
            if cursor.node().start_byte() <= hi && cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return found;
            }
        }
    }
}

/// Records `node` if it is a comment, a docstring or an identifier; whether to look inside.
fn visit(g: &Grammar, node: Node, src: &str, found: &mut Found) -> bool {
    let kind = node.kind();
    if kind.contains("comment") {
        found.spans.push(Span {
            start: node.start_byte(),
            end: node.end_byte(),
            docstring: false,
        });
        return false;
    }
    if g.docstrings && kind == "string" {
        if let Some((start, end)) = docstring(node) {
            found.spans.push(Span {
                start,
                end,
                docstring: true,
            });
        }
        return false;
    }
    if node.child_count() > 0 {
        return true;
    }
    if node.is_named() && is_identifier(kind) {
        if let Some(name) = src.get(node.start_byte()..node.end_byte()) {
            if name.len() <= 64 && name.chars().any(char::is_alphabetic) {
                found.idents.push(Ident {
                    start: node.start_byte(),
                    end: node.end_byte(),
                    name: name.into(),
                });
            }
        }
    }
    false
}

/// Node kinds that name things: `identifier`, `type_identifier`, `field_identifier`,
/// `property_identifier`, Ruby's `constant`, PHP's `name`, shell's `variable_name`.
fn is_identifier(kind: &str) -> bool {
    kind.ends_with("identifier") || matches!(kind, "constant" | "name" | "variable_name")
}

/// The content of a Python docstring: a string that is the first statement of a module, a
/// class or a function.
fn docstring(string: Node) -> Option<(usize, usize)> {
    let stmt = string
        .parent()
        .filter(|p| p.kind() == "expression_statement")?;
    if stmt.named_child_count() != 1 {
        return None;
    }
    let body = stmt.parent()?;
    let mut cursor = body.walk();
    let first = body
        .named_children(&mut cursor)
        .find(|c| c.kind() != "comment")?;
    if first.id() != stmt.id() {
        return None;
    }
    let ok = match body.kind() {
        "module" => true,
        "block" => body
            .parent()
            .is_some_and(|d| matches!(d.kind(), "function_definition" | "class_definition")),
        _ => false,
    };
    if !ok {
        return None;
    }
    let n = string.child_count();
    let open = string.child(0).filter(|c| c.kind() == "string_start")?;
    let close = string
        .child(n.checked_sub(1)?)
        .filter(|c| c.kind() == "string_end")?;
    Some((open.end_byte(), close.start_byte().max(open.end_byte())))
}
