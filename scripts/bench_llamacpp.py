#!/usr/bin/env python3
"""Comparison: llama.cpp (through llama-cpp-python's low-level API) on a GPT-2 checkpoint, CPU.

Converts --checkpoint (a Hugging Face GPT-2 directory: config.json, model.safetensors with or
without the `transformer.` prefix, tied lm_head; tokenizer.json optional) into GGUF files under
--work, in llama.cpp's `gpt2` layout, the way its convert_hf_to_gguf.py does (Conv1D weights
transposed; f16 keeps 1-D tensors and position_embd in f32):
  gpt2-f32.gguf, gpt2-f16.gguf   written directly with gguf.GGUFWriter
  gpt2-q8_0.gguf                 llama_model_quantize(f32 file, LLAMA_FTYPE_MOSTLY_Q8_0)
  gpt2-q4_k.gguf                 llama_model_quantize(f32 file, LLAMA_FTYPE_MOSTLY_Q4_K_S: for
                                 GPT-2 124M 43 Q4_K, 5 Q5_K, token_embd Q6_K; --q4k m for
                                 Q4_K_M, --q4k pure for Q4_K everywhere); the tensor types
                                 are reported
The vocabulary comes from tokenizer.json when it is a BPE one; ids it lacks (or all of them, when
there is none) are filled so that the GGUF has exactly vocab_size tokens. The benchmark feeds
token ids, so the vocabulary only has to load. Files are reused while the checkpoint is
unchanged (work/stamp.json); --force rewrites them.

Then, for each of --dtypes, in a fresh child process (so resident memory is per dtype), with
n_threads = n_threads_batch = --threads, one context (n_ctx 1024, n_batch = n_ubatch = 512,
3 sequences, unified KV cache, llama.cpp's defaults otherwise: f16 K/V, flash attention auto),
logits only for the last token of each sequence, each figure the median of --repeats runs after
one warm-up (the JSON keeps each minimum too):
  prompt_512       tokens/s, one decode of a 512-token prompt into an empty KV cache (cleared
                   before each run)
  decode           ms/token, --steps single-token steps after the 512-token prompt (the steps'
                   tokens are removed from the cache between runs)
  batch3           ms/step, the prompt in sequence 0 copied to sequences 1 and 2 (seq_cp, shared
                   cells), then --steps steps each decoding 3 tokens, one per sequence
  rss / peak_rss   the child's VmRSS / VmHWM (/proc/self/status) after all of the above, MB
                   (baseline_rss: the same before the model was loaded); file: the GGUF's size
Token ids are deterministic: (i*7919 + salt*104729) % vocab.

--check compares each benchmarked file's logits for a 16-token prompt (all positions, and the
last one) with transformers' GPT2LMHeadModel in f32 and prints the max abs difference: as
benchmarked, and for f32 also with f32 K/V and no flash attention (llama.cpp's CPU flash
attention rounds Q and K/V to f16), which isolates the conversion (what remains is mostly
ggml's f16-table GELU).

Timings are wall clock: run it on an otherwise idle machine. ggml's OpenMP workers spin at
every barrier, so with --threads equal to the core count any other busy process (a cargo build)
makes llama.cpp several times slower, far more than it slows a plain loop.

Setup (once; llama-cpp-python on PyPI is a source distribution that vendors llama.cpp and builds
it with CMake, ~12 min on 2 cores; the compilers are the system's gcc/g++, cmake and ninja come
from PyPI):
  /work/venv/bin/pip install cmake ninja scikit-build-core gguf
  CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \\
      /work/venv/bin/pip install --no-build-isolation llama-cpp-python==0.3.36
(Never add `--no-binary :all:`: pip then builds cmake itself from source, for a long time.)

Usage:  /work/venv/bin/python scripts/bench_llamacpp.py --checkpoint DIR [--work DIR]
            [--dtypes f32,f16,q8_0,q4_k] [--threads 2] [--repeats 5] [--steps 32] [--check] [--json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchutil import cpu_name, emit, parse_dtypes

DTYPES = ("f32", "f16", "q8_0", "q4_k")
FORMAT_VERSION = 1  # bump when the GGUF writing changes, so stale files in --work are rewritten
CHECK_TOKENS = 16


def tok_id(i, salt, vocab):
    return (i * 7919 + salt * 104729) % vocab


# --------------------------------------------------------------------------------------------
# conversion (parent process)


def _bytes_to_unicode():
    """GPT-2's byte -> printable character table (as in its encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def build_vocab(ckpt: Path, vocab_size: int, bos_id: int, eos_id: int):
    """(tokens, token_types, merges, description) with exactly vocab_size tokens."""
    import gguf

    T = gguf.TokenType
    tokens = [None] * vocab_size
    types = [T.NORMAL] * vocab_size
    merges = []
    desc = None
    tj = ckpt / "tokenizer.json"
    if tj.is_file():
        try:
            tok = json.loads(tj.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            print(f"warning: unreadable {tj}: {e}; synthesizing a vocabulary", file=sys.stderr)
            tok = {}
        model = tok.get("model") or {}
        if model.get("type") == "BPE" and isinstance(model.get("vocab"), dict):
            seen = set()
            for piece, i in model["vocab"].items():
                if 0 <= i < vocab_size and piece not in seen:
                    tokens[i] = piece
                    seen.add(piece)
            for at in tok.get("added_tokens") or []:
                i, piece = at.get("id", -1), at.get("content")
                if 0 <= i < vocab_size and piece is not None:
                    if tokens[i] is not None and tokens[i] != piece:
                        seen.discard(tokens[i])
                    if piece in seen and tokens[i] != piece:
                        continue
                    tokens[i] = piece
                    seen.add(piece)
                    types[i] = T.CONTROL if at.get("special") else T.USER_DEFINED
            for m in model.get("merges") or []:
                merges.append(m if isinstance(m, str) else " ".join(m))
            have = sum(t is not None for t in tokens)
            desc = f"tokenizer.json BPE, {have} of {vocab_size} ids, {len(merges)} merges"
    if desc is None:
        # A byte-level BPE vocabulary: the 256 byte characters, then two-character tokens with
        # their merges, and an end-of-text token.
        chars = _bytes_to_unicode()
        for b, c in enumerate(chars[:vocab_size]):
            tokens[b] = c
        i = 256
        for a in chars:
            if i >= vocab_size:
                break
            for c in chars:
                if i >= vocab_size:
                    break
                tokens[i] = a + c
                merges.append(f"{a} {c}")
                i += 1
        if 0 <= eos_id < vocab_size:
            tokens[eos_id] = "<|endoftext|>"
            types[eos_id] = T.CONTROL
        desc = f"synthesized byte-level BPE, {vocab_size} ids"
    filled = 0
    for i in range(vocab_size):
        if tokens[i] is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = T.UNUSED
            filled += 1
    if filled and "tokenizer.json" in desc:
        desc += f", {filled} filled as [PAD<i>]"
    if not merges:
        merges = ["Ġ Ġ"]  # llama.cpp requires the key; the list's contents do not matter here
    return tokens, [int(t) for t in types], merges, desc


def load_checkpoint(ckpt: Path):
    """(config dict, {name without 'transformer.': float32 numpy array})."""
    import numpy as np
    from safetensors import safe_open

    cfg = json.loads((ckpt / "config.json").read_text())
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for fn in files:
        with safe_open(str(ckpt / fn), framework="pt") as f:
            for k in f.keys():
                name = k[len("transformer."):] if k.startswith("transformer.") else k
                tensors[name] = f.get_tensor(k).float().numpy().astype(np.float32, copy=False)
    return cfg, tensors


def write_gguf(ckpt: Path, out: Path, dtype: str):
    """The checkpoint as a GGUF in llama.cpp's gpt2 layout, f32 or f16 (like convert_hf_to_gguf)."""
    import numpy as np
    import gguf

    cfg, t = load_checkpoint(ckpt)
    n_embd = cfg["n_embd"]
    n_layer = cfg["n_layer"]
    n_head = cfg["n_head"]
    n_ctx = cfg.get("n_positions") or cfg.get("n_ctx")
    n_ff = cfg.get("n_inner") or 4 * n_embd
    wte = t["wte.weight"]
    vocab = cfg.get("vocab_size") or wte.shape[0]
    if wte.shape != (vocab, n_embd):
        raise SystemExit(f"wte.weight is {wte.shape}, config says vocab {vocab} x n_embd {n_embd}")
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        print(f"warning: activation {act!r}; llama.cpp's gpt2 uses tanh-approximated GELU", file=sys.stderr)
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if cfg.get(flag):
            print(f"warning: config {flag}=true is not modelled by llama.cpp's gpt2", file=sys.stderr)
    if cfg.get("scale_attn_weights") is False:
        print("warning: scale_attn_weights=false is not modelled by llama.cpp's gpt2", file=sys.stderr)

    bos = cfg.get("bos_token_id")
    eos = cfg.get("eos_token_id")
    bos = bos if isinstance(bos, int) and 0 <= bos < vocab else vocab - 1
    eos = eos if isinstance(eos, int) and 0 <= eos < vocab else vocab - 1
    tokens, types, merges, vdesc = build_vocab(ckpt, vocab, bos, eos)

    ftype = gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    tmp = out.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), "gpt2")
    w.add_name(ckpt.resolve().name)
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(int(n_ctx))
    w.add_embedding_length(int(n_embd))
    w.add_feed_forward_length(int(n_ff))
    w.add_block_count(int(n_layer))
    w.add_head_count(int(n_head))
    w.add_layer_norm_eps(float(cfg.get("layer_norm_epsilon", 1e-5)))
    w.add_vocab_size(int(vocab))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(int(bos))
    w.add_eos_token_id(int(eos))
    w.add_add_bos_token(False)

    def add(name, arr, transpose=False):
        if transpose:  # Conv1D [in, out] -> [out, in] (ggml ne = [in, out])
            arr = arr.T
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if dtype == "f16" and arr.ndim == 2 and name != "position_embd.weight":
            arr = arr.astype(np.float16)
        w.add_tensor(name, arr)

    add("token_embd.weight", wte)
    add("position_embd.weight", t["wpe.weight"])
    for i in range(n_layer):
        h = f"h.{i}."
        b = f"blk.{i}."
        add(b + "attn_norm.weight", t[h + "ln_1.weight"])
        add(b + "attn_norm.bias", t[h + "ln_1.bias"])
        add(b + "attn_qkv.weight", t[h + "attn.c_attn.weight"], transpose=True)
        add(b + "attn_qkv.bias", t[h + "attn.c_attn.bias"])
        add(b + "attn_output.weight", t[h + "attn.c_proj.weight"], transpose=True)
        add(b + "attn_output.bias", t[h + "attn.c_proj.bias"])
        add(b + "ffn_norm.weight", t[h + "ln_2.weight"])
        add(b + "ffn_norm.bias", t[h + "ln_2.bias"])
        add(b + "ffn_up.weight", t[h + "mlp.c_fc.weight"], transpose=True)
        add(b + "ffn_up.bias", t[h + "mlp.c_fc.bias"])
        add(b + "ffn_down.weight", t[h + "mlp.c_proj.weight"], transpose=True)
        add(b + "ffn_down.bias", t[h + "mlp.c_proj.bias"])
    add("output_norm.weight", t["ln_f.weight"])
    add("output_norm.bias", t["ln_f.bias"])
    lm = t.get("lm_head.weight")
    if lm is not None and (cfg.get("tie_word_embeddings") is False or not np.array_equal(lm, wte)):
        add("output.weight", lm)  # untied head; llama.cpp falls back to token_embd when absent

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    return vdesc


def tensor_types(path: Path):
    import gguf

    counts = {}
    for ti in gguf.GGUFReader(str(path)).tensors:
        name = ti.tensor_type.name
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def quantize(src: Path, dst: Path, dtype: str, q4k: str, threads: int):
    L = _llama()
    ftype = L.LLAMA_FTYPE_MOSTLY_Q8_0 if dtype == "q8_0" else (
        L.LLAMA_FTYPE_MOSTLY_Q4_K_M if q4k == "m" else L.LLAMA_FTYPE_MOSTLY_Q4_K_S)
    p = L.llama_model_quantize_default_params()
    p.nthread = threads
    p.ftype = ftype
    p.pure = dtype == "q4_k" and q4k == "pure"  # every 2-D tensor Q4_K, no per-tensor mix
    tmp = dst.with_suffix(".tmp")
    rc = L.llama_model_quantize(str(src).encode(), str(tmp).encode(), p)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({src} -> {dtype}) failed: {rc}")
    os.replace(tmp, dst)


def prepare(args):
    """The GGUF files for args.dtypes under args.work (reused while the checkpoint is unchanged)."""
    ckpt = Path(args.checkpoint)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    srcs = [ckpt / "config.json"] + sorted(ckpt.glob("*.safetensors")) + [ckpt / "tokenizer.json"]
    stamp = {"format": FORMAT_VERSION, "checkpoint": str(ckpt.resolve()),
             "files": {p.name: [p.stat().st_size, int(p.stat().st_mtime)] for p in srcs if p.is_file()}}
    stamp_path = work / "stamp.json"
    paths = {d: work / f"gpt2-{d}.gguf" for d in DTYPES}
    old = {}
    if stamp_path.is_file() and not args.force:
        try:
            old = json.loads(stamp_path.read_text())
        except ValueError:
            old = {}
    if {k: v for k, v in old.items() if k not in ("vocab", "q4k")} != stamp:
        for p in paths.values():
            p.unlink(missing_ok=True)
        old = {}
    if old.get("q4k") != args.q4k:
        paths["q4_k"].unlink(missing_ok=True)
    stamp["vocab"] = old.get("vocab")
    stamp["q4k"] = args.q4k
    need = set(args.dtypes)
    if need & {"q8_0", "q4_k"}:
        need.add("f32")  # quantized from the f32 file
    for d in ("f32", "f16"):
        if d in need and not paths[d].is_file():
            t = time.perf_counter()
            stamp["vocab"] = write_gguf(ckpt, paths[d], d)
            log(f"wrote {paths[d]} ({paths[d].stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t:.1f} s; "
                f"vocabulary: {stamp['vocab']})")
    for d in ("q8_0", "q4_k"):
        if d in need and not paths[d].is_file():
            t = time.perf_counter()
            quantize(paths["f32"], paths[d], d, args.q4k, args.threads)
            log(f"wrote {paths[d]} ({paths[d].stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t:.1f} s)")
    stamp_path.write_text(json.dumps(stamp, indent=1))
    return paths, stamp["vocab"]


# --------------------------------------------------------------------------------------------
# llama.cpp (child processes)


_LOG_CB = None


def _llama(verbose=False):
    import llama_cpp.llama_cpp as L

    global _LOG_CB
    if _LOG_CB is None:
        if verbose:
            _LOG_CB = L.llama_log_callback(lambda level, text, user: sys.stderr.write(text.decode(errors="replace")))
        else:
            _LOG_CB = L.llama_log_callback(lambda level, text, user: None)
        L.llama_log_set(_LOG_CB, None)
        L.llama_backend_init()
    return L


def proc_status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) / 1024  # kB -> MB (MiB)
    return out


class Runner:
    def __init__(self, path, args):
        import ctypes

        self.ct = ctypes
        L = self.L = _llama(args.llama_verbose)
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        t = time.perf_counter()
        self.model = L.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {path} (rerun with --llama-verbose)")
        vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = args.ctx
        cp.n_batch = cp.n_ubatch = args.batch
        cp.n_seq_max = 3
        cp.kv_unified = True
        cp.n_threads = cp.n_threads_batch = args.threads
        cp.flash_attn_type = {"auto": -1, "off": 0, "on": 1}[args.flash_attn]
        cp.type_k = cp.type_v = {"f16": 1, "f32": 0}[args.kv_type]  # GGML_TYPE_F16 / GGML_TYPE_F32
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SystemExit("llama_init_from_model failed (rerun with --llama-verbose)")
        self.load_s = time.perf_counter() - t
        self.mem = L.llama_get_memory(self.ctx)
        self.batches = []

    def batch(self, entries, logits_last_per_seq=True, all_logits=False):
        """A llama_batch of (token, pos, seq) entries; logits for each sequence's last entry."""
        L = self.L
        b = L.llama_batch_init(len(entries), 0, 1)
        self.batches.append(b)
        last = {}
        for i, (tok, pos, seq) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if all_logits else 0
            last[seq] = i
        if logits_last_per_seq:
            for i in last.values():
                b.logits[i] = 1
        b.n_tokens = len(entries)
        return b

    def decode(self, b):
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise SystemExit(f"llama_decode failed: {rc}")
        self.L.llama_synchronize(self.ctx)

    def logits(self, i):
        import numpy as np

        p = self.L.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(p, shape=(self.n_vocab,)).copy()

    def close(self):
        for b in self.batches:
            self.L.llama_batch_free(b)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def child_bench(path, args):
    base = proc_status()
    r = Runner(path, args)
    L, mem, V, P, S = r.L, r.mem, r.n_vocab, args.prompt, args.steps
    prompt = r.batch([(tok_id(i, 0, V), i, 0) for i in range(P)])
    step1 = [r.batch([(tok_id(s, 1, V), P + s, 0)]) for s in range(S)]
    step3 = [r.batch([(tok_id(s, 1 + q, V), P + s, q) for q in range(3)]) for s in range(S)]
    mins = {}

    def median_of(fn, key):
        fn()  # warm-up
        xs = [fn() for _ in range(args.repeats)]
        mins[key] = min(xs)
        return statistics.median(xs)

    def prompt_run():
        L.llama_memory_clear(mem, True)
        t = time.perf_counter()
        r.decode(prompt)
        r.L.llama_get_logits_ith(r.ctx, -1)
        return time.perf_counter() - t

    def steps_run(batches, n_seq):
        t = time.perf_counter()
        for b in batches:
            r.decode(b)
            r.L.llama_get_logits_ith(r.ctx, -1)
        dt = (time.perf_counter() - t) / len(batches)
        for q in range(n_seq):
            if not L.llama_memory_seq_rm(mem, q, P, -1):
                raise SystemExit("llama_memory_seq_rm failed")
        return dt

    res = {}
    s = median_of(prompt_run, "prompt")
    res[f"prompt_{P}_tokens_per_s"] = P / s
    res[f"prompt_{P}_ms"] = 1e3 * s
    res[f"prompt_{P}_min_ms"] = 1e3 * mins["prompt"]

    L.llama_memory_clear(mem, True)
    r.decode(prompt)
    res["decode_ms_per_token"] = 1e3 * median_of(lambda: steps_run(step1, 1), "decode")
    res["decode_min_ms_per_token"] = 1e3 * mins["decode"]

    L.llama_memory_clear(mem, True)
    r.decode(prompt)
    for q in (1, 2):
        L.llama_memory_seq_cp(mem, 0, q, -1, -1)
    res["batch3_ms_per_step"] = 1e3 * median_of(lambda: steps_run(step3, 3), "batch3")
    res["batch3_min_ms_per_step"] = 1e3 * mins["batch3"]
    res["batch3_ms_per_token"] = res["batch3_ms_per_step"] / 3

    st = proc_status()
    res.update({
        "rss_mb": st["VmRSS"], "peak_rss_mb": st["VmHWM"],
        "rss_anon_mb": st.get("RssAnon"), "rss_file_mb": st.get("RssFile"),
        "baseline_rss_mb": base["VmRSS"], "load_s": r.load_s,
        "model_size_mb": L.llama_model_size(r.model) / 2**20,
    })
    r.close()
    return res


def child_check(path, args):
    r = Runner(path, args)
    V = r.n_vocab
    n = CHECK_TOKENS
    b = r.batch([(tok_id(i, 3, V), i, 0) for i in range(n)], all_logits=True)
    r.decode(b)
    import numpy as np

    out = np.stack([r.logits(i) for i in range(n)])
    np.save(args.check_out, out)
    r.close()
    return {"tokens": n}


# --------------------------------------------------------------------------------------------
# parent


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_child(args, mode, dtype, path, extra=()):
    cmd = [sys.executable, os.path.abspath(__file__), f"--_{mode}", str(path),
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--steps", str(args.steps),
           "--prompt", str(args.prompt), "--ctx", str(args.ctx), "--batch", str(args.batch),
           "--flash-attn", args.flash_attn, "--kv-type", args.kv_type, *extra]
    if args.llama_verbose:
        cmd.append("--llama-verbose")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{mode} child for {dtype} failed with exit code {p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def reference_logits(ckpt, n):
    import torch
    import transformers
    from transformers import GPT2LMHeadModel

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    model = GPT2LMHeadModel.from_pretrained(ckpt, dtype=torch.float32).eval()
    V = model.config.vocab_size
    ids = torch.tensor([[tok_id(i, 3, V) for i in range(n)]])
    with torch.inference_mode():
        return model(input_ids=ids).logits[0].numpy()


def build_info():
    import ctypes

    import llama_cpp

    info = {"llama_cpp_python": llama_cpp.__version__}
    L = _llama()
    try:
        info["llama_cpp_version"] = L.llama_version().decode()
    except (AttributeError, OSError):
        pass
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
        for fn in ("ggml_version", "ggml_commit"):
            f = getattr(lib, fn)
            f.restype = ctypes.c_char_p
            info[fn] = f().decode()
    except (AttributeError, OSError):
        pass
    info["system_info"] = L.llama_print_system_info().decode().strip(" |")
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="Hugging Face GPT-2 checkpoint directory")
    ap.add_argument("--work", default="target/bench-llamacpp", help="where the GGUF files go")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated subset of " + ",".join(DTYPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=32, help="decode steps per repeat")
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens")
    ap.add_argument("--ctx", type=int, default=1024, help="n_ctx (cells shared by the 3 sequences)")
    ap.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch")
    ap.add_argument("--q4k", default="s", choices=["s", "m", "pure"],
                    help="q4_k as Q4_K_S (default), Q4_K_M, or Q4_K_S with pure=true (all Q4_K)")
    ap.add_argument("--flash-attn", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--kv-type", default="f16", choices=["f16", "f32"], help="K/V cache type")
    ap.add_argument("--check", action="store_true", help="compare logits with transformers (f32)")
    ap.add_argument("--force", action="store_true", help="rewrite the GGUF files")
    ap.add_argument("--llama-verbose", action="store_true", help="show llama.cpp's log")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    ap.add_argument("--_bench", help=argparse.SUPPRESS)
    ap.add_argument("--_check", help=argparse.SUPPRESS)
    ap.add_argument("--check-out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._bench:
        print(json.dumps(child_bench(args._bench, args)))
        return
    if args._check:
        print(json.dumps(child_check(args._check, args)))
        return

    if not args.checkpoint:
        ap.error("--checkpoint is required")
    args.dtypes = parse_dtypes(ap, args.dtypes, DTYPES)
    cfg = json.loads((Path(args.checkpoint) / "config.json").read_text())
    n_pos = cfg.get("n_positions") or cfg.get("n_ctx")
    if args.prompt + args.steps > n_pos:
        ap.error(f"prompt + steps = {args.prompt + args.steps} exceeds the model's {n_pos} positions")
    if args.prompt + 3 * args.steps > args.ctx:
        ap.error(f"--ctx {args.ctx} is below prompt + 3*steps = {args.prompt + 3 * args.steps}")

    paths, vdesc = prepare(args)
    meta = build_info()
    meta.update({
        "threads": args.threads, "repeats": args.repeats, "decode_steps": args.steps,
        "prompt_tokens": args.prompt, "n_ctx": args.ctx, "n_batch": args.batch, "n_ubatch": args.batch,
        "n_seq_max": 3, "kv_unified": True, "kv_type": args.kv_type, "flash_attn": args.flash_attn,
        "logits": "last per sequence",
        "q4_k": "LLAMA_FTYPE_MOSTLY_Q4_K_M" if args.q4k == "m" else
                "LLAMA_FTYPE_MOSTLY_Q4_K_S" + (" pure" if args.q4k == "pure" else ""),
        "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "quantized_from": "f32",
        "checkpoint": str(Path(args.checkpoint).resolve()), "vocabulary": vdesc,
        "n_layer": cfg.get("n_layer"), "n_embd": cfg.get("n_embd"), "vocab_size": cfg.get("vocab_size"),
        "cpu": cpu_name(),
    })

    ref = None
    if args.check:
        import numpy as np

        ref = reference_logits(args.checkpoint, CHECK_TOKENS)

    results = {}
    for d in args.dtypes:
        log(f"{d}: benchmarking {paths[d].name} ...")
        res = run_child(args, "bench", d, paths[d])
        res["file_mb"] = paths[d].stat().st_size / 2**20
        res["tensor_types"] = tensor_types(paths[d])
        if ref is not None:
            # as benchmarked, and (f32 only) with llama.cpp's exact path: f32 K/V, no flash attention
            for tag, over in (("", {}), ("exact_", {"kv_type": "f32", "flash_attn": "off"})):
                if tag and d != "f32":
                    continue
                out = Path(args.work) / f"check-{d}.npy"
                run_child(argparse.Namespace(**{**vars(args), **over}), "check", d, paths[d],
                          ("--check-out", str(out)))
                got = np.load(out)
                out.unlink(missing_ok=True)
                res[f"check_{tag}max_abs_diff_all"] = float(np.abs(got - ref).max())
                res[f"check_{tag}max_abs_diff_last"] = float(np.abs(got[-1] - ref[-1]).max())
                res[f"check_{tag}argmax_agree"] = int((got.argmax(-1) == ref.argmax(-1)).sum())
            res["check_max_abs_logit"] = float(np.abs(ref).max())
        results[d] = res

    out = {"meta": meta, "results": results}
    P = args.prompt
    lines = [
        f"llama.cpp {meta.get('ggml_commit', '?')} via llama-cpp-python {meta['llama_cpp_python']}, "
        f"{args.threads} threads, median of {args.repeats}, KV {args.kv_type}, flash-attn {args.flash_attn}",
        f"  cpu: {meta['cpu']}",
        f"  checkpoint: {meta['checkpoint']} ({meta['n_layer']} layers, {meta['n_embd']} wide, vocab {meta['vocab_size']})",
        f"  q4_k = {meta['q4_k']}",
        f"  {'dtype':6s} {'prompt ' + str(P):>12s} {'decode':>10s} {'batch3':>10s} {'rss':>8s} {'peak':>8s} {'file':>8s}",
        f"  {'':6s} {'tok/s':>12s} {'ms/tok':>10s} {'ms/step':>10s} {'MB':>8s} {'MB':>8s} {'MB':>8s}",
    ]
    for d, r in results.items():
        lines.append(f"  {d:6s} {r[f'prompt_{P}_tokens_per_s']:12.1f} {r['decode_ms_per_token']:10.2f} "
                     f"{r['batch3_ms_per_step']:10.2f} {r['rss_mb']:8.1f} {r['peak_rss_mb']:8.1f} {r['file_mb']:8.1f}")
    lines.append(f"  (child baseline rss before loading: "
                 + ", ".join(f"{d} {r['baseline_rss_mb']:.0f}" for d, r in results.items()) + " MB)")
    for d, r in results.items():
        lines.append(f"  {d} tensors: " + ", ".join(f"{k} {v}" for k, v in r["tensor_types"].items()))
    if ref is not None:
        lines.append(f"  logits vs transformers f32, {CHECK_TOKENS}-token prompt, max |diff| "
                     f"(max |logit| {next(iter(results.values()))['check_max_abs_logit']:.3g}):")
        for d, r in results.items():
            for tag, what in (("", f"KV {args.kv_type}, flash-attn {args.flash_attn}"),
                              ("exact_", "KV f32, flash-attn off")):
                if f"check_{tag}max_abs_diff_last" in r:
                    lines.append(f"    {d:5s} ({what:26s}) last token {r[f'check_{tag}max_abs_diff_last']:.2e}, "
                                 f"all positions {r[f'check_{tag}max_abs_diff_all']:.2e}, "
                                 f"argmax agrees {r[f'check_{tag}argmax_agree']}/{CHECK_TOKENS}")
    emit(lines, out, args.json)


if __name__ == "__main__":
    main()
