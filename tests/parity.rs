//! Parity with Hugging Face `transformers`: the tiny fixtures' logits, greedy continuations,
//! per-token log-probabilities and batched logits, recorded by `scripts/make_fixtures.py`.

mod support;

use quill::engine::Cancel;
use support::*;

#[test]
fn logits_match_transformers() {
    for name in GPT2_FIXTURES {
        let lm = load_fixture(name);
        let reference = reference(name);
        for p in reference["prompts"].as_array().unwrap() {
            let ids = ids(&p["ids"]);
            let scale = p["logits_scale"].as_f64().unwrap() as f32;
            let mut cache = lm.gpt2().new_cache().unwrap();
            let hidden = lm.gpt2().forward(&ids, &mut cache).unwrap();
            let logits: Vec<Vec<f32>> = lm.gpt2().logits(&hidden).unwrap().to_vec2().unwrap();
            let last = logits.last().unwrap();
            let d = max_diff(last, &floats(&p["logits_last"]));
            assert!(
                d <= 1e-4 * scale.max(1.0),
                "{name} {:?}: last logits differ by {d} (scale {scale})",
                p["text"]
            );
            for (t, row) in p["logits_first_rows"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                let want = floats(row);
                let d = max_diff(&logits[t][..want.len()], &want);
                assert!(d <= 1e-4 * scale.max(1.0), "{name}: row {t} differs by {d}");
            }
        }
    }
}

#[test]
fn greedy_continuations_match_transformers() {
    for name in GPT2_FIXTURES {
        let lm = load_fixture(name);
        let reference = reference(name);
        let mut compared = 0;
        for p in reference["prompts"].as_array().unwrap() {
            let prompt = ids(&p["ids"]);
            let want = ids(&p["greedy_ids"]);
            let safe = safe_greedy_steps(
                &floats(&p["greedy_margins"]),
                p["logits_scale"].as_f64().unwrap() as f32,
            );
            // The reference never stops at EOS; quill does, so compare up to the first EOS.
            let steps = want
                .iter()
                .take(safe)
                .take_while(|&&t| t != lm.eos())
                .count();
            let completions = cold_greedy(&lm, &prompt, steps);
            // A last token or two that end inside a UTF-8 character are held back.
            let got = &completions[0].tokens;
            assert!(
                got.len() + 3 >= steps,
                "{name}: {} of {steps} tokens",
                got.len()
            );
            assert_eq!(got[..], want[..got.len()], "{name} {:?}", p["text"]);
            if got.len() < steps {
                let tail = lm.tokenizer().decode(&want[..steps]).unwrap();
                assert!(
                    tail.ends_with('\u{FFFD}'),
                    "{name}: tokens were dropped from {tail:?}"
                );
            }
            compared += steps;
        }
        assert!(
            compared >= 40,
            "{name}: only {compared} greedy steps were comparable"
        );
    }
}

#[test]
fn log_probabilities_match_transformers() {
    for name in GPT2_FIXTURES {
        let lm = load_fixture(name);
        let reference = reference(name);
        for s in reference["scores"].as_array().unwrap() {
            let text = s["text"].as_str().unwrap();
            let scored = lm.score(text, &Cancel::new()).unwrap();
            let got_ids: Vec<u32> = scored.tokens.iter().map(|t| t.id).collect();
            assert_eq!(got_ids, ids(&s["ids"]), "{name} {text:?}: tokens");
            let got: Vec<f32> = scored.tokens.iter().map(|t| t.logprob).collect();
            assert_logprobs_close(&got, &floats(&s["logprobs"]), &format!("{name} {text:?}"));
            let best: Vec<u32> = scored.tokens.iter().map(|t| t.best_id).collect();
            assert_eq!(best, ids(&s["best_ids"]), "{name} {text:?}: best tokens");
            let starts: Vec<u32> = scored.tokens.iter().map(|t| t.start as u32).collect();
            let ends: Vec<u32> = scored.tokens.iter().map(|t| t.end as u32).collect();
            assert_eq!(starts, ids(&s["start"]), "{name} {text:?}: byte starts");
            assert_eq!(ends, ids(&s["end"]), "{name} {text:?}: byte ends");
            let total = s["total_logprob"].as_f64().unwrap();
            assert!(
                (scored.total_logprob - total).abs() <= 1e-3,
                "{name}: total {} vs {total}",
                scored.total_logprob
            );
            let ppl = s["perplexity"].as_f64().unwrap();
            assert!(
                (scored.perplexity - ppl).abs() <= 1e-4 * ppl,
                "{name}: perplexity"
            );
        }
    }
}

#[test]
fn batched_candidates_share_the_prompt_and_match_transformers() {
    for name in GPT2_FIXTURES {
        let lm = load_fixture(name);
        let reference = reference(name);
        let b = &reference["batch"];
        let prompt = ids(&b["prompt_ids"]);
        let cands = ids(&b["candidates"]);
        let mut cache = lm.gpt2().new_cache().unwrap();
        lm.gpt2().forward(&prompt, &mut cache).unwrap();
        let mut batch = lm.gpt2().new_batch_cache(cands.len(), 4).unwrap();
        let hidden = lm
            .gpt2()
            .forward_shared(&cands, &cache, &mut batch)
            .unwrap();
        let logits: Vec<Vec<f32>> = lm.gpt2().logits(&hidden).unwrap().to_vec2().unwrap();
        for (k, want) in b["logits_last"].as_array().unwrap().iter().enumerate() {
            let d = max_diff(&logits[k], &floats(want));
            assert!(d <= 1e-4 * 10.0, "{name}: candidate {k} differs by {d}");
        }
        assert_eq!(cache.len(), prompt.len(), "the prompt cache is read only");
    }
}

#[test]
fn long_text_is_scored_in_overlapping_windows() {
    // Past the context of 128 (96) positions, every token is still scored, each with at least
    // half a window of context; the first window equals a direct score.
    for name in GPT2_FIXTURES {
        let lm = load_fixture(name);
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
        let scored = lm.score(&text, &Cancel::new()).unwrap();
        let n_ids = lm.tokenizer().encode(&text).unwrap().ids.len();
        assert!(
            n_ids > 2 * lm.n_positions(),
            "the text must span several windows"
        );
        assert_eq!(scored.tokens.len(), n_ids);
        assert!(scored
            .tokens
            .iter()
            .all(|t| t.logprob.is_finite() && t.logprob <= 0.0));
        let head: String = text.chars().take(60).collect();
        let direct = lm.score(&head, &Cancel::new()).unwrap();
        let k = direct.tokens.len() - 1; // the last token of the head may be split differently
        for (a, b) in direct.tokens[..k].iter().zip(&scored.tokens) {
            assert_eq!(a.id, b.id);
            assert!((a.logprob - b.logprob).abs() < 1e-4);
        }
    }
}
