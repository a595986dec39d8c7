//! Quantized GPT-2 (`--dtype q8_0`, `q4_k`): its quality against f32 on the fixture texts,
//! measured as the agreement of the most likely next token and the log-probability error.

mod support;

use candle_core::Device;
use quill::engine::{Cancel, LanguageModel};
use quill::models::{self, ModelFiles, ModelSource};
use std::path::{Path, PathBuf};
use support::*;

fn resolve(path: &Path) -> ModelFiles {
    models::resolve(&ModelSource::Dir(path.into()), &Default::default()).unwrap()
}

fn load_files(files: &ModelFiles, dtype: &str) -> Result<LanguageModel, models::ModelError> {
    LanguageModel::load_format(files, &Device::Cpu, models::parse_format(dtype).unwrap())
}

fn load(name: &str, dtype: &str) -> LanguageModel {
    load_files(&resolve(&fixture_dir(name)), dtype).unwrap()
}

/// gpt2-tiny loaded in `dtype` and written by `save_gguf_dir` into `dir`: the model and the
/// GGUF file's path.
fn gpt2_tiny_gguf(dtype: &str, dir: &Path) -> (LanguageModel, PathBuf) {
    let lm = load("gpt2-tiny", dtype);
    let gguf = lm
        .save_gguf_dir(&resolve(&fixture_dir("gpt2-tiny")), dir)
        .unwrap();
    (lm, gguf)
}

/// (top-1 agreement, mean |log-prob error|) of `b` against `a` over the fixture's texts.
fn quality(a: &LanguageModel, b: &LanguageModel, name: &str) -> (f64, f64) {
    let reference = reference(name);
    let (mut agree, mut total, mut err) = (0usize, 0usize, 0f64);
    for s in reference["scores"]
        .as_array()
        .unwrap()
        .iter()
        .chain(reference["prompts"].as_array().unwrap())
    {
        let text = s["text"].as_str().unwrap();
        let x = a.score(text, &Cancel::new()).unwrap();
        let y = b.score(text, &Cancel::new()).unwrap();
        for (p, q) in x.tokens.iter().zip(&y.tokens) {
            agree += usize::from(p.best_id == q.best_id);
            err += (p.logprob - q.logprob).abs() as f64;
            total += 1;
        }
    }
    (agree as f64 / total as f64, err / total as f64)
}

#[test]
fn q8_0_quantizes_every_matrix_and_keeps_the_models_choices() {
    let f32 = load_fixture("gpt2-tiny");
    let q8 = load("gpt2-tiny", "q8_0");
    assert_eq!(
        q8.gpt2().quantized_matrices(),
        (9, 9),
        "2 layers x 4 matrices and the head"
    );
    let (agree, err) = quality(&f32, &q8, "gpt2-tiny");
    eprintln!("gpt2-tiny q8_0: top-1 agreement {agree:.3}, mean |log-prob error| {err:.4}");
    // The fixture's weights are scaled up for clear greedy margins, which also amplifies
    // rounding (q8_0 quantizes the activations too): it agrees on about 83% of positions and
    // is off by about 0.5 nats on log-probs of -12 to -40. A broken quantization would agree
    // on about 1 position in 992; the README reports the 124M-shaped model.
    assert!(agree >= 0.75, "top-1 agreement {agree}");
    assert!(err < 0.75, "mean log-prob error {err}");
}

#[test]
fn matrices_that_are_not_whole_blocks_stay_in_floats() {
    // n_embd 48 is no multiple of q8_0's 32-wide blocks; the MLP's 192-wide input is.
    let q8 = load("gpt2-tiny-bare", "q8_0");
    assert_eq!(
        q8.gpt2().quantized_matrices(),
        (3, 13),
        "only the 3 MLP output projections"
    );
    // q4_k's blocks are 256 wide: in gpt2-tiny only the MLP output projections (256 in) fit.
    let q4 = load("gpt2-tiny", "q4_k");
    assert_eq!(q4.gpt2().quantized_matrices(), (2, 9));
}

/// Log-probabilities of the fixture's texts under `lm`.
fn logprobs(lm: &LanguageModel, name: &str) -> Vec<f32> {
    let reference = reference(name);
    reference["scores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            let text = s["text"].as_str().unwrap();
            let scored = lm.score(text, &Cancel::new()).unwrap();
            scored.tokens.into_iter().map(|t| t.logprob)
        })
        .collect()
}

#[test]
fn half_precisions_stay_close_to_f32() {
    // f16 keeps 11 significant bits and bf16 8: the fixture's log-probs (-12 to -40) move by
    // about that much relative (f16: 0.012 nats on average with an f32 cache, 0.016 with the
    // f16 cache of the AVX2 and NEON paths), and the most likely token stays.
    let f32 = load_fixture("gpt2-tiny");
    for (dtype, max_err) in [("f16", 0.03), ("bf16", 0.25)] {
        let lm = load("gpt2-tiny", dtype);
        let (agree, err) = quality(&f32, &lm, "gpt2-tiny");
        eprintln!("gpt2-tiny {dtype}: top-1 agreement {agree:.3}, mean |log-prob error| {err:.4}");
        assert!(agree >= 0.9, "{dtype}: top-1 agreement {agree}");
        assert!(err < max_err, "{dtype}: mean log-prob error {err}");
        assert!(err > 0.0, "{dtype}: the weights were not rounded");
    }
}

#[test]
fn quantize_writes_gguf_that_loads_back_as_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["q8_0", "q4_k", "f16", "f32"] {
        let out = dir.path().join(dtype);
        let (lm, _) = gpt2_tiny_gguf(dtype, &out);
        let back_files = resolve(&out);
        assert!(back_files.is_gguf());
        // --dtype does not apply to a GGUF file: its matrices load as written.
        let back = load_files(&back_files, "f32").unwrap();
        assert_eq!(
            back.gpt2().quantized_matrices(),
            lm.gpt2().quantized_matrices()
        );
        assert_eq!(
            back.gpt2().weight_bytes(),
            lm.gpt2().weight_bytes(),
            "{dtype}"
        );
        assert_eq!(
            logprobs(&back, "gpt2-tiny"),
            logprobs(&lm, "gpt2-tiny"),
            "{dtype}: the file holds exactly the quantized model"
        );
    }
}

#[test]
fn a_truncated_gguf_file_is_named_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_, gguf) = gpt2_tiny_gguf("q8_0", dir.path());
    let bytes = std::fs::read(&gguf).unwrap();
    std::fs::write(&gguf, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load_files(&resolve(dir.path()), "f32")
        .err()
        .expect("a truncated file must not load")
        .to_string();
    assert!(
        err.contains("model.gguf") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn a_gguf_file_alone_brings_its_config_and_tokenizer() {
    // llama.cpp's converter writes model.gguf alone: quill rebuilds config.json and
    // tokenizer.json from its metadata, which must give the same tokens and log-probs.
    let dir = tempfile::tempdir().unwrap();
    let (lm, _) = gpt2_tiny_gguf("q8_0", dir.path());
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let alone = resolve(dir.path());
    assert!(alone.is_gguf() && !alone.config.starts_with(dir.path()));
    let back = load_files(&alone, "f32").unwrap();
    assert_eq!((back.bos(), back.eos()), (lm.bos(), lm.eos()));
    let inner = |lm: &LanguageModel| {
        let c = lm.gpt2().config();
        c.n_inner.unwrap_or(4 * c.n_embd)
    };
    assert_eq!(inner(&back), inner(&lm));
    assert_eq!(logprobs(&back, "gpt2-tiny"), logprobs(&lm, "gpt2-tiny"));
    // Offsets, special tokens and bytes that are no whole character come out the same.
    let text = "Hello, world!<|endoftext|> tabs\tand ünïcödé 12345";
    let (a, b) = (
        lm.score(text, &Cancel::new()).unwrap(),
        back.score(text, &Cancel::new()).unwrap(),
    );
    let spans = |s: &quill::engine::ScoredText| -> Vec<(u32, usize, usize, String)> {
        s.tokens
            .iter()
            .map(|t| (t.id, t.start, t.end, t.text.clone()))
            .collect()
    };
    assert_eq!(spans(&a), spans(&b));
    assert!(a.tokens.iter().any(|t| t.text == "<|endoftext|>"));
}

#[test]
fn a_gguf_file_named_directly_loads_as_its_directory_would() {
    // llama.cpp's files are named after their format, and users pass the file itself.
    let dir = tempfile::tempdir().unwrap();
    let (lm, written) = gpt2_tiny_gguf("q8_0", &dir.path().join("out"));
    let file = dir.path().join("gpt2-tiny.Q8_0.gguf");
    std::fs::rename(&written, &file).unwrap();
    let source = ModelSource::parse(file.to_str().unwrap(), None);
    assert_eq!(source, ModelSource::Dir(file.clone()));
    let named = models::resolve(&source, &Default::default()).unwrap();
    assert!(named.is_gguf() && named.weights == [file]);
    let back = load_files(&named, "f32").unwrap();
    assert_eq!(logprobs(&back, "gpt2-tiny"), logprobs(&lm, "gpt2-tiny"));
}

#[test]
fn a_gguf_file_without_tokenizer_metadata_is_named_with_the_key() {
    use candle_core::quantized::gguf_file::{self, Value};
    let dir = tempfile::tempdir().unwrap();
    let meta = [("general.architecture", Value::String("gpt2".into()))];
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let mut file = std::fs::File::create(dir.path().join("model.gguf")).unwrap();
    gguf_file::write(&mut file, &meta, &[]).unwrap();
    drop(file);
    let err = models::resolve(&ModelSource::Dir(dir.path().into()), &Default::default())
        .expect_err("no tokenizer, no model")
        .to_string();
    assert!(
        err.contains("model.gguf") && err.contains("tokenizer.ggml.model"),
        "{err}"
    );
}
