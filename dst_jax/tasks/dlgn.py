"""Differentiable logic gate network on CIFAR-10 (DESIGN.md section 2, task `dlgn`).

difflogic's "small" CIFAR-10 network: each colour channel thresholded at 1/4, 2/4, 3/4 gives
9,216 binary inputs; `layers` logic layers of `width` neurons with fixed wiring (`dst_jax.logic`);
GroupSum over `n_classes` with temperature `group_sum_tau`; softmax cross-entropy.

Every neuron holds 16 gate logits. In training, each layer draws its gate choice through the
estimator: z = estimator(key, logits_Nx16, tau_f, tau_b) is one-hot in the forward pass, and the
layer computes relax(a, b, z), the exact Boolean gate on {0, 1} inputs, so the trained network is
discrete in its forward pass. One sample per neuron per step is shared by the minibatch;
`per_example_samples=True` draws one per example instead, at the cost of an (N, B, 16) sample
tensor per layer (in evaluation too: lower `eval_batch_size` with it).

`sampler` picks how the one-hot is drawn (`DLGNTask.sampler_of`): "gumbel" (default) is the
estimator's own Gumbel-max draw, 2 x 16 uniforms per neuron, the stream of earlier versions;
"inverse_cdf" draws the same law `Cat(softmax(l / tau_f))` from one uniform per neuron
(`estimators.sample_inverse_cdf`) for the estimators whose backward needs only the sample (a
registry `GivenSample`); st_gumbel_softmax and gumbel_rao, whose backward reads the noise, keep
the Gumbel draw. Results record the config's sampler and, in the data provenance,
`sampler_by_estimator`.

The reference row `softmax_relaxation` (a registry entry with `discrete=False`) is difflogic's
own training: z = softmax(logits), no sampling, no temperature.

The wiring is drawn once on the host from `wiring_seed` in `load_data` and shared by the whole
grid; its int32 tables travel in the `data` dict, never as closed-over constants:
`wiring_in` (2N,) and `wiring_inv_in` (D, F) for the first layer (a-inputs, then b-inputs; the
inverse table serves the gather's backward), `wiring_hidden` (L-1, 2N) and `wiring_inv_hidden`
(L-1, N, F) for the others (`logic.network`).

Metrics of an evaluation split:
- `acc`: the discretised network (argmax gate per neuron, exact Boolean evaluation); ties in
  the integer group sums go to the lower class index, as with difflogic's argmax. Evaluated
  bit-packed, 32 examples per uint32 word (`logic.packed_forward`): the float network's
  predictions exactly.
- `acc_train_mode`: the network as trained (the estimator's stochastic forward with one fresh
  sample of every gate, or the softmax relaxation). Bit-packed as well when that network is
  Boolean (a discrete estimator with one sample per neuron); the float network for the
  relaxation and with `per_example_samples`.
Metrics of the parameters: `gate_perplexity`, exp(entropy) of the histogram of argmax gates over
all neurons of all layers (1 to 16); `gate_hist`, that histogram (16,), fraction of neurons per
gate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dst_jax import estimators, logic
from dst_jax.estimators import Estimator
from dst_jax.tasks import common
from dst_jax.tasks.base import Batch, Hparams, Metrics, PyTree, TaskBase


@dataclasses.dataclass(frozen=True)
class Config(common.SplitConfig):
    """Hyperparameters of the logic gate network (defaults: difflogic's "small" CIFAR-10
    network); the data split options are `common.SplitConfig`'s."""

    dataset: str = "cifar10"
    layers: int = 4
    width: int = 12000
    n_classes: int = 10
    group_sum_tau: float = 100.0
    batch_size: int = 100
    # difflogic's default scheme (its CLI default is "unique"); "random" is the other one.
    wiring: str = "unique"
    wiring_seed: int = 0
    # difflogic initialises the gate logits from a standard normal.
    init_std: float = 1.0
    per_example_samples: bool = False  # one gate sample per example instead of per step
    # How the gate sample is drawn (`DLGNTask.sampler_of`): "gumbel" keeps the estimators' own
    # Gumbel-max stream; "inverse_cdf" draws the same law from one uniform per neuron, where the
    # estimator's backward needs only the sample (another random stream).
    sampler: str = "gumbel"

    def __post_init__(self):
        super().__post_init__()
        for name in ("layers", "width", "n_classes", "batch_size"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"Config.{name} must be a positive integer, got {value}")
        if self.width % self.n_classes:
            raise ValueError(
                f"GroupSum splits the last layer into n_classes groups: width ({self.width}) must "
                f"be divisible by n_classes ({self.n_classes})"
            )
        if not self.group_sum_tau > 0:
            raise ValueError(f"Config.group_sum_tau must be positive, got {self.group_sum_tau}")
        if self.wiring not in logic.WIRING_SCHEMES:
            raise ValueError(
                f"Config.wiring must be one of {logic.WIRING_SCHEMES}, got {self.wiring!r}"
            )
        if self.sampler not in estimators.SAMPLERS:
            raise ValueError(
                f"Config.sampler must be one of {estimators.SAMPLERS}, got {self.sampler!r}"
            )


def layer_wiring(data: Mapping[str, Any], layer: int) -> np.ndarray:
    """The (2, N) input pairs of logic layer `layer` (host copy): row 0 a-inputs, row 1 b-inputs."""
    flat = data["wiring_in"] if layer == 0 else data["wiring_hidden"][layer - 1]
    return np.asarray(flat).reshape(2, -1)


def build_data(
    config: Config,
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
) -> dict[str, np.ndarray]:
    """The task's `data` dict from binary inputs (N, D) and labels (N,), with the wiring tables.

    Cuts the splits (`common.make_splits`: subsets, then the validation split) and draws every
    layer's wiring from `config.wiring_seed` (layer l uses seed (wiring_seed, l)). The inverse
    tables of the hidden layers are padded to a common fan-out F with the out-of-range index 2N
    (read as zero).
    """
    return add_wiring(config, common.make_splits(config, train_x, train_y, test_x, test_y))


def add_wiring(config: Config, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with every layer's wiring tables added (`logic.network_tables`)."""
    in_dim = int(np.shape(data["train_x"])[-1])
    # Config checks that `wiring` is one of the schemes.
    scheme = cast(logic.Scheme, config.wiring)
    data.update(
        logic.network_tables(in_dim, config.layers, config.width, scheme, config.wiring_seed)
    )
    return data


@dataclasses.dataclass(frozen=True)
class DLGNTask(TaskBase):
    """The `dlgn` task: implements `dst_jax.tasks.base.Task` (see that module's conventions).
    Its wiring tables are the task's fixed arrays (`Batch.fixed`)."""

    config: Config = Config()

    name = "dlgn"
    unit_form = "categorical"
    accepts_relaxation = True
    headline_metric = "acc"
    metric_directions = {
        "acc": "max",
        "acc_train_mode": "max",
        "gate_perplexity": "max",
        "loss": "min",
    }
    heatmap_metrics = ("test_acc", "gate_perplexity")
    histograms = {"gate_hist": logic.GATE_NAMES}
    input_encoding = "threshold"

    # -- data --------------------------------------------------------------------------------
    def load_data(self, data_dir: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg = self.config
        data, info = common.load_data(cfg, data_dir, self.input_encoding)
        data = add_wiring(cfg, data)
        info.update(wiring=cfg.wiring, wiring_seed=cfg.wiring_seed)
        # Which sampler each estimator actually draws with (see `sampler_of`).
        info["sampler_by_estimator"] = {
            e.name: self.sampler_of(e) for e in estimators.REGISTRY if e.discrete
        }
        return data, info

    # -- model -------------------------------------------------------------------------------
    def init_params(self, key: jax.Array, data: Mapping[str, jax.Array]) -> PyTree:
        """{"gate_logits": [(width, 16)] * layers}, i.i.d. N(0, init_std^2)."""
        cfg = self.config
        keys = jax.random.split(key, cfg.layers)
        return {
            "gate_logits": [
                cfg.init_std * jax.random.normal(k, (cfg.width, logic.N_GATES), jnp.float32)
                for k in keys
            ]
        }

    def sampler_of(self, estimator: Estimator) -> str:
        """The sampler `estimator` draws its gates with under this config.

        `config.sampler` ("gumbel" or "inverse_cdf") where the estimator has a given-sample
        form (`Estimator.given_sample`); "gumbel" for the estimators whose backward reads the
        forward's Gumbel noise (st_gumbel_softmax, gumbel_rao), which cannot be drawn any other
        way: with `sampler="inverse_cdf"` a grid over all estimators still trains, and
        `load_data` records the sampler of each in the results' provenance
        (`sampler_by_estimator`); "none" for the relaxation, which draws nothing.
        """
        if not estimator.discrete:
            return "none"
        if estimator.given_sample_form() is None:
            return "gumbel"
        return self.config.sampler

    def gate_samples(
        self,
        key: jax.Array,
        logits_NxG: jax.Array,
        estimator: Estimator,
        tau_f: jax.Array,
        tau_b: jax.Array,
        batch: int | None = None,
    ) -> jax.Array:
        """Training-mode gate weights of one layer: (N, 16), or (N, batch, 16) per example.

        z = estimator(key, logits, tau_f, tau_b), its one-hot drawn by `sampler_of(estimator)`
        (surrogate backward); softmax(logits) for the relaxation.
        """
        if batch is not None and estimator.discrete:  # neuron-major like the activations
            n, g = logits_NxG.shape
            logits_NxG = jnp.broadcast_to(logits_NxG[:, None], (n, batch, g))
        sampler = self.sampler_of(estimator)
        if sampler == "none":
            fn = estimator.uniform(self.unit_form)
        else:
            fn = estimator.sampled(sampler, self.unit_form)
        return fn(key, logits_NxG, tau_f, tau_b)

    def gate_coefficients(
        self,
        key: jax.Array,
        logits_NxG: jax.Array,
        estimator: Estimator,
        tau_f: jax.Array,
        tau_b: jax.Array,
        batch: int | None = None,
    ) -> jax.Array:
        """Training-mode coefficients of one layer: (N, 4), or (N, batch, 4) per example:
        c = z @ C with z = `gate_samples(...)`."""
        return logic.gate_coefficients(
            self.gate_samples(key, logits_NxG, estimator, tau_f, tau_b, batch)
        )

    def forward(
        self,
        coefs: Sequence[jax.Array],
        x_BxD: jax.Array,
        data: Mapping[str, jax.Array],
        hidden_in_scan: bool = False,
    ) -> jax.Array:
        """Class logits (B, n_classes) from per-layer coefficients (N, 4) or (N, B, 4) and the
        wiring tables in `data` (`logic.network_forward` with this config's GroupSum)."""
        cfg = self.config
        return logic.network_forward(
            coefs, x_BxD, data, cfg.n_classes, cfg.group_sum_tau, hidden_in_scan
        )

    def _train_samples(self, params, key, estimator, tau_f, tau_b, batch=None):
        logits = params["gate_logits"]
        keys = jax.random.split(key, len(logits))
        return [
            self.gate_samples(k, lg, estimator, tau_f, tau_b, batch)
            for k, lg in zip(keys, logits, strict=True)
        ]

    def _train_coefs(self, params, key, estimator, tau_f, tau_b, batch=None):
        samples = self._train_samples(params, key, estimator, tau_f, tau_b, batch)
        return [logic.gate_coefficients(z) for z in samples]

    def loss(
        self, params: PyTree, key: jax.Array, batch: Batch, hp: Hparams
    ) -> tuple[jax.Array, Metrics]:
        x, y = batch.x, _labels(batch)
        n_batch = x.shape[0] if self.config.per_example_samples else None
        coefs = self._train_coefs(params, key, hp.estimator, hp.tau_f, hp.tau_b, n_batch)
        logits_BxC = self.forward(coefs, x, batch.fixed)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y).mean()
        return loss, {"acc": (logits_BxC.argmax(-1) == y).mean()}

    # -- evaluation --------------------------------------------------------------------------
    def gate_counts(self, params: PyTree) -> jax.Array:
        """(16,) number of neurons (all layers) whose argmax gate is each of `GATE_NAMES`."""
        gates = jnp.concatenate([lg.argmax(-1) for lg in params["gate_logits"]])
        return jax.nn.one_hot(gates, logic.N_GATES, dtype=jnp.float32).sum(0)

    def gate_histogram(self, params: PyTree) -> jax.Array:
        """(16,) fraction of neurons (all layers) whose argmax gate is each of `GATE_NAMES`."""
        counts = self.gate_counts(params)
        return counts / jnp.sum(counts)

    def packed_counts(
        self, gates: Sequence[jax.Array], x_BxD: jax.Array, data: Mapping[str, jax.Array]
    ) -> jax.Array:
        """Class counts of S discretised networks, bit-packed: int32 (S, B, n_classes).

        `gates[l]` holds layer l's gate index per neuron of each network, (S, N); the counts
        are the float network's group sums times `group_sum_tau`, exactly
        (`logic.packed_forward`). The inputs are packed once (32 examples per uint32 word) and
        shared by the S networks; the networks run in slices of ceil(eval_batch_size / 32)
        words, so a slice's activations take 1/32 of the float evaluation's bytes (per network,
        times the width of a vmapped grid).
        """
        x_DxW = logic.pack_bits(x_BxD)
        wirings = logic.network_wirings(data)
        block_words = logic.n_words(self.config.eval_batch_size)
        n, n_classes = x_BxD.shape[0], self.config.n_classes

        def counts(gates_one):
            return logic.packed_forward(gates_one, wirings, x_DxW, n, n_classes, block_words)

        return jax.vmap(counts)(list(gates))

    def evaluate(self, params: PyTree, key: jax.Array, batch: Batch, hp: Hparams) -> Metrics:
        """`acc` from the bit-packed argmax-gate network; `acc_train_mode` bit-packed too where
        the sampled network is Boolean (a discrete estimator, one sample per neuron shared by
        the split), else from the float network (the relaxation, `per_example_samples`), in
        slices of `eval_batch_size`. Both equal the float network's predictions exactly.

        `batch.x` holds {0, 1} inputs (the bit-packed paths read nonzero as 1)."""
        x, y, data = batch.x, _labels(batch), batch.fixed
        estimator, tau_f, tau_b = hp.estimator, hp.tau_f, hp.tau_b
        cfg = self.config
        n = x.shape[0]
        k_shared, k_slices = jax.random.split(key)
        networks = [[jnp.argmax(lg, axis=-1) for lg in params["gate_logits"]]]
        boolean = estimator.discrete and not cfg.per_example_samples
        if boolean:
            samples = self._train_samples(params, k_shared, estimator, tau_f, tau_b)
            networks.append([jnp.argmax(z, axis=-1) for z in samples])
        gates = [jnp.stack(layer) for layer in zip(*networks, strict=True)]
        pred_SxB = jnp.argmax(self.packed_counts(gates, x, data), axis=-1)
        hits = jnp.sum(pred_SxB == y, axis=-1)
        metrics = {"acc": hits[0] / n}
        if boolean:
            metrics["acc_train_mode"] = hits[1] / n
            return metrics

        shared = None
        if not estimator.discrete:  # the relaxation's weights do not depend on the example
            shared = self._train_coefs(params, k_shared, estimator, tau_f, tau_b)

        def slice_hits(k, x_ExD, y_E, w_E):
            coefs = shared
            if coefs is None:
                coefs = self._train_coefs(params, k, estimator, tau_f, tau_b, x_ExD.shape[0])
            logits_ExC = self.forward(coefs, x_ExD, data, hidden_in_scan=True)
            return jnp.sum(w_E * (logits_ExC.argmax(-1) == y_E))

        hits_train = common.sliced_sums(slice_hits, k_slices, x, y, cfg.eval_batch_size)
        metrics["acc_train_mode"] = hits_train / n
        return metrics

    def param_metrics(self, params: PyTree) -> Metrics:
        counts = self.gate_counts(params)
        return {"gate_perplexity": common.perplexity(counts), "gate_hist": counts / counts.sum()}

    def figure_arrays(self, params: PyTree, data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return {"gate_hist": self.gate_histogram(params)}


def _labels(batch: Batch) -> jax.Array:
    if batch.y is None:
        raise ValueError("the dlgn task is a classifier: its data need labels (<split>_y)")
    return batch.y


def make_task(config: Config | None = None) -> DLGNTask:
    """Build the `dlgn` task from its `Config` (defaults when None)."""
    return DLGNTask(config if config is not None else Config())
