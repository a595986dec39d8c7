//! Protocol conversion at the edge: LSP positions and ranges to and from byte offsets, in the
//! negotiated encoding. Every conversion of the server goes through here and `document.rs`.

use tower_lsp_server::ls_types::{Position, PositionEncodingKind, Range};

use crate::document::{Document, Pos, PositionEncoding};

pub fn pos(p: Position) -> Pos {
    Pos::new(p.line, p.character)
}

pub fn position(p: Pos) -> Position {
    Position::new(p.line, p.character)
}

/// The byte offset of an LSP position (clamped into the document).
pub fn offset(doc: &Document, p: Position, enc: PositionEncoding) -> usize {
    doc.offset(pos(p), enc)
}

/// The LSP range of a byte range.
pub fn range(doc: &Document, start: usize, end: usize, enc: PositionEncoding) -> Range {
    Range::new(
        position(doc.position(start, enc)),
        position(doc.position(end, enc)),
    )
}

/// Picks the first encoding the client offers that quill speaks; UTF-16 when it offers none.
pub fn negotiate(offered: Option<&[PositionEncodingKind]>) -> PositionEncoding {
    offered
        .unwrap_or_default()
        .iter()
        .find_map(|k| match k.as_str() {
            "utf-8" => Some(PositionEncoding::Utf8),
            "utf-16" => Some(PositionEncoding::Utf16),
            "utf-32" => Some(PositionEncoding::Utf32),
            _ => None,
        })
        .unwrap_or(PositionEncoding::Utf16)
}

pub fn encoding_kind(enc: PositionEncoding) -> PositionEncodingKind {
    match enc {
        PositionEncoding::Utf8 => PositionEncodingKind::UTF8,
        PositionEncoding::Utf16 => PositionEncodingKind::UTF16,
        PositionEncoding::Utf32 => PositionEncodingKind::UTF32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_known_encoding() {
        let kinds = |k: &[&str]| {
            k.iter()
                .map(|s| PositionEncodingKind::from(s.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(negotiate(None), PositionEncoding::Utf16);
        assert_eq!(
            negotiate(Some(&kinds(&["utf-8", "utf-16"]))),
            PositionEncoding::Utf8
        );
        assert_eq!(
            negotiate(Some(&kinds(&["utf-32"]))),
            PositionEncoding::Utf32
        );
        assert_eq!(
            negotiate(Some(&kinds(&["latin-1"]))),
            PositionEncoding::Utf16
        );
    }
}
