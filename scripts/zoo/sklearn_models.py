"""scikit-learn pipelines trained on weir's data and exported to ONNX by skl2onnx, with
the classic ONNX-ML ops (target opset ai.onnx 17, ai.onnx.ml 3: TreeEnsembleClassifier
and TreeEnsembleRegressor rather than ml-opset-5 TreeEnsemble), and their goldens
computed by onnxruntime."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Binarizer, Normalizer, OneHotEncoder, StandardScaler

from . import data, golden

ZOO = Path("graphs/zoo")
OPSET = {"": 17, "ai.onnx.ml": 3}


def export(pipe, input_name, width, path, zipmap=False):
    """Converts the fitted pipeline to ONNX (one float32 input [N, width]) and saves it.
    A classifier's ZipMap is left out unless `zipmap`."""
    final = pipe.steps[-1][1] if isinstance(pipe, Pipeline) else pipe
    options = None
    if hasattr(final, "predict_proba") and not zipmap:
        options = {id(final): {"zipmap": False}}
    model = convert_sklearn(pipe, initial_types=[(input_name, FloatTensorType([None, width]))],
                            target_opset=OPSET, options=options)
    model.producer_name = "weir scripts/make-zoo (skl2onnx)"
    model.graph.name = path.stem  # skl2onnx names the graph with a random UUID
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def run(path, x):
    """onnxruntime's outputs for float32 rows x (CPU, one thread), by output name."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


def finish(pipe, path, input_name, split, task):
    """Scores the exported model with onnxruntime on every held-out row, checks it
    against the scikit-learn pipeline it came from, writes its golden (the first 100
    held-out rows) and returns the zoo entry."""
    x = split.x_test.astype(np.float32)
    out = run(path, x)
    rows = f"on {len(x)} held-out {split.name} rows"
    if task == "classify":
        agree = np.sum(out["label"] == pipe.predict(x.astype(np.float64)))
        score = (f"accuracy {np.mean(out['label'] == split.y_test):.4f} {rows}; onnxruntime's "
                 f"label is scikit-learn's on {agree} of {len(x)} rows")
    else:
        pred = out["variable"].reshape(-1)
        gap = np.max(np.abs(pred - pipe.predict(x.astype(np.float64))))
        score = (f"RMSE {np.sqrt(np.mean((pred - split.y_test) ** 2)):.2f} {rows}; onnxruntime is "
                 f"within {gap:.2g} of scikit-learn on every row")
    head = {k: v[: golden.MAX_ROWS] for k, v in out.items()}
    golden.write(path, {input_name: x[: golden.MAX_ROWS]}, head)
    return {"path": path, "score": score}


def digits_models():
    """digits_logreg, digits_mlp, digits_gbc (input `pixels`, raw 0-16 values) and
    bad/zipmap.onnx (logistic regression exported WITH ZipMap, for the error test)."""
    d = data.digits()
    entries = []
    made = [
        ("digits_logreg.onnx", "StandardScaler + LogisticRegression(max_iter=2000)",
         Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))])),
        ("digits_mlp.onnx", "StandardScaler + MLPClassifier(hidden_layer_sizes=(32,), "
         "max_iter=600, random_state=0)",
         Pipeline([("scale", StandardScaler()),
                   ("clf", MLPClassifier(hidden_layer_sizes=(32,), max_iter=600,
                                         random_state=0))])),
        ("digits_gbc.onnx", "GradientBoostingClassifier(n_estimators=30, max_depth=3, "
         "random_state=0)",
         Pipeline([("clf", GradientBoostingClassifier(n_estimators=30, max_depth=3,
                                                      random_state=0))])),
    ]
    for name, how, pipe in made:
        pipe.fit(d.x_train, d.y_train)
        path = export(pipe, "pixels", 64, ZOO / name)
        entry = finish(pipe, path, "pixels", d, "classify")
        entry["what"] = f"digits (weir's train split, raw pixels 0-16): {how}; skl2onnx, zipmap off"
        entries.append(entry)
    bad = LogisticRegression(max_iter=2000).fit(d.x_train / 16.0, d.y_train)
    path = export(bad, "pixels", 64, ZOO / "bad" / "zipmap.onnx", zipmap=True)
    entries.append({"path": path, "score": "(not scored: its output is a sequence of maps)",
                    "what": "digits (pixels / 16): LogisticRegression exported WITH ZipMap, "
                            "for the test that weir refuses it (no golden)"})
    return entries


def ops_models():
    """Small real pipelines, one per ONNX-ML op the issue names (ops_*.onnx)."""
    digits, phishing, diabetes = data.digits(), data.phishing(), data.diabetes()
    entries = []

    # Imputer + LinearRegressor: diabetes with 10% of the cells missing.
    holes = data.Split("diabetes (10% of cells NaN)", diabetes.feature_names,
                       data.with_missing(diabetes.x_train, 0.1, seed=1), diabetes.y_train,
                       data.with_missing(diabetes.x_test, 0.1, seed=2), diabetes.y_test)
    pipe = Pipeline([("impute", SimpleImputer(strategy="mean")), ("reg", LinearRegression())])
    entries.append(_fit(pipe, holes, "features", "ops_imputer.onnx", "regress",
                        "SimpleImputer(mean) + LinearRegression"))

    # Binarizer: digits pixels above 7.5 become 1.
    pipe = Pipeline([("bin", Binarizer(threshold=7.5)), ("clf", LogisticRegression(max_iter=2000))])
    entries.append(_fit(pipe, digits, "pixels", "ops_binarizer.onnx", "classify",
                        "Binarizer(threshold=7.5) + LogisticRegression"))

    # OneHotEncoder: phishing's values 0, 0.5, 1 coded as categories 0, 1, 2.
    coded = data.Split("phishing (values x2: categories 0, 1, 2)", phishing.feature_names,
                       phishing.x_train * 2, phishing.y_train, phishing.x_test * 2, phishing.y_test)
    pipe = Pipeline([("onehot", OneHotEncoder(handle_unknown="ignore")),
                     ("clf", LogisticRegression(max_iter=2000))])
    entries.append(_fit(pipe, coded, "features", "ops_onehot.onnx", "classify",
                        "OneHotEncoder(handle_unknown='ignore') + LogisticRegression"))

    # Normalizer: each digits row scaled to unit L2 norm.
    pipe = Pipeline([("norm", Normalizer(norm="l2")), ("clf", LogisticRegression(max_iter=2000))])
    entries.append(_fit(pipe, digits, "pixels", "ops_normalizer.onnx", "classify",
                        "Normalizer(l2) + LogisticRegression"))

    # ArrayFeatureExtractor: a ColumnTransformer keeps bmi, bp and s5 (columns 2, 3, 8).
    pipe = Pipeline([("cols", ColumnTransformer([("keep", StandardScaler(), [2, 3, 8])])),
                     ("reg", LinearRegression())])
    entries.append(_fit(pipe, diabetes, "features", "ops_columns.onnx", "regress",
                        "ColumnTransformer(StandardScaler on columns 2, 3, 8: bmi, bp, s5) "
                        "+ LinearRegression"))

    # TreeEnsembleRegressor: gradient-boosted trees on diabetes.
    pipe = Pipeline([("reg", GradientBoostingRegressor(n_estimators=50, max_depth=3,
                                                       random_state=0))])
    entries.append(_fit(pipe, diabetes, "features", "ops_gbr.onnx", "regress",
                        "GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0)"))
    return entries


def _fit(pipe, split, input_name, name, task, how):
    pipe.fit(split.x_train, split.y_train)
    path = export(pipe, input_name, split.x_train.shape[1], ZOO / name)
    entry = finish(pipe, path, input_name, split, task)
    entry["what"] = f"{split.name}, train split: {how}; skl2onnx" + (
        ", zipmap off" if task == "classify" else "")
    return entry
