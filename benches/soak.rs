//! Soak: about an hour of an editor's traffic compressed into a few minutes, against the real
//! `quill serve` with the tiny fixtures (GPT-2 and T5). Twenty documents are typed into at
//! random places, each keystroke followed by a completion request (some cancelled at once, some
//! left to be superseded), with diagnostics running on every document, T5 commands on
//! selections now and then, and documents closed and new ones opened. Reports requests served,
//! errors, latency percentiles and the server's resident memory over time, which must level
//! off. `cargo bench --bench soak [-- --keystrokes N --seed S --json]`.

mod common;
#[path = "../tests/support/lsp.rs"]
#[allow(dead_code)]
mod lsp_client;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lsp_client::LspClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const DOCUMENTS: usize = 20;
const WORDS: &[&str] = &[
    "the", "harbour", "boat", "morning", "quiet", "market", "fish", "bread", "weather", "and",
    "then", "she", "said", "children", "river", "bridge", "old", "mill", "é", "😀", "42",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One open document: its text (no '\r') and version.
struct Doc {
    uri: String,
    text: String,
    version: i32,
}

/// LSP's position (UTF-16) of byte `offset`.
fn position(text: &str, offset: usize) -> Value {
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let character: usize = before[start..].chars().map(char::len_utf16).sum();
    json!({"line": line, "character": character})
}

fn random_text(rng: &mut StdRng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        s.push(if i % 12 == 11 { '.' } else { ' ' });
        if i % 60 == 59 {
            s.push_str("\n\n");
        }
    }
    s
}

/// A byte offset on a char boundary, near the end most of the time (as people type).
fn typing_point(rng: &mut StdRng, text: &str) -> usize {
    let mut at = if rng.gen_bool(0.8) {
        text.len()
    } else {
        rng.gen_range(0..=text.len())
    };
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[derive(Default)]
struct Tally {
    served: usize,
    cancelled: usize,
    errors: Vec<String>,
    completion_ms: Vec<f64>,
    t5_ms: Vec<f64>,
}

impl Tally {
    fn answer(&mut self, r: &Value, ms: f64, t5: bool) {
        match r["error"]["code"].as_i64() {
            None => {
                self.served += 1;
                if t5 {
                    self.t5_ms.push(ms);
                } else {
                    self.completion_ms.push(ms);
                }
            }
            Some(-32800) => self.cancelled += 1,
            Some(_) => self.errors.push(r.to_string()),
        }
    }
}

fn percentiles(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (common::percentile(&s, 0.5), common::percentile(&s, 0.99))
}

fn main() {
    let json_out = std::env::args().any(|a| a == "--json");
    let keystrokes: usize = common::arg("--keystrokes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(18_000);
    let seed: u64 = common::arg("--seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = LspClient::start(&[]);
    client.initialize(
        json!({}),
        json!({
            "model": fixture("gpt2-tiny").display().to_string(),
            "t5Model": fixture("t5-tiny").display().to_string(),
            "t5": {"maxTokens": 16},
            "threads": 1,
            "completion": {"temperature": 0, "numSuggestions": 1, "maxTokens": 8},
            "diagnostics": {"minTokenLogprob": -25.0, "minAlternativeGap": 8.0,
                            "maxSentencePerplexity": 1e12, "debounceMs": 50},
        }),
    );
    let mut docs: Vec<Doc> = Vec::new();
    let mut opened = 0;
    let mut open = |client: &mut LspClient, rng: &mut StdRng, docs: &mut Vec<Doc>| {
        let (ext, lang) = [("md", "markdown"), ("txt", "plaintext"), ("py", "python")][opened % 3];
        let uri = format!("file:///soak/doc{opened}.{ext}");
        opened += 1;
        let text = random_text(rng, 300);
        client.open(&uri, lang, &text);
        docs.push(Doc {
            uri,
            text,
            version: 1,
        });
    };
    for _ in 0..DOCUMENTS {
        open(&mut client, &mut rng, &mut docs);
    }
    // Let the first diagnostics passes run before the first memory sample.
    let stats = client.request("quill/stats", Value::Null);
    assert!(stats.get("error").is_none(), "{stats}");
    std::thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut memory: Vec<(usize, u64)> = vec![(0, client.rss_kib().unwrap_or(0))];
    let mut pending: HashMap<i64, Instant> = HashMap::new();
    let mut current = 0usize;
    for k in 0..keystrokes {
        if rng.gen_bool(0.05) {
            current = rng.gen_range(0..docs.len());
        }
        // Type (or delete) one character.
        let d = &mut docs[current];
        let at = typing_point(&mut rng, &d.text);
        let (start, end, new) = if rng.gen_bool(0.1) && at > 0 {
            let mut s = at - 1;
            while !d.text.is_char_boundary(s) {
                s -= 1;
            }
            (s, at, String::new())
        } else {
            let c = if rng.gen_bool(0.17) {
                " ".to_string()
            } else {
                WORDS[rng.gen_range(0..WORDS.len())]
                    .chars()
                    .next()
                    .unwrap()
                    .to_string()
            };
            (at, at, c)
        };
        d.version += 1;
        let range = json!({"start": position(&d.text, start), "end": position(&d.text, end)});
        client.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": d.uri, "version": d.version},
                   "contentChanges": [{"range": range, "text": new}]}),
        );
        d.text.replace_range(start..end, &new);
        let cursor = position(&d.text, start + new.len());
        let id = client.request_async(
            "textDocument/completion",
            json!({"textDocument": {"uri": d.uri}, "position": cursor}),
        );
        pending.insert(id, Instant::now());
        if rng.gen_bool(0.03) {
            client.notify("$/cancelRequest", json!({"id": id}));
        }
        // The editor waits for every fourth answer (the others are superseded by typing).
        if k % 4 == 3 {
            let r = client.response(id);
            let t = pending.remove(&id).unwrap();
            tally.answer(&r, t.elapsed().as_secs_f64() * 1e3, false);
        }
        for r in client.drain_responses(Duration::ZERO) {
            if let Some(t) = r["id"].as_i64().and_then(|id| pending.remove(&id)) {
                tally.answer(&r, t.elapsed().as_secs_f64() * 1e3, false);
            }
        }
        // A T5 command on a selection now and then.
        if rng.gen_bool(0.002) {
            let d = &docs[current];
            let a = typing_point(&mut rng, &d.text);
            let mut b = (a + 400).min(d.text.len());
            while !d.text.is_char_boundary(b) {
                b -= 1;
            }
            let mut s = a.saturating_sub(400);
            while !d.text.is_char_boundary(s) {
                s -= 1;
            }
            let range = json!({"start": position(&d.text, s), "end": position(&d.text, b)});
            let command = if rng.gen_bool(0.5) {
                json!({"command": "quill.summarize", "arguments": [{"uri": d.uri, "range": range}]})
            } else {
                json!({"command": "quill.translate", "arguments": [{"uri": d.uri, "range": range, "to": "German"}]})
            };
            let t = Instant::now();
            let r = client.request("workspace/executeCommand", command);
            // An empty selection is refused (invalid params): a client error, not the server's.
            if r["error"]["code"] != -32602 {
                tally.answer(&r, t.elapsed().as_secs_f64() * 1e3, true);
            }
        }
        // Close a document and open a new one now and then.
        if rng.gen_bool(0.002) {
            let i = rng.gen_range(0..docs.len());
            let d = docs.swap_remove(i);
            client.notify(
                "textDocument/didClose",
                json!({"textDocument": {"uri": d.uri}}),
            );
            open(&mut client, &mut rng, &mut docs);
            current = current.min(docs.len() - 1);
        }
        if (k + 1) % (keystrokes / 10).max(1) == 0 {
            memory.push((k + 1, client.rss_kib().unwrap_or(0)));
        }
    }
    // The rest of the answers.
    for (id, t) in std::mem::take(&mut pending) {
        let r = client.response(id);
        tally.answer(&r, t.elapsed().as_secs_f64() * 1e3, false);
    }
    let wall = started.elapsed().as_secs_f64();
    let stats = client.request("quill/stats", Value::Null)["result"].clone();
    let r = client.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    client.notify("exit", Value::Null);
    let code = client.wait_exit();

    let (c50, c99) = percentiles(&tally.completion_ms);
    let (t50, t99) = percentiles(&tally.t5_ms);
    let mib = |k: u64| k as f64 / 1024.0;
    let start_mem = memory[0].1;
    let middle_mem = memory[memory.len() / 2].1;
    let end_mem = memory.last().unwrap().1;
    if json_out {
        println!(
            "{}",
            json!({"keystrokes": keystrokes, "documents_opened": opened, "wall_s": wall,
                   "served": tally.served, "cancelled": tally.cancelled,
                   "errors": tally.errors.len(), "completion_p50_ms": c50,
                   "completion_p99_ms": c99, "t5_commands": tally.t5_ms.len(),
                   "t5_p50_ms": t50, "t5_p99_ms": t99, "rss_kib": memory,
                   "server_stats": stats, "exit_code": code})
        );
    } else {
        println!("quill soak: {keystrokes} keystrokes in {opened} documents ({DOCUMENTS} open at a time), {wall:.0} s");
        println!("requests served      {:>8}", tally.served);
        println!("cancelled/superseded {:>8}", tally.cancelled);
        println!("errors               {:>8}", tally.errors.len());
        println!("completion p50       {c50:>8.1} ms");
        println!("completion p99       {c99:>8.1} ms");
        println!(
            "T5 commands          {:>8}  (p50 {t50:.0} ms, p99 {t99:.0} ms)",
            tally.t5_ms.len()
        );
        println!(
            "paragraphs proofread {:>8}",
            stats["proofreads"].as_u64().unwrap_or(0)
        );
        println!(
            "resident memory      start {:.1} MiB, middle {:.1} MiB, end {:.1} MiB",
            mib(start_mem),
            mib(middle_mem),
            mib(end_mem)
        );
        let samples: Vec<String> = memory
            .iter()
            .map(|(_, m)| format!("{:.1}", mib(*m)))
            .collect();
        println!("memory samples (MiB) {}", samples.join(" "));
        println!("exit code            {code:>8}");
    }
    for e in tally.errors.iter().take(5) {
        eprintln!("error: {e}");
    }
}
