"""The examples (`>>>`) in the docstrings of the estimators and the Flax layers run as written,
and every public estimator family and layer has one."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "dst_jax.estimators.categorical",
    "dst_jax.estimators.bernoulli",
    "dst_jax.estimators.relaxations",
    "dst_jax.estimators.recent",
    "dst_jax.estimators.registry",
    "dst_jax.layers.linen",
    "dst_jax.layers.nnx",
)

# The objects whose docstrings must hold an example: one function of each estimator family (both
# forms of the decoupled estimator), the registry's look-up, and every layer.
DOCUMENTED = {
    "dst_jax.estimators.categorical": (
        "decoupled_st",
        "softmax_ste",
        "st_gumbel_softmax",
        "identity_ste",
        "reinmax",
        "decoupled_reinmax",
        "gumbel_rao",
    ),
    "dst_jax.estimators.bernoulli": (
        "decoupled_st_bernoulli",
        "sigmoid_ste",
        "st_gumbel_sigmoid",
        "identity_ste_bernoulli",
        "reinmax_bernoulli",
    ),
    "dst_jax.estimators.relaxations": ("softmax_relaxation", "sigmoid_relaxation"),
    "dst_jax.estimators.recent": ("zgr", "mve", "gapped_st", "reinmax_cv"),
    "dst_jax.estimators.registry": ("get",),
    "dst_jax.layers.linen": ("CategoricalST", "BernoulliST"),
    "dst_jax.layers.nnx": ("CategoricalST", "BernoulliST"),
}


@pytest.mark.slow  # about a minute: each example compiles its functions
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out: list[str] = []
    tests = [t for t in finder.find(module) if t.examples]
    for test in tests:
        runner.run(test, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 2 * len(DOCUMENTED[name])
    assert result.failed == 0, "".join(out)


@pytest.mark.parametrize("name", MODULES)
def test_every_estimator_family_and_layer_has_an_example(name):
    module = importlib.import_module(name)
    missing = [n for n in DOCUMENTED[name] if ">>>" not in (getattr(module, n).__doc__ or "")]
    assert not missing, f"{name}: no example in the docstring of {missing}"
