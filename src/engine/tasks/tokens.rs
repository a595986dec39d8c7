//! Text to token ids and back, with byte offsets, over a `tokenizer.json`.

use std::path::Path;

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
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self { inner })
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
