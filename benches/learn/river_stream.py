"""Writes one of River's synthetic binary streams as a gzipped CSV: a header, then one
row per event, its features then its label (1 or 0) last, as phishing.csv.gz is laid out.

Usage: python3 river_stream.py RIVER_DIR NAME ROWS SEED OUT.csv.gz
NAME: hyperplane (river.datasets.synth.Hyperplane, 10 features, 5% label noise).
RIVER_DIR is where river was installed with pip --target (the bench installs it there).
"""
import csv
import gzip
import sys

sys.path.insert(0, sys.argv[1])
from river.datasets import synth  # noqa: E402

name, rows, seed, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
streams = {"hyperplane": lambda: synth.Hyperplane(seed=seed, n_features=10)}
if name not in streams:
    sys.exit(f"unknown stream '{name}' (expected one of {', '.join(streams)})")
events = list(streams[name]().take(rows))
with gzip.open(out, "wt", newline="") as f:
    writer = csv.writer(f)
    names = list(events[0][0])
    writer.writerow([f"x{n}" for n in names] + ["label"])
    for x, y in events:
        writer.writerow([repr(float(x[n])) for n in names] + [int(y)])
