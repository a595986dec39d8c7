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

llama.cpp (a child process per round and format, with the llama-cpp-python venv's python, so
that a crash is reported as such and the script goes on): the same GGUF, n_threads = n_threads_batch =
T, n_ctx 1024, n_batch = n_ubatch = 512, its defaults otherwise (KV f16, flash attention auto;
--llama-kv f32 gives it an f32 cache, as quill keeps at f32 weights, for a comparison of the
same bytes read per token),
forward passes only (llama_decode + the last logits), the same prompt ids as quill; the child
loads the file and runs one unmeasured warm-up, then stays up for the round, and each of its
--runs runs (the fastest kept) is the prompt into an empty cache, then the steps after it:
  prompt tokens/s     = P / (one llama_decode of the P-token prompt into an empty cache)
  decode ms/token     = STEPS single-token llama_decode calls after that prompt, per token
When the child crashes in its warm-up (which runs what a measured run does) with llama.cpp's
defaults (this build, on an AVX-512/AMX Xeon, segfaults on multi-token batches of q8_0 and q4_k
weights in its extra CPU buffer types, its own quantizations as well as quill's), it is started
again with use_extra_bufts = false (no repacked weights); the table marks such figures with † and
names the crash, and a format that crashes either way is reported as crashed.

Rounds: --rounds rounds, each going through every dtype. Within a round of one dtype the two
engines alternate run by run: quill's three processes (A, B, C), then one llama.cpp run, --runs
times (llama.cpp first in even rounds), so that drift of the machine (its memory rate moves by
tens of percent within a minute, which both f32 decoders, reading ~500 MB a token, feel in
full) falls on both engines alike instead of on whichever ran in the slow half-minute. After
each llama.cpp run comes one more unmeasured quill process, so that every measured quill
process follows a quill process (a quill process right after a llama.cpp run clears its fresh
pages about 2x slower on this machine). Ratios are within a round:
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
import tempfile
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


def quill_round(args, model_dir, long_text, short_text, runs):
    """One run of quill's three processes (A, B, C), appended to `runs`."""
    runs["A_prompt_1"].append(quill_run(args, model_dir, long_text, 1))
    runs["B_prompt_1_plus_steps"].append(quill_run(args, model_dir, long_text, 1 + args.steps))
    runs["C_short_1"].append(quill_run(args, model_dir, short_text, 1))


def quill_figures(args, runs):
    P, S = args.prompt, args.steps
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

    def one_run():  # the prompt into an empty cache, then the steps after it
        return {"prompt_s": prompt_run(), "decode_s_per_token": steps_run()}

    one_run()  # the warm-up
    print(json.dumps({"ready": True, "load_s": r.load_s}), flush=True)
    for line in sys.stdin:  # one measured run per "run" line, until "quit" or end of input
        if line.strip() != "run":
            break
        print(json.dumps(one_run()), flush=True)
    r.close()


class LlamaChild:
    """A llama.cpp child process for one round of one format: it loads the GGUF and runs one
    unmeasured warm-up, then answers each `run()` with one measured run (the prompt into an
    empty cache, then the decoding steps). Kept alive between runs, so that its runs can
    alternate with quill's processes. `error` is set when it crashed (or never came up);
    `default_crashed`, when this is the second child, started without the extra buffer types
    because the first one crashed."""

    def __init__(self, args, gguf, ids, extra, default_crashed=None):
        cmd = [args.llama_python, str(Path(__file__).resolve()), "--_llama", str(gguf),
               "--ids", json.dumps(ids), "--threads", str(args.threads), "--steps", str(args.steps),
               "--llama-kv", args.llama_kv, *extra]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(args.threads))
        self.extra = extra
        self.ids_len = len(ids)
        self.default_crashed = default_crashed
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                  text=True, env=env)
        self.error = None
        self.runs = {"prompt_s": [], "decode_s_per_token": []}
        hello = self._answer()
        self.load_s = hello["load_s"] if hello else None

    def _answer(self):
        line = self.p.stdout.readline()
        if line:
            return json.loads(line)
        rc = self.p.wait()
        self.error = signal_name(rc) if rc < 0 else f"exit {rc}"
        self.stderr.seek(0)
        log(f"  llama.cpp{' ' + ' '.join(self.extra) if self.extra else ''} failed ({self.error}): "
            f"{self.stderr.read().strip()[-400:]}")
        return None

    def run(self):
        if self.error:
            return
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        got = self._answer()
        if got:
            for k, v in got.items():
                self.runs[k].append(v)

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except BrokenPipeError:  # it has crashed (and said so) or is gone
            pass
        self.p.wait()
        self.stderr.close()

    def figures(self):
        crashed = {"default_crashed": self.default_crashed} if self.default_crashed else {}
        if self.error:
            return {"error": self.error, **crashed}
        return {
            "prompt_tokens_per_s": self.ids_len / min(self.runs["prompt_s"]),
            "decode_ms_per_token": 1e3 * min(self.runs["decode_s_per_token"]),
            **self.runs, "load_s": self.load_s, **crashed,
        }


def llama_start(args, gguf, ids):
    """llama.cpp's child with its defaults, or, when that one crashes in its warm-up (which
    runs what a measured run does), one without the extra buffer types (repacked weights), the
    crash recorded ("default_crashed")."""
    child = LlamaChild(args, gguf, ids, ())
    if child.error:
        child.close()
        child = LlamaChild(args, gguf, ids, ("--no-extra-bufts",), default_crashed=child.error)
    return child


def measure(args, model_dir, long_text, short_text, ids, quill_first):
    """One round of one format: the llama.cpp child comes up (load and warm-up) and quill runs
    one unmeasured warm-up process; then --runs times, quill's three processes and one
    llama.cpp run (followed by an unmeasured quill process) back to back, in the round's order,
    so that the machine's drift (its memory rate moves by tens of percent within a minute)
    falls on both engines alike. The fastest of each kept."""
    llama = llama_start(args, model_dir / "model.gguf", ids)
    # One unmeasured warm-up, as llama.cpp gets: the first process after other work reads the
    # GGUF file from disk (500 MB at f32) and finds the CPU in whatever state it was left in.
    quill_run(args, model_dir, long_text, 1)
    runs = {"A_prompt_1": [], "B_prompt_1_plus_steps": [], "C_short_1": []}
    for _ in range(args.runs):
        for who in ("quill", "llama") if quill_first else ("llama", "quill"):
            if who == "quill":
                quill_round(args, model_dir, long_text, short_text, runs)
            else:
                llama.run()
                # And one unmeasured quill process after it, so that each measured one follows
                # a quill process, as the warm-up has it. A quill process right after a
                # llama.cpp run spent ~2x as long in the kernel clearing its fresh pages (sys
                # 0.32-1.04 s against 0.15-0.24 after a quill process, its prompt pass no
                # slower): that penalty fell on quill's long prompt (A) in every round that
                # ran llama.cpp first, and only there.
                quill_run(args, model_dir, long_text, 1)
    llama.close()
    return {"quill": quill_figures(args, runs), "llama": llama.figures()}


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
            log(f"round {rnd + 1}, {d}: " + ("quill and llama.cpp" if rnd % 2 == 0 else "llama.cpp and quill")
                + f", {args.runs} runs each, alternating ...")
            got = measure(args, dirs[d], long_text, short_text, ids, quill_first=rnd % 2 == 0)
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
