#!/usr/bin/env python3
"""Proofreading benchmark: quill (`quill check --json`) and harper-ls (over LSP) on the same
held-out sentences with injected errors (see inject.py), scored word by word (see score.py).

  python3 scripts/usefulness/proofread.py --corpus ~/.cache/quill-demo/corpus --split test \
      --quill target/release/quill --model models/demo-gpt2 --harper ~/.cargo/bin/harper-ls

Both get one plaintext document with every item as its own paragraph (items are separated by a
blank line, so quill scores each on its own, with BOS in front). For quill only the
unlikely-token findings are word flags; its unlikely-sentence hints are scored per sentence
(hinted error sentences / error sentences, hinted clean sentences per 1,000 clean words). Every
harper diagnostic is a flag. Thresholds: --min-token-logprob, --min-gap,
--max-sentence-perplexity (default: quill's defaults).

Plain python3, no third-party package.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inject  # noqa: E402
import score  # noqa: E402
from lspclient import LspClient  # noqa: E402


def load_items(args):
    if args.items:
        with open(args.items) as f:
            return [json.loads(line) for line in f]
    pool = inject.load_sentences(args.corpus, args.split)
    return inject.build(pool, inject.load_vocabulary(args.corpus), per_kind=args.per_kind, clean=args.clean)


def run_quill(quill, model, items, thresholds, threads=1, extra=()):
    """{item: [word flag spans]}, {item: sentence hinted?}, seconds."""
    doc, starts = score.document(items)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "items.txt")
        with open(path, "w") as f:
            f.write(doc)
        cmd = [quill, "check", "--json", "--threads", str(threads), "--model", model, *extra]
        for flag, v in zip(["--min-token-logprob", "--min-gap", "--max-sentence-perplexity"], thresholds):
            if v is not None:
                cmd += [flag, str(v)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd + [path], capture_output=True, text=True)
        secs = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(f"quill check failed ({p.returncode}): {p.stderr[-2000:]}")
    findings = json.loads(p.stdout)["findings"]
    # start/end are byte offsets; the items are ASCII, so they are character offsets too.
    assert doc.isascii()
    words = [(f["start"], f["end"]) for f in findings if f["code"] == "unlikely-token"]
    sents = [(f["start"], f["end"]) for f in findings if f["code"] == "unlikely-sentence"]
    return score.to_items(items, starts, words), set(score.to_items(items, starts, sents)), secs


def run_harper(harper, items, timeout=900):
    """{item: [flag spans]} from harper-ls's publishDiagnostics for the document, seconds."""
    doc, starts = score.document(items)
    to_offset = score.line_col_to_offset(doc)
    client = LspClient([harper, "--stdio"])
    try:
        with tempfile.TemporaryDirectory() as d:
            uri = "file://" + os.path.join(d, "items.txt")
            # harper-ls leaves a document longer than its maxFileLength (120,000 characters by
            # default) unchecked and publishes nothing for it: the items are one document.
            client.initialize("file://" + d, None,
                              settings={"harper-ls": {"maxFileLength": len(doc) + 1}})
            t0 = time.perf_counter()
            client.notify("textDocument/didOpen", {"textDocument": {
                "uri": uri, "languageId": "plaintext", "version": 1, "text": doc}})
            deadline = time.time() + timeout
            while True:
                params = client.diagnostics.get(timeout=max(1, deadline - time.time()))
                if params["uri"] == uri:
                    break
            secs = time.perf_counter() - t0
    finally:
        client.close()
    spans = []
    for dg in params["diagnostics"]:
        r = dg["range"]
        spans.append((to_offset(r["start"]["line"], r["start"]["character"]),
                      to_offset(r["end"]["line"], r["end"]["character"])))
    return score.to_items(items, starts, spans), secs


def sentence_hints(items, hinted):
    err = [k for k, it in enumerate(items) if it["kind"] != "clean"]
    clean = [k for k, it in enumerate(items) if it["kind"] == "clean"]
    clean_words = sum(len(items[k]["text"].split()) for k in clean)
    return {"error_sentences_hinted": sum(k in hinted for k in err) / len(err),
            "clean_sentences_hinted": sum(k in hinted for k in clean) / len(clean),
            "false_hints_per_1000_words": 1000 * sum(k in hinted for k in clean) / clean_words}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="the corpus directory of train_demo_model.py")
    ap.add_argument("--split", choices=["dev", "test"], default="test")
    ap.add_argument("--items", help="items written by inject.py (instead of --corpus/--split)")
    ap.add_argument("--per-kind", type=int, default=500)
    ap.add_argument("--clean", type=int, help="clean sentences (default: every sentence of the split)")
    ap.add_argument("--quill", default="target/release/quill")
    ap.add_argument("--model", default="models/demo-gpt2")
    ap.add_argument("--dtype", help="quill's --dtype (a GGUF model keeps its own)")
    ap.add_argument("--harper", help="harper-ls binary (left out: quill only)")
    ap.add_argument("--min-token-logprob", type=float)
    ap.add_argument("--min-gap", type=float)
    ap.add_argument("--max-sentence-perplexity", type=float)
    ap.add_argument("--json", help="write the metrics here")
    args = ap.parse_args()
    if not args.items and not args.corpus:
        ap.error("give --corpus (and --split) or --items")
    items = load_items(args)
    thresholds = (args.min_token_logprob, args.min_gap, args.max_sentence_perplexity)
    extra = ["--dtype", args.dtype] if args.dtype else []
    results, timing = {}, {}
    flags, hinted, timing["quill"] = run_quill(args.quill, args.model, items, thresholds, extra=extra)
    results["quill"] = score.score(items, flags)
    hints = sentence_hints(items, hinted)
    if args.harper:
        hflags, timing["harper"] = run_harper(args.harper, items)
        results["harper"] = score.score(items, hflags)
    print(score.table(results))
    print()
    print(f"quill sentence hints: {100 * hints['error_sentences_hinted']:.1f}% of error sentences, "
          f"{100 * hints['clean_sentences_hinted']:.1f}% of clean sentences "
          f"({hints['false_hints_per_1000_words']:.1f} per 1,000 clean words)")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "quill_sentence_hints": hints, "seconds": timing,
                       "thresholds": thresholds}, f, indent=1)


if __name__ == "__main__":
    main()
