"""graphs/zoo/README.md, written from what the run made: each file, how it was made, its
held-out score, and for each ONNX file its operators and inputs/outputs read back from
the file itself."""

from pathlib import Path

from . import onnx_info

HEAD = """# Model zoo

Models trained on weir's data sets (`graphs/data/`) by `scripts/make-zoo`, which installs
pinned scikit-learn, skl2onnx, onnx, onnxruntime, xgboost and lightgbm into `.tools/zoo`
and runs `scripts/make_zoo.py`. Every file here, `tests/golden/zoo/*.json` and
`graphs/data/diabetes.csv.gz` are written by that script; this README too (edit
`scripts/zoo/readme.py`, not this file). It is deterministic (fixed seeds, one thread):
a second run writes the same bytes.

Splits: row `i` (0-based, file order) of a data set is held out when `i % 5 == 0`, the
rest trains (digits: 1437 / 360, phishing: 1000 / 250, diabetes: 353 / 89). Scores
below are on every held-out row, computed with the reference library (onnxruntime for
`.onnx`, the library's own `predict` for trees) on float32 inputs.

## Goldens

`tests/golden/zoo/<file stem>.json`, one per model (not `bad/`):

    {"model": "graphs/zoo/x.onnx", "inputs": {"<input name>": [[row], ...]},
     "outputs": {"<output name>": [per-row value or [vector]], ...}}

The first 100 held-out rows, cast to float32 first (weir's fields are f32) and fed to
the reference library as exactly those values; JSON numbers are those float32 values
widened to float64. The outputs are the library's own (float32 from onnxruntime and
XGBoost, float64 from LightGBM). NaN (a missing feature) is written as `null`. The
digits CNN's rows are `[1, 8, 8]` arrays (its input tensor without the batch axis).

Tree goldens also carry `"library"` (`xgboost` or `lightgbm`) and `"objective"` (as the
library names it); their input is `features` (`[N, k]` float32, the data set's columns
in file order), and every third row (0, 3, 6, ...) has two features set to NaN. Their
outputs: binary -> `probability` (P(class 1)) and `label` (1 when probability > 0.5);
multiclass -> `probabilities` (`[10]` per row) and `label` (the first largest);
regression -> `value`.

Inputs of the digits models are the raw pixel values 0-16, except `digits_cnn.onnx`
and `bad/zipmap.onnx`, which take pixel / 16. In the `*_cat` tree models and
`ops_onehot.onnx`, phishing's values 0, 0.5, 1 are given as category codes 0, 1, 2
(value x 2): columns 0 and 2 (empty_server_form_handler, https) for `*_cat`, every
column for `ops_onehot`. The last two golden rows of the `*_cat` models carry categories
never seen in training (code 3 in column 0, code 5 in column 2): the libraries answer
them (each by its own rule), and so must a kernel that claims to match.

In the ONNX shapes below, `?` is a dimension with neither a size nor a name (skl2onnx
writes the batch axis so). skl2onnx was asked for `target_opset={"": 17, "ai.onnx.ml": 3}`
and declares, per domain, the lowest opset its nodes need (at most that); some of its
files list the default domain (`""`) twice in `opset_import`, with the same version (left
as skl2onnx writes it: a reader must accept it).

Reference timings: `benches/reference/onnx_speed.py` and `benches/reference/trees_speed.py`
(run by `cargo bench --bench onnx` and `--bench trees` with `PYTHONPATH=.tools/zoo`).

## Files
"""


OUTPUTS = {
    "binary": "`probability` (P(class 1)), `label`",
    "multiclass": "`probabilities` [N, 10], `label`",
    "regression": "`value`",
}


def write(entries, path=Path("graphs/zoo/README.md")):
    """Writes the README from the zoo entries (dicts with path, what, score)."""
    lines = [HEAD]
    for e in sorted(entries, key=lambda e: str(e["path"])):
        p = Path(e["path"])
        name = p.relative_to("graphs/zoo")
        lines.append(f"### `{name}` ({p.stat().st_size} bytes)\n")
        lines.append(f"{e['what']}.\n")
        lines.append(f"Held-out score: {e['score']}.\n")
        if p.suffix == ".onnx":
            info = onnx_info.summary(p)
            opsets = ", ".join(f"{d} {v}" for d, v in info["opsets"])
            lines.append(f"- IR version {info['ir_version']}; opsets imported: {opsets}")
            lines.append("- ops: " + ", ".join(f"{d}:{op}" for d, op in info["ops"]))
            lines.append("- inputs: " + "; ".join(info["inputs"]))
            lines.append("- outputs: " + "; ".join(info["outputs"]) + "\n")
        else:
            lines.append(f"- {e['structure']}")
            lines.append(f"- input: `features`: float32 [N, {e['width']}]")
            lines.append(f"- outputs (golden): {OUTPUTS[e['task']]}\n")
    path.write_text("\n".join(lines))
    return path
