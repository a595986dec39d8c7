#!/usr/bin/env python3
"""Baseline: transformers GPT-2 (exact 124M shapes, random init, no download) on the CPU, f32.

Measures, each as the median of --repeats runs (after one warm-up):
  prefill_128 / prefill_512   prompt processing, tokens/s (one forward, building the KV cache)
  decode                      ms/token, --steps single-token steps after a 512-token prompt (KV cache)
  batch3_decode               ms/step, 3 sequences decoded as one batch after the same prompt,
                              the prompt's KV expanded to batch 3
  extend_1                    ms, one-token extension of a cached 512-token prompt
  cold_513                    ms, cold forward over the same 513 tokens (no cache)
Only the last position's logits are computed (logits_to_keep=1), as a completion engine would;
--all-logits computes the LM head at every position instead.

Timings are wall clock: run it on an otherwise idle machine (the JSON keeps each minimum too).

Usage:  /work/venv/bin/python scripts/bench_pytorch.py [--threads 2] [--repeats 5] [--json]
"""

import argparse
import json
import os
import statistics
import time

from benchutil import cpu_name, emit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=32, help="decode steps per repeat")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--all-logits", action="store_true")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    ap.add_argument("--score-lengths", metavar="FILE",
                    help="also score sequences of these token counts (a JSON list, as written by "
                         "`cargo bench --bench diagnostics -- --lengths FILE`) with all logits and "
                         "log_softmax, and report tokens/s")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()

    cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                     activation_function="gelu_new", bos_token_id=50256, eos_token_id=50256)
    cfg._attn_implementation = args.attn
    model = GPT2LMHeadModel(cfg).eval().float()
    keep = 0 if args.all_logits else 1
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    prompt512 = torch.randint(0, 50256, (1, 512), generator=g)
    prompt128 = prompt512[:, :128]
    nxt = torch.randint(0, 50256, (1, 1), generator=g)

    import inspect
    # transformers >= 5.2x renamed past_key_values -> cache (argument and output field)
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def fwd(ids, past=None, use_cache=True):
        out = model(input_ids=ids, use_cache=use_cache, logits_to_keep=keep, **{cache_kw: past})
        keys = out.keys()
        out.kv = out["cache"] if "cache" in keys else out["past_key_values"] if "past_key_values" in keys else None
        return out

    def timed(fn):
        t = time.perf_counter()
        r = fn()
        return time.perf_counter() - t, r

    mins = {}

    def median_of(fn, key):
        fn()  # warm-up
        xs = [fn() for _ in range(args.repeats)]
        mins[key] = min(xs)  # a median far above the min means the run was disturbed
        return statistics.median(xs)

    def expand(cache, n):
        if hasattr(cache, "batch_repeat_interleave"):
            cache.batch_repeat_interleave(n)
            return cache
        raise RuntimeError("cache type %s cannot be expanded" % type(cache).__name__)

    res = {}
    with torch.inference_mode():
        for n, ids in ((128, prompt128), (512, prompt512)):
            s = median_of(lambda: timed(lambda: fwd(ids))[0], f"prefill_{n}")
            res[f"prefill_{n}"] = {"seconds": s, "tokens_per_s": n / s, "min_seconds": mins[f"prefill_{n}"]}

        def decode_run(batch):
            past = fwd(prompt512).kv
            if batch > 1:
                past = expand(past, batch)
            tok = nxt.expand(batch, 1).contiguous()
            t = time.perf_counter()
            for _ in range(args.steps):
                out = fwd(tok, past)
                past = out.kv
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
            return (time.perf_counter() - t) / args.steps

        res["decode"] = {"ms_per_token": 1e3 * median_of(lambda: decode_run(1), "decode")}
        res["decode"]["min_ms_per_token"] = 1e3 * mins["decode"]
        res["batch3_decode"] = {"ms_per_step": 1e3 * median_of(lambda: decode_run(3), "batch3")}
        res["batch3_decode"]["min_ms_per_step"] = 1e3 * mins["batch3"]
        res["batch3_decode"]["ms_per_token"] = res["batch3_decode"]["ms_per_step"] / 3

        def extend():
            past = fwd(prompt512).kv
            return timed(lambda: fwd(nxt, past))[0]

        full513 = torch.cat([prompt512, nxt], dim=1)
        ext = median_of(extend, "extend")
        cold = median_of(lambda: timed(lambda: fwd(full513, use_cache=False))[0], "cold")
        res["extend_1"] = {"ms": 1e3 * ext, "min_ms": 1e3 * mins["extend"]}
        res["cold_513"] = {"ms": 1e3 * cold, "min_ms": 1e3 * mins["cold"]}
        res["cold_over_extend"] = cold / ext

        if args.score_lengths:
            lengths = json.load(open(args.score_lengths))
            seqs = [torch.randint(0, 50256, (1, n), generator=g) for n in lengths]

            def score_all():
                t = time.perf_counter()
                for ids in seqs:
                    logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
                    lp = torch.log_softmax(logits.double(), dim=-1)
                    lp.gather(1, ids[0, 1:, None])
                return time.perf_counter() - t

            sc = median_of(score_all, "score")
            res["score"] = {"tokens": sum(lengths), "paragraphs": len(lengths), "seconds": sc,
                            "tokens_per_s": sum(lengths) / sc}

    meta = {
        "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": args.threads, "repeats": args.repeats, "decode_steps": args.steps,
        "attn": args.attn, "logits": "all" if args.all_logits else "last", "params": n_params,
        "dtype": "float32", "cpu": cpu_name(),
    }
    out = {"meta": meta, "results": res}

    lines = [
        f"transformers {meta['transformers']} / torch {meta['torch']}, GPT-2 124M shapes, f32, "
        f"{args.threads} threads, attn={args.attn}, median of {args.repeats}",
        f"  cpu: {meta['cpu']}",
        f"  {'prefill 128 tokens':34s} {res['prefill_128']['tokens_per_s']:9.1f} tok/s  "
        f"({1e3 * res['prefill_128']['seconds']:.1f} ms, min {1e3 * res['prefill_128']['min_seconds']:.1f})",
        f"  {'prefill 512 tokens':34s} {res['prefill_512']['tokens_per_s']:9.1f} tok/s  "
        f"({1e3 * res['prefill_512']['seconds']:.1f} ms, min {1e3 * res['prefill_512']['min_seconds']:.1f})",
        f"  {'decode after 512 (batch 1)':34s} {res['decode']['ms_per_token']:9.2f} ms/token  (min {res['decode']['min_ms_per_token']:.2f})",
        f"  {'decode after 512 (batch 3, shared)':34s} {res['batch3_decode']['ms_per_step']:9.2f} ms/step  "
        f"({res['batch3_decode']['ms_per_token']:.2f} ms/token, min {res['batch3_decode']['min_ms_per_step']:.2f}/step)",
        f"  {'extend 512+1 with cache':34s} {res['extend_1']['ms']:9.2f} ms        (min {res['extend_1']['min_ms']:.2f})",
        f"  {'cold forward 513':34s} {res['cold_513']['ms']:9.2f} ms        (min {res['cold_513']['min_ms']:.2f}; cold/extend = {res['cold_over_extend']:.1f}x)",
    ]
    if "score" in res:
        lines.append(f"  {'score ' + str(res['score']['paragraphs']) + ' paragraphs, all logits':34s} "
                     f"{res['score']['tokens_per_s']:9.1f} tok/s  ({res['score']['seconds']:.2f} s)")
    emit(lines, out, args.json)


if __name__ == "__main__":
    main()
