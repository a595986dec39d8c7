#!/usr/bin/env python3
"""Make the tiny T5 test fixtures for quill and record transformers' reference outputs.

Writes, under tests/fixtures/ (or --out):

  t5-tiny/         T5 v1.0 style (like google-t5/t5-small): ReLU feed-forward, lm_head tied to
                   `shared` (decoder output scaled by d_model**-0.5 before the head).
                   model.safetensors holds `shared.weight` and no `lm_head.weight`.
  t5-tiny-gated/   T5 v1.1 / flan-t5 style: gated-gelu (gelu_new) feed-forward, separate lm_head
                   (tie_word_embeddings=false, no output scaling), another shape.
                   model.safetensors holds `shared.weight` and `lm_head.weight`.

Each directory has config.json, generation_config.json, model.safetensors, tokenizer.json (the
same SentencePiece-style Unigram tokenizer in both: <pad>=0, </s>=1, <unk>=2, `</s>` appended to
every encoding by the post-processor, as T5's does) and reference.json.

Note on transformers 5: T5Config always sets tie_word_embeddings=True and keeps the user's
choice only as `scale_decoder_outputs`; a checkpoint with a separate lm_head is untied at load
time only because `lm_head.weight` differs from `shared.weight`. So the gated model is untied by
hand here, its safetensors is written with safetensors' save_file, and its config.json is
written as the hub's flan-t5 configs are (tie_word_embeddings=false, no scale_decoder_outputs),
which is what candle-transformers' T5 reads. The reload check proves transformers reads the
files back to the same outputs.

Everything is deterministic: the tokenizer is trained on the corpus below, weights come from a
seeded torch.Generator, references are computed in float32 with eager attention. Re-running the
script rewrites identical files (same library versions).

Usage:  /work/venv/bin/python scripts/make_t5_fixtures.py [--out tests/fixtures]
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

# Keep CPU use modest and the Unigram trainer deterministic.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import (  # noqa: E402
    Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers,
)
import transformers  # noqa: E402
from transformers import T5Config, T5ForConditionalGeneration  # noqa: E402

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
VOCAB_SIZE = 1000
MAX_NEW = 20  # greedy steps (new tokens) per case
ENC_ROWS, ENC_DIMS = 4, 8  # encoder_last_hidden_first_rows: rows x dims kept
LONG_TARGET = (280, 320)  # token count of the long input (chunking tests)

# ---------------------------------------------------------------------------------------------
# Training corpus (written for this repository): English prose, T5-style task lines, and a
# little German, French and Romanian.
# ---------------------------------------------------------------------------------------------
CORPUS = [
    "The harbour town woke early. Before the sun was up, the bakers had lit their ovens, the "
    "fishermen were loading nets onto their boats, and the first bus of the day was waiting "
    "outside the station with its engine running.",
    "Anna packed a small bag, locked the door and walked to the station. She took the morning "
    "train to the city, where she went to the museum, had lunch with an old friend, and came "
    "home late in the evening, tired but happy.",
    "The town council met on Monday to discuss the new bridge. After a long debate, the members "
    "agreed to build it next spring, although several of them worried about the cost and the "
    "noise during the work.",
    "A good summary is short. It keeps the main idea and the most important facts, and it "
    "leaves out examples, repetitions and small details. To summarize a text well, you must "
    "first understand it.",
    "Reading comprehension means answering a question about a text. The reader finds the part "
    "of the context that contains the answer and then gives it in a few words.",
    "Translation is the art of saying the same thing in another language. A translator must "
    "know both languages well, and must also understand the culture in which each of them is "
    "spoken.",
    "The weather was cold and wet for most of the week, but on Saturday the clouds cleared and "
    "the whole family went for a long walk along the river. They saw ducks, a heron and, for a "
    "moment, a fox crossing the field.",
    "Tom loves to cook. Every Sunday he buys fresh vegetables at the market, and in the "
    "afternoon he makes a large pot of soup that lasts for most of the week. His neighbours "
    "often come by for a bowl.",
    "The library opens at nine in the morning and closes at six in the evening. Books can be "
    "borrowed for three weeks, and students may use the reading room on the second floor "
    "without a card.",
    "Scientists have found that people who walk for thirty minutes a day sleep better, feel "
    "less stressed and live longer than those who do not. The study followed ten thousand "
    "adults for twelve years.",
    "The company reported higher profits this year, thanks to strong sales of its new phone. "
    "The director said that the firm would open two new shops and hire more than a hundred "
    "people in the coming months.",
    "The old castle stands on a hill above the village. It was built eight hundred years ago, "
    "and today it is a museum where visitors can see armour, paintings and a beautiful garden.",
    "Maria grew up on a farm in the south. As a child she fed the chickens, picked apples in "
    "the autumn and rode her bicycle to school. Now she is a doctor in a large hospital in the "
    "capital.",
    "The children built a small boat out of wood and paper and put it on the lake. To their "
    "surprise it floated, and the wind carried it slowly to the other side, where a dog barked "
    "at it.",
    "In the winter the mountains are covered with snow, and many people come to ski. In the "
    "summer the same slopes are green, and walkers climb to the lakes to swim in the cold, "
    "clear water.",
    "A computer follows instructions exactly. It does not guess what you meant, so a program "
    "with a single wrong letter may fail. Good programmers test their code often and fix small "
    "mistakes early.",
    "The museum has a new exhibition about the history of the sea. There are maps, models of "
    "ships, old photographs of sailors, and a large room where children can learn how boats "
    "float.",
    "The teacher asked the class a question, and nobody answered. She waited, smiled, and asked "
    "it again in a different way. This time a girl at the back raised her hand and gave the "
    "right answer.",
    "The restaurant near the station serves fish, bread and salad. It is small and often full, "
    "so it is better to book a table, especially on Friday and Saturday evenings.",
    "Heavy rain caused floods in several villages last night. Roads were closed, trains were "
    "delayed, and some families had to leave their homes. The water is expected to go down by "
    "tomorrow.",
    "The garden was full of flowers: red roses, yellow tulips and white lilies. Bees moved from "
    "one to the next, and an old cat slept in the shade under the apple tree.",
    "My brother is learning to play the guitar. He practises every evening after dinner, and "
    "although he still makes many mistakes, he can already play three songs from start to end.",
    "The city plans to plant ten thousand trees over the next five years. The trees will give "
    "shade in the summer, clean the air and make the streets more pleasant for people who walk "
    "or cycle.",
    "Paul and Sophie met at university, where they both studied history. After they finished, "
    "they moved to a small house by the sea, opened a bookshop and wrote two books together.",
    "The football team won the final by two goals to one. The winning goal came in the last "
    "minute, when the young striker shot from far outside the box and the ball flew into the "
    "top corner.",
    "Water is made of hydrogen and oxygen. It freezes at zero degrees and boils at one hundred "
    "degrees, and it covers more than two thirds of the surface of the earth.",
    "The market is open every Tuesday and Friday. Farmers sell cheese, eggs, honey, fruit and "
    "vegetables, and in December there are stalls with candles, toys and warm wine.",
    "She opened the letter and read it twice. It was from her grandmother, who wrote that she "
    "was well, that the cherry tree was in flower, and that she hoped to see everyone in the "
    "summer.",
    "The hotel is five minutes from the beach. Every room has a balcony with a view of the sea, "
    "and breakfast is served on the terrace from seven until ten.",
    "Birds build nests in the spring. Some use grass and small sticks, others use mud, and a "
    "few lay their eggs on bare rock. Both parents keep the eggs warm until the chicks hatch.",
    "The new road will connect the two towns and cut the journey from an hour to twenty "
    "minutes. Work starts in March, and the road should be open before the end of next year.",
    "He forgot his umbrella on the bus, so he arrived at the office wet and cold. A colleague "
    "made him a cup of tea, and by the afternoon he had forgotten all about it.",
    "Learning a language takes time. It helps to read every day, to listen to the radio, to "
    "speak with people who know the language well, and not to be afraid of making mistakes.",
    "The island is small and quiet. There are no cars, only bicycles, and the only shop sells "
    "bread, milk and newspapers. Tourists come for the beaches and the clean, calm sea.",
    "On Friday night the band played in the old theatre. The hall was full, people danced in "
    "the aisles, and the concert ended after midnight with a song that everyone sang together.",
    "Before the meeting began, the chairman asked everyone to turn off their phones. He then "
    "read the minutes of the last meeting, and the members voted to accept them without any "
    "changes.",
    "The journey across the desert took four days. During the day the heat was terrible, but "
    "at night the temperature fell so quickly that the travellers had to sleep in thick coats "
    "beside the fire.",
    "Our neighbours have a new baby. Her name is Lucy, she was born on a Thursday morning in "
    "early May, and she already has the loudest voice in the whole street.",
    "The factory closed last year, and many workers lost their jobs. Some found work in the "
    "city, others started small businesses, and a few went back to school to learn a new "
    "trade.",
    "Everyone agreed that the film was too long. The story was interesting and the actors were "
    "good, but after three hours most of the audience just wanted to go home.",
    "The doctor told him to rest, to drink plenty of water and to come back if the fever did "
    "not go down within three days. By Wednesday he was feeling much better.",
    "Early in the morning the streets are empty. The shops are still closed, the cafes are "
    "just opening, and the only sound is the birds singing in the trees of the park.",
    "The students visited a farm, where they learned how cheese is made. They milked a cow, "
    "watched the milk turn into curds, and each of them took home a small piece of cheese.",
    "Please remember to close the windows before you leave the house. The forecast says that "
    "there will be strong winds and heavy rain tonight, and perhaps even some snow.",
    "Although she had never been abroad, she spoke three languages. She had learned them from "
    "books, from the radio and from the many travellers who stayed at her parents' hotel.",
    "The price of bread has risen again this month. Bakers say that flour, electricity and "
    "transport all cost more than they did a year ago, and that they have no other choice.",
    "Every summer the village holds a festival in the main square. There is music, dancing and "
    "food, and at midnight fireworks light up the sky above the church tower.",
    "The police are looking for a young man who stole a bicycle from outside the school on "
    "Tuesday afternoon. Anyone who saw what happened is asked to call the local station.",
    "The river flows slowly through the valley and into the lake. In the spring, when the snow "
    "melts in the mountains, it becomes wide and fast, and sometimes it floods the fields.",
    "When the power went out, the family lit candles and played cards at the kitchen table. "
    "Nobody missed the television, and the children said it was the best evening of the year.",
    "The park was designed more than a hundred years ago. It has a lake with a small island, "
    "a rose garden, wide lawns and long paths shaded by tall old trees.",
    "She asked the shopkeeper for directions to the post office. He drew a little map on a "
    "piece of paper and told her to turn left at the church and walk past the school.",
    "The government announced new rules for schools. From next year, every child will learn "
    "to swim, to cook a simple meal and to speak at least one foreign language.",
    "Er wohnt in einem kleinen Haus am Fluss. Jeden Morgen trinkt er Kaffee, liest die Zeitung "
    "und geht mit seinem Hund spazieren. Im Sommer schwimmt er im See.",
    "Wir haben das Museum besucht und danach in einem Restaurant gegessen. Das Essen war sehr "
    "gut, aber die Rechnung war teuer. Morgen fahren wir nach Berlin.",
    "Elle habite dans une petite maison près de la mer. Chaque matin, elle boit un café, lit le "
    "journal et se promène avec son chien sur la plage.",
    "Nous avons visité le musée et ensuite nous avons mangé dans un restaurant. Le repas était "
    "très bon. Demain nous partons pour Paris en train.",
    "El locuiește într-o casă mică lângă râu. În fiecare dimineață bea cafea, citește ziarul și "
    "se plimbă cu câinele. Vara înoată în lac.",
    "Am vizitat muzeul și apoi am mâncat la un restaurant. Mâncarea a fost foarte bună. Mâine "
    "plecăm la București cu trenul.",
    "summarize: The town council met on Monday to discuss the new bridge. After a long debate, "
    "the members agreed to build it next spring.",
    "question: Where did Anna go? context: Anna took the morning train to the city, where she "
    "went to the museum.",
    "question: What does Tom buy at the market? context: Every Sunday Tom buys fresh "
    "vegetables at the market.",
    "translate English to German: The house is wonderful. The weather is good today.",
    "translate English to French: The house is wonderful. I would like a cup of coffee.",
    "translate English to Romanian: The house is wonderful. Thank you very much.",
    "Das Haus ist wunderbar. Das Wetter ist heute gut, und wir gehen am Nachmittag in den "
    "Garten. Die Kinder spielen mit dem Hund, und die Großmutter liest ein Buch.",
    "Ich möchte eine Tasse Kaffee, bitte. Wo ist der Bahnhof? Der Zug fährt um neun Uhr ab, "
    "und ich komme am Abend zurück. Vielen Dank für Ihre Hilfe.",
    "La maison est merveilleuse. Il fait beau aujourd'hui, et nous allons au marché pour "
    "acheter du pain, du fromage et des légumes. Je voudrais une tasse de café.",
    "Où est la gare? Le train part à neuf heures, et je rentre ce soir. Merci beaucoup pour "
    "votre aide. Les enfants jouent dans le jardin avec le chien.",
    "Casa este minunată. Vremea este frumoasă astăzi, iar copiii se joacă în grădină. Aș dori "
    "o ceașcă de cafea, vă rog. Mulțumesc foarte mult.",
    "Unde este gara? Trenul pleacă la ora nouă, și mă întorc diseară. Bunica citește o carte "
    "și câinele doarme sub măr.",
]

INITIAL_ALPHABET = list(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ".,;:!?'\"()[]{}-_/\\&%$#@*+=<>|~`^"
    "äöüßÄÖÜéèêëàâçîïôûùœÉÈÀÇăâîșțĂÂÎȘȚ"
)

# ---------------------------------------------------------------------------------------------
# Reference inputs.
# ---------------------------------------------------------------------------------------------
CASES = [
    "summarize: The harbour town woke early. Before the sun was up, the bakers had lit their "
    "ovens, the fishermen were loading nets onto their boats, and the first bus of the day was "
    "waiting outside the station with its engine running.",
    "question: Where did she go? context: Anna packed a small bag, locked the door and walked "
    "to the station. She took the morning train to the city, where she went to the museum, had "
    "lunch with an old friend, and came home late in the evening.",
    "translate English to German: The house is wonderful.",
    "translate English to French: I would like a cup of coffee, please.",
    "translate English to Romanian: Thank you very much for your help.",
    # an unknown character (the emoji becomes <unk>), irregular spacing, a newline
    "summarize:  The café near the station  serves fish ☕ and bread.\nIt is small and often full.",
]

LONG_INPUT = "summarize: " + " ".join(CORPUS[0:4])


# ---------------------------------------------------------------------------------------------
def r7(x):
    """Round to 7 significant digits."""
    return float(f"{float(x):.7g}")


def r7list(t):
    return [r7(v) for v in t.reshape(-1).tolist()]


def canonical_unigram(tok):
    """Make the trained Unigram vocabulary independent of hash-map order.

    The trainer is not deterministic across processes (Rust's hash maps are randomly seeded):
    EM scores differ in the last bits, equal scores come out in any order, and the characters
    it adds after EM get the scores min_score + k * 1e-4 in a random k order. Here EM scores are
    rounded to 9 decimals, those added characters get their k in code-point order, and the
    pieces are sorted by (score descending, piece), after the special tokens.
    """
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    specials = [PAD, EOS, UNK]
    assert [p for p, _ in vocab[:3]] == specials, vocab[:3]
    rest = vocab[3:]
    min_score = min(s for _, s in rest)

    def k_of(s):
        k = (s - min_score) / 1e-4
        return round(k) if abs(k - round(k)) < 1e-6 and round(k) < len(rest) else None

    added = [(p, s) for p, s in rest if len(p) == 1 and k_of(s) is not None]
    ks = sorted(k_of(s) for _, s in added)
    assert ks[0] == 0 and ks[-1] <= len(added), ks  # the 0, 1, 2, ... progression
    scores = sorted((s for _, s in added), reverse=True)
    new_added = {p: s for p, s in zip(sorted(p for p, _ in added), scores)}
    out = []
    for p, s in rest:
        s = new_added.get(p, s)
        out.append([p, round(s, 9)])
    out.sort(key=lambda ps: (-ps[1], ps[0]))
    j["model"]["vocab"] = [[p, 0.0] for p in specials] + out
    assert j["model"]["unk_id"] == specials.index(UNK)
    return Tokenizer.from_str(json.dumps(j))


def train_tokenizer():
    tok = Tokenizer(models.Unigram())
    # T5's SentencePiece normalizer (nmt_nfkc + remove_extra_whitespaces), spelled with
    # standard normalizers: NFKC, any whitespace run -> one space, strip both ends.
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(left=True, right=True),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE,
        show_progress=False,
        special_tokens=[PAD, EOS, UNK],
        unk_token=UNK,
        initial_alphabet=INITIAL_ALPHABET,
        max_piece_length=16,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok = canonical_unigram(tok)
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}",
        pair=f"$A {EOS} $B {EOS}",
        special_tokens=[(EOS, eos_id)],
    )
    return tok


def init_weights(model, seed, scale):
    """Deterministic, deliberately 'peaky' random weights.

    transformers' T5 init gives nearly flat logits and a greedy output that repeats one token.
    Larger attention/feed-forward weights, a strong relative-position bias and random RMSNorm
    gains give varied greedy choices with clear top-1/top-2 margins, and make every parameter
    matter (a reader that drops a norm gain or the position bias fails the parity tests).
    """
    cfg = model.config
    d, dkv, h, dff = cfg.d_model, cfg.d_kv, cfg.num_heads, cfg.d_ff
    g = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
            if name.endswith("embed_tokens.weight"):
                assert p.data_ptr() == model.shared.weight.data_ptr(), name
                continue  # the encoder's and decoder's embed_tokens are `shared`
            if name == "lm_head.weight" and p.data_ptr() == model.shared.weight.data_ptr():
                continue  # tied lm_head is `shared`
            assert p.data_ptr() not in seen, name
            seen.add(p.data_ptr())
            shape = p.shape
            if name == "shared.weight":
                std = scale["emb"]
            elif name == "lm_head.weight":
                std = scale["head"] * d ** -0.5
            elif name.endswith("relative_attention_bias.weight"):
                std = scale["relbias"]
            elif "layer_norm" in name:
                p.copy_(1.0 + torch.randn(shape, generator=g) * 0.2)
                continue
            elif name.endswith(".q.weight"):
                std = scale["attn"] * (d * dkv) ** -0.5
            elif name.endswith((".k.weight", ".v.weight")):
                std = scale["attn"] * d ** -0.5
            elif name.endswith(".o.weight"):
                std = scale["attn"] * (h * dkv) ** -0.5
            elif name.endswith((".wi.weight", ".wi_0.weight", ".wi_1.weight")):
                std = scale["ff"] * d ** -0.5
            elif name.endswith(".wo.weight"):
                std = scale["ff"] * dff ** -0.5
            else:
                raise RuntimeError(f"unexpected parameter {name}")
            p.copy_(torch.randn(shape, generator=g) * std)
        if "eos_boost" in scale:
            # Lengthen the </s> row of the (untied) head so that some greedy outputs end with </s>
            # inside max_new_tokens (the stop rule is then tested too), most do not.
            assert not cfg.scale_decoder_outputs, "eos_boost needs an untied lm_head"
            model.lm_head.weight[cfg.eos_token_id] *= scale["eos_boost"]


def make_model(spec, vocab_size):
    cfg = T5Config(
        vocab_size=vocab_size,
        d_model=spec["d_model"],
        d_kv=spec["d_kv"],
        d_ff=spec["d_ff"],
        num_layers=spec["num_layers"],
        num_decoder_layers=spec["num_decoder_layers"],
        num_heads=spec["num_heads"],
        relative_attention_num_buckets=spec["buckets"],
        relative_attention_max_distance=spec["max_distance"],
        dropout_rate=0.1,
        layer_norm_epsilon=spec["eps"],
        initializer_factor=1.0,
        feed_forward_proj=spec["ff"],
        tie_word_embeddings=spec["tied"],
        is_encoder_decoder=True,
        use_cache=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        architectures=["T5ForConditionalGeneration"],
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    model = T5ForConditionalGeneration(cfg)
    if not spec["tied"]:
        # transformers 5 ties lm_head to shared regardless (see the module docstring): untie it.
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight))
        model.all_tied_weights_keys.pop("lm_head.weight", None)
    init_weights(model, spec["seed"], spec["scale"])
    model.eval()
    tied = model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    assert tied == spec["tied"], f"lm_head tied={tied}, wanted {spec['tied']}"
    assert model.config.scale_decoder_outputs == spec["tied"]
    return model


@torch.no_grad()
def encode(model, ids):
    x = torch.tensor([ids], dtype=torch.long)
    return model.encoder(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state


@torch.no_grad()
def dec_logits(model, enc, ids, dec):
    """Logits [T_dec, V] of a cold full decoder pass (no cache)."""
    x = torch.tensor([ids], dtype=torch.long)
    y = torch.tensor([dec], dtype=torch.long)
    out = model(encoder_outputs=(enc,), attention_mask=torch.ones_like(x), decoder_input_ids=y,
                use_cache=False)
    return out.logits[0].float()


@torch.no_grad()
def greedy(model, enc, ids, start, eos, steps):
    """Manual argmax loop over cold full decoder passes; stops at eos (not recorded)."""
    dec = [start]
    out, margins = [], []
    stopped = False
    for _ in range(steps):
        last = dec_logits(model, enc, ids, dec)[-1]
        top2 = torch.topk(last, 2)
        nxt = int(top2.indices[0])
        margins.append(r7(top2.values[0] - top2.values[1]))
        if nxt == eos:
            stopped = True
            break
        out.append(nxt)
        dec.append(nxt)
    return out, margins, stopped


@torch.no_grad()
def generate_ids(model, ids, start, eos, steps):
    x = torch.tensor([ids], dtype=torch.long)
    y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=steps,
                       do_sample=False, num_beams=1)[0].tolist()
    assert y[0] == start, y
    y = y[1:]
    if y and y[-1] == eos:
        y = y[:-1]
    return y


def build_reference(model, tok, name):
    cfg = model.config
    start, eos, pad = cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id
    ref = {
        "model": name,
        "generator": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": __import__("tokenizers").__version__,
            "dtype": "float32",
            "attn_implementation": "eager",
        },
        "vocab_size": cfg.vocab_size,
        "pad_token_id": pad,
        "eos_token_id": eos,
        "unk_token_id": tok.token_to_id(UNK),
        "decoder_start_token_id": start,
        "tie_word_embeddings": bool(cfg.scale_decoder_outputs),
        "feed_forward_proj": cfg.feed_forward_proj,
        "max_new_tokens": MAX_NEW,
        "notes": (
            "input_ids: tokenizer encoding of input, </s> (id 1) appended by the post-processor. "
            "input_tokens: the pieces. encoder_last_hidden_first_rows[r]: encoder output row r, "
            "first %d dims (first %d rows). first_step_logits: all vocab logits of the first "
            "decoder step, decoder input [decoder_start_token_id] (first_step_logits_f64: the same in "
            "float64; f32_error: max |first_step_logits - f64|); logits_scale: max |logit| of "
            "them. greedy_ids: manual argmax loop (cold full decoder pass each step) from "
            "[decoder_start_token_id], stopping at </s> or after max_new_tokens new tokens; the "
            "start token and the final </s> are not recorded. greedy_margins[k]: top1-top2 "
            "logit gap at step k (one more entry than greedy_ids when stopped_at_eos: the step "
            "that chose </s>). greedy_text: decode(greedy_ids, skip_special_tokens=True). "
            "generate_ids: model.generate(max_new_tokens, do_sample=False, num_beams=1) without "
            "the start token and final </s>; equals greedy_ids. long_input: for chunking tests, "
            "input_ids_len counts the appended </s>." % (ENC_DIMS, ENC_ROWS)
        ),
    }
    # The same network in float64: how far float32 arithmetic (ours and transformers') may
    # drift from the exact logits on these deliberately large random weights.
    import copy
    model64 = copy.deepcopy(model).double()
    cases = []
    for text in CASES:
        enc_ = tok.encode(text)
        ids = enc_.ids
        assert ids[-1] == eos and eos not in ids[:-1], ids
        enc = encode(model, ids)
        first = dec_logits(model, enc, ids, [start])[0]
        with torch.no_grad():
            first64 = model64(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([[start]])).logits[0, -1]
        g_ids, g_margins, stopped = greedy(model, enc, ids, start, eos, MAX_NEW)
        gen = generate_ids(model, ids, start, eos, MAX_NEW)
        assert gen == g_ids, f"generate {gen} != manual greedy {g_ids}"
        cases.append({
            "input": text,
            "input_ids": ids,
            "input_tokens": enc_.tokens,
            "encoder_last_hidden_first_rows": [r7list(row[:ENC_DIMS]) for row in enc[0, :ENC_ROWS]],
            "first_step_logits": r7list(first),
            "logits_scale": r7(first.abs().max()),
            "first_step_logits_f64": [float(v) for v in first64.tolist()],
            "f32_error": float((first.double() - first64).abs().max()),
            "greedy_ids": g_ids,
            "greedy_margins": g_margins,
            "stopped_at_eos": stopped,
            "greedy_text": tok.decode(g_ids, skip_special_tokens=True),
            "generate_ids": gen,
        })
    ref["cases"] = cases
    n_long = len(tok.encode(LONG_INPUT).ids)
    assert LONG_TARGET[0] <= n_long <= LONG_TARGET[1], n_long
    ref["long_input"] = {"input": LONG_INPUT, "input_ids_len": n_long}
    return ref


def hub_config(d, tied):
    """Rewrite save_pretrained's config.json as the hub's T5 configs spell it (see the module
    docstring): tie_word_embeddings as meant, no transformers-5 `scale_decoder_outputs`."""
    path = Path(d) / "config.json"
    with open(path, encoding="utf-8") as f:
        c = json.load(f)
    c.pop("scale_decoder_outputs", None)
    c["tie_word_embeddings"] = bool(tied)
    write_json_pretty(path, c)


def save(model, d, spec):
    d = Path(d)
    if spec["tied"]:
        model.save_pretrained(str(d))
    else:
        model.save_pretrained(str(d))  # config.json, generation_config.json (weights replaced below)
        sd = {"shared.weight": model.shared.weight, "lm_head.weight": model.lm_head.weight}
        for k, v in model.state_dict().items():
            if k in sd or k.endswith("embed_tokens.weight"):
                continue  # embed_tokens are `shared`
            sd[k] = v
        sd = {k: v.detach().clone().contiguous() for k, v in sd.items()}
        (d / "model.safetensors").unlink()
        save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    hub_config(d, spec["tied"])
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
    assert "shared.weight" in keys, keys
    assert ("lm_head.weight" in keys) == (not spec["tied"]), keys
    return keys


@torch.no_grad()
def check_reload(model, d, tok):
    m2, info = T5ForConditionalGeneration.from_pretrained(
        d, output_loading_info=True, attn_implementation="eager")
    m2.eval()
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{d}: loading info {info}"
    assert m2.config.scale_decoder_outputs == model.config.scale_decoder_outputs
    assert (m2.lm_head.weight.data_ptr() == m2.shared.weight.data_ptr()) == bool(
        model.config.scale_decoder_outputs)
    t2 = Tokenizer.from_file(str(Path(d) / "tokenizer.json"))
    for text in CASES:
        ids = tok.encode(text).ids
        assert t2.encode(text).ids == ids
        a = dec_logits(model, encode(model, ids), ids, [0, 5, 7])
        b = dec_logits(m2, encode(m2, ids), ids, [0, 5, 7])
        assert torch.equal(a, b), f"{d}: reloaded logits differ, max {float((a - b).abs().max())}"


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def write_json_pretty(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")


SPECS = [
    # seeds and scales chosen (--search and a scan of scales) so that every case's greedy output
    # is varied, every greedy step has a top1-top2 margin > 1e-3 * logits_scale, and (gated)
    # exactly one case stops at </s>.
    {
        "dir": "t5-tiny",
        "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2,
        "num_heads": 4, "buckets": 32, "max_distance": 128, "eps": 1e-6,
        "ff": "relu", "tied": True,
        "seed": 5,
        "scale": {"emb": 2.0, "head": 1.0, "relbias": 1.0, "attn": 6.0, "ff": 6.0},
    },
    {
        "dir": "t5-tiny-gated",
        "d_model": 48, "d_kv": 12, "d_ff": 96, "num_layers": 3, "num_decoder_layers": 2,
        "num_heads": 4, "buckets": 32, "max_distance": 128, "eps": 1e-6,
        "ff": "gated-gelu", "tied": False,
        "seed": 2,
        "scale": {"emb": 1.0, "head": 3.0, "relbias": 1.0, "attn": 2.0, "ff": 2.0, "eos_boost": 1.4},
    },
]


def summarize(ref):
    lines = []
    for c in ref["cases"]:
        m = min(c["greedy_margins"])
        lines.append(
            f"  {len(c['input_ids']):3d} ids  scale {c['logits_scale']:7.3f}  min margin {m:.4g}  "
            f"distinct {len(set(c['greedy_ids']))}/{len(c['greedy_ids'])}  "
            f"eos={'@%d' % len(c['greedy_ids']) if c['stopped_at_eos'] else 'no'}  {c['greedy_text']!r}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
    ap.add_argument("--search", type=int, default=0, metavar="N",
                    help="try seeds 0..N-1 for each spec and print stats (writes nothing)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer()
    assert [tok.token_to_id(t) for t in (PAD, EOS, UNK)] == [0, 1, 2]
    tmp_tok = out / ".t5-tokenizer.json.tmp"
    tok.save(str(tmp_tok), pretty=False)
    tok = Tokenizer.from_file(str(tmp_tok))  # use exactly what is stored
    vocab = tok.get_vocab_size()

    if args.search:
        tmp_tok.unlink()
        for spec in SPECS:
            for seed in range(args.search):
                s = dict(spec, seed=seed)
                ref = build_reference(make_model(s, vocab), tok, spec["dir"])
                print(f"{spec['dir']} seed {seed}\n{summarize(ref)}", file=sys.stderr)
        return

    for spec in SPECS:
        d = out / spec["dir"]
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        model = make_model(spec, vocab)
        keys = save(model, d, spec)
        shutil.copyfile(tmp_tok, d / "tokenizer.json")
        check_reload(model, str(d), tok)
        ref = build_reference(model, tok, spec["dir"])
        write_json(d / "reference.json", ref)
        print(f"{spec['dir']}: vocab={vocab} keys={len(keys)} "
              f"(shared.weight, lm_head.weight={'lm_head.weight' in keys}) "
              f"long_input={ref['long_input']['input_ids_len']} ids", file=sys.stderr)
        print(summarize(ref), file=sys.stderr)
    tmp_tok.unlink()


if __name__ == "__main__":
    main()
