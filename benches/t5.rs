//! T5 benchmark on a random model with t5-small's exact shapes (f32, CPU): encode a 512-token
//! input, then greedy-decode exactly 60 tokens with the decoder's cache. `cargo bench --bench
//! t5` (`-- --json` for JSON). Compare with `scripts/bench_t5_pytorch.py`.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use quill::engine::nets::t5net::{T5Config, T5Net};
use quill::engine::tasks::sampling::argmax;

const D_MODEL: usize = 512;
const D_KV: usize = 64;
const D_FF: usize = 2048;
const LAYERS: usize = 6;
const HEADS: usize = 8;
const VOCAB: usize = 32128;
const BUCKETS: usize = 32;

fn weights() -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    dev.set_seed(3).ok();
    let rnd = |shape: &[usize], std: f64| Tensor::randn(0f32, std as f32, shape, &dev).unwrap();
    let ones = |n: usize| Tensor::ones(n, DType::F32, &dev).unwrap();
    let inner = HEADS * D_KV;
    let mut w = HashMap::new();
    w.insert("shared.weight".to_string(), rnd(&[VOCAB, D_MODEL], 1.0));
    let attn = |w: &mut HashMap<String, Tensor>, p: String| {
        for k in ["q", "k", "v"] {
            w.insert(format!("{p}.{k}.weight"), rnd(&[inner, D_MODEL], 0.05));
        }
        w.insert(format!("{p}.o.weight"), rnd(&[D_MODEL, inner], 0.05));
    };
    for stack in ["encoder", "decoder"] {
        for i in 0..LAYERS {
            let b = format!("{stack}.block.{i}");
            attn(&mut w, format!("{b}.layer.0.SelfAttention"));
            w.insert(format!("{b}.layer.0.layer_norm.weight"), ones(D_MODEL));
            let ff = if stack == "encoder" { 1 } else { 2 };
            if stack == "decoder" {
                attn(&mut w, format!("{b}.layer.1.EncDecAttention"));
                w.insert(format!("{b}.layer.1.layer_norm.weight"), ones(D_MODEL));
            }
            w.insert(
                format!("{b}.layer.{ff}.DenseReluDense.wi.weight"),
                rnd(&[D_FF, D_MODEL], 0.05),
            );
            w.insert(
                format!("{b}.layer.{ff}.DenseReluDense.wo.weight"),
                rnd(&[D_MODEL, D_FF], 0.05),
            );
            w.insert(format!("{b}.layer.{ff}.layer_norm.weight"), ones(D_MODEL));
        }
        w.insert(
            format!("{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
            rnd(&[BUCKETS, HEADS], 1.0),
        );
        w.insert(format!("{stack}.final_layer_norm.weight"), ones(D_MODEL));
    }
    w
}

fn main() {
    common::keep_freed_buffers();
    let json = std::env::args().any(|a| a == "--json");
    let config: T5Config = serde_json::from_value(serde_json::json!({
        "vocab_size": VOCAB, "d_model": D_MODEL, "d_kv": D_KV, "d_ff": D_FF,
        "num_layers": LAYERS, "num_heads": HEADS, "feed_forward_proj": "relu",
        "tie_word_embeddings": true, "decoder_start_token_id": 0, "eos_token_id": 1,
    }))
    .unwrap();
    let vb = VarBuilder::from_tensors(weights(), DType::F32, &Device::Cpu);
    let dtype = common::arg("--dtype").unwrap_or_else(|| "f32".into());
    let format = quill::models::parse_format(&dtype).unwrap();
    let model = T5Net::load(vb, &config, format).unwrap();
    let ids: Vec<u32> = (0..512u32)
        .map(|i| 2 + (i * 7919) % (VOCAB as u32 - 2))
        .collect();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap();
    let (mut enc_ms, mut dec_ms) = (Vec::new(), Vec::new());
    for rep in 0..4 {
        let t = Instant::now();
        let encoded = model.encode(&input).unwrap();
        let e = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let mut state = model.start_decoding(&encoded).unwrap();
        let mut last = 0;
        for _ in 0..60 {
            let logits = model.decode_step(last, &mut state).unwrap();
            last = argmax(&logits);
        }
        let d = t.elapsed().as_secs_f64() * 1e3;
        if rep > 0 {
            enc_ms.push(e);
            dec_ms.push(d);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (e, d) = (median(&mut enc_ms), median(&mut dec_ms));
    if json {
        println!(
            "{}",
            serde_json::json!({"encode_512_ms": e, "decode_60_ms": d, "total_ms": e + d})
        );
    } else {
        println!("quill T5, t5-small shapes, {dtype}");
        println!("encode 512 tokens     {e:>9.1} ms");
        println!(
            "decode 60 tokens      {d:>9.1} ms ({:.1} ms/token)",
            d / 60.0
        );
        println!("total                 {:>9.1} ms", e + d);
    }
}
