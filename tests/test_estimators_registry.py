"""The estimators package's public names, the registry's facts, and the temperature rules.

The package `dst_jax.estimators` keeps every name the single module had (and the newest
studies' estimators, also under their former module `dst_jax.estimators_recent`); the registry
records which temperatures each estimator reads and which one sets its forward sample, facts the
samples themselves confirm here; a concrete temperature an estimator would not read is refused
with a message that names the field it reads.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dst_jax
from dst_jax import estimators as E
from dst_jax import estimators_recent

# Every public name of `dst_jax.estimators` before it became a package, and the newest studies'.
FORMER = {
    "Array", "BERNOULLI", "CATEGORICAL", "DEFAULT_TAUS", "Estimator", "FORMS", "GivenSample",
    "NAMES", "REFERENCE", "REGISTRY", "Registry", "SAMPLERS", "TAU_MAX", "TAU_MIN",
    "TAU_MIN_FLOAT16", "Uniform", "argmax_one_hot", "bernoulli_mode", "bernoulli_name",
    "check_temperatures", "conditional_gumbel", "decoupled_reinmax", "decoupled_reinmax_bernoulli",
    "decoupled_st", "decoupled_st_bernoulli", "get", "gumbel_rao", "gumbel_rao_bernoulli",
    "identity_ste", "identity_ste_bernoulli", "lookup", "register", "reinmax", "reinmax_bernoulli",
    "sample_gumbel_max", "sample_inverse_cdf", "sigmoid_relaxation", "sigmoid_ste",
    "softmax_relaxation", "softmax_ste", "st_gumbel_sigmoid", "st_gumbel_softmax",
}  # fmt: skip
RECENT = {
    "gapped_st", "gapped_st_bernoulli", "mve", "mve_bernoulli", "mve_matrix", "reinmax_cv",
    "reinmax_cv_bernoulli", "rloo", "rloo_bernoulli", "rloo_gradient", "rloo_surrogate", "zgr",
    "zgr_bernoulli",
}  # fmt: skip
SUBMODULES = {
    "bernoulli", "catalog", "categorical", "checks", "cores", "noise", "recent", "registry",
    "relaxations", "samplers",
}  # fmt: skip


def test_the_package_exports_every_former_name_and_no_more():
    public = {n for n in dir(E) if not n.startswith("_")} - {"annotations"}
    assert public == FORMER | RECENT | SUBMODULES
    assert set(E.__all__) == FORMER | RECENT
    assert set(estimators_recent.__all__) == RECENT
    for name in RECENT:  # the former module is an alias: the same objects
        assert getattr(estimators_recent, name) is getattr(E, name)
    # The built-in tuples keep their values: the paper's estimators and their relatives.
    assert E.CATEGORICAL == (
        "decoupled_st", "softmax_ste", "st_gumbel_softmax", "identity_ste", "reinmax",
        "decoupled_reinmax", "gumbel_rao",
    )  # fmt: skip


def test_the_top_level_package_exports_the_registry_and_relaxations():
    assert dst_jax.REGISTRY is E.REGISTRY and dst_jax.Estimator is E.Estimator
    assert dst_jax.get is E.get
    assert dst_jax.softmax_relaxation is E.softmax_relaxation
    assert dst_jax.sigmoid_relaxation is E.sigmoid_relaxation
    assert {"REGISTRY", "softmax_relaxation", "sigmoid_relaxation"} <= set(dst_jax.__all__)


def test_every_module_of_the_package_is_at_most_450_lines():
    from pathlib import Path

    folder = Path(E.__file__).parent
    lengths = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {p[:-3] for p in lengths} == SUBMODULES | {"__init__"}
    assert max(lengths.values()) <= 450, lengths


FACTS = {  # name: (reads, forward, defaults)
    "decoupled_st": (("tau_f", "tau_b"), "tau_f", {"backward_noise": False}),
    "softmax_ste": (("tau_f",), "tau_f", {}),
    "st_gumbel_softmax": (("tau_f",), None, {}),
    "identity_ste": (("tau_f",), "tau_f", {}),
    "reinmax": (("tau_b",), None, {}),
    "decoupled_reinmax": (("tau_f", "tau_b"), "tau_f", {}),
    "gumbel_rao": (("tau_b",), None, {"k": 10}),
    "softmax_relaxation": ((), None, {}),
    "zgr": ((), None, {}),
    "mve": (("tau_b",), None, {}),
    "gapped_st": (("tau_b",), None, {"gap": 1.0}),
    "reinmax_cv": (("tau_b",), None, {"eta": 1.5, "k": 32}),
    "rloo": ((), None, {}),
}


def test_the_registry_records_each_estimators_facts():
    got = {e.name: (e.reads, e.forward, e.defaults) for e in E.REGISTRY}
    assert got == FACTS
    assert [e.name for e in E.REGISTRY if e.score_function] == ["rloo"]
    assert [e.name for e in E.REGISTRY if not e.discrete] == ["softmax_relaxation"]
    np.testing.assert_array_equal(
        E.REGISTRY["decoupled_st"].forward_temperature([0.3, 2.0], [1.0, 1.0]), [0.3, 2.0]
    )
    np.testing.assert_array_equal(
        E.REGISTRY["reinmax"].forward_temperature([1.0, 1.0], [0.3, 2.0]), [1.0, 1.0]
    )
    for entry in E.REGISTRY:  # the given-sample form's law is the entry's forward
        if entry.given_sample is not None:
            want = {"tau_f": 0.3, "tau_b": 0.7}.get(entry.forward, 1.0)
            assert entry.given_sample.forward_tau(0.3, 0.7) == want


def test_the_forward_temperature_is_the_one_the_samples_follow():
    """The recorded fact against the samples: with the same keys, a forward that samples at
    tau_f != 1 differs from the one at tau_f = 1 on some draw; one at temperature 1 never does."""
    l = jnp.linspace(-1.5, 1.5, 8)
    keys = jax.random.split(jax.random.key(0), 64)
    for entry in E.REGISTRY:
        if not entry.discrete or entry.n_temperatures == 0:
            continue
        fn = entry.uniform()
        draws = jax.jit(jax.vmap(lambda k, t, fn=fn: fn(k, l, *t), in_axes=(0, None)))
        pair = (0.3, 2.0) if entry.n_temperatures == 2 else entry.temperatures_of(0.3)
        one = (1.0, 2.0) if entry.n_temperatures == 2 else entry.temperatures_of(1.0)
        moved = bool(np.any(draws(keys, pair) != draws(keys, one)))
        assert moved == (entry.forward_temperature(*pair) != 1.0), entry.name


@pytest.mark.parametrize(
    "name,tau_f,tau_b,field",
    [
        ("reinmax", 1.3, 0.5, "tau_f=1.3"),  # reads tau_b only
        ("softmax_ste", 0.5, 0.7, "tau_b=0.7"),  # reads tau_f (its tau acts in both passes)
        ("gumbel_rao", 2.0, 0.5, "tau_f=2"),
        ("zgr", 1.0, 0.5, "tau_b=0.5"),  # reads none
    ],
)
def test_uniform_form_refuses_a_temperature_it_would_not_read(name, tau_f, tau_b, field):
    fn = E.get(name)
    key, logits = jax.random.key(0), jnp.zeros((2, 3))
    reads = E.REGISTRY[name].reads
    message = f"from {reads[0]}" if reads else "no temperature"
    with pytest.raises(ValueError, match=f"{name} reads .*{message}.*{field}"):
        fn(key, logits, tau_f, tau_b)
    # The values results record pass, and traced values pass unchecked (the sweep engine).
    fn(key, logits, *E.REGISTRY[name].temperatures_of(0.5))
    jax.jit(fn)(key, logits, tau_f, tau_b)
    with pytest.raises(ValueError, match=f"{name} reads"):
        E.REGISTRY[name].sampled("gumbel")(key, logits, tau_f, tau_b)


def test_resolve_temperatures_rules():
    reinmax, decoupled = E.REGISTRY["reinmax"], E.REGISTRY["decoupled_st"]
    assert reinmax.resolve_temperatures(tau=0.5) == (1.0, 0.5)
    assert reinmax.resolve_temperatures(tau_b=0.5) == (1.0, 0.5)
    assert reinmax.resolve_temperatures() == (1.0, 1.0)
    assert E.REGISTRY["softmax_ste"].resolve_temperatures(tau=0.4) == (0.4, 0.4)
    assert decoupled.resolve_temperatures(tau_f=0.4) == (0.4, 1.0)
    assert decoupled.resolve_temperatures(tau_b=3.0, base=(0.2, 0.7)) == (0.2, 3.0)
    with pytest.raises(ValueError, match="decoupled_st reads two temperatures.*tau_f= and tau_b="):
        decoupled.resolve_temperatures(tau=0.5)
    with pytest.raises(ValueError, match="give its temperature once, as tau or tau_b"):
        reinmax.resolve_temperatures(tau=0.5, tau_b=0.5)
    with pytest.raises(ValueError, match="zgr reads no temperature; drop tau=0.5"):
        E.REGISTRY["zgr"].resolve_temperatures(tau=0.5)


def test_a_forward_fact_must_name_a_field_the_estimator_reads():
    with pytest.raises(ValueError, match="forward='tau_f' names a field it does not read"):
        E.Estimator("bad", E.reinmax, E.reinmax_bernoulli, writes_tau_to=("tau_b",))
    with pytest.raises(ValueError, match="given_sample.forward_tau disagrees"):
        E.Estimator(
            "bad",
            E.reinmax,
            E.reinmax_bernoulli,
            writes_tau_to=("tau_b",),
            forward=None,
            given_sample=E.GivenSample(lambda d, l, tf, tb: d, lambda tf, tb: tf),
        )


@pytest.mark.parametrize(
    "fn,single",
    [
        (E.decoupled_st, "softmax_ste"),
        (E.decoupled_st_bernoulli, "sigmoid_ste"),
        (E.decoupled_reinmax, "reinmax"),
        (E.decoupled_reinmax_bernoulli, "reinmax_bernoulli"),
    ],
)
def test_a_missing_tau_b_says_what_is_needed(fn, single):
    logits = jnp.zeros((2, 3))
    with pytest.raises(TypeError, match=f"{fn.__name__} needs both temperatures.*{single}"):
        fn(jax.random.key(0), logits, tau_f=1.0)
