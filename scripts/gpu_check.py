"""weir on a GPU against PyTorch on the same GPU: correctness, then speed, side by side in
one run. Run by scripts/gpu-check (read it first: it builds and carries the binary).

1. Correctness. A BERT model of all-MiniLM-L6-v2's exact configuration, random weights
   from a fixed seed (transformers' BertModel, seed 0), saved as safetensors beside
   MiniLM's config.json and tokenizer.json; weir's embed graph on the device (f32) must
   give PyTorch's embeddings (the same weights, tokenizer, mean pooling and L2 norm)
   within 1e-3 on every number, for a few hundred sentences. The digits graph on the
   device must give the CPU's labels.
2. Speed. Sentences/s of weir's embed graph in process (`weir run`, batches of B) and
   over HTTP (`weir serve`, 1, 64 and 256 connections of one-sentence requests), against
   PyTorch (tokenizer + forward + pooling, `torch.inference_mode`, batches of B), in f32
   and bf16, with the GPU's utilisation sampled by nvidia-smi during each measurement.
3. The figures go to OUT/gpu-check.md and OUT/gpu-check.json.

Without a GPU (`--device cpu`), the same steps run on the CPU with MiniLM's real weights,
against the numpy reference of scripts/minilm_reference.py where PyTorch is missing: the
script's own check, and weir's CPU figures; PyTorch's GPU columns then say they were not
measured.

Only the standard library is needed, plus torch, transformers, tokenizers and safetensors
where they are installed (the GPU machine has them), or numpy for the CPU reference.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


# ---------------------------------------------------------------------------------------
# Inputs


def sentences(n):
    """`n` real English sentences, from this repository's own documentation, in a fixed
    order; repeated with a counter when the documents hold fewer."""
    found = []
    docs = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md", "graphs/README.md"]
    docs += sorted("notes/" + f for f in os.listdir(os.path.join(ROOT, "notes")) if f.endswith(".md"))
    for doc in docs:
        with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"```.*?```", " ", text, flags=re.S)  # code blocks
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("|", "#", "<!--")))
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
        text = re.sub(r"[`*_>]", "", text)
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
            words = s.split()
            if 4 <= len(words) <= 60 and s not in found:
                found.append(s.strip())
    if not found:
        sys.exit("gpu_check: no sentences found in the documentation")
    return [found[i % len(found)] + ("" if i < len(found) else f" ({i // len(found)})") for i in range(n)]


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


# ---------------------------------------------------------------------------------------
# The model


def make_model(work, minilm_dir, random_weights):
    """The model directory both sides use: MiniLM's config and tokenizer, and either
    random weights of its configuration (seed 0) or its own weights."""
    model = os.path.join(work, "model")
    os.makedirs(model, exist_ok=True)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(minilm_dir, name), model)
    weights = os.path.join(model, "model.safetensors")
    if random_weights:
        from safetensors.torch import save_file
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        bert = BertModel(BertConfig.from_json_file(os.path.join(model, "config.json")), add_pooling_layer=False)
        save_file({k: v.contiguous() for k, v in bert.state_dict().items()}, weights)
    else:
        shutil.copy(os.path.join(minilm_dir, "model.safetensors"), weights)
    return model


def embed_graph(work, model, device, dtype, batch):
    path = os.path.join(work, f"embed-{device.replace(':', '')}-{dtype}-{batch}.yaml")
    with open(path, "w") as f:
        f.write(
            "name: embed\ninputs:\n  text: str\nnodes:\n  minilm:\n    kind: embed\n"
            f"    model: {model}\n    input: input.text\n    output: embedding\n    max_length: 256\n"
            f"    normalize: true\n    max_batch_size: {batch}\n"
            f"    device: {device}\n    dtype: {dtype}\noutputs:\n  embedding: minilm.embedding\n"
        )
    return path


# ---------------------------------------------------------------------------------------
# PyTorch (or numpy) reference


class TorchEmbedder:
    """transformers' BertModel + mean pooling + L2 norm, tokenised with the same
    tokenizer.json, under torch.inference_mode."""

    def __init__(self, model, device, dtype):
        from tokenizers import Tokenizer
        from transformers import BertModel

        self.device = device
        self.tokenizer = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
        self.tokenizer.enable_truncation(256)
        self.tokenizer.enable_padding()
        torch_dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
        self.model = BertModel.from_pretrained(model, add_pooling_layer=False).to(device, torch_dtype).eval()

    def embed(self, texts):
        with torch.inference_mode():
            enc = self.tokenizer.encode_batch(texts)
            ids = torch.tensor([e.ids for e in enc], device=self.device)
            mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            m = mask.unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled.cpu()

    def sync(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()


def numpy_reference(model, minilm_dir, texts):
    """scripts/minilm_reference.py's forward pass (numpy, float64, its own WordPiece
    from MiniLM's vocab.txt)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import minilm_reference as ref  # noqa: E402

    tensors = ref.load_safetensors(os.path.join(model, "model.safetensors"))
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(minilm_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    out = []
    for t in texts:
        tokens = ["[CLS]"] + [p for tok in ref.basic_tokens(t) for p in ref.wordpiece(tok, vocab)] + ["[SEP]"]
        out.append([float(v) for v in ref.embed([vocab[tok] for tok in tokens], tensors, config)])
    return out


# ---------------------------------------------------------------------------------------
# weir


class Weir:
    def __init__(self, binary, env):
        self.binary = binary
        self.env = env

    def run(self, graph, jsonl, out):
        """`weir run`: (seconds weir reports for the rows, the output lines)."""
        with open(out, "w") as sink:
            done = subprocess.run(
                [self.binary, "run", graph, "--input", jsonl], stdout=sink, stderr=subprocess.PIPE, env=self.env
            )
        err = done.stderr.decode(errors="replace")
        if done.returncode != 0:
            sys.exit(f"gpu_check: weir run {graph} failed ({done.returncode}):\n{err}")
        m = re.search(r"weir: (\d+) rows, (\d+) errors, ([0-9.]+) s", err)
        if not m or m.group(2) != "0":
            sys.exit(f"gpu_check: weir run {graph}: unexpected summary:\n{err}")
        with open(out) as f:
            return float(m.group(3)), [json.loads(line) for line in f]

    def serve(self, graph, port):
        proc = subprocess.Popen(
            [self.binary, "serve", graph, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                sys.exit(f"gpu_check: weir serve exited: {proc.stderr.read().decode(errors='replace')}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return proc
            except OSError:
                pass
            time.sleep(0.2)
        proc.kill()
        sys.exit("gpu_check: weir serve did not become ready in 120 s")


# ---------------------------------------------------------------------------------------
# Measurement helpers


class GpuSampler:
    """nvidia-smi's utilisation.gpu every 100 ms while running (nothing without one)."""

    def __init__(self, on):
        self.on = on and shutil.which("nvidia-smi") is not None
        self.samples = []

    def __enter__(self):
        if self.on:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip().split(",")[0]))
            except ValueError:
                pass

    def __exit__(self, *exc):
        if self.on:
            self.proc.terminate()
            self.proc.wait()

    def mean(self):
        # The first samples may predate the load: drop a fifth at each end.
        s = self.samples
        k = len(s) // 5
        s = s[k : len(s) - k] if len(s) > 4 else s
        return round(statistics.mean(s), 1) if s else None


def _client(port, bodies, window, queue):
    """One keep-alive connection sending requests back to back until the window ends;
    the latencies of the answers that arrive inside it."""
    begin, end = window
    lat = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    while time.time() < begin - WARM_UP:
        time.sleep(0.001)
    i = 0
    while time.time() < end:
        t0 = time.perf_counter()
        conn.request("POST", "/graphs/embed", body=bodies[i % len(bodies)], headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            queue.put(("error", resp.status))
            return
        if begin <= time.time() <= end:
            lat.append(time.perf_counter() - t0)
        i += 1
    queue.put(("ok", lat))


def _process(port, bodies, threads, window, queue):
    inner = []
    ts = []
    q = _ThreadQueue(inner)
    for k in range(threads):
        t = threading.Thread(target=_client, args=(port, bodies[k::threads] or bodies, window, q))
        t.start()
        ts.append(t)
    for t in ts:
        t.join()
    queue.put(inner)


class _ThreadQueue:
    def __init__(self, sink):
        self.sink = sink
        self.lock = threading.Lock()

    def put(self, item):
        with self.lock:
            self.sink.append(item)


# Seconds of load before the measured window: the connections' first batches form.
WARM_UP = 2.0


def http_load(port, texts, connections, seconds, processes):
    """`connections` keep-alive connections, each sending one-sentence requests back to
    back, spread over `processes` Python processes; the answers that arrive in a window
    of `seconds` after a warm-up count: (sentences/s, p50 ms, p99 ms)."""
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    processes = max(1, min(processes, connections))
    per = [connections // processes + (1 if k < connections % processes else 0) for k in range(processes)]
    queue = multiprocessing.Queue()
    begin = time.time() + 1.0 + WARM_UP
    window = (begin, begin + seconds)
    procs = [
        multiprocessing.Process(target=_process, args=(port, bodies[k::processes], n, window, queue))
        for k, n in enumerate(per)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    lat = []
    for inner in results:
        for kind, value in inner:
            if kind == "error":
                sys.exit(f"gpu_check: an HTTP request failed with status {value}")
            lat.extend(value)
    lat.sort()
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3)  # noqa: E731
    return round(len(lat) / seconds, 1), q(0.5), q(0.99)


def rate(weir, graph, jsonl_n, jsonl_2n, n, work):
    """Sentences/s of `weir run` on `graph` from the difference between N and 2N rows,
    which removes the fixed costs of a run (weights, the first pass)."""
    t1, _ = weir.run(graph, jsonl_n, os.path.join(work, "rate.out"))
    t2, _ = weir.run(graph, jsonl_2n, os.path.join(work, "rate.out"))
    return round(n / max(t2 - t1, 1e-9), 1)


def torch_rate(embedder, texts, batch):
    """(sentences/s, p50 ms of a batch) of the reference over `texts` in batches."""
    for i in range(3):  # warm-up: kernels, allocator, cuBLAS handles
        embedder.embed(texts[i * batch : (i + 1) * batch] or texts[:batch])
    embedder.sync()
    times = []
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        t0 = time.perf_counter()
        embedder.embed(texts[i : i + batch])
        times.append(time.perf_counter() - t0)
    embedder.sync()
    return round(len(texts) / (time.perf_counter() - start), 1), round(statistics.median(times) * 1000, 3)


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weir", required=True, help="the weir binary (built with --features cuda for a GPU)")
    ap.add_argument("--minilm", required=True, help="a directory with MiniLM's config.json and tokenizer.json")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer sentences and shorter loads (the CPU half)")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    weir = Weir(args.weir, dict(os.environ))
    figures = {"device": args.device, "torch": HAVE_TORCH, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    report = []

    def say(line=""):
        print(line, flush=True)
        report.append(line)

    def save():
        with open(os.path.join(args.out, "gpu-check.json"), "w") as f:
            json.dump(figures, f, indent=1)
        with open(os.path.join(args.out, "gpu-check.md"), "w") as f:
            f.write("\n".join(report) + "\n")

    if gpu:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        figures["gpu"] = smi.stdout.strip()
    say(f"# gpu-check: weir on {args.device}" + (f" ({figures.get('gpu')})" if gpu else "") + f", {figures['started']}")
    say()

    # 1. Correctness -------------------------------------------------------------------
    random_weights = HAVE_TORCH
    model = make_model(args.work, args.minilm, random_weights)
    n_check = 64 if args.quick else 384
    texts = sentences(max(n_check, 8192))
    check = texts[:n_check]
    check_jsonl = os.path.join(args.work, "check.jsonl")
    write_jsonl(check_jsonl, check)
    graph = embed_graph(args.work, model, args.device, "f32", 64)
    _, lines = weir.run(graph, check_jsonl, os.path.join(args.work, "check.out"))
    got = [line["embedding"] for line in lines]
    if HAVE_TORCH:
        reference = TorchEmbedder(model, "cuda" if gpu else "cpu", "f32")
        want = []
        for i in range(0, len(check), 64):
            want.extend(reference.embed(check[i : i + 64]).tolist())
        against = "PyTorch (transformers BertModel, f32" + (", same GPU)" if gpu else ", CPU)")
    else:
        want = numpy_reference(model, args.minilm, check)
        against = "the numpy reference (scripts/minilm_reference.py; no PyTorch here)"
    worst = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
    figures["embed_max_abs_diff"] = worst
    weights = "random weights of MiniLM's configuration (seed 0)" if random_weights else "MiniLM's weights"
    ok_embed = worst <= 1e-3
    say(f"Correctness, embed graph on {args.device} (f32, {weights}), {len(check)} sentences, against {against}:")
    say(f"- largest difference of any number: {worst:.2e} (floor 1e-3): {'ok' if ok_embed else 'FAILED'}")

    digits = os.path.join(ROOT, "graphs", "digits.yaml")
    with open(digits) as f:
        text = f.read()
    text = re.sub(r"(weights|params): (digits/\S+)", lambda m: f"{m.group(1)}: {ROOT}/graphs/{m.group(2)}", text)
    text = text.replace("    max_batch_size: 32\n", f"    max_batch_size: 32\n    device: {args.device}\n")
    digits_dev = os.path.join(args.work, "digits-device.yaml")
    with open(digits_dev, "w") as f:
        f.write(text)
    labels = {}
    for name, g in (("cpu", digits), ("device", digits_dev)):
        out = os.path.join(args.work, f"digits-{name}.arrow")
        done = subprocess.run(
            [weir.binary, "replay", g, "--input", os.path.join(ROOT, "graphs/digits/test.parquet"), "--output", out],
            capture_output=True,
            text=True,
            env=weir.env,
        )
        if done.returncode != 0:
            sys.exit(f"gpu_check: weir replay {g} failed:\n{done.stderr}")
        try:
            import pyarrow.ipc

            labels[name] = pyarrow.ipc.open_file(out).read_all().column("label").to_pylist()
        except ImportError:
            with open(out, "rb") as f:
                labels[name] = f.read()
    same = labels["cpu"] == labels["device"]
    figures["digits_labels_equal"] = same
    say(f"- digits graph on {args.device} gives the CPU's labels for graphs/digits/test.parquet: {'ok' if same else 'FAILED'}")
    say()
    save()

    # 2. Speed ---------------------------------------------------------------------------
    batches = [1, 8, 32] if args.quick else [1, 8, 32, 64, 128, 256]
    dtypes = ["f32", "bf16"]
    say("In process: sentences/s (weir: `weir run`, the difference between N and 2N rows;")
    say("PyTorch: tokenizer + forward + pooling per batch, torch.inference_mode), GPU utilisation %:")
    say()
    say("| dtype | batch | weir sentences/s | weir GPU % | PyTorch sentences/s | PyTorch GPU % | PyTorch batch p50 ms | weir / PyTorch |")
    say("|---|---|---|---|---|---|---|---|")
    figures["in_process"] = []
    for dtype in dtypes:
        reference = TorchEmbedder(model, "cuda", dtype) if (HAVE_TORCH and gpu) else None
        for b in batches:
            n = (64 if args.quick else 512) if b <= 8 else (256 if args.quick else 4096)
            j1, j2 = os.path.join(args.work, "n.jsonl"), os.path.join(args.work, "2n.jsonl")
            write_jsonl(j1, texts[:n])
            write_jsonl(j2, texts[: 2 * n])
            g = embed_graph(args.work, model, args.device, dtype, b)
            with GpuSampler(gpu) as s:
                w = rate(weir, g, j1, j2, n, args.work)
            row = {"dtype": dtype, "batch": b, "weir": w, "weir_gpu": s.mean()}
            if reference is not None:
                with GpuSampler(gpu) as s:
                    t, p50 = torch_rate(reference, texts[: 2 * n], b)
                row.update(torch=t, torch_gpu=s.mean(), torch_p50_ms=p50, ratio=round(w / t, 3))
            figures["in_process"].append(row)
            na = "not measured: no GPU machine available" if not gpu else "not measured: no PyTorch"
            say(
                f"| {dtype} | {b} | {w} | {row['weir_gpu'] if gpu else '-'} | {row.get('torch', na)} | "
                f"{row.get('torch_gpu', '-')} | {row.get('torch_p50_ms', '-')} | {row.get('ratio', '-')} |"
            )
            save()
        del reference
    say()

    # On a CPU a batch of 256 takes seconds: the quick run keeps the bundled graph's
    # batches and loads a CPU can answer inside the window.
    seconds = 10 if args.quick else 8
    connections = [1, 16, 64] if args.quick else [1, 64, 256]
    procs = max(1, (os.cpu_count() or 2) // 2)
    say("Over HTTP (`weir serve`, POST /graphs/embed, one sentence per request, keep-alive connections; answers")
    say(f"in a {seconds} s window after {WARM_UP:.0f} s of load count; max_batch_size {32 if args.quick else 256}):")
    say()
    say("| dtype | connections | sentences/s | p50 ms | p99 ms | GPU % |")
    say("|---|---|---|---|---|---|")
    figures["http"] = []
    for dtype in dtypes:
        g = embed_graph(args.work, model, args.device, dtype, 32 if args.quick else 256)
        port = 18000 + len(figures["http"])
        server = weir.serve(g, port)
        try:
            http_load(port, texts[:64], 4, 1, 1)  # the server's first passes
            for conns in connections:
                with GpuSampler(gpu) as s:
                    rps, p50, p99 = http_load(port, texts, conns, seconds, procs)
                figures["http"].append(
                    {"dtype": dtype, "connections": conns, "sentences_s": rps, "p50_ms": p50, "p99_ms": p99, "gpu": s.mean()}
                )
                say(f"| {dtype} | {conns} | {rps} | {p50} | {p99} | {s.mean() if gpu else '-'} |")
                save()
        finally:
            server.terminate()
            server.wait()
    say()

    # 3. Floors ----------------------------------------------------------------------------
    if HAVE_TORCH and gpu:
        for dtype in dtypes:
            at256 = [r for r in figures["in_process"] if r["dtype"] == dtype and r["batch"] == 256][0]
            say(f"- floor, {dtype} batch 256: weir / PyTorch = {at256['ratio']} (floor 0.8): {'ok' if at256['ratio'] >= 0.8 else 'BELOW'}")
        b1 = [r for r in figures["in_process"] if r["dtype"] == "f32" and r["batch"] == 1][0]
        lone = [r for r in figures["http"] if r["dtype"] == "f32" and r["connections"] == 1][0]
        bound = round(1.2 * b1["torch_p50_ms"] + 0.2, 3)
        say(f"- floor, a lone request's p50 over HTTP: {lone['p50_ms']} ms (floor 1.2 x PyTorch's batch-1 {b1['torch_p50_ms']} ms + 0.2 = {bound} ms): {'ok' if lone['p50_ms'] <= bound else 'BELOW'}")
    else:
        say("- floors against PyTorch on the GPU: not measured: no GPU machine available")
    save()
    if not (ok_embed and same):
        sys.exit(1)


if __name__ == "__main__":
    main()
