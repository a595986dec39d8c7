#!/usr/bin/env python3
"""Make the tiny GPT-2 test fixtures for quill and record transformers' reference outputs.

Writes, under tests/fixtures/ (or --out):

  gpt2-tiny/       config.json, model.safetensors (save_pretrained: `transformer.`-prefixed keys,
                   lm_head tied to wte and not stored), tokenizer.json, generation_config.json,
                   reference.json
  gpt2-tiny-bare/  a different shape, saved in the hub's openai-community/gpt2 spelling: keys
                   without the `transformer.` prefix, no lm_head.weight, no `h.N.attn.bias`
                   causal-mask buffers; config.json, model.safetensors, tokenizer.json,
                   reference.json

Everything is deterministic: the tokenizer is trained on the corpus below, weights come from a
seeded torch.Generator, references are computed in float32 with eager attention. Re-running the
script rewrites identical files (same library versions).

Usage:  /work/venv/bin/python scripts/make_fixtures.py [--out tests/fixtures]
"""

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

# Keep CPU use modest and the BPE trainer deterministic.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

EOT = "<|endoftext|>"
VOCAB_SIZE = 1000  # BPE vocabulary (bytes + merges); <|endoftext|> is added after it, as the last id
GREEDY_STEPS = 24
FIRST_ROWS = 8  # logits_first_rows keeps this many vocab entries per position

# ---------------------------------------------------------------------------------------------
# Training corpus (written for this repository; plain prose plus a little code).
# ---------------------------------------------------------------------------------------------
CORPUS = [
    "The river ran slowly past the old mill, and the children who lived in the village would "
    "sit on the stone wall in the evening to watch the light fade over the water. Nobody could "
    "remember when the wheel had last turned, but everyone agreed that it had once been the "
    "busiest place in the valley.",
    "When you write a letter to someone you have not seen for a long time, it is tempting to "
    "begin with an apology. A better opening is a simple question about their life, because it "
    "shows that you are still interested in who they are now, not only in who they used to be.",
    "The committee met on Tuesday morning to discuss the budget for the coming year. After two "
    "hours of debate, the members decided to spend more on the library and less on new signs "
    "for the town hall. The mayor said she was pleased with the result.",
    "Bread is one of the oldest prepared foods. Flour, water, salt and yeast are mixed into a "
    "dough, which is left to rise, shaped, and baked in a hot oven. The crust turns brown "
    "because sugars and proteins react at high temperature.",
    "It was raining when the train arrived at the station. She picked up her bag, stepped onto "
    "the platform, and looked for the man who had promised to meet her. He was nowhere to be "
    "seen, so she bought a cup of tea and waited under the clock.",
    "A good teacher does not simply give answers. She asks questions that lead the student to "
    "find the answer on their own, and she knows when to wait in silence while the student "
    "thinks. Learning, in this view, is something the student does, not something done to them.",
    "The museum opened a new exhibition about the history of maps. Visitors can see a map of "
    "the world drawn five hundred years ago, on which whole continents are missing and the "
    "oceans are full of strange creatures.",
    "Most birds build their nests in the spring. Some use twigs and grass, others use mud, and "
    "a few simply lay their eggs on bare rock. The parents take turns keeping the eggs warm "
    "until the chicks hatch.",
    "He had always wanted to learn the piano, but he never seemed to find the time. At the age "
    "of sixty he finally bought an old instrument, found a teacher, and practised for an hour "
    "every day. Within a year he could play simple pieces by heart.",
    "The weather forecast for the weekend is mixed. Saturday will be sunny with a light breeze, "
    "but clouds will move in from the west on Sunday afternoon, bringing heavy rain and strong "
    "winds to the coast.",
    "Science is not a collection of facts but a method for finding out which ideas are wrong. "
    "A theory that cannot be tested is not a scientific theory, however beautiful it may be, "
    "and a theory that fails a careful test must be changed or abandoned.",
    "The small shop on the corner sold everything from newspapers to light bulbs. Its owner, a "
    "quiet man with grey hair, knew the name of every customer and always asked after their "
    "families. When he retired, the whole street came to say goodbye.",
    "Walking is the simplest form of exercise. It needs no special equipment, it can be done "
    "almost anywhere, and it is gentle on the joints. Doctors often recommend a brisk walk of "
    "thirty minutes a day for people of all ages.",
    "In the middle of the night, the dog began to bark. The family woke up, turned on the "
    "lights, and searched the house, but they found nothing unusual. In the morning they "
    "discovered that a fox had been digging in the garden.",
    "The company announced that it would open a new factory in the north of the country, "
    "creating about four hundred jobs. Local leaders welcomed the news, although some "
    "residents worried about traffic and noise.",
    "Reading a novel is a kind of conversation with a person you will probably never meet. The "
    "writer chooses every word, and the reader fills the gaps with memory and imagination, so "
    "that no two readers ever read quite the same book.",
    "Water boils at one hundred degrees Celsius at sea level, but at a lower temperature on a "
    "high mountain, where the air pressure is lower. This is why it takes longer to cook pasta "
    "in a village in the Alps than in a city by the sea.",
    "They set out before dawn, carrying enough food and water for three days. The path climbed "
    "steeply through the forest, then along a narrow ridge with a long drop on either side. By "
    "noon they could see the summit, white against a clear blue sky.",
    "The new software update fixes several bugs and makes the program start faster. Users who "
    "saved their files in the old format should open them once and save them again, so that "
    "they can be read by future versions.",
    "Gardening teaches patience. Seeds planted in autumn may not show a single leaf until the "
    "spring, and a young apple tree can take five years to bear fruit. The gardener learns to "
    "plan for a future that arrives slowly.",
    "My grandmother kept a diary for more than fifty years. She wrote a few lines every evening "
    "about the weather, the people she had met, and what she had cooked for dinner. Reading it "
    "now is like opening a window onto a world that has disappeared.",
    "The city council voted to close the main street to cars on Sundays. Cafes put tables on "
    "the road, musicians played on the corners, and children rode their bicycles where buses "
    "had driven the day before.",
    "A language is never finished. New words are invented, old words change their meaning, and "
    "the rules of grammar shift a little with every generation. The dictionary can only "
    "describe what people already say.",
    "The doctor listened to his chest, asked him a few questions, and told him to rest for a "
    "week. He should drink plenty of water, she said, and come back if the fever did not go "
    "down within three days.",
    "On a clear night far from the city lights, thousands of stars are visible to the naked "
    "eye. The bright band of the Milky Way is the light of billions of distant stars in the "
    "disc of our own galaxy.",
    "The football match was cancelled because of the snow. The players were disappointed, but "
    "the groundsman said the pitch was frozen solid and that someone would certainly have been "
    "hurt if they had tried to play.",
    "Learning to cook is mostly learning to taste. A recipe tells you what to do, but only your "
    "tongue can tell you whether the soup needs more salt, more time, or a squeeze of lemon "
    "juice at the very end.",
    "The library was quiet except for the ticking of the clock and the soft sound of pages "
    "being turned. Outside, the afternoon light was already fading, and the first lamps were "
    "being lit along the street.",
    "Every morning the fishermen pulled their boats down to the water and rowed out beyond the "
    "rocks. They came back in the afternoon with their nets full, and the whole village "
    "gathered on the beach to buy the catch.",
    "It is easy to make a plan and hard to follow it. The best plans are short, clear, and "
    "honest about what might go wrong, so that when something does go wrong, nobody is "
    "surprised and everyone knows what to do next.",
    "The cafe served coffee, tea, and a famous apple cake. Tourists from France, Germany and "
    "Spain sat at the small tables, and the waiter greeted each of them in their own language.",
    "We arrived late, tired and hungry, but the house was warm and somebody had left soup on "
    "the stove. After dinner we sat by the fire and talked until long after midnight.",
    "The bridge was built more than two hundred years ago, and it has survived floods, storms "
    "and a war. Engineers inspect it every spring, and so far they have found only small cracks "
    "that are easy to repair.",
    "Children learn to speak by listening. Long before they can say a single word, they have "
    "heard thousands of sentences, and they have begun to notice which sounds belong together "
    "and which words tend to follow one another.",
    "The island has no cars. People travel on foot or by bicycle, goods arrive by boat twice a "
    "week, and the only road is a sandy track that runs from the harbour to the lighthouse.",
    "After the storm, the beach was covered with seaweed, broken shells and pieces of wood. An "
    "old man walked slowly along the shore with a bucket, picking up anything that might be "
    "useful, while gulls circled overhead.",
    "A computer program is a list of instructions. The machine follows them exactly, without "
    "guessing what the programmer meant, which is why a single missing character can stop the "
    "whole program from working.",
    "The orchestra began to play, softly at first, then louder, until the music filled the "
    "whole hall. In the front row, a little girl held her breath and did not move until the "
    "last note had faded away.",
    "Farmers in the region grow wheat, barley and potatoes. The summers are short and the "
    "winters are long and cold, so every crop must be planted and harvested within a few busy "
    "months.",
    "He opened the door and found a parcel on the step. There was no name on it, no stamp and "
    "no address, only a small drawing of a bird in the corner. He carried it inside and set it "
    "on the kitchen table.",
    "Good sleep matters as much as good food. Adults need seven or eight hours a night, and "
    "children need even more. A regular bedtime, a dark room and a quiet mind all help.",
    "The students worked in small groups, each building a model of a house from paper and "
    "glue. At the end of the week, they tested every model with a fan to see which one could "
    "stand up to the strongest wind.",
    "Autumn came early that year. By the middle of September, the leaves had turned red and "
    "gold, the mornings were cold and misty, and the swallows had already gathered on the "
    "wires, ready to fly south.",
    "The report found that most people in the town walk or cycle to work, and that the number "
    "of cars on the roads has fallen every year for the past decade. The council plans to build "
    "more cycle paths.",
    "def greet(name):\n    return \"Hello, \" + name + \"!\"\n\nfor i in range(10):\n    print(greet(str(i)))\n",
    "fn main() {\n    let xs = vec![1, 2, 3];\n    let total: i32 = xs.iter().sum();\n    println!(\"{}\", total);\n}\n",
    "function add(a, b) {\n  return a + b;\n}\nconst result = add(2, 3);\nconsole.log(result);\n",
    "# Compute the mean of a list of numbers.\nimport math\n\ndef mean(values):\n    if not values:\n        return 0.0\n    return sum(values) / len(values)\n",
]

# ---------------------------------------------------------------------------------------------
# Reference inputs.
# ---------------------------------------------------------------------------------------------
PROMPTS = [
    "The",  # one token
    "The river ran slowly past the",
    "When you write a letter to someone, it is",
    "def greet(name):\n    return",
    # about 60 tokens
    "It was raining when the train arrived at the station. She picked up her bag, stepped onto "
    "the platform, and looked for the man who had promised to meet her. He was nowhere to be "
    "seen, so she",
]
LONG_PROMPT_TARGET = 60

SCORE_TEXTS = [
    "The weather forecast for the weekend is mixed.",
    "We sat in the café and ordered coffee. ☕ It was good.",
    "The dog barked at the fox in the garden.",
]

BATCH_PROMPT = "The library was quiet except for the"
BATCH_CANDIDATES = [" clock", " light", " water"]  # each must be a single token


# ---------------------------------------------------------------------------------------------
def r7(x):
    """Round to 7 significant digits."""
    return float(f"{float(x):.7g}")


def r7list(t):
    return [r7(v) for v in t.reshape(-1).tolist()]


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    # Like GPT-2: <|endoftext|> is the last id (here != 50256, so readers must use config.json).
    tok.add_special_tokens([EOT])
    return tok


def char_to_byte_offsets(text, offsets):
    """Python tokenizers reports char offsets; quill (Rust tokenizers) works in byte offsets."""
    cum = [0]
    for ch in text:
        cum.append(cum[-1] + len(ch.encode("utf-8")))
    return [(cum[s], cum[e]) for s, e in offsets]


def init_weights(model, seed, scale):
    """Deterministic, deliberately 'peaky' random weights.

    Plain GPT-2 init (std 0.02, zero biases, unit LayerNorms) gives nearly flat logits and a
    greedy continuation that repeats one token. Larger weights, random biases and random
    LayerNorm affine parameters give varied greedy choices with clear top-1/top-2 margins, and
    make every parameter matter (a reader that ignores a bias or a LayerNorm shift fails).
    """
    g = torch.Generator().manual_seed(seed)
    n_layer = model.config.n_layer
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name == "lm_head.weight":
                continue  # tied to wte; named_parameters dedups it anyway
            shape = p.shape
            if name.endswith("wte.weight"):
                v = torch.randn(shape, generator=g) * scale["wte"]
            elif name.endswith("wpe.weight"):
                v = torch.randn(shape, generator=g) * scale["wpe"]
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                if name.endswith("weight"):
                    v = 1.0 + torch.randn(shape, generator=g) * 0.2
                else:
                    v = torch.randn(shape, generator=g) * 0.2
            elif name.endswith(".bias"):
                v = torch.randn(shape, generator=g) * 0.1
            elif name.endswith("c_proj.weight"):
                v = torch.randn(shape, generator=g) * scale["proj"] / math.sqrt(2 * n_layer)
            elif name.endswith(".weight"):
                v = torch.randn(shape, generator=g) * scale["w"]
            else:
                raise RuntimeError(f"unexpected parameter {name}")
            p.copy_(v)


def make_model(spec, tok, eot_id):
    cfg = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=spec["n_positions"],
        n_embd=spec["n_embd"],
        n_layer=spec["n_layer"],
        n_head=spec["n_head"],
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=spec["eps"],
        initializer_range=0.02,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        tie_word_embeddings=True,
        architectures=["GPT2LMHeadModel"],
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    model = GPT2LMHeadModel(cfg)
    init_weights(model, spec["seed"], spec["scale"])
    model.eval()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), "lm_head not tied"
    return model


@torch.no_grad()
def logits_of(model, ids):
    x = torch.tensor([ids], dtype=torch.long)
    return model(input_ids=x).logits[0].float()  # [T, V]


@torch.no_grad()
def greedy(model, ids, steps):
    """Manual argmax loop, cold full forward each step, no EOS stop."""
    seq = list(ids)
    out, margins = [], []
    for _ in range(steps):
        last = logits_of(model, seq)[-1]
        top2 = torch.topk(last, 2)
        nxt = int(top2.indices[0])
        out.append(nxt)
        margins.append(r7(top2.values[0] - top2.values[1]))
        seq.append(nxt)
    return out, margins


@torch.no_grad()
def generate_ids(model, ids, eot_id, steps):
    x = torch.tensor([ids], dtype=torch.long)
    y = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        do_sample=False,
        max_new_tokens=steps,
        pad_token_id=eot_id,
        eos_token_id=eot_id,
    )
    return y[0, len(ids):].tolist()


def build_reference(model, tok, eot_id, name):
    n_pos = model.config.n_positions
    ref = {
        "model": name,
        "generator": {
            "transformers": __import__("transformers").__version__,
            "torch": torch.__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "dtype": "float32",
            "attn_implementation": "eager",
        },
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "vocab_size": model.config.vocab_size,
        "notes": (
            "ids: tokenizer encoding without BOS. logits_last: all vocab logits at the last "
            "position. logits_first_rows[t]: logits[t][:%d]. greedy_ids: manual argmax loop over "
            "cold full forwards, no EOS stop; greedy_margins[k]: top1-top2 logit gap at step k. "
            "generate_ids: transformers generate(do_sample=False) with eos stop. scores: input "
            "[bos]+ids, logprobs[i] = log_softmax(logits[i])[ids[i]]; start/end are UTF-8 byte "
            "offsets into text; best_ids/best_logprobs: argmax at that position. batch: "
            "logits_last[k] = last-position logits of prompt_ids+[candidates[k]]." % FIRST_ROWS
        ),
    }

    prompts = []
    for text in PROMPTS:
        ids = tok.encode(text).ids
        assert len(ids) + GREEDY_STEPS <= n_pos, (text, len(ids))
        lg = logits_of(model, ids)
        g_ids, g_margins = greedy(model, ids, GREEDY_STEPS)
        # What quill does at a document start (CLI `complete`, LSP): BOS in front.
        gb_ids, gb_margins = greedy(model, [eot_id] + ids, GREEDY_STEPS)
        gen = generate_ids(model, ids, eot_id, GREEDY_STEPS)
        prompts.append({
            "text": text,
            "ids": ids,
            "logits_last": r7list(lg[-1]),
            "logits_first_rows": [r7list(row[:FIRST_ROWS]) for row in lg],
            "logits_scale": r7(lg.abs().max()),
            "greedy_ids": g_ids,
            "greedy_text": tok.decode(g_ids, skip_special_tokens=False),
            "greedy_margins": g_margins,
            "greedy_bos_ids": gb_ids,
            "greedy_bos_margins": gb_margins,
            "generate_ids": gen,
            "generate_matches_greedy_prefix": gen == g_ids[: len(gen)],
            "generate_stopped_at_eos": len(gen) < GREEDY_STEPS,
        })
    assert len(prompts[0]["ids"]) == 1, prompts[0]["ids"]
    assert abs(len(prompts[-1]["ids"]) - LONG_PROMPT_TARGET) <= 8, len(prompts[-1]["ids"])
    ref["prompts"] = prompts

    scores = []
    for text in SCORE_TEXTS:
        enc = tok.encode(text)
        ids = enc.ids
        inp = [eot_id] + ids
        assert len(inp) <= n_pos
        lp = torch.log_softmax(logits_of(model, inp).double(), dim=-1)  # [T, V]
        token_lp = [float(lp[i, ids[i]]) for i in range(len(ids))]
        best = lp[: len(ids)].max(dim=-1)
        offs = char_to_byte_offsets(text, enc.offsets)
        total = sum(token_lp)
        scores.append({
            "text": text,
            "ids": ids,
            "tokens": enc.tokens,
            "start": [s for s, _ in offs],
            "end": [e for _, e in offs],
            "logprobs": [r7(v) for v in token_lp],
            "best_ids": best.indices.tolist(),
            "best_logprobs": [r7(v) for v in best.values.tolist()],
            "total_logprob": r7(total),
            "perplexity": r7(math.exp(-total / len(ids))),
        })
    ref["scores"] = scores

    p_ids = tok.encode(BATCH_PROMPT).ids
    cands = []
    for c in BATCH_CANDIDATES:
        cid = tok.encode(c).ids
        assert len(cid) == 1, (c, cid)
        cands.append(cid[0])
    with torch.no_grad():
        x = torch.tensor([p_ids + [c] for c in cands], dtype=torch.long)
        blog = model(input_ids=x).logits[:, -1].float()
        # the batch must agree with separate forwards
        for k, c in enumerate(cands):
            single = logits_of(model, p_ids + [c])[-1]
            assert torch.allclose(single, blog[k], atol=1e-4), "batched != single"
    ref["batch"] = {
        "prompt": BATCH_PROMPT,
        "prompt_ids": p_ids,
        "candidates": cands,
        "candidate_texts": BATCH_CANDIDATES,
        "logits_last": [r7list(row) for row in blog],
    }
    return ref


def bare_state_dict(model):
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue  # tied to wte, as in openai-community/gpt2
        assert k.startswith("transformer."), k
        kk = k[len("transformer."):]
        if kk.endswith(".attn.bias") or kk.endswith(".attn.masked_bias"):
            continue  # causal-mask buffers (absent in transformers 5 anyway)
        sd[kk] = v.detach().clone().contiguous()
    return sd


@torch.no_grad()
def check_reload(model, d, tok):
    m2, info = GPT2LMHeadModel.from_pretrained(d, output_loading_info=True, attn_implementation="eager")
    m2.eval()
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{d}: loading info {info}"
    ids = tok.encode(PROMPTS[-1]).ids
    a, b = logits_of(model, ids), logits_of(m2, ids)
    assert torch.equal(a, b), f"{d}: reloaded logits differ, max {float((a - b).abs().max())}"
    t2 = Tokenizer.from_file(str(Path(d) / "tokenizer.json"))
    assert t2.encode(PROMPTS[-1]).ids == ids


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


SPECS = [
    {
        "dir": "gpt2-tiny",
        "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128, "eps": 1e-6,
        # seed chosen so every greedy step of every prompt has a top1-top2 margin > 1e-3 * logits_scale
        "seed": 3,
        "scale": {"wte": 1.0, "wpe": 1.0, "w": 0.5, "proj": 1.0},
        "bare": False,
    },
    {
        "dir": "gpt2-tiny-bare",
        "n_embd": 48, "n_layer": 3, "n_head": 3, "n_positions": 96, "eps": 1e-5,
        "seed": 12,
        "scale": {"wte": 1.0, "wpe": 1.0, "w": 0.5, "proj": 1.0},
        "bare": True,
    },
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    eot_id = tok.token_to_id(EOT)
    assert eot_id == tok.get_vocab_size() - 1
    tmp_tok = out / ".tokenizer.json.tmp"
    tok.save(str(tmp_tok), pretty=False)
    tok = Tokenizer.from_file(str(tmp_tok))  # use exactly what is stored

    for spec in SPECS:
        d = out / spec["dir"]
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        model = make_model(spec, tok, eot_id)
        if spec["bare"]:
            save_file(bare_state_dict(model), str(d / "model.safetensors"), metadata={"format": "pt"})
            model.config.save_pretrained(str(d))
        else:
            model.save_pretrained(str(d))
        shutil.copyfile(tmp_tok, d / "tokenizer.json")
        check_reload(model, str(d), tok)
        ref = build_reference(model, tok, eot_id, spec["dir"])
        write_json(d / "reference.json", ref)
        print(f"{spec['dir']}: eot={eot_id} vocab={model.config.vocab_size}", file=sys.stderr)
        for p in ref["prompts"]:
            print(f"  {len(p['ids']):3d} ids  min margin {min(p['greedy_margins']):.4g}  "
                  f"distinct {len(set(p['greedy_ids']))}/{GREEDY_STEPS}  {p['greedy_text']!r}",
                  file=sys.stderr)
    tmp_tok.unlink()


if __name__ == "__main__":
    main()
