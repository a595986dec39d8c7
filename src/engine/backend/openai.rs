//! The OpenAI completions API as quill speaks it: building request bodies, reading answers,
//! and turning them into the engine's results. Pure functions of JSON values, so that recorded
//! answers of real servers test them (`tests/fixtures/openai/`).

use serde_json::{json, Map, Value};

use crate::engine::tasks::proofread::{
    flag_words, is_word_char, unlikely_sentences, Proofread, ProofreadOptions, TokenScore,
    UnlikelyWord,
};
use crate::engine::tasks::session::{trim_tail, WindowPolicy};
use crate::engine::{Completion, CompletionOutput, GenerateParams, ScoredText, ScoredToken};

use super::RemoteConfig;

/// The id of a token scored by a server (servers name tokens by text, not id).
pub const NO_ID: u32 = u32::MAX;

/// Bytes of prompt sent per context token: quill does not know a remote model's tokenizer,
/// and English averages about four bytes a token.
const BYTES_PER_TOKEN: usize = 4;

/// The prompt for the text before a cursor, `text_before` being the document from byte
/// `text_start`: at most about `context_tokens` tokens of it, starting at a line start where
/// one is near, with the BOS text in front when it starts at the document's start (as the local
/// engine's window). The start moves in coarse steps, so that the server's prompt cache
/// (`cache_prompt`) keeps the common prefix while one types.
pub fn completion_prompt(
    cfg: &RemoteConfig,
    text_before: &str,
    text_start: usize,
    policy: &WindowPolicy,
) -> String {
    let mut text = if text_start == 0 {
        text_before
    } else {
        trim_tail(text_before, policy)
    };
    let mut at_start = text_start == 0;
    let limit = policy.context_tokens.max(16) * BYTES_PER_TOKEN;
    if text.len() > limit {
        let step = limit / 4;
        let mut cut = (text.len() - limit).div_ceil(step) * step;
        // A line start within the next step keeps the prompt's first words natural.
        let near = text.as_bytes()[cut..(cut + step).min(text.len())]
            .iter()
            .position(|&b| b == b'\n');
        if let Some(i) = near {
            cut += i + 1;
        }
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = &text[cut..];
        at_start = false;
    }
    if at_start {
        format!("{}{text}", cfg.bos)
    } else {
        text.to_string()
    }
}

/// The body of a completion request.
pub fn completion_request(
    cfg: &RemoteConfig,
    prompt: &str,
    suffix: Option<&str>,
    params: &GenerateParams,
) -> Value {
    let s = &params.sampling;
    let greedy = s.is_greedy();
    let mut body = Map::new();
    body.insert("model".into(), json!(cfg.model));
    body.insert("prompt".into(), json!(prompt));
    body.insert("max_tokens".into(), json!(params.max_tokens));
    body.insert(
        "temperature".into(),
        json!(if greedy { 0.0 } else { s.temperature }),
    );
    // Greedy candidates are all the same: ask for one.
    body.insert("n".into(), json!(if greedy { 1 } else { params.n.max(1) }));
    if let (Some(p), false) = (s.top_p, greedy) {
        body.insert("top_p".into(), json!(p));
    }
    if let (Some(k), false) = (s.top_k, greedy) {
        // Not OpenAI's, but llama.cpp, vLLM, TGI and Ollama take it.
        body.insert("top_k".into(), json!(k));
    }
    // llama.cpp keeps seeds in 32 bits.
    body.insert("seed".into(), json!(s.seed % (1 << 31)));
    body.insert("logprobs".into(), json!(1));
    body.insert("stream".into(), json!(false));
    // llama.cpp's server keeps the prompt's KV cache for the next request.
    body.insert("cache_prompt".into(), json!(true));
    if let Some(stop) = stop_strings(params) {
        body.insert("stop".into(), json!(stop));
    }
    if let Some(suffix) = suffix {
        body.insert("suffix".into(), json!(suffix));
    }
    Value::Object(body)
}

/// The stop strings sent with a request. quill's own rules (end of line in code, end of
/// sentence in prose) only end a suggestion after some text, so a server's `stop`, which ends
/// at the first match, cannot express them: they are applied to the answer
/// ([`finish_completions`]). A suggestion never runs into a new paragraph, though.
fn stop_strings(params: &GenerateParams) -> Option<Vec<&'static str>> {
    use crate::engine::tasks::sampling::StopAt;
    match params.stop {
        StopAt::Never => None,
        StopAt::Newline | StopAt::Sentence => Some(vec!["\n\n\n"]),
    }
}

/// One choice of a completion answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub text: String,
    /// Log-probabilities of the generated tokens, when the server sent them.
    pub logprobs: Vec<f32>,
}

/// Reads the choices of a completion answer, in their `index` order.
pub fn parse_completion(answer: &Value) -> Result<Vec<Choice>, String> {
    if let Some(e) = answer.get("error") {
        return Err(format!("an error answer: {}", error_text(e)));
    }
    let choices = answer
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("no \"choices\" list")?;
    let mut out: Vec<(u64, Choice)> = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        let text = c
            .get("text")
            .and_then(Value::as_str)
            .ok_or("a choice without \"text\"")?;
        let logprobs = c
            .pointer("/logprobs/token_logprobs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
                    .collect()
            })
            .unwrap_or_default();
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
        out.push((
            index,
            Choice {
                text: text.to_string(),
                logprobs,
            },
        ));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Turns choices into the engine's completions: quill's stop rule applied, text that repeats
/// the suffix (fill-in-the-middle) cut off, duplicates removed.
pub fn finish_completions(
    choices: Vec<Choice>,
    params: &GenerateParams,
    suffix: Option<&str>,
) -> CompletionOutput {
    let mut completions: Vec<Completion> = Vec::new();
    for c in choices {
        let mut text = c.text;
        if let Some(cut) = params.stop.cut(&text) {
            text.truncate(cut);
        }
        if let Some(suffix) = suffix {
            let keep = without_suffix_repeat(&text, suffix);
            text.truncate(keep);
        }
        if !completions.iter().any(|x| x.text == text) {
            completions.push(Completion {
                text,
                tokens: Vec::new(),
                logprobs: c.logprobs,
            });
        }
    }
    CompletionOutput {
        completions,
        prime: Default::default(),
    }
}

/// The length of `text` to keep so that it does not repeat the text after the cursor: cut
/// where the suffix's first line (three or more characters) starts inside it, or else where
/// its end overlaps the suffix's start.
pub fn without_suffix_repeat(text: &str, suffix: &str) -> usize {
    let first_line = suffix.lines().next().unwrap_or_default().trim();
    if first_line.len() >= 3 {
        if let Some(i) = text.find(first_line) {
            return text[..i].trim_end_matches([' ', '\t']).len();
        }
    }
    let suffix = suffix.trim_start_matches([' ', '\t']);
    let mut best = 0;
    for (k, _) in suffix.char_indices().skip(1).chain([(suffix.len(), ' ')]) {
        if k > text.len() {
            break;
        }
        if !suffix[..k].trim().is_empty() && text.ends_with(&suffix[..k]) {
            best = k;
        }
    }
    text.len() - best
}

/// The body of a request for the log-probabilities of `text` with BOS in front (the prompt
/// echoed with `k` alternatives per token; one token generated, which is ignored).
pub fn score_request(cfg: &RemoteConfig, text: &str, k: usize) -> Value {
    json!({
        "model": cfg.model,
        "prompt": format!("{}{text}", cfg.bos),
        "max_tokens": 1,
        "temperature": 0.0,
        "echo": true,
        "logprobs": k,
        "stream": false,
        "cache_prompt": true,
    })
}

/// One token of a scored prompt, in bytes of the scored text.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptToken {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub logprob: f32,
    /// The likely tokens at this position, most likely first.
    pub top: Vec<(String, f32)>,
}

impl PromptToken {
    pub fn best_logprob(&self) -> f32 {
        self.top.iter().map(|t| t.1).fold(self.logprob, f32::max)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PromptError {
    /// The answer has no prompt log-probabilities: this server cannot give them.
    Missing(String),
    /// The answer cannot be read.
    Bad(String),
}

/// Reads an echoed prompt's log-probabilities (`bos` + `text` was sent) and maps the server's
/// `text_offset`s to byte spans of `text`. Servers count offsets in characters (Python's
/// `len`) or in bytes; the reading where the tokens' texts stand at their offsets is taken.
pub fn parse_prompt_logprobs(
    answer: &Value,
    bos: &str,
    text: &str,
) -> Result<Vec<PromptToken>, PromptError> {
    let bad = |s: &str| PromptError::Bad(s.to_string());
    if let Some(e) = answer.get("error") {
        return Err(PromptError::Bad(format!(
            "an error answer: {}",
            error_text(e)
        )));
    }
    let choice = answer
        .pointer("/choices/0")
        .ok_or_else(|| bad("no choices"))?;
    let lp = match choice.get("logprobs") {
        Some(v) if v.is_object() => v,
        _ => return Err(PromptError::Missing("its answer has no logprobs".into())),
    };
    let list = |key: &str| lp.get(key).and_then(Value::as_array);
    let (Some(tokens), Some(logprobs), Some(offsets)) =
        (list("tokens"), list("token_logprobs"), list("text_offset"))
    else {
        return Err(PromptError::Missing(
            "its logprobs lack tokens, token_logprobs or text_offset".into(),
        ));
    };
    let tops = list("top_logprobs");
    if tokens.len() != logprobs.len() || tokens.len() != offsets.len() {
        return Err(bad("logprobs lists of different lengths"));
    }
    let full = format!("{bos}{text}");
    let raw: Vec<usize> = offsets
        .iter()
        .map(|v| v.as_u64().map(|o| o as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("a text_offset that is not a number"))?;
    let texts: Vec<&str> = tokens.iter().map(|t| t.as_str().unwrap_or("")).collect();
    // Offsets in characters or in bytes: pick the reading under which more tokens match.
    let char_bytes: Vec<usize> = full
        .char_indices()
        .map(|(b, _)| b)
        .chain([full.len()])
        .collect();
    let as_chars = |o: usize| char_bytes.get(o).copied().unwrap_or(usize::MAX);
    let matches = |f: &dyn Fn(usize) -> usize| {
        raw.iter()
            .zip(&texts)
            .filter(|(&o, t)| full.get(f(o)..).is_some_and(|rest| rest.starts_with(**t)))
            .count()
    };
    let chars_win = matches(&as_chars) >= matches(&|o| o);
    let to_byte = |o: usize| if chars_win { as_chars(o) } else { o };
    let starts: Vec<usize> = raw.iter().map(|&o| to_byte(o)).collect();
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        let start = starts[i];
        // The BOS text, and the generated token after the prompt, are not the text's.
        if start < bos.len() || start >= full.len() {
            continue;
        }
        let end = starts[i + 1..]
            .iter()
            .copied()
            .find(|&e| e > start)
            .unwrap_or(full.len())
            .min(full.len());
        let logprob = match logprobs[i].as_f64() {
            Some(v) => v as f32,
            // With no BOS text the first token has nothing before it.
            None if out.is_empty() && bos.is_empty() => 0.0,
            None => {
                return Err(PromptError::Missing(
                    "it gives no log-probability for the prompt's tokens".into(),
                ))
            }
        };
        let mut top: Vec<(String, f32)> = tops
            .and_then(|t| t.get(i))
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()? as f32)))
                    .collect()
            })
            .unwrap_or_default();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.push(PromptToken {
            start: start - bos.len(),
            end: end - bos.len(),
            text: texts[i].to_string(),
            logprob,
            top,
        });
    }
    if out.is_empty() && !text.is_empty() {
        return Err(bad(
            "no token of the prompt in the echoed log-probabilities",
        ));
    }
    Ok(out)
}

/// A scored text from a server's prompt tokens (ids unknown: [`NO_ID`]).
pub fn scored_text(text: &str, tokens: &[PromptToken]) -> ScoredText {
    let scored: Vec<ScoredToken> = tokens
        .iter()
        .map(|t| ScoredToken {
            id: NO_ID,
            text: text.get(t.start..t.end).unwrap_or(&t.text).to_string(),
            start: t.start,
            end: t.end,
            logprob: t.logprob,
            best_id: NO_ID,
            best_logprob: t.best_logprob(),
            top: Vec::new(),
        })
        .collect();
    let total: f64 = scored.iter().map(|t| t.logprob as f64).sum();
    let perplexity = if scored.is_empty() {
        1.0
    } else {
        (-total / scored.len() as f64).exp()
    };
    ScoredText {
        tokens: scored,
        total_logprob: total,
        perplexity,
    }
}

/// Proofreads a paragraph from its prompt tokens with the same rules as local scoring. The
/// alternatives are the position's likely tokens that are whole words by themselves (a server
/// is not asked again to extend word pieces).
pub fn proofread(text: &str, tokens: &[PromptToken], opts: &ProofreadOptions) -> Proofread {
    let scores: Vec<TokenScore> = tokens
        .iter()
        .map(|t| TokenScore {
            start: t.start,
            end: t.end,
            logprob: t.logprob,
            best_logprob: t.best_logprob(),
        })
        .collect();
    let mut out = Proofread::default();
    for f in flag_words(text, &scores, opts) {
        let word = text[f.start..f.end].to_string();
        let alternatives = alternatives(&tokens[f.first_token], &word, opts.max_alternatives);
        out.words.push(UnlikelyWord {
            start: f.start,
            end: f.end,
            word,
            logprob: f.logprob,
            alternatives,
        });
    }
    out.sentences = unlikely_sentences(text, &scores, opts);
    out
}

fn alternatives(original: &PromptToken, word: &str, max: usize) -> Vec<(String, f32)> {
    let lead_space = original.text.starts_with(char::is_whitespace);
    let mut out: Vec<(String, f32)> = Vec::new();
    for (t, lp) in &original.top {
        if *t == original.text {
            continue;
        }
        let rest = if lead_space {
            t.strip_prefix(' ')
        } else {
            Some(t.as_str())
        };
        let Some(w) = rest else { continue };
        let whole = !w.is_empty()
            && w.chars().next().is_some_and(is_word_char)
            && w.chars().all(|c| is_word_char(c) || c == '\'');
        if whole && w != word && !out.iter().any(|(x, _)| x == w) {
            out.push((w.to_string(), *lp));
        }
    }
    out.truncate(max);
    out
}

/// The message of an error answer (`{"error": {"message": …}}`, `{"error": "…"}`,
/// `{"detail": …}`), or the body itself, shortened.
pub fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let msg = match &parsed {
        Some(v) if v.get("error").is_some() => error_text(&v["error"]),
        Some(v) if v.get("detail").is_some() => match &v["detail"] {
            Value::String(s) => s.clone(),
            d => d.to_string(),
        },
        Some(v) if v.get("message").is_some() => error_text(v),
        _ => body.trim().to_string(),
    };
    let mut msg: String = msg.chars().take(300).collect();
    if msg.is_empty() {
        msg = "no message".into();
    }
    msg
}

fn error_text(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| e.to_string()),
        other => other.to_string(),
    }
}

/// Whether an error message says that echoing the prompt (or its log-probabilities) is not
/// supported.
pub fn refuses_echo(msg: &str) -> bool {
    let m = msg.to_lowercase();
    (m.contains("echo") || m.contains("logprobs"))
        && (m.contains("not support") || m.contains("unsupported") || m.contains("not allowed"))
}

/// Whether an error message says the model is unknown.
pub fn names_unknown_model(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.contains("model")
        && (m.contains("not found") || m.contains("does not exist") || m.contains("unknown"))
}
