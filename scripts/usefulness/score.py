"""Word-level scoring of a proofreader's flags against injected errors.

A flag is a character span in an item. It is turned into the words it overlaps (words as quill
counts them). For an item with an error, the error counts as found when a flagged word overlaps
one of its target spans (once, however many of its words are flagged); every other flagged word
is a false flag. In a clean item every flagged word is a false flag.

Per kind:
  recall     = errors found / errors
  precision  = found / (found + false flags), where the false flags are those in that kind's
               items plus the clean items' false flags scaled to as many items as the kind has
               (the precision of a 1:1 mix of that kind's sentences and clean sentences)
  F0.5       = 1.25 P R / (0.25 P + R)
"all" pools every erroneous item with every clean item as they are. False flags per 1,000 clean
words counts only the clean items.

Plain python3, no third-party package.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from textutil import word_spans  # noqa: E402

SEPARATOR = "\n\n"


def document(items):
    """The items as one document, one paragraph each, and each item's start offset."""
    starts, pos = [], 0
    for it in items:
        starts.append(pos)
        pos += len(it["text"]) + len(SEPARATOR)
    return SEPARATOR.join(it["text"] for it in items), starts


def to_items(items, starts, spans):
    """Document spans -> {item index: [local spans]}; a span is given to the item it starts in
    and clipped to it."""
    import bisect

    out = {}
    for s, e in spans:
        k = bisect.bisect_right(starts, s) - 1
        if k < 0:
            continue
        base, n = starts[k], len(items[k]["text"])
        ls, le = s - base, min(e - base, n)
        if ls >= n or le <= ls:
            continue
        out.setdefault(k, []).append((ls, le))
    return out


def line_col_to_offset(text):
    """A function (line, column) -> offset into `text` (columns in characters)."""
    line_starts = [0]
    for i, c in enumerate(text):
        if c == "\n":
            line_starts.append(i + 1)

    def f(line, col):
        return line_starts[line] + col

    return f


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


def judge(item, flags):
    """(found, false flagged words, words) for one item and its flag spans."""
    words = word_spans(item["text"])
    flagged = {k for k, w in enumerate(words) if any(overlaps(w, f) for f in flags)}
    targets = item["targets"]
    hit = {k for k in flagged if any(overlaps(words[k], t) for t in targets)}
    found = 1 if hit else 0
    return found, len(flagged) - len(hit), len(words)


def f_beta(p, r, beta=0.5):
    if p + r == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r)


def score(items, flags_by_item):
    """Metrics per kind (and "all") from {item index: [spans]}."""
    per = {}
    for k, it in enumerate(items):
        found, false, words = judge(it, flags_by_item.get(k, []))
        d = per.setdefault(it["kind"], {"items": 0, "found": 0, "false": 0, "words": 0})
        d["items"] += 1
        d["found"] += found
        d["false"] += false
        d["words"] += words
    clean = per.get("clean", {"items": 0, "found": 0, "false": 0, "words": 0})
    clean_rate = clean["false"] / clean["items"] if clean["items"] else 0.0
    out = {}
    tot = {"items": 0, "found": 0, "false": 0}
    for kind, d in sorted(per.items()):
        if kind == "clean":
            continue
        fp = d["false"] + clean_rate * d["items"]
        p = d["found"] / (d["found"] + fp) if d["found"] + fp else 0.0
        r = d["found"] / d["items"]
        out[kind] = {"errors": d["items"], "found": d["found"], "false_flags": d["false"],
                     "precision": p, "recall": r, "f05": f_beta(p, r)}
        for key in tot:
            tot[key] += d[key]
    if tot["items"]:
        fp = tot["false"] + clean["false"]
        p = tot["found"] / (tot["found"] + fp) if tot["found"] + fp else 0.0
        r = tot["found"] / tot["items"]
        out["all"] = {"errors": tot["items"], "found": tot["found"], "false_flags": fp,
                      "precision": p, "recall": r, "f05": f_beta(p, r)}
    out["clean"] = {"sentences": clean["items"], "words": clean["words"], "false_flags": clean["false"],
                    "false_per_1000_words": 1000 * clean["false"] / clean["words"] if clean["words"] else 0.0}
    return out


def table(results, kinds=None):
    """Markdown: one row per kind, a column group per system. `results`: {system: score()}."""
    systems = list(results)
    kinds = kinds or [k for k in next(iter(results.values())) if k != "clean"]
    head = "| kind | errors | " + " | ".join(f"{s} P | {s} R | {s} F0.5" for s in systems) + " |"
    sep = "| --- | ---: | " + " | ".join("---: | ---: | ---:" for _ in systems) + " |"
    rows = [head, sep]
    for k in kinds:
        first = results[systems[0]][k]
        cells = []
        for s in systems:
            m = results[s][k]
            cells.append(f"{m['precision']:.2f} | {m['recall']:.2f} | {m['f05']:.2f}")
        name = f"**{k}**" if k == "all" else k
        rows.append(f"| {name} | {first['errors']} | " + " | ".join(cells) + " |")
    cells = " | ".join(f"{results[s]['clean']['false_per_1000_words']:.1f} | |" for s in systems)
    rows.append(f"| false flags / 1,000 clean words | {results[systems[0]]['clean']['words']} words | {cells} |")
    return "\n".join(rows)
