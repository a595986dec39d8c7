//! Reliability over stdio: what real clients sometimes send (invalid JSON-RPC, `$/` requests,
//! no answer to a configuration pull, commands before the settings are known) neither ends,
//! hangs nor silences the server. Each test drives the real `quill` binary, with raw bytes
//! where the point is framing.

mod support;

use std::time::Duration;

use candle_core::{DType, Device};
use serde_json::{json, Value};
use support::lsp::LspClient;
use support::*;

const URI: &str = "file:///tmp/quill-test/reliability.txt";
const MAX_TOKENS: usize = 8;

fn greedy_settings() -> Value {
    json!({
        "model": fixture_dir("gpt2-tiny").display().to_string(),
        "completion": {"temperature": 0, "numSuggestions": 1, "maxTokens": MAX_TOKENS,
                       "stopAtNewline": false, "stopAtSentence": false},
        "diagnostics": {"enabled": false},
    })
}

/// The continuation a cold engine computes for `text` at the start of a document.
fn expected(text: &str) -> String {
    let lm = load_fixture("gpt2-tiny");
    cold_greedy(&lm, &document_prompt(&lm, text), MAX_TOKENS)[0]
        .text
        .clone()
}

/// Asks for a completion at the end of `text` (one line, ASCII) and checks it against a cold
/// run: the server is alive and right.
fn assert_completes(client: &mut LspClient, text: &str) {
    let r = client.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": URI},
               "position": {"line": 0, "character": text.len()}}),
    );
    let word_len = quill::lsp::current_word_len(text);
    let want = format!("{}{}", &text[text.len() - word_len..], expected(text));
    assert_eq!(r["result"]["items"][0]["textEdit"]["newText"], want, "{r}");
}

#[test]
fn invalid_json_rpc_objects_get_invalid_request_and_the_session_goes_on() {
    let mut client = LspClient::start(&[]);
    client.initialize(json!({}), greedy_settings());
    let text = "The cat sat on the";
    client.open(URI, "plaintext", text);
    for body in [
        "{}",
        r#"{"jsonrpc":"2.0"}"#,
        r#"{"jsonrpc":"2.0","id":true,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"textDocument/hover"}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":42}"#,
        r#"{"jsonrpc":"1.0","id":4,"method":"shutdown"}"#,
        r#"{"id":5,"method":"shutdown"}"#,
        r#"{"jsonrpc":"2.0","id":6,"method":"x","params":7}"#,
        r#"{"jsonrpc":"2.0","id":8}"#,
        r#"[1, 2, 3]"#,
        r#""a string""#,
    ] {
        client.send_bytes(&LspClient::frame(body));
        let r = client.wait_response_with_null_id();
        assert_eq!(r["error"]["code"], -32600, "{body} -> {r}");
        assert_completes(&mut client, text);
    }
    // Still a parse error for what is not JSON.
    client.send_bytes(&LspClient::frame("{\"jsonrpc\": \"2.0\", \"id\": 9, "));
    assert_eq!(client.wait_response_with_null_id()["error"]["code"], -32700);
    assert_completes(&mut client, text);
    // `shutdown` was never run by the refused messages: it answers and `exit` gives 0.
    let r = client.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    client.notify("exit", Value::Null);
    assert_eq!(client.wait_exit(), 0);
}

#[test]
fn unknown_dollar_requests_get_method_not_found_and_dollar_notifications_nothing() {
    let mut client = LspClient::start(&[]);
    client.initialize(json!({}), greedy_settings());
    let text = "Once upon a time";
    client.open(URI, "plaintext", text);
    // A `$/` notification is dropped: the next answer is the completion's.
    client.notify("$/somethingNew", json!({"x": 1}));
    client.send_bytes(&LspClient::frame(
        r#"{"jsonrpc":"2.0","id":"dollar-7","method":"$/unknownRequest","params":{}}"#,
    ));
    let responses = client.drain_responses(Duration::from_secs(3));
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0]["id"], "dollar-7");
    assert_eq!(responses[0]["error"]["code"], -32601, "{responses:?}");
    // An unknown method without `$/` is still method-not-found.
    let r = client.request("quill/noSuchThing", json!({}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    assert_completes(&mut client, text);
}

/// A server that asked for its configuration and never got an answer.
fn start_with_unanswered_pull() -> LspClient {
    let mut client = LspClient::start(&[]);
    client.answer_configuration = false;
    client.initialize(
        json!({"workspace": {"configuration": true}}),
        greedy_settings(),
    );
    // Wait for the pull itself, so that the handler is really blocked on it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !client
        .server_requests
        .iter()
        .any(|r| r["method"] == "workspace/configuration")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no configuration pull"
        );
        client.drain_responses(Duration::from_millis(100));
    }
    client
}

#[test]
fn exit_ends_the_process_while_a_configuration_pull_is_unanswered() {
    let mut client = start_with_unanswered_pull();
    client.notify("exit", Value::Null);
    assert_eq!(client.exit_within(Duration::from_secs(5)), Some(1));

    let mut client = start_with_unanswered_pull();
    let r = client.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    client.notify("exit", Value::Null);
    assert_eq!(client.exit_within(Duration::from_secs(5)), Some(0));

    let mut client = start_with_unanswered_pull();
    client.close_stdin();
    assert!(
        client.exit_within(Duration::from_secs(5)).is_some(),
        "the end of input must end the process"
    );
}

#[test]
fn the_end_of_input_ends_the_process_while_a_completion_waits() {
    let mut client = LspClient::start(&[]);
    client.initialize(json!({}), greedy_settings());
    client.open(URI, "plaintext", "The cat");
    client.request_async(
        "textDocument/completion",
        json!({"textDocument": {"uri": URI}, "position": {"line": 0, "character": 7}}),
    );
    client.close_stdin();
    assert!(client.exit_within(Duration::from_secs(10)).is_some());
}

#[test]
fn a_t5_command_sent_right_after_initialized_waits_for_the_settings() {
    let text = "The harbour was quiet in the morning. Boats came in with fish and the \
                market opened early. People bought bread and talked about the weather.";
    let mut client = LspClient::start(&[]);
    let mut settings = greedy_settings();
    settings["t5Model"] = json!(fixture_dir("t5-tiny").display().to_string());
    settings["t5"] = json!({"maxTokens": 12});
    // The T5 model is named only by the pulled configuration.
    client.configuration = settings;
    let r = client.request(
        "initialize",
        json!({"processId": null, "rootUri": null,
               "capabilities": {"workspace": {"configuration": true}},
               "initializationOptions": {}}),
    );
    assert!(r.get("error").is_none(), "{r}");
    let id = client.next_id();
    let mut burst = LspClient::frame(r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#);
    burst.extend(LspClient::frame(
        &json!({"jsonrpc": "2.0", "method": "textDocument/didOpen",
                "params": {"textDocument": {"uri": URI, "languageId": "plaintext",
                                            "version": 1, "text": text}}})
        .to_string(),
    ));
    burst.extend(LspClient::frame(
        &json!({"jsonrpc": "2.0", "id": id, "method": "workspace/executeCommand",
                "params": {"command": "quill.summarize", "arguments": [{"uri": URI}]}})
        .to_string(),
    ));
    client.send_bytes(&burst);
    let r = client.response(id);
    let files = quill::models::resolve(
        &quill::models::ModelSource::Dir(fixture_dir("t5-tiny")),
        &Default::default(),
    )
    .unwrap();
    let mut t5 = quill::engine::tasks::t5::T5Model::load(
        &files,
        &Device::Cpu,
        quill::models::WeightFormat::Float(DType::F32),
    )
    .unwrap();
    let want = t5
        .run(
            &quill::engine::tasks::t5::Task::Summarize,
            text,
            12,
            &quill::engine::Cancel::new(),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(r["result"]["summary"], want, "{r}");
}

#[test]
fn a_panicking_handler_is_an_error_answer_logged_once_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut client = LspClient::start_with(
        &[],
        &[("QUILL_TEST_PANIC", "1"), ("QUILL_LOG", "error")],
        Some(&log),
    );
    client.initialize(json!({}), greedy_settings());
    let text = "It was a dark and stormy";
    client.open(URI, "plaintext", text);
    for round in 0..2 {
        let r = client.request("quill/testPanic", json!({"round": round}));
        assert_eq!(r["error"]["code"], -32603, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("a test panic"),
            "{r}"
        );
        // The documents' lock was held when it panicked: later requests still get it.
        assert_completes(&mut client, text);
    }
    let r = client.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    client.notify("exit", Value::Null);
    assert_eq!(client.wait_exit(), 0);
    let log = std::fs::read_to_string(&log).unwrap();
    for round in 0..2 {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("{{\"round\":{round}}}")))
            .collect();
        assert_eq!(lines.len(), 1, "logged once with its request: {log}");
        assert!(lines[0].contains("quill/testPanic"), "{log}");
    }
    assert!(
        !log.contains("thread '"),
        "no second report by the default hook: {log}"
    );
}

/// One line of a big document, numbered so that paragraphs differ.
fn numbered_line(i: usize) -> String {
    format!("Line {i} of the story: the cat sat on the mat and looked at the quiet harbour.\n")
}

#[test]
fn a_keystroke_in_a_4_mb_document_reads_only_the_window() {
    use quill::engine::tasks::session::{tail_start, WindowPolicy};
    let mut client = LspClient::start(&[]);
    client.initialize(json!({}), greedy_settings());
    let mut text: String = (0..60_000).map(numbered_line).collect();
    assert!(text.len() > 4 << 20);
    client.open(URI, "plaintext", &text);
    let lm = load_fixture("gpt2-tiny");
    // The server's default context (768 tokens) within the fixture's 128 positions.
    let policy = WindowPolicy {
        context_tokens: 768,
        reserve: MAX_TOKENS,
        n_positions: lm.n_positions(),
    };
    let lines = text.matches('\n').count() as u32;
    for (version, typed) in ["Th", "e", " dog", " ran"].iter().enumerate() {
        let col = text.len() - text.rfind('\n').map_or(0, |i| i + 1);
        client.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": version + 2},
                   "contentChanges": [{"range": {"start": {"line": lines, "character": col},
                                                 "end": {"line": lines, "character": col}},
                                       "text": typed}]}),
        );
        text.push_str(typed);
        let col = col + typed.len();
        let r = client.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": URI},
                   "position": {"line": lines, "character": col}}),
        );
        // The same continuation as a cold run of the library on this copy of the text.
        let prompt = lm.prompt_for(&text, &policy).unwrap();
        let want = cold_greedy(&lm, &prompt, MAX_TOKENS)[0].text.clone();
        let word = &text[text.len() - quill::lsp::current_word_len(&text)..];
        assert_eq!(
            r["result"]["items"][0]["textEdit"]["newText"],
            format!("{word}{want}"),
            "{r}"
        );
        // Only the tail was copied and tokenized, not 4 MB.
        let stats = client.request("quill/stats", Value::Null)["result"].clone();
        let read = stats["lastCompletionBytes"].as_u64().unwrap() as usize;
        assert!(read <= policy.tail_bytes() * 3 / 2, "{stats}");
        assert!(read >= policy.tail_bytes() / 2, "{stats}");
        assert!(tail_start(text.len(), &policy) > 4 << 20);
    }
}

#[test]
fn diagnostics_on_a_huge_document_check_the_edited_neighbourhood_first_and_stay_bounded() {
    let mut client = LspClient::start(&[]);
    let mut settings = greedy_settings();
    settings["diagnostics"] = json!({
        "enabled": true, "minTokenLogprob": -25.0, "minAlternativeGap": 8.0,
        "maxSentencePerplexity": 1e12, "debounceMs": 10,
    });
    client.initialize(json!({}), settings);
    // 3,000 paragraphs: checking all of them would take the engine for long.
    let text: String = (0..3000)
        .map(|i| format!("{}\n", numbered_line(i)))
        .collect();
    client.open(URI, "plaintext", &text);
    // Edit paragraph 2,500 (line 5,000): its neighbourhood is checked first.
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2},
               "contentChanges": [{"range": {"start": {"line": 5000, "character": 0},
                                             "end": {"line": 5000, "character": 0}},
                                   "text": "Suddenly "}]}),
    );
    let first = client.wait_notification("textDocument/publishDiagnostics", |p| p["version"] == 2);
    let lines: Vec<u64> = first["params"]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["range"]["start"]["line"].as_u64().unwrap())
        .collect();
    assert!(
        lines.iter().any(|&l| (4900..5100).contains(&l)),
        "the edited neighbourhood is in the first publication: {lines:?}"
    );
    // Nothing from the middle of the document, far from both the top and the edit.
    assert!(
        !lines.iter().any(|&l| (1000..4000).contains(&l)),
        "{lines:?}"
    );
    // The work per document is capped: wait until the passes stop, then count.
    let mut proofreads = 0;
    for _ in 0..600 {
        let stats = client.request("quill/stats", Value::Null)["result"].clone();
        let now = stats["proofreads"].as_u64().unwrap();
        if now == proofreads && now > 0 {
            break;
        }
        proofreads = now;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        proofreads > 0 && proofreads <= 2 * 384,
        "paragraphs proofread: {proofreads} of 3000"
    );
}

/// `quill` on the command line, offline, with its cache under `cache`.
fn quill_cli(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    let bin =
        std::env::var_os("QUILL_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_quill").into());
    std::process::Command::new(bin)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("QUILL_LOG", "error")
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("run quill")
}

/// A directory that holds gpt2-tiny as `model.gguf` alone, in q8_0.
fn gguf_alone(dir: &std::path::Path) -> std::path::PathBuf {
    let model = fixture_dir("gpt2-tiny").display().to_string();
    let target = dir.join("gguf-alone");
    let out = quill_cli(
        &[
            "--model",
            &model,
            "--dtype",
            "q8_0",
            "quantize",
            &target.display().to_string(),
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(target.join("config.json")).unwrap();
    std::fs::remove_file(target.join("tokenizer.json")).unwrap();
    target.join("model.gguf")
}

#[test]
#[cfg(unix)]
fn gguf_companion_files_are_private_and_never_taken_from_the_shared_temp_dir() {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let gguf = gguf_alone(dir.path());
    // Another local user plants companions where the old code looked for them: the shared
    // temporary directory, under a name computed from the file as it computed it.
    let meta = std::fs::metadata(&gguf).unwrap();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        gguf.canonicalize().unwrap(),
        meta.len(),
        meta.modified().ok(),
    )
        .hash(&mut hasher);
    let planted = std::env::temp_dir().join(format!("quill-gguf-{:016x}", hasher.finish()));
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("config.json"), "{\"planted\": true}").unwrap();
    std::fs::write(planted.join("tokenizer.json"), "planted").unwrap();

    let text = "The quick brown fox";
    let model = gguf.parent().unwrap().display().to_string();
    let cache = dir.path().join("cache");
    let out = quill_cli(&["--model", &model, "score", "--json", text], &cache);
    let _ = std::fs::remove_dir_all(&planted);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fixture = fixture_dir("gpt2-tiny").display().to_string();
    let want = quill_cli(
        &[
            "--model", &fixture, "--dtype", "q8_0", "score", "--json", text,
        ],
        &cache,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&want.stdout)
    );
    // The companions were written into the user's private cache directory.
    let private = cache.join("quill");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let written: Vec<_> = std::fs::read_dir(&private)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        written.iter().any(|p| p.join("tokenizer.json").is_file()),
        "{written:?}"
    );

    // A cache directory that others may write into, or a link to one, is refused by name.
    let open_cache = dir.path().join("open");
    std::fs::create_dir_all(open_cache.join("quill")).unwrap();
    std::fs::set_permissions(
        open_cache.join("quill"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let linked_cache = dir.path().join("linked");
    std::fs::create_dir_all(&linked_cache).unwrap();
    std::os::unix::fs::symlink(&private, linked_cache.join("quill")).unwrap();
    for (cache, why) in [
        (&open_cache, "may be written by others"),
        (&linked_cache, "symbolic link"),
    ] {
        let out = quill_cli(&["--model", &model, "score", "--json", text], cache);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{err}");
    }
}
