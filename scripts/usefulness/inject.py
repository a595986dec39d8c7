#!/usr/bin/env python3
"""Error injection for the proofreading benchmark: held-out sentences with one error each, of a
known kind at a known position, mixed with clean sentences.

  python3 scripts/usefulness/inject.py --corpus ~/.cache/quill-demo/corpus --split dev \
      --out /tmp/proofread-dev.jsonl

Each output line is an item: {"id", "kind", "text", "targets": [[start, end], ...],
"source", "detail"}. `targets` are the character spans where a flag counts as a hit (empty for
clean sentences). Kinds: the letter typos typo_swap, typo_drop, typo_double, typo_substitute
(the result is never a word of the training corpus); confusion (their/there/they're, its/it's,
then/than, to/too, your/you're, lose/loose, affect/effect, a/an); dropped_word (a hit is a flag
on the word before or after the gap); doubled_word (a hit is a flag on either copy); clean.

Plain python3, no third-party package.
"""

import argparse
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textutil import word_spans  # noqa: E402

KINDS = ["typo_swap", "typo_drop", "typo_double", "typo_substitute", "confusion", "dropped_word", "doubled_word"]
SEED = 20261205

CONFUSIONS = [
    ["their", "there", "they're"],
    ["its", "it's"],
    ["then", "than"],
    ["to", "too"],
    ["your", "you're"],
    ["lose", "loose"],
    ["affect", "effect"],
    ["a", "an"],
]

QWERTY = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def keyboard_neighbours(c):
    """Letters next to `c` on a QWERTY keyboard (same row and the rows above and below)."""
    for r, row in enumerate(QWERTY):
        k = row.find(c)
        if k < 0:
            continue
        out = set()
        for rr in (r - 1, r, r + 1):
            if 0 <= rr < len(QWERTY):
                for kk in (k - 1, k, k + 1):
                    if 0 <= kk < len(QWERTY[rr]) and QWERTY[rr][kk] != c:
                        out.add(QWERTY[rr][kk])
        return sorted(out)
    return []


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"])")


def sentences(paragraph):
    """Sentences of a paragraph that make good test items: 6-40 words, ending in . ! or ?"""
    out = []
    for s in SENTENCE_END.split(paragraph):
        s = s.strip()
        if 6 <= len(s.split()) <= 40 and s[-1] in ".!?" and s.isascii():
            out.append(s)
    return out


def match_case(template, word):
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def typo(word, kind, rng):
    """One letter typo of `word` (lowercase letters only are touched), or None."""
    idx = [i for i, c in enumerate(word) if c.isalpha() and c.islower()]
    if kind == "typo_swap":
        opts = [i for i in range(len(word) - 1) if word[i].isalpha() and word[i + 1].isalpha() and word[i] != word[i + 1]]
        if not opts:
            return None
        i = rng.choice(opts)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "typo_drop":
        if not idx:
            return None
        i = rng.choice(idx)
        return word[:i] + word[i + 1:]
    if kind == "typo_double":
        if not idx:
            return None
        i = rng.choice(idx)
        return word[:i] + word[i] + word[i:]
    if kind == "typo_substitute":
        if not idx:
            return None
        i = rng.choice(idx)
        return word[:i] + rng.choice(keyboard_neighbours(word[i])) + word[i + 1:]
    raise ValueError(kind)


def inject(sentence, kind, rng, vocabulary, group=None):
    """`sentence` with one error of `kind`: (text, targets, detail), or None if it has no place
    for one. `vocabulary` is the set of lowercase words a typo must not turn into; `group`
    limits a confusion to one of CONFUSIONS."""
    spans = word_spans(sentence)
    words = [sentence[s:e] for s, e in spans]
    if kind.startswith("typo_"):
        cands = [k for k, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        rng.shuffle(cands)
        for k in cands:
            t = typo(words[k], kind, rng)
            if t is None or t == words[k] or t.lower() in vocabulary:
                continue
            s, e = spans[k]
            return sentence[:s] + t + sentence[e:], [[s, s + len(t)]], {"from": words[k], "to": t}
        return None
    if kind == "confusion":
        cands = []
        for k, w in enumerate(words):
            for g in CONFUSIONS if group is None else [group]:
                if w.lower() in g:
                    cands.append((k, g))
        if not cands:
            return None
        k, group = rng.choice(cands)
        w = words[k]
        choices = [g for g in group if g != w.lower()]
        if group == ["a", "an"]:
            choices = ["an" if w.lower() == "a" else "a"]
        t = match_case(w, rng.choice(choices))
        s, e = spans[k]
        return sentence[:s] + t + sentence[e:], [[s, s + len(t)]], {"from": w, "to": t}
    if kind == "dropped_word":
        if len(words) < 4:
            return None
        # Not the first word (it is capitalised, so its absence reads as a new sentence start),
        # and only words followed by a space (dropping "word," would orphan the comma).
        cands = [k for k in range(1, len(words) - 1) if sentence[spans[k][1] : spans[k][1] + 1] == " "]
        if not cands:
            return None
        k = rng.choice(cands)
        s, e = spans[k]
        text = sentence[:s] + sentence[e + 1:]
        # The words on either side of the gap, in the new text.
        before = spans[k - 1]
        after_start = s
        after_end = spans[k + 1][1] - (e + 1 - s)
        return text, [[before[0], before[1]], [after_start, after_end]], {"dropped": words[k], "index": k}
    if kind == "doubled_word":
        cands = [k for k in range(len(words)) if sentence[spans[k][1] : spans[k][1] + 1] == " "]
        if not cands:
            return None
        k = rng.choice(cands)
        s, e = spans[k]
        w = sentence[s:e]
        text = sentence[:e] + " " + w + sentence[e:]
        return text, [[s, e], [e + 1, e + 1 + len(w)]], {"doubled": w, "index": k}
    raise ValueError(kind)


def load_vocabulary(corpus):
    vocab = set()
    with open(os.path.join(corpus, "train.jsonl")) as f:
        for line in f:
            text = json.loads(line)["text"]
            vocab.update(text[s:e].lower() for s, e in word_spans(text))
    return vocab


def load_sentences(corpus, split):
    out = []
    with open(os.path.join(corpus, f"{split}.jsonl")) as f:
        for line in f:
            out.extend(sentences(json.loads(line)["text"]))
    return out


def build(pool, vocabulary, per_kind=500, clean=None, seed=SEED):
    """Items: `per_kind` erroneous sentences of each kind (sources drawn from `pool` without
    replacement per kind, so no kind repeats a sentence) and `clean` clean ones (default: all
    of the pool), in a fixed shuffled order."""
    rng = random.Random(seed)
    items = []
    for kind in KINDS:
        order = list(range(len(pool)))
        rng.shuffle(order)
        tries = [(i, None) for i in order]
        if kind == "confusion":
            # Round robin over the confusion sets, so that the rare ones (lose/loose, ...) get
            # every sentence they occur in and to/too and a/an do not crowd them out.
            lists = [[i for i in order if inject(pool[i], kind, random.Random(0), vocabulary, g)] for g in CONFUSIONS]
            tries, used = [], set()
            while any(lists):
                for g, lst in zip(CONFUSIONS, lists):
                    while lst and lst[0] in used:
                        lst.pop(0)
                    if lst:
                        used.add(lst[0])
                        tries.append((lst.pop(0), g))
        made = 0
        for i, group in tries:
            if made == per_kind:
                break
            r = inject(pool[i], kind, rng, vocabulary, group)
            if r is None:
                continue
            text, targets, detail = r
            items.append({"kind": kind, "text": text, "targets": targets, "source": i, "detail": detail})
            made += 1
        if made < per_kind:
            raise SystemExit(f"only {made} sentences take a {kind} error; need {per_kind}")
    n_clean = len(pool) if clean is None else clean
    for i in rng.sample(range(len(pool)), n_clean):
        items.append({"kind": "clean", "text": pool[i], "targets": [], "source": i, "detail": {}})
    rng.shuffle(items)
    for k, it in enumerate(items):
        it["id"] = k
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="the corpus directory of train_demo_model.py")
    ap.add_argument("--split", choices=["dev", "test"], required=True)
    ap.add_argument("--per-kind", type=int, default=500)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pool = load_sentences(args.corpus, args.split)
    items = build(pool, load_vocabulary(args.corpus), per_kind=args.per_kind)
    with open(args.out, "w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    counts = {}
    for it in items:
        counts[it["kind"]] = counts.get(it["kind"], 0) + 1
    print(json.dumps(counts), file=sys.stderr)


if __name__ == "__main__":
    main()
