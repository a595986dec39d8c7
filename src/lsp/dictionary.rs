//! Dictionaries and ignores in the server: the word lists that apply to a document (the user's
//! dictionary, its workspace folder's, the `diagnostics.dictionary` setting, the words ignored
//! in it), kept fresh by file watchers and a cheap modification-time check; the code actions
//! "Add 'X' to the … dictionary" and "Ignore 'X' in this document" with their commands; one
//! `window/showMessage` per problem with a dictionary file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::*;

use super::{convert, invalid_params, lock, Inner};
use crate::diagnostics::checker::Finding;
use crate::diagnostics::dictionary::{self, DictionaryFile, WordList};
use crate::diagnostics::ignore::{Exclude, Filter};

pub const ADD_TO_DICTIONARY: &str = "quill.addToDictionary";
pub const IGNORE_WORD: &str = "quill.ignoreWord";
pub const ALL: [&str; 2] = [ADD_TO_DICTIONARY, IGNORE_WORD];

/// How often the server itself looks at the dictionary files' modification times (the client's
/// file watcher, when it has one, is faster).
const POLL: Duration = Duration::from_secs(1);

/// Per-server dictionary state.
#[derive(Default)]
pub struct DictionaryState {
    /// The workspace folders, from `initialize`.
    folders: Vec<PathBuf>,
    user: Option<DictionaryFile>,
    /// Each workspace folder's dictionary.
    workspace: Vec<(PathBuf, DictionaryFile)>,
    /// The files and the words of `diagnostics.dictionary`, and the setting they came from.
    setting_files: Vec<DictionaryFile>,
    setting_words: WordList,
    setting: Option<Vec<String>>,
    /// Words ignored in one document ("Ignore 'X' in this document").
    document_words: HashMap<Uri, WordList>,
    /// Problems already shown, per file: each is shown once.
    reported: HashSet<(PathBuf, String)>,
    /// Whether the client registers file watchers on request, and takes relative patterns.
    watch_dynamic: bool,
    watch_relative: bool,
}

impl DictionaryState {
    /// The workspace folder that holds `path` (the deepest one).
    fn folder_of(&self, path: &Path) -> Option<&PathBuf> {
        self.folders
            .iter()
            .filter(|f| path.starts_with(f))
            .max_by_key(|f| f.as_os_str().len())
    }

    fn files_mut(&mut self) -> impl Iterator<Item = &mut DictionaryFile> {
        self.user
            .iter_mut()
            .chain(self.workspace.iter_mut().map(|(_, f)| f))
            .chain(self.setting_files.iter_mut())
    }
}

/// A document's path, when its URI is a `file:` one.
fn file_path(uri: &Uri) -> Option<PathBuf> {
    (uri.scheme().as_str() == "file")
        .then(|| uri.to_file_path().map(|p| p.into_owned()))
        .flatten()
}

/// Where a `diagnostics.dictionary` file entry points: `~/` is the home directory, a relative
/// path starts at the first workspace folder.
fn setting_path(entry: &str, folders: &[PathBuf]) -> PathBuf {
    let home = || std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    if let Some(rest) = entry
        .strip_prefix("~/")
        .or_else(|| entry.strip_prefix("~\\"))
    {
        if let Some(h) = home() {
            return PathBuf::from(h).join(rest);
        }
    }
    let p = PathBuf::from(entry);
    match folders.first() {
        Some(f) if p.is_relative() => f.join(p),
        _ => p,
    }
}

/// Whether a `diagnostics.dictionary` entry names a file rather than a word.
fn is_file_entry(entry: &str) -> bool {
    entry.contains('/') || entry.contains('\\')
}

/// The arguments of `quill.addToDictionary` and `quill.ignoreWord`.
#[derive(Debug, Deserialize)]
struct WordArgs {
    word: String,
    scope: Option<String>,
    uri: Option<Uri>,
}

impl Inner {
    /// Notes the workspace folders and the client's file-watching abilities (`initialize`).
    pub(super) fn init_dictionaries(&self, params: &InitializeParams) {
        #[allow(deprecated)]
        let mut folders: Vec<PathBuf> = match &params.workspace_folders {
            Some(list) => list.iter().filter_map(|f| file_path(&f.uri)).collect(),
            None => params.root_uri.iter().filter_map(file_path).collect(),
        };
        folders.dedup();
        let watch = params
            .capabilities
            .workspace
            .as_ref()
            .and_then(|w| w.did_change_watched_files.as_ref());
        let mut d = lock(&self.dictionaries);
        d.folders = folders;
        d.watch_dynamic = watch.and_then(|w| w.dynamic_registration) == Some(true);
        d.watch_relative = watch.and_then(|w| w.relative_pattern_support) == Some(true);
    }

    /// After `initialized`: reads the dictionaries, asks the client to watch them, and starts
    /// the modification-time check.
    pub(super) async fn start_dictionaries(self: &Arc<Self>) {
        self.reload_dictionaries(false).await;
        let (dynamic, relative, user) = {
            let d = lock(&self.dictionaries);
            (
                d.watch_dynamic,
                d.watch_relative,
                d.user.as_ref().map(|f| f.path.clone()),
            )
        };
        if dynamic {
            let mut watchers = vec![json!({"globPattern": "**/.quill/dictionary.txt"})];
            if let (true, Some(user)) = (relative, user) {
                let dir = user.parent().and_then(Uri::from_file_path);
                if let Some(dir) = dir {
                    watchers.push(json!({"globPattern": {"baseUri": dir.as_str(),
                                                          "pattern": "dictionary.txt"}}));
                }
            }
            let client = self.client.clone();
            tokio::spawn(async move {
                let registration = Registration {
                    id: "quill/dictionaries".into(),
                    method: "workspace/didChangeWatchedFiles".into(),
                    register_options: Some(json!({ "watchers": watchers })),
                };
                if let Err(e) = client.register_capability(vec![registration]).await {
                    tracing::info!("the client would not watch the dictionaries: {e}");
                }
            });
        }
        let weak: Weak<Inner> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                if this.shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                this.reload_dictionaries(true).await;
            }
        });
    }

    /// `workspace/didChangeWatchedFiles`: reads every dictionary again.
    pub(super) async fn dictionaries_changed(self: &Arc<Self>) {
        for f in lock(&self.dictionaries).files_mut() {
            f.invalidate();
        }
        self.reload_dictionaries(true).await;
    }

    /// Brings the dictionaries up to date with the settings and the files on disk (a `stat`
    /// each when nothing changed), shows each new problem once, and republishes the open
    /// documents when a word list changed and `republish` is set.
    pub(super) async fn reload_dictionaries(self: &Arc<Self>, republish: bool) {
        let setting = self.settings().diagnostics.dictionary;
        let this = self.clone();
        let work = tokio::task::spawn_blocking(move || this.refresh_dictionaries(setting));
        let Ok((changed, problems)) = work.await else {
            return;
        };
        for p in problems {
            tracing::warn!("{p}");
            self.client
                .show_message(MessageType::WARNING, format!("quill: {p}"))
                .await;
        }
        if changed && republish {
            self.republish_all();
        }
    }

    /// Schedules a pass of every open document at once (no debounce).
    pub(super) fn republish_all(self: &Arc<Self>) {
        let open: Vec<Uri> = lock(&self.docs).keys().cloned().collect();
        for uri in open {
            self.schedule_diagnostics(uri, false);
        }
    }

    /// Blocking: stats (and reads when changed) every dictionary file. Returns whether any word
    /// list changed and the problems not shown before.
    fn refresh_dictionaries(&self, setting: Vec<String>) -> (bool, Vec<String>) {
        let mut d = lock(&self.dictionaries);
        let mut changed = false;
        let user = dictionary::user_dictionary_path();
        if d.user.as_ref().map(|f| &f.path) != user.as_ref() {
            d.user = user.map(|p| DictionaryFile::new(p, false));
            changed = true;
        }
        let folders = d.folders.clone();
        if d.workspace.iter().map(|(f, _)| f).ne(folders.iter()) {
            d.workspace = folders
                .iter()
                .map(|f| {
                    let file = DictionaryFile::new(dictionary::workspace_dictionary_path(f), false);
                    (f.clone(), file)
                })
                .collect();
            changed = true;
        }
        if d.setting.as_ref() != Some(&setting) {
            let mut words = WordList::new();
            let mut files = Vec::new();
            for entry in &setting {
                if is_file_entry(entry) {
                    files.push(DictionaryFile::new(setting_path(entry, &folders), true));
                } else {
                    words.insert(entry);
                }
            }
            d.setting_words = words;
            d.setting_files = files;
            d.setting = Some(setting);
            changed = true;
        }
        let mut problems = Vec::new();
        let mut current: Vec<(PathBuf, Option<String>)> = Vec::new();
        for f in d.files_mut() {
            changed |= f.refresh();
            current.push((f.path.clone(), f.loaded.problem.clone()));
        }
        for (path, problem) in current {
            match problem {
                None => d.reported.retain(|(p, _)| p != &path),
                Some(problem) => {
                    let key = (path.clone(), problem.clone());
                    if d.reported.insert(key) {
                        problems.push(format!(
                            "dictionary {}: {problem}; diagnostics go on with the words that \
                             could be read",
                            path.display()
                        ));
                    }
                }
            }
        }
        (changed, problems)
    }

    /// Whether `diagnostics.exclude` matches the document's path.
    pub(super) fn is_excluded(&self, uri: &Uri, patterns: &[String]) -> bool {
        if patterns.is_empty() {
            return false;
        }
        let Ok(exclude) = Exclude::new(patterns) else {
            return false;
        };
        let path = match file_path(uri) {
            Some(p) => p.to_string_lossy().replace('\\', "/"),
            None => uri.path().as_str().to_string(),
        };
        let folders: Vec<String> = lock(&self.dictionaries)
            .folders
            .iter()
            .map(|f| f.to_string_lossy().replace('\\', "/"))
            .collect();
        exclude.matches(&path, &folders)
    }

    /// Drops the findings that the dictionaries, the document's ignored words, its ignore
    /// comments and the repeated-word rule silence.
    pub(super) fn filter_findings(
        &self,
        uri: &Uri,
        text: &str,
        ignore_repeated: usize,
        findings: &mut Vec<Finding>,
    ) {
        let d = lock(&self.dictionaries);
        let folder_file = file_path(uri).and_then(|p| {
            let folder = d.folder_of(&p)?;
            d.workspace
                .iter()
                .find(|(f, _)| f == folder)
                .map(|(_, file)| file)
        });
        let mut lists: Vec<&WordList> = vec![&d.setting_words];
        lists.extend(d.user.iter().map(|f| &f.loaded.words));
        lists.extend(folder_file.map(|f| &f.loaded.words));
        lists.extend(d.setting_files.iter().map(|f| &f.loaded.words));
        lists.extend(d.document_words.get(uri));
        Filter {
            lists,
            ignore_repeated,
        }
        .apply(text, findings);
    }

    /// The dictionary actions for the client's `unlikely-token` diagnostics.
    pub(super) fn dictionary_actions(
        &self,
        uri: &Uri,
        diagnostics: &[Diagnostic],
    ) -> Vec<CodeActionOrCommand> {
        let has_folder = {
            let d = lock(&self.dictionaries);
            file_path(uri).is_some_and(|p| d.folder_of(&p).is_some())
        };
        let has_user = dictionary::user_dictionary_path().is_some();
        let enc = self.encoding();
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for diag in diagnostics {
            let ours = diag.source.as_deref() == Some("quill")
                && diag.code == Some(NumberOrString::String("unlikely-token".into()));
            if !ours {
                continue;
            }
            let word = diag
                .data
                .as_ref()
                .and_then(|v| v.get("word"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or_else(|| {
                    let docs = lock(&self.docs);
                    let doc = docs.get(uri)?;
                    let a = convert::offset(doc, diag.range.start, enc);
                    let b = convert::offset(doc, diag.range.end, enc);
                    Some(doc.rope().byte_slice(a.min(b)..b.max(a)).to_string())
                });
            let Some(word) = word.filter(|w| dictionary::check_word(w).is_ok()) else {
                continue;
            };
            if !seen.insert(word.clone()) {
                continue;
            }
            let action = |title: String, command: &str, args: Value| {
                CodeActionOrCommand::CodeAction(CodeAction {
                    title: title.clone(),
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![diag.clone()]),
                    command: Some(Command::new(title, command.to_string(), Some(vec![args]))),
                    ..Default::default()
                })
            };
            if has_folder {
                out.push(action(
                    format!("Add '{word}' to the workspace dictionary"),
                    ADD_TO_DICTIONARY,
                    json!({"word": word, "scope": "workspace", "uri": uri.as_str()}),
                ));
            }
            if has_user {
                out.push(action(
                    format!("Add '{word}' to the user dictionary"),
                    ADD_TO_DICTIONARY,
                    json!({"word": word, "scope": "user", "uri": uri.as_str()}),
                ));
            }
            out.push(action(
                format!("Ignore '{word}' in this document"),
                IGNORE_WORD,
                json!({"uri": uri.as_str(), "word": word}),
            ));
        }
        out
    }

    /// `quill.addToDictionary` and `quill.ignoreWord`.
    pub(super) async fn execute_dictionary(
        self: &Arc<Self>,
        params: ExecuteCommandParams,
    ) -> jsonrpc::Result<Option<Value>> {
        let command = params.command.clone();
        let first = params.arguments.into_iter().next().ok_or_else(|| {
            invalid_params(format!("{command} needs an argument {{\"word\": …}}"))
        })?;
        let args: WordArgs = serde_json::from_value(first)
            .map_err(|e| invalid_params(format!("{command}: bad argument: {e}")))?;
        dictionary::check_word(&args.word)
            .map_err(|e| invalid_params(format!("{command}: {e}")))?;
        if command == IGNORE_WORD {
            let uri = args
                .uri
                .ok_or_else(|| invalid_params("quill.ignoreWord needs the document's \"uri\""))?;
            lock(&self.dictionaries)
                .document_words
                .entry(uri)
                .or_default()
                .insert(&args.word);
            self.republish_all();
            return Ok(Some(Value::Null));
        }
        let path = match args.scope.as_deref() {
            Some("user") => dictionary::user_dictionary_path().ok_or_else(|| {
                invalid_params(
                    "there is no user configuration directory: set XDG_CONFIG_HOME or HOME",
                )
            })?,
            Some("workspace") => {
                let d = lock(&self.dictionaries);
                let folder = match args.uri.as_ref() {
                    Some(uri) => file_path(uri).and_then(|p| d.folder_of(&p).cloned()),
                    None => d.folders.first().cloned(),
                };
                let folder = folder.ok_or_else(|| {
                    invalid_params(if d.folders.is_empty() {
                        "no workspace folder is open: add the word to the user dictionary"
                    } else {
                        "the document is in no workspace folder: add the word to the user \
                         dictionary"
                    })
                })?;
                dictionary::workspace_dictionary_path(&folder)
            }
            other => {
                return Err(invalid_params(format!(
                    "quill.addToDictionary: \"scope\" must be \"workspace\" or \"user\", got \
                     {other:?}"
                )))
            }
        };
        let (target, word) = (path.clone(), args.word.clone());
        let written = tokio::task::spawn_blocking(move || dictionary::add_word(&target, &word))
            .await
            .map_err(|e| invalid_params(format!("writing the dictionary failed: {e}")))?;
        if let Err(e) = written {
            return Err(jsonrpc::Error {
                code: jsonrpc::ErrorCode::InternalError,
                message: format!("could not add the word to {}: {e}", path.display()).into(),
                data: None,
            });
        }
        // Read it back at once (the stamp may not have moved within the same second).
        for f in lock(&self.dictionaries).files_mut() {
            if f.path == path {
                f.invalidate();
            }
        }
        self.reload_dictionaries(false).await;
        self.republish_all();
        Ok(Some(json!({ "file": path.display().to_string() })))
    }
}
