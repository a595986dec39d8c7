//! Engine benchmark on a random model with GPT-2 124M's exact shapes (f32, CPU): prompt
//! processing, decoding, batched candidates and cache reuse. `cargo bench --bench engine`
//! (add `-- --json` for machine-readable output, `-- --dtype q8_0` for a quantized model, which
//! also reports its agreement with f32). Compare with `scripts/bench_pytorch.py`. `-- --memory`
//! and `-- --load`: peak resident memory and load time of whole `quill complete` processes per
//! weight format; `-- --gemm`: the prompt products' rates.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use quill::engine::nets::gpt2::{Gpt2, Gpt2Config};
use quill::engine::tasks::session::Session;
use quill::engine::Cancel;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::*;

fn ids(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i * 7919 + salt * 104_729) % VOCAB as u32)
        .collect()
}

fn main() {
    common::keep_freed_buffers();
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let dtype = args
        .iter()
        .position(|a| a == "--dtype")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "f32".into());
    if let Some(dir) = arg("--save-checkpoint") {
        // The same random weights as every run here, for other programs (llama.cpp) to load.
        write_checkpoint(std::path::Path::new(&dir));
        return;
    }
    if args.iter().any(|a| a == "--memory") {
        memory();
        return;
    }
    if args.iter().any(|a| a == "--load") {
        load();
        return;
    }
    if args.iter().any(|a| a == "--gemm") {
        gemm_shapes();
        return;
    }
    let format = quill::models::parse_format(&dtype).unwrap();
    let config: Gpt2Config = serde_json::from_str(&config_json(50256, 50256)).unwrap();
    // One set of weights for the model and the f32 reference: `--checkpoint DIR` reads a saved
    // one (`--save-checkpoint`, what llama.cpp is given), else random ones are made here.
    let weights = match arg("--checkpoint") {
        Some(dir) => candle_core::safetensors::load(
            std::path::Path::new(&dir).join("model.safetensors"),
            &Device::Cpu,
        )
        .unwrap(),
        None => random_weights(1),
    };
    let vb = VarBuilder::from_tensors(
        weights.clone(),
        format.float_dtype(&Device::Cpu),
        &Device::Cpu,
    );
    let model = Gpt2::load_format(vb, &config, format).unwrap();
    let last_logits = |hidden: &Tensor| {
        let t = hidden.dim(0).unwrap();
        model.logits(&hidden.narrow(0, t - 1, 1).unwrap()).unwrap()
    };
    let mut rows: Vec<(String, f64, &str)> = Vec::new();

    // Prompt processing: a cold forward over the prompt and the last position's logits.
    for n in [128usize, 512] {
        let prompt = ids(n, 1);
        let ms = median_ms(5, || {
            let mut cache = model.new_cache().unwrap();
            let h = model.forward(&prompt, &mut cache).unwrap();
            last_logits(&h);
        });
        rows.push((
            format!("prompt_{n}_tokens_per_s"),
            n as f64 / ms * 1e3,
            "tokens/s",
        ));
    }
    if args.iter().any(|a| a == "--prompt-only") {
        // For profiling prompt processing alone: a few more prompts, then the figures.
        for _ in 0..5 {
            let mut cache = model.new_cache().unwrap();
            let h = model.forward(&ids(512, 1), &mut cache).unwrap();
            last_logits(&h);
        }
        for (k, v, unit) in &rows {
            println!("{k:<28} {v:>10.3} {unit}");
        }
        return;
    }

    // Decoding one token after a 512-token prompt.
    let prompt = ids(512, 2);
    let mut cache = model.new_cache().unwrap();
    model.forward(&prompt, &mut cache).unwrap();
    let mut step = 0u32;
    let decode_ms = median_ms(31, || {
        cache.truncate(512);
        let h = model.forward(&[step % 1000], &mut cache).unwrap();
        last_logits(&h);
        step += 1;
    });
    rows.push(("decode_ms_per_token".into(), decode_ms, "ms"));

    // Three candidates as one batch sharing the prompt's cache: a 16-step decode.
    let steps = 16;
    let batch_ms = median_ms(3, || {
        let mut batch = model.new_batch_cache(3, steps).unwrap();
        for s in 0..steps as u32 {
            let h = model
                .forward_shared(&[s, s + 1, s + 2], &cache, &mut batch)
                .unwrap();
            model.logits(&h).unwrap();
        }
    }) / steps as f64;
    rows.push(("batch3_ms_per_step".into(), batch_ms, "ms"));
    rows.push(("batch3_vs_single".into(), batch_ms / decode_ms, "x"));

    // One new token with the cache against the cold computation of the same 513 tokens.
    let mut extended = prompt.clone();
    extended.push(42);
    let cancel = Cancel::new();
    let mut session = Session::new(&model).unwrap();
    session.prime(&model, &prompt, &cancel).unwrap();
    let hit_ms = median_ms(11, || {
        session.truncate(512);
        let (h, stats) = session.prime(&model, &extended, &cancel).unwrap();
        assert_eq!(stats.fed, 1);
        model.logits(&h).unwrap();
    });
    let cold_ms = median_ms(3, || {
        let mut cold = Session::new(&model).unwrap();
        let (h, _) = cold.prime(&model, &extended, &cancel).unwrap();
        model.logits(&h).unwrap();
    });
    rows.push(("cache_hit_ms".into(), hit_ms, "ms"));
    rows.push(("cold_513_ms".into(), cold_ms, "ms"));
    rows.push(("cache_hit_vs_cold".into(), hit_ms / cold_ms, "x"));

    if dtype != "f32" {
        // Quality against f32 (the same weights) on one 256-token text: does the most likely
        // next token agree, and how far apart are the log-probabilities of the text's tokens?
        let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
        let reference = Gpt2::load(vb, &config).unwrap();
        let text = ids(256, 5);
        let a =
            quill::engine::tasks::scoring::score_ids(&reference, 50256, &text, &cancel).unwrap();
        let b = quill::engine::tasks::scoring::score_ids(&model, 50256, &text, &cancel).unwrap();
        let agree = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x.best_id == y.best_id)
            .count() as f64
            / a.len() as f64;
        let err = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x.logprob - y.logprob).abs() as f64)
            .sum::<f64>()
            / a.len() as f64;
        rows.push(("top1_agreement_vs_f32".into(), agree, "fraction"));
        rows.push(("mean_abs_logprob_error".into(), err, "nats"));
    }

    if json {
        let obj: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(k, v, _)| (k.clone(), serde_json::json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(obj));
    } else {
        println!(
            "quill engine, GPT-2 124M shapes, f32, {} threads",
            candle_core::utils::get_num_threads()
        );
        for (k, v, unit) in &rows {
            println!("{k:<28} {v:>10.3} {unit}");
        }
    }
}

/// `--gemm`: the f32 products of a prompt at GPT-2's shapes, quill's blocked kernel against
/// the gemm crate's (what candle's matmul calls), in GFLOP/s.
fn gemm_shapes() {
    let threads = rayon::current_num_threads();
    println!("f32 x·wT, {threads} threads: quill / gemm crate, GFLOP/s");
    for (m, k, n, what) in [
        (512, 768, 2304, "qkv, 512-token prompt"),
        (512, 3072, 768, "mlp down, 512 tokens"),
        (128, 768, 3072, "mlp up, 128-token piece"),
        (128, 768, 50257, "lm head, 128 scored tokens"),
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.01).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.01).collect();
        let mut out = vec![0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let ours = median_ms(5, || {
            quill::engine::cpu::gemm::xwt(&x, m, k, &w, n, &mut out, n);
        });
        let theirs = median_ms(5, || {
            quill::engine::cpu::gemm::xwt_gemm_crate(&x, m, k, &w, n, &mut out, n);
        });
        println!(
            "{m:>4}x{k:<4}x{n:<6} {what:<28} {:7.1} {:7.1}  ({:.2}x)",
            flops / ours / 1e6,
            flops / theirs / 1e6,
            theirs / ours
        );
    }
    use quill::engine::cpu::matrix::{Format, Matrix};
    let formats = [Format::F32, Format::F16, Format::Q8_0, Format::Q4K];
    println!("quill's Matrix x·wT per weight format, GFLOP/s: {formats:?}");
    for (m, k, n) in [
        (512, 768, 2304),
        (512, 768, 768),
        (512, 768, 3072),
        (512, 3072, 768),
        (1, 768, 3072),
        (3, 3072, 768),
    ] {
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
        let flops = 2.0 * (m * k * n) as f64;
        let rates: Vec<String> = formats
            .iter()
            .map(|&f| {
                let matrix = Matrix::from_f32(&w, n, k, f);
                let ms = median_ms(if m > 8 { 5 } else { 50 }, || {
                    std::hint::black_box(matrix.matmul_t(&x, m));
                });
                format!("{:7.1}", flops / ms / 1e6)
            })
            .collect();
        println!("{m:>4}x{k:<4}x{n:<6} {}", rates.join(" "));
    }
}

/// The 124M-shaped checkpoint as a user loads it, in `dir`: the f32 safetensors (written
/// once) and a `quill quantize`d GGUF per other format. `(dtype, label, model dir, file MB)`.
fn models_in_every_format(dir: &std::path::Path) -> Vec<(&'static str, String, PathBuf, f64)> {
    let f32_dir = dir.join("f32");
    write_checkpoint(&f32_dir);
    let quill = env!("CARGO_BIN_EXE_quill");
    ["f32", "f16", "q8_0", "q4_k"]
        .into_iter()
        .map(|dtype| {
            let model_dir = if dtype == "f32" {
                f32_dir.clone()
            } else {
                let out = dir.join(dtype);
                let status = std::process::Command::new(quill)
                    .args([
                        "--model",
                        f32_dir.to_str().unwrap(),
                        "--dtype",
                        dtype,
                        "quantize",
                    ])
                    .arg(&out)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success(), "quantize to {dtype}");
                out
            };
            let file = ["model.gguf", "model.safetensors"]
                .iter()
                .find_map(|f| std::fs::metadata(model_dir.join(f)).ok())
                .unwrap()
                .len() as f64
                / 1e6;
            let label = if dtype == "f32" {
                "f32 (safetensors)".to_string()
            } else {
                format!("{dtype} (gguf)")
            };
            (dtype, label, model_dir, file)
        })
        .collect()
}

/// A `quill complete` process on `model_dir` with this bench's threads, its output dropped.
fn quill_complete(model_dir: &std::path::Path, max_tokens: &str, prompt: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
    cmd.args(["--model", model_dir.to_str().unwrap()])
        .args(["--threads", &threads().to_string()])
        .args(["complete", "--max-tokens", max_tokens, prompt])
        .env("QUILL_LOG", "error");
    cmd
}

/// `--memory`: what a user's process holds. The 124M-shaped checkpoint is written once
/// (safetensors, f32) and converted with `quill quantize`; each model then completes 16 tokens
/// after a ~500-token prompt in its own `quill complete` process, whose peak resident set
/// GNU time reports.
fn memory() {
    let dir = std::env::temp_dir().join(format!("quill-bench-mem-{}", std::process::id()));
    let prompt = "the river ran slowly past the old mill and the children watched ".repeat(40);
    let models = models_in_every_format(&dir);
    println!("quill peak resident memory, GPT-2 124M shapes, `quill complete` of 16 tokens");
    println!("{:<22} {:>10} {:>12}", "weights", "file MB", "peak RSS MB");
    let mut results = serde_json::Map::new();
    for (dtype, label, model_dir, file) in models {
        let quill = quill_complete(&model_dir, "16", &prompt);
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(quill.get_program())
            .args(quill.get_args())
            .env("QUILL_LOG", "error")
            .output()
            .expect("GNU time (apt install time) runs quill");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kb: f64 = stderr.lines().last().unwrap().trim().parse().unwrap();
        println!("{label:<22} {file:>10.1} {:>12.1}", kb / 1e3);
        results.insert(
            dtype.into(),
            serde_json::json!({"file_mb": file, "peak_rss_mb": kb / 1e3}),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--load`: how long a user waits for a model. Whole `quill complete` processes of a
/// 2-token prompt and 1 token (loading is nearly all of it) from each format's file, after
/// one unmeasured process each, the formats interleaved over `--rounds` rounds (default 7):
/// fastest, median and slowest, in milliseconds.
fn load() {
    let dir = std::env::temp_dir().join(format!("quill-bench-load-{}", std::process::id()));
    let models = models_in_every_format(&dir);
    let rounds: usize = arg("--rounds").map_or(7, |r| r.parse().unwrap());
    let run = |model_dir: &PathBuf| {
        let start = Instant::now();
        let status = quill_complete(model_dir, "1", "the river")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "quill complete on {}",
            model_dir.display()
        );
        start.elapsed().as_secs_f64() * 1e3
    };
    for (_, _, model_dir, _) in &models {
        run(model_dir);
    }
    let mut times = vec![Vec::new(); models.len()];
    for _ in 0..rounds {
        for (t, (_, _, model_dir, _)) in times.iter_mut().zip(&models) {
            t.push(run(model_dir));
        }
    }
    println!("quill load: whole `quill complete` processes (2-token prompt, 1 token), ms");
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>9}",
        "weights", "file MB", "fastest", "median", "slowest"
    );
    let mut results = serde_json::Map::new();
    for ((dtype, label, _, file), t) in models.iter().zip(&mut times) {
        t.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (t[0], t[t.len() / 2], t[t.len() - 1]);
        println!("{label:<22} {file:>10.1} {lo:>9.0} {mid:>9.0} {hi:>9.0}");
        results.insert(
            dtype.to_string(),
            serde_json::json!({"file_mb": file, "ms": t}),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    let _ = std::fs::remove_dir_all(&dir);
}
