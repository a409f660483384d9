"""Reference timing for weir's tree kernels: XGBoost's and LightGBM's own predict on one
thread.

    PYTHONPATH=.tools/zoo python3 benches/reference/trees_speed.py graphs/zoo/digits_xgb.json \\
        --kind xgboost --rows tests/golden/zoo/digits_xgb.json --batch 1,32,1024

xgboost (nthread=1) is timed two ways, each printed with its "method": "dmatrix" builds
an xgboost.DMatrix from the batch and calls Booster.predict on it (as a user calls it),
"inplace" calls Booster.inplace_predict on the numpy batch. lightgbm (num_threads=1)
calls Booster.predict on the numpy batch ("method": "predict"). Batches are consecutive
golden rows, float32 with NaN for missing, at least --seconds per batch size (see
timing.py); one JSON line per batch size and method: {"model", "batch", "rows_per_s",
"library", "method"}. Before timing, each method's output for the golden's rows is
checked against the golden's. Run by `cargo bench --bench trees`.
"""

import numpy as np

import timing


def xgboost_methods(path):
    """{method: predict(batch) -> array} for the XGBoost model at `path`, one thread."""
    import xgboost as xgb

    booster = xgb.Booster(model_file=path)
    booster.set_param({"nthread": 1})
    types = booster.feature_types
    categorical = types is not None and "c" in types

    def dmatrix(batch):
        matrix = xgb.DMatrix(batch, missing=np.nan, nthread=1,
                             feature_names=booster.feature_names, feature_types=types,
                             enable_categorical=categorical)
        return booster.predict(matrix)

    def inplace(batch):
        return booster.inplace_predict(batch, missing=np.nan)

    return f"xgboost {xgb.__version__}", {"dmatrix": dmatrix, "inplace": inplace}


def lightgbm_methods(path):
    """{method: predict(batch) -> array} for the LightGBM model at `path`, one thread."""
    import lightgbm as lgb

    booster = lgb.Booster(model_file=path)

    def predict(batch):
        return booster.predict(batch, num_threads=1)

    return f"lightgbm {lgb.__version__}", {"predict": predict}


KINDS = {"xgboost": xgboost_methods, "lightgbm": lightgbm_methods}


def main():
    """Parses the command line, checks each method against the golden, times it."""
    parser = timing.arguments(__doc__.splitlines()[0], "1,32,1024")
    parser.add_argument("--kind", required=True, choices=sorted(KINDS))
    args = parser.parse_args()
    x, outputs = timing.golden(args.rows)
    # The library's raw prediction is the golden's first output: probability (binary),
    # probabilities (multiclass) or value (regression).
    name, want = next(iter(outputs.items()))
    library, methods = KINDS[args.kind](args.model)
    for method, predict in methods.items():
        timing.check(args.model, f"{name} ({method})", predict(x), want)
    for batch in timing.batch_sizes(args.batch):
        for method, predict in methods.items():
            rate = timing.measure(x, batch, predict, args.seconds)
            timing.report(args.model, batch, rate, library=library, method=method)


if __name__ == "__main__":
    main()
