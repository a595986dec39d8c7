//! Keystroke latency of the language server, driven as an editor drives it: a random model with
//! GPT-2 124M's shapes, a 600-token document, then 20 characters typed at its end with a
//! completion request (4 tokens, 1 suggestion) after each. `cargo bench --bench lsp`.
//!
//! `-- --breakdown` runs the server with `QUILL_LOG=quill::keystroke=debug` and reads the time
//! of each part of every keystroke from the spans it logs on stderr (see [`Part`]): a table of
//! median and worst milliseconds per part, the forward passes' share and keystroke / forward
//! passes. `--keystrokes N` types N characters (20 by default); `QUILL_TEST_BIN` times another
//! build of `quill`.

mod common;
#[path = "../tests/support/lsp.rs"]
#[allow(dead_code)]
mod lsp_client;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
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

    let breakdown = std::env::args().any(|a| a == "--breakdown");
    let keystrokes: usize = common::arg("--keystrokes")
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let log_path = dir.join("server.log");
    let mut client = if breakdown {
        lsp_client::LspClient::start_with(
            &[],
            &[("QUILL_LOG", "quill::keystroke=debug")],
            Some(&log_path),
        )
    } else {
        lsp_client::LspClient::start(&[])
    };
    let mut log = SpanLog::new(&log_path, breakdown);
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
    log.take();
    let mut times = Vec::new();
    let mut parts: Vec<HashMap<Part, f64>> = Vec::new();
    let typed = "and then the sailors ".chars().cycle().take(keystrokes);
    for (i, ch) in typed.enumerate() {
        let t = Instant::now();
        client.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": 2 + i},
                   "contentChanges": [{"range": {"start": {"line": line, "character": col},
                                                 "end": {"line": line, "character": col}},
                                       "text": ch.to_string()}]}),
        );
        col += 1;
        times.push(request(&mut client, col));
        if breakdown {
            let total = t.elapsed().as_secs_f64() * 1e3;
            parts.push(keystroke_parts(&log.take(), total));
        }
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
    if breakdown {
        print_breakdown(&parts, &dtype, n_tokens, json_out);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The parts of a keystroke. Those with a span of their own are read from the server's log;
/// the `Rest` ones are what their enclosing span or the whole keystroke leaves over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    /// Reading and checking incoming JSON-RPC frames (`transport::sanitize`).
    FrameCheck,
    /// `didChange`: the edit applied to the document.
    Edit,
    /// The tail of text before the cursor copied out of the document.
    DocCopy,
    /// The window's text to token ids, and the window picked.
    Tokenize,
    /// Longest common prefix with the cached tokens, the cache cut back to it.
    Prefix,
    /// Forward passes over the prompt's new tokens.
    PromptPass,
    /// Forward passes of the decoding steps.
    DecodePass,
    /// The output projection to the vocabulary's logits, copied out.
    Logits,
    /// Picking each token and its log-probability, stop rules.
    Sample,
    /// Completions decoded to text.
    Finish,
    /// Completion items built from the completions.
    Reply,
    /// The job in the engine's queue and the channels to and from it.
    Handoff,
    /// The engine job's time outside its parts.
    JobRest,
    /// The request handler's time outside its parts (settings, request building).
    RequestRest,
    /// The rest of the keystroke: the client's and the server's JSON and framing, pipes,
    /// scheduling.
    ProtocolRest,
    /// The whole keystroke as the client sees it: `didChange` sent to completion received.
    Total,
}

impl Part {
    const ROWS: [(Part, &'static str); 16] = [
        (Part::FrameCheck, "protocol: frame check (JSON)"),
        (Part::ProtocolRest, "protocol: rest (JSON, pipes, tokio)"),
        (Part::Edit, "didChange: edit"),
        (Part::DocCopy, "document tail copy"),
        (Part::RequestRest, "request: rest"),
        (Part::Handoff, "engine queue and channels"),
        (Part::Tokenize, "tokenization and window"),
        (Part::Prefix, "prefix match, cache cut"),
        (Part::PromptPass, "forward: prompt extension"),
        (Part::DecodePass, "forward: decode steps"),
        (Part::Logits, "forward: logits (output projection)"),
        (Part::Sample, "sampling"),
        (Part::Finish, "completion text"),
        (Part::JobRest, "engine job: rest"),
        (Part::Reply, "reply items"),
        (Part::Total, "keystroke total"),
    ];

    fn of_span(name: &str) -> Option<Part> {
        Some(match name {
            "frame_check" => Part::FrameCheck,
            "edit" => Part::Edit,
            "doc_copy" => Part::DocCopy,
            "tokenize" => Part::Tokenize,
            "prefix" => Part::Prefix,
            "prompt_pass" => Part::PromptPass,
            "decode_pass" => Part::DecodePass,
            "logits" => Part::Logits,
            "sample" => Part::Sample,
            "finish" => Part::Finish,
            "reply" => Part::Reply,
            _ => return None,
        })
    }
}

/// One closed span from the server's log: its path (`request:doc_copy`) and its wall time in
/// milliseconds.
struct Closed {
    path: String,
    ms: f64,
}

/// Reads the lines the server appended to its log since the last call.
struct SpanLog {
    file: Option<std::fs::File>,
    partial: String,
}

impl SpanLog {
    fn new(path: &Path, enabled: bool) -> SpanLog {
        SpanLog {
            file: enabled.then(|| std::fs::File::open(path).expect("the server's log")),
            partial: String::new(),
        }
    }

    /// The spans of the keystroke's time closed since the last call.
    fn take(&mut self) -> Vec<Closed> {
        let Some(file) = &mut self.file else {
            return Vec::new();
        };
        file.read_to_string(&mut self.partial).unwrap();
        let end = self.partial.rfind('\n').map_or(0, |i| i + 1);
        let lines: String = self.partial.drain(..end).collect();
        lines.lines().filter_map(parse_close).collect()
    }
}

/// A line of `quill::span_times`: `… closed request:doc_copy in 12345 ns`.
fn parse_close(line: &str) -> Option<Closed> {
    let (path, ms) = quill::span_times::parse_closed(line)?;
    Some(Closed {
        path: path.to_string(),
        ms,
    })
}

/// A span's name: the last element of its path.
fn span_name(path: &str) -> &str {
    path.rsplit(':').next().unwrap_or(path)
}

/// Sums one keystroke's spans into its parts. Forward passes of background jobs (outside a
/// completion `job`) are left out.
fn keystroke_parts(spans: &[Closed], total: f64) -> HashMap<Part, f64> {
    let mut parts: HashMap<Part, f64> = HashMap::new();
    let sum = |k: &str| -> f64 {
        spans
            .iter()
            .filter(|s| span_name(&s.path) == k)
            .map(|s| s.ms)
            .sum()
    };
    let request = sum("request");
    let engine_wait = sum("engine_wait");
    let job = sum("job");
    for s in spans {
        let name = span_name(&s.path);
        let in_job = s.path.starts_with("job:") || s.path.contains(":job:");
        let engine_part = matches!(
            name,
            "tokenize" | "prefix" | "prompt_pass" | "decode_pass" | "logits" | "sample" | "finish"
        );
        if engine_part && !in_job {
            continue;
        }
        if let Some(p) = Part::of_span(name) {
            *parts.entry(p).or_default() += s.ms;
        }
    }
    let get = |parts: &HashMap<Part, f64>, p: Part| parts.get(&p).copied().unwrap_or(0.0);
    let engine: f64 = [
        Part::Tokenize,
        Part::Prefix,
        Part::PromptPass,
        Part::DecodePass,
        Part::Logits,
        Part::Sample,
        Part::Finish,
    ]
    .iter()
    .map(|&p| get(&parts, p))
    .sum();
    let job_rest = job - engine;
    let handoff = engine_wait - job;
    let request_rest = request - engine_wait - get(&parts, Part::DocCopy);
    let protocol_rest = total
        - request
        - get(&parts, Part::Reply)
        - get(&parts, Part::Edit)
        - get(&parts, Part::FrameCheck);
    parts.insert(Part::JobRest, job_rest);
    parts.insert(Part::Handoff, handoff);
    parts.insert(Part::RequestRest, request_rest);
    parts.insert(Part::ProtocolRest, protocol_rest);
    parts.insert(Part::Total, total);
    parts
}

fn forward_ms(p: &HashMap<Part, f64>) -> f64 {
    [Part::PromptPass, Part::DecodePass, Part::Logits]
        .iter()
        .map(|k| p.get(k).copied().unwrap_or(0.0))
        .sum()
}

fn print_breakdown(keys: &[HashMap<Part, f64>], dtype: &str, n_tokens: usize, json_out: bool) {
    let stat = |f: &dyn Fn(&HashMap<Part, f64>) -> f64| {
        let mut v: Vec<f64> = keys.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (common::percentile(&v, 0.5), *v.last().unwrap())
    };
    let rows: Vec<(&str, f64, f64)> = Part::ROWS
        .iter()
        .map(|&(p, label)| {
            let (median, worst) = stat(&|k| k.get(&p).copied().unwrap_or(0.0));
            (label, median, worst)
        })
        .collect();
    let forward = stat(&forward_ms);
    let share = stat(&|k| forward_ms(k) / k[&Part::Total]);
    let ratio = stat(&|k| k[&Part::Total] / forward_ms(k));
    if json_out {
        let parts: Vec<_> = rows
            .iter()
            .map(|(l, m, w)| json!({"part": l, "median_ms": m, "worst_ms": w}))
            .collect();
        println!(
            "{}",
            json!({"dtype": dtype, "keystrokes": keys.len(), "parts": parts,
                   "forward_median_ms": forward.0, "forward_share_median": share.0,
                   "keystroke_vs_forward_median": ratio.0, "keystroke_vs_forward_worst": ratio.1})
        );
        return;
    }
    println!(
        "keystroke breakdown, {dtype}, {} threads, {n_tokens}-token document, {} keystrokes",
        common::threads(),
        keys.len()
    );
    println!("| part | median ms | worst ms |");
    println!("| --- | ---: | ---: |");
    for (label, median, worst) in &rows {
        println!("| {label} | {median:.2} | {worst:.2} |");
    }
    println!("| forward passes | {:.2} | {:.2} |", forward.0, forward.1);
    println!(
        "| forward passes' share of a keystroke | {:.3} | {:.3} (lowest) |",
        share.0,
        {
            let mut v: Vec<f64> = keys
                .iter()
                .map(|k| forward_ms(k) / k[&Part::Total])
                .collect();
            v.sort_by(f64::total_cmp);
            v[0]
        }
    );
    println!(
        "| keystroke / forward passes | **{:.3}** | {:.3} |",
        ratio.0, ratio.1
    );
}
