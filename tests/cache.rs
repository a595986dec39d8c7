//! Cache equivalence: a session that reuses its keys and values across random edits gives the
//! same logits and continuations as a cold computation of the same context.

mod support;

use proptest::prelude::*;
use quill::engine::tasks::sampling::{SamplingParams, StopAt};
use quill::engine::tasks::session::WindowPolicy;
use quill::engine::{Cancel, GenerateParams, LanguageModel};
use support::*;

const WORDS: &[&str] = &[
    "the",
    " cat",
    " sat",
    " on",
    " mat",
    ".",
    "\n",
    " and",
    " then",
    " é",
    "😀",
    " 42",
    " quick",
    " brown",
    " fox",
    "fn main() {",
    " }",
    ",",
    " said",
    " she",
];

#[derive(Debug, Clone)]
enum Edit {
    /// Insert word `w` at a fraction of the text's length.
    Insert { at: f64, w: usize },
    /// Delete up to `len` characters from a fraction of the text's length.
    Delete { at: f64, len: usize },
    /// Type at the end (the common case in an editor).
    Append { w: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0.0..1.0f64, 0..WORDS.len()).prop_map(|(at, w)| Edit::Insert { at, w }),
        (0.0..1.0f64, 1..12usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (0..WORDS.len()).prop_map(|w| Edit::Append { w }),
    ]
}

fn char_boundary(text: &str, at: f64) -> usize {
    let n = text.chars().count();
    let k = ((n as f64) * at) as usize;
    text.char_indices()
        .nth(k)
        .map(|(i, _)| i)
        .unwrap_or(text.len())
}

fn apply(text: &mut String, e: &Edit) {
    match e {
        Edit::Insert { at, w } => {
            let i = char_boundary(text, *at);
            text.insert_str(i, WORDS[*w]);
        }
        Edit::Delete { at, len } => {
            let i = char_boundary(text, *at);
            let j = text[i..]
                .char_indices()
                .nth(*len)
                .map(|(k, _)| i + k)
                .unwrap_or(text.len());
            text.replace_range(i..j, "");
        }
        Edit::Append { w } => text.push_str(WORDS[*w]),
    }
}

fn check_equal(
    lm: &LanguageModel,
    warm: &mut quill::engine::tasks::session::Session,
    text: &str,
) -> Result<(), TestCaseError> {
    let policy = WindowPolicy {
        context_tokens: 40,
        reserve: 6,
        n_positions: lm.n_positions(),
    };
    let prompt = lm.prompt_for(text, &policy).unwrap();
    let cancel = Cancel::new();
    let (h_warm, _) = warm.prime(lm.gpt2(), &prompt, &cancel).unwrap();
    let mut cold = lm.new_session().unwrap();
    let (h_cold, stats) = cold.prime(lm.gpt2(), &prompt, &cancel).unwrap();
    prop_assert_eq!(stats.reused, 0);
    let a: Vec<f32> = lm
        .gpt2()
        .logits(&h_warm)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = lm
        .gpt2()
        .logits(&h_cold)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let d = max_diff(&a, &b);
    // Equal up to f32 rounding: the warm path multiplies one row at a time, the cold one a
    // whole prompt, in another summation order.
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    prop_assert!(
        d < 1e-5 * scale.max(10.0),
        "logits differ by {} (scale {}) for {:?}",
        d,
        scale,
        text
    );
    let params = GenerateParams {
        max_tokens: 6,
        n: 1,
        sampling: SamplingParams::default(),
        stop: StopAt::Never,
    };
    let w = lm.complete(warm, &prompt, &params, &cancel).unwrap();
    let c = lm.complete(&mut cold, &prompt, &params, &cancel).unwrap();
    prop_assert_eq!(w.completions.len(), c.completions.len());
    for (a, b) in w.completions.iter().zip(&c.completions) {
        prop_assert_eq!(&a.tokens, &b.tokens, "continuations differ for {:?}", text);
        prop_assert_eq!(&a.text, &b.text);
        prop_assert!(max_diff(&a.logprobs, &b.logprobs) < 1e-4);
    }
    prop_assert_eq!(
        warm.tokens(),
        &prompt[..],
        "generated positions are dropped"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn reused_cache_equals_cold_computation(
        start in prop::collection::vec(0..WORDS.len(), 1..30),
        edits in prop::collection::vec(edit(), 1..10),
        fixture in 0..GPT2_FIXTURES.len(),
    ) {
        let lm = load_fixture(GPT2_FIXTURES[fixture]);
        let mut text: String = start.iter().map(|&w| WORDS[w]).collect();
        let mut warm = lm.new_session().unwrap();
        check_equal(&lm, &mut warm, &text)?;
        for e in &edits {
            apply(&mut text, e);
            if text.is_empty() {
                text.push_str("the");
            }
            check_equal(&lm, &mut warm, &text)?;
        }
    }
}

#[test]
fn typing_at_the_end_reuses_the_prompt() {
    let lm = load_fixture("gpt2-tiny");
    let policy = WindowPolicy {
        context_tokens: 100,
        reserve: 8,
        n_positions: lm.n_positions(),
    };
    let mut session = lm.new_session().unwrap();
    let mut text = String::from("The cat sat on the mat and then");
    let cancel = Cancel::new();
    let first = lm.prompt_for(&text, &policy).unwrap();
    let (_, stats) = session.prime(lm.gpt2(), &first, &cancel).unwrap();
    assert_eq!(stats.reused, 0);
    text.push_str(" the dog");
    let second = lm.prompt_for(&text, &policy).unwrap();
    let (_, stats) = session.prime(lm.gpt2(), &second, &cancel).unwrap();
    assert!(stats.reused >= first.len() - 1, "{stats:?}");
    assert!(stats.fed <= 3, "{stats:?}");
}
