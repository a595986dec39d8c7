//! Text to token ids and back, with byte offsets, over a `tokenizer.json`.
//!
//! [`TextTokenizer::encode_cached`] tokenizes a text that changes a little between calls (the
//! text before a cursor, keystroke after keystroke) in pieces, and only the pieces it has not
//! seen in the last call: see [`ChunkCache`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokenizers::{ModelWrapper, PostProcessorWrapper, PreTokenizerWrapper};

/// Token ids of a text with the byte span of each token in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// `(start, end)` byte offsets into the encoded text, one per id.
    pub offsets: Vec<(usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// Whether a text may be encoded in pieces cut at [`is_cut`] positions (see
    /// [`chunkable`]).
    chunkable: bool,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let chunkable = chunkable(&inner);
        Ok(Self { inner, chunkable })
    }

    /// Encodes `text` as [`TextTokenizer::encode`] does, token for token and offset for
    /// offset, reusing the pieces of it that `cache` holds from the last call; the cache then
    /// holds this text's pieces. Tokenizers that cannot be cut (see [`chunkable`]) encode the
    /// whole text.
    pub fn encode_cached(&self, text: &str, cache: &mut ChunkCache) -> anyhow::Result<Encoded> {
        if !self.chunkable {
            return self.encode(text);
        }
        let mut out = Encoded::default();
        let mut used: HashMap<(bool, String), Arc<Encoded>> = HashMap::new();
        let mut start = 0;
        for end in cuts(text.as_bytes()).chain(std::iter::once(text.len())) {
            if end == start {
                continue;
            }
            let key = (start == 0, text[start..end].to_string());
            let piece = match used.get(&key).or_else(|| cache.pieces.get(&key)) {
                Some(p) => p.clone(),
                None => {
                    cache.encoded += 1;
                    Arc::new(self.encode_piece(&key.1, key.0)?)
                }
            };
            out.ids.extend_from_slice(&piece.ids);
            out.offsets
                .extend(piece.offsets.iter().map(|&(a, b)| (a + start, b + start)));
            used.insert(key, piece);
            start = end;
        }
        cache.pieces = used;
        Ok(out)
    }

    /// Encodes one piece of a text, with offsets into the piece as they are in the whole text:
    /// a piece that does not start the text is encoded behind one letter (so that offset rules
    /// for a text's first token do not apply to it), which is then dropped.
    fn encode_piece(&self, piece: &str, text_start: bool) -> anyhow::Result<Encoded> {
        if text_start {
            return self.encode(piece);
        }
        let mut enc = self.encode(&format!("{SENTINEL}{piece}"))?;
        let n = SENTINEL.len();
        if enc.offsets.first() != Some(&(0, n)) {
            // Not one token of its own: cannot happen with a byte-level pre-tokenizer, where a
            // letter followed by a space always is; encode the piece alone then.
            return self.encode(piece);
        }
        enc.ids.remove(0);
        enc.offsets.remove(0);
        for o in &mut enc.offsets {
            *o = (o.0.saturating_sub(n), o.1.saturating_sub(n));
        }
        Ok(enc)
    }

    /// Encodes `text` as it stands: no special tokens are added.
    pub fn encode(&self, text: &str) -> anyhow::Result<Encoded> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize the text: {e}"))?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    /// Decodes ids to text; bytes of a character cut at the end come out as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> anyhow::Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow::anyhow!("cannot decode tokens: {e}"))
    }

    /// The text of `ids`, minus any trailing tokens that end inside a UTF-8 character.
    /// Returns the text and how many ids it covers.
    pub fn decode_complete(&self, ids: &[u32]) -> anyhow::Result<(String, usize)> {
        // A character cut at the end decodes to U+FFFD; at most 3 tokens can hold its bytes.
        for cut in 0..=ids.len().min(3) {
            let n = ids.len() - cut;
            let text = self.decode(&ids[..n])?;
            if !text.ends_with('\u{FFFD}') {
                return Ok((text, n));
            }
        }
        // The model produced bytes that are no UTF-8 at all: keep them, as U+FFFD.
        Ok((self.decode(ids)?, ids.len()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// The letter put before a piece of text that does not start it (see `encode_piece`).
const SENTINEL: &str = "x";

/// The pieces of the last text [`TextTokenizer::encode_cached`] encoded, by their text (and
/// whether they start it). Each document's session holds one.
#[derive(Debug, Default)]
pub struct ChunkCache {
    pieces: HashMap<(bool, String), Arc<Encoded>>,
    /// Pieces encoded so far (not found in the cache), for tests.
    encoded: u64,
}

impl ChunkCache {
    /// How many pieces were encoded so far rather than taken from the cache.
    pub fn encoded(&self) -> u64 {
        self.encoded
    }
}

/// Whether cutting a text at [`is_cut`] positions and encoding the pieces gives the tokens of
/// the whole text. That holds for GPT-2's byte-level pre-tokenizer: its pattern
/// (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`) has no
/// look-behind, only lets a space start a match, and never lets a match run from a character
/// that is not a space into a space; so between a printable ASCII character and a space every
/// text is split, the matches before the split are found in the text before it alone, and
/// those after it in the text after it. Tokens are then found in each pre-token alone, which
/// holds for every model but BPE with dropout (random). Added tokens are matched before
/// pre-tokenization: none may contain a space or strip one around it. No normalizer (it could
/// change the text across the cut), and no space added in front of the text.
fn chunkable(t: &tokenizers::Tokenizer) -> bool {
    let byte_level = matches!(
        t.get_pre_tokenizer(),
        Some(PreTokenizerWrapper::ByteLevel(b)) if b.use_regex && !b.add_prefix_space
    );
    let post = matches!(
        t.get_post_processor(),
        None | Some(PostProcessorWrapper::ByteLevel(_))
    );
    let model = match t.get_model() {
        ModelWrapper::BPE(bpe) => bpe.dropout.is_none(),
        _ => true,
    };
    let added = t
        .get_added_tokens_decoder()
        .values()
        .all(|a| !a.lstrip && !a.rstrip && !a.content.chars().any(char::is_whitespace));
    byte_level && post && model && added && t.get_normalizer().is_none()
}

/// Whether a text may be cut before byte `i`: a space after a printable ASCII character.
fn is_cut(bytes: &[u8], i: usize) -> bool {
    i > 0 && i < bytes.len() && bytes[i] == b' ' && bytes[i - 1].is_ascii_graphic()
}

/// Where a text is cut into pieces: at [`is_cut`] positions after punctuation or after a word
/// whose hash says so (about one word in eight). The cuts depend only on the text around them,
/// so an edit changes the pieces around it and no others.
fn cuts(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut hash: u32 = 0x811c_9dc5;
    (1..bytes.len()).filter(move |&i| {
        let b = bytes[i - 1];
        if b == b' ' || b == b'\n' {
            hash = 0x811c_9dc5;
        } else {
            hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        is_cut(bytes, i) && (b".,;:!?)".contains(&b) || hash >> 29 == 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> TextTokenizer {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny/tokenizer.json");
        TextTokenizer::from_file(&path).unwrap()
    }

    /// A small deterministic generator (no dependency, same texts on every run).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Fragments that exercise the pre-tokenizer: words, runs of spaces and other white
    /// space, digits, punctuation, contractions, non-ASCII letters and spaces, the special
    /// token.
    const FRAGMENTS: &[&str] = &[
        "the",
        " river",
        " ran",
        "slowly",
        " ",
        "  ",
        "   ",
        "\n",
        "\n\n",
        "\t",
        " \n",
        "\r\n",
        ".",
        ",",
        "!",
        "?",
        ";",
        ")",
        "(",
        "\"",
        "'s",
        "'ll",
        "'",
        "42",
        " 7",
        "3.14",
        "-",
        "fn main() {",
        "}",
        "x_1",
        "café",
        " naïve",
        "日本語",
        " 🙂",
        "\u{a0}",
        "\u{2028}",
        "\u{3000}",
        " \u{a0}x",
        "<|endoftext|>",
        " <|endoftext|>",
        "--",
        "...",
        "a",
        " b",
    ];

    fn random_text(rng: &mut Rng, pieces: usize) -> String {
        (0..pieces)
            .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
            .collect()
    }

    fn char_boundary(text: &str, mut i: usize) -> usize {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    #[test]
    fn gpt2s_byte_level_tokenizer_can_be_cut() {
        assert!(fixture().chunkable);
    }

    #[test]
    fn pieces_give_the_tokens_and_offsets_of_the_whole_text_under_random_edits() {
        let tok = fixture();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..40 {
            let mut cache = ChunkCache::default();
            let n = 20 + rng.below(200);
            let mut text = random_text(&mut rng, n);
            for step in 0..30 {
                let got = tok.encode_cached(&text, &mut cache).unwrap();
                let want = tok.encode(&text).unwrap();
                assert_eq!(got, want, "round {round}, step {step}: {text:?}");
                // An edit: insert, delete or replace somewhere, mostly near the end.
                let at = if rng.below(3) == 0 {
                    rng.below(text.len() + 1)
                } else {
                    text.len().saturating_sub(rng.below(8))
                };
                let at = char_boundary(&text, at);
                let end = char_boundary(&text, (at + rng.below(6)).min(text.len()));
                let insert = match rng.below(4) {
                    0 => String::new(),
                    1 => FRAGMENTS[rng.below(FRAGMENTS.len())].to_string(),
                    _ => {
                        let n = 1 + rng.below(3);
                        random_text(&mut rng, n)
                    }
                };
                text.replace_range(at..end, &insert);
            }
        }
    }

    #[test]
    fn typing_at_the_end_encodes_the_last_pieces_only() {
        let tok = fixture();
        let paragraph = "The river ran slowly past the old mill, and the children watched the \
                         boats drift under the bridge while their parents talked. ";
        let mut text: String = (0..40).map(|i| format!("{i}. {paragraph}")).collect();
        let mut cache = ChunkCache::default();
        tok.encode_cached(&text, &mut cache).unwrap();
        let first = cache.encoded();
        assert!(first > 10, "the text is cut into pieces: {first}");
        for c in "and then the sailors".chars() {
            text.push(c);
            let before = cache.encoded();
            let got = tok.encode_cached(&text, &mut cache).unwrap();
            assert_eq!(got, tok.encode(&text).unwrap());
            assert!(
                cache.encoded() - before <= 2,
                "{} pieces encoded",
                cache.encoded() - before
            );
        }
    }

    #[test]
    fn cuts_are_only_between_a_printable_character_and_a_space() {
        let text = "a b  c\n d.e f, g";
        let cuts: Vec<usize> = (0..text.len())
            .filter(|&i| is_cut(text.as_bytes(), i))
            .collect();
        assert_eq!(cuts, vec![1, 3, 11, 14]);
    }
}
