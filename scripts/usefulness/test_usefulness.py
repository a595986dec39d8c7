"""Unit tests of the error injector and the scorer (plain unittest, no third-party package):
python3 -m unittest discover scripts/usefulness"""

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inject  # noqa: E402
import keystrokes  # noqa: E402
import score  # noqa: E402
from textutil import word_spans  # noqa: E402

VOCAB = {"the", "cat", "sat", "on", "mat", "driver", "module", "kernel", "loads", "when", "boots"}


def words_of(text):
    return [text[s:e] for s, e in word_spans(text)]


class WordSpans(unittest.TestCase):
    def test_same_words_as_quill(self):
        # The case of src/engine/proofread.rs's words_are_runs_of_letters_digits_and_inner_apostrophes.
        text = "I red the notes, didn't you? café_2 'quoted' 😀x"
        self.assertEqual(words_of(text), ["I", "red", "the", "notes", "didn't", "you", "café_2", "quoted", "x"])

    def test_trailing_word_and_empty(self):
        self.assertEqual(word_spans("ab cd"), [(0, 2), (3, 5)])
        self.assertEqual(word_spans(""), [])
        self.assertEqual(word_spans("it's'"), [(0, 4)])


class Injection(unittest.TestCase):
    SENT = "The kernel module loads the driver when the system boots."

    def check_one_change(self, kind, seed):
        r = inject.inject(self.SENT, kind, random.Random(seed), VOCAB)
        self.assertIsNotNone(r)
        text, targets, detail = r
        self.assertNotEqual(text, self.SENT)
        return text, targets, detail

    def test_typos_change_one_word_into_a_non_word(self):
        for kind in ["typo_swap", "typo_drop", "typo_double", "typo_substitute"]:
            for seed in range(20):
                text, targets, d = self.check_one_change(kind, seed)
                self.assertEqual(len(targets), 1)
                s, e = targets[0]
                self.assertEqual(text[s:e], d["to"])
                self.assertNotIn(d["to"].lower(), VOCAB)
                before, after = words_of(self.SENT), words_of(text)
                self.assertEqual(len(before), len(after))
                diff = [k for k in range(len(before)) if before[k] != after[k]]
                self.assertEqual(len(diff), 1, (kind, text))
                self.assertEqual(before[diff[0]], d["from"])
                a, b = d["from"], d["to"]
                if kind == "typo_swap":
                    self.assertEqual(sorted(a), sorted(b))
                    self.assertEqual(len(a), len(b))
                elif kind == "typo_drop":
                    self.assertEqual(len(b), len(a) - 1)
                elif kind == "typo_double":
                    self.assertEqual(len(b), len(a) + 1)
                else:
                    self.assertEqual(len(b), len(a))
                    self.assertEqual(sum(x != y for x, y in zip(a, b)), 1)

    def test_substitution_uses_a_keyboard_neighbour(self):
        self.assertEqual(inject.keyboard_neighbours("a"), ["q", "s", "w", "x", "z"])
        self.assertIn("g", inject.keyboard_neighbours("h"))
        self.assertNotIn("h", inject.keyboard_neighbours("h"))

    def test_confusion_swaps_within_its_set_and_keeps_case(self):
        sent = "Their driver is a better choice than its rival, so use it too."
        groups = {w: g for g in inject.CONFUSIONS for w in g}
        for seed in range(30):
            text, targets, d = inject.inject(sent, "confusion", random.Random(seed), VOCAB)
            s, e = targets[0]
            self.assertEqual(text[s:e], d["to"])
            self.assertIn(d["to"].lower(), groups[d["from"].lower()])
            self.assertNotEqual(d["to"].lower(), d["from"].lower())
            self.assertEqual(d["from"][0].isupper(), d["to"][0].isupper())
            if d["from"] == "a":
                self.assertEqual(d["to"], "an")
        self.assertIsNone(inject.inject("No confusable word here at all.", "confusion", random.Random(1), VOCAB))

    def test_dropped_word_targets_its_neighbours(self):
        for seed in range(20):
            text, targets, d = self.check_one_change("dropped_word", seed)
            self.assertEqual(len(words_of(text)), len(words_of(self.SENT)) - 1)
            self.assertNotIn("  ", text)
            before = words_of(self.SENT)
            k = d["index"]
            self.assertEqual(before[k], d["dropped"])
            (a0, a1), (b0, b1) = targets
            self.assertEqual(text[a0:a1], before[k - 1])
            self.assertEqual(text[b0:b1], before[k + 1])

    def test_doubled_word_targets_both_copies(self):
        for seed in range(20):
            text, targets, d = self.check_one_change("doubled_word", seed)
            (a0, a1), (b0, b1) = targets
            self.assertEqual(text[a0:a1], d["doubled"])
            self.assertEqual(text[b0:b1], d["doubled"])
            self.assertEqual(text[a1:b0], " ")

    def test_build_counts_and_is_reproducible(self):
        pool = [f"The cat sat on the mat number {i} when the kernel boots to a prompt." for i in range(40)]
        a = inject.build(pool, VOCAB, per_kind=10)
        b = inject.build(pool, VOCAB, per_kind=10)
        self.assertEqual(a, b)
        counts = {}
        for it in a:
            counts[it["kind"]] = counts.get(it["kind"], 0) + 1
        self.assertEqual(counts, {**{k: 10 for k in inject.KINDS}, "clean": 40})
        self.assertEqual([it["id"] for it in a], list(range(len(a))))
        with self.assertRaises(SystemExit):
            inject.build(pool[:5], VOCAB, per_kind=10)

    def test_sentences_filter(self):
        p = "Short one. This sentence has more than six words in it. Ends without a mark but is long enough"
        self.assertEqual(inject.sentences(p), ["This sentence has more than six words in it."])


def item(kind, text, targets):
    return {"kind": kind, "text": text, "targets": targets}


class Scoring(unittest.TestCase):
    def test_judge_counts_found_once_and_false_words(self):
        it = item("doubled_word", "the the cat sat", [[0, 3], [4, 7]])
        self.assertEqual(score.judge(it, [(0, 7)]), (1, 0, 4))  # both copies: one find
        self.assertEqual(score.judge(it, [(8, 11)]), (0, 1, 4))  # wrong word
        self.assertEqual(score.judge(it, [(4, 7), (12, 15)]), (1, 1, 4))
        # two flags on one word are one flagged word
        self.assertEqual(score.judge(it, [(12, 13), (13, 15)]), (0, 1, 4))
        self.assertEqual(score.judge(it, []), (0, 0, 4))

    def test_partial_overlap_counts(self):
        it = item("typo_swap", "a teh cat", [[2, 5]])
        self.assertEqual(score.judge(it, [(3, 4)]), (1, 0, 3))
        self.assertEqual(score.judge(it, [(5, 6)]), (0, 0, 3))  # the space only

    def test_document_round_trip(self):
        items = [item("clean", "one two", []), item("clean", "three", []), item("clean", "four five", [])]
        doc, starts = score.document(items)
        self.assertEqual(doc, "one two\n\nthree\n\nfour five")
        self.assertEqual(starts, [0, 9, 16])
        got = score.to_items(items, starts, [(4, 7), (9, 14), (21, 25), (7, 9)])
        self.assertEqual(got, {0: [(4, 7)], 1: [(0, 5)], 2: [(5, 9)]})
        f = score.line_col_to_offset(doc)
        self.assertEqual(f(2, 0), 9)
        self.assertEqual(f(4, 5), 21)

    def test_metrics(self):
        items = (
            [item("typo_drop", "a tpo here", [[2, 5]])] * 4
            + [item("confusion", "to much", [[0, 2]])] * 2
            + [item("clean", "all fine words here", [])] * 4
        )
        flags = {0: [(2, 5)], 1: [(2, 5)], 2: [(0, 1)], 4: [(0, 2), (3, 7)], 6: [(0, 3)]}
        m = score.score(items, flags)
        # typo_drop: found 2 of 4, 1 false flag in its items, clean rate 1/4 per item x 4 items
        self.assertEqual(m["typo_drop"]["found"], 2)
        self.assertAlmostEqual(m["typo_drop"]["recall"], 0.5)
        self.assertAlmostEqual(m["typo_drop"]["precision"], 2 / (2 + 1 + 1))
        # confusion: found 1 of 2, 1 false in its items, clean 0.25 x 2
        self.assertAlmostEqual(m["confusion"]["precision"], 1 / (1 + 1 + 0.5))
        self.assertAlmostEqual(m["confusion"]["recall"], 0.5)
        p, r = 1 / 2.5, 0.5
        self.assertAlmostEqual(m["confusion"]["f05"], 1.25 * p * r / (0.25 * p + r))
        # all: 3 found of 6; false = 2 in error items + 1 clean
        self.assertAlmostEqual(m["all"]["precision"], 3 / 6)
        self.assertAlmostEqual(m["all"]["recall"], 0.5)
        self.assertEqual(m["clean"]["words"], 16)
        self.assertAlmostEqual(m["clean"]["false_per_1000_words"], 1000 / 16)

    def test_f_beta(self):
        self.assertEqual(score.f_beta(0, 0), 0.0)
        self.assertAlmostEqual(score.f_beta(1, 1), 1.0)
        self.assertAlmostEqual(score.f_beta(0.5, 1.0), 1.25 * 0.5 / (0.125 + 1))

    def test_table_has_a_row_per_kind(self):
        items = [item("typo_drop", "a tpo", [[2, 5]]), item("clean", "fine", [])]
        m = score.score(items, {0: [(2, 5)]})
        t = score.table({"quill": m, "harper": score.score(items, {})})
        self.assertIn("| typo_drop | 1 | 1.00 | 1.00 | 1.00 | 0.00 | 0.00 | 0.00 |", t)
        self.assertIn("false flags / 1,000 clean words", t)


class Keystrokes(unittest.TestCase):
    def test_accepts_whole_matching_words_only(self):
        upcoming = "driver when the system boots."
        self.assertEqual(keystrokes.accepted("driver when the sys", upcoming), len("driver when the"))
        self.assertEqual(keystrokes.accepted("driver is", upcoming), len("driver"))
        self.assertEqual(keystrokes.accepted("drivers", upcoming), 0)
        self.assertEqual(keystrokes.accepted("", upcoming), 0)
        # completing the word being typed counts
        self.assertEqual(keystrokes.accepted("ver when", "ver when the"), len("ver when"))
        # a suggestion longer than what is left: the text's end is a word end
        self.assertEqual(keystrokes.accepted("boots. And more", "boots."), len("boots."))
        # punctuation after a word is taken with it when it matches
        self.assertEqual(keystrokes.accepted("boots. Then", "boots. And"), len("boots."))

    def test_simulation_counts(self):
        # A fake server that always suggests the next 2 words of the text.
        text = "one two three four five six"

        def suggest(prefix):
            rest = text[len(prefix):]
            return " ".join(rest.split(" ")[:3]) if rest.startswith(" ") else " ".join(rest.split(" ")[:2])

        r = keystrokes.simulate(text, suggest)
        self.assertEqual(r["chars"], len(text))
        self.assertEqual(r["keystrokes"] + r["saved"], len(text))
        self.assertGreater(r["accepts"], 0)
        self.assertEqual(r["keystrokes"], r["typed"] + r["accepts"])
        # the no-suggestion writer types everything
        none = keystrokes.simulate(text, lambda p: "")
        self.assertEqual((none["keystrokes"], none["saved"], none["accepts"]), (len(text), 0, 0))


if __name__ == "__main__":
    unittest.main()
