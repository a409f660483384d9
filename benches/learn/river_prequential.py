"""River's StandardScaler | LogisticRegression, predict-then-learn over a CSV stream.

Usage: python3 river_prequential.py RIVER_DIR STREAM.csv.gz REPEATS
Prints one line per repeat: "<accuracy> <events per second>" (the accuracy in full, so
that an equal count of right predictions compares equal). RIVER_DIR is where river
was installed with pip --target (the bench installs it there).
"""
import csv
import gzip
import sys
import time

sys.path.insert(0, sys.argv[1])
from river import linear_model, metrics, preprocessing  # noqa: E402

with gzip.open(sys.argv[2], "rt") as f:
    reader = csv.reader(f)
    header = next(reader)
    rows = [({h: float(v) for h, v in zip(header[:-1], line[:-1])}, line[-1] == "1") for line in reader]

for _ in range(int(sys.argv[3])):
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    accuracy = metrics.Accuracy()
    started = time.perf_counter()
    for x, y in rows:
        accuracy.update(y, model.predict_one(x))
        model.learn_one(x, y)
    print(f"{accuracy.get()!r} {len(rows) / (time.perf_counter() - started):.1f}", flush=True)
