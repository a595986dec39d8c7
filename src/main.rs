//! The `quill` command line: parses arguments and calls the library.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use quill::cli::{self, CompleteOptions, ModelOptions};

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
    /// GPT-2-architecture model: a hub id or a local directory in the hub layout.
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
    /// f32, f16 or bf16.
    #[arg(long, global = true, default_value = "f32")]
    dtype: String,
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
    /// Download the models into the hub cache (HF_HOME), so later runs work offline.
    Fetch,
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

fn run(cli: Cli) -> anyhow::Result<()> {
    let ModelArgs {
        model,
        t5_model,
        revision,
        offline,
        device,
        dtype,
    } = cli.model;
    let model = ModelOptions {
        model,
        t5_model,
        revision,
        offline,
        device,
        dtype,
    };
    let mut out = std::io::stdout().lock();
    match cli.command {
        None | Some(Command::Serve { .. }) => {
            drop(out);
            let code = cli::serve(&model)?;
            std::process::exit(code);
        }
        Some(Command::Complete {
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            n,
            seed,
            json,
        }) => {
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
            cli::complete(&model, &prompt, &opts, &mut out)
        }
        Some(Command::Score { text, json }) => {
            let text = read_arg(&text)?;
            cli::score(&model, &text, json, &mut out)
        }
        Some(Command::Fetch) => cli::fetch(&model, &mut out),
    }
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUILL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
