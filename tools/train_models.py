#!/usr/bin/env python3
"""Trains SwarmInfer's small KJV models: a BPE tokenizer, a ~10M-parameter target and a
~2M-parameter draft (llama architecture, one shared tokenizer), and writes each as a
Hugging Face folder that `swarm convert` turns into GGUF.

Reproducible: every random choice comes from --seed, and every hyper-parameter, the
losses and the timings go to train_log.json in each folder. Validation loss is measured
on whole books the models never see (kjv_corpus.VALIDATION_BOOKS).

    python3 tools/train_models.py --out /tmp/kjv            # both models
    python3 tools/train_models.py --out /tmp/kjv --only draft
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe_train  # noqa: E402
import kjv_corpus  # noqa: E402
import tiny_llama  # noqa: E402

SHAPES = {
    # name: (hidden, layers, heads, kv heads, ffn)
    "target": (256, 8, 8, 4, 1024),
    "draft": (128, 4, 4, 2, 384),
}
# The prompt whose logits are exported as the reference for the converted GGUF files.
REFERENCE_PROMPT = "In the beginning God created the heaven and the earth.\n2 And the earth"


def chat_example(book, chapter, verse, text):
    return ("<|im_start|>user\n%s %d:%d<|im_end|>\n<|im_start|>assistant\n%s<|im_end|>\n" %
            (book, chapter, verse, text))


def encode_docs(enc, docs, eot):
    """Token stream: documents separated by <|endoftext|>, specials encoded as themselves."""
    ids = []
    specials = {s: enc.vocab[s] for s in bpe_train.SPECIAL_TOKENS}
    for d in docs:
        ids.append(eot)
        rest = d
        while rest:
            cut = min([(rest.find(s), s) for s in specials if rest.find(s) >= 0] or [(-1, "")])
            if cut[0] < 0:
                ids += enc.encode(rest)
                break
            ids += enc.encode(rest[:cut[0]])
            ids.append(specials[cut[1]])
            rest = rest[cut[0] + len(cut[1]):]
    return torch.tensor(ids, dtype=torch.long)


def batch(stream, gen, batch_size, seq):
    starts = torch.randint(0, len(stream) - seq - 1, (batch_size,), generator=gen)
    x = torch.stack([stream[s:s + seq + 1] for s in starts.tolist()])
    return x[:, :-1], x[:, 1:]


@torch.no_grad()
def evaluate(model, stream, seq, max_windows):
    """Mean loss over consecutive non-overlapping windows of the validation stream."""
    model.eval()
    n = min(max_windows, (len(stream) - 1) // seq)
    total, count = 0.0, 0
    for i in range(0, n, 8):
        xs = [stream[j * seq:(j + 1) * seq + 1] for j in range(i, min(n, i + 8))]
        x = torch.stack(xs)
        logits = model(x[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def train_one(name, args, vocab_size, train_stream, val_stream, out_dir, enc):
    hidden, layers, heads, kv, ffn = SHAPES[name]
    steps = args.target_steps if name == "target" else args.draft_steps
    lr = args.target_lr if name == "target" else args.draft_lr
    torch.manual_seed(args.seed)
    cfg = tiny_llama.Config(vocab_size, hidden, layers, heads, kv, ffn,
                            max_position_embeddings=1024, bos_token_id=0, eos_token_id=0)
    model = tiny_llama.LlamaForCausalLM(cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed + 1)
    log = {"model": name, "parameters": model.n_params(), "seed": args.seed,
           "hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv, "ffn": ffn,
           "vocab": vocab_size, "steps": steps, "batch": args.batch, "seq": args.seq,
           "lr": lr, "warmup": args.warmup, "schedule": "linear warmup, cosine to 10%",
           "weight_decay": 0.1, "betas": [0.9, 0.95], "grad_clip": 1.0,
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "train_tokens": len(train_stream), "val_tokens": len(val_stream), "history": []}
    print("[%s] %d parameters, %d steps" % (name, model.n_params(), steps), flush=True)
    t0 = time.time()
    for step in range(1, steps + 1):
        scale = step / args.warmup if step <= args.warmup else \
            0.1 + 0.45 * (1 + math.cos(math.pi * (step - args.warmup) / (steps - args.warmup)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        x, y = batch(train_stream, gen, args.batch, args.seq)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == 1:
            entry = {"step": step, "train_loss": round(loss.item(), 4),
                     "seconds": round(time.time() - t0, 1)}
            if step % args.eval_every == 0:
                entry["val_loss"] = round(evaluate(model, val_stream, args.seq, 16), 4)
            log["history"].append(entry)
            print("[%s] %s" % (name, json.dumps(entry)), flush=True)
    log["train_seconds"] = round(time.time() - t0, 1)
    val = evaluate(model, val_stream, args.seq, args.val_windows)
    log["val_loss"] = round(val, 4)
    log["val_perplexity"] = round(math.exp(val), 2)
    log["val_windows"] = min(args.val_windows, (len(val_stream) - 1) // args.seq)
    print("[%s] validation loss %.4f perplexity %.2f" % (name, val, math.exp(val)), flush=True)

    folder = os.path.join(out_dir, "kjv-" + name)
    os.makedirs(folder, exist_ok=True)
    model.eval()
    tiny_llama.save_hf(model, folder)
    bpe_train.write_hf_tokenizer(folder, enc.vocab, enc.merges)
    export_reference(model, enc, folder)
    with open(os.path.join(folder, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)


@torch.no_grad()
def export_reference(model, enc, folder):
    """ref/: prompt ids (BOS first), float32 logits at every position, and 32 greedy
    tokens computed by re-running the whole sequence (no cache), as raw little-endian."""
    ref = os.path.join(folder, "ref")
    os.makedirs(ref, exist_ok=True)
    ids = [enc.vocab["<|endoftext|>"]] + enc.encode(REFERENCE_PROMPT)
    x = torch.tensor([ids])
    logits = model(x)[0].to(torch.float32)
    greedy, seq = [], list(ids)
    for _ in range(32):
        nxt = int(model(torch.tensor([seq]))[0, -1].argmax())
        greedy.append(nxt)
        seq.append(nxt)
    torch.tensor(ids, dtype=torch.int32).numpy().tofile(os.path.join(ref, "prompt_ids.i32"))
    logits.numpy().tofile(os.path.join(ref, "prompt_logits.f32"))
    torch.tensor(greedy, dtype=torch.int32).numpy().tofile(os.path.join(ref, "greedy.i32"))
    with open(os.path.join(ref, "README"), "w") as f:
        f.write("prompt %r\nprompt_ids.i32 [%d] int32, prompt_logits.f32 [%d, %d] float32, "
                "greedy.i32 [32] int32\ngreedy text %r\n" %
                (REFERENCE_PROMPT, len(ids), len(ids), logits.shape[1], enc.decode(greedy)))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", choices=["target", "draft"])
    ap.add_argument("--seed", type=int, default=1611)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--target-steps", type=int, default=1000)
    ap.add_argument("--draft-steps", type=int, default=1000)
    ap.add_argument("--target-lr", type=float, default=3e-3)
    ap.add_argument("--draft-lr", type=float, default=4e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--val-windows", type=int, default=200)
    ap.add_argument("--chat-fraction", type=float, default=0.15,
                    help="share of training verses also given as chat turns (reference -> verse)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a loaded 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    chapters = kjv_corpus.read_chapters()
    train_ch, val_ch = kjv_corpus.split_chapters(chapters)
    train_docs = [kjv_corpus.chapter_text(*c) for c in train_ch]
    val_docs = [kjv_corpus.chapter_text(*c) for c in val_ch]
    t0 = time.time()
    vocab, merges = bpe_train.train(train_docs, args.vocab)
    enc = bpe_train.Encoder(vocab, merges)
    print("tokenizer: %d tokens, %d merges, %.1f s" % (len(vocab), len(merges), time.time() - t0),
          flush=True)
    rng = random.Random(args.seed)
    chats = [chat_example(b, c, n, t) for b, c, vs in train_ch for n, t in vs
             if rng.random() < args.chat_fraction]
    docs = train_docs + chats
    rng.shuffle(docs)
    eot = vocab["<|endoftext|>"]
    train_stream = encode_docs(enc, docs, eot)
    val_stream = encode_docs(enc, val_docs, eot)
    print("train tokens %d (chat turns %d), validation tokens %d" %
          (len(train_stream), len(chats), len(val_stream)), flush=True)
    for name in ("draft", "target"):
        if args.only in (None, name):
            train_one(name, args, len(vocab), train_stream, val_stream, args.out, enc)


if __name__ == "__main__":
    main()
