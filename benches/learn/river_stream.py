"""Writes one of River's binary streams as a gzipped CSV: a header, then one row per
event, its features (as numbers) then its label (1 or 0) last, as phishing.csv.gz is
laid out.

Usage: python3 river_stream.py RIVER_DIR NAME ROWS SEED OUT.csv.gz
NAME: one of the keys of STREAMS below (River's synthetic generators at SEED, or its
bundled Bananas dataset, whose first ROWS events are taken). RIVER_DIR is where river
was installed with pip --target (the bench installs it there).
"""
import csv
import gzip
import sys

sys.path.insert(0, sys.argv[1])
from river import datasets  # noqa: E402
from river.datasets import synth  # noqa: E402

name, rows, seed, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
STREAMS = {
    # 10 features, 5% label noise.
    "hyperplane": lambda: synth.Hyperplane(seed=seed, n_features=10),
    # 3 features in [0, 10); the label is x0 + x1 <= 8 (the first concept).
    "sea": lambda: synth.SEA(seed=seed),
    # 9 features of a loan applicant (salary, age, ...); the first concept.
    "agrawal": lambda: synth.Agrawal(seed=seed),
    # 2 features in [0, 1); the label is y <= sin(x).
    "sine": lambda: synth.Sine(seed=seed),
    # 10 features, 50 centroids of two classes.
    "random_rbf": lambda: synth.RandomRBF(seed_model=seed, seed_sample=seed),
    # River's bundled two-feature dataset (5300 events); SEED is not used.
    "bananas": datasets.Bananas,
}
if name not in STREAMS:
    sys.exit(f"unknown stream '{name}' (expected one of {', '.join(STREAMS)})")
events = list(STREAMS[name]().take(rows))
with gzip.open(out, "wt", newline="") as f:
    writer = csv.writer(f)
    names = list(events[0][0])
    writer.writerow([f"x{n}" for n in names] + ["label"])
    for x, y in events:
        writer.writerow([repr(float(x[n])) for n in names] + [int(y)])
