//! Where weights come from: a Hugging Face hub id (downloaded through `hf-hub` into its cache) or
//! a local directory in the hub's layout; and the device and dtype they are loaded on.
//!
//! This module resolves files and validates them; it builds no model. Errors say which file or
//! setting is wrong and what to do about it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};

use crate::engine::checkpoint::gguf;

/// Files a model is made of.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// How the user named the model (hub id or directory), for messages.
    pub name: String,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    /// One file, or the shards listed by `model.safetensors.index.json`; or one `model.gguf`.
    pub weights: Vec<PathBuf>,
}

impl ModelFiles {
    /// Whether the weights are a GGUF file (GPT-2 only), rather than safetensors.
    pub fn is_gguf(&self) -> bool {
        self.weights.len() == 1 && self.weights[0].extension().is_some_and(|e| e == "gguf")
    }
}

/// A model named by a hub id or by a local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Hub { id: String, revision: String },
    Dir(PathBuf),
}

impl ModelSource {
    /// A spec that names an existing directory or file, or looks like a path, is local (a
    /// model directory, or a GPT-2 `.gguf` file); anything else is a hub id.
    pub fn parse(spec: &str, revision: Option<&str>) -> Self {
        let path = Path::new(spec);
        let looks_like_path = spec.starts_with('.')
            || spec.starts_with('/')
            || spec.starts_with('~')
            || spec.matches('/').count() > 1
            || spec.contains('\\');
        if path.is_dir() || path.is_file() || looks_like_path {
            ModelSource::Dir(path.to_path_buf())
        } else {
            ModelSource::Hub {
                id: spec.to_string(),
                revision: revision.unwrap_or("main").to_string(),
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            ModelSource::Hub { id, .. } => id.clone(),
            ModelSource::Dir(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "the model `{0}` does not exist (no such directory or file). Pass --model (setting \
         `model`) a directory \
         that holds config.json, model.safetensors and tokenizer.json, a GPT-2 .gguf file, or \
         a hub id such as openai-community/gpt2"
    )]
    NoSuchDir(PathBuf),
    #[error(
        "`{path}` is missing. A model directory needs config.json, model.safetensors (or \
         model.safetensors.index.json and its shards) and tokenizer.json, or a GPT-2 \
         model.gguf{hint}"
    )]
    MissingFile { path: PathBuf, hint: String },
    #[error(
        "`{file}` of `{id}` is not in the hub cache at `{cache}`, and quill is offline \
         (--offline or HF_HUB_OFFLINE). Run `quill fetch --model {id}` once with network access, \
         or pass a local directory with --model"
    )]
    NotCached {
        id: String,
        file: String,
        cache: PathBuf,
    },
    #[error(
        "could not download `{file}` of `{id}` (revision {revision}) from {endpoint}: {reason}. \
         Check the model id and the network (HF_ENDPOINT sets the hub's address), or pass a \
         local directory with --model"
    )]
    Download {
        id: String,
        revision: String,
        file: String,
        endpoint: String,
        reason: String,
    },
    #[error("cannot use `{path}`: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error(
        "cannot read the weights in `{path}`: {reason}. The file is damaged or incomplete \
         (an interrupted download?): delete it and fetch the model again"
    )]
    BadWeights { path: PathBuf, reason: String },
    #[error(
        "cannot read the tokenizer `{path}`: {reason}. It must be a Hugging Face tokenizer.json"
    )]
    BadTokenizer { path: PathBuf, reason: String },
    #[error("unknown device `{0}`: use cpu, cuda, cuda:N or metal")]
    BadDevice(String),
    #[error("cannot use device `{spec}`: {reason}")]
    DeviceUnavailable { spec: String, reason: String },
    #[error("unknown dtype `{0}`: use f32, f16, bf16, q8_0 or q4_k")]
    BadDtype(String),
}

/// Receives download progress: `done` of `total` bytes of `file`.
pub trait DownloadProgress: Send + Sync {
    fn update(&self, file: &str, done: u64, total: u64);
    fn finish(&self, file: &str);
}

/// How to reach the hub.
#[derive(Clone, Default)]
pub struct FetchOptions {
    /// Use only the cache (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    pub progress: Option<Arc<dyn DownloadProgress>>,
}

impl FetchOptions {
    fn is_offline(&self) -> bool {
        self.offline || env_offline()
    }
}

fn env_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// GPT-2 weights in GGUF (`quill quantize` writes one); preferred when a directory has both.
pub const GGUF_WEIGHTS: &str = "model.gguf";

/// Finds (and, for a hub id, downloads) the files of a model.
pub fn resolve(source: &ModelSource, opts: &FetchOptions) -> Result<ModelFiles, ModelError> {
    match source {
        ModelSource::Dir(dir) => resolve_dir(dir),
        ModelSource::Hub { id, revision } => resolve_hub(id, revision, opts),
    }
}

fn resolve_dir(dir: &Path) -> Result<ModelFiles, ModelError> {
    if dir.is_file() && dir.extension().is_some_and(|e| e == "gguf") {
        return resolve_gguf_file(dir, dir.display().to_string());
    }
    if !dir.is_dir() {
        return Err(ModelError::NoSuchDir(dir.to_path_buf()));
    }
    let need = |file: &str| -> Result<PathBuf, ModelError> {
        let path = dir.join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::MissingFile {
                path,
                hint: String::new(),
            })
        }
    };
    let gguf = dir.join(GGUF_WEIGHTS);
    if gguf.is_file() {
        return resolve_gguf_file(&gguf, dir.display().to_string());
    }
    let config = need("config.json")?;
    let tokenizer = need("tokenizer.json")?;
    let weights = if dir.join(WEIGHTS).is_file() {
        vec![dir.join(WEIGHTS)]
    } else if dir.join(WEIGHTS_INDEX).is_file() {
        let index = dir.join(WEIGHTS_INDEX);
        shard_names(&index)?
            .into_iter()
            .map(|f| need(&f))
            .collect::<Result<_, _>>()?
    } else {
        return Err(ModelError::MissingFile {
            path: dir.join(WEIGHTS),
            hint: " (only safetensors weights are read: convert a pytorch_model.bin with \
                   transformers' save_pretrained(..., safe_serialization=True))"
                .to_string(),
        });
    };
    Ok(ModelFiles {
        name: dir.display().to_string(),
        config,
        tokenizer,
        weights,
    })
}

/// A GGUF file in a directory (`model.gguf`, or named directly as llama.cpp names its files,
/// such as `gpt2.Q8_0.gguf`): `config.json` and `tokenizer.json` beside it are used if present.
fn resolve_gguf_file(path: &Path, name: String) -> Result<ModelFiles, ModelError> {
    let beside = |file: &str| {
        let p = path.with_file_name(file);
        p.is_file().then_some(p)
    };
    gguf_model(name, path, beside("config.json"), beside("tokenizer.json"))
}

/// A model of one GGUF file: `config` and `tokenizer` where given, the rest made from the
/// file's metadata ([`gguf::companions`]: llama.cpp's GGUF files carry both).
fn gguf_model(
    name: String,
    gguf: &Path,
    config: Option<PathBuf>,
    tokenizer: Option<PathBuf>,
) -> Result<ModelFiles, ModelError> {
    let (config, tokenizer) = match (config, tokenizer) {
        (Some(c), Some(t)) => (c, t),
        (c, t) => {
            let (derived_c, derived_t) = gguf::companions(gguf)?;
            (c.unwrap_or(derived_c), t.unwrap_or(derived_t))
        }
    };
    Ok(ModelFiles {
        name,
        config,
        tokenizer,
        weights: vec![gguf.to_path_buf()],
    })
}

/// quill's own cache directory, private to the user: `$XDG_CACHE_HOME/quill`, else
/// `$HOME/.cache/quill`, else `quill-<uid>` in the temporary directory. It is created with
/// mode 0700 and, whether new or not, used only as [`make_private_dir`] allows.
pub fn private_cache_dir() -> std::io::Result<PathBuf> {
    let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    let dir = match std::env::var_os("XDG_CACHE_HOME").and_then(nonempty) {
        Some(d) => d.join("quill"),
        None => match std::env::var_os("HOME").and_then(nonempty) {
            Some(h) => h.join(".cache").join("quill"),
            None => std::env::temp_dir().join(format!("quill-{}", current_uid())),
        },
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    make_private_dir(&dir)?;
    Ok(dir)
}

#[cfg(unix)]
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn current_uid() -> u32 {
    0
}

/// Creates `dir` (its parent must exist) with mode 0700 if it is missing, then checks that it
/// is a directory, not a symbolic link, owned by this user, that no one else may write into
/// (read access for others is taken away).
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} {why}; remove it and try again", dir.display()),
        ))
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link, not a private directory");
    }
    if !meta.is_dir() {
        return refuse("is not a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != current_uid() {
            return refuse("belongs to another user");
        }
        if meta.mode() & 0o022 != 0 {
            return refuse(&format!(
                "may be written by others (mode {:o})",
                meta.mode() & 0o777
            ));
        }
        if meta.mode() & 0o077 != 0 {
            // Ours, and no one else could write into it: only take the reading away.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// The shard file names listed by a `model.safetensors.index.json`, in order, without repeats.
fn shard_names(index: &Path) -> Result<Vec<String>, ModelError> {
    let bad = |reason: String| ModelError::BadConfig {
        path: index.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("it has no `weight_map` object".to_string()))?;
    let mut files: Vec<String> = Vec::new();
    for v in map.values() {
        let f = v
            .as_str()
            .ok_or_else(|| bad("a `weight_map` value is not a file name".to_string()))?;
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    files.sort();
    Ok(files)
}

fn resolve_hub(id: &str, revision: &str, opts: &FetchOptions) -> Result<ModelFiles, ModelError> {
    let repo = hf_hub::Repo::with_revision(
        id.to_string(),
        hf_hub::RepoType::Model,
        revision.to_string(),
    );
    let cache = hf_hub::Cache::from_env();
    let offline = opts.is_offline();
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let api = if offline {
        None
    } else {
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| ModelError::Download {
                id: id.to_string(),
                revision: revision.to_string(),
                file: "config.json".to_string(),
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        Some(api.repo(repo.clone()))
    };
    // Returns Ok(None) when the hub says the file does not exist.
    let get = |file: &str| -> Result<Option<PathBuf>, ModelError> {
        if let Some(path) = cache.repo(repo.clone()).get(file) {
            return Ok(Some(path));
        }
        let Some(api) = &api else {
            return Err(ModelError::NotCached {
                id: id.to_string(),
                file: file.to_string(),
                cache: cache.path().clone(),
            });
        };
        let result = match &opts.progress {
            Some(p) => api.download_with_progress(file, ProgressAdapter::new(p.clone())),
            None => api.download(file),
        };
        match result {
            Ok(path) => Ok(Some(path)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(ModelError::Download {
                id: id.to_string(),
                revision: revision.to_string(),
                file: file.to_string(),
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            }),
        }
    };
    let missing = |file: &str| ModelError::Download {
        id: id.to_string(),
        revision: revision.to_string(),
        file: file.to_string(),
        endpoint: endpoint.clone(),
        reason: "the hub has no such file (404)".to_string(),
    };
    // A file the hub lacks, or (offline) the cache lacks: None, to try the next layout.
    let optional = |file: &str| match get(file) {
        Err(ModelError::NotCached { .. }) => Ok(None),
        other => other,
    };
    // Why a file the model needs cannot be had: not cached (offline) or not on the hub.
    let absent = |file: &str| match get(file) {
        Err(e) => e,
        Ok(_) => missing(file),
    };
    let config = optional("config.json")?;
    let tokenizer = optional("tokenizer.json")?;
    let (config, tokenizer) = match (config, tokenizer) {
        (Some(c), Some(t)) => (c, t),
        // Only a GGUF file carries its own config and tokenizer (llama.cpp's repositories).
        (c, t) => {
            let Some(gguf) = optional(GGUF_WEIGHTS)? else {
                return Err(absent(if c.is_none() {
                    "config.json"
                } else {
                    "tokenizer.json"
                }));
            };
            return gguf_model(id.to_string(), &gguf, c, t);
        }
    };
    let weights = if let Some(path) = optional(WEIGHTS)? {
        vec![path]
    } else if let Some(index) = optional(WEIGHTS_INDEX)? {
        let mut shards = Vec::new();
        for f in shard_names(&index)? {
            shards.push(get(&f)?.ok_or_else(|| missing(&f))?);
        }
        shards
    } else if let Some(gguf) = optional(GGUF_WEIGHTS)? {
        vec![gguf]
    } else {
        return Err(absent(WEIGHTS));
    };
    Ok(ModelFiles {
        name: id.to_string(),
        config,
        tokenizer,
        weights,
    })
}

fn is_not_found(e: &hf_hub::api::sync::ApiError) -> bool {
    match e {
        hf_hub::api::sync::ApiError::RequestError(err) => {
            matches!(err.as_ref(), ureq::Error::Status(404, _))
        }
        _ => false,
    }
}

/// Bridges `hf-hub`'s progress callbacks to a [`DownloadProgress`].
struct ProgressAdapter {
    sink: Arc<dyn DownloadProgress>,
    file: String,
    done: u64,
    total: u64,
}

impl ProgressAdapter {
    fn new(sink: Arc<dyn DownloadProgress>) -> Self {
        Self {
            sink,
            file: String::new(),
            done: 0,
            total: 0,
        }
    }
}

impl hf_hub::api::Progress for ProgressAdapter {
    fn init(&mut self, size: usize, filename: &str) {
        self.file = filename.to_string();
        self.total = size as u64;
        self.done = 0;
        self.sink.update(&self.file, 0, self.total);
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        self.sink.update(&self.file, self.done, self.total);
    }

    fn finish(&mut self) {
        self.sink.finish(&self.file);
    }
}

/// A device as the CLI and the settings name it: `cpu`, `cuda[:N]` or `metal[:N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Metal(usize),
}

/// Parses a device name without opening the device: what the settings check.
pub fn parse_device_spec(spec: &str) -> Result<DeviceSpec, ModelError> {
    let spec = spec.trim();
    let ordinal = |rest: &str| -> Result<usize, ModelError> {
        if rest.is_empty() {
            Ok(0)
        } else {
            rest.parse()
                .map_err(|_| ModelError::BadDevice(spec.to_string()))
        }
    };
    match spec.split_once(':').unwrap_or((spec, "")) {
        ("cpu", "") => Ok(DeviceSpec::Cpu),
        ("cuda", n) => Ok(DeviceSpec::Cuda(ordinal(n)?)),
        ("metal", n) => Ok(DeviceSpec::Metal(ordinal(n)?)),
        _ => Err(ModelError::BadDevice(spec.to_string())),
    }
}

/// Parses `cpu`, `cuda`, `cuda:N` or `metal` into a candle device.
pub fn parse_device(spec: &str) -> Result<Device, ModelError> {
    let spec = spec.trim();
    let unavailable = |e: candle_core::Error| ModelError::DeviceUnavailable {
        spec: spec.to_string(),
        reason: format!(
            "{e} (quill must be built with `--features {}` for it)",
            spec.split(':').next().unwrap_or(spec)
        ),
    };
    match parse_device_spec(spec)? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(unavailable),
        DeviceSpec::Metal(n) => Device::new_metal(n).map_err(unavailable),
    }
}

/// Parses a float dtype name. On the CPU, f16 and bf16 are the storage of GPT-2's matrices
/// (quill's kernels compute in f32); T5 then runs in f32.
pub fn parse_dtype(spec: &str) -> Result<DType, ModelError> {
    match spec.trim() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(ModelError::BadDtype(other.to_string())),
    }
}

/// How weights are held in memory: floats, or quantized blocks for GPT-2's matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    Float(DType),
    /// Linear layers and the output projection in ggml blocks; the rest in f32.
    Quantized(candle_core::quantized::GgmlDType),
}

impl WeightFormat {
    /// The dtype of tensors that stay in floats (and of the activations): f32 on the CPU,
    /// where the matrices alone take the format (quill's kernels compute in f32).
    pub fn float_dtype(self, device: &Device) -> DType {
        match self {
            WeightFormat::Float(d) if !device.is_cpu() => d,
            _ => DType::F32,
        }
    }

    pub fn quantized(self) -> Option<candle_core::quantized::GgmlDType> {
        match self {
            WeightFormat::Float(_) => None,
            WeightFormat::Quantized(q) => Some(q),
        }
    }
}

/// Parses a dtype name, quantized ones included (`q8_0`, `q4_k`).
pub fn parse_format(spec: &str) -> Result<WeightFormat, ModelError> {
    use candle_core::quantized::GgmlDType;
    match spec.trim() {
        "q8_0" => Ok(WeightFormat::Quantized(GgmlDType::Q8_0)),
        "q4_k" | "q4_k_m" => Ok(WeightFormat::Quantized(GgmlDType::Q4K)),
        other => Ok(WeightFormat::Float(parse_dtype(other)?)),
    }
}

/// Checks that each safetensors file is complete and readable, naming the one that is not.
pub fn check_weights(files: &[PathBuf]) -> Result<(), ModelError> {
    for path in files {
        let bad = |reason: String| ModelError::BadWeights {
            path: path.clone(),
            reason,
        };
        if path.extension().is_some_and(|e| e == "gguf") {
            gguf::check(path).map_err(bad)?;
            continue;
        }
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        // SAFETY: the map is read only and dropped before returning; a file changed underneath
        // us would at worst make the header check fail.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad(e.to_string()))?;
        safetensors::SafeTensors::deserialize(&mmap).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_hub_ids_or_directories() {
        assert_eq!(
            ModelSource::parse("openai-community/gpt2", None),
            ModelSource::Hub {
                id: "openai-community/gpt2".into(),
                revision: "main".into()
            }
        );
        assert_eq!(
            ModelSource::parse("gpt2", Some("v2")),
            ModelSource::Hub {
                id: "gpt2".into(),
                revision: "v2".into()
            }
        );
        assert_eq!(
            ModelSource::parse("./models/gpt2", None),
            ModelSource::Dir("./models/gpt2".into())
        );
        assert_eq!(
            ModelSource::parse("/abs/dir", None),
            ModelSource::Dir("/abs/dir".into())
        );
    }

    #[test]
    fn devices_and_dtypes_parse_or_explain() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(matches!(parse_device("tpu"), Err(ModelError::BadDevice(_))));
        assert!(matches!(
            parse_device("cuda:x"),
            Err(ModelError::BadDevice(_))
        ));
        assert_eq!(parse_dtype("f16").unwrap(), DType::F16);
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        assert!(matches!(parse_dtype("f64"), Err(ModelError::BadDtype(_))));
        assert!(matches!(
            parse_format("q8_0"),
            Ok(WeightFormat::Quantized(
                candle_core::quantized::GgmlDType::Q8_0
            ))
        ));
        assert_eq!(
            parse_format("f16").unwrap(),
            WeightFormat::Float(DType::F16)
        );
    }
}
