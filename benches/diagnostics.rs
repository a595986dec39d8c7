//! Diagnostics benchmark, driven over LSP as an editor would: a random model with GPT-2 124M's
//! shapes, a 2,000-word markdown document fully diagnosed (time, tokens/s), then one word
//! changed and the time until the diagnostics are published again. `cargo bench --bench
//! diagnostics` (`-- --json`; `-- --lengths FILE` writes the paragraph token counts for
//! `scripts/bench_pytorch.py --score-lengths FILE`).

mod common;
#[path = "../tests/support/lsp.rs"]
#[allow(dead_code)]
mod lsp_client;

use std::time::Instant;

use candle_core::{DType, Device};
use quill::diagnostics::checker;
use quill::engine::LanguageModel;
use quill::models::{self, ModelSource};
use serde_json::{json, Value};

const URI: &str = "file:///bench/notes.md";

const WORDS: &[&str] = &[
    "the",
    "river",
    "ran",
    "slowly",
    "past",
    "old",
    "mill",
    "and",
    "children",
    "watched",
    "boats",
    "drift",
    "under",
    "bridge",
    "while",
    "their",
    "parents",
    "talked",
    "about",
    "harvest",
    "a",
    "small",
    "town",
    "woke",
    "early",
    "bakers",
    "lit",
    "ovens",
    "fishermen",
    "loaded",
    "nets",
    "onto",
    "quiet",
    "morning",
    "train",
    "city",
    "museum",
    "friend",
    "lunch",
    "evening",
];

fn document(words: usize) -> String {
    let mut out = String::from("# Notes\n\n");
    let mut n = 0;
    let mut k = 7usize;
    while n < words {
        let mut para = Vec::new();
        for i in 0..60 {
            k = (k * 1103515245 + 12345) % 2147483648;
            let w = WORDS[k % WORDS.len()];
            para.push(if i == 0 { capitalize(w) } else { w.to_string() });
            if i % 12 == 11 {
                para.last_mut().unwrap().push('.');
            }
        }
        n += para.len();
        out.push_str(&para.join(" "));
        out.push_str(".\n\n");
        if n % 600 < 60 {
            out.push_str("```rust\nfn main() { println!(\"skipped\"); }\n```\n\n");
        }
    }
    out
}

/// The `n`th publication of diagnostics for `version`.
fn wait_publication(client: &mut lsp_client::LspClient, version: i32, n: usize) -> Value {
    let mut last = Value::Null;
    for _ in 0..n {
        // wait_notification answers from the notifications seen so far first; those seen are
        // dropped so that each round waits for a new one (nothing after a match is read yet).
        client.notifications.clear();
        last = client.wait_notification("textDocument/publishDiagnostics", |p| {
            p["version"] == version
        });
    }
    last
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

fn main() {
    common::keep_freed_buffers();
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().any(|a| a == "--json");
    let lengths_file = args
        .iter()
        .position(|a| a == "--lengths")
        .and_then(|i| args.get(i + 1).cloned());
    let dir = std::env::temp_dir().join(format!("quill-bench-diag-{}", std::process::id()));
    common::write_checkpoint(&dir);
    let files = models::resolve(&ModelSource::Dir(dir.clone()), &Default::default()).unwrap();
    let lm = LanguageModel::load(&files, &Device::Cpu, DType::F32).unwrap();
    let text = document(2000);
    let languages = quill::lsp::config::DiagnosticsSettings::default().languages;
    let lengths: Vec<usize> = checker::plan(&text, "markdown", &languages)
        .iter()
        .map(|p| lm.tokenizer().encode(&p.text).unwrap().ids.len() + 1)
        .collect();
    let tokens: usize = lengths.iter().sum();
    // Scoring alone, in-process: what transformers is compared with.
    let paragraphs = checker::plan(&text, "markdown", &languages);
    let cancel = quill::engine::Cancel::new();
    let t = Instant::now();
    for p in &paragraphs {
        lm.score(&p.text, &cancel).unwrap();
    }
    let score_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(lm);
    if let Some(f) = lengths_file {
        std::fs::write(f, serde_json::to_string(&lengths).unwrap()).unwrap();
    }

    let mut client = lsp_client::LspClient::start(&[]);
    client.initialize(
        json!({"window": {"workDoneProgress": true}}),
        json!({"model": dir.display().to_string(), "threads": common::threads(),
               "diagnostics": {"debounceMs": 0},
               "completion": {"enabled": false}}),
    );
    client.wait_notification("$/progress", |p| p["value"]["kind"] == "end");
    let t = Instant::now();
    client.open(URI, "markdown", &text);
    // A pass proofreads at most PARAGRAPHS_PER_PASS paragraphs not in the cache, publishes what
    // it has and schedules the rest: the full pass ends with the last of those publications.
    let passes = paragraphs.len().div_ceil(quill::lsp::PARAGRAPHS_PER_PASS);
    let first = wait_publication(&mut client, 1, passes);
    let full_ms = t.elapsed().as_secs_f64() * 1e3;
    let found = first["params"]["diagnostics"].as_array().unwrap().len();

    // Change one word in the middle of the document.
    let line = text.lines().count() as u32 / 2;
    let line = (line..)
        .find(|&l| text.lines().nth(l as usize).unwrap().len() > 20)
        .unwrap();
    let t = Instant::now();
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2},
               "contentChanges": [{"range": {"start": {"line": line, "character": 0},
                                             "end": {"line": line, "character": 3}},
                                   "text": "Our"}]}),
    );
    wait_publication(&mut client, 2, 1);
    let edit_ms = t.elapsed().as_secs_f64() * 1e3;
    let words = text.split_whitespace().count();
    if json_out {
        println!(
            "{}",
            json!({"words": words, "paragraphs": lengths.len(), "tokens": tokens, "full_ms": full_ms,
                   "score_only_ms": score_ms, "score_tokens_per_s": tokens as f64 / score_ms * 1e3,
                   "tokens_per_s": tokens as f64 / full_ms * 1e3, "edit_ms": edit_ms,
                   "edit_vs_full": edit_ms / full_ms, "diagnostics": found})
        );
    } else {
        println!("quill diagnostics, GPT-2 124M shapes, f32: {words} words, {} paragraphs, {tokens} tokens", lengths.len());
        println!(
            "full pass            {full_ms:>9.1} ms ({:.0} tokens/s, {found} diagnostics)",
            tokens as f64 / full_ms * 1e3
        );
        println!(
            "scoring alone        {score_ms:>9.1} ms ({:.0} tokens/s, in-process)",
            tokens as f64 / score_ms * 1e3
        );
        println!("one-word edit        {edit_ms:>9.1} ms");
        println!("edit / full          {:>9.3}", edit_ms / full_ms);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
