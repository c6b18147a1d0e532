"""The registry: every estimator once, with the facts the rest of dst_jax reads about it.

Why a module of its own: tasks, the sweep grid, results, figures and the gradient analysis ask
the same questions of an estimator (which temperatures it reads, which one sets its forward
sample, its options and their defaults, whether it samples, whether its gradient is a
score-function surrogate); the `Estimator` record answers them, so no caller has to probe a
function to learn a fact. The entries themselves are in `catalog.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike

from dst_jax.estimators.samplers import _SAMPLER_FUNCTIONS, SAMPLERS

Array = jax.Array
# The uniform form used by tasks and the sweep engine: (key, logits, tau_f, tau_b) -> sample.
Uniform = Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]

FORMS = ("categorical", "bernoulli")
_FIELDS = ("tau_f", "tau_b")
_TEMPERATURE_NAMES = ("tau", "tau_f", "tau_b")


@dataclasses.dataclass(frozen=True)
class GivenSample:
    """An estimator's backward applied to a sample drawn elsewhere (registry data).

    Attributes:
      straight_through: `(d, logits, tau_f, tau_b) -> z` in the uniform (tau_f, tau_b) form:
        the value is `d` (a one-hot `(..., K)` sample, cast to the logits' dtype), the VJP is
        the estimator's backward at that sample. With `d` the estimator's own Gumbel-max
        sample (`sample_gumbel_max(key, l, forward_tau(tau_f, tau_b))`) it equals the
        estimator, value and gradient, exactly.
      forward_tau: `(tau_f, tau_b) -> tau`, the temperature of the law `Cat(softmax(l/tau))`
        that `d` must follow (e.g. `tau_f` for decoupled ST, 1 for ReinMax); it agrees with
        the entry's `forward` (checked when the entry is made).
      voided_by: static options under which the backward reads the forward's noise, so that
        no given-sample form exists (e.g. `backward_noise` of decoupled ST).
    """

    straight_through: Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Array]
    forward_tau: Callable[[ArrayLike, ArrayLike], ArrayLike]
    voided_by: tuple[str, ...] = ()


def forward_tau_of(field: str | None) -> Callable[[ArrayLike, ArrayLike], ArrayLike]:
    """`GivenSample.forward_tau` for an estimator whose forward samples at `field` (None: 1)."""
    if field is None:
        return lambda tau_f, tau_b: 1.0
    if field not in _FIELDS:
        raise ValueError(f"forward must be 'tau_f', 'tau_b' or None, got {field!r}")
    return (lambda tau_f, tau_b: tau_f) if field == "tau_f" else (lambda tau_f, tau_b: tau_b)


def _n_temperatures(fn: Callable[..., Array]) -> int:
    """Temperature arguments after (key, logits): those without a default, and those named
    tau, tau_f or tau_b (a two-temperature function may give `tau_b=None` to say it is
    missing in a message of its own)."""
    params = list(inspect.signature(fn).parameters.values())[2:]
    return sum(p.default is inspect.Parameter.empty or p.name in _TEMPERATURE_NAMES for p in params)


def _show(value: Any) -> str:
    return f"{float(np.asarray(value)):g}" if np.ndim(value) == 0 else f"an array {np.shape(value)}"


def _concrete(value: Any) -> bool:
    return value is not None and not isinstance(value, jax.core.Tracer)


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A registry entry: an estimator's functions and its facts.

    Attributes:
      name: the name on the command line and in results files.
      categorical: the categorical function, `fn(key, logits, *temperatures, **options)`.
      bernoulli: its Bernoulli form, same signature.
      writes_tau_to: for a single-temperature estimator, the results fields (`"tau_f"`,
        `"tau_b"`) that record its `tau`, the first being the one its uniform form reads; the
        other field records 1.0. E.g. `("tau_f", "tau_b")` for Softmax STE (its tau acts in
        both passes), `("tau_b",)` for ReinMax (its forward samples at 1). Ignored otherwise.
      options: the static keyword options the functions take (e.g. `backward_noise`, `k`);
        their defaults are `defaults`.
      discrete: False for a relaxation (a reference that does not sample).
      formula: forward and backward in one line, for the documentation.
      given_sample: the categorical backward applied to a sample drawn elsewhere
        (`GivenSample`), for an estimator whose backward needs only the forward one-hot `D`;
        None where it needs the noise (`st_gumbel_softmax`, `gumbel_rao`) or draws no sample.
      score_function: True for a score-function estimator (RLOO): its functions draw samples
        with no pathwise gradient, and the gradient comes from a surrogate over several
        samples that the task's loss builds; only tasks with `accepts_score_function` train it.
      forward: the field (`"tau_f"` or `"tau_b"`) whose temperature `T` sets the law
        `Cat(softmax(l/T))` of the forward sample, or None where the forward samples at
        temperature 1 whatever the temperatures (ReinMax, ST Gumbel-softmax, Gumbel-Rao, the
        newest studies' estimators, the relaxation). Default "tau_f" (decoupled ST's
        convention); an estimator that reads no temperature samples at 1 (None).
    """

    name: str
    categorical: Callable[..., Array]
    bernoulli: Callable[..., Array]
    writes_tau_to: tuple[str, ...] = ("tau_f", "tau_b")
    options: tuple[str, ...] = ()
    discrete: bool = True
    formula: str = ""
    given_sample: GivenSample | None = None
    score_function: bool = False
    forward: str | None = "tau_f"

    def __post_init__(self):
        n = _n_temperatures(self.categorical)
        if n != _n_temperatures(self.bernoulli):
            raise ValueError(f"{self.name}: the two forms take different temperatures")
        if n == 1 and (not self.writes_tau_to or not set(self.writes_tau_to) <= set(_FIELDS)):
            raise ValueError(
                f"{self.name}: writes_tau_to must name tau_f and/or tau_b, got {self.writes_tau_to}"
            )
        if n == 0:
            object.__setattr__(self, "forward", None)
        if self.forward is not None and self.forward not in self.reads:
            raise ValueError(
                f"{self.name}: forward={self.forward!r} names a field it does not read (it reads "
                f"{' and '.join(self.reads)}); pass forward=None if its forward samples at "
                "temperature 1, or the field it reads."
            )
        given = self.given_sample
        if given is not None and given.forward_tau(2.0, 3.0) != {"tau_f": 2.0, "tau_b": 3.0}.get(
            self.forward, 1.0
        ):
            raise ValueError(f"{self.name}: given_sample.forward_tau disagrees with forward")

    @property
    def n_temperatures(self) -> int:
        """0 (no temperature), 1 (`tau`) or 2 (`tau_f`, `tau_b`: a 2-D grid in sweeps)."""
        return _n_temperatures(self.categorical)

    @property
    def reads(self) -> tuple[str, ...]:
        """The uniform-form fields the estimator reads: ("tau_f", "tau_b"), one of them (a
        single-temperature estimator's `tau`, `writes_tau_to[0]`), or ()."""
        return {2: _FIELDS, 1: self.writes_tau_to[:1], 0: ()}[self.n_temperatures]

    @property
    def axes(self) -> tuple[str, ...]:
        """The results fields a sweep varies for this estimator: both, the one its tau is read
        from, or none."""
        return self.reads

    @property
    def defaults(self) -> dict[str, Any]:
        """The options' default values by name: Gumbel-Rao's `k` is 10, Gapped ST's `gap` 1.0.

        Read off the categorical function's signature, where they are written once.
        """
        params = inspect.signature(self.categorical).parameters
        return {name: params[name].default for name in self.options}

    def temperatures_of(self, tau: float) -> tuple[float, float]:
        """(tau_f, tau_b) that results record for a single-temperature value `tau`."""
        if self.n_temperatures == 0:
            return 1.0, 1.0
        tau_f, tau_b = (tau if f in self.writes_tau_to else 1.0 for f in _FIELDS)
        return tau_f, tau_b

    def forward_temperature(self, tau_f: ArrayLike, tau_b: ArrayLike) -> np.ndarray:
        """The temperature T of the forward's law `Cat(softmax(l/T))` at concrete (tau_f,
        tau_b) configurations: float64, their broadcast shape (tau_f, tau_b or 1, by
        `forward`)."""
        tf, tb = np.broadcast_arrays(np.asarray(tau_f, np.float64), np.asarray(tau_b, np.float64))
        return {"tau_f": tf, "tau_b": tb, None: np.ones_like(tf)}[self.forward].copy()

    def resolve_temperatures(
        self,
        *,
        tau: ArrayLike | None = None,
        tau_f: ArrayLike | None = None,
        tau_b: ArrayLike | None = None,
        base: tuple[ArrayLike, ArrayLike] = (1.0, 1.0),
    ) -> tuple[ArrayLike, ArrayLike]:
        """The uniform form's `(tau_f, tau_b)` from the temperatures a user names.

        Two temperatures: `tau_f` and `tau_b` (each `base`'s where not given); `tau` is an
        error. One: `tau`, or the field it is read from (`reads`), not both; the other field
        may be given only as the value results record for it (`temperatures_of`): 1.0, or the
        same tau for Softmax STE. None: no temperature but the recorded 1.0. Anything else
        would be ignored by the estimator, so it is a ValueError that names the field it does
        read. Traced values pass unchecked (the sweep engine hands every estimator both
        fields, traced, at the values `temperatures_of` records).
        """
        given = {"tau_f": tau_f, "tau_b": tau_b}
        n = self.n_temperatures
        if n == 2:
            if tau is not None:
                raise ValueError(
                    f"{self.name} reads two temperatures, tau_f (forward) and tau_b (backward); "
                    "tau is for single-temperature estimators: pass tau_f= and tau_b=."
                )
            return (base[0] if tau_f is None else tau_f), (base[1] if tau_b is None else tau_b)
        if n == 1:
            (read,) = self.reads
            if tau is not None and given[read] is not None:
                raise ValueError(f"{self.name}: give its temperature once, as tau or {read}.")
            t = tau if tau is not None else given[read]
            t = base[_FIELDS.index(read)] if t is None else t
            pair = dict(zip(_FIELDS, self.temperatures_of(t), strict=True))  # type: ignore[arg-type]
        else:
            if tau is not None:
                raise ValueError(f"{self.name} reads no temperature; drop tau={_show(tau)}.")
            read, pair = None, {"tau_f": 1.0, "tau_b": 1.0}
        for field in _FIELDS:
            value = given[field]
            if field == read or not (_concrete(value) and _concrete(pair[field])):
                continue
            if not np.all(np.asarray(value) == np.asarray(pair[field])):
                what = f"one temperature, from {read} (tau)" if read else "no temperature"
                raise ValueError(
                    f"{self.name} reads {what}; {field}={_show(value)} would be ignored: "
                    + (f"pass tau= or {read}= only." if read else f"drop {field}.")
                )
        return pair["tau_f"], pair["tau_b"]

    def function(self, form: str) -> Callable[..., Array]:
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        return self.categorical if form == "categorical" else self.bernoulli

    def uniform(self, form: str = "categorical", **options) -> Uniform:
        """The estimator as `fn(key, logits, tau_f, tau_b) -> sample`, the form tasks call.

        A single-temperature estimator reads its tau from `writes_tau_to[0]`; an untempered one
        reads neither. Concrete temperatures that it would not read must be the values results
        record for them (`resolve_temperatures`), else a ValueError names the field it reads:
        `get("reinmax")(key, l, 1.3, 0.5)` is refused, `(1.0, 0.5)` accepted. Repeated calls
        return the same function object, so `jax.jit` caches keyed on it are reused.
        """
        unknown = set(options) - set(self.options)
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise ValueError(
                f"{self.name} takes no option {', '.join(sorted(unknown))} (its options: "
                f"{allowed}); drop it or pick another estimator."
            )
        return _uniform(self, form, tuple(sorted(options.items())))

    def given_sample_form(self, **options) -> GivenSample | None:
        """The categorical given-sample form under these static options, or None where the
        backward needs the forward's noise (no form registered, or an option in `voided_by`
        set, e.g. `backward_noise=True`)."""
        given = self.given_sample
        if given is None or any(options.get(name) for name in given.voided_by):
            return None
        return given

    def sampled(self, sampler: str = "gumbel", form: str = "categorical", **options) -> Uniform:
        """The estimator as `fn(key, logits, tau_f, tau_b) -> sample`, its forward one-hot drawn
        by `sampler` (one of `SAMPLERS`).

        "gumbel": the estimator itself, the same values and gradients as `uniform(form)` (the
        same random stream); where a given-sample form exists it is computed as
        `straight_through(sample_gumbel_max(key, l, forward_tau(tau_f, tau_b)), l, tau_f, tau_b)`,
        equal bit for bit and faster on CPU (no variadic argmax).
        "inverse_cdf": `straight_through(sample_inverse_cdf(key, l, forward_tau(tau_f, tau_b)),
        l, tau_f, tau_b)`, the same law from one uniform per row: another random stream.

        Raises:
          ValueError: for an unknown sampler, or "inverse_cdf" with an estimator (or options,
            or the Bernoulli form) that has no given-sample form; the message names both.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        uniform = self.uniform(form, **options)  # validates form and options
        given = self.given_sample_form(**options) if form == "categorical" else None
        if given is None:
            if sampler == "gumbel":
                return uniform
            where = "its Bernoulli form" if form == "bernoulli" else "its backward"
            raise ValueError(
                f"estimator {self.name!r} cannot use sampler {sampler!r}: {where} needs the "
                "forward's Gumbel noise, not only the sample (no given-sample form); use "
                f"sampler 'gumbel', or one of {_given_sample_names()}."
            )
        return _sampled(self, sampler, tuple(sorted(options.items())))


def _given_sample_names() -> tuple[str, ...]:
    return tuple(e.name for e in REGISTRY if e.given_sample is not None)


def _check_pair(entry: Estimator, tau_f: ArrayLike, tau_b: ArrayLike) -> None:
    # Concrete values only; under jit/vmap both are tracers and nothing is checked.
    if entry.n_temperatures < 2 and (_concrete(tau_f) or _concrete(tau_b)):
        entry.resolve_temperatures(tau_f=tau_f, tau_b=tau_b)


@functools.cache
def _sampled(entry: Estimator, sampler: str, options: tuple) -> Uniform:
    given = entry.given_sample_form(**dict(options))
    assert given is not None  # sampled() returned the plain form otherwise
    draw = _SAMPLER_FUNCTIONS[sampler]

    def sampled(key, logits, tau_f, tau_b):
        _check_pair(entry, tau_f, tau_b)
        d = draw(key, logits, given.forward_tau(tau_f, tau_b))
        return given.straight_through(d, logits, tau_f, tau_b)

    sampled.__name__ = sampled.__qualname__ = f"{entry.categorical.__name__}_{sampler}"
    sampled.__doc__ = (
        f"`{entry.categorical.__name__}` with its sample drawn by `{draw.__name__}`, as "
        "fn(key, logits, tau_f, tau_b)."
    )
    return sampled


@functools.cache
def _uniform(entry: Estimator, form: str, options: tuple) -> Uniform:
    fn = functools.partial(entry.function(form), **dict(options))
    n = entry.n_temperatures
    if n == 2:
        uniform = lambda key, logits, tau_f, tau_b: fn(key, logits, tau_f, tau_b)  # noqa: E731
    elif n == 1:
        slot = entry.writes_tau_to[0]

        def uniform(key, logits, tau_f, tau_b):
            _check_pair(entry, tau_f, tau_b)
            return fn(key, logits, tau_f if slot == "tau_f" else tau_b)

    else:

        def uniform(key, logits, tau_f, tau_b):
            _check_pair(entry, tau_f, tau_b)
            return fn(key, logits)

    uniform.__name__ = uniform.__qualname__ = entry.function(form).__name__
    uniform.__doc__ = f"`{entry.function(form).__name__}` as fn(key, logits, tau_f, tau_b)."
    return uniform


class Registry:
    """Estimators by name, in registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, Estimator] = {}

    def register(self, entry: Estimator) -> Estimator:
        """Adds `entry` under its name and returns it; a name already taken is a ValueError."""
        if entry.name in self._entries:
            raise ValueError(f"an estimator named {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self[name]  # noqa: B018 (raises the usual error for an unknown name)
        del self._entries[name]

    @contextlib.contextmanager
    def scoped(self, entry: Estimator) -> Iterator[Estimator]:
        """Registers `entry` for the duration of a `with` block (tests, one-off experiments)."""
        self.register(entry)
        try:
            yield entry
        finally:
            self._entries.pop(entry.name, None)

    def __getitem__(self, name: str) -> Estimator:
        if name not in self._entries:
            raise ValueError(f"unknown estimator {name!r}; expected one of {self.names()}.")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Estimator]:
        return iter(tuple(self._entries.values()))

    def names(self, discrete: bool | None = None) -> tuple[str, ...]:
        """Registered names; `discrete=True` only sampling estimators, False only relaxations."""
        return tuple(e.name for e in self if discrete is None or e.discrete == discrete)


REGISTRY = Registry()
register = REGISTRY.register


def lookup(name: str) -> tuple[Estimator, str]:
    """(entry, form) of a registry name (categorical form) or of a Bernoulli function's name
    (e.g. "sigmoid_ste" -> the softmax_ste entry, "bernoulli")."""
    if name in REGISTRY:
        return REGISTRY[name], "categorical"
    for entry in REGISTRY:
        if entry.bernoulli.__name__ == name:
            return entry, "bernoulli"
    raise ValueError(
        f"unknown estimator {name!r}; expected one of {REGISTRY.names()} "
        f"(or a Bernoulli form: {tuple(e.bernoulli.__name__ for e in REGISTRY)})."
    )


def get(name: str, form: str | None = None, **options) -> Uniform:
    """The estimator `name` as `fn(key, logits, tau_f, tau_b) -> sample`.

    `name` is a registry name or a Bernoulli function's name; `form` ("categorical" or
    "bernoulli") overrides the form the name implies. Single-temperature estimators read their
    `tau` from the field in `writes_tau_to[0]`; options (e.g. `backward_noise=True`, `k=20`) go
    to the function and must be ones it takes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from dst_jax import estimators
        >>> fn = estimators.get("reinmax")  # fn(key, logits, tau_f, tau_b); ReinMax reads tau_b
        >>> fn(jax.random.key(0), jnp.zeros((2, 3)), 1.0, 0.5).shape
        (2, 3)
        >>> estimators.REGISTRY["reinmax"].temperatures_of(0.5)  # recorded (tau_f, tau_b)
        (1.0, 0.5)
    """
    entry, implied = lookup(name)
    return entry.uniform(form or implied, **options)


def bernoulli_name(name: str) -> str:
    """The Bernoulli function's name of an estimator: `"decoupled_st"` ->
    `"decoupled_st_bernoulli"`, `"softmax_ste"` -> `"sigmoid_ste"`; a Bernoulli name is returned
    unchanged."""
    return lookup(name)[0].bernoulli.__name__
