//! Text buffers: a rope per open document, incremental edits, and every conversion between
//! `(line, character)` positions in a negotiated encoding and byte offsets.
//!
//! Line ends are exactly LSP's: `\n`, `\r\n` and `\r` (ropey's `cr_lines`, without its Unicode
//! line breaks). Positions past the end of a line clamp to the line's end; lines past the end of
//! the document clamp to the document's end; a position inside a character (the middle of a
//! surrogate pair in UTF-16, of a multi-byte sequence in UTF-8) snaps to that character's start.

use ropey::Rope;

use crate::diagnostics::prose::TextEdit;

/// Edits kept for the diagnostics' incremental parse at most; past this they are dropped and
/// the next pass parses the document anew.
const MAX_PENDING_EDITS: usize = 4096;

/// The unit of `character` in a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PositionEncoding {
    Utf8,
    #[default]
    Utf16,
    Utf32,
}

impl PositionEncoding {
    fn units(self, c: char) -> usize {
        match self {
            PositionEncoding::Utf8 => c.len_utf8(),
            PositionEncoding::Utf16 => c.len_utf16(),
            PositionEncoding::Utf32 => 1,
        }
    }
}

/// A position as the protocol states it: zero-based line and character in some encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub character: u32,
}

impl Pos {
    pub fn new(line: u32, character: u32) -> Self {
        Self { line, character }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the range ends ({end:?}) before it starts ({start:?})")]
    Reversed { start: Pos, end: Pos },
}

/// An open document.
#[derive(Debug, Clone)]
pub struct Document {
    rope: Rope,
    pub version: i32,
    pub language_id: String,
    /// The edits since [`Document::take_edits`] last ran, and the version they start from;
    /// `None` when they are not known (a new document, a whole-text replacement).
    edits: Option<(i32, Vec<TextEdit>)>,
}

impl Document {
    pub fn new(text: &str, version: i32, language_id: &str) -> Self {
        Self {
            rope: Rope::from_str(text),
            version,
            language_id: language_id.to_string(),
            edits: None,
        }
    }

    /// The edits since the last call and the version they start from (`None`: not known),
    /// for the diagnostics' incremental parse; the next edits start from this version.
    pub fn take_edits(&mut self) -> Option<(i32, Vec<TextEdit>)> {
        let taken = self.edits.replace((self.version, Vec::new()));
        taken.filter(|(_, e)| e.len() <= MAX_PENDING_EDITS)
    }

    /// (row, byte column) of a byte offset, as tree-sitter counts them.
    fn point(&self, byte: usize) -> (usize, usize) {
        let row = self.rope.byte_to_line(byte);
        (row, byte - self.rope.line_to_byte(row))
    }

    /// A cheap snapshot of the text.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    pub fn text(&self) -> String {
        self.rope.to_string()
    }

    pub fn len_bytes(&self) -> usize {
        self.rope.len_bytes()
    }

    /// The byte offset of `pos`, clamped into the document.
    pub fn offset(&self, pos: Pos, enc: PositionEncoding) -> usize {
        offset_of(&self.rope, pos, enc)
    }

    /// The position of byte offset `offset` (clamped to the document, snapped to a character).
    pub fn position(&self, offset: usize, enc: PositionEncoding) -> Pos {
        position_of(&self.rope, offset, enc)
    }

    /// Replaces the text between two positions (the whole document when `range` is `None`).
    pub fn apply_change(
        &mut self,
        range: Option<(Pos, Pos)>,
        text: &str,
        enc: PositionEncoding,
    ) -> Result<(), EditError> {
        let Some((start, end)) = range else {
            self.rope = Rope::from_str(text);
            self.edits = None;
            return Ok(());
        };
        if end < start {
            return Err(EditError::Reversed { start, end });
        }
        let (start_byte, old_end) = (self.offset(start, enc), self.offset(end, enc));
        let mut edit = TextEdit {
            start: start_byte,
            old_end,
            new_end: start_byte + text.len(),
            start_point: self.point(start_byte),
            old_end_point: self.point(old_end),
            ..TextEdit::default()
        };
        let a = self.rope.byte_to_char(start_byte);
        let b = self.rope.byte_to_char(old_end);
        self.rope.remove(a..b);
        self.rope.insert(a, text);
        edit.new_end_point = self.point(edit.new_end);
        if let Some((_, edits)) = &mut self.edits {
            if edits.len() <= MAX_PENDING_EDITS {
                edits.push(edit);
            }
        }
        Ok(())
    }
}

/// The byte offset of `pos` in `rope` (see the module's clamping rules).
pub fn offset_of(rope: &Rope, pos: Pos, enc: PositionEncoding) -> usize {
    let line = pos.line as usize;
    if line >= rope.len_lines() {
        return rope.len_bytes();
    }
    let line_start = rope.line_to_byte(line);
    let mut offset = line_start;
    let mut units = 0usize;
    let want = pos.character as usize;
    for c in rope.line(line).chars() {
        if c == '\n' || c == '\r' {
            break;
        }
        let u = enc.units(c);
        if units + u > want {
            break;
        }
        units += u;
        offset += c.len_utf8();
    }
    offset
}

/// The position of byte `offset` in `rope` (see the module's clamping rules).
pub fn position_of(rope: &Rope, offset: usize, enc: PositionEncoding) -> Pos {
    let offset = offset.min(rope.len_bytes());
    // Snap into a character boundary.
    let char_idx = rope.byte_to_char(offset);
    let line = rope.char_to_line(char_idx);
    let line_start = rope.line_to_char(line);
    let character: usize = rope
        .slice(line_start..char_idx)
        .chars()
        .map(|c| enc.units(c))
        .sum();
    Pos::new(line as u32, character as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PositionEncoding::*;

    fn off(text: &str, line: u32, ch: u32, enc: PositionEncoding) -> usize {
        offset_of(&Rope::from_str(text), Pos::new(line, ch), enc)
    }

    #[test]
    fn offsets_from_positions() {
        // (text, line, character, encoding, byte offset)
        let table: &[(&str, u32, u32, PositionEncoding, usize)] = &[
            ("", 0, 0, Utf16, 0),
            ("", 3, 7, Utf16, 0),
            ("\n\n", 1, 0, Utf16, 1),
            ("\n\n", 2, 0, Utf16, 2),
            ("\n\n", 2, 5, Utf16, 2),
            ("\n\n", 9, 0, Utf16, 2),
            ("abc", 0, 2, Utf16, 2),
            ("abc", 0, 99, Utf16, 3),
            ("abc", 0, u32::MAX, Utf16, 3),
            ("abc\ndef", 0, 10, Utf16, 3),
            ("abc\r\ndef", 0, 10, Utf16, 3),
            ("abc\r\ndef", 1, 1, Utf16, 6),
            ("abc\rdef", 1, 2, Utf16, 6),
            ("abc\rdef", u32::MAX, 0, Utf16, 7),
            // An astral character: 4 bytes, 2 UTF-16 units, 1 UTF-32 unit.
            ("a😀b", 0, 1, Utf16, 1),
            ("a😀b", 0, 3, Utf16, 5),
            ("a😀b", 0, 2, Utf16, 1), // inside the surrogate pair: snaps to the start
            ("a😀b", 0, 2, Utf32, 5),
            ("a😀b", 0, 5, Utf8, 5),
            ("a😀b", 0, 3, Utf8, 1), // inside the UTF-8 sequence
            // CJK: 3 bytes, 1 UTF-16 unit.
            ("日本語", 0, 2, Utf16, 6),
            ("日本語", 0, 2, Utf32, 6),
            ("日本語", 0, 6, Utf8, 6),
            // A combining mark is its own code point.
            ("e\u{301}x", 0, 2, Utf16, 3),
            ("e\u{301}x", 0, 1, Utf8, 1),
            // Unicode line separators are not LSP line ends.
            ("a\u{2028}b\nc", 1, 0, Utf16, 6),
            ("a\u{85}b\nc", 0, 3, Utf16, 4),
        ];
        for &(text, line, ch, enc, want) in table {
            assert_eq!(
                off(text, line, ch, enc),
                want,
                "{text:?} {line}:{ch} {enc:?}"
            );
        }
    }

    #[test]
    fn positions_from_offsets() {
        let table: &[(&str, usize, PositionEncoding, Pos)] = &[
            ("", 0, Utf16, Pos::new(0, 0)),
            ("", 10, Utf16, Pos::new(0, 0)),
            ("ab\ncd", 4, Utf16, Pos::new(1, 1)),
            ("ab\r\ncd", 4, Utf16, Pos::new(1, 0)),
            ("ab\rcd", 3, Utf16, Pos::new(1, 0)),
            ("a😀b", 5, Utf16, Pos::new(0, 3)),
            ("a😀b", 5, Utf8, Pos::new(0, 5)),
            ("a😀b", 5, Utf32, Pos::new(0, 2)),
            ("a😀b", 3, Utf16, Pos::new(0, 1)), // inside the emoji: its start
            ("日本語\nx", 9, Utf16, Pos::new(0, 3)),
            ("x\n", 2, Utf16, Pos::new(1, 0)),
        ];
        for &(text, offset, enc, want) in table {
            assert_eq!(
                position_of(&Rope::from_str(text), offset, enc),
                want,
                "{text:?} @{offset} {enc:?}"
            );
        }
    }

    #[test]
    fn incremental_edits() {
        let mut d = Document::new("hello world\n", 1, "plaintext");
        d.apply_change(Some((Pos::new(0, 6), Pos::new(0, 11))), "there", Utf16)
            .unwrap();
        assert_eq!(d.text(), "hello there\n");
        d.apply_change(Some((Pos::new(1, 0), Pos::new(1, 0))), "a😀", Utf16)
            .unwrap();
        d.apply_change(Some((Pos::new(1, 3), Pos::new(1, 3))), "b", Utf16)
            .unwrap();
        assert_eq!(d.text(), "hello there\na😀b");
        // Delete the emoji by its two UTF-16 units.
        d.apply_change(Some((Pos::new(1, 1), Pos::new(1, 3))), "", Utf16)
            .unwrap();
        assert_eq!(d.text(), "hello there\nab");
        // Past the end appends.
        d.apply_change(Some((Pos::new(7, 0), Pos::new(9, 9))), "!", Utf16)
            .unwrap();
        assert_eq!(d.text(), "hello there\nab!");
        let err = d.apply_change(Some((Pos::new(0, 5), Pos::new(0, 1))), "x", Utf16);
        assert!(err.is_err());
        assert_eq!(
            d.text(),
            "hello there\nab!",
            "a refused edit changes nothing"
        );
        d.apply_change(None, "new", Utf16).unwrap();
        assert_eq!(d.text(), "new");
    }
}
