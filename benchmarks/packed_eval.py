"""Discretised dlgn evaluation: the float network against the bit-packed one (`dst_jax.logic`).

    python benchmarks/packed_eval.py [--width 12000] [--layers 4] [--examples 10000]
        [--inputs 9216] [--repeats 3] [--block-words 64]

Both evaluate the same discretised network (argmax gate per neuron) on the same random binary
inputs, with the dlgn task's wiring ("unique", seed 0) and random N(0, 1) gate logits:
- "float": `DLGNTask.forward` with `logic.argmax_coefficients`, in slices of 500 examples under
  `lax.map`, as `DLGNTask.evaluate` runs it (float32 activations, one value per neuron and
  example);
- "float, hidden layers in a lax.scan": the same, with each layer's output materialised (on CPU,
  XLA fuses the task's straight-line layers into one another and recomputes the lower ones);
- "packed": `logic.predict_from_logits`, which packs 32 examples per uint32 word
  (`logic.pack_bits`) and evaluates every gate with bitwise ops, `--block-words` words per
  `lax.map` slice (0: all at once); "packed, inputs pre-packed" times the network alone, from
  inputs already packed.
Each is jitted and called once before timing (compile excluded); the time is the best of
`--repeats` calls, each synchronised. The predictions are checked to be identical.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from dst_jax import logic
from dst_jax.tasks import dlgn

FLOAT_SLICE = 500  # the dlgn task's eval_batch_size


def best_ms(fn, args, repeats):
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=12000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--inputs", type=int, default=9216)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-words", type=int, default=64, help="0: no slicing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    block_words = args.block_words or None

    config = dlgn.Config(
        layers=args.layers,
        width=args.width,
        n_classes=args.classes,
        eval_batch_size=FLOAT_SLICE,
    )
    task = dlgn.DLGNTask(config)
    rng = np.random.default_rng(args.seed)
    x_NxD = rng.integers(0, 2, (args.examples, args.inputs), dtype=np.uint8)
    y_N = np.zeros(args.examples, np.int32)
    full = dlgn.build_data(config, x_NxD[:1], y_N[:1], x_NxD, y_N)
    keys = ("wiring_in", "wiring_inv_in", "wiring_hidden", "wiring_inv_hidden", "test_x")
    data = {k: jnp.asarray(full[k]) for k in keys}
    params = task.init_params(jax.random.key(args.seed), data)
    logits = params["gate_logits"]

    @jax.jit
    def float_predict(logits, data):
        hard = [logic.argmax_coefficients(lg) for lg in logits]
        x = data["test_x"]
        n, d = x.shape
        eb = min(FLOAT_SLICE, n)
        n_full = n // eb
        xs = x[: n_full * eb].reshape(n_full, eb, d)
        pred = jax.lax.map(lambda xb: task.forward(hard, xb, data).argmax(-1), xs).reshape(-1)
        if n % eb:
            pred = jnp.concatenate([pred, task.forward(hard, x[n_full * eb :], data).argmax(-1)])
        return pred

    @jax.jit
    def float_scan_predict(logits, data):
        # The same float network with the hidden layers in a lax.scan, which materialises every
        # layer's output (XLA on CPU fuses the task's straight-line layers into one another).
        hard = [logic.argmax_coefficients(lg) for lg in logits]
        x = data["test_x"]
        n, d = x.shape
        eb = min(FLOAT_SLICE, n)
        xs = x[: n // eb * eb].reshape(n // eb, eb, d)

        def forward(x_BxD):
            h = logic.logic_layer(
                x_BxD.T.astype(jnp.float32), hard[0], data["wiring_in"], data["wiring_inv_in"]
            )
            if len(hard) > 1:
                tables = (jnp.stack(hard[1:]), data["wiring_hidden"], data["wiring_inv_hidden"])
                h, _ = jax.lax.scan(lambda h, t: (logic.logic_layer(h, *t), None), h, tables)
            return logic.group_sum(h.T, config.n_classes, config.group_sum_tau).argmax(-1)

        pred = jax.lax.map(forward, xs).reshape(-1)
        if n % eb:
            pred = jnp.concatenate([pred, forward(x[n // eb * eb :])])
        return pred

    @jax.jit
    def packed_predict(logits, data):
        return logic.predict_from_logits(logits, data, args.classes, block_words=block_words)

    @jax.jit
    def packed_from_words(logits, wirings, x_DxW):
        gates = [jnp.argmax(lg, -1) for lg in logits]
        counts = logic.packed_forward(
            gates, wirings, x_DxW, args.examples, args.classes, block_words
        )
        return counts.argmax(-1)

    want = np.asarray(float_predict(logits, data))
    got = np.asarray(packed_predict(logits, data))
    wirings = logic.network_wirings(data)
    x_DxW = jax.block_until_ready(jax.jit(logic.pack_bits)(data["test_x"]))
    got_words = np.asarray(packed_from_words(logits, wirings, x_DxW))
    got_scan = np.asarray(float_scan_predict(logits, data))
    identical = all(np.array_equal(want, p) for p in (got, got_words, got_scan))

    rows = [
        (
            f"float (lax.map, {FLOAT_SLICE}-example slices)",
            best_ms(float_predict, (logits, data), args.repeats),
        ),
        (
            "float, hidden layers in a lax.scan",
            best_ms(float_scan_predict, (logits, data), args.repeats),
        ),
        (
            f"packed (block_words={block_words})",
            best_ms(packed_predict, (logits, data), args.repeats),
        ),
        (
            "packed, inputs pre-packed",
            best_ms(packed_from_words, (logits, wirings, x_DxW), args.repeats),
        ),
    ]
    print(
        f"{args.layers} x {args.width} neurons, {args.inputs} inputs, {args.examples} examples, "
        f"{args.classes} classes; {jax.devices()[0].platform}, best of {args.repeats}"
    )
    print(f"predictions identical: {identical} ({len(set(want.tolist()))} distinct classes)")
    print(f"{'evaluation':<40} {'ms':>10} {'float / this':>13}")
    for name, ms in rows:
        print(f"{name:<40} {ms:>10.1f} {rows[0][1] / ms:>13.1f}")
    if not identical:
        raise SystemExit("packed predictions differ from the float network's")


if __name__ == "__main__":
    main()
