//! A keystroke at the end of a 4 MB document against one at the end of a 4 KB document, through
//! the real `quill serve` with the tiny fixture: typing, then a completion (8 tokens, greedy),
//! 30 times each. Only the window's tail of the text is copied and tokenized per request, so the
//! two cost about the same; the ratio is the figure. Also the server's resident memory growth
//! over the big document's keystrokes. `cargo bench --bench bigdoc [-- --json]`.

mod common;
#[path = "../tests/support/lsp.rs"]
#[allow(dead_code)]
mod lsp_client;

use std::time::Instant;

use lsp_client::LspClient;
use serde_json::json;

const KEYSTROKES: usize = 30;

/// Median milliseconds of a keystroke (edit + completion) at the end of a document of about
/// `bytes` bytes; the server's resident memory (KiB) before and after.
fn keystrokes(bytes: usize) -> (f64, f64, u64, u64) {
    let line = "The river ran slowly past the old mill, and the children watched the boats.\n";
    let text = line.repeat(bytes / line.len());
    let uri = format!("file:///bench/doc{bytes}.txt");
    let mut client = LspClient::start(&[]);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    client.initialize(
        json!({}),
        json!({"model": fixture.display().to_string(), "threads": 1,
               "diagnostics": {"enabled": false},
               "completion": {"maxTokens": 8, "numSuggestions": 1, "temperature": 0,
                              "stopAtNewline": false, "stopAtSentence": false}}),
    );
    client.open(&uri, "plaintext", &text);
    let line_no = text.matches('\n').count();
    let mut col = 0usize;
    let complete = |client: &mut LspClient, col: usize| {
        let t = Instant::now();
        let r = client.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line_no, "character": col}}),
        );
        assert!(r.get("error").is_none(), "{r}");
        t.elapsed().as_secs_f64() * 1e3
    };
    let first = complete(&mut client, col);
    let before = client.rss_kib().unwrap_or(0);
    let mut times = Vec::new();
    for (i, ch) in "and then the sailors sang songs"
        .chars()
        .take(KEYSTROKES)
        .enumerate()
    {
        let t = Instant::now();
        client.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": format!("file:///bench/doc{bytes}.txt"), "version": 2 + i},
                   "contentChanges": [{"range": {"start": {"line": line_no, "character": col},
                                                 "end": {"line": line_no, "character": col}},
                                       "text": ch.to_string()}]}),
        );
        col += 1;
        complete(&mut client, col);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let after = client.rss_kib().unwrap_or(0);
    times.sort_by(f64::total_cmp);
    (common::percentile(&times, 0.5), first, before, after)
}

fn main() {
    let json_out = std::env::args().any(|a| a == "--json");
    let (small, small_first, _, _) = keystrokes(4 << 10);
    let (big, big_first, before, after) = keystrokes(4 << 20);
    if json_out {
        println!(
            "{}",
            json!({"keystroke_4kb_ms": small, "keystroke_4mb_ms": big, "ratio": big / small,
                   "first_4kb_ms": small_first, "first_4mb_ms": big_first,
                   "rss_4mb_before_kib": before, "rss_4mb_after_kib": after})
        );
    } else {
        println!("quill keystroke at the end of a document, tiny fixture, median of {KEYSTROKES}");
        println!("4 KB document        {small:>8.2} ms  (first request {small_first:.1} ms)");
        println!("4 MB document        {big:>8.2} ms  (first request {big_first:.1} ms)");
        println!("4 MB / 4 KB          {:>8.2}", big / small);
        println!(
            "memory over the 4 MB keystrokes: {:.1} -> {:.1} MiB",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
    }
}
