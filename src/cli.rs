//! The command-line subcommands: each takes validated options, runs the engine and writes the
//! result. `main.rs` only parses arguments into these structs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use candle_core::quantized::GgmlDType;
use serde_json::json;

use crate::engine::backend::{openai, RemoteBackend, RemoteConfig};
use crate::engine::checkpoint::gguf;
use crate::engine::tasks::sampling::{SamplingParams, StopAt};
use crate::engine::{Cancel, GenerateParams, LanguageModel};
use crate::models::{self, DownloadProgress, FetchOptions, ModelFiles, ModelSource};

/// Which model to load and how.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub model: String,
    pub t5_model: String,
    pub revision: Option<String>,
    pub offline: bool,
    pub device: String,
    pub dtype: String,
    /// Compute threads; 0 for the default.
    pub threads: usize,
    /// An OpenAI-compatible server that completes and scores instead of the local model.
    pub backend: Option<RemoteConfig>,
}

impl ModelOptions {
    fn fetch_options(&self) -> FetchOptions {
        FetchOptions {
            offline: self.offline,
            progress: Some(Arc::new(ProgressBars::default())),
        }
    }

    fn resolve(&self, spec: &str) -> anyhow::Result<ModelFiles> {
        let source = ModelSource::parse(spec, self.revision.as_deref());
        Ok(models::resolve(&source, &self.fetch_options())?)
    }

    /// Resolves (downloading if needed) and loads the GPT-2 model.
    pub fn load_language_model(&self) -> anyhow::Result<LanguageModel> {
        let device = models::parse_device(&self.device)?;
        let format = models::parse_format(&self.dtype)?;
        let files = self.resolve(&self.model)?;
        tracing::info!(model = %files.name, "loading");
        Ok(LanguageModel::load_format(&files, &device, format)?)
    }
}

/// `quill serve`: the language server on stdio; returns the process exit code.
pub fn serve(model: &ModelOptions) -> anyhow::Result<i32> {
    let defaults = crate::lsp::config::Settings {
        model: model.model.clone(),
        t5_model: model.t5_model.clone(),
        device: model.device.clone(),
        dtype: model.dtype.clone(),
        threads: model.threads,
        backend: match &model.backend {
            Some(cfg) => crate::engine::backend::BackendSpec::Remote(cfg.clone()),
            None => Default::default(),
        },
        ..Default::default()
    };
    let options = crate::lsp::ServeOptions {
        defaults,
        revision: model.revision.clone(),
        offline: model.offline,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = runtime.block_on(crate::lsp::serve_stdio(options));
    // Do not wait for the blocked read of stdin: `exit` ends the process even while the
    // client keeps stdin open.
    runtime.shutdown_background();
    Ok(code)
}

/// Options of `quill complete`.
#[derive(Debug, Clone)]
pub struct CompleteOptions {
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub n: usize,
    pub seed: Option<u64>,
    pub json: bool,
}

/// `quill complete`: prints the continuation of `prompt` (not the prompt itself).
pub fn complete(
    model: &ModelOptions,
    prompt: &str,
    opts: &CompleteOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if opts.n == 0 {
        anyhow::bail!("-n must be at least 1");
    }
    if let Some(p) = opts.top_p {
        if !(0.0..=1.0).contains(&p) || p == 0.0 {
            anyhow::bail!("--top-p must be in (0, 1], got {p}");
        }
    }
    let params = GenerateParams {
        max_tokens: opts.max_tokens,
        n: opts.n,
        sampling: SamplingParams {
            temperature: opts.temperature,
            top_k: opts.top_k,
            top_p: opts.top_p,
            seed: opts.seed.unwrap_or_else(random_seed),
        },
        stop: StopAt::Never,
    };
    let result = if let Some(cfg) = &model.backend {
        let req = crate::engine::worker::CompleteRequest {
            doc: String::new(),
            text_before: prompt.to_string(),
            text_start: 0,
            text_after: None,
            policy: crate::engine::tasks::session::WindowPolicy {
                context_tokens: 1 << 20,
                reserve: opts.max_tokens,
                n_positions: usize::MAX,
            },
            params,
        };
        RemoteBackend::new(cfg.clone(), None).complete_blocking(&req, &Cancel::new())?
    } else {
        let lm = model.load_language_model()?;
        let mut ids = vec![lm.bos()];
        ids.extend(lm.tokenizer().encode(prompt)?.ids);
        let mut session = lm.new_session()?;
        lm.complete(&mut session, &ids, &params, &Cancel::new())?
    };
    if opts.json {
        let completions: Vec<_> = result
            .completions
            .iter()
            .map(|c| json!({"text": c.text, "tokens": c.tokens, "logprobs": c.logprobs}))
            .collect();
        writeln!(out, "{}", json!({ "completions": completions }))?;
    } else {
        for (i, c) in result.completions.iter().enumerate() {
            if i > 0 {
                writeln!(out, "---")?;
            }
            writeln!(out, "{}", c.text)?;
        }
    }
    Ok(())
}

fn random_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `quill score`: per-token log-probabilities of `text`, BOS in front.
pub fn score(
    model: &ModelOptions,
    text: &str,
    json_out: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let scored = match &model.backend {
        Some(cfg) => RemoteBackend::new(cfg.clone(), None).score_blocking(text, &Cancel::new())?,
        None => model.load_language_model()?.score(text, &Cancel::new())?,
    };
    if json_out {
        let tokens: Vec<_> = scored
            .tokens
            .iter()
            .map(|t| {
                // A server names tokens by text: their ids are unknown (null).
                let id = (t.id != openai::NO_ID).then_some(t.id);
                json!({"id": id, "text": t.text, "start": t.start, "end": t.end,
                       "logprob": t.logprob})
            })
            .collect();
        let value = json!({
            "tokens": tokens,
            "total_logprob": scored.total_logprob,
            "perplexity": scored.perplexity,
        });
        writeln!(out, "{value}")?;
    } else {
        for t in &scored.tokens {
            writeln!(out, "{:>10.4}  {:?}", t.logprob, t.text)?;
        }
        writeln!(
            out,
            "total {:.4}  perplexity {:.4}  ({} tokens)",
            scored.total_logprob,
            scored.perplexity,
            scored.tokens.len()
        )?;
    }
    Ok(())
}

/// Options of `quill check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub json: bool,
    /// The language id; by default from the file's extension.
    pub language: Option<String>,
    pub proofread: crate::engine::tasks::proofread::ProofreadOptions,
    pub prose_languages: Vec<String>,
    /// The checked file (`None`: stdin); the nearest `.quill/dictionary.txt` above it applies.
    pub file: Option<PathBuf>,
    /// `--dictionary` files, besides the user's and the workspace's.
    pub dictionaries: Vec<PathBuf>,
    /// A word the text uses at least this many times is not flagged (0: off).
    pub ignore_repeated: usize,
}

/// The dictionaries `quill check` applies: the user's, the nearest `.quill/dictionary.txt`
/// above `file` (or the current directory), and the named files. A named file that is missing
/// is an error; other problems are warnings on stderr, and the words read are used.
pub fn check_dictionaries(
    file: Option<&Path>,
    named: &[PathBuf],
) -> anyhow::Result<Vec<crate::diagnostics::dictionary::WordList>> {
    use crate::diagnostics::dictionary;
    let mut out = Vec::new();
    let start = match file {
        Some(f) => f.to_path_buf(),
        None => std::env::current_dir()?.join("-"),
    };
    let found = dictionary::user_dictionary_path()
        .into_iter()
        .chain(dictionary::find_upward(&start));
    for (path, required) in found
        .map(|p| (p, false))
        .chain(named.iter().map(|p| (p.clone(), true)))
    {
        let loaded = dictionary::load(&path, required);
        if let Some(problem) = &loaded.problem {
            if required && !path.exists() {
                anyhow::bail!(
                    "dictionary {}: {problem}; check the --dictionary path",
                    path.display()
                );
            }
            eprintln!(
                "warning: dictionary {}: {problem}; going on with the words that could be read",
                path.display()
            );
        }
        out.push(loaded.words);
    }
    Ok(out)
}

/// `quill check`: prints unlikely words and sentences as `file:line:col: message` lines (or
/// JSON). Returns whether anything was found.
pub fn check(
    model: &ModelOptions,
    name: &str,
    text: &str,
    opts: &CheckOptions,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    use crate::diagnostics::checker::{self, FindingKind};
    use crate::document::{Document, PositionEncoding};
    let language = opts
        .language
        .clone()
        .unwrap_or_else(|| checker::language_for_path(name).to_string());
    let lists = check_dictionaries(opts.file.as_deref(), &opts.dictionaries)?;
    enum Checker {
        Local(Box<LanguageModel>),
        Remote(RemoteBackend),
    }
    let checker_model = match &model.backend {
        Some(cfg) => Checker::Remote(RemoteBackend::new(cfg.clone(), None)),
        None => Checker::Local(Box::new(model.load_language_model()?)),
    };
    let cancel = Cancel::new();
    let mut findings = Vec::new();
    for p in checker::plan(text, &language, &opts.prose_languages) {
        let result = match &checker_model {
            Checker::Local(lm) => lm.proofread(&p.text, &opts.proofread, &cancel)?,
            Checker::Remote(r) => r.proofread_blocking(&p.text, &opts.proofread, &cancel)?,
        };
        findings.extend(checker::findings(&p, &result));
    }
    crate::diagnostics::ignore::Filter {
        lists: lists.iter().collect(),
        ignore_repeated: opts.ignore_repeated,
    }
    .apply(text, &mut findings);
    findings.sort_by_key(|f| (f.start, f.end));
    let doc = Document::new(text, 0, &language);
    let at = |offset: usize| {
        let p = doc.position(offset, PositionEncoding::Utf32);
        (p.line + 1, p.character + 1)
    };
    if opts.json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| {
                let (line, column) = at(f.start);
                let (end_line, end_column) = at(f.end);
                let mut v = json!({
                    "line": line, "column": column, "end_line": end_line, "end_column": end_column,
                    "start": f.start, "end": f.end, "code": f.code(), "message": f.message(),
                });
                if let FindingKind::Word {
                    word,
                    logprob,
                    alternatives,
                } = &f.kind
                {
                    v["word"] = json!(word);
                    v["logprob"] = json!(logprob);
                    v["alternatives"] = alternatives
                        .iter()
                        .map(|(w, lp)| json!({"word": w, "logprob": lp}))
                        .collect();
                }
                v
            })
            .collect();
        writeln!(out, "{}", json!({ "findings": list }))?;
    } else {
        for f in &findings {
            let (line, column) = at(f.start);
            writeln!(
                out,
                "{name}:{line}:{column}: {} [{}]",
                f.message(),
                f.code()
            )?;
        }
    }
    Ok(!findings.is_empty())
}

/// `quill summarize`, `answer`, `translate`: runs a T5 task on `text` and prints the result.
/// Inputs longer than T5's 512 tokens are chunked; progress goes to stderr.
pub fn t5_task(
    model: &ModelOptions,
    task: &crate::engine::tasks::t5::Task,
    text: &str,
    max_tokens: usize,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let device = models::parse_device(&model.device)?;
    let format = models::parse_format(&model.dtype)?;
    let files = model.resolve(&model.t5_model)?;
    let mut t5 = crate::engine::tasks::t5::T5Model::load(&files, &device, format)?;
    let result = t5.run(
        task,
        text,
        max_tokens,
        &Cancel::new(),
        &mut |done, total| {
            if total > 1 {
                eprintln!("quill: {done}/{total} parts done");
            }
        },
    )?;
    writeln!(out, "{result}")?;
    Ok(())
}

/// `quill fetch`: downloads the GPT-2 and T5 models into the hub cache and checks them.
pub fn fetch(model: &ModelOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    for spec in [&model.model, &model.t5_model] {
        let files = model
            .resolve(spec)
            .with_context(|| format!("fetching `{spec}`"))?;
        models::check_weights(&files.weights)?;
        // The weights' directory: a GGUF file's config may be rebuilt elsewhere.
        let dir = files.weights[0]
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        writeln!(out, "{spec}: ready in {dir}")?;
    }
    Ok(())
}

/// `quill quantize`: loads the GPT-2 model with its matrices in `--dtype` and writes it to `dir`
/// as `model.gguf` (llama.cpp's GPT-2 layout) with its `config.json` and `tokenizer.json`. A
/// GGUF source is converted too: its matrices are dequantized, and quantized again where
/// `--dtype` is quantized (a note says when that cannot give back what the source's format
/// dropped); those already in `--dtype` are copied as stored. The format printed is read back
/// from the written file.
pub fn quantize(model: &ModelOptions, dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let device = models::parse_device(&model.device)?;
    let format = models::parse_format(&model.dtype)?;
    let wanted = format_name(format);
    let files = model.resolve(&model.model)?;
    let weights = &files.weights[0];
    let file_name = weights.file_name().map_or_else(
        || weights.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let source = if files.is_gguf() {
        let formats = gguf::MatrixFormats::of_file(weights)
            .with_context(|| format!("reading {}", weights.display()))?;
        eprintln!(
            "quill: loading {} ({file_name}: {formats}) as {wanted}",
            files.name
        );
        let note = formats
            .main()
            .and_then(|from| conversion_note(&file_name, from, format));
        if let Some(note) = note {
            eprintln!("quill: note: {note}");
        }
        Some(formats)
    } else {
        eprintln!("quill: loading {} as {wanted}", files.name);
        None
    };
    let lm = LanguageModel::load_converted(&files, &device, format)?;
    let formats = lm.matrix_formats();
    if let Some(q) = format.quantized() {
        let total: usize = formats.counts().iter().map(|(_, n)| n).sum();
        let (taken, block) = (formats.of(q), q.block_size());
        let c = lm.gpt2().config();
        // The rows of GPT-2's matrices are n_embd wide, the MLP's output projection's n_inner.
        let mut unfit = vec![c.n_embd, c.n_inner.unwrap_or(4 * c.n_embd)];
        unfit.retain(|w| !w.is_multiple_of(block));
        unfit.dedup();
        let widths = unfit
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(" and ");
        if taken == 0 {
            let from = match &source {
                Some(s) => format!("{file_name} ({s})"),
                None => format!("the safetensors checkpoint {}", files.name),
            };
            let instead = if q.block_size() > 32 {
                "--dtype q8_0 (blocks of 32 weights) or f16"
            } else {
                "--dtype f16 or f32"
            };
            anyhow::bail!(
                "cannot write {from} as {wanted}: none of its weight matrices has rows that \
                 are a whole number of {wanted}'s {block}-weight blocks (its rows are {widths} \
                 weights), so the file would hold no {wanted} at all; use {instead} instead"
            );
        }
        if taken < total {
            eprintln!(
                "quill: note: {} of {total} matrices have rows of {widths} weights, no whole \
                 number of {wanted}'s {block}-weight blocks: they are written as {}",
                total - taken,
                formats
                    .counts()
                    .iter()
                    .filter(|(d, _)| *d != q)
                    .map(|(d, _)| gguf::dtype_name(*d))
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
    }
    eprintln!("quill: writing {}", dir.display());
    let target = lm
        .save_gguf_dir(&files, dir)
        .with_context(|| format!("writing the model into {}", dir.display()))?;
    let size = std::fs::metadata(&target)?.len();
    // What the file holds, not what was asked for.
    let written = gguf::MatrixFormats::of_file(&target)
        .with_context(|| format!("reading back {}", target.display()))?;
    writeln!(
        out,
        "wrote {} ({:.1} MB, {written}); load it with --model {}",
        target.display(),
        size as f64 / 1e6,
        dir.display()
    )?;
    Ok(())
}

/// `f32`, `q8_0`, `q4_k`: a weight format as `--dtype` names it.
fn format_name(format: models::WeightFormat) -> &'static str {
    match format {
        models::WeightFormat::Float(d) => d.as_str(),
        models::WeightFormat::Quantized(q) => gguf::dtype_name(q),
    }
}

/// What converting `file`'s matrices from `from` to `to` cannot do, when its origin is lossy:
/// a quantized or half-precision file converted to a wider format keeps the precision it lost.
fn conversion_note(file: &str, from: GgmlDType, to: models::WeightFormat) -> Option<String> {
    let source = gguf::weight_format(from);
    if source == to {
        return None;
    }
    let bits = |f: models::WeightFormat| match f {
        models::WeightFormat::Float(d) => 8.0 * d.size_in_bytes() as f64,
        models::WeightFormat::Quantized(q) => 8.0 * q.type_size() as f64 / q.block_size() as f64,
    };
    let (s, t) = (gguf::dtype_name(from), format_name(to));
    let restores = format!("which does not restore the precision {s} dropped");
    match (source.quantized(), to.quantized()) {
        (Some(_), None) => Some(format!("{file} is {s}: dequantized to {t}, {restores}")),
        (Some(_), Some(_)) if bits(to) > bits(source) => Some(format!(
            "{file} is {s}: re-quantized to {t} from its dequantized values, {restores}"
        )),
        (Some(_), Some(_)) => Some(format!(
            "{file} is {s}: re-quantized to {t} from its dequantized values, so {t}'s rounding \
             comes on top of {s}'s (quantizing the original checkpoint loses less)"
        )),
        (None, None) if bits(to) > bits(source) => {
            Some(format!("{file} is {s}: widened to {t}, {restores}"))
        }
        _ => None,
    }
}

/// Download progress as bars on stderr (indicatif hides them when stderr is no terminal).
#[derive(Default)]
struct ProgressBars {
    bars: Mutex<Vec<(String, indicatif::ProgressBar)>>,
}

impl DownloadProgress for ProgressBars {
    fn update(&self, file: &str, done: u64, total: u64) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if !bars.iter().any(|(f, _)| f == file) {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            ) {
                bar.set_style(style);
            }
            bar.set_message(format!("downloading {file}"));
            bars.push((file.to_string(), bar));
        }
        if let Some((_, bar)) = bars.iter().find(|(f, _)| f == file) {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    fn finish(&self, file: &str) {
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bar)) = bars.iter().find(|(f, _)| f == file) {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::conversion_note;
    use crate::models::parse_format;
    use candle_core::quantized::GgmlDType;

    #[test]
    fn a_conversion_from_a_lossy_format_says_what_it_cannot_restore() {
        let note = |from, to: &str| conversion_note("m.gguf", from, parse_format(to).unwrap());
        assert_eq!(
            note(GgmlDType::Q8_0, "f32").as_deref(),
            Some(
                "m.gguf is q8_0: dequantized to f32, which does not restore the precision q8_0 \
                 dropped"
            )
        );
        assert!(note(GgmlDType::Q4K, "q8_0")
            .is_some_and(|n| n.contains("re-quantized to q8_0") && n.contains("does not restore")));
        assert!(note(GgmlDType::Q8_0, "q4_k")
            .is_some_and(|n| n.contains("re-quantized to q4_k") && n.contains("on top of q8_0's")));
        assert!(note(GgmlDType::F16, "f32").is_some_and(|n| n.contains("widened to f32")));
        // Nothing is lost that was there: the same format, or f32 made smaller.
        for (from, to) in [
            (GgmlDType::Q8_0, "q8_0"),
            (GgmlDType::Q4K, "q4_k_m"),
            (GgmlDType::F32, "q4_k"),
            (GgmlDType::F32, "f16"),
            (GgmlDType::F16, "q8_0"),
        ] {
            assert_eq!(note(from, to), None, "{from:?} to {to}");
        }
    }
}
