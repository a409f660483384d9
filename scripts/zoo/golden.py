"""Golden files: a model, the float32 inputs fed to its reference library, and the
outputs that library computed, as JSON in tests/golden/zoo/<model stem>.json.

NaN (a missing feature) is written as JSON null; json.dumps is called with
allow_nan=False, so a NaN that slipped through fails the run instead of writing a file
that strict JSON readers reject.
"""

import json
import math
from pathlib import Path

import numpy as np

GOLDEN = Path("tests/golden/zoo")
MAX_ROWS = 100


def plain(value):
    """A JSON-ready copy of an array or scalar: nested lists, float32 widened exactly to
    float64, integers as ints, NaN as None."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    number = float(value)
    return None if math.isnan(number) else number


def write(model_path, inputs, outputs, **extra):
    """Writes the golden of `model_path` (a path under graphs/zoo): `inputs` and
    `outputs` map names to arrays whose first axis is the row. Returns the path."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    body = {"model": str(model_path)}
    body.update(extra)
    body["inputs"] = {k: plain(v) for k, v in inputs.items()}
    body["outputs"] = {k: plain(v) for k, v in outputs.items()}
    path = GOLDEN / f"{Path(model_path).stem}.json"
    path.write_text(json.dumps(body, allow_nan=False, separators=(",", ":")) + "\n")
    return path
