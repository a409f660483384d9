"""A small convolutional net for digits, trained here in numpy by its own backprop (no
deep-learning framework: the PyPI torch wheel for Linux pulls gigabytes of CUDA
packages) and written to ONNX with onnx.helper.

    pixels [N, 1, 8, 8] (pixel / 16)
      -> Conv 8 filters 3x3, no padding -> [N, 8, 6, 6] -> Relu
      -> MaxPool 2x2, stride 2 -> [N, 8, 3, 3] -> Flatten -> [N, 72]
      -> Gemm 72x10 -> Softmax -> probabilities [N, 10]

Training: Adam (learning rate 0.01), mini-batches of 32, 40 epochs, softmax
cross-entropy, He initialisation; every random draw from numpy's default_rng(0), so a
run is repeatable.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import data, golden
from .sklearn_models import run

FILTERS = 8
EPOCHS = 40
BATCH = 32
LEARNING_RATE = 0.01


def _forward(params, x):
    """x: [N, 8, 8]. Returns the probabilities and what the backward pass needs."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # [N,6,6,3,3]
    patches = windows.reshape(len(x), 36, 9)
    conv = patches @ params["conv_w"].T + params["conv_b"]          # [N, 36, F]
    relu = np.maximum(conv, 0.0)
    windows = relu.reshape(len(x), 3, 2, 3, 2, FILTERS).transpose(0, 1, 3, 5, 2, 4)
    windows = windows.reshape(len(x), 3, 3, FILTERS, 4)             # [N, 3, 3, F, 4]
    pick = windows.argmax(axis=-1)
    pooled = np.take_along_axis(windows, pick[..., None], axis=-1)[..., 0]
    flat = pooled.transpose(0, 3, 1, 2).reshape(len(x), 9 * FILTERS)  # ONNX order: c, i, j
    logits = flat @ params["dense_w"] + params["dense_b"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, (patches, conv, pick, flat)


def _backward(params, cache, probs, y):
    patches, conv, pick, flat = cache
    n = len(y)
    d_logits = probs.copy()
    d_logits[np.arange(n), y] -= 1.0
    d_logits /= n
    grads = {"dense_w": flat.T @ d_logits, "dense_b": d_logits.sum(axis=0)}
    d_pooled = (d_logits @ params["dense_w"].T).reshape(n, FILTERS, 3, 3).transpose(0, 2, 3, 1)
    d_windows = np.zeros((n, 3, 3, FILTERS, 4))
    np.put_along_axis(d_windows, pick[..., None], d_pooled[..., None], axis=-1)
    d_relu = d_windows.reshape(n, 3, 3, FILTERS, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    d_conv = d_relu.reshape(n, 36, FILTERS) * (conv > 0)
    grads["conv_w"] = np.einsum("npc,npk->ck", d_conv, patches)
    grads["conv_b"] = d_conv.sum(axis=(0, 1))
    return grads


def train(x, y, seed=0):
    """Trains the net on x [N, 8, 8] (pixels / 16) and labels y; returns its weights."""
    rng = np.random.default_rng(seed)
    params = {
        "conv_w": rng.normal(0.0, np.sqrt(2.0 / 9), (FILTERS, 9)),
        "conv_b": np.zeros(FILTERS),
        "dense_w": rng.normal(0.0, np.sqrt(2.0 / (9 * FILTERS)), (9 * FILTERS, 10)),
        "dense_b": np.zeros(10),
    }
    moment = {k: np.zeros_like(v) for k, v in params.items()}
    square = {k: np.zeros_like(v) for k, v in params.items()}
    step = 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            rows = order[start:start + BATCH]
            probs, cache = _forward(params, x[rows])
            grads = _backward(params, cache, probs, y[rows])
            step += 1
            for k in params:
                moment[k] = 0.9 * moment[k] + 0.1 * grads[k]
                square[k] = 0.999 * square[k] + 0.001 * grads[k] ** 2
                m_hat = moment[k] / (1 - 0.9 ** step)
                v_hat = square[k] / (1 - 0.999 ** step)
                params[k] -= LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8)
    return params


def to_onnx(params):
    """The trained weights as an ONNX model (opset 17, IR 8), batch dimension `N`."""
    init = [
        numpy_helper.from_array(params["conv_w"].reshape(FILTERS, 1, 3, 3).astype(np.float32),
                                "conv_w"),
        numpy_helper.from_array(params["conv_b"].astype(np.float32), "conv_b"),
        numpy_helper.from_array(params["dense_w"].astype(np.float32), "dense_w"),
        numpy_helper.from_array(params["dense_b"].astype(np.float32), "dense_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["pixels", "conv_w", "conv_b"], ["conv"], name="conv",
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("MaxPool", ["relu"], ["pool"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "dense_w", "dense_b"], ["logits"], name="dense"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        init)
    model = helper.make_model(graph, producer_name="weir scripts/make-zoo (numpy)",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def make(path=Path("graphs/zoo/digits_cnn.onnx")):
    """Trains, exports, scores (onnxruntime, every held-out digits row) and writes the
    golden of digits_cnn.onnx; returns its zoo entry."""
    d = data.digits()
    params = train((d.x_train / 16.0).reshape(-1, 8, 8), d.y_train)
    path.write_bytes(to_onnx(params).SerializeToString())
    x = (d.x_test / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    probs = run(path, x)["probabilities"]
    accuracy = np.mean(probs.argmax(axis=1) == d.y_test)
    golden.write(path, {"pixels": x[: golden.MAX_ROWS]},
                 {"probabilities": probs[: golden.MAX_ROWS]})
    return {"path": path,
            "score": f"accuracy {accuracy:.4f} on {len(x)} held-out digits rows",
            "what": f"digits (weir's train split, pixels / 16) as [N, 1, 8, 8]: Conv "
                    f"{FILTERS}x3x3 -> Relu -> MaxPool 2x2 -> Flatten -> Gemm -> Softmax, "
                    f"trained in numpy by its own backprop (Adam, lr {LEARNING_RATE}, batch "
                    f"{BATCH}, {EPOCHS} epochs, seed 0); written with onnx.helper"}
