"""The data sets the zoo trains on, and weir's train / held-out split.

Every data set is split the way weir splits digits: row i (0-based, file order) is
held out when i % 5 == 0, otherwise it is a training row.
"""

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path("graphs/data")
SKLEARN_DATA = Path(".tools/zoo/sklearn/datasets/data")


@dataclass
class Split:
    """Features and targets of one data set, split into train and held-out rows."""

    name: str
    feature_names: list
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def split(name, feature_names, x, y):
    """Splits rows by weir's rule: index % 5 == 0 is held out."""
    held = np.arange(len(x)) % 5 == 0
    return Split(name, feature_names, x[~held], y[~held], x[held], y[held])


def digits():
    """Digits: 64 pixels (0-16) and the label, from graphs/data/digits.csv.gz."""
    table = np.loadtxt(DATA / "digits.csv.gz", delimiter=",")
    names = [f"pixel{i}" for i in range(64)]
    return split("digits", names, table[:, :64], table[:, 64].astype(np.int64))


def phishing():
    """Phishing: 9 features and is_phishing, from graphs/data/phishing.csv.gz."""
    with gzip.open(DATA / "phishing.csv.gz", "rt") as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",")
    return split("phishing", header[:9], table[:, :9], table[:, 9].astype(np.int64))


def write_diabetes():
    """Copies scikit-learn's raw diabetes data (442 rows, 10 features, the target)
    into graphs/data/diabetes.csv.gz: no header, comma-separated, the numbers as
    scikit-learn's files write them. Written with a zero gzip timestamp, so the bytes
    do not change from run to run."""
    with gzip.open(SKLEARN_DATA / "diabetes_data_raw.csv.gz", "rt") as f:
        rows = [line.split() for line in f if line.strip()]
    with gzip.open(SKLEARN_DATA / "diabetes_target.csv.gz", "rt") as f:
        targets = [float(line) for line in f if line.strip()]
    if len(rows) != len(targets):
        raise ValueError(f"diabetes: {len(rows)} feature rows but {len(targets)} targets")
    text = "".join(",".join(r) + f",{t:g}\n" for r, t in zip(rows, targets))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as z:
        z.write(text.encode())
    (DATA / "diabetes.csv.gz").write_bytes(out.getvalue())


def diabetes():
    """Diabetes: 10 features (age, sex, bmi, bp, s1-s6) and the disease progression a
    year later, from graphs/data/diabetes.csv.gz (written by write_diabetes)."""
    table = np.loadtxt(DATA / "diabetes.csv.gz", delimiter=",")
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    return split("diabetes", names, table[:, :10], table[:, 10])


def with_missing(x, fraction, seed):
    """A copy of x with about `fraction` of its cells set to NaN (chosen with `seed`)."""
    rng = np.random.default_rng(seed)
    out = x.astype(np.float64).copy()
    out[rng.random(out.shape) < fraction] = np.nan
    return out
