"""Categorical autoencoder on MNIST: the `cae` task (DESIGN.md section 2).

Model, for one image x in [0,1]^D (D = 784) with L latents of C classes (default L=4, C=8)::

    logits_LxC = Enc(x)                       MLP D-512-256-(L*C), ReLU
    z_LxC      = estimator(logits_LxC)        one-hot per latent, one noise draw per latent
    y_D        = Dec(z_LxC)                   MLP (L*C)-256-512-D, ReLU; pixel logits
    loss(x)    = sum_d BCE(sigmoid(y_d), x_d)                      reconstruction
               + beta * sum_l KL(softmax(logits_l) || U(C))        categorical-VAE prior term
    KL(p || U(C)) = sum_c p_c log p_c + log C

A minibatch loss is the mean of loss(x) over its images. With a score-function estimator (RLOO,
`Estimator.score_function`) each image draws S = `score_samples` codes z_1..z_S of
Cat(softmax(logits)); the reconstruction term is their mean BCE (decoder gradient by
backpropagation, as usual) and the encoder's gradient comes from the leave-one-out surrogate
`estimators_recent.rloo_surrogate` over their BCEs and log-probabilities (the loss's value is
unchanged by it); the KL term keeps its exact gradient. The pixel intensities are used as
(soft) Bernoulli targets, as in the Gumbel-softmax VAE literature. The KL term is taken on the
untempered softmax(logits), so the objective is the same function of the encoder for every
(tau_f, tau_b) of a grid; only how the codes are sampled and differentiated changes. beta = 0
gives a plain autoencoder.

Code perplexity (the paper's code-usage measure) is computed per latent from the one-hot codes
the model actually emits on an evaluation split:

    usage_LxC = mean over validation images of z_LxC
    perplexity_l = exp(-sum_c usage_lc log usage_lc)        in [1, C]

`perplexity` uses the sampled (stochastic) codes, i.e. the forward pass the model is trained with;
`perplexity_det` the argmax codes. Using the codes rather than averaged softmax probabilities
measures how many code words are actually emitted, which is what "code-book usage" means for a
discrete bottleneck.

Parameters are a plain pytree: {"encoder": [layer, ...], "decoder": [layer, ...]}, each layer a
dict {"w", "b"}. The encoder's last kernel is (H, L, C) and the decoder's first is (L, C, H), so
the latent shape is carried by the parameters and the functions need no shape arguments.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dst_jax import estimators as estimator_lib
from dst_jax import estimators_recent
from dst_jax.tasks import common
from dst_jax.tasks.base import Batch, Hparams, Metrics, TaskBase

Params = dict[str, list[dict[str, jax.Array]]]
# Maps encoder logits (B, L, C) to one-hot codes of the same shape.
CodesFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Config(common.SplitConfig):
    """Hyperparameters of the categorical autoencoder (defaults: the project's protocol); the
    data split options are `common.SplitConfig`'s.

    Attributes:
      dataset: data set name for `dst_jax.data.pipeline.device_split` ("mnist").
      encoder: hidden widths of the encoder MLP (ReLU).
      latents: number of categorical latents L.
      classes: classes per latent C.
      decoder: hidden widths of the decoder MLP (ReLU).
      beta: weight of the KL(softmax(logits) || uniform) term; 0 gives a plain autoencoder.
      batch_size: training minibatch size (read by the sweep engine).
      eval_batch_size: images per evaluation slice; bounds evaluation memory per config.
      score_samples: codes drawn per image by a score-function estimator (RLOO), S >= 2; it
        costs S decoder passes per image.
    """

    dataset: str = "mnist"
    encoder: tuple[int, ...] = (512, 256)
    latents: int = 4
    classes: int = 8
    decoder: tuple[int, ...] = (256, 512)
    beta: float = 1.0
    batch_size: int = 100
    eval_batch_size: int = 1000
    score_samples: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("encoder", "decoder"):
            widths = getattr(self, name)
            if not isinstance(widths, tuple | list) or any(
                not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths
            ):
                raise ValueError(
                    f"Config.{name} must be a tuple of positive ints (hidden widths), "
                    f"got {widths!r}; e.g. {name}=(512, 256)"
                )
            # A list (e.g. read back from JSON) is stored as a tuple so the config stays hashable.
            object.__setattr__(self, name, tuple(widths))
        if self.latents < 1:
            raise ValueError(f"Config.latents must be >= 1, got {self.latents}")
        if self.classes < 2:
            raise ValueError(f"Config.classes must be >= 2 (a categorical), got {self.classes}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"Config.beta must be finite and >= 0, got {self.beta}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"Config.batch_size must be an int >= 1, got {self.batch_size!r}")
        if not (
            isinstance(self.score_samples, int)
            and not isinstance(self.score_samples, bool)
            and self.score_samples >= 2
        ):
            raise ValueError(
                f"Config.score_samples must be an int >= 2 (RLOO's leave-one-out baseline needs "
                f"two samples), got {self.score_samples!r}"
            )


# ----------------------------------------------------------------------------------------------
# Model: pure functions of (params, inputs).


# Standard deviation of a standard normal truncated to [-2, 2]; dividing by it makes the
# truncated draw's variance exactly the target (as in jax.nn.initializers.variance_scaling).
_TRUNCATED_STD = 0.87962566103423978


def init_params(key: jax.Array, config: Config, n_pixels: int) -> Params:
    """Initial parameters: LeCun-normal kernels, zero biases; deterministic given `key`.

    Every kernel entry is drawn from a normal truncated to +-2 std with variance 1/fan_in (Flax
    Dense's default), fan_in being the kernel's input size (D, e_i, L*C or d_i). Shapes, with
    widths e_1..e_k = config.encoder, d_1..d_m = config.decoder:
      encoder: (D, e_1), ..., (e_{k-1}, e_k), then (e_k, L, C) with bias (L, C)
      decoder: (L, C, d_1) with bias (d_1,), (d_1, d_2), ..., (d_m, D)
    """
    L, C = config.latents, config.classes
    enc_dims = (n_pixels, *config.encoder)
    dec_dims = (*config.decoder, n_pixels)
    # (kernel shape, fan_in, bias shape) of every layer, encoder then decoder.
    layers: list[tuple[tuple[int, ...], int, tuple[int, ...]]] = [
        ((i, o), i, (o,)) for i, o in zip(enc_dims[:-1], enc_dims[1:], strict=True)
    ]
    layers.append(((enc_dims[-1], L, C), enc_dims[-1], (L, C)))
    layers.append(((L, C, dec_dims[0]), L * C, (dec_dims[0],)))
    layers += [((i, o), i, (o,)) for i, o in zip(dec_dims[:-1], dec_dims[1:], strict=True)]

    # One draw for all kernels, cut into pieces: XLA compiles a truncated-normal sampler for
    # every distinct shape, and on a CPU that compile costs more than the draws themselves.
    sizes = [math.prod(shape) for shape, _, _ in layers]
    flat = jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes),), jnp.float32)
    pieces = jnp.split(flat, np.cumsum(sizes)[:-1])
    params = [
        {
            "w": piece.reshape(shape) * (math.sqrt(1.0 / fan_in) / _TRUNCATED_STD),
            "b": jnp.zeros(bias_shape, jnp.float32),
        }
        for piece, (shape, fan_in, bias_shape) in zip(pieces, layers, strict=True)
    ]
    n_enc = len(enc_dims)
    return {"encoder": params[:n_enc], "decoder": params[n_enc:]}


def encode(params: Params, x_BxD: jax.Array) -> jax.Array:
    """Encoder logits (B, L, C) of images x (B, D): ReLU MLP, then a linear (H, L, C) head."""
    *hidden, head = params["encoder"]
    h_BxH = x_BxD
    for layer in hidden:
        h_BxH = jax.nn.relu(h_BxH @ layer["w"] + layer["b"])
    return jnp.einsum("bh,hlc->blc", h_BxH, head["w"]) + head["b"]


def decode(params: Params, z_BxLxC: jax.Array) -> jax.Array:
    """Pixel logits (B, D) of codes z (B, L, C): a linear (L, C, H) input layer, then ReLU MLP.

    Sigmoid of the result is the decoded image; the loss works on logits for stability.
    """
    first, *rest = params["decoder"]
    h_BxH = jnp.einsum("blc,lch->bh", z_BxLxC, first["w"]) + first["b"]
    for layer in rest:
        h_BxH = jax.nn.relu(h_BxH) @ layer["w"] + layer["b"]
    return h_BxH


def bce_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Elementwise BCE of sigmoid(logits) against targets in [0, 1].

    -t log sigma(y) - (1-t) log(1 - sigma(y)) = max(y, 0) - t y + log(1 + exp(-|y|)),
    the form that never exponentiates a large positive number.
    """
    return jnp.maximum(logits, 0) - targets * logits + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def kl_to_uniform(logits_BxLxC: jax.Array) -> jax.Array:
    """Per-image sum over latents of KL(softmax(logits_l) || U(C)) = sum_c p log p + log C; (B,)."""
    logp = jax.nn.log_softmax(logits_BxLxC, axis=-1)
    n_classes = logits_BxLxC.shape[-1]
    kl_BxL = jnp.sum(jnp.exp(logp) * logp, axis=-1) + jnp.log(n_classes)
    return jnp.sum(kl_BxL, axis=-1)


def forward(
    params: Params, x_BxD: jax.Array, codes_fn: CodesFn
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-image loss terms of a batch, with codes chosen by `codes_fn(logits_BxLxC)`.

    Returns (bce_B, kl_B, z_BxLxC): bce_B = sum_d BCE(sigmoid(Dec(z)_d), x_d),
    kl_B = sum_l KL(softmax(Enc(x)_l) || U(C)), and the codes used. The per-image loss is
    bce_B + beta * kl_B.
    """
    logits_BxLxC = encode(params, x_BxD)
    z_BxLxC = codes_fn(logits_BxLxC)
    bce_B = jnp.sum(bce_with_logits(decode(params, z_BxLxC), x_BxD), axis=-1)
    return bce_B, kl_to_uniform(logits_BxLxC), z_BxLxC


def code_perplexity(usage_LxC: jax.Array) -> jax.Array:
    """exp(entropy) of each latent's code-usage distribution; shape (...,) for usage (..., C).

    `usage` holds non-negative counts or frequencies of each code (e.g. one-hot codes summed
    over a data set), normalised over the last axis: C when every code is used equally, 1 when
    a single code is used, NaN for a latent with zero total usage (`common.perplexity`).
    """
    return common.perplexity(usage_LxC)


def _argmax_codes(logits_BxLxC: jax.Array) -> jax.Array:
    return estimator_lib.argmax_one_hot(logits_BxLxC)


def evaluate_codes(
    params: Params,
    key: jax.Array,
    x_NxD: jax.Array,
    sample_fn: Callable[[jax.Array, jax.Array], jax.Array],
    beta: float,
    eval_batch_size: int,
) -> Metrics:
    """Metrics over all N images of a split, in fixed-size slices (`common.sliced_sums`).

    `sample_fn(key, logits_BxLxC)` gives the stochastic codes; the deterministic codes are the
    argmax. Memory is bounded by one slice of `eval_batch_size` images, so a vmapped grid of
    models stays within budget. Returns means over images of the loss with stochastic codes
    (`loss` = `bce` + beta * `kl`) and argmax codes (`loss_det`), and code perplexities from the
    usage of the sampled / argmax codes.
    """
    n = x_NxD.shape[0]

    def slice_sums(k, x_ExD, _, w_E):
        logits_ExLxC = encode(params, x_ExD)
        z_ExLxC = sample_fn(k, logits_ExLxC)
        z_det_ExLxC = _argmax_codes(logits_ExLxC)
        # One decoder pass over both code sets: a single larger matmul, and half the program.
        pixels_2ExD = decode(params, jnp.concatenate([z_ExLxC, z_det_ExLxC]))
        bce_2E = jnp.sum(bce_with_logits(pixels_2ExD, jnp.concatenate([x_ExD, x_ExD])), -1)
        bce_E, bce_det_E = jnp.split(bce_2E, 2)
        kl_E = kl_to_uniform(logits_ExLxC)
        return {
            "bce": jnp.sum(w_E * bce_E),
            "bce_det": jnp.sum(w_E * bce_det_E),
            "kl": jnp.sum(w_E * kl_E),
            "usage": jnp.einsum("e,elc->lc", w_E, z_ExLxC),
            "usage_det": jnp.einsum("e,elc->lc", w_E, z_det_ExLxC),
        }

    sums = common.sliced_sums(slice_sums, key, x_NxD, None, eval_batch_size)
    bce, kl = sums["bce"] / n, sums["kl"] / n
    perplexity_L = code_perplexity(sums["usage"])
    return {
        "loss": bce + beta * kl,
        "loss_det": sums["bce_det"] / n + beta * kl,
        "bce": bce,
        "kl": kl,
        "perplexity": jnp.mean(perplexity_L),
        "perplexity_det": jnp.mean(code_perplexity(sums["usage_det"])),
        "perplexity_latent": perplexity_L,
    }


def code_grid(params: Params, x_NxD: jax.Array) -> jax.Array:
    """Decoded images (L, C, D) that show what each code means.

    Every latent is held at its most frequent argmax code over `x_NxD` except latent l, which is
    set to class c; entry [l, c] is sigmoid(Dec(that code)).
    """
    z_NxLxC = _argmax_codes(encode(params, x_NxD))
    L, C = z_NxLxC.shape[1:]
    mode_L = jnp.argmax(jnp.sum(z_NxLxC, axis=0), axis=-1)
    # codes_LxCxL[l, c] = mode with position l replaced by c.
    codes_LxCxL = jnp.broadcast_to(mode_L, (L, C, L))
    is_varied_LxL = jnp.eye(L, dtype=bool)[:, None, :]
    codes_LxCxL = jnp.where(is_varied_LxL, jnp.arange(C)[None, :, None], codes_LxCxL)
    z_KxLxC = jax.nn.one_hot(codes_LxCxL.reshape(L * C, L), C, dtype=x_NxD.dtype)
    return jax.nn.sigmoid(decode(params, z_KxLxC)).reshape(L, C, -1)


# ----------------------------------------------------------------------------------------------
# The task for the sweep engine.


@dataclasses.dataclass(frozen=True)
class CAETask(TaskBase):
    """The `cae` task: implements `dst_jax.tasks.base.Task` (see that module's conventions).

    An autoencoder: it reads no labels (`batch.y` is ignored and may be None)."""

    config: Config = Config()

    name = "cae"
    unit_form = "categorical"
    accepts_score_function = True
    headline_metric = "loss"
    metric_directions = types.MappingProxyType(
        {
            "loss": "min",
            "loss_det": "min",
            "bce": "min",
            "kl": "min",
            "perplexity": "max",
            "perplexity_det": "max",
            "perplexity_latent": "max",
        }
    )
    heatmap_metrics = ("test_loss", "test_perplexity")
    extra_figures = ("code_grids",)  # figures of its own (`dst_jax.figures.TASK_FIGURES`)

    def init_params(self, key: jax.Array, data: Mapping[str, jax.Array]) -> Params:
        return init_params(key, self.config, data["train_x"].shape[-1])

    def loss(
        self, params: Params, key: jax.Array, batch: Batch, hp: Hparams
    ) -> tuple[jax.Array, Metrics]:
        """Mean over the minibatch x (B, D) of BCE + beta * KL; labels are not read."""
        if hp.estimator.score_function:
            return self._score_function_loss(params, key, batch.x, hp)
        sample = hp.sampler(self.unit_form)
        bce_B, kl_B, _ = forward(params, batch.x, lambda logits: sample(key, logits))
        loss = jnp.mean(bce_B + self.config.beta * kl_B)
        return loss, {"bce": jnp.mean(bce_B), "kl": jnp.mean(kl_B)}

    def _score_function_loss(
        self, params: Params, key: jax.Array, x_BxD: jax.Array, hp: Hparams
    ) -> tuple[jax.Array, Metrics]:
        """The loss with RLOO's gradient for the encoder (see the module docstring)."""
        n_samples = self.config.score_samples
        sample = hp.sampler(self.unit_form)
        logits_BxLxC = encode(params, x_BxD)
        # The samples carry no gradient; the encoder's comes from their log-probabilities.
        z_SxBxLxC = jax.lax.stop_gradient(
            jax.vmap(lambda k: sample(k, logits_BxLxC))(jax.random.split(key, n_samples))
        )
        pixels_SxBxD = jax.vmap(lambda z: decode(params, z))(z_SxBxLxC)
        bce_SxB = jnp.sum(bce_with_logits(pixels_SxBxD, x_BxD), axis=-1)
        logp_BxLxC = jax.nn.log_softmax(logits_BxLxC, axis=-1)
        logq_SxB = jnp.sum(jnp.where(z_SxBxLxC > 0, logp_BxLxC, 0.0), axis=(-2, -1))
        surrogate_B = estimators_recent.rloo_surrogate(bce_SxB, logq_SxB)
        bce_B = jnp.mean(bce_SxB, axis=0)
        kl_B = kl_to_uniform(logits_BxLxC)
        per_image_B = bce_B + (surrogate_B - jax.lax.stop_gradient(surrogate_B))
        loss = jnp.mean(per_image_B + self.config.beta * kl_B)
        return loss, {"bce": jnp.mean(bce_B), "kl": jnp.mean(kl_B)}

    def evaluate(self, params: Params, key: jax.Array, batch: Batch, hp: Hparams) -> Metrics:
        """Metrics of one split; see `evaluate_codes` (labels are not read)."""
        return evaluate_codes(
            params,
            key,
            batch.x,
            hp.sampler(self.unit_form),
            self.config.beta,
            self.config.eval_batch_size,
        )

    def figure_arrays(self, params: Params, data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """`code_grid` (L, C, D): what each code decodes to (see `code_grid`), on the test split."""
        return {"code_grid": code_grid(params, data["test_x"])}


def make_task(config: Config | None = None) -> CAETask:
    """Build the `cae` task from its `Config` (defaults when None)."""
    return CAETask(config if config is not None else Config())
