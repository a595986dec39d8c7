//! The engine thread: one named thread owns the model and a small LRU of per-document sessions,
//! and runs jobs that arrive through a queue. Interactive jobs (completions) go before
//! background jobs (scoring); a newer completion for a document supersedes an older one, queued
//! or running. Each job carries a reply channel and a [`Cancel`] flag that is checked between
//! forward passes. Blocking work never runs on the caller's (async) threads.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

use super::session::{Session, WindowPolicy};
use super::{Cancel, CompletionOutput, EngineError, GenerateParams, LanguageModel, ScoredText};

/// Loads a model; called on the engine thread.
pub type Loader = Box<dyn FnOnce() -> Result<LanguageModel, EngineError> + Send>;

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
    pub text_before: String,
    pub policy: WindowPolicy,
    pub params: GenerateParams,
}

enum Work {
    Complete(
        CompleteRequest,
        oneshot::Sender<Result<CompletionOutput, EngineError>>,
    ),
    Score(String, oneshot::Sender<Result<ScoredText, EngineError>>),
    Load(Loader, oneshot::Sender<Result<(), String>>),
    Forget(String),
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
            Work::Load(_, tx) => {
                let _ = tx.send(Err("cancelled".into()));
            }
            Work::Forget(_) => {}
        }
    }
}

#[derive(Default)]
struct Queue {
    interactive: VecDeque<Job>,
    background: VecDeque<Job>,
    /// The completion running now: its document and flag.
    running: Option<(String, Cancel)>,
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

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    state: Mutex<ModelState>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job, priority: Priority) {
        let mut q = self.lock();
        match priority {
            Priority::Interactive => q.interactive.push_back(job),
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

/// The engine thread's loop.
fn run(shared: Arc<Shared>) {
    let mut model: Option<LanguageModel> = None;
    let mut sessions: HashMap<String, (Session, u64)> = HashMap::new();
    let mut clock = 0u64;
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
        clock += 1;
        let cancel = job.cancel.clone();
        if cancel.is_cancelled() {
            job.drop_cancelled();
        } else {
            match job.work {
                Work::Load(loader, tx) => {
                    sessions.clear();
                    model = None;
                    let (state, result) = match std::panic::catch_unwind(AssertUnwindSafe(loader)) {
                        Ok(Ok(m)) => {
                            model = Some(m);
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
                    sessions.remove(&doc);
                }
                Work::Complete(req, tx) => {
                    let result = with_model(&model, &shared, |lm| {
                        let doc = req.doc.clone();
                        let mut session = match sessions.remove(&doc) {
                            Some((s, _)) => s,
                            None => lm.new_session()?,
                        };
                        let prompt = lm.prompt_for(&req.text_before, &req.policy)?;
                        let out = lm.complete(&mut session, &prompt, &req.params, &cancel);
                        // A session is kept only after a clean run; an error may leave it odd.
                        if out.is_ok() || matches!(out, Err(EngineError::Cancelled)) {
                            evict_oldest(&mut sessions);
                            sessions.insert(doc, (session, clock));
                        }
                        out
                    });
                    let _ = tx.send(result);
                }
                Work::Score(text, tx) => {
                    let result = with_model(&model, &shared, |lm| lm.score(&text, &cancel));
                    let _ = tx.send(result);
                }
            }
        }
        shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running = None;
    }
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
