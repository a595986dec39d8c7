//! llama.cpp's own fill-in-the-middle endpoint, `POST {server root}/infill` (`fim: "infill"`):
//! the text before and after the cursor go as `input_prefix` and `input_suffix`, and the server
//! puts them between the model's FIM tokens (`<FIM_PRE>prefix<FIM_SUF>suffix<FIM_MID>`), which
//! llama-server does not do for `suffix` on `/v1/completions`. The endpoint takes the options
//! of llama.cpp's `/completion` and answers as it does (`{"content": …, "stop": true, …}`):
//! one completion per request, so a keystroke gets one suggestion, never `n` requests.
//! Field names as in llama.cpp's `tools/server/README.md` (`/infill` and `/completion`).

use serde_json::{json, Map, Value};

use super::openai::Choice;
use super::RemoteConfig;
use crate::engine::GenerateParams;

/// The body of an infill request: `prefix` is the window of text before the cursor (no BOS
/// text: the server adds the model's own tokens), `suffix` the text after it.
pub fn infill_request(
    cfg: &RemoteConfig,
    prefix: &str,
    suffix: &str,
    params: &GenerateParams,
) -> Value {
    let mut body = Map::new();
    // llama-server ignores it with one model; in its router mode it picks the model.
    body.insert("model".into(), json!(cfg.model));
    body.insert("input_prefix".into(), json!(prefix));
    body.insert("input_suffix".into(), json!(suffix));
    // Text after the FIM middle token: none, the suggestion starts at the cursor.
    body.insert("prompt".into(), json!(""));
    body.insert("n_predict".into(), json!(params.max_tokens));
    super::openai::insert_sampling(&mut body, params);
    Value::Object(body)
}

/// Reads an infill answer: `{"content": …}`, or a list of them (what llama.cpp answers for
/// several completions), in order. Log-probabilities are not asked for.
pub fn parse_infill(answer: &Value) -> Result<Vec<Choice>, String> {
    if let Some(e) = answer.get("error") {
        return Err(format!(
            "an error answer: {}",
            super::openai::error_message(&json!({ "error": e }).to_string())
        ));
    }
    let one = |v: &Value| -> Result<Choice, String> {
        let text = v
            .get("content")
            .and_then(Value::as_str)
            .ok_or("an infill answer without \"content\"")?;
        Ok(Choice {
            text: text.to_string(),
            logprobs: Vec::new(),
        })
    };
    match answer {
        Value::Array(list) => list.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backend::openai::finish_completions;
    use crate::engine::tasks::sampling::{SamplingParams, StopAt};

    fn params(temperature: f32, stop: StopAt) -> GenerateParams {
        GenerateParams {
            max_tokens: 12,
            n: 3,
            sampling: SamplingParams {
                temperature,
                top_k: Some(40),
                top_p: Some(0.9),
                seed: 7,
            },
            stop,
        }
    }

    #[test]
    fn the_request_carries_prefix_suffix_and_the_completion_options() {
        let cfg = RemoteConfig::new("http://h/v1", "coder");
        let body = infill_request(
            &cfg,
            "fn add(a: i32, b: i32) -> i32 {\n    ",
            "\n}\n",
            &params(0.0, StopAt::Newline),
        );
        assert_eq!(
            body["input_prefix"],
            "fn add(a: i32, b: i32) -> i32 {\n    "
        );
        assert_eq!(body["input_suffix"], "\n}\n");
        assert_eq!(body["prompt"], "");
        assert_eq!(body["n_predict"], 12);
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["cache_prompt"], true);
        assert_eq!(body["stream"], false);
        assert_eq!(body["seed"], 7);
        assert_eq!(body["model"], "coder");
        assert_eq!(body["stop"], json!(["\n\n\n"]));
        // Greedy: no sampling settings; none of the OpenAI names.
        for key in [
            "top_p",
            "top_k",
            "suffix",
            "max_tokens",
            "n",
            "logprobs",
            "input_extra",
        ] {
            assert!(body.get(key).is_none(), "{key} in {body}");
        }
        let body = infill_request(&cfg, "a", "b", &params(0.7, StopAt::Never));
        assert!((body["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
        assert!((body["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);
        assert_eq!(body["top_k"], 40);
        assert!(body.get("stop").is_none());
    }

    #[test]
    fn answers_are_read_and_trimmed_of_the_repeated_suffix() {
        let answer = json!({"index": 0, "content": "a + b\n}", "tokens": [], "stop": true,
                            "stop_type": "eos", "model": "coder", "tokens_cached": 9});
        let choices = parse_infill(&answer).unwrap();
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0].text, "a + b\n}");
        assert!(choices[0].logprobs.is_empty());
        let out = finish_completions(choices, &params(0.0, StopAt::Never), Some("\n}\n"));
        assert_eq!(out.completions[0].text, "a + b");
        // Several completions come as a list.
        let list = json!([{"content": "x"}, {"content": "y"}]);
        let texts: Vec<String> = parse_infill(&list)
            .unwrap()
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(texts, ["x", "y"]);
    }

    #[test]
    fn bad_and_error_answers_are_named() {
        let e = parse_infill(
            &json!({"error": {"code": 501, "type": "not_supported_error",
            "message": "Infill is not supported by this model: prefix token is missing. "}}),
        )
        .unwrap_err();
        assert!(e.contains("Infill is not supported"), "{e}");
        let e = parse_infill(&json!({"choices": [{"text": "x"}]})).unwrap_err();
        assert!(e.contains("content"), "{e}");
        assert!(parse_infill(&json!([{"content": "x"}, {"text": "y"}])).is_err());
    }
}
