//! [`LanguageModel`]: a GPT-2 network with its tokenizer and BOS/EOS ids, loaded from any
//! checkpoint format, offering completion and scoring.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::checkpoint::{gguf, stream, weight};
use super::cpu::pool;
use super::nets::gpt2::{Gpt2, Gpt2Config};
use super::tasks::sampling::{log_prob, Sampler, StopAt};
use super::tasks::scoring;
use super::tasks::session::{self, Session, WindowPolicy};
use super::tasks::tokens::{ChunkCache, TextTokenizer};
use super::{
    load_tokenizer, load_weights, weights_mismatch, Cancel, Completion, CompletionOutput,
    EngineError, GenerateParams, ScoredText, ScoredToken,
};
use crate::models::{self, ModelError, ModelFiles};

/// A GPT-2-architecture language model with its tokenizer.
pub struct LanguageModel {
    model: Gpt2,
    tokenizer: TextTokenizer,
    bos: u32,
    eos: u32,
}

impl LanguageModel {
    /// Loads a GPT-2 checkpoint from resolved files.
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType) -> Result<Self, ModelError> {
        Self::load_format(files, device, models::WeightFormat::Float(dtype))
    }

    /// Loads a GPT-2 checkpoint, quantizing its matrices if `format` says so. A GGUF file's
    /// matrices stay in the format they were written in ([`Self::load_converted`] converts).
    pub fn load_format(
        files: &ModelFiles,
        device: &Device,
        format: models::WeightFormat,
    ) -> Result<Self, ModelError> {
        Self::load_with(files, device, format, false)
    }

    /// Loads a GPT-2 checkpoint with its matrices in `format` whatever the checkpoint holds
    /// (what `quill quantize` writes): a GGUF file's matrices in another format are
    /// dequantized to f32 and converted; those already in `format` are kept as stored.
    pub fn load_converted(
        files: &ModelFiles,
        device: &Device,
        format: models::WeightFormat,
    ) -> Result<Self, ModelError> {
        Self::load_with(files, device, format, true)
    }

    fn load_with(
        files: &ModelFiles,
        device: &Device,
        format: models::WeightFormat,
        convert_gguf: bool,
    ) -> Result<Self, ModelError> {
        let dtype = format.float_dtype(device);
        let bad_config = |reason: String| ModelError::BadConfig {
            path: files.config.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&files.config).map_err(|e| bad_config(e.to_string()))?;
        let config: Gpt2Config = serde_json::from_str(&text)
            .map_err(|e| bad_config(format!("not a GPT-2 config.json ({e})")))?;
        config.validate().map_err(bad_config)?;
        let tokenizer = load_tokenizer(files)?;
        let special = tokenizer.token_to_id("<|endoftext|>");
        let eos = config.eos_token_id.or(special).ok_or_else(|| {
            bad_config("it names no eos_token_id and the tokenizer has no <|endoftext|>".into())
        })?;
        let bos = config.bos_token_id.unwrap_or(eos);
        for (name, id) in [("bos_token_id", bos), ("eos_token_id", eos)] {
            if id as usize >= config.vocab_size {
                return Err(bad_config(format!(
                    "{name} {id} is outside the vocabulary of {}",
                    config.vocab_size
                )));
            }
        }
        let model = if files.is_gguf() {
            // A GGUF file's matrices stay in the format they were written in unless asked
            // to convert; opening it checks the header once (a truncated file is named with
            // the tensor it cuts).
            let src = gguf::GgufSource::open(&files.weights[0], device).map_err(|e| {
                models::ModelError::BadWeights {
                    path: files.weights[0].clone(),
                    reason: e.to_string(),
                }
            })?;
            let src = if convert_gguf {
                src.converting_to(format)
            } else {
                src
            };
            Gpt2::from_source(&src, &config)
        } else if device.is_cpu()
            && weight::cpu_format(format).is_some()
            && files.weights.iter().all(|w| stream::serves(w))
        {
            // One tensor at a time: the file is never resident beside the model.
            models::check_weights(&files.weights)?;
            let src = stream::StreamingSource::open(&files.weights, format)
                .map_err(|e| weights_mismatch(files, e))?;
            Gpt2::from_source(&src, &config)
        } else {
            let vb = load_weights(files, dtype, device)?;
            Gpt2::load_format(vb, &config, format)
        }
        .map_err(|e| weights_mismatch(files, e))?;
        Ok(Self {
            model,
            tokenizer,
            bos,
            eos,
        })
    }

    /// Writes the model as a directory that loads as it is: `model.gguf` (in its current
    /// format, llama.cpp's layout) beside the checkpoint's `config.json` and `tokenizer.json`.
    /// The GGUF file is written beside and renamed, so that a failed run never leaves half a
    /// model behind. Returns the GGUF file's path.
    pub fn save_gguf_dir(&self, files: &ModelFiles, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let target = dir.join(models::GGUF_WEIGHTS);
        let partial = dir.join(format!("{}.partial", models::GGUF_WEIGHTS));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&partial)?);
        let c = self.model.config();
        let hyper = gguf::Gpt2Hyper {
            context_length: c.n_positions,
            embedding_length: c.n_embd,
            feed_forward_length: c.n_inner.unwrap_or(4 * c.n_embd),
            block_count: c.n_layer,
            head_count: c.n_head,
            layer_norm_epsilon: c.layer_norm_epsilon,
            vocab_size: c.vocab_size,
        };
        gguf::write(
            &self.model.tensors(),
            &hyper,
            &files.name,
            &files.tokenizer,
            self.bos,
            self.eos,
            &mut file,
        )
        .map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut file)?;
        drop(file);
        for (from, name) in [
            (&files.config, "config.json"),
            (&files.tokenizer, "tokenizer.json"),
        ] {
            let to = dir.join(name);
            if from.canonicalize().ok() != to.canonicalize().ok() {
                std::fs::copy(from, &to)?;
            }
        }
        std::fs::rename(&partial, &target)?;
        Ok(target)
    }

    /// The formats of the weight matrices, as [`Self::save_gguf_dir`] writes them.
    pub fn matrix_formats(&self) -> gguf::MatrixFormats {
        gguf::MatrixFormats::of_tensors(&self.model.tensors())
    }

    pub fn gpt2(&self) -> &Gpt2 {
        &self.model
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn bos(&self) -> u32 {
        self.bos
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    pub fn n_positions(&self) -> usize {
        self.model.config().n_positions
    }

    pub fn new_session(&self) -> Result<Session, EngineError> {
        Session::new(&self.model)
    }

    /// The prompt for the text before a cursor: the window of [`session::window`], within the
    /// model's positions.
    /// Only the tail of `text` that [`session::tail_start`] names is read and tokenized.
    pub fn prompt_for(&self, text: &str, policy: &WindowPolicy) -> Result<Vec<u32>, EngineError> {
        let mut start = session::tail_start(text.len(), policy);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        self.prompt_for_tail(&text[start..], start, policy)
    }

    /// The prompt for a cursor when only the text before it from byte `text_start` of the
    /// document is given, from [`session::tail_start`] moved back to a character boundary.
    pub fn prompt_for_tail(
        &self,
        tail: &str,
        text_start: usize,
        policy: &WindowPolicy,
    ) -> Result<Vec<u32>, EngineError> {
        self.prompt_from(tail, text_start, policy, None)
    }

    /// [`LanguageModel::prompt_for_tail`], tokenizing only the pieces of the text that `cache`
    /// (the document's, from its last request) does not hold: a keystroke re-tokenizes the
    /// few words around the edit.
    pub fn prompt_for_tail_cached(
        &self,
        tail: &str,
        text_start: usize,
        policy: &WindowPolicy,
        cache: &mut ChunkCache,
    ) -> Result<Vec<u32>, EngineError> {
        self.prompt_from(tail, text_start, policy, Some(cache))
    }

    fn prompt_from(
        &self,
        tail: &str,
        text_start: usize,
        policy: &WindowPolicy,
        cache: Option<&mut ChunkCache>,
    ) -> Result<Vec<u32>, EngineError> {
        let at_start = text_start == 0;
        let text = if at_start {
            tail
        } else {
            session::trim_tail(tail, policy)
        };
        let policy = WindowPolicy {
            n_positions: policy.n_positions.min(self.n_positions()),
            ..*policy
        };
        let enc = match cache {
            Some(cache) => self.tokenizer.encode_cached(text, cache)?,
            None => self.tokenizer.encode(text)?,
        };
        let bytes = text.as_bytes();
        let line_start: Vec<bool> = enc
            .offsets
            .iter()
            .map(|&(s, _)| s == 0 || matches!(bytes.get(s - 1), Some(b'\n' | b'\r')))
            .collect();
        let bos = at_start.then_some(self.bos);
        Ok(session::window_from(&enc.ids, &line_start, bos, &policy))
    }

    /// Continues `prompt` (token ids, BOS included where wanted), reusing `session`'s cache for
    /// the common prefix. Generated positions are dropped afterwards.
    pub fn complete(
        &self,
        session: &mut Session,
        prompt: &[u32],
        params: &GenerateParams,
        cancel: &Cancel,
    ) -> Result<CompletionOutput, EngineError> {
        let n_positions = self.n_positions();
        if prompt.len() + params.max_tokens > n_positions {
            return Err(EngineError::Input(format!(
                "the prompt ({} tokens) and {} new tokens exceed the model's context of {} \
                 tokens: shorten the prompt or lower --max-tokens",
                prompt.len(),
                params.max_tokens,
                n_positions
            )));
        }
        let (hidden, prime) = session.prime(&self.model, prompt, cancel)?;
        let first_logits = {
            let _span = tracing::debug_span!(target: "quill::keystroke", "logits").entered();
            self.model.logits(&hidden)?.squeeze(0)?.to_vec1::<f32>()?
        };
        let prompt_len = prompt.len();
        // Greedy candidates are all the same: decode one.
        let n = if params.sampling.is_greedy() {
            1
        } else {
            params.n.max(1)
        };
        // Each token is a few dozen short products: the pool's threads poll between them.
        let result = if params.max_tokens == 0 {
            Ok(vec![Candidate::default(); n])
        } else if n == 1 {
            pool::warm(|| self.decode_single(session, first_logits, params, cancel))
        } else {
            pool::warm(|| self.decode_batch(session, first_logits, n, params, cancel))
        };
        session.truncate(prompt_len);
        let _span = tracing::debug_span!(target: "quill::keystroke", "finish").entered();
        let mut completions: Vec<Completion> = Vec::new();
        for c in result? {
            let done = self.finish(c, params.stop)?;
            if !completions.iter().any(|x| x.text == done.text) {
                completions.push(done);
            }
        }
        Ok(CompletionOutput { completions, prime })
    }

    fn decode_single(
        &self,
        session: &mut Session,
        mut logits: Vec<f32>,
        params: &GenerateParams,
        cancel: &Cancel,
    ) -> Result<Vec<Candidate>, EngineError> {
        let mut sampler = Sampler::new(params.sampling.clone());
        let mut c = Candidate::default();
        loop {
            let go_on = {
                let _span = tracing::debug_span!(target: "quill::keystroke", "sample").entered();
                let id = sampler.sample(&logits);
                c.push(self, id, &logits, params)?.then_some(id)
            };
            let Some(id) = go_on else { break };
            cancel.check()?;
            let hidden = {
                let _span =
                    tracing::debug_span!(target: "quill::keystroke", "decode_pass").entered();
                self.model.forward(&[id], session.cache_mut())?
            };
            let _span = tracing::debug_span!(target: "quill::keystroke", "logits").entered();
            logits = self.model.logits(&hidden)?.squeeze(0)?.to_vec1()?;
        }
        Ok(vec![c])
    }

    fn decode_batch(
        &self,
        session: &mut Session,
        first_logits: Vec<f32>,
        n: usize,
        params: &GenerateParams,
        cancel: &Cancel,
    ) -> Result<Vec<Candidate>, EngineError> {
        let mut sampler = Sampler::new(params.sampling.clone());
        let mut cands = vec![Candidate::default(); n];
        let mut next = vec![0u32; n];
        for (c, slot) in cands.iter_mut().zip(next.iter_mut()) {
            *slot = sampler.sample(&first_logits);
            c.push(self, *slot, &first_logits, params)?;
        }
        let mut batch = self.model.new_batch_cache(n, params.max_tokens)?;
        while cands.iter().any(|c| !c.done) {
            cancel.check()?;
            let hidden = {
                let _span =
                    tracing::debug_span!(target: "quill::keystroke", "decode_pass").entered();
                self.model
                    .forward_shared(&next, session.cache(), &mut batch)?
            };
            let logits = {
                let _span = tracing::debug_span!(target: "quill::keystroke", "logits").entered();
                self.model.logits(&hidden)?.to_vec2::<f32>()?
            };
            let _span = tracing::debug_span!(target: "quill::keystroke", "sample").entered();
            for (i, c) in cands.iter_mut().enumerate() {
                if c.done {
                    continue;
                }
                let id = sampler.sample(&logits[i]);
                c.push(self, id, &logits[i], params)?;
                next[i] = id;
            }
        }
        Ok(cands)
    }

    /// Cuts a candidate's text at its stop rule and keeps the tokens that cover it.
    fn finish(&self, c: Candidate, stop: StopAt) -> Result<Completion, EngineError> {
        let (mut text, covered) = self.tokenizer.decode_complete(&c.tokens)?;
        let mut tokens = c.tokens;
        let mut logprobs = c.logprobs;
        tokens.truncate(covered);
        logprobs.truncate(covered);
        if let Some(cut) = stop.cut(&text) {
            text.truncate(cut);
            // Keep the tokens up to the one that holds the cut.
            let mut keep = 0;
            while keep < tokens.len() {
                let (t, _) = self.tokenizer.decode_complete(&tokens[..keep])?;
                if t.len() >= cut {
                    break;
                }
                keep += 1;
            }
            tokens.truncate(keep);
            logprobs.truncate(keep);
        }
        Ok(Completion {
            text,
            tokens,
            logprobs,
        })
    }

    /// Tokenizes `text` and scores every token with BOS in front.
    pub fn score(&self, text: &str, cancel: &Cancel) -> Result<ScoredText, EngineError> {
        let enc = self.tokenizer.encode(text)?;
        let scores = scoring::score_ids(&self.model, self.bos, &enc.ids, cancel)?;
        let tokens: Vec<ScoredToken> = enc
            .ids
            .iter()
            .zip(&enc.offsets)
            .zip(scores)
            .map(|((&id, &(start, end)), s)| ScoredToken {
                id,
                text: text.get(start..end).unwrap_or_default().to_string(),
                start,
                end,
                logprob: s.logprob,
                best_id: s.best_id,
                best_logprob: s.best_logprob,
                top: s.top,
            })
            .collect();
        Ok(ScoredText::from_tokens(tokens))
    }
}

/// A continuation being generated.
#[derive(Debug, Clone, Default)]
struct Candidate {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    done: bool,
}

impl Candidate {
    /// Takes the sampled `id`; returns whether generation goes on.
    fn push(
        &mut self,
        lm: &LanguageModel,
        id: u32,
        logits: &[f32],
        params: &GenerateParams,
    ) -> Result<bool, EngineError> {
        if self.done {
            return Ok(false);
        }
        if id == lm.eos {
            self.done = true;
            return Ok(false);
        }
        self.tokens.push(id);
        self.logprobs.push(log_prob(logits, id));
        if self.tokens.len() >= params.max_tokens {
            self.done = true;
        } else if params.stop != StopAt::Never {
            let (text, _) = lm.tokenizer.decode_complete(&self.tokens)?;
            self.done = params.stop.cut(&text).is_some();
        }
        Ok(!self.done)
    }
}
