//! Plain text and git commit messages.

use super::builder::Builder;
use super::inline::{inline, Flavor};
use super::text::*;

/// Plain text: paragraphs at blank lines; bare URLs left out.
pub(crate) fn plain_document(doc: &str, b: &mut Builder) {
    let bytes = doc.as_bytes();
    for line in split_lines(doc, 0, doc.len()) {
        let t = skip_blank(bytes, line.start, line.end);
        let ce = trim_end(bytes, t, line.end);
        if t >= ce {
            b.flush();
            continue;
        }
        inline(doc, t, ce, Flavor::Plain, b);
        b.line_break(line.nl);
    }
    b.flush();
}

/// Trailer keys of commit messages (`Signed-off-by: ...`).
pub(crate) fn is_trailer(line: &str) -> bool {
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
pub(crate) fn gitcommit_document(doc: &str, b: &mut Builder) {
    let bytes = doc.as_bytes();
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
        inline(doc, t, ce, Flavor::Plain, b);
        b.line_break(line.nl);
    }
    b.flush();
}
