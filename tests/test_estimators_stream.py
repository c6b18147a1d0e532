"""The estimators' random stream, values and gradients are pinned bit for bit.

Committed sweep results depend on the exact Gumbel draws and the exact arithmetic of every
estimator: the same key and logits must give the same sample and the same gradient, to the last
bit, whatever the code's layout (under the suite's XLA flags, conftest.py).
`tests/data/estimator_stream.npz` holds one sample and one VJP of every registered estimator
(both forms, options, the given-sample forms under both samplers, and two jit-compiled
programs) for fixed keys, logits and cotangents; this test recomputes them. Regenerate the file
(`python tests/test_estimators_stream.py --write`) only for a change that is meant to change the
stream, and say so in the commit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":  # the XLA flags the suite runs with (conftest.py): same arithmetic
    from conftest import TEST_XLA_FLAGS

    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=4 {TEST_XLA_FLAGS}"
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dst_jax import estimators as E  # noqa: E402

FIXTURE = Path(__file__).parent / "data" / "estimator_stream.npz"

# (case id, estimator, form, options, sampler or None, jit)
OPTIONS = {
    "decoupled_st": [{}, {"backward_noise": True}],
    "gumbel_rao": [{}, {"k": 3}],
    "gapped_st": [{}, {"gap": 2.5}],
    "reinmax_cv": [{}, {"eta": 0.5, "k": 4}],
}


def _pair(entry: E.Estimator) -> tuple[float, float]:
    """A (tau_f, tau_b) that every estimator accepts: both for two, its recorded pair for one."""
    if entry.n_temperatures == 2:
        return 0.7, 1.9
    return entry.temperatures_of(0.6)


def cases() -> list[tuple[str, str, str, dict, str | None, bool]]:
    out = []
    for entry in E.REGISTRY:
        for form in ("categorical", "bernoulli"):
            for options in OPTIONS.get(entry.name, [{}]):
                tag = "-".join(f"{k}{v}" for k, v in options.items())
                out.append((f"{entry.name}-{form}-{tag}", entry.name, form, options, None, False))
        if entry.given_sample is not None:
            for sampler in ("gumbel", "inverse_cdf"):
                out.append(
                    (f"{entry.name}-{sampler}", entry.name, "categorical", {}, sampler, False)
                )
    for name in ("decoupled_st", "reinmax"):
        out.append((f"{name}-jit", name, "categorical", {}, None, True))
    return out


def inputs(form: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(key, logits, cotangent): categorical (2, 3, 5) with one masked class, Bernoulli (2, 3)."""
    k1, k2 = jax.random.split(jax.random.key(3))
    shape = (2, 3, 5) if form == "categorical" else (2, 3)
    logits = 2.0 * jax.random.normal(k1, shape)
    if form == "categorical":
        logits = logits.at[1, 2, 4].set(-jnp.inf)
    return jax.random.key(42), logits, jax.random.normal(k2, shape)


def compute(name: str, form: str, options: dict, sampler: str | None, jit: bool):
    entry = E.REGISTRY[name]
    fn = entry.uniform(form, **options) if sampler is None else entry.sampled(sampler, form)
    key, logits, ct = inputs(form)
    tau_f, tau_b = _pair(entry)

    def run(l):
        z, vjp = jax.vjp(lambda l: fn(key, l, tau_f, tau_b), l)
        return z, vjp(ct)[0]

    z, grad = (jax.jit(run) if jit else run)(logits)
    return np.asarray(z), np.asarray(grad)


CASES = cases()


@pytest.fixture(scope="module")
def stored():
    with np.load(FIXTURE) as data:
        return dict(data)


def test_every_registered_estimator_is_pinned(stored):
    pinned = {k.rsplit("/", 1)[0] for k in stored}
    assert pinned == {c[0] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_values_and_gradients_are_unchanged_bit_for_bit(stored, case):
    z, grad = compute(*case[1:])
    np.testing.assert_array_equal(z, stored[f"{case[0]}/value"])
    np.testing.assert_array_equal(grad, stored[f"{case[0]}/grad"])


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    arrays = {}
    for case in CASES:
        arrays[f"{case[0]}/value"], arrays[f"{case[0]}/grad"] = compute(*case[1:])
    np.savez_compressed(FIXTURE, **arrays)
    print(f"wrote {len(CASES)} cases to {FIXTURE}")
