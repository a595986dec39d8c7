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
    let (text, at_start) = context_window(text_before, text_start, policy);
    if at_start {
        format!("{}{text}", cfg.bos)
    } else {
        text.to_string()
    }
}

/// The window of [`completion_prompt`] without the BOS text, and whether it starts at the
/// document's start.
pub fn context_window<'a>(
    text_before: &'a str,
    text_start: usize,
    policy: &WindowPolicy,
) -> (&'a str, bool) {
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
    (text, at_start)
}

/// The body of a completion request.
pub fn completion_request(
    cfg: &RemoteConfig,
    prompt: &str,
    suffix: Option<&str>,
    params: &GenerateParams,
) -> Value {
    let greedy = params.sampling.is_greedy();
    let mut body = Map::new();
    body.insert("model".into(), json!(cfg.model));
    body.insert("prompt".into(), json!(prompt));
    body.insert("max_tokens".into(), json!(params.max_tokens));
    // Greedy candidates are all the same: ask for one.
    body.insert("n".into(), json!(if greedy { 1 } else { params.n.max(1) }));
    body.insert("logprobs".into(), json!(1));
    insert_sampling(&mut body, params);
    if let Some(suffix) = suffix {
        body.insert("suffix".into(), json!(suffix));
    }
    Value::Object(body)
}

/// The sampling fields every request body carries (`/completions` and llama.cpp's `/infill`):
/// temperature (0 is greedy for llama.cpp), `top_p`/`top_k` unless greedy, no penalties, the
/// seed, no streaming, the prompt's KV cache kept, and the stop strings.
pub(super) fn insert_sampling(body: &mut Map<String, Value>, params: &GenerateParams) {
    let s = &params.sampling;
    let greedy = s.is_greedy();
    body.insert(
        "temperature".into(),
        json!(if greedy { 0.0 } else { s.temperature }),
    );
    if let (Some(p), false) = (s.top_p, greedy) {
        body.insert("top_p".into(), json!(p));
    }
    if let (Some(k), false) = (s.top_k, greedy) {
        // Not OpenAI's, but llama.cpp, vLLM, TGI and Ollama take it.
        body.insert("top_k".into(), json!(k));
    }
    // No penalties: quill's own sampler has none (llama-cpp-python's server and llama.cpp's
    // `/completion` apply a repeat penalty of 1.1 unless told otherwise).
    body.insert("repeat_penalty".into(), json!(1.0));
    body.insert("frequency_penalty".into(), json!(0.0));
    body.insert("presence_penalty".into(), json!(0.0));
    // llama.cpp keeps seeds in 32 bits.
    body.insert("seed".into(), json!(s.seed % (1 << 31)));
    body.insert("stream".into(), json!(false));
    // llama.cpp's server keeps the prompt's KV cache for the next request.
    body.insert("cache_prompt".into(), json!(true));
    if let Some(stop) = stop_strings(params) {
        body.insert("stop".into(), json!(stop));
    }
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
    // Offsets in characters or in bytes, into the whole prompt or into the text after the
    // BOS text (llama-cpp-python leaves the special token out): the reading under which most
    // tokens' texts stand at their offsets.
    let char_bytes: Vec<usize> = full
        .char_indices()
        .map(|(b, _)| b)
        .chain([full.len()])
        .collect();
    let bos_chars = bos.chars().count();
    let readings: [&dyn Fn(usize) -> usize; 4] = [
        &|o| char_bytes.get(o).copied().unwrap_or(usize::MAX),
        &|o| o,
        &|o| char_bytes.get(o + bos_chars).copied().unwrap_or(usize::MAX),
        &|o| o + bos.len(),
    ];
    let matches = |f: &dyn Fn(usize) -> usize| {
        raw.iter()
            .zip(&texts)
            .filter(|(&o, t)| full.get(f(o)..).is_some_and(|rest| rest.starts_with(**t)))
            .count()
    };
    let mut best = 0;
    for (k, f) in readings.iter().enumerate() {
        if matches(*f) > matches(readings[best]) {
            best = k;
        }
    }
    let to_byte = readings[best];
    let starts: Vec<usize> = raw.iter().map(|&o| to_byte(o)).collect();
    let mut out = Vec::new();
    let mut seen_text = false;
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
        let first = !seen_text;
        seen_text = true;
        let logprob = match logprobs[i].as_f64() {
            Some(v) => v as f32,
            // The text's first token may come without one (llama-cpp-python computes it and
            // then gives null, as OpenAI's API did; with no BOS text nothing precedes it).
            // It is left out, unscored: counted as certain it would lower the perplexity and
            // hide a misspelt first word.
            None if first => continue,
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
    if !seen_text && !text.is_empty() {
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
    ScoredText::from_tokens(scored)
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

#[cfg(test)]
mod tests {
    //! Recorded answers of llama-cpp-python 0.3.36's server (`tests/fixtures/openai/`), serving
    //! a `quill quantize`d f32 GGUF of `tests/fixtures/gpt2-tiny`.
    use super::*;
    use crate::engine::tasks::sampling::{SamplingParams, StopAt};

    fn recorded(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/openai/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).expect("recording")).unwrap()
    }

    fn cfg() -> RemoteConfig {
        RemoteConfig::new("http://127.0.0.1:1/v1", "tiny")
    }

    fn params(temperature: f32, n: usize, stop: StopAt) -> GenerateParams {
        GenerateParams {
            max_tokens: 8,
            n,
            sampling: SamplingParams {
                temperature,
                top_k: Some(40),
                top_p: Some(0.9),
                seed: 5,
            },
            stop,
        }
    }

    fn policy(context_tokens: usize) -> WindowPolicy {
        WindowPolicy {
            context_tokens,
            reserve: 8,
            n_positions: usize::MAX,
        }
    }

    #[test]
    fn greedy_requests_ask_for_one_deterministic_choice() {
        let body = completion_request(
            &cfg(),
            "<|endoftext|>The cat",
            None,
            &params(0.0, 3, StopAt::Never),
        );
        assert_eq!(body["model"], "tiny");
        assert_eq!(body["prompt"], "<|endoftext|>The cat");
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["n"], 1);
        assert_eq!(body["max_tokens"], 8);
        assert_eq!(body["logprobs"], 1);
        assert_eq!(body["cache_prompt"], true);
        assert_eq!(body["stream"], false);
        assert!(body.get("top_p").is_none() && body.get("suffix").is_none());
        assert!(body.get("stop").is_none());
    }

    #[test]
    fn sampled_requests_carry_the_sampling_settings_and_the_suffix() {
        let body = completion_request(&cfg(), "x", Some(")\n"), &params(0.8, 3, StopAt::Newline));
        assert_eq!(body["n"], 3);
        assert!((body["temperature"].as_f64().unwrap() - 0.8).abs() < 1e-6);
        assert!((body["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);
        assert_eq!(body["top_k"], 40);
        assert_eq!(body["seed"], 5);
        assert_eq!(body["suffix"], ")\n");
        assert_eq!(body["stop"], json!(["\n\n\n"]));
    }

    #[test]
    fn the_prompt_has_bos_only_at_the_document_start_and_a_stable_window() {
        let c = cfg();
        assert_eq!(
            completion_prompt(&c, "Hello", 0, &policy(64)),
            "<|endoftext|>Hello"
        );
        // The window without BOS (what `/infill` gets as `input_prefix`).
        assert_eq!(context_window("Hello", 0, &policy(64)), ("Hello", true));
        assert_eq!(
            context_window("ial line\nsecond line", 4096, &policy(64)),
            ("second line", false)
        );
        // Mid-document: the tail is trimmed to a line start, no BOS.
        let tail = "ial line\nsecond line";
        assert_eq!(
            completion_prompt(&c, tail, 4096, &policy(64)),
            "second line"
        );
        // Longer than the window (16 tokens: 64 bytes): cut at a line start, no BOS, and the
        // start stays put while one types.
        let text: String = (0..20).map(|i| format!("line {i:02} of text\n")).collect();
        let p = completion_prompt(&c, &text, 0, &policy(16));
        assert!(
            !p.starts_with("<|endoftext|>") && p.starts_with("line "),
            "{p:?}"
        );
        assert!(p.len() <= 64 && text.ends_with(&p));
        // Sixteen keystrokes move the window's start at most once (it moves in steps).
        let mut starts = Vec::new();
        let mut typed = text.clone();
        for _ in 0..16 {
            typed.push('a');
            let q = completion_prompt(&c, &typed, 0, &policy(16));
            assert!(q.len() <= 64 && typed.ends_with(&q));
            let start = typed.len() - q.len();
            if starts.last() != Some(&start) {
                starts.push(start);
            }
        }
        assert!(starts.len() <= 2, "{starts:?}");
    }

    #[test]
    fn a_recorded_completion_is_read() {
        let choices = parse_completion(&recorded("completion_greedy.json")).unwrap();
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0].text, " them back bherek for rock");
        assert_eq!(choices[0].logprobs.len(), 8);
        assert!((choices[0].logprobs[0] - -0.001_147_565_3).abs() < 1e-6);
        let out = finish_completions(choices, &params(0.0, 1, StopAt::Never), None);
        assert_eq!(out.completions[0].text, " them back bherek for rock");
        assert!(out.completions[0].tokens.is_empty());
    }

    #[test]
    fn stop_rules_and_duplicates_apply_to_answers() {
        let choices = vec![
            Choice {
                text: " the mat. Then".into(),
                logprobs: vec![],
            },
            Choice {
                text: " the mat. Later".into(),
                logprobs: vec![],
            },
            Choice {
                text: " a\nb".into(),
                logprobs: vec![],
            },
        ];
        let out = finish_completions(choices, &params(0.7, 3, StopAt::Sentence), None);
        let texts: Vec<&str> = out.completions.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, [" the mat.", " a"]);
    }

    #[test]
    fn suggestions_that_repeat_the_suffix_are_trimmed() {
        assert_eq!(without_suffix_repeat("x + 1)", ")\n"), "x + 1".len());
        assert_eq!(
            without_suffix_repeat("foo(a, b)", "b)\nnext"),
            "foo(a, ".len()
        );
        assert_eq!(
            without_suffix_repeat(" = compute()\nreturn value", "return value\n"),
            " = compute()\n".len()
        );
        assert_eq!(without_suffix_repeat("abc", "xyz"), 3);
        assert_eq!(without_suffix_repeat("abc ", "  "), 4);
        let out = finish_completions(
            vec![Choice {
                text: "x + 1)".into(),
                logprobs: vec![],
            }],
            &params(0.0, 1, StopAt::Never),
            Some(")\n"),
        );
        assert_eq!(out.completions[0].text, "x + 1");
    }

    #[test]
    fn recorded_prompt_logprobs_map_to_the_text() {
        let text = "The café is near the";
        let tokens =
            parse_prompt_logprobs(&recorded("echo_logprobs.json"), "<|endoftext|>", text).unwrap();
        // Every scored token of the text, none of BOS and the generated one; spans cover the
        // text after its first token, which llama-cpp-python gives no log-probability.
        let starts: Vec<usize> = tokens.iter().map(|t| t.start).collect();
        // "é" is two bytes, split over two tokens.
        assert_eq!(starts, [3, 5, 7, 7, 9, 12, 15, 17]);
        assert_eq!(tokens.last().unwrap().end, text.len());
        assert_eq!(&text[tokens[4].start..tokens[4].end], " is");
        assert!((tokens[0].logprob - -14.304_56).abs() < 1e-4);
        assert!(tokens[0].top.len() >= 8);
        assert!(tokens[0].top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(tokens[0].best_logprob() > tokens[0].logprob);
        let scored = scored_text(text, &tokens);
        assert_eq!(scored.tokens[4].text, " is");
        assert_eq!(scored.tokens[0].id, NO_ID);
        // The perplexity is over the scored tokens only: the unscored one is not a 0.0.
        let mean = tokens.iter().map(|t| t.logprob as f64).sum::<f64>() / tokens.len() as f64;
        assert!((scored.perplexity - (-mean).exp()).abs() < 1e-6 * scored.perplexity);
        // The flagging rules of local scoring: " ne" and "ar" are far below the best guess.
        let opts = ProofreadOptions {
            min_token_logprob: -25.0,
            ..Default::default()
        };
        let found = proofread(text, &tokens, &opts);
        let words: Vec<&str> = found.words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["near"]);
    }

    #[test]
    fn an_answer_without_prompt_logprobs_is_named() {
        let answer = json!({"choices": [{"text": "x", "index": 0, "logprobs": null}]});
        assert!(matches!(
            parse_prompt_logprobs(&answer, "<|endoftext|>", "x"),
            Err(PromptError::Missing(_))
        ));
        let answer = json!({"choices": [{"text": "ab", "index": 0, "logprobs": {
            "tokens": ["a", "b"], "token_logprobs": [null, null], "text_offset": [0, 1],
            "top_logprobs": [null, null]}}]});
        assert!(matches!(
            parse_prompt_logprobs(&answer, "", "ab"),
            Err(PromptError::Missing(_))
        ));
        // Only the first token may lack one: it is left out, the rest kept.
        let answer = json!({"choices": [{"text": "ab", "index": 0, "logprobs": {
            "tokens": ["a", "b"], "token_logprobs": [null, -1.5], "text_offset": [0, 1],
            "top_logprobs": [null, {"b": -1.5}]}}]});
        let tokens = parse_prompt_logprobs(&answer, "", "ab").unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            (tokens[0].start, tokens[0].end, tokens[0].logprob),
            (1, 2, -1.5)
        );
        // A one-token text with none scored is empty, not an error.
        let answer = json!({"choices": [{"text": "a", "index": 0, "logprobs": {
            "tokens": ["a"], "token_logprobs": [null], "text_offset": [0],
            "top_logprobs": [null]}}]});
        assert!(parse_prompt_logprobs(&answer, "", "a").unwrap().is_empty());
        assert!(refuses_echo("`echo` is not supported with logprobs"));
        assert!(!refuses_echo("max_tokens must be positive"));
    }

    #[test]
    fn error_bodies_give_their_message() {
        let body = std::fs::read_to_string(format!(
            "{}/tests/fixtures/openai/error_422.txt",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let json_part = body.lines().next().unwrap();
        assert!(error_message(json_part).contains("max_tokens"));
        assert_eq!(
            error_message(r#"{"detail":"Invalid API Key"}"#),
            "Invalid API Key"
        );
        assert_eq!(
            error_message(r#"{"error":"model 'x' not found"}"#),
            "model 'x' not found"
        );
        assert!(names_unknown_model("model 'x' not found"));
        assert_eq!(error_message("  Bad Gateway "), "Bad Gateway");
    }
}
