#!/usr/bin/env python3
"""Calibrates quill's diagnostics thresholds on the dev split.

  ~/venv-quill-demo/bin/python scripts/usefulness/calibrate.py \
      --corpus ~/.cache/quill-demo/corpus --model ~/.cache/quill-demo/model \
      --quill target/release/quill

Scores every dev item once with the model in transformers (the hub-layout directory: the same
weights and tokenizer quill loads) and replays quill's rule (src/engine/proofread.rs) for every
point of a grid: a word is flagged when one of its tokens has log-probability below
minTokenLogprob while the model's best token there is at least minAlternativeGap nats more
likely; a sentence is hinted when its perplexity exceeds maxSentencePerplexity.

Picks (minTokenLogprob, minAlternativeGap) with the best word-level F0.5 (all kinds pooled)
among those with at most --budget false flags per 1,000 clean words, and the
maxSentencePerplexity with the best sentence-level F0.5 among those hinting at most --budget
clean sentences per 1,000 clean words. Then runs `quill check` at the chosen point on the dev
items to confirm that quill flags what the replay predicted.

Needs torch, transformers, tokenizers, numpy (the venv of train_demo_model.py).
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inject  # noqa: E402
import proofread  # noqa: E402
import score  # noqa: E402
from textutil import word_spans  # noqa: E402


def sentence_spans(text):
    """quill's sentence_spans (src/engine/proofread.rs)."""
    spans, start, i = [], 0, 0
    while i < len(text):
        end_mark = text[i] in ".!?" and (i + 1 == len(text) or text[i + 1].isspace())
        blank = text[i] == "\n" and i + 1 < len(text) and text[i + 1] == "\n"
        if end_mark or blank:
            if text[start : i + 1].strip():
                spans.append((start, i + 1))
            start = i + 1
        i += 1
    if text[start:].strip():
        spans.append((start, len(text)))
    out = []
    for s, e in spans:
        seg = text[s:e]
        out.append((s + len(seg) - len(seg.lstrip()), e - (len(seg) - len(seg.rstrip()))))
    return out


def token_scores(model_dir, items, threads):
    """Per item: token (start, end, logprob, best logprob), BOS in front, as quill scores."""
    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(threads)
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    bos = model.config.bos_token_id
    out = []
    with torch.no_grad():
        for it in items:
            enc = tok.encode(it["text"])
            seq = [bos] + enc.ids
            got, best = [], []
            # quill's windows (src/engine/scoring.rs): at most n_positions tokens, each later
            # window keeping half a window of context.
            w, done = model.config.n_positions, 0
            while done < len(enc.ids):
                a = 0 if done == 0 else done + 1 - min(w // 2, done + 1)
                b = min(a + w, len(seq))
                lp = torch.log_softmax(model(torch.tensor([seq[a:b]])).logits[0].float(), dim=-1)
                for i in range(done, b - 1):
                    row = lp[i - a]
                    got.append(float(row[seq[i + 1]]))
                    best.append(float(row.max()))
                done = b - 1
            out.append([(s, e, a, b) for (s, e), a, b in zip(enc.offsets, got, best)])
    return out


def tables(items, scores):
    """Flat numpy arrays for the sweep."""
    tok_lp, tok_gap, tok_word = [], [], []
    word_item, word_target = [], []
    sent_item, sent_ppl = [], []
    for k, (it, toks) in enumerate(zip(items, scores)):
        words = word_spans(it["text"])
        base = len(word_item)
        for w in words:
            word_item.append(k)
            word_target.append(any(score.overlaps(w, t) for t in it["targets"]))
        for s, e, lp, best in toks:
            # quill: the first word the token's span overlaps
            w = next((j for j, (ws, we) in enumerate(words) if ws < e and s < we), None)
            if w is None:
                continue
            tok_lp.append(lp)
            tok_gap.append(best - lp)
            tok_word.append(base + w)
        for s, e in sentence_spans(it["text"]):
            lps = [lp for ts, te, lp, _ in toks if ts >= s and te <= e]
            if len(lps) >= 4:
                sent_item.append(k)
                sent_ppl.append(math.exp(-sum(lps) / len(lps)))
    a = lambda x, t=float: np.array(x, dtype=t)  # noqa: E731
    return (a(tok_lp), a(tok_gap), a(tok_word, np.int64), a(word_item, np.int64), a(word_target, bool),
            a(sent_item, np.int64), a(sent_ppl))


def sweep(items, t, budget):
    tok_lp, tok_gap, tok_word, word_item, word_target, sent_item, sent_ppl = t
    n = len(items)
    is_clean = np.array([it["kind"] == "clean" for it in items])
    clean_words = sum(len(word_spans(it["text"])) for it in items if it["kind"] == "clean")
    n_err = int((~is_clean).sum())
    grid = []
    for T in np.arange(-3.0, -16.01, -0.5):
        for G in np.arange(0.0, 10.01, 0.5):
            mask = (tok_lp < T) & (tok_gap >= G)
            flagged = np.unique(tok_word[mask])
            hit = flagged[word_target[flagged]]
            miss = flagged[~word_target[flagged]]
            found = np.zeros(n, bool)
            found[word_item[hit]] = True
            false_items = word_item[miss]
            false_clean = int(is_clean[false_items].sum())
            false_err = len(false_items) - false_clean
            tp = int(found[~is_clean].sum())
            p = tp / (tp + false_err + false_clean) if tp + false_err + false_clean else 0.0
            r = tp / n_err
            grid.append({"minTokenLogprob": float(T), "minAlternativeGap": float(G), "precision": p,
                         "recall": r, "f05": score.f_beta(p, r),
                         "false_per_1000": 1000 * false_clean / clean_words})
    ok = [g for g in grid if g["false_per_1000"] <= budget]
    word_best = max(ok, key=lambda g: (g["f05"], g["minTokenLogprob"])) if ok else None
    sgrid = []
    err_items = ~is_clean
    for P in [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 1e12]:
        hinted = np.zeros(n, bool)
        hinted[sent_item[sent_ppl > P]] = True
        tp = int((hinted & err_items).sum())
        fp = int((hinted & is_clean).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / n_err
        sgrid.append({"maxSentencePerplexity": P, "precision": p, "recall": r, "f05": score.f_beta(p, r),
                      "false_per_1000": 1000 * fp / clean_words})
    sok = [g for g in sgrid if g["false_per_1000"] <= budget]
    sent_best = max(sok, key=lambda g: (g["f05"], -g["maxSentencePerplexity"])) if sok else None
    return grid, word_best, sgrid, sent_best


def replay_flags(items, scores, T, G):
    """{item: [flagged word spans]} by quill's rule at (T, G), from token scores."""
    out = {}
    for k, (it, toks) in enumerate(zip(items, scores)):
        words = word_spans(it["text"])
        for s, e, lp, best in toks:
            if lp < T and best - lp >= G:
                w = next((w for w in words if w[0] < e and s < w[1]), None)
                if w is not None:
                    out.setdefault(k, []).append(w)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--model", required=True, help="the hub-layout directory (config.json, model.safetensors)")
    ap.add_argument("--quill", help="confirm with `quill check` at the chosen point")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--budget", type=float, default=5.0, help="false flags per 1,000 clean words")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--evaluate", nargs=2, type=float, metavar=("LOGPROB", "GAP"),
                    help="no sweep: score the split at these thresholds (replaying quill's rule)")
    ap.add_argument("--scores", help="cache of the token scores (JSON): read if present, else written")
    ap.add_argument("--json", help="write the grid and the choice here")
    args = ap.parse_args()
    pool = inject.load_sentences(args.corpus, args.split)
    items = inject.build(pool, inject.load_vocabulary(args.corpus))
    if args.scores and os.path.exists(args.scores):
        with open(args.scores) as f:
            scores = json.load(f)
    else:
        scores = token_scores(args.model, items, args.threads)
        if args.scores:
            with open(args.scores, "w") as f:
                json.dump(scores, f)
    if args.evaluate:
        m = score.score(items, replay_flags(items, scores, *args.evaluate))
        print(score.table({"quill": m}))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"thresholds": args.evaluate, "results": m}, f, indent=1)
        return
    grid, best, sgrid, sbest = sweep(items, tables(items, scores), args.budget)
    print("word flags, best F0.5 at <= %.1f false flags / 1,000 clean words:" % args.budget, json.dumps(best))
    for g in sgrid:
        print("  sentence hints", json.dumps(g))
    print("sentence hints, best:", json.dumps(sbest))
    out = {"word": best, "sentence": sbest, "grid": grid, "sentence_grid": sgrid}
    if args.quill and best:
        P = sbest["maxSentencePerplexity"] if sbest else 1e12
        flags, hinted, _ = proofread.run_quill(args.quill, args.model, items,
                                               (best["minTokenLogprob"], best["minAlternativeGap"], P),
                                               threads=args.threads)
        m = score.score(items, flags)["all"]
        clean = score.score(items, flags)["clean"]
        print("quill check at that point:", json.dumps({"precision": m["precision"], "recall": m["recall"],
              "f05": m["f05"], "false_per_1000": clean["false_per_1000_words"]}))
        out["quill_check"] = {"all": m, "clean": clean, "sentence_hints": proofread.sentence_hints(items, hinted)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
