//! Keystroke latency of the language server, driven as an editor drives it: a random model with
//! GPT-2 124M's shapes, a 600-token document, then 20 characters typed at its end with a
//! completion request (4 tokens, 1 suggestion) after each. `cargo bench --bench lsp`.

mod common;
#[path = "../tests/support/lsp.rs"]
#[allow(dead_code)]
mod lsp_client;

use std::time::Instant;

use candle_core::{DType, Device};
use quill::engine::LanguageModel;
use quill::models::{self, ModelSource};
use serde_json::json;

const URI: &str = "file:///bench/doc.md";

fn main() {
    common::keep_freed_buffers();
    let json_out = std::env::args().any(|a| a == "--json");
    let dtype = common::arg("--dtype").unwrap_or_else(|| "f32".into());
    let dir = std::env::temp_dir().join(format!("quill-bench-124m-{}", std::process::id()));
    common::write_checkpoint(&dir);
    let files = models::resolve(&ModelSource::Dir(dir.clone()), &Default::default()).unwrap();
    let lm = LanguageModel::load(&files, &Device::Cpu, DType::F32).unwrap();

    let paragraph = "The river ran slowly past the old mill, and the children watched the boats \
                     drift under the bridge while their parents talked about the harvest. ";
    let mut text = String::new();
    while lm.tokenizer().encode(&text).unwrap().ids.len() < 600 {
        text.push_str(paragraph);
    }
    let n_tokens = lm.tokenizer().encode(&text).unwrap().ids.len();
    drop(lm);

    let mut client = lsp_client::LspClient::start(&[]);
    client.initialize(
        json!({"window": {"workDoneProgress": true}}),
        json!({"model": dir.display().to_string(), "dtype": dtype, "threads": common::threads(),
               "completion": {"maxTokens": 4, "numSuggestions": 1, "temperature": 0,
                              "stopAtNewline": false, "stopAtSentence": false}}),
    );
    client.wait_notification("$/progress", |p| p["value"]["kind"] == "end");
    client.open(URI, "plaintext", &text);
    let mut line = 0u32;
    let mut col = 0u32;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            col = 0;
        } else {
            col += c.len_utf16() as u32;
        }
    }
    let request = |client: &mut lsp_client::LspClient, col: u32| {
        let t = Instant::now();
        let r = client.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": URI}, "position": {"line": line, "character": col}}),
        );
        assert!(r.get("error").is_none(), "{r}");
        t.elapsed().as_secs_f64() * 1e3
    };
    let cold = request(&mut client, col);
    let mut times = Vec::new();
    for (i, ch) in "and then the sailors".chars().enumerate() {
        client.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": 2 + i},
                   "contentChanges": [{"range": {"start": {"line": line, "character": col},
                                                 "end": {"line": line, "character": col}},
                                       "text": ch.to_string()}]}),
        );
        col += 1;
        times.push(request(&mut client, col));
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = common::percentile(&sorted, 0.5);
    let p90 = common::percentile(&sorted, 0.9);
    let max = *sorted.last().unwrap();
    if json_out {
        println!(
            "{}",
            json!({"dtype": dtype, "threads": common::threads(), "document_tokens": n_tokens, "cold_ms": cold, "median_ms": median, "p90_ms": p90,
                   "max_ms": max, "median_vs_cold": median / cold, "keystrokes_ms": times})
        );
    } else {
        println!(
            "quill LSP keystrokes, GPT-2 124M shapes, {dtype}, {} threads, {n_tokens}-token document",
            common::threads()
        );
        println!("cold first request   {cold:>8.1} ms");
        println!("keystroke median     {median:>8.1} ms");
        println!("keystroke p90        {p90:>8.1} ms");
        println!("keystroke max        {max:>8.1} ms");
        println!("median / cold        {:>8.3}", median / cold);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
