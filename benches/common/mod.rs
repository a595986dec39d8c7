//! Shared by the benchmarks: a random checkpoint with GPT-2 124M's exact shapes, made on the
//! spot (no download), and timing helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

#[path = "../../src/allocator.rs"]
mod allocator;
#[allow(unused_imports)]
pub use allocator::keep_freed_buffers;

#[global_allocator]
static ALLOCATOR: allocator::HugePages = allocator::HugePages;

pub const N_EMBD: usize = 768;
pub const N_LAYER: usize = 12;
pub const N_HEAD: usize = 12;
pub const N_POSITIONS: usize = 1024;
pub const VOCAB: usize = 50257;

/// Random GPT-2 124M-shaped weights (normal, std 0.02; layer norms at 1 and 0), keyed as in the
/// hub's `openai-community/gpt2` (no `transformer.` prefix, `lm_head` tied).
pub fn random_weights(seed: u64) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    dev.set_seed(seed).ok();
    let rnd = |shape: &[usize]| Tensor::randn(0f32, 0.02, shape, &dev).unwrap();
    let ones = |n: usize| Tensor::ones(n, DType::F32, &dev).unwrap();
    let zeros = |n: usize| Tensor::zeros(n, DType::F32, &dev).unwrap();
    let n = N_EMBD;
    let mut w = HashMap::new();
    w.insert("wte.weight".to_string(), rnd(&[VOCAB, n]));
    w.insert("wpe.weight".to_string(), rnd(&[N_POSITIONS, n]));
    for i in 0..N_LAYER {
        let p = |k: &str| format!("h.{i}.{k}");
        w.insert(p("ln_1.weight"), ones(n));
        w.insert(p("ln_1.bias"), zeros(n));
        w.insert(p("attn.c_attn.weight"), rnd(&[n, 3 * n]));
        w.insert(p("attn.c_attn.bias"), zeros(3 * n));
        w.insert(p("attn.c_proj.weight"), rnd(&[n, n]));
        w.insert(p("attn.c_proj.bias"), zeros(n));
        w.insert(p("ln_2.weight"), ones(n));
        w.insert(p("ln_2.bias"), zeros(n));
        w.insert(p("mlp.c_fc.weight"), rnd(&[n, 4 * n]));
        w.insert(p("mlp.c_fc.bias"), zeros(4 * n));
        w.insert(p("mlp.c_proj.weight"), rnd(&[4 * n, n]));
        w.insert(p("mlp.c_proj.bias"), zeros(n));
    }
    w.insert("ln_f.weight".to_string(), ones(n));
    w.insert("ln_f.bias".to_string(), zeros(n));
    w
}

pub fn config_json(bos: u32, eos: u32) -> String {
    serde_json::json!({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": VOCAB, "n_positions": N_POSITIONS, "n_embd": N_EMBD,
        "n_layer": N_LAYER, "n_head": N_HEAD, "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5, "bos_token_id": bos, "eos_token_id": eos,
    })
    .to_string()
}

/// Writes a 124M-shaped checkpoint in the hub layout into `dir`, with the tiny fixture's
/// tokenizer (its ids are a subset of the vocabulary).
pub fn write_checkpoint(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(fixture.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let eos = 991;
    std::fs::write(dir.join("config.json"), config_json(eos, eos)).unwrap();
    candle_core::safetensors::save(&random_weights(1), dir.join("model.safetensors")).unwrap();
}

/// Runs `f` `reps` times after one warm-up; returns the median in milliseconds.
pub fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The value after `--name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Compute threads for the language-server benchmarks (`--threads N`): every core by default,
/// as the PyTorch and llama.cpp baselines use (the server itself leaves the editor one).
pub fn threads() -> usize {
    arg("--threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
