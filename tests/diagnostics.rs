//! Diagnostics: which words are flagged (held to the transformers log-probabilities of the
//! fixtures), their alternatives and quick fixes, markdown and code handling, the cursor rule,
//! versions and settings over LSP, and `quill check`.

mod support;

use std::process::{Command, Stdio};

use quill::engine::tasks::proofread::{word_spans, ProofreadOptions};
use quill::engine::Cancel;
use serde_json::{json, Value};
use support::lsp::LspClient;
use support::*;

/// Thresholds for the tiny fixtures, whose random weights make every token unlikely
/// (log-probs of -12 to -40): flag tokens under -25 that lose to the best guess by 8 nats.
fn fixture_options() -> ProofreadOptions {
    ProofreadOptions {
        min_token_logprob: -25.0,
        min_gap: 8.0,
        max_alternatives: 3,
        max_sentence_perplexity: 1e12,
    }
}

#[test]
fn flagged_words_follow_the_transformers_log_probabilities() {
    let opts = fixture_options();
    let mut flagged_any = 0;
    for name in GPT2_FIXTURES {
        let lm = load_fixture(name);
        let reference = reference(name);
        for s in reference["scores"].as_array().unwrap() {
            let text = s["text"].as_str().unwrap();
            let lps = floats(&s["logprobs"]);
            let best = floats(&s["best_logprobs"]);
            let (starts, ends) = (ids(&s["start"]), ids(&s["end"]));
            // The words transformers' numbers flag, by the documented rule.
            let words = word_spans(text);
            let mut want: Vec<(usize, usize)> = Vec::new();
            for i in 0..lps.len() {
                // Skip tokens within 1e-3 of a threshold: f32 noise may put them either side.
                let near = (lps[i] - opts.min_token_logprob).abs() < 1e-3
                    || ((best[i] - lps[i]) - opts.min_gap).abs() < 1e-3;
                assert!(
                    !near,
                    "{name}: token {i} sits on a threshold; pick other thresholds"
                );
                if lps[i] < opts.min_token_logprob && best[i] - lps[i] >= opts.min_gap {
                    let (a, b) = (starts[i] as usize, ends[i] as usize);
                    if let Some(&w) = words.iter().find(|&&(ws, we)| ws < b && a < we) {
                        if !want.contains(&w) {
                            want.push(w);
                        }
                    }
                }
            }
            want.sort();
            let got = lm.proofread(text, &opts, &Cancel::new()).unwrap();
            let mut spans: Vec<(usize, usize)> =
                got.words.iter().map(|w| (w.start, w.end)).collect();
            spans.sort();
            assert_eq!(spans, want, "{name} {text:?}");
            for w in &got.words {
                assert_eq!(w.word, text[w.start..w.end]);
                for (alt, lp) in &w.alternatives {
                    assert!(
                        !alt.is_empty()
                            && alt != &w.word
                            && alt
                                .chars()
                                .all(|c| c.is_alphanumeric() || c == '_' || c == '\''),
                        "{alt:?}"
                    );
                    assert!(*lp <= 0.0);
                }
                let lps: Vec<f32> = w.alternatives.iter().map(|a| a.1).collect();
                assert!(
                    lps.windows(2).all(|p| p[0] >= p[1]),
                    "ranked by probability"
                );
            }
            flagged_any += got.words.len();
        }
    }
    assert!(
        flagged_any > 0,
        "the thresholds flag nothing: the test checks nothing"
    );
}

fn check_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
    cmd.arg("check")
        .args(["--model", &fixture_dir("gpt2-tiny").display().to_string()])
        .args([
            "--min-token-logprob",
            "-25",
            "--min-gap",
            "8",
            "--max-sentence-perplexity",
            "1e12",
        ])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn check_prints_findings_and_exits_1_and_skips_code() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "We sat in the café and ordered coffee. It was good.\n\n```\nlet x = zzqx;\n```\n";
    let path = tmp.path().join("notes.md");
    std::fs::write(&path, text).unwrap();
    let lm = load_fixture("gpt2-tiny");
    let out = check_cmd(&["--json", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let findings = json["findings"].as_array().unwrap();
    // The same as proofreading the paragraph directly.
    let para = "We sat in the café and ordered coffee. It was good.";
    let direct = lm
        .proofread(para, &fixture_options(), &Cancel::new())
        .unwrap();
    let offset = text.find(para).unwrap();
    let want: Vec<(usize, usize)> = direct
        .words
        .iter()
        .map(|w| (w.start + offset, w.end + offset))
        .collect();
    let got: Vec<(usize, usize)> = findings
        .iter()
        .filter(|f| f["code"] == "unlikely-token")
        .map(|f| {
            (
                f["start"].as_u64().unwrap() as usize,
                f["end"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(!want.is_empty());
    assert_eq!(out.status.code(), Some(1), "findings exit with 1");
    for f in findings {
        let (s, e) = (
            f["start"].as_u64().unwrap() as usize,
            f["end"].as_u64().unwrap() as usize,
        );
        assert!(e < text.find("```").unwrap(), "outside the code block: {f}");
        assert_eq!(f["line"], 1);
        assert_eq!(f["word"].as_str().unwrap(), &text[s..e]);
    }
    // Plain lines: file:line:col: message.
    let out = check_cmd(&[path.to_str().unwrap()]).output().unwrap();
    let plain = String::from_utf8(out.stdout).unwrap();
    let first = plain.lines().next().unwrap();
    let col = text[offset..want[0].0].chars().count() + 1;
    assert!(
        first.starts_with(&format!("{}:1:{col}: unlikely word", path.display())),
        "{first}"
    );

    // A text with nothing unlikely exits 0.
    let mut child = check_cmd(&["--language", "markdown", "-"]).spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"```\nonly code here\n```\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

const DOC: &str = "file:///tmp/quill-test/notes.md";
const CODE: &str = "file:///tmp/quill-test/main.py";

fn diag_settings() -> Value {
    json!({
        "model": fixture_dir("gpt2-tiny").display().to_string(),
        "diagnostics": {"minTokenLogprob": -25.0, "minAlternativeGap": 8.0,
                        "maxSentencePerplexity": 1e12, "debounceMs": 10},
    })
}

fn published(client: &mut LspClient, uri: &str, version: i64) -> Value {
    let n = client.wait_notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && p["version"] == version
    });
    n["params"]["diagnostics"].clone()
}

#[test]
fn prose_is_diagnosed_with_hovers_and_quick_fixes() {
    let para = "We sat in the café and ordered coffee. It was good.";
    let text = format!("{para}\n\n```rust\nfn zzqx() {{}}\n```\n");
    let lm = load_fixture("gpt2-tiny");
    let direct = lm
        .proofread(para, &fixture_options(), &Cancel::new())
        .unwrap();
    assert!(!direct.words.is_empty());
    let mut client = LspClient::start(&[]);
    client.initialize(json!({}), diag_settings());
    client.open(DOC, "markdown", &text);
    let diags = published(&mut client, DOC, 1);
    let diags = diags.as_array().unwrap();
    assert_eq!(diags.len(), direct.words.len(), "{diags:?}");
    let w = &direct.words[0];
    let d = &diags[0];
    assert_eq!(d["source"], "quill");
    assert_eq!(d["code"], "unlikely-token");
    assert_eq!(d["severity"], 3);
    // Line 0 holds the paragraph.
    assert_eq!(d["range"]["start"]["line"], 0);
    let col = para[..w.start].encode_utf16().count();
    assert_eq!(d["range"]["start"]["character"], col);
    assert_eq!(
        d["range"]["end"]["character"],
        col + w.word.encode_utf16().count()
    );
    assert!(d["message"].as_str().unwrap().contains(&w.word));

    // Hover on the word.
    let pos = json!({"line": 0, "character": col});
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": DOC}, "position": pos}),
    );
    let md = hover["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{hover}"));
    assert!(md.contains(&format!("saw *{}*", w.word)), "{md}");

    // Quick fixes replace the word's range with each alternative.
    let r = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": DOC}, "range": d["range"], "context": {"diagnostics": [d]}}),
    );
    let actions: Vec<&Value> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            a["kind"] == "quickfix" && a["title"].as_str().unwrap().starts_with("Replace with")
        })
        .collect();
    assert_eq!(actions.len(), w.alternatives.len(), "{r}");
    for (a, (alt, _)) in actions.iter().zip(&w.alternatives) {
        assert_eq!(a["title"], format!("Replace with '{alt}'"));
        assert_eq!(a["kind"], "quickfix");
        let edits = &a["edit"]["changes"][DOC];
        assert_eq!(edits[0]["range"], d["range"]);
        assert_eq!(edits[0]["newText"], alt.as_str());
    }
    if !actions.is_empty() {
        assert_eq!(actions[0]["isPreferred"], true);
    }

    // Typing inside the flagged word: it is not flagged while the cursor is in it; the
    // diagnostics come with the new version.
    let end = d["range"]["end"].clone();
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": DOC, "version": 2},
               "contentChanges": [{"range": {"start": end, "end": end}, "text": "x"}]}),
    );
    let diags2 = published(&mut client, DOC, 2);
    assert!(
        diags2
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["range"]["start"] != d["range"]["start"]),
        "the word at the cursor is not flagged: {diags2}"
    );

    // Turning diagnostics off clears them.
    let mut off = diag_settings();
    off["diagnostics"]["enabled"] = json!(false);
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"quill": off}}),
    );
    let n = client.wait_notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == DOC && p["diagnostics"] == json!([])
    });
    assert_eq!(n["params"]["version"], 2);
}

#[test]
fn code_is_checked_only_in_comments() {
    let comment = "We sat in the café and ordered coffee. It was good.";
    let text = format!("def f(x):\n    # {comment}\n    return zzqx_the_cafe(x)  # \n");
    let lm = load_fixture("gpt2-tiny");
    let direct = lm
        .proofread(comment, &fixture_options(), &Cancel::new())
        .unwrap();
    let mut client = LspClient::start(&[]);
    client.initialize(json!({}), diag_settings());
    client.open(CODE, "python", &text);
    let diags = published(&mut client, CODE, 1);
    let diags = diags.as_array().unwrap();
    assert_eq!(diags.len(), direct.words.len(), "{diags:?}");
    for d in diags {
        assert_eq!(d["range"]["start"]["line"], 1, "only the comment line: {d}");
    }
}

#[test]
fn huge_and_odd_documents_leave_completions_responsive() {
    let mut client = LspClient::start(&[]);
    let mut settings = diag_settings();
    settings["completion"] = json!({"temperature": 0, "numSuggestions": 1, "maxTokens": 4});
    client.initialize(json!({}), settings);
    // An empty document gets an empty list.
    client.open("file:///tmp/quill-test/empty.txt", "plaintext", "");
    let empty = published(&mut client, "file:///tmp/quill-test/empty.txt", 1);
    assert_eq!(empty, json!([]));
    // 10,000 paragraphs, a 200 KB line and binary-looking text in one document.
    let mut huge = String::new();
    for i in 0..10_000 {
        huge.push_str(&format!("Paragraph {i} says the cat sat.\n\n"));
    }
    huge.push_str(&"a".repeat(200_000));
    huge.push_str("\n\n\u{0}\u{1}\u{2}\u{7f}\u{fffd}\u{1b}[0m binary\n");
    client.open("file:///tmp/quill-test/huge.txt", "plaintext", &huge);
    // A completion elsewhere is answered while the huge document is still being checked.
    client.open(CODE, "python", "The cat sat on the");
    let r = client.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": CODE}, "position": {"line": 0, "character": 18}}),
    );
    assert!(r["result"]["items"].is_array(), "{r}");
    let huge_done = client.notifications.iter().any(|n| {
        n["method"] == "textDocument/publishDiagnostics"
            && n["params"]["uri"] == "file:///tmp/quill-test/huge.txt"
    });
    assert!(
        !huge_done,
        "the completion did not wait for the whole document's diagnostics"
    );
    let r = client.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
}

#[test]
fn sentences_of_high_perplexity_get_one_hint_each() {
    let lm = load_fixture("gpt2-tiny");
    let reference = reference("gpt2-tiny");
    let s = &reference["scores"][1];
    let text = s["text"].as_str().unwrap();
    let lps = floats(&s["logprobs"]);
    let (starts, ends) = (ids(&s["start"]), ids(&s["end"]));
    let mut opts = fixture_options();
    let mut counts = Vec::new();
    for threshold in [1e9, 1e12, 1e15] {
        opts.max_sentence_perplexity = threshold;
        let got = lm.proofread(text, &opts, &Cancel::new()).unwrap();
        // By the transformers log-probs: each sentence's tokens, their perplexity.
        let mut want = Vec::new();
        for (a, b) in quill::engine::tasks::proofread::sentence_spans(text) {
            let lp: Vec<f64> = (0..lps.len())
                .filter(|&i| starts[i] as usize >= a && ends[i] as usize <= b)
                .map(|i| lps[i] as f64)
                .collect();
            if lp.len() >= 4 && (-lp.iter().sum::<f64>() / lp.len() as f64).exp() > threshold {
                want.push((a, b));
            }
        }
        let spans: Vec<(usize, usize)> = got.sentences.iter().map(|x| (x.start, x.end)).collect();
        assert_eq!(spans, want, "threshold {threshold}");
        counts.push(spans.len());
    }
    assert!(
        counts[0] > 0 && counts[2] == 0,
        "the thresholds matter: {counts:?}"
    );
}

/// A pass waits while completions follow each other, as it waits for edits: one started
/// between them made each completion wait for the forward pass in progress, which at f32 on
/// two cores made the keystrokes longer than the debounce, which started the next pass.
#[test]
fn a_pass_waits_until_completions_pause() {
    use std::time::{Duration, Instant};
    let mut settings = diag_settings();
    settings["diagnostics"]["debounceMs"] = json!(300);
    let mut client = LspClient::start(&[]);
    client.initialize(json!({}), settings);
    let text = "We sat in the café and ordered coffee. It was good.\n";
    client.open(DOC, "markdown", text);
    published(&mut client, DOC, 1);
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": DOC, "version": 2},
               "contentChanges": [{"range": {"start": {"line": 1, "character": 0},
                                             "end": {"line": 1, "character": 0}},
                                   "text": "More"}]}),
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(900) {
        let r = client.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": DOC}, "position": {"line": 1, "character": 4}}),
        );
        assert!(r.get("error").is_none(), "{r}");
        std::thread::sleep(Duration::from_millis(20));
    }
    client.drain_responses(Duration::from_millis(50));
    let early = client
        .notifications
        .iter()
        .any(|n| n["method"] == "textDocument/publishDiagnostics" && n["params"]["version"] == 2);
    assert!(!early, "a pass ran between completions");
    // Once they stop, the pass runs.
    published(&mut client, DOC, 2);
}
