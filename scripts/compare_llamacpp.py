#!/usr/bin/env python3
"""quill against llama.cpp on the same GGUF file, every weight format, CPU (issue 17's measurement).

For each of --dtypes, `quill quantize --model CHECKPOINT --dtype D WORK/D` writes a model
directory; its WORK/D/model.gguf is what both engines read (quill as `--model WORK/D`, llama.cpp
through llama-cpp-python's low-level API). CHECKPOINT is the random 124M-shaped GPT-2 one:
    cargo bench --bench engine -- --save-checkpoint target/gpt2-124m-random

quill is timed as whole `quill complete` processes (--threads T, --temperature 0, --json), load
cancelled out by differences; after one unmeasured warm-up process (the long prompt), every
configuration is run --runs times and the fastest is kept:
  A  the long prompt (--prompt ids: BOS + text cut at a token boundary), --max-tokens 1
  B  the long prompt, --max-tokens 1+STEPS
  C  a short prompt (BOS + 1 token), --max-tokens 1
  decode ms/token     = (B - A) / STEPS     (STEPS forward passes at positions P .. P+STEPS-1)
  prompt tokens/s     = (P - 2) / (A - C)   (the marginal rate of the long prompt's extra tokens)
Each run's --json output is checked: exactly --max-tokens tokens generated (no stop at EOS).

llama.cpp (a child process per measurement, with the llama-cpp-python venv's python, so that a
crash is reported as such and the script goes on): the same GGUF, n_threads = n_threads_batch =
T, n_ctx 1024, n_batch = n_ubatch = 512, its defaults otherwise (KV f16, flash attention auto;
--llama-kv f32 gives it an f32 cache, as quill keeps at f32 weights, for a comparison of the
same bytes read per token),
forward passes only (llama_decode + the last logits), the same prompt ids as quill; one warm-up,
then the fastest of --runs:
  prompt tokens/s     = P / (one llama_decode of the P-token prompt into an empty cache)
  decode ms/token     = STEPS single-token llama_decode calls after that prompt, per token
When the child crashes with llama.cpp's defaults (this build, on an AVX-512/AMX Xeon, segfaults
on multi-token batches of q8_0 and q4_k weights in its extra CPU buffer types, its own
quantizations as well as quill's), it is run again
with use_extra_bufts = false (no repacked weights); the table marks such figures with † and
names the crash, and a format that crashes either way is reported as crashed.

Rounds: --rounds rounds, each going through every dtype, quill and llama.cpp back to back (quill
first in odd rounds, llama.cpp first in even ones), so that drift of the machine shows as a
difference between rounds rather than between the two engines. Ratios are within a round:
  decode: quill time / llama.cpp time (below 1: quill faster)
  prompt: quill rate / llama.cpp rate (above 1: quill faster)

Timings are wall clock: run it on an otherwise idle machine (no build: ggml's OpenMP workers
spin at barriers and slow down far more than quill under load).

Usage:  python3 scripts/compare_llamacpp.py --checkpoint DIR [--work target/compare-llamacpp]
            [--quill target/release/quill] [--llama-python PY] [--dtypes f32,f16,q8_0,q4_k]
            [--threads 2] [--rounds 2] [--runs 3] [--steps 128] [--prompt 511] [--json]
The llama.cpp python defaults to `scripts/llama_server.sh python` (llama-cpp-python 0.3.36,
built by `scripts/llama_server.sh install`).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchutil import cpu_name, emit, parse_dtypes

HERE = Path(__file__).resolve().parent
DTYPES = ("f32", "f16", "q8_0", "q4_k")
# Plain prose, repeated as needed; only its token count matters (the weights are random).
PROSE = (
    "The river ran past the old mill where the children used to play on summer evenings. "
    "Nobody remembered who had built the wall along the road, but every spring the farmers "
    "mended it with stones from the field, and the town kept a record of each repair. "
    "In the morning the market opened early, and the baker sold bread to the people walking "
    "to work while the sun came up over the hills behind the church. "
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def signal_name(rc):
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


# --------------------------------------------------------------------------------------------
# quill (whole processes)


class StoppedEarly(Exception):
    pass


def quill_run(args, model_dir, prompt, max_tokens):
    """Seconds for one `quill complete` process; checks it generated max_tokens tokens."""
    cmd = [args.quill, "complete", "--model", str(model_dir), "--threads", str(args.threads),
           "--temperature", "0", "--max-tokens", str(max_tokens), "--json", "-"]
    t = time.perf_counter()
    p = subprocess.run(cmd, input=prompt, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    got = len(json.loads(p.stdout)["completions"][0]["tokens"])
    if got != max_tokens:
        raise StoppedEarly(f"{model_dir}: {got} tokens generated, not {max_tokens}")
    return dt


def quill_measure(args, model_dir, long_text, short_text):
    P, S = args.prompt, args.steps
    runs = {"A_prompt_1": [], "B_prompt_1_plus_steps": [], "C_short_1": []}
    # One unmeasured warm-up, as llama.cpp gets: the first process after other work reads the
    # GGUF file from disk (500 MB at f32) and finds the CPU in whatever state it was left in.
    quill_run(args, model_dir, long_text, 1)
    for _ in range(args.runs):  # interleaved, so drift hits the three alike
        runs["A_prompt_1"].append(quill_run(args, model_dir, long_text, 1))
        runs["B_prompt_1_plus_steps"].append(quill_run(args, model_dir, long_text, 1 + S))
        runs["C_short_1"].append(quill_run(args, model_dir, short_text, 1))
    a, b, c = (min(v) for v in runs.values())
    return {
        "decode_ms_per_token": 1e3 * (b - a) / S,
        "prompt_tokens_per_s": (P - 2) / (a - c),
        "process_s": {k: v for k, v in runs.items()},
        "fastest_s": {"A": a, "B": b, "C": c},
    }


def quill_ids(args, model_dir, text):
    """The text's tokens as quill reads them (`quill score --json`: id, start, end; BOS not
    listed)."""
    p = subprocess.run([args.quill, "score", "--model", str(model_dir), "--threads", str(args.threads),
                        "--json", "-"], input=text, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(p.stdout)["tokens"]


def make_prompts(args, dirs):
    """(long text, its ids with BOS in front, short text): the long text is --prompt - 1 tokens
    (with BOS, --prompt ids), the short one 1 token (2 ids). The long one is chosen so that
    every dtype's greedy continuation runs --steps + 1 tokens without EOS (checked here, untimed;
    this also brings each file into the page cache)."""
    model_dir = dirs[args.dtypes[0]]
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    bos = cfg["bos_token_id"]
    want = args.prompt - 1
    words = (PROSE * (1 + 4 * args.prompt // len(PROSE))).split(" ")
    for shift in range(16):  # start a word later until the cut is stable and nothing stops early
        text = " ".join(words[shift:])
        toks = quill_ids(args, model_dir, text)
        long_text = text[:toks[want - 1]["end"]]
        got = quill_ids(args, model_dir, long_text)
        if [t["id"] for t in got] != [t["id"] for t in toks[:want]]:
            continue
        short_text = text[:toks[0]["end"]]
        if len(quill_ids(args, model_dir, short_text)) != 1:
            continue
        try:
            for d in args.dtypes:
                quill_run(args, dirs[d], long_text, 1 + args.steps)
                quill_run(args, dirs[d], short_text, 1)
        except StoppedEarly as e:
            log(f"prompt variant {shift}: {e}; trying another")
            continue
        return long_text, [bos] + [t["id"] for t in got], short_text
    raise SystemExit(f"found no prompt of {want} tokens that every dtype continues for {args.steps + 1} tokens")


# --------------------------------------------------------------------------------------------
# llama.cpp (child process, the venv's python)


def child_llama(args):
    sys.path.insert(0, str(HERE))
    import bench_llamacpp
    from bench_llamacpp import Runner, tok_id

    if args.no_extra_bufts:
        # ggml's extra CPU buffer types (repacked weights, AMX) off: with them this build crashes
        # on multi-token batches of quantized weights on this machine.
        L0 = bench_llamacpp._llama()
        default_params = L0.llama_model_default_params

        def params():
            p = default_params()
            p.use_extra_bufts = False
            return p

        L0.llama_model_default_params = params

    ids = json.loads(args.ids)
    P, S = len(ids), args.steps
    ns = argparse.Namespace(llama_verbose=False, ctx=1024, batch=512, threads=args.threads,
                            flash_attn="auto", kv_type=args.llama_kv)
    r = Runner(args._llama, ns)
    L, mem, V = r.L, r.mem, r.n_vocab
    prompt = r.batch([(t, i, 0) for i, t in enumerate(ids)])
    steps = [r.batch([(tok_id(s, 1, V), P + s, 0)]) for s in range(S)]

    def prompt_run():
        L.llama_memory_clear(mem, True)
        t = time.perf_counter()
        r.decode(prompt)
        L.llama_get_logits_ith(r.ctx, -1)
        return time.perf_counter() - t

    def steps_run():
        t = time.perf_counter()
        for b in steps:
            r.decode(b)
            L.llama_get_logits_ith(r.ctx, -1)
        dt = (time.perf_counter() - t) / S
        if not L.llama_memory_seq_rm(mem, 0, P, -1):
            raise SystemExit("llama_memory_seq_rm failed")
        return dt

    prompt_s = [prompt_run() for _ in range(1 + args.runs)][1:]
    L.llama_memory_clear(mem, True)
    r.decode(prompt)
    decode_s = [steps_run() for _ in range(1 + args.runs)][1:]
    out = {
        "prompt_tokens_per_s": P / min(prompt_s),
        "decode_ms_per_token": 1e3 * min(decode_s),
        "prompt_s": prompt_s, "decode_s_per_token": decode_s, "load_s": r.load_s,
    }
    r.close()
    return out


def llama_measure(args, gguf, ids):
    """llama.cpp's figures: with its defaults, or, when that child crashes, again without the
    extra buffer types (repacked weights), the crash recorded ("default_crashed")."""
    got = llama_child(args, gguf, ids, ())
    if "error" in got:
        again = llama_child(args, gguf, ids, ("--no-extra-bufts",))
        again["default_crashed"] = got["error"]
        return again
    return got


def llama_child(args, gguf, ids, extra):
    cmd = [args.llama_python, str(Path(__file__).resolve()), "--_llama", str(gguf),
           "--ids", json.dumps(ids), "--threads", str(args.threads), "--steps", str(args.steps),
           "--runs", str(args.runs), "--llama-kv", args.llama_kv, *extra]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        why = signal_name(p.returncode) if p.returncode < 0 else f"exit {p.returncode}"
        log(f"  llama.cpp{' ' + ' '.join(extra) if extra else ''} on {gguf} failed ({why}): {p.stderr.strip()[-400:]}")
        return {"error": why}
    return json.loads(p.stdout.strip().splitlines()[-1])


def llama_info(args):
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); "
            "from bench_llamacpp import build_info; print(json.dumps(build_info()))")
    p = subprocess.run([args.llama_python, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True)
    return json.loads(p.stdout) if p.returncode == 0 else {"error": f"exit {p.returncode}"}


# --------------------------------------------------------------------------------------------
# parent


def prepare(args):
    """WORK/<dtype>/ model directories from `quill quantize` (rewritten when the checkpoint is
    newer)."""
    ckpt = Path(args.checkpoint)
    newest = max(p.stat().st_mtime for p in ckpt.iterdir() if p.is_file())
    dirs = {}
    for d in args.dtypes:
        out = Path(args.work) / d
        gguf = out / "model.gguf"
        if not gguf.is_file() or gguf.stat().st_mtime < newest:
            log(f"{d}: quill quantize -> {out}")
            subprocess.run([args.quill, "quantize", "--model", str(ckpt), "--dtype", d,
                            "--threads", str(args.threads), str(out)], check=True,
                           stdout=subprocess.DEVNULL)
        dirs[d] = out
    return dirs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="the GPT-2 checkpoint directory (cargo bench --bench engine -- --save-checkpoint DIR)")
    ap.add_argument("--work", default="target/compare-llamacpp", help="where the quantized model directories go")
    ap.add_argument("--quill", default="target/release/quill", help="the quill binary")
    ap.add_argument("--llama-python", help="python with llama_cpp (default: scripts/llama_server.sh python)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated subset of " + ",".join(DTYPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure; the fastest is kept")
    ap.add_argument("--steps", type=int, default=128, help="decode steps")
    ap.add_argument("--prompt", type=int, default=511, help="prompt ids, BOS included")
    ap.add_argument("--llama-kv", default="f16", choices=["f16", "f32"],
                    help="llama.cpp's K/V cache type: f16 (its default) or f32 (quill's cache at f32 "
                         "weights: the same bytes read per token)")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    ap.add_argument("--_llama", help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    ap.add_argument("--no-extra-bufts", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._llama:
        print(json.dumps(child_llama(args)))
        return
    if not args.checkpoint:
        ap.error("--checkpoint is required")
    args.dtypes = parse_dtypes(ap, args.dtypes, DTYPES)
    if args.prompt + args.steps > 1024:
        ap.error("prompt + steps exceed the model's 1024 positions")
    if args.prompt > 512:
        ap.error("--prompt is at most 512 (one llama.cpp batch)")
    if not args.llama_python:
        p = subprocess.run([str(HERE / "llama_server.sh"), "python"], stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise SystemExit("no llama-cpp-python venv: run scripts/llama_server.sh install, or pass --llama-python")
        args.llama_python = p.stdout.strip()

    dirs = prepare(args)
    long_text, ids, short_text = make_prompts(args, dirs)
    version = subprocess.run([args.quill, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True).stdout.strip()
    if commit:
        version += f" (commit {commit})"
    meta = {
        "quill": version, "llama": llama_info(args), "cpu": cpu_name(), "threads": args.threads,
        "rounds": args.rounds, "runs": args.runs, "llama_kv": args.llama_kv, "decode_steps": args.steps,
        "prompt_ids": len(ids), "short_prompt_ids": 2,
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "files_mb": {d: (dirs[d] / "model.gguf").stat().st_size / 2**20 for d in args.dtypes},
    }
    results = {d: [] for d in args.dtypes}
    for rnd in range(args.rounds):
        for d in args.dtypes:
            gguf = dirs[d] / "model.gguf"
            order = ("quill", "llama") if rnd % 2 == 0 else ("llama", "quill")
            got = {}
            for who in order:
                log(f"round {rnd + 1}, {d}: {who} ...")
                if who == "quill":
                    got[who] = quill_measure(args, dirs[d], long_text, short_text)
                else:
                    got[who] = llama_measure(args, gguf, ids)
            q, l = got["quill"], got["llama"]
            log(f"  quill decode {q['decode_ms_per_token']:.2f} ms/token, prompt {q['prompt_tokens_per_s']:.0f} tokens/s; "
                + ("llama.cpp " + (f"decode {l['decode_ms_per_token']:.2f} ms/token, prompt {l['prompt_tokens_per_s']:.0f} tokens/s"
                                   if "error" not in l else f"crashed ({l['error']})")))
            results[d].append(got)

    P = len(ids)
    lines = [
        f"| dtype | decode ms/token, quill / llama.cpp time (round " + ", ".join(str(i + 1) for i in range(args.rounds))
        + f") | prompt {P} tokens/s, quill / llama.cpp rate (round " + ", ".join(str(i + 1) for i in range(args.rounds)) + ") |",
        "| --- | --- | --- |",
    ]
    crashed = set()
    for d in args.dtypes:
        dec, pro = [], []
        for got in results[d]:
            q, l = got["quill"], got["llama"]
            if "error" in l:
                dec.append(f"{q['decode_ms_per_token']:.1f} / llama.cpp crashed ({l['error']})")
                pro.append(f"{q['prompt_tokens_per_s']:.0f} / llama.cpp crashed ({l['error']})")
                continue
            mark = "†" if "default_crashed" in l else ""
            crashed.update([l["default_crashed"]] if mark else [])
            dec.append(f"{q['decode_ms_per_token']:.1f} / {l['decode_ms_per_token']:.1f}{mark} = "
                       f"**{q['decode_ms_per_token'] / l['decode_ms_per_token']:.2f}x**")
            pro.append(f"{q['prompt_tokens_per_s']:.0f} / {l['prompt_tokens_per_s']:.0f}{mark} = "
                       f"**{q['prompt_tokens_per_s'] / l['prompt_tokens_per_s']:.2f}x**")
        lines.append(f"| {d} | " + "; ".join(dec) + " | " + "; ".join(pro) + " |")
    lines.append("")
    if crashed:
        lines.append(f"† llama.cpp with its defaults crashed on this file ({', '.join(sorted(crashed))}); "
                     "the figure is llama.cpp without its extra CPU buffer types (`use_extra_bufts = false`: "
                     "no repacked weights).")
    lines.append(f"{meta['quill']}; llama.cpp {meta['llama'].get('ggml_commit', '?')} via llama-cpp-python "
                 f"{meta['llama'].get('llama_cpp_python', '?')}, KV cache {args.llama_kv}; "
                 f"{args.threads} threads each; {meta['cpu']}; decode {args.steps} steps after the "
                 f"{P}-id prompt; each figure the fastest of {args.runs} runs")
    emit(lines, {"meta": meta, "results": results}, args.json)


if __name__ == "__main__":
    main()
