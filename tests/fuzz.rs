//! Protocol fuzzing of the real `quill serve` over stdio: random sequences of well-framed
//! garbage, random JSON values, random header blocks, valid requests with random parameters and
//! random (valid and refused) edits. After every case the server must be alive and answer a
//! completion at a random place of the document exactly as a cold run of the library computes
//! it on the test's own copy of the text (greedy, the tiny fixture).
//!
//! `QUILL_FUZZ_CASES=N` runs N cases instead of the default few (e.g. 2000 for a long run).

mod support;

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use quill::engine::tasks::session::WindowPolicy;
use quill::engine::LanguageModel;
use serde_json::{json, Map, Value};
use support::lsp::LspClient;
use support::*;

const URI: &str = "file:///tmp/quill-fuzz/doc.txt";
const MAX_TOKENS: usize = 4;
const CONTEXT_TOKENS: usize = 48;

/// Methods a random request may name. Those that would change what the test's copy of the
/// document or the settings are (`didOpen`/`didChange`/`didClose` of the fuzzed document,
/// `didChangeConfiguration`), or end the session, are left out; edits come from [`edit`].
const METHODS: &[&str] = &[
    "textDocument/completion",
    "textDocument/inlineCompletion",
    "textDocument/hover",
    "textDocument/codeAction",
    "workspace/executeCommand",
    "textDocument/didSave",
    "textDocument/definition",
    "initialize",
    "initialized",
    "$/cancelRequest",
    "$/setTrace",
    "$/unknown",
    "quill/stats",
    "quill/parseError",
    "textDocument/didOpen",
    "textDocument/didClose",
    "workspace/didChangeWatchedFiles",
    "nonsense",
];

/// Pieces of text that edits insert: ASCII, accents, astral characters, new lines.
const PIECES: &[&str] = &[
    "the",
    " cat",
    " sat",
    ".",
    "\n",
    " é",
    "😀",
    " 42",
    "日本",
    " ",
    "\t",
    ",",
    "fn main() {",
];

#[derive(Debug, Clone)]
enum Action {
    /// A frame whose body is these bytes.
    Garbage(Vec<u8>),
    /// A header block without a body and without Content-Length.
    BadHeader(String),
    /// A frame whose body is this JSON value.
    Json(Value),
    /// A request (`id` set) or notification of a listed method with random params.
    Call {
        method: usize,
        id: Option<u64>,
        params: Value,
    },
    /// Replace chars `a..b` of the document (fractions of its length) with pieces.
    Edit { a: f64, b: f64, pieces: Vec<usize> },
    /// An edit with a reversed range: the server refuses it and keeps the text.
    ReversedEdit { a: f64 },
    /// A completion at a random place, not checked (it may be superseded or cancelled).
    Complete { at: f64, cancel: bool },
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
        Just(json!(URI)),
        Just(json!({"line": 0, "character": 3})),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z/$]{0,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Parameters that are often nearly right: real shapes with random holes and values.
fn params() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(l1, c1, l2, c2)| {
            json!({"textDocument": {"uri": URI},
                   "position": {"line": l1 % 40, "character": c1 % 200},
                   "range": {"start": {"line": l1 % 40, "character": c1 % 200},
                             "end": {"line": l2 % 40, "character": c2 % 200}},
                   "context": {"diagnostics": [], "triggerKind": 1}})
        }),
        (0usize..6, json_value()).prop_map(|(c, arg)| {
            let commands = [
                "quill.summarize",
                "quill.answer",
                "quill.translate",
                "quill.summarize.insert",
                "quill.nothing",
                "",
            ];
            json!({"command": commands[c], "arguments": [arg]})
        }),
        any::<u64>().prop_map(|id| json!({"id": id})),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Action::Garbage),
        "[a-zA-Z-]{1,12}: [ -~]{0,20}".prop_map(Action::BadHeader),
        json_value().prop_map(|v| match v {
            // An `id` could collide with the test's own requests: keep random ones apart.
            Value::Object(mut m) => {
                m.remove("id");
                Action::Json(Value::Object(m))
            }
            v => Action::Json(v),
        }),
        (
            0..METHODS.len(),
            prop::option::of(1u64 << 40..1u64 << 41),
            params()
        )
            .prop_map(|(method, id, params)| Action::Call { method, id, params }),
        (
            0.0..1.0f64,
            0.0..1.0f64,
            prop::collection::vec(0..PIECES.len(), 0..6)
        )
            .prop_map(|(a, b, pieces)| Action::Edit { a, b, pieces }),
        (0.05..1.0f64).prop_map(|a| Action::ReversedEdit { a }),
        (0.0..1.0f64, any::<bool>()).prop_map(|(at, cancel)| Action::Complete { at, cancel }),
    ]
}

/// The byte offset of char fraction `at` of `text`.
fn char_offset(text: &str, at: f64) -> usize {
    let n = text.chars().count();
    let k = ((n as f64) * at) as usize;
    text.char_indices()
        .nth(k)
        .map(|(i, _)| i)
        .unwrap_or(text.len())
}

/// LSP's position (UTF-16) of byte `offset`; the test's texts have no '\r'.
fn position(text: &str, offset: usize) -> Value {
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let character: usize = before[line_start..].chars().map(char::len_utf16).sum();
    json!({"line": line, "character": character})
}

struct Fuzz {
    client: LspClient,
    lm: LanguageModel,
    text: String,
    version: i32,
}

impl Fuzz {
    fn start() -> Fuzz {
        let mut client = LspClient::start(&[]);
        client.initialize(
            json!({}),
            json!({
                "model": fixture_dir("gpt2-tiny").display().to_string(),
                "t5Model": fixture_dir("t5-tiny").display().to_string(),
                "t5": {"maxTokens": 4},
                "completion": {"temperature": 0, "numSuggestions": 1, "maxTokens": MAX_TOKENS,
                               "contextTokens": CONTEXT_TOKENS,
                               "stopAtNewline": false, "stopAtSentence": false},
                "diagnostics": {"enabled": true, "minTokenLogprob": -25.0, "minAlternativeGap": 8.0,
                                "maxSentencePerplexity": 1e12, "debounceMs": 0},
            }),
        );
        // Long enough that completions near its end read only a tail of it.
        let text: String = (0..40)
            .map(|i| format!("Line {i}: the cat sat on the mat.\n"))
            .collect();
        client.open(URI, "plaintext", &text);
        Fuzz {
            client,
            lm: load_fixture("gpt2-tiny"),
            text,
            version: 1,
        }
    }

    fn send(&mut self, msg: Value) {
        self.client.send_raw(&msg.to_string());
    }

    fn change(&mut self, start: usize, end: usize, new: &str) {
        self.version += 1;
        let range = json!({"start": position(&self.text, start), "end": position(&self.text, end)});
        let msg = json!({"jsonrpc": "2.0", "method": "textDocument/didChange",
                         "params": {"textDocument": {"uri": URI, "version": self.version},
                                    "contentChanges": [{"range": range, "text": new}]}});
        self.send(msg);
    }

    fn run(&mut self, a: &Action) {
        match a {
            Action::Garbage(bytes) => {
                let mut frame = format!("Content-Length: {}\r\n\r\n", bytes.len()).into_bytes();
                frame.extend_from_slice(bytes);
                self.client.send_bytes(&frame);
            }
            Action::BadHeader(h) => self.client.send_bytes(format!("{h}\r\n\r\n").as_bytes()),
            Action::Json(v) => self.client.send_raw(&v.to_string()),
            Action::Call { method, id, params } => {
                let mut msg =
                    json!({"jsonrpc": "2.0", "method": METHODS[*method], "params": params});
                if let Some(id) = id {
                    msg["id"] = json!(id);
                }
                // Opening or closing the fuzzed document itself would change the test's copy.
                let s = msg.to_string();
                if !(METHODS[*method].starts_with("textDocument/did") && s.contains(URI)) {
                    self.send(msg);
                }
            }
            Action::Edit { a, b, pieces } => {
                let (a, b) = (char_offset(&self.text, *a), char_offset(&self.text, *b));
                let (start, end) = (a.min(b), a.max(b));
                let new: String = pieces.iter().map(|&p| PIECES[p]).collect();
                self.change(start, end, &new);
                self.text.replace_range(start..end, &new);
            }
            Action::ReversedEdit { a } => {
                let end = char_offset(&self.text, *a * 0.5);
                let start = char_offset(&self.text, *a);
                if start > end {
                    self.version += 1;
                    let range = json!({"start": position(&self.text, start),
                                       "end": position(&self.text, end)});
                    let msg = json!({"jsonrpc": "2.0", "method": "textDocument/didChange",
                                     "params": {"textDocument": {"uri": URI, "version": self.version},
                                                "contentChanges": [{"range": range, "text": "XYZ"}]}});
                    self.send(msg);
                }
            }
            Action::Complete { at, cancel } => {
                let offset = char_offset(&self.text, *at);
                let id = self.client.request_async(
                    "textDocument/completion",
                    json!({"textDocument": {"uri": URI}, "position": position(&self.text, offset)}),
                );
                if *cancel {
                    self.send(json!({"jsonrpc": "2.0", "method": "$/cancelRequest",
                                     "params": {"id": id}}));
                }
            }
        }
    }

    /// A completion at `at` must be what a cold run of the library gives on the test's copy.
    fn check(&mut self, at: f64) -> Result<(), TestCaseError> {
        let offset = char_offset(&self.text, at);
        let r = self.client.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": URI}, "position": position(&self.text, offset)}),
        );
        let before = &self.text[..offset];
        let policy = WindowPolicy {
            context_tokens: CONTEXT_TOKENS,
            reserve: MAX_TOKENS,
            n_positions: self.lm.n_positions(),
        };
        let prompt = self.lm.prompt_for(before, &policy).unwrap();
        let want = cold_greedy(&self.lm, &prompt, MAX_TOKENS)[0].text.clone();
        let word = &before[before.len() - quill::lsp::current_word_len(before)..];
        let items = r["result"]["items"].as_array().cloned();
        let Some(items) = items else {
            return Err(TestCaseError::fail(format!("no completion list: {r}")));
        };
        if want.trim().is_empty() {
            prop_assert!(items.is_empty(), "{r}");
        } else {
            prop_assert_eq!(
                &items[0]["textEdit"]["newText"],
                &json!(format!("{word}{want}")),
                "at byte {} of {:?}",
                offset,
                self.text
            );
        }
        // Forget what was answered to the random requests.
        self.client.drain_responses(Duration::ZERO);
        Ok(())
    }
}

#[test]
fn random_protocol_abuse_leaves_the_server_alive_and_right() {
    let cases = std::env::var("QUILL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let fuzz = std::cell::RefCell::new(Fuzz::start());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // A failing case is reported as it is: shrinking would replay it on a changed server.
        max_shrink_iters: 0,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let actions_sent = std::cell::Cell::new(0usize);
    let strategy = (prop::collection::vec(action(), 1..10), 0.0..=1.0f64);
    let result = runner.run(&strategy, |(actions, at)| {
        let mut fuzz = fuzz.borrow_mut();
        for a in &actions {
            fuzz.run(a);
        }
        actions_sent.set(actions_sent.get() + actions.len());
        fuzz.check(at)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The session is still in order: it shuts down cleanly.
    let mut fuzz = fuzz.into_inner();
    let r = fuzz.client.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    eprintln!(
        "fuzz: {cases} cases, {} random messages, {:.1} s",
        actions_sent.get(),
        started.elapsed().as_secs_f64()
    );
}
