"""Reference timing for weir's ONNX kernel: onnxruntime's own speed on one CPU thread.

    PYTHONPATH=.tools/zoo python3 benches/reference/onnx_speed.py graphs/zoo/digits_mlp.onnx \\
        --rows tests/golden/zoo/digits_mlp.json --batch 1,32,256

onnxruntime (CPU execution provider, intra_op_num_threads=1, inter_op_num_threads=1,
sequential execution, default graph optimisations) runs the model over consecutive
batches of the golden's rows, at least --seconds per batch size (see timing.py), and
prints one JSON line per batch size: {"model", "batch", "rows_per_s", "library"}. Before
timing, it checks that onnxruntime's outputs for the golden's rows are the golden's.
Run by `cargo bench --bench onnx`.
"""

import onnxruntime as ort

import timing


def main():
    """Parses the command line, checks the model against its golden, times it."""
    args = timing.arguments(__doc__.splitlines()[0], "1,32,256").parse_args()
    x, outputs = timing.golden(args.rows)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {input_name: x})))
    for name, want in outputs.items():
        if name not in got:
            raise SystemExit(f"{args.model}: no output {name!r} (it has {names})")
        timing.check(args.model, name, got[name], want)

    def predict(batch):
        session.run(names, {input_name: batch})

    for batch in timing.batch_sizes(args.batch):
        rate = timing.measure(x, batch, predict, args.seconds)
        timing.report(args.model, batch, rate, library=f"onnxruntime {ort.__version__}")


if __name__ == "__main__":
    main()
