//! The settings object (`initializationOptions`, `workspace/didChangeConfiguration`,
//! `workspace/configuration` section `quill`), parsed once and validated key by key: a bad value
//! is named in an error and the previous value stays.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub model: String,
    pub t5_model: String,
    pub device: String,
    pub dtype: String,
    /// Compute threads; 0 leaves the editor one core.
    pub threads: usize,
    /// `"local"` or an OpenAI-compatible server (`engine::backend::BackendSpec`).
    pub backend: crate::engine::backend::BackendSpec,
    pub completion: CompletionSettings,
    pub diagnostics: DiagnosticsSettings,
    pub t5: T5Settings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CompletionSettings {
    pub enabled: bool,
    pub max_tokens: usize,
    pub num_suggestions: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub context_tokens: usize,
    /// In code, end a suggestion at the end of its first line.
    pub stop_at_newline: bool,
    /// In prose, end a suggestion at the end of its first sentence.
    pub stop_at_sentence: bool,
    /// Seed of the sampler (suggestions repeat for the same text).
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DiagnosticsSettings {
    pub enabled: bool,
    /// A token below this log-probability may flag its word...
    pub min_token_logprob: f32,
    /// ...when the model's best guess is at least this much more likely (nats).
    pub min_alternative_gap: f32,
    /// Sentences above this perplexity get one `unlikely-sentence` hint.
    pub max_sentence_perplexity: f64,
    pub debounce_ms: u64,
    /// Languages checked whole as prose; in every other language only comments are checked.
    pub languages: Vec<String>,
    pub token_severity: Severity,
    pub sentence_severity: Severity,
    /// Words never flagged; an entry with a `/` (or `\\`) is a dictionary file instead
    /// (absolute, `~/…`, or relative to the workspace folder).
    pub dictionary: Vec<String>,
    /// A word the document uses at least this many times is not flagged (0: off).
    pub ignore_repeated: usize,
    /// Glob patterns on document paths that are never checked.
    pub exclude: Vec<String>,
}

/// A diagnostic severity, as settings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Information,
    Hint,
}

impl Severity {
    pub fn lsp(self) -> tower_lsp_server::ls_types::DiagnosticSeverity {
        use tower_lsp_server::ls_types::DiagnosticSeverity as S;
        match self {
            Severity::Error => S::ERROR,
            Severity::Warning => S::WARNING,
            Severity::Information => S::INFORMATION,
            Severity::Hint => S::HINT,
        }
    }
}

impl DiagnosticsSettings {
    pub fn proofread_options(&self) -> crate::engine::tasks::proofread::ProofreadOptions {
        crate::engine::tasks::proofread::ProofreadOptions {
            min_token_logprob: self.min_token_logprob,
            min_gap: self.min_alternative_gap,
            max_alternatives: 3,
            max_sentence_perplexity: self.max_sentence_perplexity,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct T5Settings {
    pub max_tokens: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: "openai-community/gpt2".into(),
            t5_model: "google-t5/t5-small".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
            threads: 0,
            backend: Default::default(),
            completion: CompletionSettings::default(),
            diagnostics: DiagnosticsSettings::default(),
            t5: T5Settings::default(),
        }
    }
}

impl Default for CompletionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_tokens: 16,
            num_suggestions: 3,
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            context_tokens: 768,
            stop_at_newline: true,
            stop_at_sentence: true,
            seed: 0,
        }
    }
}

impl Default for DiagnosticsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_token_logprob: -12.5,
            min_alternative_gap: 0.0,
            max_sentence_perplexity: 750.0,
            debounce_ms: 400,
            languages: [
                "plaintext",
                "markdown",
                "gitcommit",
                "restructuredtext",
                "latex",
            ]
            .map(String::from)
            .to_vec(),
            token_severity: Severity::Information,
            sentence_severity: Severity::Hint,
            dictionary: Vec::new(),
            ignore_repeated: 3,
            exclude: Vec::new(),
        }
    }
}

impl Default for T5Settings {
    fn default() -> Self {
        Self { max_tokens: 96 }
    }
}

impl Settings {
    /// Builds settings from a client's object: missing keys take their defaults; a key whose
    /// value is of the wrong type or out of range keeps its value in `previous` and is reported.
    pub fn from_json(
        value: &Value,
        base: &Settings,
        previous: &Settings,
    ) -> (Settings, Vec<String>) {
        let mut errors = Vec::new();
        let defaults = serde_json::to_value(base).expect("settings serialize");
        let prev = serde_json::to_value(previous).expect("settings serialize");
        let mut merged = defaults.clone();
        if !value.is_null() && !value.is_object() {
            errors.push(format!("quill settings must be an object, got {value}"));
            return (previous.clone(), errors);
        }
        // `backend` is a string or an object, checked whole rather than leaf by leaf.
        let mut value = value.clone();
        let backend = value.as_object_mut().and_then(|o| o.remove("backend"));
        let mut leaves = Vec::new();
        collect_leaves(&value, String::new(), &mut leaves);
        for (path, leaf) in leaves {
            let Some(default_leaf) = pointer(&defaults, &path) else {
                tracing::warn!("ignoring unknown setting quill.{path}");
                continue;
            };
            // Check the type of the leaf alone, against the defaults.
            let mut probe = defaults.clone();
            set(&mut probe, &path, leaf.clone());
            let typed = serde_json::from_value::<Settings>(probe).is_ok()
                && (leaf.is_array() == default_leaf.is_array());
            if typed {
                set(&mut merged, &path, leaf.clone());
            } else {
                errors.push(format!(
                    "quill.{path}: {leaf} is not a valid value (expected something like {default_leaf})"
                ));
                if let Some(p) = pointer(&prev, &path) {
                    set(&mut merged, &path, p.clone());
                }
            }
        }
        let mut settings: Settings =
            serde_json::from_value(merged).unwrap_or_else(|_| previous.clone());
        settings.check_ranges(previous, &mut errors);
        settings.backend = match backend {
            None => base.backend.clone(),
            Some(v) => match crate::engine::backend::BackendSpec::from_json(&v) {
                Ok(spec) => spec,
                Err(e) => {
                    errors.push(format!("quill.{e}"));
                    previous.backend.clone()
                }
            },
        };
        (settings, errors)
    }

    /// Whether `value` is an object with at least one top-level key of the settings.
    pub fn has_known_keys(value: &Value) -> bool {
        let known = serde_json::to_value(Settings::default()).expect("settings serialize");
        value
            .as_object()
            .is_some_and(|o| o.keys().any(|k| known.get(k).is_some()))
    }

    /// Values of the right type but out of range keep their previous value.
    fn check_ranges(&mut self, previous: &Settings, errors: &mut Vec<String>) {
        macro_rules! check {
            ($field:ident, $ok:expr, $why:literal) => {{
                let v = &self.$field;
                #[allow(clippy::redundant_closure_call)]
                if !($ok)(v) {
                    errors.push(format!("quill.{}: {:?} {}", stringify!($field), v, $why));
                    self.$field = previous.$field.clone();
                }
            }};
            ($field:ident . $sub:ident, $ok:expr, $why:literal) => {{
                let v = &self.$field.$sub;
                #[allow(clippy::redundant_closure_call)]
                if !($ok)(v) {
                    errors.push(format!(
                        "quill.{}.{}: {:?} {}",
                        stringify!($field),
                        camel(stringify!($sub)),
                        v,
                        $why
                    ));
                    self.$field.$sub = previous.$field.$sub.clone();
                }
            }};
        }
        check!(
            completion.max_tokens,
            |v: &usize| (1..=256).contains(v),
            "must be between 1 and 256"
        );
        check!(
            completion.num_suggestions,
            |v: &usize| (1..=10).contains(v),
            "must be between 1 and 10"
        );
        check!(
            completion.temperature,
            |v: &f32| v.is_finite() && *v >= 0.0 && *v <= 5.0,
            "must be between 0 and 5"
        );
        check!(
            completion.top_p,
            |v: &f32| *v > 0.0 && *v <= 1.0,
            "must be in (0, 1]"
        );
        check!(
            completion.context_tokens,
            |v: &usize| *v >= 16,
            "must be at least 16"
        );
        check!(
            diagnostics.min_token_logprob,
            |v: &f32| v.is_finite() && *v < 0.0,
            "must be negative"
        );
        check!(
            diagnostics.min_alternative_gap,
            |v: &f32| v.is_finite() && *v >= 0.0,
            "must be zero or more"
        );
        check!(
            diagnostics.max_sentence_perplexity,
            |v: &f64| *v > 1.0,
            "must be above 1"
        );
        check!(
            diagnostics.exclude,
            |v: &Vec<String>| crate::diagnostics::ignore::Exclude::new(v).is_ok(),
            "holds a pattern that is not a glob"
        );
        check!(
            diagnostics.dictionary,
            |v: &Vec<String>| v.iter().all(|w| !w.trim().is_empty() && !w.contains('\n')),
            "must hold words (or dictionary files), none empty"
        );
        check!(
            t5.max_tokens,
            |v: &usize| (1..=1024).contains(v),
            "must be between 1 and 1024"
        );
        check!(
            threads,
            |v: &usize| *v <= 1024,
            "must be at most 1024 (0: every core but one)"
        );
        // The CLI's parsers: every name `--device` and `--dtype` take, the settings take.
        for (name, value, prev) in [
            ("device", &mut self.device, &previous.device),
            ("dtype", &mut self.dtype, &previous.dtype),
        ] {
            let checked = match name {
                "device" => crate::models::parse_device_spec(value).map(drop),
                _ => crate::models::parse_format(value).map(drop),
            };
            if let Err(e) = checked {
                errors.push(format!("quill.{name}: {e}"));
                *value = prev.clone();
            }
        }
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Every non-object value in `v`, with its dotted path.
fn collect_leaves(v: &Value, prefix: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_leaves(child, path, out);
            }
        }
        other if !prefix.is_empty() => out.push((prefix, other.clone())),
        _ => {}
    }
}

fn pointer<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn set(v: &mut Value, path: &str, leaf: Value) {
    let mut cur = v;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        cur = cur
            .as_object_mut()
            .expect("an object on the path")
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.insert(keys[keys.len() - 1].to_string(), leaf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_backend_is_checked_whole_and_a_bad_one_keeps_the_previous() {
        use crate::engine::backend::BackendSpec;
        let (s, errors) = Settings::from_json(
            &json!({"backend": {"url": "http://127.0.0.1:8080/v1", "model": "gpt2", "fim": true},
                    "completion": {"maxTokens": 4}}),
            &Settings::default(),
            &Settings::default(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let BackendSpec::Remote(c) = &s.backend else {
            panic!("{:?}", s.backend)
        };
        assert!(c.fim.is_on() && c.model == "gpt2");
        assert_eq!(s.completion.max_tokens, 4);
        let (t, errors) = Settings::from_json(
            &json!({"backend": {"url": "ftp://x", "model": "gpt2"}}),
            &Settings::default(),
            &s,
        );
        assert_eq!(t.backend, s.backend);
        assert!(errors[0].starts_with("quill.backend.url"), "{errors:?}");
        let (u, errors) =
            Settings::from_json(&json!({"backend": "local"}), &Settings::default(), &s);
        assert!(errors.is_empty());
        assert_eq!(u.backend, BackendSpec::Local);
    }

    #[test]
    fn missing_keys_take_defaults() {
        let (s, errors) = Settings::from_json(
            &json!({"completion": {"maxTokens": 8}}),
            &Settings::default(),
            &Settings::default(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.completion.max_tokens, 8);
        assert_eq!(s.completion.num_suggestions, 3);
        assert_eq!(s.model, "openai-community/gpt2");
        let (s, errors) =
            Settings::from_json(&Value::Null, &Settings::default(), &Settings::default());
        assert!(errors.is_empty());
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn bad_values_are_named_and_the_previous_value_stays() {
        let mut previous = Settings::default();
        previous.completion.temperature = 0.2;
        previous.completion.top_p = 0.5;
        let (s, errors) = Settings::from_json(
            &json!({"completion": {"temperature": "hot", "topP": 3.0, "maxTokens": 4},
                    "diagnostics": {"languages": "markdown"}, "device": "tpu"}),
            &Settings::default(),
            &previous,
        );
        assert_eq!(s.completion.temperature, 0.2);
        assert_eq!(s.completion.top_p, 0.5);
        assert_eq!(s.completion.max_tokens, 4);
        assert_eq!(s.device, "cpu");
        assert_eq!(s.diagnostics.languages, previous.diagnostics.languages);
        let all = errors.join("\n");
        for key in [
            "completion.temperature",
            "completion.topP",
            "diagnostics.languages",
            "quill.device",
        ] {
            assert!(all.contains(key), "{key} not named in {all}");
        }
        assert_eq!(errors.len(), 4, "{all}");
        assert!(all.contains("unknown device `tpu`"), "{all}");
    }

    #[test]
    fn device_and_dtype_take_every_name_the_cli_takes() {
        for (device, dtype) in [
            ("cpu", "f32"),
            ("cuda", "float16"),
            ("cuda:1", "q4_k_m"),
            ("metal:0", "bfloat16"),
            ("metal", "q8_0"),
            (" cpu ", "q4_k"),
        ] {
            let (s, errors) = Settings::from_json(
                &json!({"device": device, "dtype": dtype}),
                &Settings::default(),
                &Settings::default(),
            );
            assert!(errors.is_empty(), "{device} {dtype}: {errors:?}");
            assert_eq!((s.device.as_str(), s.dtype.as_str()), (device, dtype));
            assert!(crate::models::parse_device_spec(device).is_ok());
            assert!(crate::models::parse_format(dtype).is_ok());
        }
        let previous = Settings {
            dtype: "f16".into(),
            ..Default::default()
        };
        let (s, errors) = Settings::from_json(
            &json!({"device": "cuda:x", "dtype": "q5_k"}),
            &Settings::default(),
            &previous,
        );
        assert_eq!((s.device.as_str(), s.dtype.as_str()), ("cpu", "f16"));
        let all = errors.join("\n");
        assert!(
            all.contains("quill.device: unknown device `cuda:x`"),
            "{all}"
        );
        assert!(all.contains("quill.dtype: unknown dtype `q5_k`"), "{all}");
    }

    #[test]
    fn threads_take_a_count_or_zero_and_refuse_absurd_ones() {
        let previous = Settings {
            threads: 3,
            ..Default::default()
        };
        let (s, errors) =
            Settings::from_json(&json!({"threads": 5000}), &Settings::default(), &previous);
        assert_eq!(s.threads, 3);
        assert!(errors.join("\n").contains("quill.threads"), "{errors:?}");
        let (s, errors) =
            Settings::from_json(&json!({"threads": 2}), &Settings::default(), &previous);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.threads, 2);
        assert_eq!(crate::engine::compute_threads(2), 2);
        assert!(crate::engine::compute_threads(0) >= 1);
    }
}
