//! The client of an OpenAI-compatible server: one `ureq` agent (connections reused), a limit on
//! requests in flight, time limits, retries with backoff on 429 and 503, errors that say what to
//! do (reported once through [`Notice`]s, and once more when the server answers again), and
//! cancellation: a superseded or cancelled request is answered at once, whatever the server
//! still does with it.
//!
//! HTTP runs on short-lived threads of its own, never on the caller's (async) threads. The API
//! key is read from the environment when a request is sent, and never logged or stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{infill, openai};
use super::{Fim, LmBackend, RemoteConfig, Reply};
use crate::engine::tasks::proofread::{Proofread, ProofreadOptions};
use crate::engine::tasks::scoring::TOP_ALTERNATIVES;
use crate::engine::worker::CompleteRequest;
use crate::engine::{Cancel, CompletionOutput, EngineError, ScoredText};

/// Attempts of one request when the server says it is busy (429, 503).
const ATTEMPTS: u32 = 4;
/// The first wait before a retry; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A `Retry-After` longer than this is not waited for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often a waiting request looks at its cancellation flag.
const POLL: Duration = Duration::from_millis(20);

/// How bad a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeLevel {
    Error,
    Info,
}

/// Something the user should be told (the LSP layer shows it with `window/showMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: NoticeLevel,
    pub message: String,
}

/// Why a request failed, by what the user has to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Unreachable(String),
    Unauthorized(u16),
    UnknownModel(String),
    NotFound(String),
    Busy(u16),
    Timeout,
    BadAnswer(String),
    Refused(u16, String),
    /// The server cannot return the log-probabilities of a prompt (diagnostics need them).
    NoPromptLogprobs(String),
    /// `fim: "infill"`, and the server has no `/infill` or its model has no FIM tokens.
    NoInfill(u16, String),
}

impl Problem {
    /// Problems of one kind are reported once until the server answers again.
    fn kind(&self) -> u8 {
        match self {
            Problem::Unreachable(_) => 0,
            Problem::Unauthorized(_) => 1,
            Problem::UnknownModel(_) => 2,
            Problem::NotFound(_) => 3,
            Problem::Busy(_) => 4,
            Problem::Timeout => 5,
            Problem::BadAnswer(_) => 6,
            Problem::Refused(..) => 7,
            Problem::NoPromptLogprobs(_) => 8,
            Problem::NoInfill(..) => 9,
        }
    }

    /// The message for the user, naming the server and what to do.
    pub fn message(&self, cfg: &RemoteConfig) -> String {
        let url = &cfg.url;
        match self {
            Problem::Unreachable(why) => format!(
                "the backend at {url} cannot be reached ({why}); start the server or fix \
                 quill.backend.url"
            ),
            Problem::Unauthorized(code) => {
                let key = match &cfg.api_key_env {
                    Some(var) if std::env::var_os(var).is_some() => {
                        format!("the API key in ${var} was refused")
                    }
                    Some(var) => format!("${var} (quill.backend.apiKeyEnv) is not set"),
                    None => "no API key was sent: set quill.backend.apiKeyEnv to the \
                             environment variable that holds it"
                        .to_string(),
                };
                format!("the backend at {url} refused the request ({code}): {key}")
            }
            Problem::UnknownModel(why) => format!(
                "the backend at {url} does not serve the model {:?} ({why}); fix \
                 quill.backend.model",
                cfg.model
            ),
            Problem::NotFound(why) => format!(
                "the backend at {url} has no completions endpoint ({why}); \
                 quill.backend.url must be the API's base, usually ending in /v1"
            ),
            Problem::Busy(code) => format!(
                "the backend at {url} is busy ({code}) and stayed busy after {ATTEMPTS} attempts"
            ),
            Problem::Timeout => format!(
                "the backend at {url} did not answer within {} ms (quill.backend.timeoutMs)",
                cfg.timeout_ms
            ),
            Problem::BadAnswer(why) => {
                format!("the backend at {url} answered something quill cannot read: {why}")
            }
            Problem::Refused(code, why) => {
                format!("the backend at {url} refused the request ({code}): {why}")
            }
            Problem::NoPromptLogprobs(why) => format!(
                "the backend at {url} cannot return the log-probabilities of a prompt ({why}), \
                 which diagnostics need: diagnostics are off for this backend (completions \
                 still work)"
            ),
            Problem::NoInfill(code, why) => format!(
                "the backend at {url} cannot fill in the middle at {} ({code}: {why}); \
                 quill.backend.fim \"infill\" needs llama.cpp's server and a model with FIM \
                 tokens: set it to true (the text after the cursor as `suffix`) or false",
                cfg.completions_url()
            ),
        }
    }
}

/// A counting semaphore for requests in flight.
struct Slots {
    free: Mutex<usize>,
    wake: Condvar,
}

impl Slots {
    /// Waits for a slot; `None` when `cancel` is raised first.
    fn acquire<'a>(&'a self, cancel: &Cancel) -> Option<SlotGuard<'a>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            if *free > 0 {
                *free -= 1;
                return Some(SlotGuard(self));
            }
            free = self
                .wake
                .wait_timeout(free, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.wake.notify_one();
    }
}

/// What the client counts (for `quill/stats`, tests and the benchmark).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// HTTP requests sent (each retry counts).
    pub requests: u64,
    /// Requests answered `Cancelled` before the server's answer came.
    pub abandoned: u64,
    pub errors: u64,
}

/// The sender of a pending completion, shared by its HTTP thread and whoever supersedes it.
type PendingReply = Arc<Mutex<Option<oneshot::Sender<Result<CompletionOutput, EngineError>>>>>;

struct Inner {
    cfg: RemoteConfig,
    agent: ureq::Agent,
    slots: Slots,
    notices: Option<mpsc::UnboundedSender<Notice>>,
    /// The kind of the last problem reported; cleared (with a notice) by a success.
    reported: Mutex<Option<u8>>,
    /// Set once the server showed that it cannot return prompt log-probabilities.
    no_prompt_logprobs: Mutex<Option<String>>,
    /// The newest completion of each document: its number, flag and reply.
    pending: Mutex<HashMap<String, (u64, Cancel, PendingReply)>>,
    next_id: AtomicU64,
    stats: Mutex<RemoteStats>,
}

/// An OpenAI-compatible server as a [`LmBackend`]; cloning is cheap.
#[derive(Clone)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

impl RemoteBackend {
    /// A client of the server `cfg` names; problems go to `notices` (once per kind).
    pub fn new(cfg: RemoteConfig, notices: Option<mpsc::UnboundedSender<Notice>>) -> Self {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .max_idle_connections_per_host(cfg.max_in_flight.max(2))
            .user_agent(concat!("quill/", env!("CARGO_PKG_VERSION")))
            .build();
        let slots = Slots {
            free: Mutex::new(cfg.max_in_flight.max(1)),
            wake: Condvar::new(),
        };
        Self {
            inner: Arc::new(Inner {
                cfg,
                agent,
                slots,
                notices,
                reported: Mutex::new(None),
                no_prompt_logprobs: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                stats: Mutex::new(RemoteStats::default()),
            }),
        }
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.inner.cfg
    }

    pub fn stats(&self) -> RemoteStats {
        lock(&self.inner.stats).clone()
    }

    /// Continues the text before a cursor (blocking; see [`LmBackend::complete`] for the
    /// channel form).
    pub fn complete_blocking(
        &self,
        req: &CompleteRequest,
        cancel: &Cancel,
    ) -> Result<CompletionOutput, EngineError> {
        let cfg = &self.inner.cfg;
        let suffix = req.text_after.as_deref().filter(|_| cfg.fim.is_on());
        let choices = if cfg.fim == Fim::Infill {
            let (prefix, _) = openai::context_window(&req.text_before, req.text_start, &req.policy);
            let body = infill::infill_request(cfg, prefix, suffix.unwrap_or(""), &req.params);
            let answer = self.post(Endpoint::Infill, &body, cancel)?;
            infill::parse_infill(&answer)
        } else {
            let prompt =
                openai::completion_prompt(cfg, &req.text_before, req.text_start, &req.policy);
            let body = openai::completion_request(cfg, &prompt, suffix, &req.params);
            let answer = self.post(Endpoint::Completions, &body, cancel)?;
            openai::parse_completion(&answer)
        }
        .map_err(|e| self.fail(Problem::BadAnswer(e)))?;
        Ok(openai::finish_completions(choices, &req.params, suffix))
    }

    /// Scores `text` with BOS in front through the prompt's log-probabilities (blocking).
    pub fn score_blocking(&self, text: &str, cancel: &Cancel) -> Result<ScoredText, EngineError> {
        let tokens = self.prompt_logprobs(text, cancel)?;
        Ok(openai::scored_text(text, &tokens))
    }

    /// Unlikely words and sentences of one paragraph (blocking). After the server showed it
    /// cannot return prompt log-probabilities, this answers "nothing found" without asking.
    pub fn proofread_blocking(
        &self,
        text: &str,
        opts: &ProofreadOptions,
        cancel: &Cancel,
    ) -> Result<Proofread, EngineError> {
        if lock(&self.inner.no_prompt_logprobs).is_some() {
            return Ok(Proofread::default());
        }
        let tokens = self.prompt_logprobs(text, cancel)?;
        Ok(openai::proofread(text, &tokens, opts))
    }

    fn prompt_logprobs(
        &self,
        text: &str,
        cancel: &Cancel,
    ) -> Result<Vec<openai::PromptToken>, EngineError> {
        if let Some(why) = lock(&self.inner.no_prompt_logprobs).clone() {
            return Err(EngineError::Input(
                Problem::NoPromptLogprobs(why).message(&self.inner.cfg),
            ));
        }
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let body = openai::score_request(&self.inner.cfg, text, TOP_ALTERNATIVES);
        let answer = match self.post(Endpoint::Completions, &body, cancel) {
            Err(EngineError::Input(msg)) if openai::refuses_echo(&msg) => {
                return Err(self.no_prompt_logprobs(msg));
            }
            other => other?,
        };
        match openai::parse_prompt_logprobs(&answer, &self.inner.cfg.bos, text) {
            Ok(tokens) => Ok(tokens),
            Err(openai::PromptError::Missing(why)) => Err(self.no_prompt_logprobs(why)),
            Err(openai::PromptError::Bad(why)) => Err(self.fail(Problem::BadAnswer(why))),
        }
    }

    fn no_prompt_logprobs(&self, why: String) -> EngineError {
        *lock(&self.inner.no_prompt_logprobs) = Some(why.clone());
        self.fail(Problem::NoPromptLogprobs(why))
    }

    /// Reports a problem (once per kind) and turns it into the engine's error.
    fn fail(&self, p: Problem) -> EngineError {
        lock(&self.inner.stats).errors += 1;
        let message = p.message(&self.inner.cfg);
        let mut reported = lock(&self.inner.reported);
        if *reported != Some(p.kind()) {
            *reported = Some(p.kind());
            tracing::warn!("{message}");
            self.notify(NoticeLevel::Error, format!("quill: {message}"));
        }
        EngineError::Input(message)
    }

    fn succeeded(&self) {
        let mut reported = lock(&self.inner.reported);
        // A server that cannot echo prompts stays so: that problem is not "recovered".
        if reported
            .take()
            .is_some_and(|k| k != Problem::NoPromptLogprobs(String::new()).kind())
        {
            let msg = format!("quill: the backend at {} answers again", self.inner.cfg.url);
            tracing::info!("{msg}");
            self.notify(NoticeLevel::Info, msg);
        }
    }

    fn notify(&self, level: NoticeLevel, message: String) {
        if let Some(tx) = &self.inner.notices {
            let _ = tx.send(Notice { level, message });
        }
    }

    /// POSTs `body` to `{url}/completions` (or llama.cpp's `/infill`) within the in-flight
    /// limit, retrying on 429/503.
    fn post(&self, to: Endpoint, body: &Value, cancel: &Cancel) -> Result<Value, EngineError> {
        let Some(_slot) = self.inner.slots.acquire(cancel) else {
            return Err(EngineError::Cancelled);
        };
        let cfg = &self.inner.cfg;
        let url = match to {
            Endpoint::Completions => format!("{}/completions", cfg.url),
            Endpoint::Infill => cfg.completions_url(),
        };
        let text = body.to_string();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            cancel.check()?;
            let mut request = self
                .inner
                .agent
                .post(&url)
                .set("Content-Type", "application/json");
            if let Some(var) = &cfg.api_key_env {
                if let Some(key) = std::env::var_os(var) {
                    request = request.set(
                        "Authorization",
                        &format!("Bearer {}", key.to_string_lossy()),
                    );
                }
            }
            lock(&self.inner.stats).requests += 1;
            let started = Instant::now();
            let outcome = request.send_string(&text);
            tracing::debug!(
                "POST {url}: {} in {} ms",
                match &outcome {
                    Ok(r) => r.status().to_string(),
                    Err(ureq::Error::Status(c, _)) => c.to_string(),
                    Err(e) => e.kind().to_string(),
                },
                started.elapsed().as_millis()
            );
            // An abandoned request's answer is not read: the caller was answered already.
            cancel.check()?;
            match outcome {
                Ok(response) => {
                    let answer = response
                        .into_string()
                        .map_err(|e| self.fail(transport_problem(&e)))?;
                    let value: Value = serde_json::from_str(&answer)
                        .map_err(|e| self.fail(Problem::BadAnswer(format!("not JSON ({e})"))))?;
                    self.succeeded();
                    return Ok(value);
                }
                Err(ureq::Error::Status(code @ (429 | 503), response)) if attempt < ATTEMPTS => {
                    let wait = retry_after(&response).unwrap_or(backoff);
                    tracing::debug!("backend busy ({code}); retrying in {} ms", wait.as_millis());
                    sleep_unless_cancelled(wait, cancel)?;
                    backoff *= 2;
                }
                Err(ureq::Error::Status(code, response)) => {
                    let why = openai::error_message(&response.into_string().unwrap_or_default());
                    return Err(match code {
                        401 | 403 => self.fail(Problem::Unauthorized(code)),
                        429 | 503 => self.fail(Problem::Busy(code)),
                        // No such endpoint (404), or llama.cpp's "Infill is not supported by
                        // this model" (501).
                        404 | 501 if to == Endpoint::Infill => {
                            self.fail(Problem::NoInfill(code, why))
                        }
                        404 if why.to_lowercase().contains("model") => {
                            self.fail(Problem::UnknownModel(why))
                        }
                        404 => self.fail(Problem::NotFound(why)),
                        400 | 422 if openai::refuses_echo(&why) => EngineError::Input(why),
                        400 | 422 if openai::names_unknown_model(&why) => {
                            self.fail(Problem::UnknownModel(why))
                        }
                        _ => self.fail(Problem::Refused(code, why)),
                    });
                }
                Err(ureq::Error::Transport(t)) => return Err(self.fail(transport_problem(&t))),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Answers the pending completion of `doc` (if any) `Cancelled` and raises its flag.
    fn supersede(&self, doc: &str) {
        let old = lock(&self.inner.pending).remove(doc);
        if let Some((_, cancel, reply)) = old {
            cancel.cancel();
            if let Some(tx) = lock(&reply).take() {
                lock(&self.inner.stats).abandoned += 1;
                let _ = tx.send(Err(EngineError::Cancelled));
            }
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `{url}/completions`, the OpenAI API.
    Completions,
    /// llama.cpp's `{server root}/infill`.
    Infill,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn transport_problem(e: &dyn std::fmt::Display) -> Problem {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if lower.contains("timed out") || lower.contains("timeout") {
        Problem::Timeout
    } else {
        Problem::Unreachable(text)
    }
}

fn retry_after(response: &ureq::Response) -> Option<Duration> {
    let secs: f64 = response.header("Retry-After")?.trim().parse().ok()?;
    let d = Duration::from_secs_f64(secs.max(0.0));
    (d <= MAX_RETRY_AFTER).then_some(d)
}

fn sleep_unless_cancelled(d: Duration, cancel: &Cancel) -> Result<(), EngineError> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        cancel.check()?;
        std::thread::sleep(POLL.min(end - Instant::now()));
    }
    cancel.check()
}

/// Runs `f` on a thread of its own and answers on a channel.
fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Reply<T> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("quill-http".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        tracing::error!("could not start an HTTP thread: {e}");
    }
    rx
}

impl LmBackend for RemoteBackend {
    fn complete(&self, req: CompleteRequest, cancel: Cancel) -> Reply<CompletionOutput> {
        let (tx, rx) = oneshot::channel();
        let doc = req.doc.clone();
        self.supersede(&doc);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let reply: PendingReply = Arc::new(Mutex::new(Some(tx)));
        lock(&self.inner.pending).insert(doc.clone(), (id, cancel.clone(), reply.clone()));
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("quill-http".into())
            .spawn(move || {
                let result = this.complete_blocking(&req, &cancel);
                {
                    let mut pending = lock(&this.inner.pending);
                    if pending.get(&doc).is_some_and(|(i, _, _)| *i == id) {
                        pending.remove(&doc);
                    }
                }
                if let Some(tx) = lock(&reply).take() {
                    let _ = tx.send(result);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("could not start an HTTP thread: {e}");
        }
        rx
    }

    fn score(&self, text: String, cancel: Cancel) -> Reply<ScoredText> {
        let this = self.clone();
        spawn(move || this.score_blocking(&text, &cancel))
    }

    fn proofread(&self, text: String, opts: ProofreadOptions, cancel: Cancel) -> Reply<Proofread> {
        let this = self.clone();
        spawn(move || this.proofread_blocking(&text, &opts, &cancel))
    }

    fn forget(&self, doc: String) {
        self.supersede(&doc);
    }
}
