#!/usr/bin/env python3
"""Baseline: transformers T5 (exact google-t5/t5-small shapes, random init, no download) on the CPU, f32.

t5-small shapes: d_model 512, d_kv 64, d_ff 2048, 6 encoder + 6 decoder layers, 8 heads,
vocab 32128, ReLU feed-forward, lm_head tied to `shared` (decoder output scaled by d_model**-0.5).

Measures, each as the median of --repeats runs (after one warm-up):
  encode   ms, the encoder over a --input-tokens (512) token input (random ids ending in </s>)
  decode   ms, exactly --steps (60) greedy decoder steps from [decoder_start_token_id] with the
           KV cache (self-attention cache grows, cross-attention K/V computed once), argmax each
           step, EOS ignored so every repeat does the same work
  total    ms, encode + decode in one run
and reports decode ms/token. Timings are wall clock: run it on an otherwise idle machine (the JSON
keeps each minimum too; a median far above the min means the run was disturbed).

Usage:  /work/venv/bin/python scripts/bench_t5_pytorch.py [--threads 2] [--repeats 3] [--json]
"""

import argparse
import os
import statistics
import time

from benchutil import cpu_name, emit


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--input-tokens", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60, help="greedy decode steps (EOS ignored)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import transformers
    from transformers import T5Config, T5ForConditionalGeneration

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()

    cfg = T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                   num_decoder_layers=6, num_heads=8, relative_attention_num_buckets=32,
                   relative_attention_max_distance=128, feed_forward_proj="relu",
                   tie_word_embeddings=True, pad_token_id=0, eos_token_id=1,
                   decoder_start_token_id=0)
    cfg._attn_implementation = args.attn
    model = T5ForConditionalGeneration(cfg).eval().float()
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 32000, (1, args.input_tokens), generator=g)
    ids[0, -1] = cfg.eos_token_id  # T5 inputs end in </s>
    mask = torch.ones_like(ids)
    start = torch.tensor([[cfg.decoder_start_token_id]])

    import inspect
    # transformers >= 5.2x renamed past_key_values -> cache (argument and output field)
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def encode():
        return model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state

    def decode(enc):
        past = None
        tok = start
        out_ids = []
        for _ in range(args.steps):
            out = model(encoder_outputs=(enc,), attention_mask=mask, decoder_input_ids=tok,
                        use_cache=True, **{cache_kw: past})
            keys = out.keys()
            past = out["cache"] if "cache" in keys else out["past_key_values"]
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            out_ids.append(int(tok))
        assert len(out_ids) == args.steps
        return out_ids

    def run():
        t0 = time.perf_counter()
        enc = encode()
        t1 = time.perf_counter()
        decode(enc)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, t2 - t0

    with torch.inference_mode():
        run()  # warm-up
        runs = [run() for _ in range(args.repeats)]

    def stat(i):
        xs = [r[i] * 1e3 for r in runs]
        return {"ms": statistics.median(xs), "min_ms": min(xs), "all_ms": xs}

    res = {"encode": stat(0), "decode": stat(1), "total": stat(2)}
    res["decode"]["ms_per_token"] = res["decode"]["ms"] / args.steps
    res["encode"]["tokens_per_s"] = args.input_tokens / (res["encode"]["ms"] / 1e3)

    meta = {
        "torch": torch.__version__, "transformers": transformers.__version__,
        "threads": args.threads, "repeats": args.repeats, "input_tokens": args.input_tokens,
        "decode_steps": args.steps, "attn": args.attn, "params": n_params, "dtype": "float32",
        "model": "t5-small shapes (random init)", "cpu": cpu_name(),
    }
    out = {"meta": meta, "results": res}
    lines = [
        f"transformers {meta['transformers']} / torch {meta['torch']}, T5-small shapes "
        f"({n_params / 1e6:.1f}M params), f32, {args.threads} threads, attn={args.attn}, "
        f"median of {args.repeats}",
        f"  cpu: {meta['cpu']}",
        f"  {'encode ' + str(args.input_tokens) + ' tokens':28s} {res['encode']['ms']:9.1f} ms  "
        f"(min {res['encode']['min_ms']:.1f}; {res['encode']['tokens_per_s']:.0f} tok/s)",
        f"  {'greedy decode ' + str(args.steps) + ' tokens':28s} {res['decode']['ms']:9.1f} ms  "
        f"(min {res['decode']['min_ms']:.1f}; {res['decode']['ms_per_token']:.2f} ms/token)",
        f"  {'total':28s} {res['total']['ms']:9.1f} ms  (min {res['total']['min_ms']:.1f})",
    ]
    emit(lines, out, args.json)


if __name__ == "__main__":
    main()
