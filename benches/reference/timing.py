"""What onnx_speed.py and trees_speed.py share: reading a golden file's rows, cutting
them into consecutive batches, timing a predict function over them, and printing one
JSON line per batch size.

Timing: for each batch size B, batch i holds rows (i*B .. i*B+B) mod n of the golden's
n rows (the rows repeat, in order, as often as needed). A few warm-up batches run first
and are not timed; then batches run back to back until at least `seconds` have passed
(and at least 3 batches); rows_per_s = rows predicted / time taken. Timed with
time.perf_counter, on the calling thread.
"""

import argparse
import json
import time

import numpy as np

WARMUP_BATCHES = 3
MIN_BATCHES = 3


def arguments(description, batches):
    """The command line both scripts take: MODEL --rows ROWS.json --batch B1,B2,...
    [--seconds S]."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model")
    parser.add_argument("--rows", required=True,
                        help="a golden file (tests/golden/zoo/*.json): its first input's rows")
    parser.add_argument("--batch", default=batches,
                        help=f"comma-separated batch sizes (default {batches})")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="least time spent on each batch size (default 1)")
    return parser


def batch_sizes(text):
    """Parses "1,32,256" into [1, 32, 256]; every size must be a positive integer."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError as error:
        raise SystemExit(f"--batch {text!r}: not a comma-separated list of integers") from error
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"--batch {text!r}: batch sizes must be 1 or more")
    return sizes


def golden(path):
    """The golden file at `path`: (first input's rows as a float32 array, with null read
    as NaN; the golden's outputs, as a dict of arrays)."""
    with open(path) as f:
        body = json.load(f)
    inputs = body.get("inputs") or {}
    if not inputs:
        raise SystemExit(f"{path}: no \"inputs\" (is it a golden file?)")
    rows = next(iter(inputs.values()))
    if not rows:
        raise SystemExit(f"{path}: its first input has no rows")
    x = np.array(rows, dtype=np.float32)
    outputs = {k: np.array(v, dtype=np.float64) for k, v in body.get("outputs", {}).items()}
    return x, outputs


def check(model, name, got, want):
    """Stops with a message when the library's output `got` for the golden rows is not
    the golden's `want` (relative 1e-5, absolute 1e-6): the timing would be of the wrong
    model or the wrong input."""
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    if not np.allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True):
        worst = np.nanmax(np.abs(got - want))
        raise SystemExit(f"{model}: output {name!r} differs from the golden's (largest "
                         f"difference {worst:g}); refusing to time it")


def measure(x, batch, predict, seconds):
    """Rows per second of predict(batch_rows) over consecutive batches of x."""
    n = len(x)
    repeats = -(-(n + batch) // n)
    pool = np.ascontiguousarray(np.concatenate([x] * repeats))
    starts = [(i * batch) % n for i in range(n)]
    for i in range(WARMUP_BATCHES):
        predict(pool[starts[i % n]:starts[i % n] + batch])
    done = 0
    begin = time.perf_counter()
    while True:
        start = starts[done % n]
        predict(pool[start:start + batch])
        done += 1
        elapsed = time.perf_counter() - begin
        if elapsed >= seconds and done >= MIN_BATCHES:
            return done * batch / elapsed


def report(model, batch, rows_per_s, **extra):
    """Prints one JSON line: {"model", "batch", "rows_per_s", ...extra}."""
    line = {"model": model, "batch": batch, "rows_per_s": round(rows_per_s, 1)}
    line.update(extra)
    print(json.dumps(line), flush=True)
