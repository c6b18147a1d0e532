"""The Flax layers: `dst_jax.layers.linen` and `dst_jax.layers.nnx` (CategoricalST, BernoulliST).

Each layer is checked inside a tiny model (Dense -> layer -> Dense -> squared error): one gradient
step through the layer changes the encoder's parameters, and gives the same loss, gradients and
updated parameters as the same model written with the pure estimator and the layer's key.
Eager throughout (see test_estimators.py on compile costs).
"""

import chex
import estimator_calls as C  # tests/estimator_calls.py
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dst_jax import estimators as E
from dst_jax.layers import linen as st_linen
from dst_jax.layers import nnx as st_nnx

B, D, UNITS, K = 2, 5, 3, 4  # batch, input width, discrete units, classes per categorical unit
TAU_F, TAU_B, LR = 0.7, 1.6, 0.5
FAMILIES = list(E.CATEGORICAL)  # every registered estimator, both layers


def temperatures(family):
    """The layer's temperature arguments for TAU_F, TAU_B: both, or `tau` = the one it reads."""
    reads = E.REGISTRY[family].reads
    if len(reads) == 2:
        return {"tau_f": TAU_F, "tau_b": TAU_B}
    return {"tau": {"tau_f": TAU_F, "tau_b": TAU_B}[reads[0]]} if reads else {}


def data():
    kx, ky = jax.random.split(jax.random.key(0))
    return jax.random.normal(kx, (B, D)), jax.random.normal(ky, (B,))


def pure_forward(params, key, x, layer, family):
    """The tiny model written with the pure estimator."""
    h = x @ params["enc"]["kernel"] + params["enc"]["bias"]
    if layer == "categorical":
        z = C.get(family)(key, h.reshape(B, UNITS, K), TAU_F, TAU_B).reshape(B, UNITS * K)
    else:
        z = C.get(E.bernoulli_name(family))(key, h, TAU_F, TAU_B)
    return (z @ params["dec"]["kernel"] + params["dec"]["bias"])[:, 0]


def width(layer):
    """Encoder outputs: K logits per categorical unit, one logit per Bernoulli unit."""
    return UNITS * K if layer == "categorical" else UNITS


def mse(out, y):
    return jnp.mean((out - y) ** 2)


def sgd(params, grads):
    return jax.tree.map(lambda p, g: p - LR * g, params, grads)


def check_step(params, grads, new_params, pure_params, key, x, y, layer, family):
    """Compares one step through the layer with the same step through the pure function."""
    pure_loss, pure_grads = jax.value_and_grad(
        lambda p: mse(pure_forward(p, key, x, layer, family), y)
    )(pure_params)
    chex.assert_trees_all_close(grads, pure_grads, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(new_params, sgd(pure_params, pure_grads), rtol=1e-5, atol=1e-7)
    moved = np.abs(np.asarray(new_params["enc"]["kernel"] - pure_params["enc"]["kernel"]))
    assert moved.max() > 1e-4, "no gradient reached the encoder through the layer"
    return pure_loss


# ----------------------------------------------------------------------------------------------
# flax.linen


class TinyLinen(nn.Module):
    layer: str
    family: str

    def setup(self):
        self.enc = nn.Dense(width(self.layer))
        cls = st_linen.CategoricalST if self.layer == "categorical" else st_linen.BernoulliST
        self.st = cls(self.family, **temperatures(self.family))
        self.dec = nn.Dense(1)

    def __call__(self, x):
        h = self.enc(x)
        z = self.st(h.reshape(B, UNITS, K) if self.layer == "categorical" else h)
        return self.dec(z.reshape(B, -1))[:, 0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", ["categorical", "bernoulli"])
def test_linen_gradient_step_matches_pure_function(layer, family):
    x, y = data()
    model = TinyLinen(layer, family)
    variables = model.init({"params": jax.random.key(1), "sample": jax.random.key(2)}, x)
    rngs = {"sample": jax.random.key(3)}
    loss, grads = jax.value_and_grad(lambda v: mse(model.apply(v, x, rngs=rngs), y))(variables)
    new_variables = sgd(variables, grads)
    # The key the layer drew from the "sample" stream.
    key = model.apply(variables, rngs=rngs, method=lambda m: m.st.make_rng("sample"))
    pure_loss = check_step(
        variables["params"], grads["params"], new_variables["params"], variables["params"],
        key, x, y, layer, family,
    )  # fmt: skip
    np.testing.assert_allclose(loss, pure_loss, rtol=1e-6)


def test_linen_call_arguments_and_deterministic_mode():
    logits = jax.random.normal(jax.random.key(4), (B, UNITS, K))
    key = jax.random.key(5)
    layer = st_linen.CategoricalST("decoupled_st", tau_f=TAU_F, tau_b=TAU_B)
    want = E.decoupled_st(key, logits, 2.0, TAU_B)
    # rng= and tau_f= at call time replace make_rng and the field.
    np.testing.assert_array_equal(layer.apply({}, logits, rng=key, tau_f=2.0), want)
    # Traced temperatures through the call: vmap over tau_f equals the loop.
    taus = jnp.array([0.3, 2.0])
    got = jax.vmap(lambda t: layer.apply({}, logits, rng=key, tau_f=t))(taus)
    np.testing.assert_array_equal(got[1], want)
    np.testing.assert_array_equal(got[0], E.decoupled_st(key, logits, 0.3, TAU_B))
    # Deterministic: the mode, from the field or the call, no rng needed.
    mode = E.argmax_one_hot(logits)
    np.testing.assert_array_equal(layer.apply({}, logits, deterministic=True), mode)
    det = st_linen.BernoulliST("softmax_ste", deterministic=True)
    np.testing.assert_array_equal(det.apply({}, logits), E.bernoulli_mode(logits))
    rngs = {"sample": key}
    sampled = det.apply({}, logits, deterministic=False, rngs=rngs)
    drawn = det.apply({}, rngs=rngs, method=lambda m: m.make_rng("sample"))
    np.testing.assert_array_equal(sampled, E.sigmoid_ste(drawn, logits, 1.0))


def test_linen_bad_configuration():
    with pytest.raises(ValueError, match="use BernoulliST"):
        st_linen.CategoricalST("sigmoid_ste")
    with pytest.raises(ValueError, match="unknown estimator 'gumbel'"):
        st_linen.BernoulliST("gumbel")
    with pytest.raises(ValueError, match="takes no option backward_noise"):
        st_linen.BernoulliST("identity_ste", backward_noise=True)
    layer = st_linen.BernoulliST("decoupled_st", tau_b=0.0)
    with pytest.raises(ValueError, match="tau_b must be a positive finite number"):
        layer.apply({}, jnp.zeros(3), rngs={"sample": jax.random.key(0)})


LAYERS = [st_linen.CategoricalST, st_linen.BernoulliST, st_nnx.CategoricalST, st_nnx.BernoulliST]


@pytest.mark.parametrize("cls", LAYERS)
def test_a_temperature_the_estimator_would_not_read_is_refused(cls):
    with pytest.raises(ValueError, match="reinmax reads one temperature, from tau_b.*tau_f=1.3"):
        cls("reinmax", tau_f=1.3)
    with pytest.raises(ValueError, match="softmax_ste reads one temperature, from tau_f.*tau_b"):
        cls("softmax_ste", tau_b=0.5)
    with pytest.raises(ValueError, match="decoupled_st reads two temperatures"):
        cls("decoupled_st", tau=0.5)
    with pytest.raises(ValueError, match="give its temperature once"):
        cls("reinmax", tau=0.5, tau_b=0.5)
    with pytest.raises(ValueError, match="cannot run 'rloo': a score-function estimator"):
        cls("rloo")
    # The values results record are accepted: ReinMax's tau_f is 1.
    cls("reinmax", tau_f=1.0, tau_b=0.5)


def test_a_single_temperature_layer_samples_as_its_estimator():
    logits = jax.random.normal(jax.random.key(4), (B, UNITS, K))
    key = jax.random.key(5)
    w = jnp.arange(float(K))
    want = jax.grad(lambda l: jnp.sum(w * E.reinmax(key, l, 0.5)))(logits)
    linen = st_linen.CategoricalST("reinmax", tau=0.5)
    got = jax.grad(lambda l: jnp.sum(w * linen.apply({}, l, rng=key)))(logits)
    np.testing.assert_array_equal(got, want)
    nnx_layer = st_nnx.CategoricalST("reinmax", tau_b=0.5)
    assert (nnx_layer.tau_f, nnx_layer.tau_b) == (1.0, 0.5)
    got = jax.grad(lambda l: jnp.sum(w * nnx_layer(l, rngs=key)))(logits)
    np.testing.assert_array_equal(got, want)
    # At call time: tau replaces the stored one; traced (tau_f, tau_b) pass as the engine's do.
    got = jax.grad(lambda l: jnp.sum(w * linen.apply({}, l, rng=key, tau=2.0)))(logits)
    np.testing.assert_array_equal(
        got, jax.grad(lambda l: jnp.sum(w * E.reinmax(key, l, 2.0)))(logits)
    )
    traced = jax.jit(lambda tf, tb: nnx_layer(logits, rngs=key, tau_f=tf, tau_b=tb))(1.3, 0.5)
    np.testing.assert_array_equal(traced, E.reinmax(key, logits, 0.5))
    with pytest.raises(ValueError, match="reinmax reads one temperature"):
        nnx_layer(logits, rngs=key, tau_f=1.3)


def test_a_layer_takes_the_registry_entry_a_task_method_receives():
    """`model.clone(estimator=entry)`: a linen model whose field goes to its layer runs the
    task's estimator; the nnx layer takes the entry in its constructor."""

    class Model(nn.Module):
        estimator: object = "decoupled_st"

        @nn.compact
        def __call__(self, logits, tau_f, tau_b):
            return st_linen.CategoricalST(self.estimator)(logits, tau_f=tau_f, tau_b=tau_b)

    logits = jax.random.normal(jax.random.key(4), (B, UNITS, K))
    w, rngs = jnp.arange(float(K)), {"sample": jax.random.key(6)}

    def grad(model):
        return jax.grad(lambda l: jnp.sum(w * model.apply({}, l, 0.3, 2.0, rngs=rngs)))(logits)

    got = grad(Model().clone(estimator=E.REGISTRY["decoupled_reinmax"]))
    np.testing.assert_array_equal(got, grad(Model(estimator="decoupled_reinmax")))
    assert not np.allclose(got, grad(Model()))  # not the default estimator's backward
    layer = st_nnx.BernoulliST(E.REGISTRY["reinmax"], tau=0.5)
    assert layer.estimator == "reinmax_bernoulli" and layer.entry is E.REGISTRY["reinmax"]


# ----------------------------------------------------------------------------------------------
# flax.nnx


class TinyNNX(nnx.Module):
    def __init__(self, layer: str, family: str, rngs: nnx.Rngs):
        self.layer = layer
        self.enc = nnx.Linear(D, width(layer), rngs=rngs)
        cls = st_nnx.CategoricalST if layer == "categorical" else st_nnx.BernoulliST
        self.st = cls(family, **temperatures(family), rngs=rngs)
        self.dec = nnx.Linear(width(layer), 1, rngs=rngs)

    def __call__(self, x):
        h = self.enc(x)
        z = self.st(h.reshape(B, UNITS, K) if self.layer == "categorical" else h)
        return self.dec(z.reshape(B, -1))[:, 0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", ["categorical", "bernoulli"])
def test_nnx_gradient_step_matches_pure_function(layer, family):
    x, y = data()
    model = TinyNNX(layer, family, nnx.Rngs(params=1, sample=2))
    key = nnx.clone(model.st.rngs)()  # the key the layer's stream will give next
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    loss, grads = nnx.value_and_grad(lambda m: mse(m(x), y))(model)
    nnx.update(model, sgd(nnx.state(model, nnx.Param), grads))
    new_params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    pure_loss = check_step(
        params, nnx.to_pure_dict(grads), new_params, params, key, x, y, layer, family
    )
    np.testing.assert_allclose(loss, pure_loss, rtol=1e-6)


def test_nnx_modes_and_call_arguments():
    logits = jax.random.normal(jax.random.key(4), (B, UNITS, K))
    layer = st_nnx.BernoulliST("decoupled_st", tau_f=TAU_F, tau_b=TAU_B, rngs=nnx.Rngs(sample=0))
    assert layer.estimator == "decoupled_st_bernoulli"
    # The stored stream advances: two calls, two different samples.
    assert not np.array_equal(layer(logits), layer(logits))
    key = jax.random.key(5)
    np.testing.assert_array_equal(
        layer(logits, rngs=key, tau_b=3.0), E.decoupled_st_bernoulli(key, logits, TAU_F, 3.0)
    )
    mode = E.bernoulli_mode(logits)
    layer.eval()
    assert layer.deterministic
    np.testing.assert_array_equal(layer(logits), mode)
    layer.train()
    assert not layer.deterministic
    np.testing.assert_array_equal(nnx.view(layer, deterministic=True)(logits), mode)
    assert not layer.deterministic  # a view leaves the layer itself alone
    np.testing.assert_array_equal(layer(logits, deterministic=True), mode)
    # Without stored rngs: a key at call time, or the deterministic mode.
    bare = st_nnx.CategoricalST("st_gumbel_softmax", tau_f=0.5)
    np.testing.assert_array_equal(bare(logits, rngs=key), E.st_gumbel_softmax(key, logits, 0.5))
    np.testing.assert_array_equal(bare(logits, deterministic=True), E.argmax_one_hot(logits))
    with pytest.raises(ValueError, match="needs randomness"):
        bare(logits)


def test_nnx_bad_configuration():
    with pytest.raises(ValueError, match="use BernoulliST"):
        st_nnx.CategoricalST("identity_ste_bernoulli")
    with pytest.raises(ValueError, match="unknown estimator"):
        st_nnx.BernoulliST("straight_through")
    with pytest.raises(ValueError, match="takes no option backward_noise"):
        st_nnx.CategoricalST("softmax_ste", backward_noise=True)
    with pytest.raises(ValueError, match="tau_f must be a positive finite number, got -1.0"):
        st_nnx.CategoricalST(tau_f=-1.0)
