//! T5 parity with transformers on tiny random checkpoints of both kinds (v1.0: ReLU, tied
//! embeddings; v1.1: gated GELU, separate lm_head), recorded by `scripts/make_t5_fixtures.py`.

mod support;

use candle_core::{DType, Device};
use quill::engine::tasks::t5::T5Model;
use quill::engine::Cancel;
use quill::models::{self, ModelSource, WeightFormat};
use support::*;

pub const T5_FIXTURES: [&str; 2] = ["t5-tiny", "t5-tiny-gated"];

fn load_t5(name: &str) -> T5Model {
    let files = models::resolve(&ModelSource::Dir(fixture_dir(name)), &Default::default()).unwrap();
    T5Model::load(&files, &Device::Cpu, WeightFormat::Float(DType::F32)).unwrap()
}

#[test]
fn tokens_and_greedy_outputs_match_transformers() {
    for name in T5_FIXTURES {
        let mut t5 = load_t5(name);
        let reference = reference(name);
        let max = reference["max_new_tokens"].as_u64().unwrap() as usize;
        for case in reference["cases"].as_array().unwrap() {
            let input = case["input"].as_str().unwrap();
            let input_ids = t5.input_ids(input).unwrap();
            assert_eq!(
                input_ids,
                ids(&case["input_ids"]),
                "{name} {input:?}: tokens"
            );
            // The encoder's output and the first decoding step's logits.
            let enc: Vec<Vec<f32>> = t5.encode(&input_ids).unwrap().to_vec2().unwrap();
            for (r, row) in case["encoder_last_hidden_first_rows"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                let want = floats(row);
                let d = max_diff(&enc[r][..want.len()], &want);
                assert!(
                    d <= 1e-4,
                    "{name} {input:?}: encoder row {r} differs by {d}"
                );
            }
            // The first decoding step's logits, against the float64 computation: no further
            // from it than twice transformers' own float32 error (the fixtures' large random
            // weights make some inputs sensitive to rounding), plus 1e-4 of the scale.
            let logits = t5.first_step_logits(&input_ids).unwrap();
            let exact = floats(&case["first_step_logits_f64"]);
            let f32_error = case["f32_error"].as_f64().unwrap() as f32;
            let scale = case["logits_scale"].as_f64().unwrap() as f32;
            let d = max_diff(&logits, &exact);
            let tol = 2.0 * f32_error + 1e-4 * scale.max(1.0);
            assert!(d <= tol, "{name} {input:?}: logits differ from float64 by {d} (transformers f32: {f32_error})");
            let want = ids(&case["greedy_ids"]);
            let scale = case["logits_scale"].as_f64().unwrap() as f32;
            let safe = safe_greedy_steps(&floats(&case["greedy_margins"]), scale);
            let out = t5.generate_ids(&input_ids, max, &Cancel::new()).unwrap();
            let n = safe.min(want.len());
            assert_eq!(
                out.ids[..n.min(out.ids.len())],
                want[..n.min(out.ids.len())],
                "{name} {input:?}"
            );
            if safe >= want.len() {
                assert_eq!(out.ids, want, "{name} {input:?}: the whole output");
                let text = case["greedy_text"].as_str().unwrap();
                assert_eq!(out.text, text.trim(), "{name} {input:?}: text");
            }
        }
    }
}

fn case<'a>(reference: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["input"].as_str().unwrap().starts_with(prefix))
        .unwrap()
}

/// The text after the task prefix of a reference input.
fn body(input: &str) -> &str {
    match input.find(" context: ") {
        Some(i) => &input[i + " context: ".len()..],
        None => input.split_once(": ").unwrap().1,
    }
}

fn quill(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

#[test]
fn the_cli_summarizes_answers_and_translates_like_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    for name in T5_FIXTURES {
        let reference = reference(name);
        let model = fixture_dir(name).display().to_string();
        let max = reference["max_new_tokens"].to_string();
        let run = |args: &[&str], c: &serde_json::Value| {
            let input = c["input"].as_str().unwrap();
            let file = tmp.path().join("input.txt");
            std::fs::write(&file, body(input)).unwrap();
            let mut all = args.to_vec();
            all.extend_from_slice(&["--t5-model", model.as_str(), "--max-tokens", max.as_str()]);
            all.push(file.to_str().unwrap());
            let out = quill(&all);
            assert!(
                out.status.success(),
                "{name} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                got.trim_end_matches('\n'),
                c["greedy_text"].as_str().unwrap().trim(),
                "{name} {args:?}"
            );
        };
        run(&["summarize"], case(&reference, "summarize: The harbour"));
        run(
            &["answer", "--question", "Where did she go?"],
            case(&reference, "question:"),
        );
        run(
            &["translate", "--to", "German"],
            case(&reference, "translate English to German"),
        );
        run(
            &["translate", "--to", "french"],
            case(&reference, "translate English to French"),
        );
        run(
            &["translate", "--to", "Romanian"],
            case(&reference, "translate English to Romanian"),
        );
    }
}

#[test]
fn the_cli_explains_bad_t5_input() {
    let model = fixture_dir("t5-tiny").display().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.txt");
    std::fs::write(&file, "The house is wonderful.").unwrap();
    let f = file.to_str().unwrap();
    let err = |out: std::process::Output| {
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let e = err(quill(&[
        "translate",
        "--t5-model",
        &model,
        "--to",
        "Spanish",
        f,
    ]));
    assert!(e.contains("Spanish") && e.contains("German"), "{e}");
    std::fs::write(&file, "  \n ").unwrap();
    let e = err(quill(&["summarize", "--t5-model", &model, f]));
    assert!(e.contains("no text"), "{e}");
    let e = err(quill(&["summarize", "--t5-model", "/nonexistent/t5", f]));
    assert!(
        e.contains("/nonexistent/t5") && e.contains("does not exist"),
        "{e}"
    );
    // A GPT-2 checkpoint is no T5.
    let gpt2 = fixture_dir("gpt2-tiny").display().to_string();
    std::fs::write(&file, "Hello there.").unwrap();
    let e = err(quill(&["summarize", "--t5-model", &gpt2, f]));
    assert!(e.contains("gpt2") && e.contains("T5"), "{e}");
}

#[test]
fn long_inputs_are_chunked_and_summaries_summarized_again() {
    let mut t5 = load_t5("t5-tiny");
    let reference = reference("t5-tiny");
    let paragraph = body(
        case(&reference, "summarize: The harbour")["input"]
            .as_str()
            .unwrap(),
    )
    .to_string();
    let text = vec![paragraph.as_str(); 30].join("\n\n");
    assert!(t5.count_tokens(&text).unwrap() > 2 * quill::engine::tasks::t5::MAX_INPUT_TOKENS);
    let mut steps = Vec::new();
    let out = t5
        .run(
            &quill::engine::tasks::t5::Task::Summarize,
            &text,
            20,
            &Cancel::new(),
            &mut |d, t| steps.push((d, t)),
        )
        .unwrap();
    let total = steps.last().unwrap().1;
    assert!(total >= 4, "several chunks and a final pass: {steps:?}");
    assert_eq!(steps.last().unwrap().0, total, "progress reaches the end");
    // Each chunk of whole paragraphs summarizes to what the paragraph-level run gives, and
    // the final pass summarizes those summaries: the result is a T5 output, not a join.
    assert!(!out.is_empty());
    let single = t5
        .run(
            &quill::engine::tasks::t5::Task::Summarize,
            &paragraph,
            20,
            &Cancel::new(),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(
        single,
        case(&reference, "summarize: The harbour")["greedy_text"]
            .as_str()
            .unwrap()
            .trim()
    );
}

mod over_lsp {
    use super::*;
    use serde_json::json;
    use support::lsp::LspClient;

    const URI: &str = "file:///tmp/quill-test/story.md";

    fn lines_range(text: &str, part: &str) -> serde_json::Value {
        // `part` lies on one line of `text` (ASCII before it): a UTF-16 range.
        let start = text.find(part).unwrap();
        let line = text[..start].matches('\n').count();
        let col = start - text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        json!({"start": {"line": line, "character": col},
               "end": {"line": line, "character": col + part.encode_utf16().count()}})
    }

    #[test]
    fn commands_code_actions_and_edits() {
        let reference = reference("t5-tiny");
        let summary_case = case(&reference, "summarize: The harbour");
        let german_case = case(&reference, "translate English to German");
        let question_case = case(&reference, "question:");
        let para = body(summary_case["input"].as_str().unwrap());
        let german = body(german_case["input"].as_str().unwrap());
        let text = format!("Intro.\n\n{para}\n\n{german}\n");
        let mut client = LspClient::start(&[]);
        client.initialize(
            json!({"window": {"workDoneProgress": true}}),
            json!({"model": fixture_dir("gpt2-tiny").display().to_string(),
                   "t5Model": fixture_dir("t5-tiny").display().to_string(),
                   "diagnostics": {"enabled": false},
                   "t5": {"maxTokens": reference["max_new_tokens"]}}),
        );
        client.open(URI, "markdown", &text);
        let range = lines_range(&text, para);

        // Code actions on the selection offer the commands.
        let r = client.request(
            "textDocument/codeAction",
            json!({"textDocument": {"uri": URI}, "range": range, "context": {"diagnostics": []}}),
        );
        let titles: Vec<&str> = r["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["title"].as_str().unwrap())
            .collect();
        for t in [
            "Summarize selection",
            "Insert summary below selection",
            "Translate selection to German",
            "Replace selection with its French translation",
        ] {
            assert!(titles.contains(&t), "{t} missing from {titles:?}");
        }
        let summarize = r["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"] == "Summarize selection")
            .unwrap();

        // Run it as the client would.
        let r = client.request("workspace/executeCommand", summarize["command"].clone());
        assert_eq!(
            r["result"]["summary"],
            summary_case["greedy_text"].as_str().unwrap().trim(),
            "{r}"
        );
        let end = client.wait_notification("$/progress", |p| {
            p["token"]
                .as_str()
                .is_some_and(|t| t.starts_with("quill/t5/"))
                && p["value"]["kind"] == "end"
        });
        assert!(end["params"]["token"].is_string());

        // The answer from the whole document... of the question's own context.
        let q_ctx = body(question_case["input"].as_str().unwrap());
        client.open("file:///tmp/quill-test/ctx.txt", "plaintext", q_ctx);
        let r = client.request(
            "workspace/executeCommand",
            json!({"command": "quill.answer",
                   "arguments": [{"uri": "file:///tmp/quill-test/ctx.txt", "question": "Where did she go?"}]}),
        );
        assert_eq!(
            r["result"]["answer"],
            question_case["greedy_text"].as_str().unwrap().trim(),
            "{r}"
        );

        // Replace a selection with its translation: the server asks the client to apply it.
        let g_range = lines_range(&text, german);
        let r = client.request(
            "workspace/executeCommand",
            json!({"command": "quill.translate.replace", "arguments": [{"uri": URI, "range": g_range, "to": "German"}]}),
        );
        let want = german_case["greedy_text"].as_str().unwrap().trim();
        assert_eq!(r["result"]["translation"], want, "{r}");
        let apply = client
            .server_requests
            .iter()
            .find(|q| q["method"] == "workspace/applyEdit")
            .unwrap();
        let edit = &apply["params"]["edit"]["changes"][URI][0];
        assert_eq!(edit["range"], g_range);
        assert_eq!(edit["newText"], want);

        // Insert a summary below the selection.
        let r = client.request(
            "workspace/executeCommand",
            json!({"command": "quill.summarize.insert", "arguments": [{"uri": URI, "range": range}]}),
        );
        assert!(r.get("error").is_none(), "{r}");
        let apply = client
            .server_requests
            .iter()
            .rev()
            .find(|q| q["method"] == "workspace/applyEdit")
            .unwrap();
        let edit = &apply["params"]["edit"]["changes"][URI][0];
        assert_eq!(edit["range"]["start"], range["end"]);
        assert_eq!(edit["range"]["end"], range["end"]);
        assert_eq!(
            edit["newText"],
            format!(
                "\n\n{}",
                summary_case["greedy_text"].as_str().unwrap().trim()
            )
        );

        // Bad input gets clear errors, and the server goes on.
        let bad = |client: &mut LspClient, args: serde_json::Value, command: &str| {
            let r = client.request(
                "workspace/executeCommand",
                json!({"command": command, "arguments": [args]}),
            );
            r["error"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_string()
        };
        let e = bad(
            &mut client,
            json!({"uri": "file:///nope.md"}),
            "quill.summarize",
        );
        assert!(e.contains("unknown document"), "{e}");
        let empty =
            json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}});
        let e = bad(
            &mut client,
            json!({"uri": URI, "range": empty}),
            "quill.summarize",
        );
        assert!(e.contains("empty"), "{e}");
        let e = bad(
            &mut client,
            json!({"uri": URI, "to": "Klingon"}),
            "quill.translate",
        );
        assert!(e.contains("Klingon"), "{e}");
        let e = bad(&mut client, json!({"uri": URI}), "quill.answer");
        assert!(e.contains("question"), "{e}");
        let r = client.request("workspace/executeCommand", summarize["command"].clone());
        assert!(r["result"]["summary"].is_string());
    }

    #[test]
    fn a_broken_t5_model_is_an_error_and_completions_go_on() {
        let mut client = LspClient::start(&[]);
        client.initialize(
            json!({}),
            json!({"model": fixture_dir("gpt2-tiny").display().to_string(),
                   "t5Model": "/nonexistent/t5-model",
                   "completion": {"temperature": 0, "numSuggestions": 1}}),
        );
        client.open(URI, "python", "The cat sat on the mat.");
        let r = client.request(
            "workspace/executeCommand",
            json!({"command": "quill.summarize", "arguments": [{"uri": URI}]}),
        );
        let e = r["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        assert!(e.contains("/nonexistent/t5-model"), "{e}");
        let r = client.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": URI}, "position": {"line": 0, "character": 23}}),
        );
        assert!(r["result"]["items"].is_array(), "{r}");
    }
}

#[test]
fn reduced_precision_t5_stays_close_to_f32() {
    // T5 takes GPT-2's weight formats: on the CPU its linear layers and head are held in
    // f16, bf16 or q8_0 and computed in f32. The first decoding step's logits move by the
    // rounding of the weights (relative to the logits' scale), not more.
    for name in T5_FIXTURES {
        let files =
            models::resolve(&ModelSource::Dir(fixture_dir(name)), &Default::default()).unwrap();
        let f32 = load_t5(name);
        let reference = reference(name);
        let case = &reference["cases"][0];
        let input_ids = f32.input_ids(case["input"].as_str().unwrap()).unwrap();
        let exact = f32.first_step_logits(&input_ids).unwrap();
        let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        // The fixtures' large random weights amplify rounding (measured: f16 0.8%, bf16 26%,
        // q8_0 9% of the logits' scale at worst); a conversion gone wrong moves them by the
        // whole scale.
        for (dtype, tol) in [("f16", 0.02), ("bf16", 0.4), ("q8_0", 0.15)] {
            let format = models::parse_format(dtype).unwrap();
            let t5 = T5Model::load(&files, &Device::Cpu, format).unwrap();
            let logits = t5.first_step_logits(&input_ids).unwrap();
            let d = max_diff(&logits, &exact);
            eprintln!("{name} {dtype}: first-step logits within {d} (scale {scale})");
            assert!(d > 0.0, "{name} {dtype}: the weights were not converted");
            assert!(
                d <= tol * scale,
                "{name} {dtype}: logits differ by {d} (scale {scale})"
            );
        }
    }
}
