"""dlgn evaluation: the float network against the bit-packed one (`dst_jax.logic`).

    python -m benchmarks.packed_eval [--width 12000] [--layers 4] [--examples 10000]
        [--inputs 9216] [--repeats 3] [--block-words 64] [--baseline /tmp/base]

All rows evaluate the same network (the dlgn task's wiring, "unique", seed 0, random N(0, 1)
gate logits) on the same random binary inputs, and time what `DLGNTask.evaluate` computes on
one split: `acc` (the discretised network, argmax gate per neuron) and `acc_train_mode` (the
network of one decoupled-ST sample of every gate, tau_f = tau_b = 1):
- "float, unrolled layers": both networks through `DLGNTask.forward` in 500-example slices
  under `lax.scan` (`common.sliced_sums`), float32 activations: the task's evaluation before the
  packed one;
- "float, hidden layers in a lax.scan": the same with `hidden_in_scan=True`, which materialises
  every layer's output (XLA on CPU fuses unrolled layers into one another and recomputes the
  lower ones);
- "baseline checkout's DLGNTask.evaluate" (with `--baseline`): the evaluation of another
  checkout (e.g. the commit before the packed evaluation), imported beside this one;
- "DLGNTask.evaluate (packed)": this checkout's evaluation, both networks bit-packed;
- "packed acc only" (`logic.predict_from_logits`, `--block-words` words per `lax.map` slice,
  0: all at once) and "packed acc only, inputs pre-packed" (the network alone).
Each is jitted and called once before timing (compile excluded); the time is the best of
`--repeats` calls, each synchronised. The script checks that the packed and float predictions
of both networks, and the two evaluations' metrics, are identical, and exits non-zero if not.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from dst_jax import estimators, logic
from dst_jax.tasks import common, dlgn
from dst_jax.tasks.base import Hparams, split_batch

FLOAT_SLICE = 500  # the dlgn task's eval_batch_size
TAU = 1.0


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
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout's root")
    args = parser.parse_args(argv)
    block_words = args.block_words or None

    config = dlgn.Config(
        layers=args.layers,
        width=args.width,
        n_classes=args.classes,
        eval_batch_size=FLOAT_SLICE,
    )
    task = dlgn.DLGNTask(config)
    est = estimators.REGISTRY[estimators.REFERENCE]
    rng = np.random.default_rng(args.seed)
    x_NxD = rng.integers(0, 2, (args.examples, args.inputs), dtype=np.uint8)
    y_N = rng.integers(0, args.classes, args.examples, dtype=np.int32)
    full = dlgn.build_data(config, x_NxD[:1], y_N[:1], x_NxD, y_N)
    keys = ("wiring_in", "wiring_inv_in", "wiring_hidden", "wiring_inv_hidden", "test_x", "test_y")
    data = {k: jnp.asarray(full[k]) for k in keys}
    params = task.init_params(jax.random.key(args.seed), data)
    logits = params["gate_logits"]
    key = jax.random.key(args.seed + 1)

    def networks(params, key):
        """Coefficients of the two networks `evaluate` reads: argmax gates, one sample."""
        hard = [logic.argmax_coefficients(lg) for lg in params["gate_logits"]]
        k_shared, _ = jax.random.split(key)  # the key `evaluate` samples the gates with
        return hard, task._train_coefs(params, k_shared, est, TAU, TAU)

    def float_predictions(hidden_in_scan):
        @jax.jit
        def predict(params, key, data):
            nets = networks(params, key)

            def slice_preds(x_ExD):
                return [task.forward(c, x_ExD, data, hidden_in_scan).argmax(-1) for c in nets]

            x = data["test_x"]
            n, d = x.shape
            size = min(FLOAT_SLICE, n)
            x_SxExD, _ = common.pad_to_slices(x, size)
            preds = jax.lax.map(slice_preds, x_SxExD)
            return jnp.stack([p.reshape(-1)[:n] for p in preds])

        return predict

    def float_evaluate(hidden_in_scan):
        @jax.jit
        def evaluate(params, key, data):
            nets = networks(params, key)

            def slice_sums(k, x_ExD, y_E, w_E):
                hits = [
                    jnp.sum(w_E * (task.forward(c, x_ExD, data, hidden_in_scan).argmax(-1) == y_E))
                    for c in nets
                ]
                return jnp.stack(hits)

            x, y = data["test_x"], data["test_y"]
            hits = common.sliced_sums(slice_sums, key, x, y, FLOAT_SLICE)
            return {"acc": hits[0] / x.shape[0], "acc_train_mode": hits[1] / x.shape[0]}

        return evaluate

    @jax.jit
    def packed_evaluate(params, key, data):
        return task.evaluate(params, key, split_batch(data, "test"), Hparams(est, TAU, TAU))

    @jax.jit
    def packed_predictions(params, key, data):
        k_shared, _ = jax.random.split(key)
        samples = task._train_samples(params, k_shared, est, TAU, TAU)
        hard_gates = [jnp.argmax(lg, axis=-1) for lg in params["gate_logits"]]
        sample_gates = [jnp.argmax(z, axis=-1) for z in samples]
        gates = [jnp.stack(pair) for pair in zip(hard_gates, sample_gates, strict=True)]
        counts = task.packed_counts(gates, data["test_x"], data)
        return jnp.argmax(counts, axis=-1)

    @jax.jit
    def packed_acc_only(logits, data):
        return logic.predict_from_logits(logits, data, args.classes, block_words=block_words)

    @jax.jit
    def packed_from_words(logits, wirings, x_DxW):
        gates = [jnp.argmax(lg, -1) for lg in logits]
        counts = logic.packed_forward(
            gates, wirings, x_DxW, args.examples, args.classes, block_words
        )
        return counts.argmax(-1)

    float_unrolled, float_scan = float_evaluate(False), float_evaluate(True)
    want = np.asarray(float_predictions(True)(params, key, data))
    checks = {
        "float unrolled = float scan (both networks)": np.array_equal(
            want, np.asarray(float_predictions(False)(params, key, data))
        ),
        "packed = float (both networks)": np.array_equal(
            want, np.asarray(packed_predictions(params, key, data))
        ),
        "packed acc-only = float (argmax network)": np.array_equal(
            want[0], np.asarray(packed_acc_only(logits, data))
        ),
    }
    wirings = logic.network_wirings(data)
    x_DxW = jax.block_until_ready(jax.jit(logic.pack_bits)(data["test_x"]))
    checks["packed pre-packed = float (argmax network)"] = np.array_equal(
        want[0], np.asarray(packed_from_words(logits, wirings, x_DxW))
    )
    metrics = {k: float(v) for k, v in packed_evaluate(params, key, data).items()}
    floats = {k: float(v) for k, v in float_scan(params, key, data).items()}
    checks["evaluate metrics: packed = float"] = metrics == floats

    rows = [
        (
            f"float, unrolled layers ({FLOAT_SLICE}-example slices)",
            best_ms(float_unrolled, (params, key, data), args.repeats),
        ),
        (
            "float, hidden layers in a lax.scan",
            best_ms(float_scan, (params, key, data), args.repeats),
        ),
    ]
    if args.baseline is not None:
        from benchmarks.compare_checkouts import BASELINE, import_baseline

        import_baseline(args.baseline.resolve())
        base_dlgn = importlib.import_module(f"{BASELINE}.tasks.dlgn")
        base_est = importlib.import_module(f"{BASELINE}.estimators")
        base_task = base_dlgn.DLGNTask(config)
        registry = getattr(base_est, "REGISTRY", None)
        base_name = est.name if registry is None else registry[est.name]

        @jax.jit
        def base_evaluate(params, key, data):
            try:  # older checkouts read the test split from `data`
                return base_task.evaluate(params, key, data, base_name, TAU, TAU)
            except TypeError:
                x, y = data["test_x"], data["test_y"]
                return base_task.evaluate(params, key, x, y, data, base_name, TAU, TAU)

        base_out = base_evaluate(params, key, data)
        base_metrics = {k: float(base_out.get(k, base_out.get(f"test_{k}"))) for k in metrics}
        checks["evaluate metrics: packed = baseline checkout's"] = base_metrics == metrics
        rows.insert(
            0,
            (
                f"baseline checkout's DLGNTask.evaluate ({args.baseline})",
                best_ms(base_evaluate, (params, key, data), args.repeats),
            ),
        )
    rows += [
        (
            "DLGNTask.evaluate (packed, both networks)",
            best_ms(packed_evaluate, (params, key, data), args.repeats),
        ),
        (
            f"packed acc only (block_words={block_words})",
            best_ms(packed_acc_only, (logits, data), args.repeats),
        ),
        (
            "packed acc only, inputs pre-packed",
            best_ms(packed_from_words, (logits, wirings, x_DxW), args.repeats),
        ),
    ]
    print(
        f"{args.layers} x {args.width} neurons, {args.inputs} inputs, {args.examples} examples, "
        f"{args.classes} classes; {jax.devices()[0].platform}, best of {args.repeats}; "
        f"acc {metrics['acc']:.4f}, acc_train_mode {metrics['acc_train_mode']:.4f}"
    )
    print(
        f"the two networks predict differently on {np.mean(want[0] != want[1]):.1%} of the "
        f"examples; {len(np.unique(want[0]))} and {len(np.unique(want[1]))} distinct classes"
    )
    for name, ok in checks.items():
        print(f"identical: {name}: {ok}")
    reference = rows[0][1]
    print(f"{'evaluation':<58} {'ms':>10} {'first / this':>13}")
    for name, ms in rows:
        print(f"{name:<58} {ms:>10.1f} {reference / ms:>13.1f}")
    if not all(checks.values()):
        raise SystemExit("packed predictions differ from the float network's")


if __name__ == "__main__":
    main()
