//! Shared helpers of the integration tests.
#![allow(dead_code)]

pub mod hub;
pub mod lsp;

use std::path::PathBuf;

use candle_core::{DType, Device};
use quill::engine::tasks::sampling::{SamplingParams, StopAt};
use quill::engine::{Cancel, Completion, GenerateParams, LanguageModel};
use quill::models::{self, ModelSource};

/// The GPT-2 fixtures: `transformer.`-prefixed keys and the hub's bare spelling, two shapes.
pub const GPT2_FIXTURES: [&str; 2] = ["gpt2-tiny", "gpt2-tiny-bare"];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn load_fixture(name: &str) -> LanguageModel {
    let files = models::resolve(&ModelSource::Dir(fixture_dir(name)), &Default::default())
        .expect("fixture files");
    LanguageModel::load(&files, &Device::Cpu, DType::F32).expect("fixture loads")
}

pub fn reference(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_dir(name).join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// How many leading greedy steps of a reference are safe to compare: up to (not including) the
/// first step whose top-1/top-2 margin is a near tie for f32 arithmetic.
pub fn safe_greedy_steps(margins: &[f32], scale: f32) -> usize {
    margins
        .iter()
        .position(|m| *m < 1e-3 * scale.max(1.0))
        .unwrap_or(margins.len())
}

/// Log-probabilities agree within 1e-4, relative for very unlikely tokens: at log p = -25,
/// f32 arithmetic in another summation order (and the reference's 7 significant digits) give
/// about 4e-6 of relative noise.
pub fn assert_logprobs_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = 1e-4 * (w.abs() / 10.0).max(1.0);
        assert!((g - w).abs() <= tol, "{what}: token {i}: {g} vs {w}");
    }
}

/// The prompt for `text` at the start of a document: BOS, then its tokens.
pub fn document_prompt(lm: &LanguageModel, text: &str) -> Vec<u32> {
    let mut prompt = vec![lm.bos()];
    prompt.extend(lm.tokenizer().encode(text).unwrap().ids);
    prompt
}

/// Greedy continuations of `prompt` (token ids) by a fresh session: a cold computation.
pub fn cold_greedy(lm: &LanguageModel, prompt: &[u32], max_tokens: usize) -> Vec<Completion> {
    let params = GenerateParams {
        max_tokens,
        n: 1,
        sampling: SamplingParams::default(),
        stop: StopAt::Never,
    };
    let mut session = lm.new_session().unwrap();
    lm.complete(&mut session, prompt, &params, &Cancel::new())
        .unwrap()
        .completions
}
