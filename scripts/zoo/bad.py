"""Broken models for the error tests: files a user may bring that weir must refuse at
`weir check`, naming what is wrong (bad/zipmap.onnx comes from sklearn_models)."""

import onnx
from onnx import TensorProto, helper

from zoo.sklearn_models import ZOO


def unsupported_op():
    """bad/unsupported_op.onnx: a valid ONNX graph whose one node is an Einsum (an op
    weir does not run), named `mystery`."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    node = helper.make_node("Einsum", ["x"], ["y"], name="mystery", equation="ij->i")
    graph = helper.make_graph([node], "unsupported_op", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="weir make-zoo")
    onnx.checker.check_model(model)
    path = ZOO / "bad" / "unsupported_op.onnx"
    onnx.save(model, path)
    return {"path": path,
            "what": "a hand-built ONNX graph (onnx.helper): one Einsum node named `mystery`, "
                    "an op weir does not run",
            "score": "none (for the error test in tests/broken_models.rs)"}
