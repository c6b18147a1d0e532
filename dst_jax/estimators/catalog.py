"""The registry's entries: one line per estimator, its functions and its facts.

Why a module of its own: this table is where a new estimator is added (its function, its
Bernoulli form, which temperatures it reads, which one sets its forward sample, its given-sample
form), apart from the code that implements estimators and the code that reads the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from dst_jax.estimators import bernoulli as B
from dst_jax.estimators import categorical as C
from dst_jax.estimators import recent as N
from dst_jax.estimators import relaxations
from dst_jax.estimators.registry import REGISTRY, Estimator, GivenSample, forward_tau_of, register


def _entry(
    name: str,
    categorical: Callable,
    bernoulli: Callable,
    *,
    forward: str | None,
    given: Callable | None = None,
    voided_by: tuple[str, ...] = (),
    **facts,
) -> Estimator:
    """An entry whose forward temperature is stated once: the given-sample form's law follows."""
    given_sample = None if given is None else GivenSample(given, forward_tau_of(forward), voided_by)
    return register(
        Estimator(name, categorical, bernoulli, forward=forward, given_sample=given_sample, **facts)
    )


# The paper's estimators and their closest relatives.
_entry(
    "decoupled_st",
    C.decoupled_st,
    B.decoupled_st_bernoulli,
    forward="tau_f",
    options=("backward_noise",),
    formula="one_hot(argmax(l/tau_f + g)); J(softmax(l/tau_b)) v / tau_b",
    given=C.decoupled_st_given,
    voided_by=("backward_noise",),
)
_entry(
    "softmax_ste",
    C.softmax_ste,
    B.sigmoid_ste,
    forward="tau_f",
    formula="one_hot(argmax(l/tau + g)); J(softmax(l/tau)) v / tau",
    given=C.softmax_ste_given,
)
_entry(
    "st_gumbel_softmax",
    C.st_gumbel_softmax,
    B.st_gumbel_sigmoid,
    forward=None,
    formula="one_hot(argmax(l + g)); J(softmax((l + g)/tau)) v / tau",
)
_entry(
    "identity_ste",
    C.identity_ste,
    B.identity_ste_bernoulli,
    forward="tau_f",
    formula="one_hot(argmax(l/tau + g)); v",
    given=C.identity_ste_given,
)
_entry(
    "reinmax",
    C.reinmax,
    B.reinmax_bernoulli,
    forward=None,
    writes_tau_to=("tau_b",),
    formula="D = one_hot(argmax(l + g)); 2 J((softmax(l/tau) + D)/2) v - J(softmax(l)) v / 2",
    given=C.reinmax_given,
)
_entry(
    "decoupled_reinmax",
    C.decoupled_reinmax,
    B.decoupled_reinmax_bernoulli,
    forward="tau_f",
    formula=(
        "D = one_hot(argmax(l/tau_f + g)); "
        "(2 J((softmax(l/tau_b) + D)/2) v - J(softmax(l/tau_f)) v / 2) / tau_f"
    ),
    given=C.decoupled_reinmax_given,
)
_entry(
    "gumbel_rao",
    C.gumbel_rao,
    B.gumbel_rao_bernoulli,
    forward=None,
    writes_tau_to=("tau_b",),
    options=("k",),
    formula=(
        "one_hot(argmax(l + g)); (1/k) sum_i J(softmax((l + h_i)/tau)) v / tau, "
        "h_i Gumbel given the sampled argmax"
    ),
)
_entry(
    "softmax_relaxation",
    relaxations.softmax_relaxation,
    relaxations.sigmoid_relaxation,
    forward=None,
    discrete=False,
    formula="softmax(l) (no sample); J(softmax(l)) v",
)

# The built-in functions by form, the paper's and their relatives (tuples fixed here, before the
# newest studies' estimators; `REGISTRY` is the live list).
CATEGORICAL = tuple(e.categorical.__name__ for e in REGISTRY if e.discrete)
BERNOULLI = tuple(e.bernoulli.__name__ for e in REGISTRY if e.discrete)
NAMES = CATEGORICAL + BERNOULLI

# The newest studies' estimators: each samples at temperature 1, its tau (if any) acting in the
# backward only, so results record it as tau_b.
_entry(
    "zgr",
    N.zgr,
    N.zgr_bernoulli,
    forward=None,
    formula="D = one_hot(argmax(l + g)); (J(p) v + ((D - p) . v)(D - p)) / 2, p = softmax(l)",
    given=N.zgr_given,
)
_entry(
    "mve",
    N.mve,
    N.mve_bernoulli,
    forward=None,
    writes_tau_to=("tau_b",),
    formula="D = one_hot(argmax(l + g)); S^T v, S the published MVE matrix at weight tau",
    given=N.mve_given,
)
_entry(
    "gapped_st",
    N.gapped_st,
    N.gapped_st_bernoulli,
    forward=None,
    writes_tau_to=("tau_b",),
    options=("gap",),
    formula=(
        "D = one_hot(argmax(l + g)); J(softmax((l + m)/tau)) v / tau, m lifts the sample "
        "to the top logit, the rest at least gap below"
    ),
    # The given-sample form has the default gap; any gap passed goes the direct way.
    given=N.gapped_st_given,
    voided_by=("gap",),
)
_entry(
    "reinmax_cv",
    N.reinmax_cv,
    N.reinmax_cv_bernoulli,
    forward=None,
    writes_tau_to=("tau_b",),
    options=("eta", "k"),
    formula=(
        "D = one_hot(argmax(l + g)); 2 J((p + D)/2) v - J(p) v / 2 + eta (GR_k - GS) at "
        "log((p + D)/2), temperature tau"
    ),
)
_entry(
    "rloo",
    N.rloo,
    N.rloo_bernoulli,
    forward=None,
    formula=(
        "S samples z_i of Cat(softmax(l)); (1/S) sum_i (f_i - mean_{j != i} f_j) grad log q(z_i)"
    ),
    score_function=True,
)

# The estimator this project studies: paired tables compare every other estimator with it.
REFERENCE = "decoupled_st"
