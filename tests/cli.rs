//! End-to-end tests of the `quill` binary: results against the transformers references, the hub
//! download through `HF_ENDPOINT`, and the errors a user meets.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use candle_core::quantized::GgmlDType;

use support::hub::HubServer;
use support::*;

fn quill(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
    cmd.args(args)
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_HUB_OFFLINE")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("quill-test-no-hf-home"),
        )
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run quill")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "quill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn model_arg(name: &str) -> String {
    fixture_dir(name).display().to_string()
}

#[test]
fn complete_prints_the_greedy_continuation_of_transformers() {
    for name in GPT2_FIXTURES {
        let reference = reference(name);
        let p = &reference["prompts"][2];
        let want = ids(&p["greedy_bos_ids"]);
        let safe = safe_greedy_steps(
            &floats(&p["greedy_bos_margins"]),
            p["logits_scale"].as_f64().unwrap() as f32,
        )
        .min(12);
        let eos = reference["eos_token_id"].as_u64().unwrap() as u32;
        let steps = want.iter().take(safe).take_while(|&&t| t != eos).count();
        let text = p["text"].as_str().unwrap();
        let out = run(&mut quill(&[
            "complete",
            "--model",
            &model_arg(name),
            "--max-tokens",
            &steps.to_string(),
            "--json",
            text,
        ]));
        let json = stdout_json(&out);
        let c = &json["completions"];
        assert_eq!(c.as_array().unwrap().len(), 1);
        assert_eq!(ids(&c[0]["tokens"]), want[..steps], "{name}");
        assert_eq!(c[0]["logprobs"].as_array().unwrap().len(), steps);
        // The plain output is the same text, without the prompt.
        let plain = run(&mut quill(&[
            "complete",
            "--model",
            &model_arg(name),
            "--max-tokens",
            &steps.to_string(),
            text,
        ]));
        let printed = String::from_utf8(plain.stdout).unwrap();
        assert_eq!(
            printed.strip_suffix('\n').unwrap(),
            c[0]["text"].as_str().unwrap()
        );
    }
}

#[test]
fn complete_reads_stdin_and_samples_repeatably_with_a_seed() {
    let args = [
        "complete",
        "--model",
        &model_arg("gpt2-tiny"),
        "--temperature",
        "1.0",
        "--top-k",
        "50",
        "-n",
        "3",
        "--seed",
        "7",
        "--json",
        "-",
    ];
    let go = || {
        let mut child = quill(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"The cat").unwrap();
        stdout_json(&child.wait_with_output().unwrap())
    };
    let a = go();
    assert_eq!(a, go(), "the same seed gives the same completions");
    let texts: Vec<&str> = a["completions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert!(!texts.is_empty() && texts.len() <= 3);
    let mut unique = texts.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        texts.len(),
        "duplicates are removed: {texts:?}"
    );
}

#[test]
fn score_prints_every_token_with_bos_in_front() {
    for name in GPT2_FIXTURES {
        let reference = reference(name);
        for s in reference["scores"].as_array().unwrap() {
            let text = s["text"].as_str().unwrap();
            let json = stdout_json(&run(&mut quill(&[
                "score",
                "--model",
                &model_arg(name),
                "--json",
                text,
            ])));
            let tokens = json["tokens"].as_array().unwrap();
            assert_eq!(tokens.len(), ids(&s["ids"]).len());
            let got: Vec<f32> = tokens
                .iter()
                .map(|t| t["logprob"].as_f64().unwrap() as f32)
                .collect();
            assert_logprobs_close(&got, &floats(&s["logprobs"]), &format!("{name} {text:?}"));
            let starts: Vec<u32> = tokens
                .iter()
                .map(|t| t["start"].as_u64().unwrap() as u32)
                .collect();
            assert_eq!(starts, ids(&s["start"]));
            let total = json["total_logprob"].as_f64().unwrap();
            assert!((total - s["total_logprob"].as_f64().unwrap()).abs() < 1e-3);
            let ppl = json["perplexity"].as_f64().unwrap();
            assert!((ppl - s["perplexity"].as_f64().unwrap()).abs() < 1e-3 * ppl);
        }
    }
}

/// Runs quill expecting failure; returns stderr.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    stderr
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn bad_models_get_errors_that_name_the_file_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let complete = |dir: &Path| {
        fails(
            quill(&["complete", "--model", &dir.display().to_string(), "hello"])
                .env("HF_HUB_OFFLINE", "1"),
        )
    };

    let missing = tmp.path().join("nope");
    let err = complete(&missing);
    assert!(
        err.contains("does not exist") && err.contains("nope"),
        "{err}"
    );

    let no_tok = tmp.path().join("no-tokenizer");
    copy_fixture("gpt2-tiny", &no_tok);
    std::fs::remove_file(no_tok.join("tokenizer.json")).unwrap();
    let err = complete(&no_tok);
    assert!(
        err.contains("tokenizer.json") && err.contains("missing"),
        "{err}"
    );

    let no_weights = tmp.path().join("no-weights");
    copy_fixture("gpt2-tiny", &no_weights);
    std::fs::remove_file(no_weights.join("model.safetensors")).unwrap();
    let err = complete(&no_weights);
    assert!(
        err.contains("model.safetensors") && err.contains("missing"),
        "{err}"
    );

    let truncated = tmp.path().join("truncated");
    copy_fixture("gpt2-tiny", &truncated);
    let weights = truncated.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = complete(&truncated);
    assert!(
        err.contains("model.safetensors") && err.contains("damaged or incomplete"),
        "{err}"
    );

    let garbage = tmp.path().join("garbage");
    copy_fixture("gpt2-tiny", &garbage);
    std::fs::write(garbage.join("model.safetensors"), b"not safetensors at all").unwrap();
    let err = complete(&garbage);
    assert!(err.contains("model.safetensors"), "{err}");

    let other = tmp.path().join("other-arch");
    copy_fixture("gpt2-tiny", &other);
    let config = std::fs::read_to_string(other.join("config.json")).unwrap();
    std::fs::write(
        other.join("config.json"),
        config
            .replace("\"gpt2\"", "\"llama\"")
            .replace("GPT2LMHeadModel", "LlamaForCausalLM"),
    )
    .unwrap();
    let err = complete(&other);
    assert!(
        err.contains("llama") && err.contains("config.json"),
        "{err}"
    );

    let bad_tok = tmp.path().join("bad-tokenizer");
    copy_fixture("gpt2-tiny", &bad_tok);
    std::fs::write(bad_tok.join("tokenizer.json"), b"{\"version\": 1").unwrap();
    let err = complete(&bad_tok);
    assert!(err.contains("tokenizer.json"), "{err}");

    let mismatched = tmp.path().join("mismatched");
    copy_fixture("gpt2-tiny", &mismatched);
    std::fs::copy(
        fixture_dir("gpt2-tiny-bare").join("model.safetensors"),
        mismatched.join("model.safetensors"),
    )
    .unwrap();
    let err = complete(&mismatched);
    assert!(err.contains("do not match config.json"), "{err}");
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let model = model_arg("gpt2-tiny");
    let long = "word ".repeat(400);
    let err = fails(&mut quill(&["complete", "--model", &model, &long]));
    assert!(err.contains("context") && err.contains("128"), "{err}");
    let err = fails(&mut quill(&[
        "complete", "--model", &model, "--device", "tpu", "x",
    ]));
    assert!(err.contains("tpu"), "{err}");
    let err = fails(&mut quill(&[
        "complete", "--model", &model, "--dtype", "f64", "x",
    ]));
    assert!(err.contains("f64"), "{err}");
    let err = fails(&mut quill(&[
        "complete", "--model", &model, "--device", "cuda", "x",
    ]));
    assert!(err.contains("cuda"), "{err}");
}

#[test]
fn offline_without_a_cache_says_how_to_fetch() {
    let home = tempfile::tempdir().unwrap();
    let err = fails(
        quill(&["complete", "--model", "someone/tiny-gpt2", "hi"])
            .env("HF_HOME", home.path())
            .env("HF_HUB_OFFLINE", "1"),
    );
    assert!(
        err.contains("quill fetch") && err.contains("someone/tiny-gpt2"),
        "{err}"
    );
}

#[test]
fn fetch_downloads_through_hf_endpoint_and_later_runs_work_offline() {
    let server = HubServer::start(&[
        ("quill-test/tiny-gpt2", fixture_dir("gpt2-tiny")),
        ("quill-test/tiny-t5", fixture_dir("gpt2-tiny-bare")),
    ]);
    let home = tempfile::tempdir().unwrap();
    let with_env = |cmd: &mut Command| {
        cmd.env("HF_HOME", home.path())
            .env("HF_ENDPOINT", &server.endpoint);
    };
    let mut fetch = quill(&[
        "fetch",
        "--model",
        "quill-test/tiny-gpt2",
        "--t5-model",
        "quill-test/tiny-t5",
    ]);
    with_env(&mut fetch);
    let out = run(&mut fetch);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let downloads = server.downloads.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(downloads, 6, "three files of each model");
    let cached = home
        .path()
        .join("hub/models--quill-test--tiny-gpt2/snapshots");
    assert!(cached.is_dir(), "files land in HF_HOME's hub cache");

    // Offline, from the cache: the same answer as from the fixture directory.
    let mut offline = quill(&[
        "score",
        "--model",
        "quill-test/tiny-gpt2",
        "--offline",
        "--json",
        "The cat",
    ]);
    with_env(&mut offline);
    offline.env("HF_ENDPOINT", "http://127.0.0.1:9"); // unreachable: must not be used
    let a = stdout_json(&run(&mut offline));
    let b = stdout_json(&run(&mut quill(&[
        "score",
        "--model",
        &model_arg("gpt2-tiny"),
        "--json",
        "The cat",
    ])));
    assert_eq!(a, b);

    // Online again with everything cached: nothing is downloaded twice.
    let mut again = quill(&[
        "score",
        "--model",
        "quill-test/tiny-gpt2",
        "--json",
        "The cat",
    ]);
    with_env(&mut again);
    assert_eq!(stdout_json(&run(&mut again)), b);
    assert_eq!(
        server.downloads.load(std::sync::atomic::Ordering::SeqCst),
        downloads
    );

    // A repository the hub does not have.
    let mut missing = quill(&["complete", "--model", "quill-test/absent", "hi"]);
    with_env(&mut missing);
    let err = fails(&mut missing);
    assert!(
        err.contains("quill-test/absent") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn quantize_writes_a_model_directory_that_later_runs_load_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("gpt2-q8");
    let target_arg = target.display().to_string();
    let model = model_arg("gpt2-tiny");
    let out = run(&mut quill(&[
        "--model",
        &model,
        "--dtype",
        "q8_0",
        "quantize",
        &target_arg,
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("model.gguf"));
    for file in ["model.gguf", "config.json", "tokenizer.json"] {
        assert!(target.join(file).is_file(), "{file} was not written");
    }
    let text = "The quick brown fox jumps over the lazy dog.";
    let direct = stdout_json(&run(&mut quill(&[
        "--model", &model, "--dtype", "q8_0", "score", "--json", text,
    ])));
    let loaded = stdout_json(&run(&mut quill(&[
        "--model",
        &target_arg,
        "score",
        "--json",
        text,
    ])));
    assert_eq!(direct, loaded, "the file holds the quantized model exactly");
    let f32 = stdout_json(&run(&mut quill(&[
        "--model", &model, "score", "--json", text,
    ])));
    assert_ne!(f32, loaded, "and it is not the f32 model");
}

/// `quill quantize` into `dir` (`--model`, `--dtype`): stdout and stderr of a run that succeeded.
fn quantize_ok(model: &str, dtype: &str, dir: &Path) -> (String, String) {
    let out = run(&mut quill(&[
        "--model",
        model,
        "--dtype",
        dtype,
        "quantize",
        &dir.display().to_string(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).to_string(), stderr)
}

/// A written GGUF file: its `general.file_type` and its tensors by name.
struct Gguf {
    file_type: u32,
    tensors: std::collections::BTreeMap<String, GgufTensor>,
}

struct GgufTensor {
    dtype: GgmlDType,
    dims: Vec<usize>,
    /// Dequantized.
    values: Vec<f32>,
    /// As stored.
    raw: Vec<u8>,
}

fn read_gguf(path: &Path) -> Gguf {
    use candle_core::quantized::gguf_file::{Content, Value};
    let mut file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let content = Content::read(&mut file).unwrap();
    let file_type = match content.metadata.get("general.file_type") {
        Some(Value::U32(t)) => *t,
        other => panic!("general.file_type is {other:?}"),
    };
    let tensors = content
        .tensor_infos
        .keys()
        .map(|name| {
            let q = content
                .tensor(&mut file, name, &candle_core::Device::Cpu)
                .unwrap();
            let values = q
                .dequantize(&candle_core::Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let tensor = GgufTensor {
                dtype: q.dtype(),
                dims: q.shape().dims().to_vec(),
                values,
                raw: q.data().unwrap().to_vec(),
            };
            (name.clone(), tensor)
        })
        .collect();
    Gguf { file_type, tensors }
}

/// The linear layers and the output projection: what `--dtype` sets.
fn is_matrix(name: &str) -> bool {
    name == "output.weight"
        || ["attn_qkv", "attn_output", "ffn_up", "ffn_down"]
            .iter()
            .any(|m| name.ends_with(&format!(".{m}.weight")))
}

#[test]
fn quantize_converts_a_q8_0_gguf_source_to_the_f32_it_says_it_wrote() {
    // Found as a user: `--dtype f32` on a q8_0 GGUF model wrote the q8_0 blocks as stored (and
    // file_type 7) but printed "f32".
    let dir = tempfile::tempdir().unwrap();
    let q8 = dir.path().join("q8");
    quantize_ok(&model_arg("gpt2-tiny"), "q8_0", &q8);
    let source = read_gguf(&q8.join("model.gguf"));
    assert_eq!(source.file_type, 7, "ggml's MOSTLY_Q8_0");

    let f32_dir = dir.path().join("f32");
    let (stdout, stderr) = quantize_ok(&q8.display().to_string(), "f32", &f32_dir);
    assert!(
        stdout.contains("MB, f32)") && !stdout.contains("q8_0"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "model.gguf is q8_0: dequantized to f32, which does not restore the precision \
             q8_0 dropped"
        ),
        "{stderr}"
    );
    let written = read_gguf(&f32_dir.join("model.gguf"));
    assert_eq!(written.file_type, 0, "ggml's ALL_F32");
    assert_eq!(
        written.tensors.keys().collect::<Vec<_>>(),
        source.tensors.keys().collect::<Vec<_>>()
    );
    let mut matrices = 0;
    for (name, t) in &written.tensors {
        let src = &source.tensors[name];
        assert_eq!(t.dtype, GgmlDType::F32, "{name}");
        assert_eq!(t.dims, src.dims, "{name}");
        // The dequantized blocks, exactly.
        assert_eq!(t.values, src.values, "{name}");
        if is_matrix(name) {
            assert_eq!(src.dtype, GgmlDType::Q8_0, "{name}");
            matrices += 1;
        }
    }
    assert_eq!(matrices, 9, "2 layers of 4 and the output projection");

    // The file runs, and it is still the q8_0 model's weights: dequantizing does not give back
    // the original f32 checkpoint.
    let text = "The quick brown fox jumps over the lazy dog.";
    let score = |model: &str| {
        stdout_json(&run(&mut quill(&[
            "--model", model, "score", "--json", text,
        ])))
    };
    assert_ne!(
        score(&f32_dir.display().to_string()),
        score(&model_arg("gpt2-tiny"))
    );
}

#[test]
fn quantize_of_a_gguf_source_in_the_same_format_copies_its_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let q8 = dir.path().join("q8");
    quantize_ok(&model_arg("gpt2-tiny"), "q8_0", &q8);
    let again = dir.path().join("again");
    let (stdout, stderr) = quantize_ok(&q8.display().to_string(), "q8_0", &again);
    assert!(stdout.contains("MB, q8_0)"), "{stdout}");
    assert!(!stderr.contains("note"), "nothing is lost: {stderr}");
    let (source, written) = (
        read_gguf(&q8.join("model.gguf")),
        read_gguf(&again.join("model.gguf")),
    );
    assert_eq!(written.file_type, 7);
    assert_eq!(written.tensors.len(), source.tensors.len());
    for (name, t) in &written.tensors {
        let src = &source.tensors[name];
        assert_eq!((t.dtype, &t.dims), (src.dtype, &src.dims), "{name}");
        assert!(t.raw == src.raw, "{name}: the blocks as stored");
    }
}

#[test]
fn quantize_requantizes_a_q8_0_gguf_source_to_q4_k_and_names_what_stays_f32() {
    let dir = tempfile::tempdir().unwrap();
    let q8 = dir.path().join("q8");
    quantize_ok(&model_arg("gpt2-tiny"), "q8_0", &q8);
    let q4 = dir.path().join("q4");
    let (stdout, stderr) = quantize_ok(&q8.display().to_string(), "q4_k", &q4);
    // gpt2-tiny's rows are 64 and 256 weights: only ffn_down's fit q4_k's 256-weight blocks.
    assert!(
        stdout.contains("MB, q4_k for 2 of 9 matrices, f32 for 7)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("model.gguf is q8_0: re-quantized to q4_k from its dequantized values"),
        "{stderr}"
    );
    assert!(
        stderr.contains("7 of 9 matrices") && stderr.contains("written as f32"),
        "{stderr}"
    );
    let (source, written) = (
        read_gguf(&q8.join("model.gguf")),
        read_gguf(&q4.join("model.gguf")),
    );
    assert_eq!(
        written.file_type, 14,
        "ggml's MOSTLY_Q4_K_S: q4_K everywhere it fits"
    );
    for (name, t) in &written.tensors {
        let src = &source.tensors[name];
        if name.ends_with(".ffn_down.weight") {
            assert_eq!(t.dtype, GgmlDType::Q4K, "{name}");
            let scale = src.values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = max_diff(&t.values, &src.values);
            assert!(err > 0.0 && err < 0.1 * scale, "{name}: {err} of {scale}");
        } else {
            assert_eq!(t.dtype, GgmlDType::F32, "{name}");
            assert_eq!(t.values, src.values, "{name}");
        }
    }
}

#[test]
fn quantize_refuses_a_format_that_no_matrix_can_take() {
    // A GPT-2 of 32-wide rows (and 128-wide MLP rows): no row is a whole q4_k block.
    let dir = tempfile::tempdir().unwrap();
    let narrow = dir.path().join("narrow");
    std::fs::create_dir_all(&narrow).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir("gpt2-tiny").join("config.json")).unwrap(),
    )
    .unwrap();
    let (n, vocab) = (32usize, config["vocab_size"].as_u64().unwrap() as usize);
    config["n_embd"] = n.into();
    config["n_head"] = 2.into();
    config["n_layer"] = 1.into();
    std::fs::write(narrow.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixture_dir("gpt2-tiny").join("tokenizer.json"),
        narrow.join("tokenizer.json"),
    )
    .unwrap();
    let dev = candle_core::Device::Cpu;
    let t = |dims: &[usize]| candle_core::Tensor::randn(0f32, 0.02, dims, &dev).unwrap();
    let mut tensors = std::collections::HashMap::new();
    for (name, dims) in [
        ("wte.weight", vec![vocab, n]),
        ("wpe.weight", vec![128, n]),
        ("h.0.ln_1.weight", vec![n]),
        ("h.0.ln_1.bias", vec![n]),
        ("h.0.attn.c_attn.weight", vec![n, 3 * n]),
        ("h.0.attn.c_attn.bias", vec![3 * n]),
        ("h.0.attn.c_proj.weight", vec![n, n]),
        ("h.0.attn.c_proj.bias", vec![n]),
        ("h.0.ln_2.weight", vec![n]),
        ("h.0.ln_2.bias", vec![n]),
        ("h.0.mlp.c_fc.weight", vec![n, 4 * n]),
        ("h.0.mlp.c_fc.bias", vec![4 * n]),
        ("h.0.mlp.c_proj.weight", vec![4 * n, n]),
        ("h.0.mlp.c_proj.bias", vec![n]),
        ("ln_f.weight", vec![n]),
        ("ln_f.bias", vec![n]),
    ] {
        tensors.insert(name.to_string(), t(&dims));
    }
    candle_core::safetensors::save(&tensors, narrow.join("model.safetensors")).unwrap();
    let narrow_arg = narrow.display().to_string();

    let out_dir = dir.path().join("q4");
    let err = fails(&mut quill(&[
        "--model",
        &narrow_arg,
        "--dtype",
        "q4_k",
        "quantize",
        &out_dir.display().to_string(),
    ]));
    assert!(
        err.contains("cannot write")
            && err.contains("safetensors")
            && err.contains("as q4_k")
            && err.contains("256-weight blocks")
            && err.contains("--dtype q8_0"),
        "{err}"
    );
    assert!(!out_dir.join("model.gguf").exists(), "nothing was written");

    // The same from a GGUF source names its format; q8_0, as the error says, is written.
    let q8 = dir.path().join("q8");
    let (stdout, _) = quantize_ok(&narrow_arg, "q8_0", &q8);
    assert!(stdout.contains("MB, q8_0)"), "{stdout}");
    let err = fails(&mut quill(&[
        "--model",
        &q8.display().to_string(),
        "--dtype",
        "q4_k",
        "quantize",
        &out_dir.display().to_string(),
    ]));
    assert!(
        err.contains("model.gguf (q8_0) as q4_k") && err.contains("--dtype q8_0"),
        "{err}"
    );
    assert!(!out_dir.join("model.gguf").exists(), "nothing was written");
}

#[test]
fn a_hub_repository_of_a_gguf_file_alone_loads_and_then_runs_offline() {
    // As llama.cpp's GPT-2 repositories are: model.gguf and no config.json or tokenizer.json.
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let model = model_arg("gpt2-tiny");
    let repo_arg = repo.display().to_string();
    let out = run(&mut quill(&[
        "--model", &model, "--dtype", "q8_0", "quantize", &repo_arg,
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(repo.join("config.json")).unwrap();
    std::fs::remove_file(repo.join("tokenizer.json")).unwrap();
    let server = HubServer::start(&[("quill-test/tiny-gguf", repo.clone())]);
    let home = tempfile::tempdir().unwrap();
    let text = "The quick brown fox <|endoftext|> jumps.";
    let score = |endpoint: &str, offline: bool| {
        let mut cmd = quill(&["--model", "quill-test/tiny-gguf", "score", "--json", text]);
        cmd.env("HF_HOME", home.path()).env("HF_ENDPOINT", endpoint);
        if offline {
            cmd.arg("--offline");
        }
        stdout_json(&run(&mut cmd))
    };
    let direct = stdout_json(&run(&mut quill(&[
        "--model", &model, "--dtype", "q8_0", "score", "--json", text,
    ])));
    assert_eq!(score(&server.endpoint, false), direct);
    assert_eq!(
        server.downloads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only model.gguf is there to download"
    );
    assert_eq!(score("http://127.0.0.1:9", true), direct, "from the cache");
    // `quill fetch` names the cached repository, not where the config was rebuilt.
    let t5 = model_arg("t5-tiny");
    let mut fetch = quill(&[
        "--model",
        "quill-test/tiny-gguf",
        "--t5-model",
        &t5,
        "fetch",
    ]);
    fetch
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9");
    let out = run(fetch.arg("--offline"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("models--quill-test--tiny-gguf"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn quill_cpu_forces_a_path_and_refuses_one_it_cannot_run() {
    let text = "The quick brown fox jumps over the lazy dog.";
    let score = |cpu: Option<&str>| {
        let mut cmd = quill(&["score", "--model", &model_arg("gpt2-tiny"), "--json", text]);
        match cpu {
            Some(v) => cmd.env("QUILL_CPU", v),
            None => cmd.env_remove("QUILL_CPU"),
        };
        run(&mut cmd)
    };
    let fastest = stdout_json(&score(None));
    let portable = stdout_json(&score(Some("portable")));
    let (a, b) = (fastest.to_string(), portable.to_string());
    assert!(a.contains("logprob") && a.len() > 100, "{a}");
    // Same tokens, and log-probabilities that differ by the kernels' rounding at most.
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        let mut out = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<f64>) {
            match v {
                serde_json::Value::Number(n) => out.push(n.as_f64().unwrap()),
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        walk(v, &mut out);
        out
    };
    let (x, y) = (numbers(&fastest), numbers(&portable));
    assert_eq!(x.len(), y.len(), "{a}\n{b}");
    for (x, y) in x.iter().zip(&y) {
        assert!(
            (x - y).abs() <= 1e-3 * x.abs().max(1.0),
            "{x} vs {y}\n{a}\n{b}"
        );
    }
    for (value, says) in [
        (
            "sse9",
            "QUILL_CPU=\"sse9\" is not a CPU path; use portable, avx2, avx512 or neon",
        ),
        #[cfg(target_arch = "x86_64")]
        (
            "neon",
            "QUILL_CPU=neon cannot be used: this is not an aarch64 build",
        ),
        #[cfg(target_arch = "aarch64")]
        (
            "avx2",
            "QUILL_CPU=avx2 cannot be used: this is not an x86-64 build",
        ),
    ] {
        let out = score(Some(value));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value}: accepted");
        assert!(stderr.contains(says), "{value}: {stderr}");
        assert!(out.stdout.is_empty(), "{value}: printed a result");
    }
}

/// `quill check` on the fixture with thresholds that flag words, in `dir`, with the user's
/// config directory `config`.
fn check_in(dir: &Path, config: &Path, args: &[&str]) -> Output {
    run(quill(&["check", "--model", &model_arg("gpt2-tiny")])
        .args([
            "--min-token-logprob",
            "-25",
            "--min-gap",
            "8",
            "--max-sentence-perplexity",
            "1e12",
            "--json",
        ])
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config))
}

/// The flagged words of a `check --json` run.
fn checked_words(out: &Output) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "unlikely-token")
        .map(|f| f["word"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn check_honours_the_dictionaries_and_ignore_comments() {
    let para = "We sat in the café and ordered coffee. It was good.";
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let (proj, config) = (root.join("proj"), root.join("config"));
    let sub = proj.join("docs/guide");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(&config).unwrap();
    let file = sub.join("notes.md");
    std::fs::write(&file, format!("{para}\n")).unwrap();
    let f = file.to_str().unwrap();
    let base = checked_words(&check_in(&root, &config, &["--ignore-repeated", "0", f]));
    assert!(
        base.len() >= 3,
        "three flagged words to work with: {base:?}"
    );
    let without = |ws: &[String], gone: &[&String]| -> Vec<String> {
        ws.iter().filter(|w| !gone.contains(w)).cloned().collect()
    };
    let (w1, w2, w3) = (&base[0], &base[1], &base[2]);

    // The nearest .quill/dictionary.txt above the file, the user's, and --dictionary files.
    std::fs::create_dir_all(proj.join(".quill")).unwrap();
    std::fs::write(
        proj.join(".quill/dictionary.txt"),
        format!("# ours\n{w1}\n"),
    )
    .unwrap();
    let out = check_in(&root, &config, &["--ignore-repeated", "0", f]);
    assert_eq!(checked_words(&out), without(&base, &[w1]));
    std::fs::create_dir_all(config.join("quill")).unwrap();
    std::fs::write(config.join("quill/dictionary.txt"), format!("{w2}\n")).unwrap();
    let extra = root.join("extra.txt");
    std::fs::write(&extra, format!("{w3}\n")).unwrap();
    let out = check_in(&root, &config, &["--ignore-repeated", "0", f]);
    assert_eq!(checked_words(&out), without(&base, &[w1, w2]));
    let out = check_in(
        &root,
        &config,
        &[
            "--ignore-repeated",
            "0",
            "--dictionary",
            extra.to_str().unwrap(),
            f,
        ],
    );
    assert_eq!(checked_words(&out), without(&base, &[w1, w2, w3]));

    // stdin: the dictionary is looked for from the current directory.
    let mut cmd = quill(&["check", "--model", &model_arg("gpt2-tiny")]);
    cmd.args(["--min-token-logprob", "-25", "--min-gap", "8"])
        .args([
            "--max-sentence-perplexity",
            "1e12",
            "--json",
            "--ignore-repeated",
            "0",
        ])
        .args(["--language", "markdown", "-"])
        .current_dir(&sub)
        .env("XDG_CONFIG_HOME", root.join("none"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{para}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(checked_words(&out), without(&base, &[w1]));

    // Ignore comments of each kind, and ignoreRepeated.
    std::fs::remove_file(proj.join(".quill/dictionary.txt")).unwrap();
    std::fs::remove_file(config.join("quill/dictionary.txt")).unwrap();
    let text = format!(
        "{para}\n\n<!-- quill: ignore-next-line -->\n{para}\n\n{para} <!-- quill: ignore-line -->\n\n\
         <!-- quill: off -->\n{para}\n<!-- quill: on -->\n\n{para}\n"
    );
    std::fs::write(&file, &text).unwrap();
    let out = check_in(&root, &config, &["--ignore-repeated", "0", f]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<u64> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * base.len(), "{lines:?}");
    assert!(lines.iter().all(|l| *l == 1 || *l == 12), "{lines:?}");
    // Five copies of every word: the default --ignore-repeated 3 silences them all.
    let out = check_in(&root, &config, &[f]);
    assert_eq!(checked_words(&out), Vec::<String>::new());
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_reports_bad_dictionaries_clearly() {
    let para = "We sat in the café and ordered coffee. It was good.";
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let file = root.join("notes.md");
    std::fs::write(&file, format!("{para}\n")).unwrap();
    let f = file.to_str().unwrap();
    let base = checked_words(&check_in(&root, &root, &[f]));
    assert!(!base.is_empty());
    // A missing --dictionary file is an error that names it.
    let missing = root.join("nope.txt");
    let out = check_in(
        &root,
        &root,
        &["--dictionary", missing.to_str().unwrap(), f],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.txt") && err.contains("does not exist"),
        "{err}"
    );
    // Not UTF-8 in part, and a million lines: a warning each, and the words read are used.
    let odd = root.join("odd.txt");
    std::fs::write(&odd, [b"\xff\xfe\n", base[0].as_bytes(), b"\n"].concat()).unwrap();
    let huge = root.join("huge.txt");
    let mut big = String::new();
    for i in 0..1_000_000 {
        big.push_str(&format!("word{i}\n"));
    }
    std::fs::write(&huge, big).unwrap();
    let start = std::time::Instant::now();
    let out = check_in(
        &root,
        &root,
        &[
            "--dictionary",
            odd.to_str().unwrap(),
            "--dictionary",
            huge.to_str().unwrap(),
            "--dictionary",
            root.to_str().unwrap(),
            f,
        ],
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("odd.txt") && err.contains("not UTF-8"),
        "{err}"
    );
    assert!(err.contains("huge.txt") && err.contains("200000"), "{err}");
    assert!(err.contains("is a directory"), "{err}");
    let words: Vec<String> = base.iter().filter(|w| *w != &base[0]).cloned().collect();
    assert_eq!(checked_words(&out), words);
}

#[test]
fn check_help_documents_the_dictionaries() {
    let out = run(&mut quill(&["check", "--help"]));
    let help = String::from_utf8(out.stdout).unwrap();
    for s in [
        "--dictionary <FILE>",
        ".quill/dictionary.txt",
        "quill: ignore-next-line",
        "quill: off",
        "--ignore-repeated",
    ] {
        assert!(help.contains(s), "{s} not in: {help}");
    }
}
