//! The engine thread: jobs wait for the model, newer completions supersede older ones, a
//! cancelled job answers "cancelled", and the thread keeps serving after failures.

mod support;

use std::sync::mpsc;

use quill::engine::tasks::sampling::{SamplingParams, StopAt};
use quill::engine::tasks::session::WindowPolicy;
use quill::engine::worker::{CompleteRequest, Engine, ModelState};
use quill::engine::{Cancel, EngineError, GenerateParams};
use support::*;

fn request(doc: &str, text: &str) -> CompleteRequest {
    CompleteRequest {
        doc: doc.into(),
        text_before: text.into(),
        text_start: 0,
        text_after: None,
        policy: WindowPolicy {
            context_tokens: 64,
            reserve: 8,
            n_positions: usize::MAX,
        },
        params: GenerateParams {
            max_tokens: 8,
            n: 1,
            sampling: SamplingParams::default(),
            stop: StopAt::Never,
        },
    }
}

/// An engine whose model load waits until the returned sender is used.
fn blocked_engine() -> (
    Engine,
    mpsc::Sender<()>,
    tokio::sync::oneshot::Receiver<Result<(), String>>,
) {
    let engine = Engine::start();
    let (go, wait) = mpsc::channel::<()>();
    let loaded = engine.reload(Box::new(move || {
        wait.recv().ok();
        Ok(load_fixture("gpt2-tiny"))
    }));
    (engine, go, loaded)
}

#[test]
fn a_newer_completion_supersedes_a_queued_one_of_the_same_document() {
    let (engine, go, loaded) = blocked_engine();
    assert_eq!(engine.model_state(), ModelState::Loading);
    let old = engine.complete(request("a", "The cat"), Cancel::new());
    let other = engine.complete(request("b", "The dog"), Cancel::new());
    let new = engine.complete(request("a", "The cat sat"), Cancel::new());
    go.send(()).unwrap();
    assert!(loaded.blocking_recv().unwrap().is_ok());
    assert!(matches!(
        old.blocking_recv().unwrap(),
        Err(EngineError::Cancelled)
    ));
    let other = other.blocking_recv().unwrap().unwrap();
    let new = new.blocking_recv().unwrap().unwrap();
    let lm = load_fixture("gpt2-tiny");
    let cold = |text: &str| cold_greedy(&lm, &document_prompt(&lm, text), 8);
    assert_eq!(new.completions, cold("The cat sat"));
    assert_eq!(other.completions, cold("The dog"));
    assert_eq!(engine.model_state(), ModelState::Ready);
}

#[test]
fn a_cancelled_job_answers_cancelled_and_the_next_one_runs() {
    let (engine, go, _loaded) = blocked_engine();
    let cancel = Cancel::new();
    let doomed = engine.complete(request("a", "The cat"), cancel.clone());
    let fine = engine.score("The cat sat".into(), Cancel::new());
    cancel.cancel();
    go.send(()).unwrap();
    assert!(matches!(
        doomed.blocking_recv().unwrap(),
        Err(EngineError::Cancelled)
    ));
    let scored = fine.blocking_recv().unwrap().unwrap();
    assert_eq!(
        scored.tokens.len(),
        load_fixture("gpt2-tiny")
            .tokenizer()
            .encode("The cat sat")
            .unwrap()
            .ids
            .len()
    );
}

#[test]
fn a_failed_load_is_an_error_for_every_job_and_a_reload_recovers() {
    let engine = Engine::start();
    let failed = engine.reload(Box::new(|| {
        Err(EngineError::Input("no weights here".into()))
    }));
    assert_eq!(
        failed.blocking_recv().unwrap(),
        Err("no weights here".to_string())
    );
    let r = engine
        .complete(request("a", "The cat"), Cancel::new())
        .blocking_recv()
        .unwrap();
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("could not be loaded") && err.contains("no weights here"),
        "{err}"
    );
    assert!(matches!(engine.model_state(), ModelState::Failed(_)));
    let ok = engine.reload(Box::new(|| Ok(load_fixture("gpt2-tiny"))));
    assert!(ok.blocking_recv().unwrap().is_ok());
    assert!(engine
        .complete(request("a", "The cat"), Cancel::new())
        .blocking_recv()
        .unwrap()
        .is_ok());
}

#[test]
fn an_input_error_leaves_the_thread_serving() {
    let engine = Engine::start();
    let _ready = engine.reload(Box::new(|| Ok(load_fixture("gpt2-tiny"))));
    let mut too_long = request("a", "x");
    too_long.params.max_tokens = 1000; // more than the fixture's 128 positions
    let r = engine
        .complete(too_long, Cancel::new())
        .blocking_recv()
        .unwrap();
    assert!(r.unwrap_err().to_string().contains("context"));
    assert!(engine
        .complete(request("a", "The cat"), Cancel::new())
        .blocking_recv()
        .unwrap()
        .is_ok());
}

#[test]
fn a_completion_preempts_running_proofreading_which_then_resumes() {
    use quill::engine::tasks::proofread::ProofreadOptions;
    let engine = Engine::start();
    let _ready = engine.reload(Box::new(|| Ok(load_fixture("gpt2-tiny"))));
    let text =
        "The quick brown fox jumps over the lazy dog and then it sat on the mat. ".repeat(60);
    // The tiny fixture finds every word unlikely: flag only the worst.
    let opts = ProofreadOptions {
        min_token_logprob: -25.0,
        min_gap: 8.0,
        ..ProofreadOptions::default()
    };
    let mut proof = engine.proofread(text.clone(), opts.clone(), Cancel::new());
    // Wait (without a timing guess) until the proofreading runs, then ask for a completion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !engine.background_running() {
        assert!(
            proof.try_recv().is_err(),
            "the proofreading ended before it was seen running: lengthen the text"
        );
        assert!(std::time::Instant::now() < deadline, "it never started");
        std::thread::yield_now();
    }
    let completion = engine
        .complete(request("a", "The cat"), Cancel::new())
        .blocking_recv()
        .unwrap();
    let lm = load_fixture("gpt2-tiny");
    assert_eq!(
        completion.unwrap().completions,
        cold_greedy(&lm, &document_prompt(&lm, "The cat"), 8)
    );
    // The completion did not wait for the proofreading: it stopped it, and it is queued again.
    assert!(
        proof.try_recv().is_err(),
        "the proofreading is still going (or was put back) when the completion is answered"
    );
    assert_eq!(engine.stats().preemptions, 1, "{:?}", engine.stats());
    // It resumes and gives what an uninterrupted run gives.
    let result = proof.blocking_recv().unwrap().unwrap();
    assert_eq!(result, lm.proofread(&text, &opts, &Cancel::new()).unwrap());
    assert_eq!(engine.stats().proofreads, 1);
}
