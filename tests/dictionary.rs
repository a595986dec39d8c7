//! Dictionaries and ignores end to end over LSP: the code actions and their commands (both
//! scopes, every open document republished, the files' contents), the case rule, ignore
//! comments of each kind, `ignoreRepeated`, `exclude`, files changed on disk, two servers adding
//! words at once, and bad dictionary files.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quill::engine::tasks::proofread::ProofreadOptions;
use quill::engine::Cancel;
use serde_json::{json, Value};
use support::lsp::LspClient;
use support::*;

const PARA: &str = "We sat in the café and ordered coffee. It was good.";

/// The words the fixture flags in [`PARA`] at the thresholds of [`settings`], in order.
fn flagged_words() -> Vec<String> {
    let opts = ProofreadOptions {
        min_token_logprob: -25.0,
        min_gap: 8.0,
        max_alternatives: 3,
        max_sentence_perplexity: 1e12,
    };
    let lm = load_fixture("gpt2-tiny");
    let got = lm.proofread(PARA, &opts, &Cancel::new()).unwrap();
    let words: Vec<String> = got.words.iter().map(|w| w.word.clone()).collect();
    assert!(
        words.len() >= 2,
        "the thresholds must flag two words: {words:?}"
    );
    words
}

fn settings() -> Value {
    json!({
        "model": fixture_dir("gpt2-tiny").display().to_string(),
        "diagnostics": {"minTokenLogprob": -25.0, "minAlternativeGap": 8.0,
                        "maxSentencePerplexity": 1e12, "debounceMs": 10,
                        "ignoreRepeated": 0},
    })
}

/// A temporary home: a workspace folder `proj` and a config directory for the user's
/// dictionary.
struct Home {
    _dir: tempfile::TempDir,
    root: PathBuf,
    proj: PathBuf,
    config: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let proj = root.join("proj");
        let config = root.join("config");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::create_dir_all(&config).unwrap();
        Home {
            _dir: dir,
            root,
            proj,
            config,
        }
    }

    fn uri(&self, rel: &str) -> String {
        format!("file://{}", self.proj.join(rel).display())
    }

    fn workspace_dict(&self) -> PathBuf {
        self.proj.join(".quill/dictionary.txt")
    }

    fn user_dict(&self) -> PathBuf {
        self.config.join("quill/dictionary.txt")
    }

    /// Starts a server whose user config directory is ours, initialized with `proj` as its
    /// workspace folder (or none).
    fn server(&self, folder: bool, capabilities: Value, settings: Value) -> LspClient {
        let mut client = LspClient::start_with_env(
            &[],
            &[("XDG_CONFIG_HOME", &self.config), ("HOME", &self.root)],
        );
        let folders = if folder {
            json!([{"uri": format!("file://{}", self.proj.display()), "name": "proj"}])
        } else {
            Value::Null
        };
        let r = client.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "workspaceFolders": folders,
                   "capabilities": capabilities, "initializationOptions": settings}),
        );
        assert!(r.get("error").is_none(), "{r}");
        client.notify("initialized", json!({}));
        client
    }
}

/// The words of the `unlikely-token` diagnostics in a publication.
fn words_of(params: &Value) -> Vec<String> {
    params["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "unlikely-token")
        .map(|d| d["data"]["word"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for a publication of `uri` whose words are `want`.
fn wait_words(client: &mut LspClient, uri: &str, want: &[String]) -> Value {
    let n = client.wait_notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && words_of(p) == want
    });
    n["params"].clone()
}

/// The last publication of `uri` seen so far.
fn last_words(client: &LspClient, uri: &str) -> Vec<String> {
    let n = client
        .notifications
        .iter()
        .rev()
        .find(|n| n["method"] == "textDocument/publishDiagnostics" && n["params"]["uri"] == uri)
        .expect("a publication");
    words_of(&n["params"])
}

fn without(words: &[String], w: &str) -> Vec<String> {
    words.iter().filter(|x| *x != w).cloned().collect()
}

fn code_actions(client: &mut LspClient, uri: &str, diagnostic: &Value) -> Vec<Value> {
    let r = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": diagnostic["range"],
               "context": {"diagnostics": [diagnostic]}}),
    );
    r["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone()
}

fn execute(client: &mut LspClient, command: &Value) -> Value {
    client.request(
        "workspace/executeCommand",
        json!({"command": command["command"], "arguments": command["arguments"]}),
    )
}

#[test]
fn adding_a_word_clears_it_in_every_open_document_for_both_scopes() {
    let words = flagged_words();
    let home = Home::new();
    let mut client = home.server(true, json!({}), settings());
    let (a, b) = (home.uri("a.md"), home.uri("sub/b.md"));
    client.open(&a, "markdown", PARA);
    client.open(&b, "markdown", &format!("{PARA}\n"));
    let first = wait_words(&mut client, &a, &words);
    wait_words(&mut client, &b, &words);

    // The actions on the first word: both dictionaries and the document's ignore list.
    let w1 = words[0].clone();
    let diag = first["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["data"]["word"] == w1.as_str())
        .unwrap()
        .clone();
    let actions = code_actions(&mut client, &a, &diag);
    let titled = |t: String| {
        actions
            .iter()
            .find(|x| x["title"] == t.as_str())
            .unwrap_or_else(|| panic!("no action {t:?} in {actions:?}"))
            .clone()
    };
    let to_workspace = titled(format!("Add '{w1}' to the workspace dictionary"));
    let to_user = titled(format!("Add '{w1}' to the user dictionary"));
    let ignore = titled(format!("Ignore '{w1}' in this document"));
    for x in [&to_workspace, &to_user, &ignore] {
        assert_eq!(x["kind"], "quickfix");
        assert_eq!(x["diagnostics"][0]["range"], diag["range"]);
    }
    assert_eq!(to_workspace["command"]["command"], "quill.addToDictionary");
    assert_eq!(
        to_workspace["command"]["arguments"],
        json!([{"word": w1, "scope": "workspace", "uri": a}])
    );
    assert_eq!(
        to_user["command"]["arguments"],
        json!([{"word": w1, "scope": "user", "uri": a}])
    );
    assert_eq!(ignore["command"]["command"], "quill.ignoreWord");
    assert_eq!(
        ignore["command"]["arguments"],
        json!([{"uri": a, "word": w1}])
    );

    // The workspace scope: the file holds the word; both documents lose it at once.
    let r = execute(&mut client, &to_workspace["command"]);
    let file = PathBuf::from(
        r["result"]["file"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}")),
    );
    assert_eq!(file, home.workspace_dict());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{w1}\n"));
    let after = without(&words, &w1);
    let start = Instant::now();
    wait_words(&mut client, &a, &after);
    wait_words(&mut client, &b, &after);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "republished at once"
    );

    // The user scope with the second word.
    let w2 = after[0].clone();
    let r = execute(
        &mut client,
        &json!({"command": "quill.addToDictionary",
                "arguments": [{"word": w2, "scope": "user", "uri": b}]}),
    );
    assert_eq!(
        PathBuf::from(r["result"]["file"].as_str().unwrap()),
        home.user_dict()
    );
    assert_eq!(
        std::fs::read_to_string(home.user_dict()).unwrap(),
        format!("{w2}\n")
    );
    let after2 = without(&after, &w2);
    wait_words(&mut client, &a, &after2);
    wait_words(&mut client, &b, &after2);

    // Adding a word that is there already changes nothing in the file.
    let r = execute(&mut client, &to_workspace["command"]);
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(
        std::fs::read_to_string(home.workspace_dict()).unwrap(),
        format!("{w1}\n")
    );
    // Bad arguments are errors that name the problem; the server keeps serving.
    for (args, says) in [
        (json!([{"word": "x", "scope": "team"}]), "scope"),
        (json!([{"word": "", "scope": "user"}]), "empty"),
        (json!([{"word": "#x", "scope": "user"}]), "comment"),
        (json!([]), "argument"),
    ] {
        let r = client.request(
            "workspace/executeCommand",
            json!({"command": "quill.addToDictionary", "arguments": args}),
        );
        let msg = r["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        assert!(msg.contains(says), "{msg}");
    }
    let r = client.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
}

#[test]
fn ignoring_a_word_acts_in_that_document_only() {
    let words = flagged_words();
    let home = Home::new();
    let mut client = home.server(true, json!({}), settings());
    let (a, b) = (home.uri("a.md"), home.uri("b.md"));
    client.open(&a, "markdown", PARA);
    client.open(&b, "markdown", PARA);
    wait_words(&mut client, &a, &words);
    wait_words(&mut client, &b, &words);
    let w1 = &words[0];
    let r = client.request(
        "workspace/executeCommand",
        json!({"command": "quill.ignoreWord", "arguments": [{"uri": a, "word": w1}]}),
    );
    assert_eq!(r["result"], Value::Null, "{r}");
    assert!(r.get("error").is_none(), "{r}");
    wait_words(&mut client, &a, &without(&words, w1));
    assert_eq!(
        last_words(&client, &b),
        words,
        "the other document keeps it"
    );
    // An edit elsewhere in the document keeps the word ignored.
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": a, "version": 2},
               "contentChanges": [{"text": format!("{PARA}\n")}]}),
    );
    let n = client.wait_notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == a && p["version"] == 2
    });
    assert_eq!(words_of(&n["params"]), without(&words, w1));
    assert!(!home.workspace_dict().exists() && !home.user_dict().exists());
}

#[test]
fn without_a_workspace_folder_the_workspace_action_is_not_offered() {
    let words = flagged_words();
    let home = Home::new();
    let mut client = home.server(false, json!({}), settings());
    let a = home.uri("a.md");
    client.open(&a, "markdown", PARA);
    let p = wait_words(&mut client, &a, &words);
    let diag = p["diagnostics"][0].clone();
    let actions = code_actions(&mut client, &a, &diag);
    let titles: Vec<&str> = actions.iter().filter_map(|x| x["title"].as_str()).collect();
    assert!(
        !titles.iter().any(|t| t.contains("workspace dictionary")),
        "{titles:?}"
    );
    assert!(titles.contains(&format!("Add '{}' to the user dictionary", words[0]).as_str()));
    let r = client.request(
        "workspace/executeCommand",
        json!({"command": "quill.addToDictionary",
               "arguments": [{"word": "zork", "scope": "workspace", "uri": a}]}),
    );
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(msg.contains("no workspace folder"), "{msg}");
}

#[test]
fn case_rules_of_dictionary_entries() {
    let words = flagged_words();
    let home = Home::new();
    let w = words[0].clone();
    let lower = w.to_lowercase();
    let capitalized = {
        let mut c = w.chars();
        let first = c.next().unwrap();
        first.to_uppercase().chain(c).collect::<String>()
    };
    let upper = w.to_uppercase();
    let a = home.uri("a.md");
    // Each entry, and whether it silences the word as the document writes it.
    let mut cases = vec![(w.clone(), true), (upper.clone(), upper == w)];
    if w == lower {
        // A lower-case word: a capitalized entry matches only as written.
        cases.push((capitalized.clone(), capitalized == w));
    } else if w == capitalized && lower != w {
        // A capitalized word: the lower-case entry matches it too.
        cases.push((lower.clone(), true));
    }
    for (entry, silenced) in cases {
        let mut s = settings();
        s["diagnostics"]["dictionary"] = json!([entry]);
        let mut client = home.server(true, json!({}), s);
        client.open(&a, "markdown", PARA);
        let want = if silenced {
            without(&words, &w)
        } else {
            words.clone()
        };
        let n = client.wait_notification("textDocument/publishDiagnostics", |p| p["uri"] == a);
        assert_eq!(words_of(&n["params"]), want, "entry {entry:?} for {w:?}");
    }
    // The same rule holds in the files.
    std::fs::create_dir_all(home.workspace_dict().parent().unwrap()).unwrap();
    std::fs::write(
        home.workspace_dict(),
        format!("# a comment\n{upper}x\n{lower}\n"),
    )
    .unwrap();
    let mut client = home.server(true, json!({}), settings());
    client.open(&a, "markdown", PARA);
    let n = client.wait_notification("textDocument/publishDiagnostics", |p| p["uri"] == a);
    let lower_matches = w == lower || w == capitalized;
    let want = if lower_matches {
        without(&words, &w)
    } else {
        words.clone()
    };
    assert_eq!(words_of(&n["params"]), want);
}

/// Lines that hold a diagnostic.
fn lines_of(params: &Value) -> Vec<u64> {
    let mut lines: Vec<u64> = params["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["range"]["start"]["line"].as_u64().unwrap())
        .collect();
    lines.dedup();
    lines
}

#[test]
fn ignore_comments_of_each_kind_in_markdown_and_code() {
    let words = flagged_words();
    let home = Home::new();
    let mut client = home.server(true, json!({}), settings());
    let md = home.uri("notes.md");
    let text = format!(
        "{PARA}\n\n<!-- quill: ignore-next-line -->\n{PARA}\n\n{PARA} <!-- quill: ignore-line -->\n\n\
         <!-- quill: off -->\n{PARA}\n\n{PARA}\n<!-- quill: on -->\n\n{PARA}\n"
    );
    client.open(&md, "markdown", &text);
    let n = client.wait_notification("textDocument/publishDiagnostics", |p| p["uri"] == md);
    assert_eq!(lines_of(&n["params"]), vec![0, 13], "{}", n["params"]);
    assert_eq!(words_of(&n["params"]).len(), 2 * words.len());

    let py = home.uri("main.py");
    let code = format!(
        "# {PARA}\nx = 1\n# quill: ignore-next-line\n# {PARA}\ny = 2\n# {PARA}  # quill: ignore-line\n\
         z = 3\n# quill: off\n# {PARA}\nw = 4\n# quill: on\nv = 5\n# {PARA}\n"
    );
    client.open(&py, "python", &code);
    let n = client.wait_notification("textDocument/publishDiagnostics", |p| p["uri"] == py);
    let lines = lines_of(&n["params"]);
    assert_eq!(lines.first(), Some(&0), "{}", n["params"]);
    assert_eq!(lines.last(), Some(&12), "{}", n["params"]);
    assert!(lines.iter().all(|l| *l == 0 || *l == 12), "{lines:?}");
}

#[test]
fn words_the_document_repeats_are_not_flagged() {
    let words = flagged_words();
    let home = Home::new();
    let text = format!("{PARA}\n\n{PARA}\n\n{PARA}\n");
    let md = home.uri("notes.md");
    let count = |w: &str| {
        quill::engine::tasks::proofread::word_spans(&text)
            .into_iter()
            .filter(|&(a, b)| &text[a..b] == w)
            .count()
    };
    for n in [0usize, 3, 4] {
        let mut s = settings();
        s["diagnostics"]["ignoreRepeated"] = json!(n);
        let mut client = home.server(true, json!({}), s);
        client.open(&md, "markdown", &text);
        let p = client.wait_notification("textDocument/publishDiagnostics", |p| p["uri"] == md);
        let want: Vec<String> = (0..3)
            .flat_map(|_| words.iter().cloned())
            .filter(|w| n == 0 || count(w) < n)
            .collect();
        assert_eq!(words_of(&p["params"]), want, "ignoreRepeated {n}");
        if n == 3 {
            assert!(want.is_empty(), "three copies: every word is used 3 times");
        } else {
            assert_eq!(want.len(), 3 * words.len());
        }
    }
    // The default is 3.
    let mut s = settings();
    s["diagnostics"]
        .as_object_mut()
        .unwrap()
        .remove("ignoreRepeated");
    let mut client = home.server(true, json!({}), s);
    client.open(&md, "markdown", &text);
    let p = client.wait_notification("textDocument/publishDiagnostics", |p| p["uri"] == md);
    assert_eq!(words_of(&p["params"]), Vec::<String>::new());
}

#[test]
fn excluded_paths_are_never_checked() {
    let words = flagged_words();
    let home = Home::new();
    let mut s = settings();
    s["diagnostics"]["exclude"] = json!(["generated/**", "*.txt"]);
    let mut client = home.server(true, json!({}), s);
    let (gen, txt, md) = (
        home.uri("generated/api.md"),
        home.uri("notes/todo.txt"),
        home.uri("notes/a.md"),
    );
    client.open(&gen, "markdown", PARA);
    client.open(&txt, "plaintext", PARA);
    client.open(&md, "markdown", PARA);
    wait_words(&mut client, &md, &words);
    for uri in [&gen, &txt] {
        let n = client.wait_notification("textDocument/publishDiagnostics", |p| p["uri"] == *uri);
        assert_eq!(n["params"]["diagnostics"], json!([]), "{uri}");
    }
    // A bad glob is named; the previous patterns stay.
    let mut bad = settings();
    bad["diagnostics"]["exclude"] = json!(["[oops"]);
    client.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"quill": bad}}),
    );
    let m = client.wait_notification("window/showMessage", |p| {
        p["message"]
            .as_str()
            .unwrap()
            .contains("diagnostics.exclude")
    });
    assert!(m["params"]["message"].as_str().unwrap().contains("[oops"));
}

#[test]
fn dictionaries_changed_on_disk_republish_at_once() {
    let words = flagged_words();
    let home = Home::new();
    let caps = json!({"workspace": {"didChangeWatchedFiles": {"dynamicRegistration": true}}});
    let mut client = home.server(true, caps, settings());
    let a = home.uri("a.md");
    client.open(&a, "markdown", PARA);
    wait_words(&mut client, &a, &words);
    // The server asked the client to watch the workspace dictionaries.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client
        .server_requests
        .iter()
        .any(|r| r["method"] == "client/registerCapability")
    {
        assert!(Instant::now() < deadline, "no file watcher registered");
        let _ = client.request(
            "textDocument/hover",
            json!({"textDocument": {"uri": a},
            "position": {"line": 0, "character": 0}}),
        );
    }
    let reg = client
        .server_requests
        .iter()
        .find(|r| r["method"] == "client/registerCapability")
        .unwrap();
    let r = &reg["params"]["registrations"][0];
    assert_eq!(r["method"], "workspace/didChangeWatchedFiles");
    assert_eq!(
        r["registerOptions"]["watchers"][0]["globPattern"],
        "**/.quill/dictionary.txt"
    );

    // An editor's watcher reports the workspace dictionary written by someone else.
    let (w1, w2) = (words[0].clone(), words[1].clone());
    std::fs::create_dir_all(home.workspace_dict().parent().unwrap()).unwrap();
    std::fs::write(home.workspace_dict(), format!("{w1}\n")).unwrap();
    let start = Instant::now();
    client.notify(
        "workspace/didChangeWatchedFiles",
        json!({"changes": [{"uri": format!("file://{}", home.workspace_dict().display()),
                            "type": 2}]}),
    );
    wait_words(&mut client, &a, &without(&words, &w1));
    assert!(start.elapsed() < Duration::from_secs(5));
    // The user dictionary, with no notification at all: the server's own check sees it.
    std::fs::create_dir_all(home.user_dict().parent().unwrap()).unwrap();
    std::fs::write(home.user_dict(), format!("{w2}\n")).unwrap();
    let start = Instant::now();
    wait_words(&mut client, &a, &without(&without(&words, &w1), &w2));
    assert!(start.elapsed() < Duration::from_secs(10));
    // Removing the words brings the diagnostics back.
    std::fs::remove_file(home.user_dict()).unwrap();
    std::fs::write(home.workspace_dict(), "# none\n").unwrap();
    client.notify(
        "workspace/didChangeWatchedFiles",
        json!({"changes": [{"uri": format!("file://{}", home.workspace_dict().display()),
                            "type": 2}]}),
    );
    client.notifications.clear();
    wait_words(&mut client, &a, &words);
}

#[test]
fn two_servers_adding_words_at_once_keep_every_word() {
    let home = Home::new();
    let mut clients: Vec<LspClient> = (0..2)
        .map(|_| home.server(true, json!({}), settings()))
        .collect();
    const N: usize = 20;
    let mut pending = Vec::new();
    for i in 0..N {
        for (k, c) in clients.iter_mut().enumerate() {
            let scope = if i % 2 == 0 { "workspace" } else { "user" };
            let id = c.request_async(
                "workspace/executeCommand",
                json!({"command": "quill.addToDictionary",
                       "arguments": [{"word": format!("s{k}w{i}"), "scope": scope}]}),
            );
            pending.push((k, id));
        }
    }
    for (k, id) in pending {
        let r = clients[k].response(id);
        assert!(r.get("error").is_none(), "{r}");
    }
    let read = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let mut want_ws = Vec::new();
    let mut want_user = Vec::new();
    for i in 0..N {
        for k in 0..2 {
            let w = format!("s{k}w{i}");
            if i % 2 == 0 {
                want_ws.push(w)
            } else {
                want_user.push(w)
            }
        }
    }
    want_ws.sort();
    want_user.sort();
    assert_eq!(read(&home.workspace_dict()), want_ws);
    assert_eq!(read(&home.user_dict()), want_user);
    // Nothing is left behind: no lock, no temporary file.
    for dir in [home.workspace_dict(), home.user_dict()] {
        let names: Vec<String> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["dictionary.txt"]);
    }
}

#[test]
fn bad_dictionary_files_are_reported_once_and_diagnostics_go_on() {
    let words = flagged_words();
    let home = Home::new();
    let (w1, w2) = (words[0].clone(), words[1].clone());
    // The workspace dictionary is a directory; the user's is not UTF-8 in part; a file the
    // setting names is missing; another has a million lines.
    std::fs::create_dir_all(home.workspace_dict()).unwrap();
    std::fs::create_dir_all(home.user_dict().parent().unwrap()).unwrap();
    std::fs::write(
        home.user_dict(),
        [b"\xff\xfe\x00bad\n", w1.as_bytes(), b"\n"].concat(),
    )
    .unwrap();
    let missing = home.root.join("missing/words.txt");
    let huge = home.root.join("huge.txt");
    let mut big = format!("{w2}\n");
    for i in 0..1_000_000 {
        big.push_str(&format!("word{i}\n"));
    }
    std::fs::write(&huge, big).unwrap();
    let mut s = settings();
    s["diagnostics"]["dictionary"] =
        json!([missing.display().to_string(), huge.display().to_string()]);
    let start = Instant::now();
    let mut client = home.server(true, json!({}), s);
    let a = home.uri("a.md");
    client.open(&a, "markdown", PARA);
    // What could be read is used: w1 from the user's file, w2 from the huge one.
    let want: Vec<String> = without(&without(&words, &w1), &w2);
    wait_words(&mut client, &a, &want);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "bounded time: {:?}",
        start.elapsed()
    );
    // Each problem once, naming its file, even after the files are read again.
    std::thread::sleep(Duration::from_millis(2500));
    client.notify(
        "workspace/didChangeWatchedFiles",
        json!({"changes": [{"uri": format!("file://{}", home.workspace_dict().display()),
                            "type": 2}]}),
    );
    let _ = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": a}, "position": {"line": 0, "character": 0}}),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let _ = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": a}, "position": {"line": 0, "character": 0}}),
    );
    let messages: Vec<String> = client
        .notifications
        .iter()
        .filter(|n| n["method"] == "window/showMessage")
        .map(|n| n["params"]["message"].as_str().unwrap().to_string())
        .collect();
    for (path, says) in [
        (home.workspace_dict(), "directory"),
        (home.user_dict(), "not UTF-8"),
        (missing.clone(), "does not exist"),
        (huge.clone(), "only the first 200000"),
    ] {
        let about: Vec<&String> = messages
            .iter()
            .filter(|m| m.contains(&path.display().to_string()))
            .collect();
        assert_eq!(
            about.len(),
            1,
            "one message about {}: {messages:?}",
            path.display()
        );
        assert!(about[0].contains(says), "{}", about[0]);
    }
    // Fixing a file ends its problem; the words in it count from then on.
    std::fs::create_dir_all(missing.parent().unwrap()).unwrap();
    std::fs::write(&missing, "zzz\n").unwrap();
    std::fs::remove_dir(home.workspace_dict()).unwrap();
    std::fs::write(home.workspace_dict(), "").unwrap();
    client.notifications.clear();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": a}, "position": {"line": 0, "character": 0}}),
    );
    assert!(
        !client
            .notifications
            .iter()
            .any(|n| n["method"] == "window/showMessage"),
        "{:?}",
        client.notifications
    );
}
