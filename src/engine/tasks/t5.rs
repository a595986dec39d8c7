//! T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
//! Text-to-Text Transformer"): one model for many tasks, named by a prefix of the input:
//! `summarize: …`, `question: … context: …`, `translate English to German: …`.
//!
//! The network is in [`crate::engine::nets::t5net`] (v1.0 with ReLU and tied embeddings, v1.1 / flan-t5 with
//! gated GELU and a separate `lm_head`, as `config.json` says); this module adds the tokenizer,
//! greedy decoding with the decoder's KV cache, cancellation, and the chunking of inputs longer
//! than the 512 tokens T5 was trained on.

use candle_core::{Device, Tensor};

use super::sampling::{argmax, log_prob};
use super::tokens::TextTokenizer;
use crate::engine::nets::t5net::{T5Config, T5Net};
use crate::engine::{Cancel, EngineError};
use crate::models::{ModelError, ModelFiles, WeightFormat};

/// Input tokens T5 was trained on; longer inputs are chunked.
pub const MAX_INPUT_TOKENS: usize = 512;

/// A target language of `translate English to …`: the three T5 was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    German,
    French,
    Romanian,
}

impl Language {
    pub fn parse(name: &str) -> Result<Language, EngineError> {
        let name = name.trim();
        match name.to_lowercase().as_str() {
            "german" | "de" | "deutsch" => Ok(Language::German),
            "french" | "fr" | "français" | "francais" => Ok(Language::French),
            "romanian" | "ro" | "română" | "romana" => Ok(Language::Romanian),
            _ => Err(EngineError::Input(format!(
                "T5 translates English to German, French or Romanian; `{name}` is not one of them"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::German => "German",
            Language::French => "French",
            Language::Romanian => "Romanian",
        }
    }
}

/// What T5 is asked to do with a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    Summarize,
    Answer { question: String },
    Translate { to: Language },
}

impl Task {
    /// The model input for one chunk of text.
    pub fn prompt(&self, text: &str) -> String {
        match self {
            Task::Summarize => format!("summarize: {text}"),
            Task::Answer { question } => format!("question: {question} context: {text}"),
            Task::Translate { to } => format!("translate English to {}: {text}", to.name()),
        }
    }
}

/// One generated output.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub text: String,
    /// Mean log-probability of the generated tokens (`</s>` included when it was reached).
    pub mean_logprob: f32,
}

pub struct T5Model {
    model: T5Net,
    tokenizer: TextTokenizer,
    config: T5Config,
    device: Device,
}

impl T5Model {
    /// Loads a T5 checkpoint with its linear layers in `format` (activations in f32 on the
    /// CPU, as for GPT-2).
    pub fn load(
        files: &ModelFiles,
        device: &Device,
        format: WeightFormat,
    ) -> Result<Self, ModelError> {
        let bad_config = |reason: String| ModelError::BadConfig {
            path: files.config.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&files.config).map_err(|e| bad_config(e.to_string()))?;
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad_config(e.to_string()))?;
        let kind = raw["model_type"].as_str().unwrap_or("unknown");
        if !matches!(kind, "t5" | "mt5") {
            return Err(bad_config(format!(
                "the model is of type `{kind}`, not T5 (config.json needs \"model_type\": \"t5\")"
            )));
        }
        let config: T5Config = serde_json::from_value(raw)
            .map_err(|e| bad_config(format!("not a T5 config.json ({e})")))?;
        config.validate().map_err(bad_config)?;
        let tokenizer = crate::engine::load_tokenizer(files)?;
        let vb = crate::engine::load_weights(files, format.float_dtype(device), device)?;
        let model = T5Net::load(vb, &config, format)
            .map_err(|e| crate::engine::weights_mismatch(files, e))?;
        Ok(Self {
            model,
            tokenizer,
            config,
            device: device.clone(),
        })
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Token ids of a model input: the text's tokens and `</s>`.
    pub fn input_ids(&self, input: &str) -> Result<Vec<u32>, EngineError> {
        let mut ids = self.tokenizer.encode(input)?.ids;
        ids.push(self.config.eos_token_id);
        Ok(ids)
    }

    /// Number of tokens `text` takes (without `</s>`).
    pub fn count_tokens(&self, text: &str) -> Result<usize, EngineError> {
        Ok(self.tokenizer.encode(text)?.ids.len())
    }

    /// Encodes `input_ids` and decodes greedily up to `max_tokens` tokens or `</s>`.
    pub fn generate_ids(
        &mut self,
        input_ids: &[u32],
        max_tokens: usize,
        cancel: &Cancel,
    ) -> Result<Generated, EngineError> {
        if input_ids.is_empty() {
            return Err(EngineError::Input("the input is empty".into()));
        }
        let input = Tensor::new(input_ids, &self.device)?;
        let encoded = self.model.encode(&input)?;
        let mut state = self.model.start_decoding(&encoded)?;
        let eos = self.config.eos_token_id;
        let mut last = self
            .config
            .decoder_start_token_id
            .unwrap_or(self.config.pad_token_id);
        let mut ids = Vec::new();
        let mut total = 0f32;
        let mut steps = 0;
        for _ in 0..max_tokens {
            cancel.check()?;
            let logits = self.model.decode_step(last, &mut state)?;
            let id = argmax(&logits);
            total += log_prob(&logits, id);
            steps += 1;
            if id == eos {
                break;
            }
            ids.push(id);
            last = id;
        }
        let (text, _) = self.tokenizer.decode_complete(&ids)?;
        Ok(Generated {
            ids,
            text: text.trim().to_string(),
            mean_logprob: if steps > 0 { total / steps as f32 } else { 0.0 },
        })
    }

    /// The logits of the first decoding step for an input, `(vocab,)` (for parity tests).
    pub fn first_step_logits(&self, input_ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        let input = Tensor::new(input_ids, &self.device)?;
        let encoded = self.model.encode(&input)?;
        let mut state = self.model.start_decoding(&encoded)?;
        let start = self
            .config
            .decoder_start_token_id
            .unwrap_or(self.config.pad_token_id);
        Ok(self.model.decode_step(start, &mut state)?)
    }

    /// The encoder's output `(tokens, d_model)` for an input (for parity tests).
    pub fn encode(&self, input_ids: &[u32]) -> Result<Tensor, EngineError> {
        Ok(self.model.encode(&Tensor::new(input_ids, &self.device)?)?)
    }

    /// Runs a task on a text of any length: inputs beyond 512 tokens are split at paragraph or
    /// sentence boundaries; summaries of chunks are summarized again, each chunk is asked the
    /// question (the answer with the best mean log-probability wins), translations are joined.
    /// `progress(done, total)` is called after each model run.
    pub fn run(
        &mut self,
        task: &Task,
        text: &str,
        max_tokens: usize,
        cancel: &Cancel,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<String, EngineError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(EngineError::Input(
                "there is no text to work on (the selection is empty)".into(),
            ));
        }
        if let Task::Answer { question } = task {
            if question.trim().is_empty() {
                return Err(EngineError::Input("the question is empty".into()));
            }
        }
        let budget = MAX_INPUT_TOKENS
            .saturating_sub(self.count_tokens(&task.prompt(""))? + 1)
            .max(16);
        let chunks = chunk(text, budget, &|s| {
            self.count_tokens(s).unwrap_or(usize::MAX)
        })?;
        let total = chunks.len() + usize::from(matches!(task, Task::Summarize) && chunks.len() > 1);
        let mut outputs = Vec::with_capacity(chunks.len());
        for (i, c) in chunks.iter().enumerate() {
            let ids = self.input_ids(&task.prompt(c))?;
            outputs.push(self.generate_ids(&ids, max_tokens, cancel)?);
            progress(i + 1, total);
        }
        Ok(match task {
            Task::Translate { .. } => {
                let sep = if text.contains("\n\n") { "\n\n" } else { " " };
                outputs
                    .iter()
                    .map(|g| g.text.as_str())
                    .collect::<Vec<_>>()
                    .join(sep)
            }
            Task::Answer { .. } => outputs
                .into_iter()
                .max_by(|a, b| a.mean_logprob.total_cmp(&b.mean_logprob))
                .map(|g| g.text)
                .unwrap_or_default(),
            Task::Summarize if outputs.len() == 1 => outputs.remove(0).text,
            Task::Summarize => {
                let joined: Vec<&str> = outputs.iter().map(|g| g.text.as_str()).collect();
                let joined = joined.join(" ");
                // The summaries fit one input: at most 512 / chunks tokens each would be
                // needed; otherwise summarize the summaries in chunks again.
                let again = if self.count_tokens(&task.prompt(&joined))? < MAX_INPUT_TOKENS {
                    let ids = self.input_ids(&task.prompt(&joined))?;
                    self.generate_ids(&ids, max_tokens, cancel)?.text
                } else {
                    self.run(task, &joined, max_tokens, cancel, &mut |_, _| {})?
                };
                progress(total, total);
                again
            }
        })
    }
}

/// Splits `text` into pieces of at most `budget` tokens (as `count` measures them): at blank
/// lines first, then at sentence ends, then at spaces.
pub fn chunk(
    text: &str,
    budget: usize,
    count: &dyn Fn(&str) -> usize,
) -> Result<Vec<String>, EngineError> {
    if count(text) <= budget {
        return Ok(vec![text.to_string()]);
    }
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut units: Vec<String> = Vec::new();
    for p in paragraphs {
        if count(p) <= budget {
            units.push(p.to_string());
            continue;
        }
        for s in split_sentences(p) {
            if count(&s) <= budget {
                units.push(s);
            } else {
                // A sentence longer than a chunk: cut at spaces.
                let mut cur = String::new();
                for w in s.split_whitespace() {
                    let next = if cur.is_empty() {
                        w.to_string()
                    } else {
                        format!("{cur} {w}")
                    };
                    if count(&next) > budget && !cur.is_empty() {
                        units.push(std::mem::take(&mut cur));
                        cur = w.to_string();
                    } else {
                        cur = next;
                    }
                }
                if !cur.is_empty() {
                    units.push(cur);
                }
            }
        }
    }
    // Pack units greedily into chunks.
    let mut chunks: Vec<String> = Vec::new();
    let mut cur = String::new();
    for u in units {
        let next = if cur.is_empty() {
            u.clone()
        } else {
            format!("{cur}\n\n{u}")
        };
        if count(&next) > budget && !cur.is_empty() {
            chunks.push(std::mem::take(&mut cur));
            cur = u;
        } else {
            cur = next;
        }
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    Ok(chunks)
}

fn split_sentences(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = p.as_bytes();
    for i in 0..b.len() {
        if matches!(b[i], b'.' | b'!' | b'?')
            && b.get(i + 1).is_some_and(|c| c.is_ascii_whitespace())
        {
            out.push(p[start..=i].trim().to_string());
            start = i + 1;
        }
    }
    if !p[start..].trim().is_empty() {
        out.push(p[start..].trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn chunks_follow_paragraphs_then_sentences_and_fit() {
        let text =
            "One two three. Four five six.\n\nSeven eight nine ten. Eleven twelve.\n\nThirteen.";
        let chunks = chunk(text, 6, &words).unwrap();
        assert!(chunks.iter().all(|c| words(c) <= 6), "{chunks:?}");
        let rejoined: Vec<&str> = chunks.iter().flat_map(|c| c.split_whitespace()).collect();
        assert_eq!(
            rejoined,
            text.split_whitespace().collect::<Vec<_>>(),
            "nothing lost or reordered"
        );
        assert_eq!(
            chunk("short text", 6, &words).unwrap(),
            vec!["short text".to_string()]
        );
        let long_sentence = "a b c d e f g h i j k";
        let chunks = chunk(long_sentence, 4, &words).unwrap();
        assert!(chunks.iter().all(|c| words(c) <= 4), "{chunks:?}");
    }

    #[test]
    fn languages_and_prompts() {
        assert_eq!(Language::parse("German").unwrap(), Language::German);
        assert_eq!(Language::parse("fr").unwrap(), Language::French);
        let err = Language::parse("Spanish").unwrap_err().to_string();
        assert!(err.contains("Spanish") && err.contains("Romanian"), "{err}");
        assert_eq!(Task::Summarize.prompt("x"), "summarize: x");
        assert_eq!(
            Task::Answer {
                question: "Who?".into()
            }
            .prompt("ctx"),
            "question: Who? context: ctx"
        );
        assert_eq!(
            Task::Translate {
                to: Language::Romanian
            }
            .prompt("Hi"),
            "translate English to Romanian: Hi"
        );
    }
}
