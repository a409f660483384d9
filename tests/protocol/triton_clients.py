"""Triton's own Python clients (tritonclient[http,grpc], pinned in scripts/test) against a
running `weir serve` of diamond, digits and embed: run by tests/protocol.rs, which
starts the server and passes, as JSON on stdin, its address and the held-out digits.

Every answer over the Open Inference Protocol (HTTP with binary data on and off, and gRPC)
is compared with the answer of weir's own route, POST /graphs/{name}, for the same rows.
Bad requests must raise InferenceServerException naming what was wrong, never a 5xx.
Prints one line per check; exits non-zero on the first failure."""

import json
import sys
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

config = json.load(sys.stdin)
HTTP, GRPC = config["http"], config["grpc"]
DIGITS = np.array(config["digits"], dtype=np.float32)
LABELS = config["labels"]

http = httpclient.InferenceServerClient(url=HTTP)
grpc = grpcclient.InferenceServerClient(url=GRPC)
CLIENTS = {"http": (httpclient, http), "grpc": (grpcclient, grpc)}


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def own_route(graph, rows):
    """weir's own answer for `rows` (a list of objects)."""
    request = urllib.request.Request(
        f"http://{HTTP}/graphs/{graph}", data=json.dumps(rows).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def infer(proto, graph, inputs, outputs, binary=True):
    """The protocol's answer: {output name: numpy array}."""
    module, client = CLIENTS[proto]
    tensors = []
    for name, array in inputs.items():
        datatype = {np.float32: "FP32", np.int64: "INT64", np.object_: "BYTES"}[array.dtype.type]
        t = module.InferInput(name, list(array.shape), datatype)
        if proto == "http":
            t.set_data_from_numpy(array, binary_data=binary)
        else:
            t.set_data_from_numpy(array)
        tensors.append(t)
    if proto == "http":
        requested = [module.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    else:
        requested = [module.InferRequestedOutput(o) for o in outputs]
    result = client.infer(graph, tensors, outputs=requested)
    return {o: result.as_numpy(o) for o in outputs}


WAYS = [("http", True), ("http", False), ("grpc", True)]


def way(proto, binary):
    return f"{proto}" + (f" (binary data {'on' if binary else 'off'})" if proto == "http" else "")


# Health and metadata, both protocols.
for proto, (_, client) in CLIENTS.items():
    check(client.is_server_live(), f"{proto}: server live")
    check(client.is_server_ready(), f"{proto}: server ready")
    for graph in ["diamond", "digits", "embed"]:
        check(client.is_model_ready(graph), f"{proto}: model {graph} ready")
    as_json = {"as_json": True} if proto == "grpc" else {}
    server = client.get_server_metadata(**as_json)
    check(server["name"] == "weir" and "binary_tensor_data" in server["extensions"],
          f"{proto}: server metadata {server}")
    meta = client.get_model_metadata("digits", **as_json)
    for t in meta["inputs"] + meta["outputs"]:
        t["shape"] = [int(d) for d in t["shape"]]  # gRPC's JSON gives int64 as strings
    check([(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("pixels", "FP32", [-1, 64])],
          f"{proto}: digits inputs {meta['inputs']}")
    check([(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]]
          == [("label", "INT64", [-1]), ("probs", "FP32", [-1, 10])], f"{proto}: digits outputs {meta['outputs']}")
    meta = client.get_model_metadata("embed", **as_json)
    check(meta["inputs"][0]["datatype"] == "BYTES", f"{proto}: embed takes BYTES")
check(not http.is_model_ready("no-such-graph"), "http: an unknown model is not ready")

# Diamond: y = a + 2b + c.
a = np.array([1, 2, -3.5, 0, 10], dtype=np.float32)
b = np.array([2, 3, 0.25, 0, -1], dtype=np.float32)
c = np.array([3, 4, 1, 0, 0.5], dtype=np.float32)
own = np.array([r["y"] for r in own_route("diamond", [
    {"a": float(x), "b": float(y), "c": float(z)} for x, y, z in zip(a, b, c)])], dtype=np.float32)
check(np.array_equal(own, a + 2 * b + c), f"own route: diamond {own}")
for proto, binary in WAYS:
    got = infer(proto, "diamond", {"a": a, "b": b, "c": c}, ["y"], binary)["y"]
    check(got.shape == (5,) and np.array_equal(got, own), f"{way(proto, binary)}: diamond {got} == own route")

# Digits: the 100 held-out images in one request.
own = own_route("digits", [{"pixels": [float(p) for p in image]} for image in DIGITS])
own_labels = np.array([r["label"] for r in own], dtype=np.int64)
own_probs = np.array([r["probs"] for r in own], dtype=np.float32)
accuracy = float(np.mean(own_labels == np.array(LABELS)))
check(accuracy > 0.9, f"own route: digits accuracy {accuracy}")
for proto, binary in WAYS:
    got = infer(proto, "digits", {"pixels": DIGITS}, ["label", "probs"], binary)
    check(got["label"].dtype == np.int64 and np.array_equal(got["label"], own_labels),
          f"{way(proto, binary)}: 100 digits' labels == own route")
    check(got["probs"].shape == (100, 10) and np.array_equal(got["probs"], own_probs),
          f"{way(proto, binary)}: 100 digits' probabilities == own route, bit for bit")
# Outputs not named: all of them (tritonclient then asks for binary data over HTTP).
for proto in CLIENTS:
    module, client = CLIENTS[proto]
    t = module.InferInput("pixels", [3, 64], "FP32")
    t.set_data_from_numpy(DIGITS[:3])
    result = client.infer("digits", [t])
    check(np.array_equal(result.as_numpy("label"), own_labels[:3]), f"{proto}: no outputs named gives them all")

# MiniLM: texts as BYTES.
texts = ["hello world", "weir serves graphs of models", "", "ünïcödé text 你好", "a" * 40]
own = np.array([r["embedding"] for r in own_route("embed", [{"text": t} for t in texts])], dtype=np.float32)
check(own.shape == (5, 384), "own route: 5 embeddings of 384")
array = np.array([t.encode() for t in texts], dtype=np.object_)
for proto, binary in WAYS:
    got = infer(proto, "embed", {"text": array}, ["embedding"], binary)["embedding"]
    diff = float(np.max(np.abs(got - own)))
    check(got.shape == (5, 384) and diff < 1e-5, f"{way(proto, binary)}: embeddings == own route (max diff {diff})")


# Bad requests: an InferenceServerException naming the input, and never a 5xx.
def refused(proto, graph, inputs, needle, what):
    module, client = CLIENTS[proto]
    tensors = []
    for name, datatype, array in inputs:
        t = module.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array)
        tensors.append(t)
    try:
        client.infer(graph, tensors)
    except InferenceServerException as e:
        status = str(e.status())
        server_fault = status.startswith("5") or any(
            s in status for s in ["INTERNAL", "UNAVAILABLE", "UNKNOWN"])
        check(needle in e.message() and not server_fault,
              f"{proto}: {what} refused ({status}): {e.message()}")
        return
    check(False, f"{proto}: {what} was answered")


f64 = DIGITS[:2].astype(np.float64)
for proto in CLIENTS:
    refused(proto, "digits", [("pixels", "FP64", f64)], "'pixels'", "wrong datatype")
    refused(proto, "digits", [("pixels", "FP32", DIGITS[:2, :63].copy())], "'pixels'", "wrong shape")
    refused(proto, "no-such-graph", [("pixels", "FP32", DIGITS[:2])], "no-such-graph", "unknown model")
    refused(proto, "digits", [("pixels", "FP32", DIGITS[:2]), ("colour", "FP32", DIGITS[:2])], "'colour'",
            "unknown input")
    refused(proto, "diamond", [("a", "FP32", a), ("b", "FP32", b)], "'c'", "missing input")
    refused(proto, "diamond", [("a", "FP32", a), ("b", "FP32", b), ("c", "FP32", c[:3])], "'c'",
            "inputs of different lengths")

# A request over the server's body limit (4 MiB by default) is refused over both
# protocols, before it is decoded.
big = np.tile(DIGITS, (170, 1))  # 17,000 rows, 4.35 MB
for proto in CLIENTS:
    refused(proto, "digits", [("pixels", "FP32", big)], "", "a request over the body limit")

# A request's timeout parameter (microseconds) is its deadline.
for proto in CLIENTS:
    module, client = CLIENTS[proto]
    t = module.InferInput("text", [64], "BYTES")
    t.set_data_from_numpy(np.array([("long text " * 30).encode()] * 64, dtype=np.object_))
    try:
        client.infer("embed", [t], timeout=1)
        check(False, f"{proto}: a 1 µs timeout was answered")
    except InferenceServerException as e:
        check("deadline" in e.message() and ("504" in str(e.status()) or "DEADLINE" in str(e.status())),
              f"{proto}: a 1 µs timeout is a deadline exceeded ({e.status()}): {e.message()}")
# gRPC is served on the HTTP port too (HTTP/2 without TLS): no second port needed.
same = grpcclient.InferenceServerClient(url=config["grpc_same_port"])
t = grpcclient.InferInput("pixels", [3, 64], "FP32")
t.set_data_from_numpy(DIGITS[:3])
check(same.is_server_ready() and np.array_equal(same.infer("digits", [t]).as_numpy("label"), own_labels[:3]),
      "grpc on the HTTP port: ready, and digits answered")
print("all checks passed")
