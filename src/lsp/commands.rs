//! The T5 commands: `workspace/executeCommand` for `quill.summarize`, `quill.answer`,
//! `quill.translate` (and the variants that put the result into the buffer with
//! `workspace/applyEdit`), the code actions that run them on a selection, and their progress.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::*;

use super::{convert, engine_error, invalid_params, lock, random_suffix, CancelOnDrop, Inner};
use crate::engine::tasks::t5::{Language, Task};
use crate::engine::worker::{T5Event, T5Request};
use crate::engine::{Cancel, EngineError};

pub const SUMMARIZE: &str = "quill.summarize";
pub const ANSWER: &str = "quill.answer";
pub const TRANSLATE: &str = "quill.translate";
/// Summarize and insert the summary below the selection.
pub const SUMMARIZE_INSERT: &str = "quill.summarize.insert";
/// Translate and replace the selection with the translation.
pub const TRANSLATE_REPLACE: &str = "quill.translate.replace";

pub const ALL: [&str; 5] = [
    SUMMARIZE,
    ANSWER,
    TRANSLATE,
    SUMMARIZE_INSERT,
    TRANSLATE_REPLACE,
];

/// The argument object of every command.
#[derive(Debug, Deserialize)]
struct Args {
    uri: Uri,
    range: Option<Range>,
    question: Option<String>,
    to: Option<String>,
}

impl Inner {
    pub(super) async fn execute(
        &self,
        params: ExecuteCommandParams,
    ) -> jsonrpc::Result<Option<Value>> {
        // A command sent right after `initialized` runs with the client's settings.
        self.settings_ready().await;
        let command = params.command.as_str();
        if !ALL.contains(&command) {
            return Err(invalid_params(format!(
                "unknown command `{command}`; quill offers {}",
                ALL.join(", ")
            )));
        }
        let first =
            params.arguments.into_iter().next().ok_or_else(|| {
                invalid_params(format!("{command} needs an argument {{\"uri\": …}}"))
            })?;
        let args: Args = serde_json::from_value(first)
            .map_err(|e| invalid_params(format!("{command}: bad argument: {e}")))?;
        let task = match command {
            SUMMARIZE | SUMMARIZE_INSERT => Task::Summarize,
            ANSWER => {
                let question = args
                    .question
                    .clone()
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| invalid_params("quill.answer needs a \"question\""))?;
                Task::Answer { question }
            }
            _ => {
                let to = args.to.as_deref().ok_or_else(|| {
                    invalid_params(format!(
                        "{command} needs \"to\": German, French or Romanian"
                    ))
                })?;
                Task::Translate {
                    to: Language::parse(to).map_err(|e| invalid_params(e.to_string()))?,
                }
            }
        };
        let enc = self.encoding();
        let (text, start, end) = {
            let docs = lock(&self.docs);
            let doc = docs.get(&args.uri).ok_or_else(|| {
                invalid_params(format!(
                    "unknown document {}: open it (didOpen) first",
                    args.uri.as_str()
                ))
            })?;
            let (start, end) = match args.range {
                Some(r) => (
                    convert::offset(doc, r.start, enc),
                    convert::offset(doc, r.end, enc),
                ),
                None => (0, doc.len_bytes()),
            };
            if end < start {
                return Err(invalid_params("the range ends before it starts"));
            }
            (doc.rope().byte_slice(start..end).to_string(), start, end)
        };
        if text.trim().is_empty() {
            return Err(invalid_params(
                "there is no text to work on: the selection is empty",
            ));
        }
        let result = self.run_t5(task.clone(), text).await?;
        match command {
            SUMMARIZE_INSERT => {
                self.apply(
                    &args.uri,
                    end,
                    end,
                    format!("\n\n{result}"),
                    "Insert summary",
                )
                .await?;
            }
            TRANSLATE_REPLACE => {
                self.apply(
                    &args.uri,
                    start,
                    end,
                    result.clone(),
                    "Replace with translation",
                )
                .await?;
            }
            _ => {}
        }
        Ok(Some(match task {
            Task::Summarize => json!({ "summary": result }),
            Task::Answer { .. } => json!({ "answer": result }),
            Task::Translate { .. } => json!({ "translation": result }),
        }))
    }

    /// Runs a T5 job with `$/progress` and cancellation.
    async fn run_t5(&self, task: Task, text: String) -> jsonrpc::Result<String> {
        let verb = match &task {
            Task::Summarize => "summarizing",
            Task::Answer { .. } => "answering",
            Task::Translate { .. } => "translating",
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cancel = Cancel::new();
        let mut guard = CancelOnDrop {
            cancel: cancel.clone(),
            armed: true,
        };
        let req = T5Request {
            task,
            text,
            max_tokens: self.settings().t5.max_tokens,
            events: Some(tx),
        };
        let mut reply = self.engine.t5(req, cancel);
        let supports_progress = lock(&self.state).supports_progress;
        let token = NumberOrString::String(format!("quill/t5/{}", random_suffix()));
        let progress = if supports_progress
            && self
                .client
                .create_work_done_progress(token.clone())
                .await
                .is_ok()
        {
            Some(
                self.client
                    .progress(token, "quill")
                    .with_message(verb)
                    .with_percentage(0)
                    .begin()
                    .await,
            )
        } else {
            None
        };
        let result = loop {
            tokio::select! {
                r = &mut reply => break r,
                Some(event) = rx.recv() => {
                    if let Some(p) = &progress {
                        match event {
                            T5Event::Loading => p.report_with_message("loading the T5 model", 0).await,
                            T5Event::Download { file, done, total } if total > 0 => {
                                p.report_with_message(format!("downloading {file}"), (done * 100 / total) as u32).await
                            }
                            T5Event::Step { done, total } if total > 1 => {
                                p.report_with_message(format!("{verb}: part {done} of {total}"), (done * 100 / total) as u32).await
                            }
                            _ => {}
                        }
                    }
                }
            }
        };
        guard.armed = false;
        if let Some(p) = progress {
            p.finish().await;
        }
        result
            .map_err(|_| engine_error(EngineError::Input("the engine stopped".into())))?
            .map_err(engine_error)
    }

    /// Asks the client to replace `start..end` of a document with `text`.
    async fn apply(
        &self,
        uri: &Uri,
        start: usize,
        end: usize,
        text: String,
        label: &str,
    ) -> jsonrpc::Result<()> {
        let enc = self.encoding();
        let range = {
            let docs = lock(&self.docs);
            let doc = docs
                .get(uri)
                .ok_or_else(|| invalid_params("the document was closed meanwhile"))?;
            convert::range(doc, start, end, enc)
        };
        let edit = WorkspaceEdit {
            changes: Some(HashMap::from([(
                uri.clone(),
                vec![TextEdit::new(range, text)],
            )])),
            ..Default::default()
        };
        let response = self
            .client
            .send_request::<request::ApplyWorkspaceEdit>(ApplyWorkspaceEditParams {
                label: Some(label.to_string()),
                edit,
            })
            .await?;
        if !response.applied {
            tracing::warn!(
                "the client did not apply the edit: {:?}",
                response.failure_reason
            );
        }
        Ok(())
    }
}

/// Code actions on a selection that run the T5 commands.
pub fn selection_actions(uri: &Uri, range: Range) -> Vec<CodeActionOrCommand> {
    if range.start == range.end {
        return Vec::new();
    }
    let action = |title: String, kind: CodeActionKind, command: &str, extra: Value| {
        let mut args = json!({"uri": uri.as_str(), "range": range});
        if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        CodeActionOrCommand::CodeAction(CodeAction {
            title: title.clone(),
            kind: Some(kind),
            command: Some(Command::new(title, command.to_string(), Some(vec![args]))),
            ..Default::default()
        })
    };
    let mut out = vec![
        action(
            "Summarize selection".into(),
            CodeActionKind::REFACTOR,
            SUMMARIZE,
            json!({}),
        ),
        action(
            "Insert summary below selection".into(),
            CodeActionKind::REFACTOR,
            SUMMARIZE_INSERT,
            json!({}),
        ),
    ];
    for to in ["German", "French", "Romanian"] {
        out.push(action(
            format!("Translate selection to {to}"),
            CodeActionKind::REFACTOR,
            TRANSLATE,
            json!({ "to": to }),
        ));
        out.push(action(
            format!("Replace selection with its {to} translation"),
            CodeActionKind::REFACTOR_REWRITE,
            TRANSLATE_REPLACE,
            json!({ "to": to }),
        ));
    }
    out
}
