"""The order in which compare_llamacpp.py runs the two engines (no quill, no llama.cpp: both
are replaced by recorders). Run: python3 -m unittest discover -s scripts -p 'test_*.py'"""

import argparse
import itertools
import unittest
from pathlib import Path
from unittest import mock

import compare_llamacpp as c


class FakeLlama:
    """Stands for LlamaChild: each run is an event in the shared log."""

    def __init__(self, log):
        self.log = log
        self.log.append(("llama", "start"))
        self.runs = {"prompt_s": [], "decode_s_per_token": []}

    def run(self):
        self.log.append(("llama", "run"))
        self.runs["prompt_s"].append(0.25)
        self.runs["decode_s_per_token"].append(0.005)

    def close(self):
        self.log.append(("llama", "close"))

    def figures(self):
        return {"prompt_tokens_per_s": 511 / min(self.runs["prompt_s"]),
                "decode_ms_per_token": 1e3 * min(self.runs["decode_s_per_token"])}


def run_round(quill_first, runs=3):
    """One `measure` with recorders: the event log and the quill processes whose times the
    figures were made of."""
    log = []
    counter = itertools.count(1)
    call_of = {}  # a returned time -> the call that returned it

    def quill_run(args, model_dir, prompt, max_tokens):
        n = next(counter)
        log.append(("quill", n, "long" if prompt == "LONG" else "short", max_tokens))
        # A time that names the call, and keeps A < B and C < A as real ones are.
        base = {("long", 1): 0.5, ("long", 1 + args.steps): 2.0}.get(
            ("long" if prompt == "LONG" else "short", max_tokens), 0.2)
        call_of[base + n * 1e-6] = n
        return base + n * 1e-6

    args = argparse.Namespace(runs=runs, steps=128, prompt=511)
    with mock.patch.object(c, "quill_run", quill_run), \
            mock.patch.object(c, "llama_start", lambda args, gguf, ids: FakeLlama(log)):
        got = c.measure(args, Path("/nowhere/f32"), "LONG", "SHORT", [0] * 511, quill_first)
    measured = {call_of[t] for v in got["quill"]["process_s"].values() for t in v}
    return log, measured, got


class Order(unittest.TestCase):
    def test_every_measured_quill_process_follows_a_quill_process(self):
        for quill_first in (True, False):
            log, measured, _ = run_round(quill_first)
            self.assertEqual(len(measured), 9, "three runs of A, B and C")
            for i, event in enumerate(log):
                if event[0] == "quill" and event[1] in measured:
                    self.assertEqual(log[i - 1][0], "quill",
                                     f"quill_first={quill_first}: {event} came after {log[i - 1]}")

    def test_engines_alternate_run_by_run_in_the_rounds_order(self):
        for quill_first in (True, False):
            log, measured, _ = run_round(quill_first)
            # Measured quill processes come in threes (A, B, C); llama.cpp runs alone.
            turns = []
            for event in log:
                if event == ("llama", "run"):
                    turns.append("llama")
                elif event[0] == "quill" and event[1] in measured and (not turns or turns[-1] != "quill"):
                    turns.append("quill")
            want = ["quill", "llama"] * 3 if quill_first else ["llama", "quill"] * 3
            self.assertEqual(turns, want)
            self.assertEqual(log[0], ("llama", "start"))
            self.assertEqual(log[-1], ("llama", "close"))

    def test_figures_are_the_fastest_differences(self):
        _, _, got = run_round(True)
        q = got["quill"]
        self.assertAlmostEqual(q["decode_ms_per_token"],
                               1e3 * (min(q["process_s"]["B_prompt_1_plus_steps"]) - min(q["process_s"]["A_prompt_1"])) / 128)
        self.assertAlmostEqual(q["prompt_tokens_per_s"],
                               509 / (min(q["process_s"]["A_prompt_1"]) - min(q["process_s"]["C_short_1"])))
        self.assertEqual(got["llama"]["decode_ms_per_token"], 5.0)


if __name__ == "__main__":
    unittest.main()
