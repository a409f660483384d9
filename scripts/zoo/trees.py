"""Gradient-boosted trees trained with XGBoost and LightGBM (one thread, fixed seeds,
10% of the training cells set to NaN so that default directions matter), saved in each
library's own format (XGBoost JSON, LightGBM text), with goldens from each library's
own `predict`.

Categorical models (`*_cat`): phishing's columns empty_server_form_handler (0) and
https (2), whose values are 0, 0.5 and 1, are given as the category codes 0, 1, 2
(value x 2) and declared categorical (XGBoost feature type "c", LightGBM
categorical_feature). Their goldens' inputs hold the codes, and their last two rows a
category unseen in training (3 and 5).
"""

import json
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import xgboost as xgb

from . import data, golden

ZOO = Path("graphs/zoo")
CATEGORICAL = [0, 2]


def _task(split):
    if split.name.startswith("digits"):
        return "multiclass"
    if split.name.startswith("phishing"):
        return "binary"
    return "regression"


def _golden_rows(split, seed, categorical=False):
    """The first 100 held-out rows as float32, with two features set to NaN in every
    third row (row 0, 3, 6, ...), chosen with `seed`. For a categorical model the last
    two rows also carry categories never seen in training: code 3 in column 0 (row 98)
    and code 5 in column 2 (row 99)."""
    x = split.x_test[: golden.MAX_ROWS].astype(np.float32).copy()
    rng = np.random.default_rng(seed)
    for row in range(0, len(x), 3):
        x[row, rng.choice(x.shape[1], size=2, replace=False)] = np.nan
    if categorical:
        x[-2, CATEGORICAL[0]] = 3.0
        x[-1, CATEGORICAL[1]] = 5.0
    return x


def _outputs(task, pred):
    """Golden outputs from the library's prediction (P(1), class probabilities or value)."""
    if task == "binary":
        return {"probability": pred, "label": (pred > 0.5).astype(np.int64)}
    if task == "multiclass":
        return {"probabilities": pred, "label": pred.argmax(axis=1)}
    return {"value": pred}


def _score(task, pred, y, name):
    if task == "regression":
        return f"RMSE {np.sqrt(np.mean((pred - y) ** 2)):.2f} on {len(y)} held-out {name} rows"
    label = (pred > 0.5).astype(np.int64) if task == "binary" else pred.argmax(axis=1)
    return f"accuracy {np.mean(label == y):.4f} on {len(y)} held-out {name} rows"


XGB_OBJECTIVE = {"binary": "binary:logistic", "multiclass": "multi:softprob",
                 "regression": "reg:squarederror"}
LGB_OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}


def xgboost_model(split, name, rounds, categorical=False):
    """Trains and saves graphs/zoo/<name>.json with XGBoost, writes its golden; returns
    the zoo entry."""
    task = _task(split)
    params = {"objective": XGB_OBJECTIVE[task], "max_depth": 4, "eta": 0.3, "nthread": 1,
              "seed": 0, "tree_method": "hist"}
    if task == "multiclass":
        params["num_class"] = 10
    types = None
    if categorical:
        types = ["c" if i in CATEGORICAL else "q" for i in range(split.x_train.shape[1])]
        params["max_cat_to_onehot"] = 1

    def matrix(x, y=None):
        return xgb.DMatrix(x.astype(np.float32), label=y, missing=np.nan,
                           feature_names=split.feature_names, feature_types=types,
                           enable_categorical=categorical, nthread=1)

    train_x = data.with_missing(split.x_train, 0.1, seed=10)
    booster = xgb.train(params, matrix(train_x, split.y_train), num_boost_round=rounds)
    path = ZOO / f"{name}.json"
    booster.save_model(str(path))
    score = _score(task, booster.predict(matrix(split.x_test)), split.y_test, split.name)
    x = _golden_rows(split, seed=20, categorical=categorical)
    golden.write(path, {"features": x}, _outputs(task, booster.predict(matrix(x))),
                 library="xgboost", objective=params["objective"])
    how = (f"xgboost.train({params['objective']}, {rounds} rounds, max_depth 4, eta 0.3, "
           f"hist, nthread 1, seed 0)")
    if categorical:
        how += ", columns 0 and 2 categorical (max_cat_to_onehot 1: partition splits)"
    dumped = json.loads(path.read_text())["learner"]["gradient_booster"]["model"]["trees"]
    categorical_splits = sum(t["split_type"].count(1) for t in dumped)
    return {"path": path, "score": score, "width": split.x_train.shape[1], "task": task,
            "structure": f"{len(dumped)} trees, {categorical_splits} categorical splits",
            "what": f"{split.name}, train split with 10% of cells NaN: {how}; save_model"}


def lightgbm_model(split, name, rounds, categorical=False):
    """Trains and saves graphs/zoo/<name>.txt with LightGBM, writes its golden; returns
    the zoo entry."""
    task = _task(split)
    params = {"objective": LGB_OBJECTIVE[task], "num_leaves": 15, "max_depth": 4,
              "learning_rate": 0.1, "num_threads": 1, "seed": 0, "deterministic": True,
              "force_col_wise": True, "verbose": -1}
    if task == "multiclass":
        params["num_class"] = 10
    cats = "auto"
    if categorical:
        cats = CATEGORICAL
        params.update({"max_cat_to_onehot": 1, "min_data_per_group": 20, "cat_smooth": 1.0})
    train_x = data.with_missing(split.x_train, 0.1, seed=10)
    dataset = lgb.Dataset(train_x, label=split.y_train, feature_name=split.feature_names,
                          categorical_feature=cats, params={"verbose": -1})
    booster = lgb.train(params, dataset, num_boost_round=rounds)
    path = ZOO / f"{name}.txt"
    booster.save_model(str(path))

    def predict(x):
        return booster.predict(x.astype(np.float32).astype(np.float64), num_threads=1)

    score = _score(task, predict(split.x_test), split.y_test, split.name)
    x = _golden_rows(split, seed=20, categorical=categorical)
    golden.write(path, {"features": x}, _outputs(task, predict(x)),
                 library="lightgbm", objective=params["objective"])
    how = (f"lightgbm.train({params['objective']}, {rounds} rounds, num_leaves 15, "
           f"max_depth 4, learning_rate 0.1, num_threads 1, seed 0, deterministic)")
    if categorical:
        how += ", columns 0 and 2 categorical (max_cat_to_onehot 1: partition splits)"
    text = path.read_text()
    categorical_splits = sum(int(n) for n in re.findall(r"^num_cat=(\d+)$", text, re.M))
    return {"path": path, "score": score, "width": split.x_train.shape[1], "task": task,
            "structure": f"{text.count(chr(10) + 'Tree=')} trees, {categorical_splits} "
                         f"categorical splits",
            "what": f"{split.name}, train split with 10% of cells NaN: {how}; save_model"}


def make():
    """Every tree model of the zoo; returns their entries."""
    digits, phishing, diabetes = data.digits(), data.phishing(), data.diabetes()
    coded = phishing.x_train.copy(), phishing.x_test.copy()
    for x in coded:
        x[:, CATEGORICAL] *= 2
    phishing_cat = data.Split("phishing (columns 0 and 2 as codes 0, 1, 2)",
                              phishing.feature_names, coded[0], phishing.y_train,
                              coded[1], phishing.y_test)
    entries = []
    for split, stem, rounds in [(phishing, "phishing", 50), (digits, "digits", 30),
                                (diabetes, "diabetes", 50)]:
        entries.append(xgboost_model(split, f"{stem}_xgb", rounds))
        entries.append(lightgbm_model(split, f"{stem}_lgbm", rounds))
    entries.append(xgboost_model(phishing_cat, "phishing_xgb_cat", 50, categorical=True))
    entries.append(lightgbm_model(phishing_cat, "phishing_lgbm_cat", 50, categorical=True))
    return entries
