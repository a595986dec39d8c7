//! Where continuations and log-probabilities come from: the model in this process (the engine
//! thread, [`super::worker::Engine`]) or an OpenAI-compatible server (llama.cpp's server, vLLM,
//! Text Generation Inference, Ollama) reached over HTTP ([`RemoteBackend`]).
//!
//! The LSP layer and the CLI ask a [`LmBackend`] for "continuations of this context" and
//! "log-probabilities (with the likely alternatives) of this text"; both backends answer on a
//! channel, so that the caller never blocks, and a cancelled or superseded request is answered
//! (or dropped) at once. T5 commands always run on the local engine thread.

pub mod infill;
pub mod openai;
pub mod remote;

pub use remote::{Notice, NoticeLevel, RemoteBackend};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::tasks::proofread::{Proofread, ProofreadOptions};
use super::worker::{CompleteRequest, Engine};
use super::{Cancel, CompletionOutput, EngineError, ScoredText};

/// The answer to a backend request, when it comes.
pub type Reply<T> = oneshot::Receiver<Result<T, EngineError>>;

/// A source of continuations and log-probabilities.
pub trait LmBackend: Send + Sync {
    /// Continuations of the text before a cursor. A newer completion of the same document
    /// supersedes an older one: the older is answered `Cancelled` at once.
    fn complete(&self, req: CompleteRequest, cancel: Cancel) -> Reply<CompletionOutput>;
    /// Per-token log-probabilities of a text with BOS in front.
    fn score(&self, text: String, cancel: Cancel) -> Reply<ScoredText>;
    /// Unlikely words and sentences of one paragraph.
    fn proofread(&self, text: String, opts: ProofreadOptions, cancel: Cancel) -> Reply<Proofread>;
    /// Drops what is kept for a document (it was closed).
    fn forget(&self, doc: String);
}

impl LmBackend for Engine {
    fn complete(&self, req: CompleteRequest, cancel: Cancel) -> Reply<CompletionOutput> {
        Engine::complete(self, req, cancel)
    }

    fn score(&self, text: String, cancel: Cancel) -> Reply<ScoredText> {
        Engine::score(self, text, cancel)
    }

    fn proofread(&self, text: String, opts: ProofreadOptions, cancel: Cancel) -> Reply<Proofread> {
        Engine::proofread(self, text, opts, cancel)
    }

    fn forget(&self, doc: String) {
        Engine::forget(self, doc)
    }
}

/// The `backend` setting: `"local"` or an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawSpec", into = "RawSpec")]
pub enum BackendSpec {
    #[default]
    Local,
    Remote(RemoteConfig),
}

/// An OpenAI-compatible server (`backend` as an object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteConfig {
    /// The API's base, e.g. `http://127.0.0.1:8080/v1`; requests go to `{url}/completions`.
    pub url: String,
    /// The model name the server knows.
    pub model: String,
    /// The environment variable that holds the API key (sent as a bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Fill-in-the-middle: whether and how the text after the cursor goes along.
    #[serde(default)]
    pub fim: Fim,
    /// Requests in flight at most.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Time limit of one HTTP request, connecting included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The text of the model's BOS token, put in front of a context that starts at the
    /// document's start and of scored text (`<|endoftext|>` for GPT-2; `""` for servers that
    /// add BOS themselves).
    #[serde(default = "default_bos")]
    pub bos: String,
}

/// The `fim` key: `false`, `true` (OpenAI's `suffix` parameter) or `"infill"` (llama.cpp's
/// `/infill` endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fim {
    /// `false`: only the text before the cursor is sent.
    #[default]
    Off,
    /// `true`: the text after the cursor goes to `{url}/completions` as `suffix`.
    Suffix,
    /// `"infill"`: completions go to llama.cpp's `{server root}/infill` as `input_prefix` and
    /// `input_suffix`, which the server wraps in the model's own FIM tokens.
    Infill,
}

impl Fim {
    /// Whether the text after the cursor is sent at all.
    pub fn is_on(self) -> bool {
        self != Fim::Off
    }

    /// Whether a JSON value is one the `fim` key takes.
    fn accepts(value: &serde_json::Value) -> bool {
        value.is_boolean() || value == "infill"
    }
}

impl Serialize for Fim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Fim::Off => s.serialize_bool(false),
            Fim::Suffix => s.serialize_bool(true),
            Fim::Infill => s.serialize_str("infill"),
        }
    }
}

impl<'de> Deserialize<'de> for Fim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Fim;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or \"infill\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Fim, E> {
                Ok(if v { Fim::Suffix } else { Fim::Off })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Fim, E> {
                match v {
                    "infill" => Ok(Fim::Infill),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn default_max_in_flight() -> usize {
    4
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_bos() -> String {
    "<|endoftext|>".into()
}

impl RemoteConfig {
    /// A configuration with the defaults for everything but the server and model.
    pub fn new(url: &str, model: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key_env: None,
            fim: Fim::Off,
            max_in_flight: default_max_in_flight(),
            timeout_ms: default_timeout_ms(),
            bos: default_bos(),
        }
    }

    /// The server's root: `url` without its trailing `/v1` (llama.cpp's own endpoints, such as
    /// `/infill`, are not under `/v1`).
    pub fn server_root(&self) -> &str {
        let url = self.url.trim_end_matches('/');
        url.strip_suffix("/v1").unwrap_or(url)
    }

    /// Where completions go: `{url}/completions`, or `{server root}/infill` with
    /// `fim: "infill"`.
    pub fn completions_url(&self) -> String {
        match self.fim {
            Fim::Infill => format!("{}/infill", self.server_root()),
            Fim::Off | Fim::Suffix => format!("{}/completions", self.url.trim_end_matches('/')),
        }
    }

    /// Checks the values; the error says which key is wrong and how.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "backend.url: {:?} must start with http:// or https:// (e.g. http://127.0.0.1:8080/v1)",
                self.url
            ));
        }
        if self.model.trim().is_empty() {
            return Err("backend.model: name the model the server serves".into());
        }
        if !(1..=64).contains(&self.max_in_flight) {
            return Err(format!(
                "backend.maxInFlight: {} must be between 1 and 64",
                self.max_in_flight
            ));
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            return Err(format!(
                "backend.timeoutMs: {} must be between 100 and 600000",
                self.timeout_ms
            ));
        }
        if let Some(var) = &self.api_key_env {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(format!(
                    "backend.apiKeyEnv: {var:?} is not an environment variable name"
                ));
            }
        }
        Ok(())
    }
}

impl BackendSpec {
    /// Parses and checks a `backend` value.
    pub fn from_json(value: &serde_json::Value) -> Result<BackendSpec, String> {
        // Checked first, as serde's error for an untagged enum does not say which key is wrong.
        if let Some(fim) = value.get("fim").filter(|v| !Fim::accepts(v)) {
            return Err(format!(
                "backend.fim: {fim} is not valid; use false, true (the text after the cursor \
                 as `suffix`) or \"infill\" (llama.cpp's /infill endpoint)"
            ));
        }
        let spec: BackendSpec = serde_json::from_value(value.clone()).map_err(|e| {
            // The value itself is not repeated: it may hold a secret in a wrong key.
            format!(
                "backend is not valid ({e}); use \"local\" or \
                 {{\"url\": \"http://host:port/v1\", \"model\": NAME}}"
            )
        })?;
        if let BackendSpec::Remote(c) = &spec {
            c.validate()?;
        }
        Ok(spec)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawSpec {
    Name(String),
    Remote(RemoteConfig),
}

impl TryFrom<RawSpec> for BackendSpec {
    type Error = String;

    fn try_from(raw: RawSpec) -> Result<Self, String> {
        match raw {
            RawSpec::Name(n) if n == "local" => Ok(BackendSpec::Local),
            RawSpec::Name(n) => Err(format!("unknown backend {n:?} (\"local\" or an object)")),
            RawSpec::Remote(mut c) => {
                c.url = c.url.trim_end_matches('/').to_string();
                Ok(BackendSpec::Remote(c))
            }
        }
    }
}

impl From<BackendSpec> for RawSpec {
    fn from(spec: BackendSpec) -> RawSpec {
        match spec {
            BackendSpec::Local => RawSpec::Name("local".into()),
            BackendSpec::Remote(c) => RawSpec::Remote(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_setting_is_local_or_a_server() {
        assert_eq!(
            BackendSpec::from_json(&json!("local")).unwrap(),
            BackendSpec::Local
        );
        let spec = BackendSpec::from_json(&json!({
            "url": "http://127.0.0.1:8080/v1/", "model": "gpt2", "apiKeyEnv": "KEY",
            "fim": true, "maxInFlight": 2, "timeoutMs": 500
        }))
        .unwrap();
        let BackendSpec::Remote(c) = spec else {
            panic!("not remote")
        };
        assert_eq!(c.url, "http://127.0.0.1:8080/v1");
        assert_eq!(c.api_key_env.as_deref(), Some("KEY"));
        assert_eq!(c.fim, Fim::Suffix);
        assert_eq!((c.max_in_flight, c.timeout_ms), (2, 500));
        assert_eq!(c.bos, "<|endoftext|>");
        let c = RemoteConfig::new("http://h/v1", "m");
        assert_eq!(
            BackendSpec::from_json(&serde_json::to_value(BackendSpec::Remote(c.clone())).unwrap())
                .unwrap(),
            BackendSpec::Remote(c)
        );
    }

    #[test]
    fn fim_is_a_flag_or_infill_and_infill_goes_to_the_server_root() {
        let spec = |fim: serde_json::Value| {
            BackendSpec::from_json(&json!({"url": "http://h:8080/v1/", "model": "m", "fim": fim}))
        };
        let remote = |fim: serde_json::Value| match spec(fim).unwrap() {
            BackendSpec::Remote(c) => c,
            BackendSpec::Local => panic!("local"),
        };
        assert_eq!(remote(json!(false)).fim, Fim::Off);
        assert_eq!(remote(json!(true)).fim, Fim::Suffix);
        let c = remote(json!("infill"));
        assert_eq!(c.fim, Fim::Infill);
        assert!(c.fim.is_on() && Fim::Suffix.is_on() && !Fim::Off.is_on());
        assert_eq!(c.server_root(), "http://h:8080");
        assert_eq!(c.completions_url(), "http://h:8080/infill");
        // Written back as it was read.
        let value = serde_json::to_value(BackendSpec::Remote(c.clone())).unwrap();
        assert_eq!(value["fim"], "infill");
        assert_eq!(
            BackendSpec::from_json(&value).unwrap(),
            BackendSpec::Remote(c)
        );
        assert_eq!(
            serde_json::to_value(BackendSpec::Remote(remote(json!(true)))).unwrap()["fim"],
            true
        );
        assert_eq!(
            remote(json!(true)).completions_url(),
            "http://h:8080/v1/completions"
        );
        // A URL without /v1 is the root itself.
        let mut c = RemoteConfig::new("http://h:8080/", "m");
        c.fim = Fim::Infill;
        assert_eq!(c.completions_url(), "http://h:8080/infill");
        for bad in [json!("suffix"), json!("Infill"), json!(1), json!(null)] {
            let e = spec(bad.clone()).unwrap_err();
            assert!(
                e.starts_with("backend.fim:") && e.contains("\"infill\""),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn bad_backends_are_named() {
        for (value, says) in [
            (json!("remote"), "backend"),
            (
                json!({"url": "127.0.0.1:8080", "model": "m"}),
                "backend.url",
            ),
            (json!({"url": "http://h/v1", "model": " "}), "backend.model"),
            (
                json!({"url": "http://h/v1", "model": "m", "maxInFlight": 0}),
                "maxInFlight",
            ),
            (
                json!({"url": "http://h/v1", "model": "m", "timeoutMs": 5}),
                "timeoutMs",
            ),
            (
                json!({"url": "http://h/v1", "model": "m", "apiKey": "secret"}),
                "backend",
            ),
            (json!({"model": "m"}), "backend"),
        ] {
            let e = BackendSpec::from_json(&value).unwrap_err();
            assert!(e.contains(says), "{value}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
