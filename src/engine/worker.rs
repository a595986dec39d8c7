//! The engine thread: one named thread owns the model and a small LRU of per-document sessions,
//! and runs jobs that arrive through a queue. Interactive jobs (completions) go before
//! background jobs (scoring); a newer completion for a document supersedes an older one, queued
//! or running. Each job carries a reply channel and a [`Cancel`] flag that is checked between
//! forward passes. Blocking work never runs on the caller's (async) threads.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::tasks::proofread::{Proofread, ProofreadOptions};
use super::tasks::session::{Session, WindowPolicy};
use super::tasks::t5::{T5Model, Task};
use super::{Cancel, CompletionOutput, EngineError, GenerateParams, LanguageModel, ScoredText};
use crate::models::DownloadProgress;

/// Loads a model; called on the engine thread.
pub type Loader = Box<dyn FnOnce() -> Result<LanguageModel, EngineError> + Send>;

/// Loads the T5 model on first use (and again after a failure), reporting downloads.
pub type T5Loader = Box<dyn Fn(Arc<dyn DownloadProgress>) -> Result<T5Model, EngineError> + Send>;

/// What a T5 job reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum T5Event {
    /// The model is being loaded (first use).
    Loading,
    Download {
        file: String,
        done: u64,
        total: u64,
    },
    /// `done` of `total` model runs (chunks) finished.
    Step {
        done: usize,
        total: usize,
    },
}

/// A T5 job: a task on a text.
pub struct T5Request {
    pub task: Task,
    pub text: String,
    pub max_tokens: usize,
    pub events: Option<mpsc::UnboundedSender<T5Event>>,
}

/// Documents whose sessions are kept.
const MAX_SESSIONS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Interactive,
    Background,
}

/// A continuation of the text before a cursor in a document.
#[derive(Debug, Clone)]
pub struct CompleteRequest {
    /// Identifies the document (its session and what supersedes what).
    pub doc: String,
    /// The text before the cursor from byte `text_start` of the document: all of it, or the
    /// tail that [`super::tasks::session::tail_start`] names (moved back to a character boundary).
    pub text_before: String,
    pub text_start: usize,
    /// The text after the cursor, for backends that fill in the middle (`None`: not sent).
    pub text_after: Option<String>,
    pub policy: WindowPolicy,
    pub params: GenerateParams,
}

enum Work {
    Complete(
        CompleteRequest,
        oneshot::Sender<Result<CompletionOutput, EngineError>>,
    ),
    Score(String, oneshot::Sender<Result<ScoredText, EngineError>>),
    Proofread(
        String,
        ProofreadOptions,
        oneshot::Sender<Result<Proofread, EngineError>>,
    ),
    Load(Loader, oneshot::Sender<Result<(), String>>),
    SetT5(T5Loader),
    T5(T5Request, oneshot::Sender<Result<String, EngineError>>),
    Forget(String),
    /// Runs later jobs on a pool of this many threads.
    Threads(usize),
}

struct Job {
    work: Work,
    cancel: Cancel,
    /// The document of a completion, for superseding.
    supersede_key: Option<String>,
}

impl Job {
    /// Answers the job with "cancelled" without running it.
    fn drop_cancelled(self) {
        match self.work {
            Work::Complete(_, tx) => {
                let _ = tx.send(Err(EngineError::Cancelled));
            }
            Work::Score(_, tx) => {
                let _ = tx.send(Err(EngineError::Cancelled));
            }
            Work::Proofread(_, _, tx) => {
                let _ = tx.send(Err(EngineError::Cancelled));
            }
            Work::Load(_, tx) => {
                let _ = tx.send(Err("cancelled".into()));
            }
            Work::T5(_, tx) => {
                let _ = tx.send(Err(EngineError::Cancelled));
            }
            Work::Forget(_) | Work::SetT5(_) | Work::Threads(_) => {}
        }
    }
}

#[derive(Default)]
struct Queue {
    interactive: VecDeque<Job>,
    background: VecDeque<Job>,
    /// The completion running now: its document and flag.
    running: Option<(String, Cancel)>,
    /// The flag of the background job running now: raised when an interactive job arrives.
    running_background: Option<Cancel>,
    closed: bool,
    /// No model was asked for yet: jobs wait for the first load.
    awaiting_load: bool,
}

/// The state the engine thread reports about its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready,
    Failed(String),
}

/// What the engine thread did so far (for tests, benchmarks and `quill/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Jobs taken from the queue and run or answered.
    pub jobs: u64,
    /// Background jobs stopped so that an interactive one could go first (each was queued
    /// again and resumed from its cache).
    pub preemptions: u64,
    /// Bytes of text before a cursor handed to the last completion (all that it read and
    /// tokenized), and to all of them together.
    pub last_completion_bytes: u64,
    pub completion_bytes: u64,
    /// Paragraphs proofread to the end.
    pub proofreads: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    state: Mutex<ModelState>,
    stats: Mutex<EngineStats>,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, EngineStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle to the engine thread; cloning it is cheap. The thread ends when the last handle is
/// dropped.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Closes the queue when the last [`Engine`] handle goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.closed = true;
        self.0.wake.notify_all();
    }
}

impl Engine {
    /// Starts the engine thread. Jobs wait until a model is given with [`Engine::reload`].
    pub fn start() -> Engine {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                awaiting_load: true,
                ..Queue::default()
            }),
            wake: Condvar::new(),
            state: Mutex::new(ModelState::Loading),
            stats: Mutex::new(EngineStats::default()),
        });
        let engine = Engine {
            shared: shared.clone(),
            _owner: Arc::new(Owner(shared.clone())),
        };
        std::thread::Builder::new()
            .name("quill-engine".into())
            .spawn(move || run(shared))
            .expect("spawn the engine thread");
        engine
    }

    pub fn model_state(&self) -> ModelState {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads a model (first, or after a settings change) before any job queued after it; the
    /// receiver tells how the load went.
    pub fn reload(&self, loader: Loader) -> oneshot::Receiver<Result<(), String>> {
        let (tx, rx) = oneshot::channel();
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = ModelState::Loading;
        let mut q = self.lock();
        q.interactive.push_front(Job {
            work: Work::Load(loader, tx),
            cancel: Cancel::new(),
            supersede_key: None,
        });
        q.awaiting_load = false;
        self.shared.wake.notify_all();
        rx
    }

    /// What the engine thread did so far.
    pub fn stats(&self) -> EngineStats {
        self.shared.stats().clone()
    }

    /// Whether a background job (proofreading) is running now.
    pub fn background_running(&self) -> bool {
        self.lock().running_background.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job, priority: Priority) {
        let mut q = self.lock();
        match priority {
            Priority::Interactive => {
                q.interactive.push_back(job);
                preempt_background(&mut q);
            }
            Priority::Background => q.background.push_back(job),
        }
        self.shared.wake.notify_all();
    }

    /// Queues a completion; an older completion of the same document, queued or running, is
    /// cancelled. The returned receiver yields the answer.
    pub fn complete(
        &self,
        req: CompleteRequest,
        cancel: Cancel,
    ) -> oneshot::Receiver<Result<CompletionOutput, EngineError>> {
        let (tx, rx) = oneshot::channel();
        let doc = req.doc.clone();
        let mut q = self.lock();
        let mut superseded = Vec::new();
        let mut i = 0;
        while i < q.interactive.len() {
            if q.interactive[i].supersede_key.as_deref() == Some(doc.as_str()) {
                superseded.push(q.interactive.remove(i).expect("index in range"));
            } else {
                i += 1;
            }
        }
        if let Some((running, flag)) = &q.running {
            if *running == doc {
                flag.cancel();
            }
        }
        q.interactive.push_back(Job {
            work: Work::Complete(req, tx),
            cancel,
            supersede_key: Some(doc),
        });
        preempt_background(&mut q);
        self.shared.wake.notify_all();
        drop(q);
        for job in superseded {
            job.drop_cancelled();
        }
        rx
    }

    /// Queues the scoring of a text at background priority.
    pub fn score(
        &self,
        text: String,
        cancel: Cancel,
    ) -> oneshot::Receiver<Result<ScoredText, EngineError>> {
        let (tx, rx) = oneshot::channel();
        self.push(
            Job {
                work: Work::Score(text, tx),
                cancel,
                supersede_key: None,
            },
            Priority::Background,
        );
        rx
    }

    /// Queues proofreading of one paragraph at background priority.
    pub fn proofread(
        &self,
        text: String,
        opts: ProofreadOptions,
        cancel: Cancel,
    ) -> oneshot::Receiver<Result<Proofread, EngineError>> {
        let (tx, rx) = oneshot::channel();
        self.push(
            Job {
                work: Work::Proofread(text, opts, tx),
                cancel,
                supersede_key: None,
            },
            Priority::Background,
        );
        rx
    }

    /// Names the T5 model to load on first use (replacing any loaded one). It goes before
    /// every queued job: T5 jobs that arrived before the settings were known run with it.
    pub fn set_t5(&self, loader: T5Loader) {
        let mut q = self.lock();
        q.interactive.push_front(Job {
            work: Work::SetT5(loader),
            cancel: Cancel::new(),
            supersede_key: None,
        });
        preempt_background(&mut q);
        self.shared.wake.notify_all();
    }

    /// Queues a T5 task (summarize, answer, translate) at interactive priority.
    pub fn t5(
        &self,
        req: T5Request,
        cancel: Cancel,
    ) -> oneshot::Receiver<Result<String, EngineError>> {
        let (tx, rx) = oneshot::channel();
        self.push(
            Job {
                work: Work::T5(req, tx),
                cancel,
                supersede_key: None,
            },
            Priority::Interactive,
        );
        rx
    }

    /// Runs the forward passes of later jobs on `threads` threads (at least one).
    pub fn set_threads(&self, threads: usize) {
        self.push(
            Job {
                work: Work::Threads(threads.max(1)),
                cancel: Cancel::new(),
                supersede_key: None,
            },
            Priority::Interactive,
        );
    }

    /// Drops a document's session (the document was closed).
    pub fn forget(&self, doc: String) {
        self.push(
            Job {
                work: Work::Forget(doc),
                cancel: Cancel::new(),
                supersede_key: None,
            },
            Priority::Interactive,
        );
    }
}

/// Stops the running background job (it is queued again and resumes from its cache).
fn preempt_background(q: &mut Queue) {
    if let Some(flag) = q.running_background.take() {
        flag.cancel();
    }
}

/// What the engine thread holds between jobs.
#[derive(Default)]
struct State {
    model: Option<LanguageModel>,
    t5_loader: Option<T5Loader>,
    t5: Option<T5Model>,
    sessions: HashMap<String, (Session, u64)>,
    clock: u64,
}

/// The engine thread's loop.
fn run(shared: Arc<Shared>) {
    let mut state = State::default();
    let mut pool: Option<rayon::ThreadPool> = None;
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let next = if q.awaiting_load {
                    None
                } else {
                    q.interactive
                        .pop_front()
                        .or_else(|| q.background.pop_front())
                };
                if let Some(job) = next {
                    q.running = job.supersede_key.clone().map(|k| (k, job.cancel.clone()));
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        state.clock += 1;
        shared.stats().jobs += 1;
        if job.cancel.is_cancelled() {
            job.drop_cancelled();
        } else if let Work::Threads(n) = job.work {
            match rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("quill-compute-{i}"))
                .build()
            {
                Ok(p) => pool = Some(p),
                Err(e) => tracing::warn!("could not start {n} compute threads: {e}"),
            }
        } else {
            match &pool {
                Some(p) => p.install(|| handle(job, &mut state, &shared)),
                None => handle(job, &mut state, &shared),
            }
        }
        shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running = None;
    }
}

/// Runs one job (on the compute pool, if one was set).
fn handle(job: Job, st: &mut State, shared: &Shared) {
    let cancel = job.cancel.clone();
    let clock = st.clock;
    match job.work {
        Work::Load(loader, tx) => {
            st.sessions.clear();
            st.model = None;
            let (state, result) = match std::panic::catch_unwind(AssertUnwindSafe(loader)) {
                Ok(Ok(m)) => {
                    st.model = Some(m);
                    (ModelState::Ready, Ok(()))
                }
                Ok(Err(e)) => (ModelState::Failed(e.to_string()), Err(e.to_string())),
                Err(_) => {
                    let e = "loading the model panicked".to_string();
                    (ModelState::Failed(e.clone()), Err(e))
                }
            };
            *shared.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
            let _ = tx.send(result);
        }
        Work::Forget(doc) => {
            st.sessions.remove(&doc);
        }
        Work::SetT5(loader) => {
            st.t5 = None;
            st.t5_loader = Some(loader);
        }
        Work::Threads(_) => unreachable!("the loop sets the pool"),
        Work::T5(req, tx) => {
            let result = run_t5(&mut st.t5, &st.t5_loader, req, &cancel);
            let _ = tx.send(result);
        }
        Work::Complete(req, tx) => {
            {
                let mut stats = shared.stats();
                stats.last_completion_bytes = req.text_before.len() as u64;
                stats.completion_bytes += req.text_before.len() as u64;
            }
            let sessions = &mut st.sessions;
            // The span closes before the answer is sent: its time is logged by then.
            let span = tracing::debug_span!(target: "quill::keystroke", "job");
            let result = span.in_scope(|| {
                with_model(&st.model, shared, |lm| {
                    let doc = req.doc.clone();
                    let mut session = match sessions.remove(&doc) {
                        Some((s, _)) => s,
                        None => lm.new_session()?,
                    };
                    let prompt = {
                        let _span =
                            tracing::debug_span!(target: "quill::keystroke", "tokenize").entered();
                        lm.prompt_for_tail_cached(
                            &req.text_before,
                            req.text_start,
                            &req.policy,
                            session.text_cache_mut(),
                        )?
                    };
                    let out = lm.complete(&mut session, &prompt, &req.params, &cancel);
                    // A session is kept only after a clean run; an error may leave it odd.
                    if out.is_ok() || matches!(out, Err(EngineError::Cancelled)) {
                        evict_oldest(sessions);
                        sessions.insert(doc, (session, clock));
                    }
                    out
                })
            });
            drop(span);
            let _ = tx.send(result);
        }
        Work::Score(text, tx) => {
            let result = with_model(&st.model, shared, |lm| lm.score(&text, &cancel));
            let _ = tx.send(result);
        }
        Work::Proofread(text, opts, tx) => {
            // Runs under a child flag that an interactive job may raise; then the job goes
            // back to the front of the background queue.
            let flag = cancel.child();
            set_running_background(shared, Some(flag.clone()));
            let result = with_model(&st.model, shared, |lm| lm.proofread(&text, &opts, &flag));
            set_running_background(shared, None);
            if matches!(result, Err(EngineError::Cancelled)) && !cancel.is_cancelled() {
                shared.stats().preemptions += 1;
                let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.background.push_front(Job {
                    work: Work::Proofread(text, opts, tx),
                    cancel,
                    supersede_key: None,
                });
            } else {
                if result.is_ok() {
                    shared.stats().proofreads += 1;
                }
                let _ = tx.send(result);
            }
        }
    }
}

fn set_running_background(shared: &Shared, flag: Option<Cancel>) {
    let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
    // An interactive job may already wait: then the background job stops at once.
    if let Some(f) = &flag {
        if !q.interactive.is_empty() {
            f.cancel();
        }
    }
    q.running_background = flag;
}

/// Runs a T5 job, loading the model first if needed; panics become errors.
fn run_t5(
    t5: &mut Option<T5Model>,
    loader: &Option<T5Loader>,
    req: T5Request,
    cancel: &Cancel,
) -> Result<String, EngineError> {
    let send = |e: T5Event| {
        if let Some(tx) = &req.events {
            let _ = tx.send(e);
        }
    };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if t5.is_none() {
            let Some(load) = loader else {
                return Err(EngineError::Input("no T5 model is configured".into()));
            };
            send(T5Event::Loading);
            let progress = Arc::new(EventProgress(req.events.clone()));
            *t5 = Some(load(progress)?);
        }
        let model = t5.as_mut().expect("loaded above");
        model.run(
            &req.task,
            &req.text,
            req.max_tokens,
            cancel,
            &mut |done, total| send(T5Event::Step { done, total }),
        )
    }));
    match outcome {
        Ok(r) => r,
        Err(_) => {
            *t5 = None;
            Err(EngineError::Input("internal error in the T5 engine".into()))
        }
    }
}

/// Forwards download progress of a T5 load as events.
struct EventProgress(Option<mpsc::UnboundedSender<T5Event>>);

impl DownloadProgress for EventProgress {
    fn update(&self, file: &str, done: u64, total: u64) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(T5Event::Download {
                file: file.to_string(),
                done,
                total,
            });
        }
    }

    fn finish(&self, _file: &str) {}
}

/// Runs `f` on the loaded model, turning a missing model and a panic into errors.
fn with_model<T>(
    model: &Option<LanguageModel>,
    shared: &Shared,
    f: impl FnOnce(&LanguageModel) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let Some(lm) = model else {
        let state = shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return Err(EngineError::Input(match state {
            ModelState::Failed(e) => format!("the model could not be loaded: {e}"),
            _ => "the model is not loaded".into(),
        }));
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(lm))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("engine job panicked: {msg}");
            Err(EngineError::Input(format!(
                "internal error in the engine: {msg}"
            )))
        }
    }
}

fn evict_oldest(sessions: &mut HashMap<String, (Session, u64)>) {
    while sessions.len() >= MAX_SESSIONS {
        let oldest = sessions
            .iter()
            .min_by_key(|(_, (_, t))| *t)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => sessions.remove(&k),
            None => break,
        };
    }
}
