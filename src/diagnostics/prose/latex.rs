//! LaTeX (hand-written: no maintained Rust parser gives offsets).

use super::builder::Builder;
use super::text::*;

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
pub(crate) fn latex_document(doc: &str, b: &mut Builder) {
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
        return control_symbol(bytes, j, end, b, memo);
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
        "begin" => begin_env(doc, k, end, b, memo),
        "end" => {
            b.flush();
            let q = skip_blank(bytes, k, end);
            if q < end && bytes[q] == b'{' {
                skip_brace(bytes, q, end)
            } else {
                k
            }
        }
        "verb" | "lstinline" => verbatim(bytes, k, end),
        "def" | "gdef" | "edef" | "xdef" => definition(bytes, k, end),
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

/// A control symbol (`\%`, `\[`, `\\`, `\,` ...) at `j` (after the backslash).
fn control_symbol(
    bytes: &[u8],
    j: usize,
    end: usize,
    b: &mut Builder,
    memo: &mut NextBracket,
) -> usize {
    let c = bytes[j];
    match c {
        b'%' | b'$' | b'&' | b'#' | b'_' | b'{' | b'}' => {
            // The character stands for its escape, backslash included.
            b.replace(char::from(c).encode_utf8(&mut [0; 4]), j - 1, j + 1);
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
    }
}

/// `\begin{env}` with its name's end at `k`: a skipped environment goes whole.
fn begin_env(doc: &str, k: usize, end: usize, b: &mut Builder, memo: &mut NextBracket) -> usize {
    let bytes = doc.as_bytes();
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
        "tabular" | "array" | "longtable" | "tabu" | "multicols" | "wrapfigure" | "wraptable" => 1,
        _ => 0,
    };
    skip_args(bytes, close, end, extra, memo)
}

/// `\verb|...|`, `\lstinline{...}`.
fn verbatim(bytes: &[u8], k: usize, end: usize) -> usize {
    if k >= end {
        return end;
    }
    if bytes[k] == b'{' {
        return skip_brace(bytes, k, end);
    }
    let delim = bytes[k];
    find_byte(bytes, k + 1, eol(bytes, k).min(end), delim).map_or(k + 1, |p| p + 1)
}

/// `\def\name{...}`.
fn definition(bytes: &[u8], k: usize, end: usize) -> usize {
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
