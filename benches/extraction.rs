//! Prose extraction benchmark: which text of a document is scored, alone.
//!
//! - a 1 MB markdown document and a 10,000-line Rust file extracted whole (pulldown-cmark,
//!   tree-sitter), and that time's share of a diagnostics pass over the same paragraphs: the
//!   pass proofreads them with a random model of GPT-2 124M's shapes (the engine's `proofread`
//!   with the server's default options; its time per token measured on a sample and
//!   multiplied out). Two shares: against proofreading the whole document, and against one of
//!   the server's passes, which proofreads at most `PARAGRAPHS_PER_PASS` paragraphs not in
//!   its cache but extracts the whole document every time;
//! - one keystroke in the 10,000-line file through the kept tree (`DocumentProse`: edit,
//!   reparse with the old tree, re-extract what changed) against extracting it whole.
//!
//! `cargo bench --bench extraction` (`-- --json` for one JSON line; `-- --no-score` skips the
//! model).

mod common;

use std::time::Instant;

use candle_core::{DType, Device};
use quill::diagnostics::prose::{self, DocumentProse, TextEdit};
use quill::engine::LanguageModel;
use quill::lsp::config::DiagnosticsSettings;
use quill::lsp::PARAGRAPHS_PER_PASS;
use quill::models::{self, ModelSource};
use serde_json::json;

fn markdown(bytes: usize) -> String {
    let mut out = String::from("---\ntitle: Bench\n---\n# Notes\n\n");
    let mut k = 0;
    while out.len() < bytes {
        k += 1;
        out.push_str(&format!(
            "Paragraph {k} talks about the `river` and [a link](https://example.com/{k}) with \
             *emphasis*, **strong** text, an entity &amp; some $x^2$ math.\nIt wraps onto a \
             second line here.\n\n- item one of {k}\n- [ ] a task\n\n| a | b |\n|---|---|\n| \
             cell {k} | more |\n\n```rust\nfn main() {{}}\n```\n\n"
        ));
    }
    out
}

fn rust_source(lines: usize) -> String {
    let mut s = String::new();
    for k in 0..lines / 5 {
        s.push_str(&format!(
            "/// Returns the value of item {k}, as the reader expects.\n/// See [`item_{k}`].\nfn item_{k}(value: u32) -> u32 {{\n    value + {k} // adds the offset\n}}\n"
        ));
    }
    s
}

fn point(text: &str, byte: usize) -> (usize, usize) {
    let before = &text[..byte];
    let row = before.matches('\n').count();
    (row, byte - before.rfind('\n').map_or(0, |p| p + 1))
}

/// The fastest of `n` runs, in ms.
fn best<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        out = Some(r);
    }
    (best, out.unwrap())
}

/// Proofreading time per token (ms), measured on up to `sample` paragraphs, and the tokens
/// of each paragraph.
fn proofreading(
    lm: &LanguageModel,
    paragraphs: &[prose::Paragraph],
    sample: usize,
) -> (f64, Vec<usize>) {
    let tokens: Vec<usize> = paragraphs
        .iter()
        .map(|p| lm.tokenizer().encode(p.text.as_str()).unwrap().ids.len() + 1)
        .collect();
    let options = DiagnosticsSettings::default().proofread_options();
    let cancel = quill::engine::Cancel::new();
    let t = Instant::now();
    for p in paragraphs.iter().take(sample) {
        lm.proofread(&p.text, &options, &cancel).unwrap();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let sampled: usize = tokens.iter().take(sample).sum();
    (ms / sampled as f64, tokens)
}

/// Extraction's share of a pass: (of proofreading every paragraph, of one server pass).
fn shares(extract_ms: f64, per_token: f64, tokens: &[usize]) -> (f64, f64) {
    let all: usize = tokens.iter().sum();
    let pass: usize = tokens.iter().take(PARAGRAPHS_PER_PASS).sum();
    let share = |t: usize| extract_ms / (extract_ms + per_token * t as f64);
    (share(all), share(pass))
}

/// The median time (ms) of a one-letter keystroke in a doc comment of `src`, through the
/// kept tree; each re-extracts exactly one comment (asserted).
fn keystroke_ms(src: &str, langs: &[String]) -> f64 {
    let at = src.match_indices("the reader").nth(1_000).unwrap().0 + 4;
    let mut dp = DocumentProse::new("rust", langs);
    dp.extract(src, None);
    let mut text = src.to_string();
    let mut times = Vec::new();
    for k in 0..20 {
        let pos = at + k;
        let next = format!("{}x{}", &text[..pos], &text[pos..]);
        let edit = TextEdit {
            start: pos,
            old_end: pos,
            new_end: pos + 1,
            start_point: point(&text, pos),
            old_end_point: point(&text, pos),
            new_end_point: point(&next, pos + 1),
        };
        let t = Instant::now();
        dp.extract(&next, Some(&[edit]));
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(dp.last_extracted, 1);
        text = next;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// Extraction's shares of proofreading, for the markdown and the source paragraphs.
type Shares = Option<((f64, f64), (f64, f64))>;

fn measure_shares(md: (f64, &[prose::Paragraph]), src: (f64, &[prose::Paragraph])) -> Shares {
    let dir = std::env::temp_dir().join(format!("quill-bench-extract-{}", std::process::id()));
    common::write_checkpoint(&dir);
    let files = models::resolve(&ModelSource::Dir(dir.clone()), &Default::default()).unwrap();
    let lm = LanguageModel::load(&files, &Device::Cpu, DType::F32).unwrap();
    let (md_per_token, md_tokens) = proofreading(&lm, md.1, 12);
    let (src_per_token, src_tokens) = proofreading(&lm, src.1, 12);
    let _ = std::fs::remove_dir_all(&dir);
    Some((
        shares(md.0, md_per_token, &md_tokens),
        shares(src.0, src_per_token, &src_tokens),
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().any(|a| a == "--json");
    let score = !args.iter().any(|a| a == "--no-score");
    let langs = DiagnosticsSettings::default().languages;

    let md = markdown(1 << 20);
    let (md_ms, md_ps) = best(5, || prose::paragraphs(&md, "markdown", &langs));
    let src = rust_source(10_000);
    let (src_ms, src_ps) = best(5, || prose::paragraphs(&src, "rust", &langs));
    let key_ms = keystroke_ms(&src, &langs);
    let shares = if score {
        measure_shares((md_ms, &md_ps), (src_ms, &src_ps))
    } else {
        None
    };
    let (md_share, src_share) = (shares.map(|s| s.0), shares.map(|s| s.1));
    if json_out {
        println!(
            "{}",
            json!({"markdown_bytes": md.len(), "markdown_ms": md_ms,
                   "markdown_share_of_document": md_share.map(|s| s.0),
                   "markdown_share_of_server_pass": md_share.map(|s| s.1),
                   "source_lines": src.lines().count(), "source_ms": src_ms,
                   "source_share_of_document": src_share.map(|s| s.0),
                   "source_share_of_server_pass": src_share.map(|s| s.1),
                   "keystroke_ms": key_ms, "keystroke_vs_full": key_ms / src_ms})
        );
        return;
    }
    let share = |s: Option<(f64, f64)>| {
        s.map_or("-".to_string(), |(d, p)| {
            format!(
                "{:.3}% of proofreading them all, {:.1}% of a server pass",
                d * 100.0,
                p * 100.0
            )
        })
    };
    println!(
        "markdown {:>7} bytes  extract {md_ms:>8.2} ms  ({} paragraphs; {})",
        md.len(),
        md_ps.len(),
        share(md_share)
    );
    println!(
        "rust     {:>7} lines  extract {src_ms:>8.2} ms  ({} paragraphs; {})",
        src.lines().count(),
        src_ps.len(),
        share(src_share)
    );
    println!(
        "keystroke (kept tree)  extract {key_ms:>8.3} ms  ({:.4} of a whole extraction)",
        key_ms / src_ms
    );
}
