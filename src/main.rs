//! The `quill` command line: parses arguments and calls the library.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod allocator;

#[global_allocator]
static ALLOCATOR: allocator::HugePages = allocator::HugePages;

use quill::cli::{self, CompleteOptions, ModelOptions};
use quill::engine::tasks::t5::{Language, Task};

#[derive(Parser)]
#[command(
    name = "quill",
    version,
    about = "Language models (GPT-2, T5) in every editor: a language server and a command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// GPT-2-architecture model: a hub id, a local directory in the hub layout, or a .gguf file.
    #[arg(long, global = true, default_value = "openai-community/gpt2")]
    model: String,
    /// T5 model: a hub id or a local directory.
    #[arg(long = "t5-model", global = true, default_value = "google-t5/t5-small")]
    t5_model: String,
    /// Hub revision (branch, tag or commit) of the models.
    #[arg(long, global = true)]
    revision: Option<String>,
    /// Use only the local hub cache (also HF_HUB_OFFLINE=1).
    #[arg(long, global = true)]
    offline: bool,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// Weights: f32, f16, bf16, q8_0 or q4_k (activations stay f32 on the CPU).
    #[arg(long, global = true, default_value = "f32")]
    dtype: String,
    /// Compute threads; 0: every core for commands, every core but one for `serve` (the
    /// editor keeps one).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// An OpenAI-compatible server (its API base, e.g. http://127.0.0.1:8080/v1) that
    /// completes and scores instead of the local model (complete, score, check, serve).
    #[arg(long = "backend-url", global = true, requires = "backend_model")]
    backend_url: Option<String>,
    /// The model name the --backend-url server serves.
    #[arg(long = "backend-model", global = true, requires = "backend_url")]
    backend_model: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Speak LSP over stdio (the default when no subcommand is given).
    Serve {
        /// Use stdin/stdout (the only transport; accepted for editors that pass it).
        #[arg(long)]
        stdio: bool,
    },
    /// Print the continuation of a prompt (not the prompt itself).
    Complete {
        /// The prompt, or `-` to read it from stdin.
        prompt: String,
        /// Tokens to generate at most.
        #[arg(long, default_value_t = 16)]
        max_tokens: usize,
        /// Sampling temperature; 0 is greedy and deterministic.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Sample among the K most likely tokens only.
        #[arg(long)]
        top_k: Option<usize>,
        /// Sample among the most likely tokens whose probability reaches P.
        #[arg(long)]
        top_p: Option<f32>,
        /// Number of continuations, decoded as one batch (duplicates are removed).
        #[arg(short, default_value_t = 1)]
        n: usize,
        /// Seed of the sampler: the same seed gives the same continuations.
        #[arg(long)]
        seed: Option<u64>,
        /// Print `{"completions":[{"text","tokens","logprobs"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Print each token's log-probability under the model, BOS in front.
    Score {
        /// The text, or `-` to read it from stdin.
        text: String,
        /// Print `{"tokens":[{"id","text","start","end","logprob"}],"total_logprob","perplexity"}`.
        #[arg(long)]
        json: bool,
    },
    /// Proofread a file: unlikely words and sentences as `file:line:col: message` lines.
    /// Exits with 1 when there are findings (for scripts and git hooks).
    ///
    /// Words in a dictionary are never flagged: the user's `<config dir>/quill/dictionary.txt`
    /// (`$XDG_CONFIG_HOME` or `~/.config` on Linux), the nearest `.quill/dictionary.txt` in the
    /// file's directory or above it (the current directory's for stdin), and each
    /// `--dictionary FILE`. One word a line, `#` comment lines; a lower-case entry also matches
    /// the word capitalized. Ignore comments in the file, in any comment syntax, silence lines:
    /// `quill: ignore-next-line`, `quill: ignore-line`, and `quill: off` ... `quill: on`.
    Check {
        /// The file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
        /// The language id (markdown, plaintext, rust, …); by default from the extension.
        #[arg(long)]
        language: Option<String>,
        /// Flag tokens below this log-probability...
        #[arg(long, default_value_t = -12.5, allow_hyphen_values = true)]
        min_token_logprob: f32,
        /// ...when the model's best guess is at least this much more likely (nats).
        #[arg(long, default_value_t = 0.0)]
        min_gap: f32,
        /// Hint at sentences above this perplexity.
        #[arg(long, default_value_t = 750.0)]
        max_sentence_perplexity: f64,
        /// Print `{"findings":[{"line","column","code","message","word","alternatives",…}]}`.
        #[arg(long)]
        json: bool,
        /// A dictionary file of words never flagged (repeatable), besides the user's and the
        /// nearest `.quill/dictionary.txt`.
        #[arg(long = "dictionary", value_name = "FILE")]
        dictionaries: Vec<std::path::PathBuf>,
        /// A word the file uses at least N times is not flagged (0: off).
        #[arg(long, value_name = "N", default_value_t = 3)]
        ignore_repeated: usize,
    },
    /// Summarize a text with T5.
    Summarize {
        /// The file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
        /// Tokens to generate at most.
        #[arg(long, default_value_t = 96)]
        max_tokens: usize,
    },
    /// Answer a question about a text with T5 (reading comprehension).
    Answer {
        /// The question.
        #[arg(long)]
        question: String,
        /// The file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
        #[arg(long, default_value_t = 96)]
        max_tokens: usize,
    },
    /// Translate English text to German, French or Romanian with T5.
    Translate {
        /// German, French or Romanian.
        #[arg(long)]
        to: String,
        /// The file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
        #[arg(long, default_value_t = 96)]
        max_tokens: usize,
    },
    /// Download the models into the hub cache (HF_HOME), so later runs work offline.
    Fetch,
    /// Convert the GPT-2 model (a GGUF one too) to --dtype once and write it as a model
    /// directory (model.gguf, config.json, tokenizer.json) that later runs load as is:
    /// `--model OUT`.
    Quantize {
        /// The directory to write (created if needed).
        out: std::path::PathBuf,
    },
}

fn read_arg(value: &str) -> anyhow::Result<String> {
    if value == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        Ok(value.to_string())
    }
}

/// How a successful run ended.
enum Outcome {
    Done,
    /// `check` found something: exit code 1.
    Findings,
}

fn read_file_arg(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        read_arg("-")
    } else {
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read `{file}`: {e}"))
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let ModelArgs {
        model,
        t5_model,
        revision,
        offline,
        device,
        dtype,
        threads,
        backend_url,
        backend_model,
    } = cli.model;
    let backend = match (backend_url, backend_model) {
        (Some(url), Some(name)) => {
            let cfg = quill::engine::backend::RemoteConfig::new(&url, &name);
            cfg.validate().map_err(|e| anyhow::anyhow!("--{e}"))?;
            Some(cfg)
        }
        _ => None,
    };
    let model = ModelOptions {
        model,
        t5_model,
        revision,
        offline,
        device,
        dtype,
        threads,
        backend,
    };
    let command = match cli.command {
        None | Some(Command::Serve { .. }) => {
            // The server sizes its own pool (a setting) and runs its jobs inside it.
            let code = cli::serve(&model)?;
            std::process::exit(code);
        }
        Some(command) => command,
    };
    // A command runs on one of the pool's threads, as the server's jobs do: the forward pass
    // then takes part in its own parallel products instead of handing each of them to the
    // pool and sleeping until they end (a wake-up per product, some 60 a token).
    let mut pool = rayon::ThreadPoolBuilder::new();
    if threads > 0 {
        pool = pool.num_threads(threads);
    }
    pool.build()?.install(|| run_command(command, &model))
}

fn run_command(command: Command, model: &ModelOptions) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Serve { .. } => unreachable!("run serves before this"),
        Command::Complete {
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            n,
            seed,
            json,
        } => {
            let prompt = read_arg(&prompt)?;
            let opts = CompleteOptions {
                max_tokens,
                temperature,
                top_k,
                top_p,
                n,
                seed,
                json,
            };
            cli::complete(model, &prompt, &opts, &mut out)?;
            Ok(Outcome::Done)
        }
        Command::Score { text, json } => {
            let text = read_arg(&text)?;
            cli::score(model, &text, json, &mut out)?;
            Ok(Outcome::Done)
        }
        Command::Check {
            file,
            language,
            min_token_logprob,
            min_gap,
            max_sentence_perplexity,
            json,
            dictionaries,
            ignore_repeated,
        } => {
            let text = read_file_arg(&file)?;
            let opts = cli::CheckOptions {
                json,
                language,
                proofread: quill::engine::tasks::proofread::ProofreadOptions {
                    min_token_logprob,
                    min_gap,
                    max_sentence_perplexity,
                    ..Default::default()
                },
                prose_languages: quill::lsp::config::DiagnosticsSettings::default().languages,
                file: (file != "-").then(|| std::path::PathBuf::from(&file)),
                dictionaries,
                ignore_repeated,
            };
            let name = if file == "-" {
                "<stdin>"
            } else {
                file.as_str()
            };
            match cli::check(model, name, &text, &opts, &mut out)? {
                true => Ok(Outcome::Findings),
                false => Ok(Outcome::Done),
            }
        }
        Command::Summarize { file, max_tokens } => {
            let text = read_file_arg(&file)?;
            cli::t5_task(model, &Task::Summarize, &text, max_tokens, &mut out)?;
            Ok(Outcome::Done)
        }
        Command::Answer {
            question,
            file,
            max_tokens,
        } => {
            let text = read_file_arg(&file)?;
            cli::t5_task(
                model,
                &Task::Answer { question },
                &text,
                max_tokens,
                &mut out,
            )?;
            Ok(Outcome::Done)
        }
        Command::Translate {
            to,
            file,
            max_tokens,
        } => {
            let to = Language::parse(&to)?;
            let text = read_file_arg(&file)?;
            cli::t5_task(model, &Task::Translate { to }, &text, max_tokens, &mut out)?;
            Ok(Outcome::Done)
        }
        Command::Fetch => {
            cli::fetch(model, &mut out)?;
            Ok(Outcome::Done)
        }
        Command::Quantize { out: dir } => {
            cli::quantize(model, &dir, &mut out)?;
            Ok(Outcome::Done)
        }
    }
}

fn main() -> ExitCode {
    allocator::keep_freed_buffers();
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUILL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .finish()
        // `QUILL_LOG=quill::keystroke=debug`: where a keystroke's time goes (see span_times).
        .with(quill::span_times::SpanTimes)
        .init();
    let cli = Cli::parse();
    // QUILL_CPU: refused here, with its reason, rather than at the first product.
    match quill::engine::cpu::isa::from_env() {
        Ok(isa) => tracing::debug!("CPU kernels: {isa}"),
        Err(reason) => {
            eprintln!("error: {reason}");
            return ExitCode::FAILURE;
        }
    }
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
