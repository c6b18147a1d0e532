"""One compiled program per estimator, or one uniform program for all four? Measured.

    python -m benchmarks.diagnostics.estimator_programs [--configs 64] [--steps 50]

Trains `--configs` SBN configurations (784-200-200-10, batch 100, Adam), a quarter per estimator,
for `--steps` steps (a `lax.scan`), two ways, in one process on the same device:
- per-estimator: four programs, each `jit(vmap(train))` over its quarter of the configs;
- uniform: one program over all configs, the estimator chosen per config by `lax.switch` on a
  vmapped index. Under `vmap` a switch on a batched index becomes a select that evaluates every
  branch, so each config pays for all four estimators.
Prints compile and run times of both and their ratio. The sweep engine uses per-estimator
programs; docs/RESULTS.md quotes this script's output.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from dst_jax import estimators

FAMILIES = estimators.CATEGORICAL


def init(key):
    sizes = (784, 200, 200, 10)
    keys = jax.random.split(key, 3)
    w = jax.nn.initializers.lecun_normal()
    return [
        {"w": w(k, (a, b)), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def forward(params, key, x, tau_f, tau_b, sample):
    h = x
    for i, layer in enumerate(params[:-1]):
        h = sample(jax.random.fold_in(key, i), h @ layer["w"] + layer["b"], tau_f, tau_b)
    return h @ params[-1]["w"] + params[-1]["b"]


def make_train(sample, steps, x, y):
    opt = optax.adam(1e-3)

    def train(key, tau_f, tau_b, est_idx):
        params = init(key)

        def step(carry, t):
            params, opt_state = carry
            idx = jax.random.randint(jax.random.fold_in(key, t), (100,), 0, x.shape[0])

            def loss(p):
                logits = forward(
                    p,
                    jax.random.fold_in(key, t),
                    x[idx],
                    tau_f,
                    tau_b,
                    lambda k, a, tf, tb: sample(k, a, tf, tb, est_idx),
                )
                return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

            l, g = jax.value_and_grad(loss)(params)
            upd, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state), l

        (_, _), losses = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
        return losses[-1]

    return jax.jit(jax.vmap(train))


def timed(fn, *args):
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    t1 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--configs", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    a = p.parse_args()
    per = a.configs // 4
    x = jax.random.uniform(jax.random.PRNGKey(1), (2000, 784))
    y = jax.random.randint(jax.random.PRNGKey(2), (2000,), 0, 10)
    keys = jax.random.split(jax.random.PRNGKey(0), a.configs)
    tau = jnp.full((a.configs,), 0.7)
    bern = [estimators.get(f, "bernoulli") for f in FAMILIES]

    compile_sep = run_sep = 0.0
    for e, fn in enumerate(bern):
        train = make_train(lambda k, a_, tf, tb, i, fn=fn: fn(k, a_, tf, tb), a.steps, x, y)
        sl = slice(e * per, (e + 1) * per)
        c, r = timed(train, keys[sl], tau[sl], tau[sl], jnp.zeros(per, jnp.int32))
        compile_sep += c
        run_sep += r

    def switch(k, a_, tf, tb, i):
        return jax.lax.switch(
            i, [lambda k, a_, tf, tb, fn=fn: fn(k, a_, tf, tb) for fn in bern], k, a_, tf, tb
        )

    idx = jnp.repeat(jnp.arange(4, dtype=jnp.int32), per)
    c_uni, r_uni = timed(
        make_train(switch, a.steps, x, y), keys[: 4 * per], tau[: 4 * per], tau[: 4 * per], idx
    )
    dev = jax.devices()[0]
    print(f"device: {dev.platform} {dev.device_kind}; {4 * per} configs x {a.steps} steps")
    print("| program | compile s | run s | model-steps/s |")
    print("|---|---|---|---|")
    for name, c, r in (
        ("per-estimator (4 programs)", compile_sep, run_sep),
        ("uniform (lax.switch)", c_uni, r_uni),
    ):
        print(f"| {name} | {c:.2f} | {r:.2f} | {4 * per * a.steps / r:,.0f} |")
    print(f"uniform / per-estimator run time: {r_uni / run_sep:.2f}x")


if __name__ == "__main__":
    main()
