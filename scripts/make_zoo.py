"""Builds weir's model zoo (run it through scripts/make-zoo, which installs the pinned
packages and sets PYTHONPATH): trains every model of graphs/zoo/, writes their goldens
into tests/golden/zoo/, graphs/data/diabetes.csv.gz and graphs/zoo/README.md, and prints
each model's held-out score and ONNX ops."""

import json
import sys

from zoo import cnn, data, golden, onnx_info, readme, sklearn_models, trees


def main():
    """Makes everything, in order: data, scikit-learn models, the CNN, the trees."""
    data.write_diabetes()
    entries = sklearn_models.digits_models() + sklearn_models.ops_models()
    entries.append(cnn.make())
    entries += trees.make()
    for e in entries:
        print(f"{e['path']}: {e['score']}")
        if str(e["path"]).endswith(".onnx"):
            info = onnx_info.summary(e["path"])
            print("    ops: " + ", ".join(f"{d}:{op}" for d, op in info["ops"]))
            print("    inputs: " + "; ".join(info["inputs"]) + "  outputs: "
                  + "; ".join(info["outputs"]))
    for path in sorted(golden.GOLDEN.glob("*.json")):
        json.loads(path.read_text(), parse_constant=_no_nan(path))
    print(f"wrote {readme.write(entries)}")


def _no_nan(path):
    def refuse(name):
        raise ValueError(f"{path}: JSON constant {name} (NaN or infinity) in a golden")
    return refuse


if __name__ == "__main__":
    sys.exit(main())
