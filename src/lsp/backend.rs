//! Which backend answers completions and diagnostics in the server: the engine thread's model,
//! or an OpenAI-compatible server (`backend` setting). Problems of a server are shown once with
//! `window/showMessage`, and once more when it answers again.

use std::sync::Arc;

use tokio::sync::mpsc;
use tower_lsp_server::ls_types::MessageType;

use super::{lock, Inner, Server};
use crate::engine::backend::{BackendSpec, LmBackend, Notice, NoticeLevel, RemoteBackend};
use crate::engine::EngineError;

impl Inner {
    /// The backend that answers completions and diagnostics now.
    pub(super) fn backend(&self) -> Arc<dyn LmBackend> {
        match lock(&self.remote).clone() {
            Some(remote) => Arc::new(remote),
            None => Arc::new(self.engine.clone()),
        }
    }

    /// The remote backend, if one is configured (for `quill/stats`).
    pub(super) fn remote(&self) -> Option<RemoteBackend> {
        lock(&self.remote).clone()
    }
}

impl Server {
    /// Switches to the backend the settings name. A server replaces the local model (which is
    /// unloaded; T5 commands still run locally); `"local"` loads the model.
    pub(super) async fn start_backend(&self) {
        let settings = self.settings();
        // Findings of one backend are not another's.
        lock(&self.diagnostics).clear_cache();
        match settings.backend {
            BackendSpec::Local => {
                *lock(&self.remote) = None;
                self.load_model().await;
            }
            BackendSpec::Remote(cfg) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let url = cfg.url.clone();
                let model = cfg.model.clone();
                *lock(&self.remote) = Some(RemoteBackend::new(cfg, Some(tx)));
                // No GPT-2 in this process: the engine thread keeps only T5.
                let unload = self.engine.reload(Box::new(move || {
                    Err(EngineError::Input(format!(
                        "the language model is served by the backend at {url}"
                    )))
                }));
                drop(unload);
                tracing::info!("backend: {model} at {}", settings_url(&self.settings()));
                forward_notices(self.client.clone(), rx);
                let open: Vec<_> = lock(&self.docs).keys().cloned().collect();
                for uri in open {
                    self.inner.schedule_diagnostics(uri, false);
                }
            }
        }
    }
}

fn settings_url(s: &super::config::Settings) -> String {
    match &s.backend {
        BackendSpec::Remote(c) => c.url.clone(),
        BackendSpec::Local => "local".into(),
    }
}

/// Shows a backend's notices until it is replaced (its sender dropped).
fn forward_notices(client: tower_lsp_server::Client, mut rx: mpsc::UnboundedReceiver<Notice>) {
    tokio::spawn(async move {
        while let Some(n) = rx.recv().await {
            let kind = match n.level {
                NoticeLevel::Error => MessageType::ERROR,
                NoticeLevel::Info => MessageType::INFO,
            };
            client.show_message(kind, n.message).await;
        }
    });
}
