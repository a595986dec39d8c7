//! The language server: LSP over stdio (tower-lsp-server on tokio). Protocol types come in,
//! engine requests go out; the only place that knows LSP. Forward passes run on the engine
//! thread, never here: every handler awaits a reply channel.

mod backend;
mod commands;
pub mod config;
pub mod convert;
mod diagnostics;
mod dictionary;
mod guard;
pub mod transport;

pub use diagnostics::{PARAGRAPHS_PER_DOCUMENT, PARAGRAPHS_PER_PASS};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{self, ErrorCode};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService};
use tracing::Instrument;

use crate::document::{Document, PositionEncoding};
use crate::engine;
use crate::engine::tasks::sampling::{SamplingParams, StopAt};
use crate::engine::tasks::session::{tail_start, WindowPolicy};
use crate::engine::tasks::t5::T5Model;
use crate::engine::worker::{CompleteRequest, Engine, Loader, T5Loader};
use crate::engine::{Cancel, Completion, EngineError, GenerateParams, LanguageModel};
use crate::models::{self, DownloadProgress, FetchOptions, ModelSource};
use config::Settings;

/// What the command line fixes for a server: defaults under the client's settings.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub defaults: Settings,
    pub revision: Option<String>,
    pub offline: bool,
}

/// Serves LSP on stdin/stdout until `exit`; returns the process exit code (0 after
/// `shutdown`, 1 without).
pub async fn serve_stdio(options: ServeOptions) -> i32 {
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let mut builder = LspService::build(move |client| Server::new(client, options, flag))
        .custom_method("textDocument/inlineCompletion", Server::inline_completion)
        .custom_method(transport::PARSE_ERROR_METHOD, Server::parse_error)
        .custom_method(STATS_METHOD, Server::stats);
    if std::env::var_os("QUILL_TEST_PANIC").is_some() {
        // For the tests of the panic guard only: a request that panics.
        builder = builder.custom_method(TEST_PANIC_METHOD, Server::test_panic);
    }
    let (service, socket) = builder.finish();
    guard::install_hook();
    let (stdin, mut ending) = transport::sanitize(tokio::io::stdin());
    let serve = tower_lsp_server::Server::new(stdin, tokio::io::stdout(), socket)
        .concurrency_level(64)
        .serve(guard::CatchPanics(service));
    tokio::pin!(serve);
    // tower-lsp-server's loop ends only when every handler has finished, and one may wait on
    // the client forever (an unanswered `workspace/configuration`): after `exit` or the end of
    // input, give handlers a moment to answer, then stop regardless.
    tokio::select! {
        _ = &mut serve => {}
        _ = ending.wait_for(|e| *e != transport::Ending::Running) => {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(300), &mut serve).await;
        }
    }
    if shutdown.load(Ordering::SeqCst) {
        0
    } else {
        1
    }
}

/// What the server did so far: open documents and the engine's counters.
pub const STATS_METHOD: &str = "quill/stats";

/// A request that panics, offered when `QUILL_TEST_PANIC` is set (tests of the panic guard).
pub const TEST_PANIC_METHOD: &str = "quill/testPanic";

struct State {
    encoding: PositionEncoding,
    settings: Settings,
    supports_progress: bool,
    supports_configuration: bool,
}

/// The language server; its state is shared with the background tasks it spawns.
pub struct Server {
    inner: Arc<Inner>,
}

pub struct Inner {
    client: Client,
    options: ServeOptions,
    /// Open documents. The lock is never held across an `.await`.
    docs: Mutex<HashMap<Uri, Document>>,
    state: Mutex<State>,
    engine: Engine,
    /// The OpenAI-compatible server that answers completions and diagnostics instead of the
    /// engine thread's model, when the settings name one (see `backend.rs`).
    remote: Mutex<Option<engine::backend::RemoteBackend>>,
    shutdown: Arc<AtomicBool>,
    diagnostics: Mutex<diagnostics::DiagnosticsState>,
    /// Becomes true once the settings are known (after `initialized` and its configuration
    /// pull): requests that arrive earlier wait for it, as they wait for the model.
    settings_known: tokio::sync::watch::Sender<bool>,
    dictionaries: Mutex<dictionary::DictionaryState>,
}

impl std::ops::Deref for Server {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid_params(msg: impl Into<String>) -> jsonrpc::Error {
    jsonrpc::Error {
        code: ErrorCode::InvalidParams,
        message: msg.into().into(),
        data: None,
    }
}

fn engine_error(e: EngineError) -> jsonrpc::Error {
    match e {
        EngineError::Cancelled => jsonrpc::Error {
            code: ErrorCode::RequestCancelled,
            message: "cancelled: a newer request replaced it, or the client cancelled it".into(),
            data: None,
        },
        other => jsonrpc::Error {
            code: ErrorCode::InternalError,
            message: other.to_string().into(),
            data: None,
        },
    }
}

/// Cancels a job when the handler awaiting it is dropped (`$/cancelRequest`) before its answer.
struct CancelOnDrop {
    cancel: Cancel,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.cancel.cancel();
        }
    }
}

/// Marks a completion of a document as ended when its handler ends or is dropped (a pass of
/// its diagnostics waits for typing to pause, see `diagnostics.rs`).
struct CompletionActivity<'a> {
    inner: &'a Inner,
    uri: &'a Uri,
}

impl Drop for CompletionActivity<'_> {
    fn drop(&mut self) {
        self.inner.completion_ended(self.uri);
    }
}

/// Bytes of the text after the cursor sent to a fill-in-the-middle backend.
const FIM_SUFFIX_BYTES: usize = 2048;

/// The word being typed: the run of letters, digits and `_` that ends at the end of `text`.
/// Returns its byte length.
pub fn current_word_len(text: &str) -> usize {
    text.chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum()
}

impl Inner {
    fn settings(&self) -> Settings {
        lock(&self.state).settings.clone()
    }

    fn encoding(&self) -> PositionEncoding {
        lock(&self.state).encoding
    }

    /// Waits until the client's settings are known.
    async fn settings_ready(&self) {
        let mut rx = self.settings_known.subscribe();
        let _ = rx.wait_for(|known| *known).await;
    }
}

impl Server {
    fn new(client: Client, options: ServeOptions, shutdown: Arc<AtomicBool>) -> Self {
        let settings = options.defaults.clone();
        let engine = Engine::start();
        engine.set_threads(engine::compute_threads(settings.threads));
        let inner = Inner {
            client,
            options,
            docs: Mutex::new(HashMap::new()),
            state: Mutex::new(State {
                encoding: PositionEncoding::Utf16,
                settings,
                supports_progress: false,
                supports_configuration: false,
            }),
            engine,
            remote: Mutex::new(None),
            shutdown,
            diagnostics: Mutex::new(Default::default()),
            settings_known: tokio::sync::watch::channel(false).0,
            dictionaries: Mutex::new(Default::default()),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Applies a settings object from the client; reports bad keys; reloads the model when
    /// its name, device or dtype changed.
    async fn apply_settings(&self, value: &Value) {
        let (changed_model, changed_t5, threads, errors) = {
            let mut state = lock(&self.state);
            let (new, errors) = Settings::from_json(value, &self.options.defaults, &state.settings);
            let old = &state.settings;
            let changed = (&new.model, &new.device, &new.dtype, &new.backend)
                != (&old.model, &old.device, &old.dtype, &old.backend);
            let changed_t5 = (&new.t5_model, &new.device, &new.dtype)
                != (&old.t5_model, &old.device, &old.dtype);
            let threads = (new.threads != old.threads).then_some(new.threads);
            state.settings = new;
            (changed, changed_t5, threads, errors)
        };
        if let Some(n) = threads {
            self.engine.set_threads(engine::compute_threads(n));
        }
        if changed_t5 {
            self.engine
                .set_t5(make_t5_loader(&self.settings(), &self.options));
        }
        for e in errors {
            self.client
                .show_message(MessageType::WARNING, format!("quill: {e}"))
                .await;
        }
        if changed_model {
            self.start_backend().await;
        }
        self.inner.reload_dictionaries(false).await;
        // Settings apply to open documents at once.
        let open: Vec<Uri> = lock(&self.docs).keys().cloned().collect();
        for uri in open {
            self.inner.schedule_diagnostics(uri, false);
        }
    }

    /// Asks the client for the `quill` section, when it supports `workspace/configuration`.
    async fn pull_configuration(&self) -> Option<Value> {
        if !lock(&self.state).supports_configuration {
            return None;
        }
        let item = ConfigurationItem {
            scope_uri: None,
            section: Some("quill".into()),
        };
        let values = self.client.configuration(vec![item]).await.ok()?;
        values.into_iter().next().filter(|v| v.is_object())
    }

    /// Starts loading the model on the engine thread and reports progress until it is done.
    async fn load_model(&self) {
        let settings = self.settings();
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, u64, u64)>();
        let loader = make_loader(&settings, &self.options, Arc::new(ChannelProgress(tx)));
        let done = self.engine.reload(loader);
        let client = self.client.clone();
        let supports_progress = lock(&self.state).supports_progress;
        let model = settings.model.clone();
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let token = NumberOrString::String(format!("quill/load/{}", random_suffix()));
            let progress = if supports_progress
                && client
                    .create_work_done_progress(token.clone())
                    .await
                    .is_ok()
            {
                Some(
                    client
                        .progress(token, "quill")
                        .with_message(format!("loading {model}"))
                        .with_percentage(0)
                        .begin()
                        .await,
                )
            } else {
                None
            };
            let mut done = done;
            let mut last_pct = 0;
            let result = loop {
                tokio::select! {
                    r = &mut done => break r,
                    Some((file, got, total)) = rx.recv() => {
                        let pct = (got * 100).checked_div(total).unwrap_or(0) as u32;
                        if pct != last_pct {
                            last_pct = pct;
                            if let Some(p) = &progress {
                                p.report_with_message(format!("downloading {file}"), pct).await;
                            }
                        }
                    }
                }
            };
            let result = result.unwrap_or_else(|_| Err("the engine stopped".into()));
            if let Some(p) = progress {
                match &result {
                    Ok(()) => p.finish_with_message(format!("{model} ready")).await,
                    Err(_) => {
                        p.finish_with_message(format!("{model} failed to load"))
                            .await
                    }
                }
            }
            match result {
                Ok(()) => {
                    tracing::info!("model {model} ready");
                    // Passes that failed while the model was missing or loading run again.
                    let open: Vec<Uri> = lock(&inner.docs).keys().cloned().collect();
                    for uri in open {
                        inner.schedule_diagnostics(uri, false);
                    }
                }
                Err(e) => {
                    tracing::error!("model {model} failed to load: {e}");
                    client
                        .show_message(MessageType::ERROR, format!("quill: {e}"))
                        .await;
                }
            }
        });
    }

    /// Continuations at a position: the completions, the byte range of the current word,
    /// and that word.
    async fn complete_at(
        &self,
        uri: &Uri,
        position: Position,
    ) -> jsonrpc::Result<(Vec<Completion>, Range, String)> {
        self.completion_started(uri);
        let _activity = CompletionActivity { inner: self, uri };
        self.settings_ready().await;
        let settings = self.settings();
        let enc = self.encoding();
        let policy = WindowPolicy {
            context_tokens: settings.completion.context_tokens,
            reserve: settings.completion.max_tokens,
            n_positions: usize::MAX,
        };
        let fim =
            matches!(&settings.backend, engine::backend::BackendSpec::Remote(c) if c.fim.is_on());
        let (text_before, text_start, text_after, word_range, word, is_prose) = {
            let _span = tracing::debug_span!(target: "quill::keystroke", "doc_copy").entered();
            let docs = lock(&self.docs);
            let doc = docs.get(uri).ok_or_else(|| {
                invalid_params(format!(
                    "unknown document {}: open it (didOpen) first",
                    uri.as_str()
                ))
            })?;
            let offset = convert::offset(doc, position, enc);
            // Only the tail the window is taken from is copied, never the whole document.
            let rope = doc.rope();
            let start = rope.char_to_byte(rope.byte_to_char(tail_start(offset, &policy)));
            let text_before = rope.byte_slice(start..offset).to_string();
            // Fill-in-the-middle: a bounded piece of the text after the cursor.
            let text_after = fim.then(|| {
                let end = (offset + FIM_SUFFIX_BYTES).min(rope.len_bytes());
                let end = rope.char_to_byte(rope.byte_to_char(end));
                rope.byte_slice(offset..end).to_string()
            });
            let word_len = current_word_len(&text_before);
            let word = text_before[text_before.len() - word_len..].to_string();
            let range = convert::range(doc, offset - word_len, offset, enc);
            let prose = settings.diagnostics.languages.contains(&doc.language_id);
            (text_before, start, text_after, range, word, prose)
        };
        if !settings.completion.enabled {
            return Ok((Vec::new(), word_range, word));
        }
        let c = &settings.completion;
        let stop = if is_prose && c.stop_at_sentence {
            StopAt::Sentence
        } else if c.stop_at_newline {
            StopAt::Newline
        } else {
            StopAt::Never
        };
        let req = CompleteRequest {
            doc: uri.as_str().to_string(),
            text_before,
            text_start,
            text_after,
            policy,
            params: GenerateParams {
                max_tokens: c.max_tokens,
                n: c.num_suggestions,
                sampling: SamplingParams {
                    temperature: c.temperature,
                    top_k: Some(c.top_k).filter(|k| *k > 0),
                    top_p: Some(c.top_p).filter(|p| *p < 1.0),
                    seed: c.seed,
                },
                stop,
            },
        };
        let cancel = Cancel::new();
        let mut guard = CancelOnDrop {
            cancel: cancel.clone(),
            armed: true,
        };
        let reply = self
            .backend()
            .complete(req, cancel)
            .instrument(tracing::debug_span!(target: "quill::keystroke", "engine_wait"))
            .await;
        guard.armed = false;
        let out = reply
            .map_err(|_| engine_error(EngineError::Input("the engine stopped".into())))?
            .map_err(engine_error)?;
        let completions = out
            .completions
            .into_iter()
            .filter(|c| !c.text.trim().is_empty())
            .collect();
        Ok((completions, word_range, word))
    }

    /// Answers a malformed message (see [`transport`]) with the error it set: JSON-RPC's parse
    /// error, invalid request or method not found.
    async fn parse_error(&self, params: Value) -> jsonrpc::Result<Value> {
        let message = params["message"]
            .as_str()
            .unwrap_or("malformed message")
            .to_string();
        Err(jsonrpc::Error {
            code: ErrorCode::from(params["code"].as_i64().unwrap_or(transport::PARSE_ERROR)),
            message: message.into(),
            data: None,
        })
    }

    async fn stats(&self) -> jsonrpc::Result<Value> {
        let s = self.engine.stats();
        let remote = self.remote().map(|r| r.stats()).unwrap_or_default();
        Ok(serde_json::json!({
            "backendRequests": remote.requests,
            "backendAbandoned": remote.abandoned,
            "backendErrors": remote.errors,
            "documents": lock(&self.docs).len(),
            "jobs": s.jobs,
            "preemptions": s.preemptions,
            "lastCompletionBytes": s.last_completion_bytes,
            "completionBytes": s.completion_bytes,
            "proofreads": s.proofreads,
        }))
    }

    async fn test_panic(&self, params: Value) -> jsonrpc::Result<Value> {
        // A lock held across the panic must not poison later requests.
        let _docs = lock(&self.docs);
        panic!("a test panic with {params}");
    }

    async fn inline_completion(
        &self,
        params: InlineCompletionParams,
    ) -> jsonrpc::Result<Option<InlineCompletionResponse>> {
        let tdp = params.text_document_position;
        let (completions, range, word) = self
            .complete_at(&tdp.text_document.uri, tdp.position)
            .instrument(tracing::debug_span!(target: "quill::keystroke", "request"))
            .await?;
        let _span = tracing::debug_span!(target: "quill::keystroke", "reply").entered();
        let items = completions
            .into_iter()
            .map(|c| InlineCompletionItem {
                insert_text: format!("{word}{}", c.text),
                filter_text: None,
                range: Some(range),
                command: None,
                insert_text_format: None,
            })
            .collect();
        Ok(Some(InlineCompletionResponse::Array(items)))
    }
}

/// A short label for a completion: its first line, at most 40 characters.
fn label(text: &str) -> String {
    let line = text
        .trim_start()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end();
    let mut out: String = line.chars().take(40).collect();
    if line.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn random_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Forwards download progress from the engine thread to the async side.
struct ChannelProgress(mpsc::UnboundedSender<(String, u64, u64)>);

impl DownloadProgress for ChannelProgress {
    fn update(&self, file: &str, done: u64, total: u64) {
        let _ = self.0.send((file.to_string(), done, total));
    }

    fn finish(&self, file: &str) {
        let _ = self.0.send((file.to_string(), 1, 1));
    }
}

/// What a loader needs to find a model, taken from the settings when the load is asked for.
struct ModelSpec {
    model: String,
    device: String,
    dtype: String,
    revision: Option<String>,
    offline: bool,
}

impl ModelSpec {
    fn new(model: &str, settings: &Settings, options: &ServeOptions) -> Self {
        Self {
            model: model.to_string(),
            device: settings.device.clone(),
            dtype: settings.dtype.clone(),
            revision: options.revision.clone(),
            offline: options.offline,
        }
    }

    /// The device, weight format and files (downloading them if needed).
    fn resolve(
        &self,
        progress: Arc<dyn DownloadProgress>,
    ) -> Result<
        (
            candle_core::Device,
            models::WeightFormat,
            models::ModelFiles,
        ),
        models::ModelError,
    > {
        let device = models::parse_device(&self.device)?;
        let format = models::parse_format(&self.dtype)?;
        let source = ModelSource::parse(&self.model, self.revision.as_deref());
        let fetch = FetchOptions {
            offline: self.offline,
            progress: Some(progress),
        };
        Ok((device, format, models::resolve(&source, &fetch)?))
    }
}

fn make_t5_loader(settings: &Settings, options: &ServeOptions) -> T5Loader {
    let spec = ModelSpec::new(&settings.t5_model, settings, options);
    Box::new(move |progress| {
        let (device, format, files) = spec.resolve(progress)?;
        Ok(T5Model::load(&files, &device, format)?)
    })
}

fn make_loader(
    settings: &Settings,
    options: &ServeOptions,
    progress: Arc<dyn DownloadProgress>,
) -> Loader {
    let spec = ModelSpec::new(&settings.model, settings, options);
    Box::new(move || {
        let (device, format, files) = spec.resolve(progress)?;
        Ok(LanguageModel::load_format(&files, &device, format)?)
    })
}

impl LanguageServer for Server {
    async fn initialize(&self, params: InitializeParams) -> jsonrpc::Result<InitializeResult> {
        self.init_dictionaries(&params);
        let offered = params
            .capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_deref());
        let encoding = convert::negotiate(offered);
        let supports_progress = params
            .capabilities
            .window
            .as_ref()
            .and_then(|w| w.work_done_progress)
            .unwrap_or(false);
        let supports_configuration = params
            .capabilities
            .workspace
            .as_ref()
            .and_then(|w| w.configuration)
            .unwrap_or(false);
        let init = params.initialization_options.unwrap_or(Value::Null);
        let errors = {
            let mut state = lock(&self.state);
            state.encoding = encoding;
            state.supports_progress = supports_progress;
            state.supports_configuration = supports_configuration;
            let (settings, errors) =
                Settings::from_json(&init, &self.options.defaults, &state.settings);
            state.settings = settings;
            errors
        };
        for e in errors {
            self.client
                .show_message(MessageType::WARNING, format!("quill: {e}"))
                .await;
        }
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(convert::encoding_kind(encoding)),
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::INCREMENTAL,
                )),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![" ".into(), ".".into(), "(".into()]),
                    ..Default::default()
                }),
                inline_completion_provider: Some(OneOf::Left(true)),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: commands::ALL
                        .iter()
                        .chain(&dictionary::ALL)
                        .map(|c| c.to_string())
                        .collect(),
                    ..Default::default()
                }),
                code_action_provider: Some(CodeActionProviderCapability::Options(
                    CodeActionOptions {
                        code_action_kinds: Some(vec![
                            CodeActionKind::QUICKFIX,
                            CodeActionKind::REFACTOR,
                            CodeActionKind::REFACTOR_REWRITE,
                        ]),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "quill".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        if let Some(v) = self.pull_configuration().await {
            let (settings, errors) = {
                let state = lock(&self.state);
                Settings::from_json(&v, &self.options.defaults, &state.settings)
            };
            lock(&self.state).settings = settings;
            for e in errors {
                self.client
                    .show_message(MessageType::WARNING, format!("quill: {e}"))
                    .await;
            }
        }
        self.engine
            .set_t5(make_t5_loader(&self.settings(), &self.options));
        self.settings_known.send_replace(true);
        self.start_backend().await;
        self.inner.start_dictionaries().await;
    }

    async fn shutdown(&self) -> jsonrpc::Result<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let d = params.text_document;
        let uri = d.uri.clone();
        lock(&self.docs).insert(d.uri, Document::new(&d.text, d.version, &d.language_id));
        self.inner.schedule_diagnostics(uri, false);
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let enc = self.encoding();
        let uri = params.text_document.uri;
        let mut cursor = None;
        let problem = {
            let _span = tracing::debug_span!(target: "quill::keystroke", "edit").entered();
            let mut docs = lock(&self.docs);
            match docs.get_mut(&uri) {
                None => Some(format!("change to unknown document {}", uri.as_str())),
                Some(doc) => {
                    // Apply all changes to a copy: a bad one leaves the buffer as it was.
                    let mut next = doc.clone();
                    let mut err = None;
                    for change in params.content_changes {
                        let range = change
                            .range
                            .map(|r| (convert::pos(r.start), convert::pos(r.end)));
                        if let Some((start, _)) = range {
                            cursor = Some(next.offset(start, enc) + change.text.len());
                        }
                        if let Err(e) = next.apply_change(range, &change.text, enc) {
                            err = Some(format!("refused an edit of {}: {e}", uri.as_str()));
                            break;
                        }
                    }
                    if err.is_none() {
                        next.version = params.text_document.version;
                        *doc = next;
                    }
                    err
                }
            }
        };
        if let Some(msg) = problem {
            tracing::warn!("{msg}");
            self.client
                .log_message(MessageType::WARNING, format!("quill: {msg}"))
                .await;
            return;
        }
        if let Some(c) = cursor {
            self.set_cursor(&uri, c);
        }
        self.inner.schedule_diagnostics(uri, true);
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        lock(&self.docs).remove(&uri);
        self.backend().forget(uri.as_str().to_string());
        self.close_diagnostics(&uri).await;
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        // `{"settings": {"quill": …}}` as DESIGN.md says; or the settings object itself (as
        // Helix sends its `config`); or nothing of ours (eglot sends `{}`): then pull the
        // section if the client can answer, and otherwise keep the settings as they are.
        let value = match params.settings.get("quill") {
            Some(v) => Some(v.clone()),
            None if Settings::has_known_keys(&params.settings) => Some(params.settings),
            None => self.pull_configuration().await,
        };
        if let Some(value) = value {
            self.apply_settings(&value).await;
        }
    }

    async fn hover(&self, params: HoverParams) -> jsonrpc::Result<Option<Hover>> {
        let tdp = params.text_document_position_params;
        if !lock(&self.docs).contains_key(&tdp.text_document.uri) {
            return Err(invalid_params(format!(
                "unknown document {}: open it (didOpen) first",
                tdp.text_document.uri.as_str()
            )));
        }
        Ok(self.diagnostics_hover(&tdp.text_document.uri, tdp.position))
    }

    async fn code_action(
        &self,
        params: CodeActionParams,
    ) -> jsonrpc::Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        if !lock(&self.docs).contains_key(&uri) {
            return Err(invalid_params(format!(
                "unknown document {}: open it (didOpen) first",
                uri.as_str()
            )));
        }
        let mut actions = diagnostics::quick_fixes(&uri, &params.context.diagnostics);
        actions.extend(self.dictionary_actions(&uri, &params.context.diagnostics));
        // T5 actions on a selection of at least two words (not on a cursor that an editor
        // sends as a one-character range), unless the client asked for other kinds only.
        let wants_refactor = params.context.only.as_ref().is_none_or(|only| {
            only.iter()
                .any(|k| k.as_str() == "refactor" || k.as_str().starts_with("refactor."))
        });
        let selected_words = {
            let enc = self.encoding();
            let docs = lock(&self.docs);
            docs.get(&uri).map_or(0, |doc| {
                let a = convert::offset(doc, params.range.start, enc);
                let b = convert::offset(doc, params.range.end, enc);
                doc.rope()
                    .byte_slice(a.min(b)..b.max(a))
                    .to_string()
                    .split_whitespace()
                    .count()
            })
        };
        if wants_refactor && selected_words >= 2 {
            actions.extend(commands::selection_actions(&uri, params.range));
        }
        Ok(Some(actions))
    }

    async fn execute_command(
        &self,
        params: ExecuteCommandParams,
    ) -> jsonrpc::Result<Option<Value>> {
        if dictionary::ALL.contains(&params.command.as_str()) {
            return self.inner.execute_dictionary(params).await;
        }
        self.execute(params).await
    }

    async fn did_change_watched_files(&self, _: DidChangeWatchedFilesParams) {
        self.inner.dictionaries_changed().await;
    }

    async fn completion(
        &self,
        params: CompletionParams,
    ) -> jsonrpc::Result<Option<CompletionResponse>> {
        let tdp = params.text_document_position;
        let (completions, range, word) = self
            .complete_at(&tdp.text_document.uri, tdp.position)
            .instrument(tracing::debug_span!(target: "quill::keystroke", "request"))
            .await?;
        let _span = tracing::debug_span!(target: "quill::keystroke", "reply").entered();
        let items = completions
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let new_text = format!("{word}{}", c.text);
                CompletionItem {
                    label: label(&new_text),
                    kind: Some(CompletionItemKind::TEXT),
                    detail: Some(new_text.clone()),
                    documentation: Some(Documentation::MarkupContent(MarkupContent {
                        kind: MarkupKind::PlainText,
                        value: new_text.clone(),
                    })),
                    sort_text: Some(format!("{i:04}")),
                    filter_text: Some(new_text.clone()),
                    text_edit: Some(CompletionTextEdit::Edit(TextEdit::new(range, new_text))),
                    ..Default::default()
                }
            })
            .collect();
        Ok(Some(CompletionResponse::List(CompletionList {
            is_incomplete: true,
            items,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_word_is_letters_digits_and_underscores() {
        assert_eq!(current_word_len("hello wor"), 3);
        assert_eq!(current_word_len("hello "), 0);
        assert_eq!(current_word_len("x = foo_bar2"), 8);
        assert_eq!(current_word_len("le café"), "café".len());
        assert_eq!(current_word_len(""), 0);
        assert_eq!(current_word_len("a.b"), 1);
    }

    #[test]
    fn labels_are_short_first_lines() {
        assert_eq!(label(" the cat\nsat"), "the cat");
        assert_eq!(label(&"x".repeat(50)).chars().count(), 41);
    }
}
