//! Sentence-probability diagnostics in the server: debounced passes per document at background
//! priority, published with the document's version; hovers and quick fixes from what was
//! published.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tower_lsp_server::ls_types::*;

use super::{convert, lock, Inner};
use crate::diagnostics::checker::{self, Cache, Finding, FindingKind};
use crate::diagnostics::prose::{DocumentProse, Paragraph, TextEdit as ProseEdit};
use crate::engine::tasks::proofread::ProofreadOptions;
use crate::engine::{Cancel, EngineError};

/// Paragraphs proofread (not found in the cache) per pass at most; a pass that leaves some
/// publishes what it has and schedules the next one at once.
pub const PARAGRAPHS_PER_PASS: usize = 24;

/// Paragraphs of one document checked at all: those nearest the last edit (or the top of a
/// document not edited yet), so that a huge document costs what its neighbourhood of the
/// cursor does, and the results all fit in the cache.
pub const PARAGRAPHS_PER_DOCUMENT: usize = 384;

/// Per-server diagnostics state.
#[derive(Default)]
pub struct DiagnosticsState {
    cache: Cache,
    /// The options the cache was filled with.
    cache_options: Option<ProofreadOptions>,
    /// What was last published for each document, in document byte offsets.
    published: HashMap<Uri, Vec<Finding>>,
    /// Bumped by every edit: a pass whose generation is stale stops.
    generation: HashMap<Uri, u64>,
    /// Where the last edit left the cursor (byte offset), per document.
    cursor: HashMap<Uri, usize>,
    /// The running pass of each document, cancelled by the next edit.
    running: HashMap<Uri, Cancel>,
    /// Each open document's prose extractor (its tree), kept between passes.
    prose: HashMap<Uri, ProseEntry>,
    /// Completion requests of each document in flight, and when the last one ended.
    completing: HashMap<Uri, (usize, Instant)>,
}

/// A document's extractor and what it was made for.
struct ProseEntry {
    language: String,
    languages: Vec<String>,
    /// The document version it last extracted.
    version: i32,
    prose: DocumentProse,
}

impl DiagnosticsState {
    /// Forgets every paragraph's findings (the backend changed).
    pub(super) fn clear_cache(&mut self) {
        self.cache.clear();
    }
}

impl Inner {
    /// Notes where an edit left the cursor; the word there is not flagged until it moves.
    pub(super) fn set_cursor(&self, uri: &Uri, offset: usize) {
        lock(&self.diagnostics).cursor.insert(uri.clone(), offset);
    }

    /// Schedules a diagnostics pass for `uri` after the debounce delay; a newer edit cancels it.
    pub(super) fn schedule_diagnostics(self: &Arc<Self>, uri: Uri, debounce: bool) {
        let generation = {
            let mut d = lock(&self.diagnostics);
            if let Some(c) = d.running.remove(&uri) {
                c.cancel();
            }
            let g = d.generation.entry(uri.clone()).or_insert(0);
            *g += 1;
            *g
        };
        let this = self.clone();
        tokio::spawn(async move {
            let delay = if debounce {
                this.settings().diagnostics.debounce_ms
            } else {
                0
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            // One types and reads ghost text: a completion request counts as activity too. A
            // pass started while completions follow each other made each of them wait for the
            // forward pass in progress (a 128-token piece, 300 ms at f32 on 2 cores), which
            // made the keystrokes longer than the debounce, which started the next pass.
            while let Some(wait) = this.completion_quiet_in(&uri, delay) {
                if this.is_stale(&uri, generation) {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
            if this.is_stale(&uri, generation) {
                return;
            }
            if let Err(e) = this.run_pass(&uri, generation).await {
                if !matches!(e, EngineError::Cancelled) {
                    tracing::warn!("diagnostics of {} failed: {e}", uri.as_str());
                }
            }
        });
    }

    /// A completion of `uri` starts (see [`Inner::completion_ended`]).
    pub(super) fn completion_started(&self, uri: &Uri) {
        let mut d = lock(&self.diagnostics);
        let entry = d
            .completing
            .entry(uri.clone())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    /// A completion of `uri` was answered (or dropped).
    pub(super) fn completion_ended(&self, uri: &Uri) {
        let mut d = lock(&self.diagnostics);
        if let Some(entry) = d.completing.get_mut(uri) {
            entry.0 = entry.0.saturating_sub(1);
            entry.1 = Instant::now();
        }
    }

    /// How much longer a pass of `uri` debounced by `debounce_ms` waits for completions: while
    /// one is in flight, and until `debounce_ms` after the last one ended. `None`: no longer.
    fn completion_quiet_in(&self, uri: &Uri, debounce_ms: u64) -> Option<Duration> {
        let debounce = Duration::from_millis(debounce_ms);
        if debounce.is_zero() {
            return None;
        }
        let d = lock(&self.diagnostics);
        let &(in_flight, last_end) = d.completing.get(uri)?;
        if in_flight > 0 {
            return Some(debounce);
        }
        debounce
            .checked_sub(last_end.elapsed())
            .filter(|w| !w.is_zero())
    }

    fn is_stale(&self, uri: &Uri, generation: u64) -> bool {
        lock(&self.diagnostics).generation.get(uri) != Some(&generation)
    }

    async fn run_pass(self: &Arc<Self>, uri: &Uri, generation: u64) -> Result<(), EngineError> {
        let settings = self.settings();
        let Some((text, version, language, edits)) = ({
            let mut docs = lock(&self.docs);
            docs.get_mut(uri)
                .map(|d| (d.text(), d.version, d.language_id.clone(), d.take_edits()))
        }) else {
            return Ok(());
        };
        let ds = &settings.diagnostics;
        if !ds.enabled || self.is_excluded(uri, &ds.exclude) {
            self.publish(uri, Vec::new(), version, &text).await;
            return Ok(());
        }
        let options = ds.proofread_options();
        let cancel = Cancel::new();
        {
            let mut d = lock(&self.diagnostics);
            if d.cache_options.as_ref() != Some(&options) {
                d.cache.clear();
                d.cache_options = Some(options.clone());
            }
            d.running.insert(uri.clone(), cancel.clone());
        }
        let mut findings = Vec::new();
        let cursor = lock(&self.diagnostics).cursor.get(uri).copied();
        let paragraphs = nearest(
            self.extract(uri, &text, version, &language, &ds.languages, edits),
            cursor.unwrap_or(0),
            |p| p.range_to_document(0, p.text.len()),
        );
        let mut proofread = 0;
        let mut more = false;
        for paragraph in paragraphs {
            if self.is_stale(uri, generation) {
                return Err(EngineError::Cancelled);
            }
            let cached = lock(&self.diagnostics).cache.get(&paragraph.text);
            let result = match cached {
                Some(r) => r,
                None if proofread == PARAGRAPHS_PER_PASS => {
                    more = true;
                    continue;
                }
                None => {
                    proofread += 1;
                    let rx = self.backend().proofread(
                        paragraph.text.clone(),
                        options.clone(),
                        cancel.clone(),
                    );
                    let r = rx
                        .await
                        .map_err(|_| EngineError::Input("the engine stopped".into()))??;
                    lock(&self.diagnostics)
                        .cache
                        .insert(paragraph.text.clone(), r.clone());
                    r
                }
            };
            findings.extend(checker::findings(&paragraph, &result));
        }
        if self.is_stale(uri, generation) {
            return Err(EngineError::Cancelled);
        }
        self.filter_findings(uri, &text, ds.ignore_repeated, &mut findings);
        // The word being typed is left alone until the cursor leaves it.
        if let Some(c) = cursor {
            findings.retain(|f| {
                !(matches!(f.kind, FindingKind::Word { .. }) && f.start <= c && c <= f.end)
            });
        }
        lock(&self.diagnostics).running.remove(uri);
        findings.sort_by_key(|f| (f.start, f.end));
        self.publish(uri, findings, version, &text).await;
        if more && !self.is_stale(uri, generation) {
            // The rest in the next pass; an edit meanwhile starts over from its cursor.
            self.schedule_diagnostics(uri.clone(), false);
        }
        Ok(())
    }

    /// The paragraphs of `text`, through the document's kept extractor: with the edits since
    /// its last extraction, only what changed is parsed and extracted again. The extractor is
    /// taken out while it works, so no lock is held over the parse.
    fn extract(
        &self,
        uri: &Uri,
        text: &str,
        version: i32,
        language: &str,
        languages: &[String],
        edits: Option<(i32, Vec<ProseEdit>)>,
    ) -> Vec<Paragraph> {
        let kept = lock(&self.diagnostics).prose.remove(uri);
        let mut entry = match kept {
            Some(e) if e.language == language && e.languages == languages => e,
            _ => ProseEntry {
                language: language.to_string(),
                languages: languages.to_vec(),
                version: i32::MIN,
                prose: DocumentProse::new(language, languages),
            },
        };
        let known = edits
            .as_ref()
            .filter(|(from, _)| *from == entry.version)
            .map(|(_, e)| e.as_slice());
        let paragraphs = checker::plan_document(&mut entry.prose, text, known);
        entry.version = version;
        if entry.prose.is_incremental() && lock(&self.docs).contains_key(uri) {
            lock(&self.diagnostics).prose.insert(uri.clone(), entry);
        }
        paragraphs
    }

    async fn publish(&self, uri: &Uri, findings: Vec<Finding>, version: i32, text: &str) {
        let settings = self.settings();
        let enc = self.encoding();
        let doc = crate::document::Document::new(text, version, "");
        let diagnostics = findings
            .iter()
            .map(|f| {
                let severity = match f.kind {
                    FindingKind::Word { .. } => settings.diagnostics.token_severity,
                    FindingKind::Sentence { .. } => settings.diagnostics.sentence_severity,
                };
                let data = match &f.kind {
                    FindingKind::Word {
                        word, alternatives, ..
                    } => json!({
                        "word": word,
                        "alternatives": alternatives.iter().map(|(w, _)| w).collect::<Vec<_>>(),
                    }),
                    FindingKind::Sentence { perplexity } => json!({"perplexity": perplexity}),
                };
                Diagnostic {
                    range: convert::range(&doc, f.start, f.end, enc),
                    severity: Some(severity.lsp()),
                    code: Some(NumberOrString::String(f.code().into())),
                    source: Some("quill".into()),
                    message: f.message(),
                    data: Some(data),
                    ..Default::default()
                }
            })
            .collect();
        lock(&self.diagnostics)
            .published
            .insert(uri.clone(), findings);
        self.client
            .publish_diagnostics(uri.clone(), diagnostics, Some(version))
            .await;
    }

    /// Forgets a closed document and clears its diagnostics.
    pub(super) async fn close_diagnostics(&self, uri: &Uri) {
        {
            let mut d = lock(&self.diagnostics);
            d.published.remove(uri);
            d.cursor.remove(uri);
            d.prose.remove(uri);
            d.completing.remove(uri);
            if let Some(c) = d.running.remove(uri) {
                c.cancel();
            }
            *d.generation.entry(uri.clone()).or_insert(0) += 1;
        }
        self.client
            .publish_diagnostics(uri.clone(), Vec::new(), None)
            .await;
    }

    /// The published finding of kind word that covers byte `offset`.
    fn finding_at(&self, uri: &Uri, offset: usize) -> Option<Finding> {
        let d = lock(&self.diagnostics);
        d.published
            .get(uri)?
            .iter()
            .find(|f| {
                matches!(f.kind, FindingKind::Word { .. }) && f.start <= offset && offset <= f.end
            })
            .cloned()
    }

    /// Hover on a flagged word: the model's view of it.
    pub(super) fn diagnostics_hover(&self, uri: &Uri, position: Position) -> Option<Hover> {
        let enc = self.encoding();
        let (f, range) = {
            let docs = lock(&self.docs);
            let doc = docs.get(uri)?;
            let offset = convert::offset(doc, position, enc);
            let f = self.finding_at(uri, offset)?;
            let range = convert::range(doc, f.start, f.end, enc);
            (f, range)
        };
        let FindingKind::Word {
            word,
            logprob,
            alternatives,
        } = &f.kind
        else {
            return None;
        };
        let mut md = String::from("**quill**: ");
        match alternatives.first() {
            Some((alt, lp)) => md.push_str(&format!(
                "expected *{alt}* (p={}), saw *{word}* (p={})",
                checker::prob(*lp),
                checker::prob(*logprob)
            )),
            None => md.push_str(&format!("saw *{word}* (p={})", checker::prob(*logprob))),
        }
        if alternatives.len() > 1 {
            md.push_str("\n\nalternatives: ");
            let list: Vec<String> = alternatives
                .iter()
                .map(|(w, lp)| format!("*{w}* ({})", checker::prob(*lp)))
                .collect();
            md.push_str(&list.join(", "));
        }
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: md,
            }),
            range: Some(range),
        })
    }
}

/// The paragraphs to check: at most [`PARAGRAPHS_PER_DOCUMENT`], the nearest to byte `cursor`
/// first.
fn nearest<P>(paragraphs: Vec<P>, cursor: usize, span: impl Fn(&P) -> (usize, usize)) -> Vec<P> {
    let distance = |p: &P| {
        let (start, end) = span(p);
        if cursor < start {
            start - cursor
        } else {
            cursor.saturating_sub(end)
        }
    };
    let mut keyed: Vec<(usize, usize, P)> = paragraphs
        .into_iter()
        .enumerate()
        .map(|(i, p)| (distance(&p), i, p))
        .collect();
    keyed.sort_by_key(|(d, i, _)| (*d, *i));
    keyed.truncate(PARAGRAPHS_PER_DOCUMENT);
    keyed.into_iter().map(|(_, _, p)| p).collect()
}

/// Quick fixes for the client's `unlikely-token` diagnostics: "Replace with 'X'".
pub fn quick_fixes(uri: &Uri, diagnostics: &[Diagnostic]) -> Vec<CodeActionOrCommand> {
    let mut out = Vec::new();
    for d in diagnostics {
        let ours = d.source.as_deref() == Some("quill")
            && d.code == Some(NumberOrString::String("unlikely-token".into()));
        if !ours {
            continue;
        }
        let alternatives = d
            .data
            .as_ref()
            .and_then(|v| v.get("alternatives"))
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default();
        for (i, alt) in alternatives.iter().filter_map(|a| a.as_str()).enumerate() {
            let edit = TextEdit::new(d.range, alt.to_string());
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: format!("Replace with '{alt}'"),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![d.clone()]),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                    ..Default::default()
                }),
                is_preferred: Some(i == 0),
                ..Default::default()
            }));
        }
    }
    out
}
