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
    // The document's text tokenized in pieces, reusing those of the last edit's text, gives
    // the same prompt as the whole text tokenized at once.
    let mut start = quill::engine::tasks::session::tail_start(text.len(), &policy);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let pieces = lm
        .prompt_for_tail_cached(&text[start..], start, &policy, warm.text_cache_mut())
        .unwrap();
    prop_assert_eq!(&pieces, &prompt, "tokens in pieces differ for {:?}", text);
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
    // whole prompt, in another summation order. Over ~20,000 random edits the largest
    // difference was 2.2e-5 of the logits' scale (1e-5 failed one CI run in about sixteen); a
    // stale or misplaced cache row moves logits by whole units.
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    prop_assert!(
        d < 1e-4 * scale.max(10.0),
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
        // Log-probabilities differed by at most 4.3e-5 over ~10,000 random edits.
        prop_assert!(max_diff(&a.logprobs, &b.logprobs) < 5e-4);
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 8,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Past a few hundred bytes only a tail of the text is read (`session::tail_start`): the
    /// cache still equals a cold computation of the same window.
    #[test]
    fn long_documents_read_only_a_tail_and_still_equal_a_cold_computation(
        start in prop::collection::vec(0..WORDS.len(), 150..400),
        edits in prop::collection::vec(edit(), 1..12),
    ) {
        let lm = load_fixture("gpt2-tiny");
        let mut text: String = start.iter().map(|&w| WORDS[w]).collect();
        let mut warm = lm.new_session().unwrap();
        check_equal(&lm, &mut warm, &text)?;
        for e in &edits {
            apply(&mut text, e);
            check_equal(&lm, &mut warm, &text)?;
        }
    }
}

#[test]
fn a_prompt_reads_a_bounded_tail_of_a_huge_document() {
    use quill::engine::tasks::session::tail_start;
    let lm = load_fixture("gpt2-tiny");
    let policy = WindowPolicy {
        context_tokens: 64,
        reserve: 8,
        n_positions: lm.n_positions(),
    };
    let line = "The quick brown fox jumps over the lazy dog, and then it sat on the mat.\n";
    let huge = line.repeat(4 << 20 >> 6); // about 4 MB
    let small = line.repeat(4 << 10 >> 6); // about 4 KB
    for text in [&huge, &small] {
        let start = tail_start(text.len(), &policy);
        assert!(text.len() - start <= policy.tail_bytes() * 3 / 2);
        // The whole text and its tail from `start` give the same prompt.
        let whole = lm.prompt_for(text, &policy).unwrap();
        let tail = lm.prompt_for_tail(&text[start..], start, &policy).unwrap();
        assert_eq!(whole, tail);
        assert!(whole.len() <= 64 && whole.len() > 32, "{}", whole.len());
        assert_ne!(whole[0], lm.bos(), "no BOS mid-document");
    }
    // Typing at the end of the huge document reuses the cache: most keystrokes feed a token
    // or two, and the prompt only moves now and then.
    let mut session = lm.new_session().unwrap();
    let mut text = huge.clone();
    let cancel = Cancel::new();
    let mut fed = Vec::new();
    for word in "and the dog ran after the cat all the way home".split(' ') {
        text.push(' ');
        text.push_str(word);
        let prompt = lm.prompt_for(&text, &policy).unwrap();
        let (_, stats) = session.prime(lm.gpt2(), &prompt, &cancel).unwrap();
        fed.push(stats.fed);
    }
    let cheap = fed.iter().filter(|&&f| f <= 3).count();
    assert!(cheap >= fed.len() - 3, "{fed:?}");
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

/// Whether a type implements `Clone`, decided at compile time and read at run time (autoref
/// specialization: the by-value method wins when its bound holds).
macro_rules! implements_clone {
    ($t:ty) => {{
        struct Probe<T>(std::marker::PhantomData<T>);
        #[allow(dead_code)]
        trait Yes {
            fn answer(&self) -> bool {
                true
            }
        }
        impl<T: Clone> Yes for Probe<T> {}
        #[allow(dead_code)]
        trait No {
            fn answer(&self) -> bool {
                false
            }
        }
        impl<T> No for &Probe<T> {}
        (&Probe::<$t>(std::marker::PhantomData)).answer()
    }};
}

#[test]
fn caches_and_sessions_cannot_be_cloned_into_shared_state() {
    // They write their tensors in place: a shallow copy would change with the original.
    use quill::engine::nets::gpt2::{BatchCache, KvCache};
    use quill::engine::tasks::session::Session;
    assert!(
        implements_clone!(String),
        "the probe sees Clone where it is"
    );
    assert!(!implements_clone!(KvCache));
    assert!(!implements_clone!(BatchCache));
    assert!(!implements_clone!(Session));
}

/// A pass stopped between two layers (background work giving way to a keystroke) leaves the
/// cache as it was: the same tokens fed again give the cold computation's hidden states.
#[test]
fn a_stopped_pass_leaves_the_cache_as_it_was() {
    let lm = load_fixture("gpt2-tiny");
    let model = lm.gpt2();
    let ids = lm
        .tokenizer()
        .encode("the cat sat on the mat and looked out of the window")
        .unwrap()
        .ids;
    let mut cache = model.new_cache().unwrap();
    model.forward(&ids[..3], &mut cache).unwrap();
    let checks = std::cell::Cell::new(0);
    let stop = || {
        checks.set(checks.get() + 1);
        checks.get() > 1
    };
    let stopped = model.forward_or_stop(&ids[3..], &mut cache, &stop).unwrap();
    assert!(stopped.is_none(), "stopped before the second layer");
    assert_eq!(cache.len(), 3);
    let warm: Vec<f32> = model
        .forward(&ids[3..], &mut cache)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut cold = model.new_cache().unwrap();
    let all = model.forward(&ids, &mut cold).unwrap();
    let cold: Vec<f32> = all
        .narrow(0, 3, ids.len() - 3)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(max_diff(&warm, &cold) < 1e-4, "{}", max_diff(&warm, &cold));
}
