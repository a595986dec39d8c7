//! A small LSP client for end-to-end tests: spawns the `quill` binary, frames JSON-RPC over its
//! stdio, answers the server's requests (`workspace/configuration`, progress creation) and
//! collects notifications.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub struct LspClient {
    child: Child,
    stdin: Option<ChildStdin>,
    incoming: Receiver<Value>,
    next_id: i64,
    /// Notifications and responses read but not yet taken.
    pending: VecDeque<Value>,
    /// Every notification seen, in order.
    pub notifications: Vec<Value>,
    /// Every request the server sent, in order.
    pub server_requests: Vec<Value>,
    /// What `workspace/configuration` answers.
    pub configuration: Value,
    /// Whether `workspace/configuration` pulls are answered at all.
    pub answer_configuration: bool,
}

impl LspClient {
    /// Starts `quill serve` with extra arguments.
    pub fn start(args: &[&str]) -> LspClient {
        Self::start_with(args, &[], None)
    }

    /// Starts `quill serve` with extra arguments and environment variables naming paths.
    pub fn start_with_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> LspClient {
        let env: Vec<(&str, String)> = env
            .iter()
            .map(|(k, v)| (*k, v.to_string_lossy().into_owned()))
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Self::start_with(args, &env, None)
    }

    /// Starts `quill serve` with extra arguments and environment, its stderr written to a file
    /// if one is given (else inherited).
    pub fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Option<&std::path::Path>,
    ) -> LspClient {
        // QUILL_TEST_BIN runs the tests against another build (e.g. the one before a fix).
        let bin = std::env::var_os("QUILL_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_quill").into());
        let mut child = Command::new(bin)
            .arg("serve")
            .args(args)
            // The user's own dictionary stays out of the tests unless a test names one.
            .env(
                "XDG_CONFIG_HOME",
                std::env::temp_dir().join("quill-test-no-config"),
            )
            .env("HF_HUB_OFFLINE", "1")
            .env("QUILL_LOG", "error")
            .env(
                "HF_HOME",
                std::env::temp_dir().join("quill-test-no-hf-home"),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match stderr {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("start quill serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.parse::<usize>().ok();
                    }
                }
                let Some(n) = length else { return };
                let mut body = vec![0; n];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let value: Value = serde_json::from_slice(&body).expect("server sent JSON");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        LspClient {
            stdin: child.stdin.take(),
            child,
            incoming: rx,
            next_id: 1,
            pending: VecDeque::new(),
            notifications: Vec::new(),
            server_requests: Vec::new(),
            configuration: Value::Null,
            answer_configuration: true,
        }
    }

    /// Writes bytes to the server's stdin as they are (no framing added).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// One frame around `body`, as bytes.
    pub fn frame(body: &str) -> Vec<u8> {
        format!("Content-Length: {}\r\n\r\n{}", body.len(), body).into_bytes()
    }

    /// Closes the server's stdin (the client went away).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB (Linux), if it can be read.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The next request id this client will use.
    pub fn next_id(&self) -> i64 {
        self.next_id
    }

    /// The exit code if the process ends within `limit`, else `None` (it is still running).
    pub fn exit_within(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads messages for `wait`, answering server requests; returns the responses seen.
    pub fn drain_responses(&mut self, wait: Duration) -> Vec<Value> {
        let deadline = Instant::now() + wait;
        let mut out: Vec<Value> = self
            .pending
            .drain(..)
            .filter(|m| m.get("method").is_none())
            .collect();
        while let Some(msg) = self.read(deadline) {
            if msg.get("method").is_none() {
                out.push(msg);
            }
        }
        out
    }

    pub fn send_raw(&mut self, body: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        write!(stdin, "Content-Length: {}\r\n\r\n{}", body.len(), body).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, msg: Value) {
        self.send_raw(&msg.to_string());
    }

    /// Sends a request without waiting; returns its id.
    pub fn request_async(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends a request and waits for its response (the whole message: `result` or `error`).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.request_async(method, params);
        self.response(id)
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Reads one message, answering server requests on the way.
    fn read(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match self.incoming.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => return None,
            };
            if msg.get("method").is_some() && msg.get("id").is_some() {
                self.server_requests.push(msg.clone());
                if msg["method"] == "workspace/configuration" && !self.answer_configuration {
                    continue;
                }
                let result = match msg["method"].as_str().unwrap() {
                    "workspace/configuration" => json!([self.configuration.clone()]),
                    "workspace/applyEdit" => json!({"applied": true}),
                    _ => Value::Null,
                };
                self.send(json!({"jsonrpc": "2.0", "id": msg["id"].clone(), "result": result}));
                continue;
            }
            if msg.get("method").is_some() {
                self.notifications.push(msg.clone());
            }
            return Some(msg);
        }
    }

    /// Waits for the response to request `id`.
    pub fn response(&mut self, id: i64) -> Value {
        if let Some(i) = self
            .pending
            .iter()
            .position(|m| m["id"] == json!(id) && m.get("method").is_none())
        {
            return self.pending.remove(i).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self
                .read(deadline)
                .unwrap_or_else(|| panic!("no response to request {id}"));
            if msg["id"] == json!(id) && msg.get("method").is_none() {
                return msg;
            }
            self.pending.push_back(msg);
        }
    }

    /// Waits for a response whose id is null (the answer to a malformed message).
    pub fn wait_response_with_null_id(&mut self) -> Value {
        if let Some(i) = self
            .pending
            .iter()
            .position(|m| m["id"].is_null() && m.get("method").is_none())
        {
            return self.pending.remove(i).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.read(deadline).expect("a response with a null id");
            if msg["id"].is_null() && msg.get("method").is_none() {
                return msg;
            }
            self.pending.push_back(msg);
        }
    }

    /// Waits for a notification of `method` that satisfies `pred` (seen before or after now).
    pub fn wait_notification(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(n) = self
            .notifications
            .iter()
            .find(|n| n["method"] == method && pred(&n["params"]))
        {
            return n.clone();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.read(deadline).unwrap_or_else(|| {
                panic!("no {method} notification; saw {:?}", self.notifications)
            });
            let matches = msg["method"] == method && pred(&msg["params"]);
            if msg.get("method").is_none() {
                self.pending.push_back(msg);
            } else if matches {
                return msg;
            }
        }
    }

    /// `initialize` with the given capabilities and options, then `initialized`.
    pub fn initialize(&mut self, capabilities: Value, options: Value) -> Value {
        let result = self.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": capabilities,
                   "initializationOptions": options}),
        );
        assert!(result.get("error").is_none(), "initialize failed: {result}");
        self.notify("initialized", json!({}));
        result["result"].clone()
    }

    pub fn open(&mut self, uri: &str, language: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}),
        );
    }

    /// Waits for the process to end, stdin still open (as editors keep it); returns its exit
    /// code.
    pub fn wait_exit(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "quill did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
