#!/usr/bin/env python3
"""Keystroke savings of quill's ghost text, through the real language server as an editor
drives it.

  python3 scripts/usefulness/keystrokes.py --quill target/release/quill \
      --model models/demo-gpt2 --corpus ~/.cache/quill-demo/corpus --paragraphs 12

A simulated writer types held-out paragraphs (the test split) character by character into a
plaintext document (incremental didChange). After every keystroke it asks for
textDocument/inlineCompletion and looks at the first suggestion (the ghost text shown): when its
next whole word(s) are what the writer types next, it accepts them with one keystroke (Tab), as
far as they match. Reported: the keystroke savings rate (keystrokes saved / characters),
acceptances per 100 words, and the latency of each inlineCompletion request (median, p90).
Each --config runs the same paragraphs with other settings (JSON merged into
initializationOptions.completion; dtype with --dtype).
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lspclient import LspClient  # noqa: E402
from textutil import _word_char  # noqa: E402


def accepted(suggestion, upcoming):
    """How many characters of `upcoming` accepting `suggestion` (ghost text at the cursor)
    would type correctly: the longest common prefix that ends at a word end in both (whole
    words only, punctuation after them included), or 0."""
    n = 0
    limit = min(len(suggestion), len(upcoming))
    while n < limit and suggestion[n] == upcoming[n]:
        n += 1
    for k in range(n, 0, -1):
        ends_t = k == len(upcoming) or not _word_char(upcoming[k])
        ends_s = k == len(suggestion) or not _word_char(suggestion[k])
        if ends_t and ends_s and any(_word_char(c) for c in suggestion[:k]):
            return k
    return 0


def simulate(text, suggest, on_suggestion=None):
    """Types `text` with `suggest(prefix) -> ghost text`; accepts when that saves keystrokes."""
    pos = typed = accepts = saved = 0
    while pos < len(text):
        s = suggest(text[:pos])
        k = accepted(s, text[pos:]) if s else 0
        if k >= 2:
            pos += k
            accepts += 1
            saved += k - 1
        else:
            pos += 1
            typed += 1
    return {"chars": len(text), "typed": typed, "accepts": accepts, "saved": saved,
            "keystrokes": typed + accepts, "words": len(text.split())}


class QuillWriter:
    """One quill server and one document the writer types into."""

    def __init__(self, quill, model, dtype, completion, threads):
        options = {"model": model, "dtype": dtype, "threads": threads, "completion": completion,
                   "diagnostics": {"enabled": False}}
        self.client = LspClient([quill, "serve", "--stdio"], env={"QUILL_LOG": "warn"})
        self.client.initialize("file:///tmp", options, settings=options)
        self.uri = "file:///tmp/quill-keystrokes.txt"
        self.version = 0
        self.text = ""
        self.latencies = []
        self.client.notify("textDocument/didOpen", {"textDocument": {
            "uri": self.uri, "languageId": "plaintext", "version": 0, "text": ""}})

    def _position(self, text):
        lines = text.split("\n")
        return {"line": len(lines) - 1, "character": len(lines[-1].encode("utf-16-le")) // 2}

    def suggest(self, prefix):
        # Bring the document to `prefix` (the writer only appends) with one incremental change.
        assert prefix.startswith(self.text)
        added = prefix[len(self.text):]
        if added:
            self.version += 1
            p = self._position(self.text)
            self.client.notify("textDocument/didChange", {
                "textDocument": {"uri": self.uri, "version": self.version},
                "contentChanges": [{"range": {"start": p, "end": p}, "text": added}]})
            self.text = prefix
        t0 = time.perf_counter()
        r = self.client.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": self.uri}, "position": self._position(prefix),
            "context": {"triggerKind": 2}})
        self.latencies.append(time.perf_counter() - t0)
        items = r if isinstance(r, list) else (r or {}).get("items", [])
        if not items:
            return ""
        insert = items[0]["insertText"]
        if isinstance(insert, dict):
            insert = insert["value"]
        # The item replaces the word being typed (its range starts there): the ghost text is
        # what comes after what is already typed.
        start = items[0].get("range", {}).get("start")
        if start:
            lines = prefix.split("\n")
            typed = lines[-1][start["character"]:] if start["line"] == len(lines) - 1 else ""
            if not insert.startswith(typed):
                return ""
            insert = insert[len(typed):]
        return insert

    def new_paragraph(self):
        # Paragraphs go one after another, separated by a blank line, as a writer would.
        return "\n\n" if self.text else ""

    def close(self):
        self.client.close()


def load_paragraphs(corpus, n, split="test"):
    out = []
    with open(os.path.join(corpus, f"{split}.jsonl")) as f:
        for line in f:
            text = json.loads(line)["text"]
            if 30 <= len(text.split()) <= 120:
                out.append(text)
    # A fixed, spread-out sample: every k-th paragraph.
    step = max(1, len(out) // n)
    return out[::step][:n]


def run(args, completion, dtype):
    writer = QuillWriter(args.quill, args.model, dtype, completion, args.threads)
    totals = {"chars": 0, "typed": 0, "accepts": 0, "saved": 0, "keystrokes": 0, "words": 0}
    try:
        writer.suggest("")  # waits for the model to load; not counted
        writer.latencies.clear()
        for p in load_paragraphs(args.corpus, args.paragraphs):
            base = writer.text + writer.new_paragraph()
            r = simulate(p, lambda prefix: writer.suggest(base + prefix))
            for k in totals:
                totals[k] += r[k]
    finally:
        writer.close()
    lat = sorted(writer.latencies)
    return {
        **totals,
        "savings": totals["saved"] / totals["chars"],
        "accepts_per_100_words": 100 * totals["accepts"] / totals["words"],
        "latency_ms_median": 1000 * statistics.median(lat),
        "latency_ms_p90": 1000 * lat[int(0.9 * (len(lat) - 1))],
        "requests": len(lat),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quill", default="target/release/quill")
    ap.add_argument("--model", default="models/demo-gpt2")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--paragraphs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--config", action="append", default=[],
                    help='a run: JSON like {"dtype":"q8_0","maxTokens":8,"stopAtSentence":false}; '
                         "repeatable (default: the defaults at f32 and at q8_0)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    configs = [json.loads(c) for c in args.config] or [{"dtype": "f32"}, {"dtype": "q8_0"}]
    results = []
    print("| dtype | stopAtSentence | maxTokens | temperature | savings | accepts / 100 words | latency median | p90 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in configs:
        c = dict(c)
        dtype = c.pop("dtype", "f32")
        r = run(args, c, dtype)
        results.append({"config": {"dtype": dtype, **c}, **r})
        print(f"| {dtype} | {c.get('stopAtSentence', True)} | {c.get('maxTokens', 16)} | "
              f"{c.get('temperature', 0.7)} | {100 * r['savings']:.1f}% | {r['accepts_per_100_words']:.1f} | "
              f"{r['latency_ms_median']:.1f} ms | {r['latency_ms_p90']:.1f} ms |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
