"""What an ONNX file holds, read back from the file: its operators (with domains) and
its inputs and outputs (names, element types, shapes), for the zoo's README."""

import onnx

ELEM = {v: k.lower() for k, v in onnx.TensorProto.DataType.items()}


def ops(model):
    """The distinct (domain, op type) pairs of the model's graph, sorted; the default
    domain is written "ai.onnx"."""
    return sorted({(n.domain or "ai.onnx", n.op_type) for n in model.graph.node})


def _shape(value_type):
    if not value_type.HasField("tensor_type"):
        return "", "non-tensor"
    tensor = value_type.tensor_type
    dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?")
            for d in tensor.shape.dim]
    return ELEM.get(tensor.elem_type, str(tensor.elem_type)), "[" + ", ".join(dims) + "]"


def io(model):
    """(inputs, outputs): each a list of "name: type [shape]" strings, in graph order."""
    def describe(values):
        out = []
        for v in values:
            elem, shape = _shape(v.type)
            out.append(f"`{v.name}`: {elem} {shape}".replace(" non-tensor", "non-tensor"))
        return out
    return describe(model.graph.input), describe(model.graph.output)


def summary(path):
    """The ops, I/O, imported opsets (domain as written in the file, `""` for the
    default) and IR version of the ONNX file at `path`, as a dict."""
    model = onnx.load(str(path))
    inputs, outputs = io(model)
    return {"ops": ops(model), "inputs": inputs, "outputs": outputs,
            "opsets": [(o.domain or '""', o.version) for o in model.opset_import],
            "ir_version": model.ir_version}
