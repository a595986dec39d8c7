"""Words as quill counts them (src/engine/proofread.rs `word_spans`): runs of letters, digits
and `_`, with apostrophes inside a word (followed by a letter) belonging to it."""


def _word_char(c):
    return c.isalnum() or c == "_"


def word_spans(text):
    """Character spans [start, end) of the words of `text`."""
    spans, start = [], None
    for i, c in enumerate(text):
        inner = c in "'\u2019" and start is not None and i + 1 < len(text) and text[i + 1].isalpha()
        if _word_char(c) or inner:
            if start is None:
                start = i
        elif start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(text)))
    return spans
