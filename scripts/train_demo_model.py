#!/usr/bin/env python3
"""Train quill's demo model: a small GPT-2 on English prose from Debian's documentation.

Stages (all by default; each is skipped when its output already exists):

  corpus     apt-get download linux-doc-6.1, python3.11-doc, debian-handbook, git-doc;
             dpkg-deb -x them; extract plain prose paragraphs (markup stripped, only
             paragraphs of real sentences), deduplicate, split BY DOCUMENT into
             train / dev / test (fixed seed) -> WORK/corpus/{train,dev,test}.jsonl
  tokenizer  byte-level BPE (GPT-2 style, `<|endoftext|>` as BOS/EOS) -> OUT/tokenizer.json
  train      a small GPT2LMHeadModel, one thread, for --minutes; checkpoints to OUT in the
             hub layout (config.json, model.safetensors, tokenizer.json) every
             --checkpoint-minutes, so a partial model is usable while it trains
  eval       held-out perplexity (dev and test) of OUT -> OUT/eval.json

Needs torch, transformers, tokenizers, safetensors (plain `pip install` from PyPI) in a venv
outside the repository, and apt-get (Debian bookworm) for the corpus. Example:

  python3 -m venv ~/venv-quill-demo
  ~/venv-quill-demo/bin/pip install torch transformers tokenizers safetensors
  nice -n 10 ~/venv-quill-demo/bin/python scripts/train_demo_model.py \
      --work ~/.cache/quill-demo --out ~/.cache/quill-demo/model --minutes 50
  cargo run --release -- quantize --model ~/.cache/quill-demo/model --dtype q8_0 models/demo-gpt2

The corpus stage needs no third-party package (`--stage corpus` runs with plain python3);
scripts/usefulness/ reads the dev and test splits it writes.
"""

import argparse
import glob
import gzip
import hashlib
import html
import html.parser
import json
import math
import os
import random
import re
import subprocess
import sys
import time

PACKAGES = ["linux-doc-6.1", "python3.11-doc", "debian-handbook", "git-doc"]
SEED = 20261205
EOT = "<|endoftext|>"

# ---------------------------------------------------------------------------------------------
# corpus


def fetch_packages(work):
    """Downloads and unpacks the documentation packages (no root needed: apt-get download)."""
    debs = os.path.join(work, "debs")
    root = os.path.join(work, "root")
    os.makedirs(debs, exist_ok=True)
    have = glob.glob(os.path.join(debs, "*.deb"))
    missing = [p for p in PACKAGES if not any(os.path.basename(d).startswith(p + "_") for d in have)]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    if not os.path.isdir(root):
        os.makedirs(root + ".tmp", exist_ok=True)
        for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
            subprocess.run(["dpkg-deb", "-x", deb, root + ".tmp"], check=True)
        os.rename(root + ".tmp", root)
    return root, sorted(os.path.basename(d) for d in glob.glob(os.path.join(debs, "*.deb")))


def read_text(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


RST_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
RST_LINK = re.compile(r"`([^`<]+?)(?:\s*<[^>]*>)?`__?")
INLINE_LITERAL = re.compile(r"``([^`]+)``")
BACKTICK = re.compile(r"`([^`]+)`")
STRONG = re.compile(r"\*\*([^*]+)\*\*")
EMPH = re.compile(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])")
ASCIIDOC_LINK = re.compile(r"link(?:git)?:([\w./-]+)\[(\d*|[^\]]*)\]")
ASCIIDOC_QUOTE = re.compile(r"(?<!\w)'([^'\s][^']*)'(?!\w)")
FOOTNOTE = re.compile(r"\s*\[(?:#\w*|\d+|\*)\]_")
SUBST = re.compile(r"\|[\w -]+\|")
URL = re.compile(r"https?://\S+")


def strip_inline(text):
    text = RST_ROLE.sub(r"\1", text)
    text = INLINE_LITERAL.sub(r"\1", text)
    text = RST_LINK.sub(r"\1", text)
    text = BACKTICK.sub(r"\1", text)
    text = STRONG.sub(r"\1", text)
    text = EMPH.sub(r"\1", text)
    text = ASCIIDOC_LINK.sub(lambda m: m.group(1) + (f"({m.group(2)})" if m.group(2).isdigit() else ""), text)
    text = ASCIIDOC_QUOTE.sub(r"\1", text)
    text = FOOTNOTE.sub("", text)
    text = SUBST.sub("", text)
    text = text.replace("\\", "")
    return re.sub(r"\s+", " ", text).strip()


def markup_paragraphs(text):
    """Paragraphs of reStructuredText / AsciiDoc: blocks of unindented lines between blank
    lines, without directives, headings, tables, literal blocks and comments."""
    paras, block, in_listing = [], [], False
    for line in text.splitlines() + [""]:
        s = line.rstrip()
        if re.fullmatch(r"(-{4,}|\.{4,}|={4,}|_{4,}|\+{4,})", s):  # AsciiDoc block fences
            in_listing = not in_listing
            if block:
                paras.append(block)
            block = []
            continue
        if in_listing:
            continue
        if not s.strip():
            if block:
                paras.append(block)
            block = []
            continue
        if line[:1] in (" ", "\t"):
            if block:
                paras.append(block)
            block = []
            continue
        block.append(s)
    out = []
    for block in paras:
        if any(re.fullmatch(r"([=\-~^\"'`#*+.:_])\1{2,}", l.strip()) for l in block):
            continue  # a heading (or a heading's over/underline)
        first = block[0]
        if first.startswith((".. ", "..\t", "[[", "[", "|", "+", ":", "//", "= ", "== ", "=== ", "#")):
            continue
        if first.endswith("::") and len(block) == 1:
            continue
        if any(l.startswith(("|", "+-", "+=")) for l in block):
            continue
        text = " ".join(block)
        if text.endswith("::"):
            text = text[:-1]  # "as follows::" introduces a literal block; keep "as follows:"
        # a list item: keep its text
        text = re.sub(r"^(?:[-*] |\d+\. |#\. |[a-z]\) )", "", text)
        out.append(strip_inline(text))
    return out


class HtmlParagraphs(html.parser.HTMLParser):
    """Text of <p> elements (not inside <pre>, tables of contents, footnotes' links)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paras, self.depth, self.buf, self.skip = [], 0, [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self.depth += 1
            self.buf = []
        elif tag in ("pre", "code", "sup", "script", "style") and self.depth:
            self.skip += 1

    def handle_endtag(self, tag):
        if tag == "p" and self.depth:
            self.depth -= 1
            self.paras.append(re.sub(r"\s+", " ", "".join(self.buf)).strip())
        elif tag in ("pre", "code", "sup", "script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.buf.append(data)


def html_paragraphs(text):
    p = HtmlParagraphs()
    p.feed(text)
    return p.paras


WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def is_prose(p):
    """A paragraph of real sentences: long enough, mostly words, sentence-shaped."""
    words = p.split()
    if len(words) < 8 or len(p) > 2000:
        return False
    if not (p[0].isupper() or p[0] == '"') or p.rstrip(')"\'')[-1:] not in (".", "!", "?", ":"):
        return False
    alpha = sum(1 for w in words if WORD.fullmatch(w.strip(".,;:!?()\"'")))
    if alpha / len(words) < 0.8:
        return False
    if any(ch in p for ch in "{}<>=|\\#$@~^"):
        return False
    if URL.search(p) or not p.isascii():
        return False
    return True


def documents(root):
    """(doc id, raw paragraphs) for every English document in the packages."""
    doc = os.path.join(root, "usr/share/doc")
    for path in sorted(glob.glob(os.path.join(doc, "linux-doc-6.1/Documentation/**/*.rst.gz"), recursive=True)):
        if "/translations/" in path:
            continue
        yield "linux:" + os.path.relpath(path, doc), markup_paragraphs(read_text(path))
    for path in sorted(glob.glob(os.path.join(doc, "python3.11/html/_sources/**/*.rst.txt"), recursive=True)):
        yield "python:" + os.path.relpath(path, doc), markup_paragraphs(read_text(path))
    for path in sorted(glob.glob(os.path.join(doc, "git-doc/**/*.txt"), recursive=True)):
        yield "git:" + os.path.relpath(path, doc), markup_paragraphs(read_text(path))
    for path in sorted(glob.glob(os.path.join(doc, "debian-handbook/html/en-US/*.html"))):
        yield "handbook:" + os.path.relpath(path, doc), [html.unescape(p) for p in html_paragraphs(read_text(path))]


def split_of(doc_id):
    """Fixed split by document: 5% dev, 5% test, by a seeded hash of the document's name."""
    h = int(hashlib.sha256(f"{SEED}:{doc_id}".encode()).hexdigest(), 16) % 100
    return "dev" if h < 5 else "test" if h < 10 else "train"


def build_corpus(work):
    out = os.path.join(work, "corpus")
    if os.path.exists(os.path.join(out, "manifest.json")):
        return out
    root, debs = fetch_packages(work)
    os.makedirs(out, exist_ok=True)
    seen = set()
    files = {s: open(os.path.join(out, f"{s}.jsonl.tmp"), "w") for s in ("train", "dev", "test")}
    stats = {s: {"documents": 0, "paragraphs": 0, "words": 0, "chars": 0} for s in files}
    dropped = {"not_prose": 0, "duplicate": 0}
    # Train documents first, so a paragraph that a held-out document shares with a training
    # document is dropped from the held-out one: nothing held out was trained on.
    docs = sorted(documents(root), key=lambda d: (split_of(d[0]) != "train", d[0]))
    for doc_id, paras in docs:
        split = split_of(doc_id)
        kept = 0
        for p in paras:
            if not is_prose(p):
                dropped["not_prose"] += 1
                continue
            key = re.sub(r"\W+", " ", p.lower()).strip()
            if key in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(key)
            files[split].write(json.dumps({"doc": doc_id, "text": p}) + "\n")
            kept += 1
            stats[split]["paragraphs"] += 1
            stats[split]["words"] += len(p.split())
            stats[split]["chars"] += len(p)
        stats[split]["documents"] += kept > 0
    for s, f in files.items():
        f.close()
        os.rename(f.name, os.path.join(out, f"{s}.jsonl"))
    manifest = {"packages": debs, "seed": SEED, "splits": stats, "dropped": dropped}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest, indent=1), flush=True)
    return out


def load_split(corpus, split):
    """Documents of a split: {doc id: [paragraphs]} in file order."""
    docs = {}
    with open(os.path.join(corpus, f"{split}.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            docs.setdefault(r["doc"], []).append(r["text"])
    return docs


def doc_texts(corpus, split):
    """Each document's paragraphs joined by blank lines, as the model sees them."""
    return ["\n\n".join(ps) for ps in load_split(corpus, split).values()]


# ---------------------------------------------------------------------------------------------
# tokenizer


def build_tokenizer(corpus, out, vocab_size):
    path = os.path.join(out, "tokenizer.json")
    if os.path.exists(path):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(path)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(doc_texts(corpus, "train"), trainer=trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(path)
    return tok


# ---------------------------------------------------------------------------------------------
# model


def encode_split(tok, corpus, split, eot_id):
    """One token stream: every document as BOS + its paragraphs (as GPT-2 was trained)."""
    import torch

    ids = []
    for text in doc_texts(corpus, split):
        ids.append(eot_id)
        ids.extend(tok.encode(text).ids)
    ids.append(eot_id)
    return torch.tensor(ids, dtype=torch.long)


def save_model(model, tok_path, out, step, extra):
    tmp = out + ".saving"
    model.save_pretrained(tmp, safe_serialization=True)
    import shutil

    shutil.copy(tok_path, os.path.join(tmp, "tokenizer.json"))
    with open(os.path.join(tmp, "training.json"), "w") as f:
        json.dump({"step": step, **extra}, f, indent=1)
    for name in os.listdir(tmp):
        os.replace(os.path.join(tmp, name), os.path.join(out, name))
    os.rmdir(tmp)


def evaluate(model, data, block, max_tokens=None):
    """Perplexity over non-overlapping windows of `block` tokens (each window's first token is
    context only, so every other token is predicted from at least one before it)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    n = len(data) if max_tokens is None else min(len(data), max_tokens)
    with torch.no_grad():
        for start in range(0, n - 1, block):
            x = data[start : start + block + 1]
            if len(x) < 2:
                break
            logits = model(x[:-1].unsqueeze(0)).logits[0]
            lp = torch.log_softmax(logits.float(), dim=-1)
            total -= lp.gather(1, x[1:].unsqueeze(1)).sum().item()
            count += len(x) - 1
    model.train()
    return math.exp(total / count), count


def train(args, corpus):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    random.seed(SEED)
    torch.set_num_threads(args.threads)
    tok = build_tokenizer(corpus, args.out, args.vocab)
    eot = tok.token_to_id(EOT)
    tok_path = os.path.join(args.out, "tokenizer.json")
    train_ids = encode_split(tok, corpus, "train", eot)
    dev_ids = encode_split(tok, corpus, "dev", eot)
    print(f"tokens: train {len(train_ids)}, dev {len(dev_ids)}", flush=True)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=args.block,
        n_embd=args.embd,
        n_layer=args.layers,
        n_head=args.heads,
        bos_token_id=eot,
        eos_token_id=eot,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {params}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.05)
    deadline = time.time() + args.minutes * 60
    # The schedule is by time: warm-up, then cosine to 10% by the deadline.
    start = time.time()
    next_ckpt = start + args.checkpoint_minutes * 60
    step, seen, losses = 0, 0, []
    n = len(train_ids) - args.block - 1
    gen = torch.Generator().manual_seed(SEED)
    info = {"parameters": params, "train_tokens": len(train_ids), "config": {
        "n_embd": args.embd, "n_layer": args.layers, "n_head": args.heads,
        "n_positions": args.block, "vocab_size": tok.get_vocab_size()}}
    while time.time() < deadline:
        frac = (time.time() - start) / (deadline - start)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x = torch.stack([train_ids[i : i + args.block] for i in idx])
        out = model(x, labels=x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += x.numel()
        losses.append(out.loss.item())
        if step % 50 == 0:
            el = time.time() - start
            print(f"step {step} tokens {seen} loss {sum(losses[-50:]) / 50:.3f} lr {lr:.2e} "
                  f"{seen / el:.0f} tok/s elapsed {el / 60:.1f} min", flush=True)
        if time.time() >= next_ckpt:
            ppl, _ = evaluate(model, dev_ids, args.block, max_tokens=20000)
            print(f"checkpoint step {step}: dev perplexity (first 20k tokens) {ppl:.1f}", flush=True)
            save_model(model, tok_path, args.out, step, {**info, "tokens_seen": seen, "dev_ppl_20k": ppl})
            next_ckpt = time.time() + args.checkpoint_minutes * 60
    save_model(model, tok_path, args.out, step, {**info, "tokens_seen": seen, "final": True,
                                                 "minutes": (time.time() - start) / 60})
    print(f"done: {step} steps, {seen} tokens", flush=True)


def eval_stage(args, corpus):
    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    model = GPT2LMHeadModel.from_pretrained(args.out)
    tok = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
    eot = tok.token_to_id(EOT)
    block = model.config.n_positions
    result = {}
    for split in ("dev", "test"):
        ids = encode_split(tok, corpus, split, eot)
        ppl, count = evaluate(model, ids, block)
        words = sum(len(t.split()) for t in doc_texts(corpus, split))
        # Per-word perplexity does not depend on the tokenizer: exp(total nats / words).
        result[split] = {"token_perplexity": ppl, "tokens": count, "words": words,
                         "word_perplexity": math.exp(math.log(ppl) * count / words)}
    with open(os.path.join(args.out, "training.json")) as f:
        result["training"] = json.load(f)
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "quill-demo")
    ap.add_argument("--work", default=cache, help="downloads and corpus (default: %(default)s)")
    ap.add_argument("--out", default=None, help="the model in the hub layout (default: WORK/model)")
    ap.add_argument("--stage", choices=["corpus", "tokenizer", "train", "eval", "all"], default="all")
    ap.add_argument("--minutes", type=float, default=55.0, help="training time")
    ap.add_argument("--checkpoint-minutes", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--block", type=int, default=128, help="context (n_positions)")
    ap.add_argument("--embd", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    args = ap.parse_args()
    args.out = args.out or os.path.join(args.work, "model")
    corpus = build_corpus(args.work)
    if args.stage == "corpus":
        return
    if args.stage == "tokenizer":
        build_tokenizer(corpus, args.out, args.vocab)
        return
    if args.stage in ("train", "all"):
        if os.path.exists(os.path.join(args.out, "model.safetensors")) and args.stage == "all":
            print(f"{args.out} has a model; skipping training (delete it to retrain)", flush=True)
        else:
            train(args, corpus)
    if args.stage in ("eval", "all"):
        eval_stage(args, corpus)


if __name__ == "__main__":
    sys.exit(main())
