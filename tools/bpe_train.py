#!/usr/bin/env python3
"""Byte-level BPE training (GPT-2 style), written out as a Hugging Face tokenizer.json.

Text is split with GPT-2's pre-tokenizer pattern, each piece is mapped to bytes and each
byte to a printable character (GPT-2's bytes_to_unicode), and the most frequent adjacent
pair is merged until the vocabulary is full. Ties break on the pair itself, so a given
corpus always gives the same merges.
"""
import collections
import json
import re

# GPT-2's pattern. Python's re has no \p{L}/\p{N}; [^\W\d_] (letters) and \d (digits)
# match them exactly on ASCII text, which the corpus is (kjv_corpus checks nothing else
# appears, and the engine applies the real pattern at run time).
GPT2_SPLIT = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_CHARS = bytes_to_unicode()


def pieces(text):
    return GPT2_SPLIT.findall(text)


def to_symbols(piece):
    return "".join(BYTE_CHARS[b] for b in piece.encode("utf-8"))


def train(texts, vocab_size):
    """Returns (vocab: token -> id, merges: [(a, b)])."""
    counts = collections.Counter()
    for t in texts:
        counts.update(pieces(t))
    words = [list(to_symbols(p)) for p in counts]
    freq = list(counts.values())

    vocab = {}
    for s in SPECIAL_TOKENS:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[BYTE_CHARS[b]] = len(vocab)

    pair_count = collections.Counter()
    where = collections.defaultdict(set)  # pair -> ids of words holding it
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += freq[i]
            where[(a, b)].add(i)

    merges = []
    while len(vocab) < vocab_size and pair_count:
        best = max(pair_count.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if pair_count[best] < 2:
            break
        a, b = best
        merged = a + b
        merges.append(best)
        vocab[merged] = len(vocab)
        for i in list(where[best]):
            w = words[i]
            for x, y in zip(w, w[1:]):
                pair_count[(x, y)] -= freq[i]
                if pair_count[(x, y)] <= 0:
                    del pair_count[(x, y)]
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pair_count[(x, y)] += freq[i]
                where[(x, y)].add(i)
        del where[best]
    return vocab, merges


class Encoder:
    """Encodes text with trained merges (used for the training data and references)."""

    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.merges = merges
        self.rank = {m: r for r, m in enumerate(merges)}
        self.cache = {}

    def encode_piece(self, piece):
        if piece in self.cache:
            return self.cache[piece]
        w = list(to_symbols(piece))
        while len(w) > 1:
            ranks = [(self.rank.get((x, y), 1 << 30), k) for k, (x, y) in enumerate(zip(w, w[1:]))]
            r, k = min(ranks)
            if r == 1 << 30:
                break
            w = w[:k] + [w[k] + w[k + 1]] + w[k + 2:]
        ids = [self.vocab[s] for s in w]
        self.cache[piece] = ids
        return ids

    def encode(self, text):
        ids = []
        for p in pieces(text):
            ids += self.encode_piece(p)
        return ids

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        byte_of = {c: b for b, c in BYTE_CHARS.items()}
        out = bytearray()
        for i in ids:
            t = inv[i]
            if t in SPECIAL_TOKENS:
                out += t.encode()
            else:
                out += bytes(byte_of[c] for c in t)
        return out.decode("utf-8", errors="replace")


CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def write_hf_tokenizer(folder, vocab, merges):
    """tokenizer.json and tokenizer_config.json as Hugging Face writes them."""
    added = [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for s in SPECIAL_TOKENS]
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    with open(folder + "/tokenizer.json", "w") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    cfg = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 1024,
        "chat_template": CHATML_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {str(a["id"]): a for a in added},
    }
    with open(folder + "/tokenizer_config.json", "w") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
