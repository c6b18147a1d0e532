"""Straightforward PyTorch versions of the three models and of decoupled ST, for the benchmarks.

Written the way a PyTorch user would: `nn.Module`s, the estimators as the usual
"hard + (soft - soft.detach())" straight-through idiom, eager mode, and a sweep that trains one
config after another. Same shapes, same estimator, same loss, same Adam as the JAX tasks.

Estimators (DESIGN.md section 1), for logits l (categorical, last axis) or a (Bernoulli):

    decoupled_st:            forward one_hot(argmax(l/tau_f + g)),  g ~ Gumbel
                             backward J_softmax(l/tau_b) / tau_b
    decoupled_st_bernoulli:  forward 1[a/tau_f + L > 0],  L ~ Logistic
                             backward sigma'(a/tau_b) / tau_b

`hard + (soft - soft.detach())` has the value `hard` (soft - soft is exactly 0) and the gradient
of `soft`, which is the surrogate above (softmax(l/tau_b) or sigmoid(a/tau_b)).

Needs the optional `bench` extra (`pip install -e .[bench]`, PyTorch).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dst_jax.logic import GATE_COEF_16x4


# -- estimators --------------------------------------------------------------------------------
def decoupled_st(logits: torch.Tensor, tau_f: float, tau_b: float) -> torch.Tensor:
    """One-hot sample of Cat(softmax(l/tau_f)) over the last axis, gradient of softmax(l/tau_b).

    Shapes: (..., K) -> (..., K).
    """
    # Gumbel noise as torch.nn.functional.gumbel_softmax draws it: -log(Exp(1)).
    gumbel = -torch.empty_like(logits).exponential_().log()
    index = (logits.detach() / tau_f + gumbel).argmax(-1)
    hard = F.one_hot(index, logits.shape[-1]).to(logits.dtype)
    soft = torch.softmax(logits / tau_b, dim=-1)
    return hard + (soft - soft.detach())


def decoupled_st_bernoulli(a: torch.Tensor, tau_f: float, tau_b: float) -> torch.Tensor:
    """{0, 1} sample of Bernoulli(sigma(a/tau_f)), gradient of sigma(a/tau_b); elementwise."""
    u = torch.rand_like(a)
    logistic = torch.log(u) - torch.log1p(-u)
    hard = (a.detach() / tau_f + logistic > 0).to(a.dtype)
    soft = torch.sigmoid(a / tau_b)
    return hard + (soft - soft.detach())


# -- models: each has loss(x, y, tau_f, tau_b) -> scalar ---------------------------------------
def _linears(dims: Sequence[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:], strict=True))


class SBN(nn.Module):
    """784-200-200-10 MLP with Bernoulli hidden units (the `sbn` task)."""

    def __init__(self, sizes: Sequence[int] = (784, 200, 200, 10)):
        super().__init__()
        self.layers = _linears(sizes)

    def forward(self, x_BxD, tau_f, tau_b):
        h = x_BxD
        for layer in self.layers[:-1]:
            h = decoupled_st_bernoulli(layer(h), tau_f, tau_b)
        return self.layers[-1](h)

    def loss(self, x, y, tau_f, tau_b):
        return F.cross_entropy(self(x, tau_f, tau_b), y)


class CAE(nn.Module):
    """Categorical autoencoder 784-512-256-(L x C)-256-512-784 (the `cae` task).

    loss = mean over images of [sum of pixel BCE + beta * sum over latents KL(softmax || U(C))].
    """

    def __init__(
        self,
        d: int = 784,
        encoder=(512, 256),
        latents=4,
        classes=8,
        decoder=(256, 512),
        beta: float = 1.0,
    ):
        super().__init__()
        self.latents, self.classes, self.beta = latents, classes, beta
        enc = (d, *encoder, latents * classes)
        dec = (latents * classes, *decoder, d)
        self.encoder = _linears(enc)
        self.decoder = _linears(dec)

    def loss(self, x_BxD, y, tau_f, tau_b):
        h = x_BxD
        for layer in self.encoder[:-1]:
            h = torch.relu(layer(h))
        logits_BxLxC = self.encoder[-1](h).view(-1, self.latents, self.classes)
        z = decoupled_st(logits_BxLxC, tau_f, tau_b).flatten(1)
        for layer in self.decoder[:-1]:
            z = torch.relu(layer(z))
        bce = F.binary_cross_entropy_with_logits(self.decoder[-1](z), x_BxD, reduction="sum")
        logp = torch.log_softmax(logits_BxLxC, -1)
        kl = (logp.exp() * logp).sum() + logp.shape[0] * self.latents * np.log(self.classes)
        return (bce + self.beta * kl) / x_BxD.shape[0]


class LogicNet(nn.Module):
    """Logic gate network (the `dlgn` task): layers of neurons over 2 wired inputs each.

    Each layer draws one gate per neuron with decoupled ST (shared by the batch), maps the
    one-hot (N, 16) to coefficients c = z @ C (N, 4), and computes c0 + c1 a + c2 b + c3 ab with
    a, b gathered by the wiring; GroupSum over `n_classes` groups with temperature `tau`.
    `relaxation=True` uses softmax(logits) instead of a sample (difflogic's training).
    """

    def __init__(
        self,
        wirings: Sequence[np.ndarray],  # per layer (2N,): the a-inputs, then the b-inputs
        n_classes: int = 10,
        tau: float = 100.0,
        relaxation: bool = False,
    ):
        super().__init__()
        self.n_classes, self.tau, self.relaxation = n_classes, tau, relaxation
        self.logits = nn.ParameterList(nn.Parameter(torch.randn(len(w) // 2, 16)) for w in wirings)
        for i, w in enumerate(wirings):
            self.register_buffer(f"wiring_{i}", torch.as_tensor(np.asarray(w), dtype=torch.long))
        self.register_buffer("coef", torch.as_tensor(GATE_COEF_16x4))

    def layer(self, i: int, h_BxI: torch.Tensor, tau_f=1.0, tau_b=1.0) -> torch.Tensor:
        """Layer i: (B, I) -> (B, N)."""
        logits = self.logits[i]
        z = torch.softmax(logits, -1) if self.relaxation else decoupled_st(logits, tau_f, tau_b)
        c = z @ self.coef
        n = logits.shape[0]
        ab = h_BxI[:, getattr(self, f"wiring_{i}")]
        a, b = ab[:, :n], ab[:, n:]
        return c[:, 0] + c[:, 1] * a + (c[:, 2] + c[:, 3] * a) * b

    def forward(self, x_BxI, tau_f=1.0, tau_b=1.0):
        h = x_BxI.float()
        for i in range(len(self.logits)):
            h = self.layer(i, h, tau_f, tau_b)
        return h.view(h.shape[0], self.n_classes, -1).sum(-1) / self.tau

    def loss(self, x, y, tau_f, tau_b):
        return F.cross_entropy(self(x, tau_f, tau_b), y)


def make_model(task_name: str, task_config: Any, data: dict[str, np.ndarray]) -> nn.Module:
    """The PyTorch model of `task_name` with the shapes of the dst_jax task's config."""
    d = int(data["train_x"].shape[-1])
    if task_name == "sbn":
        return SBN((d, *task_config.hidden, task_config.n_classes))
    if task_name == "cae":
        c = task_config
        return CAE(d, c.encoder, c.latents, c.classes, c.decoder, c.beta)
    if task_name == "dlgn":
        from dst_jax.tasks.dlgn import layer_wiring

        wirings = [layer_wiring(data, i).reshape(-1) for i in range(task_config.layers)]
        return LogicNet(wirings, task_config.n_classes, task_config.group_sum_tau)
    raise ValueError(f"no PyTorch model for task {task_name!r}; choose sbn, cae or dlgn")


# -- the sweep ---------------------------------------------------------------------------------
def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sweep(
    task_name: str,
    task_config: Any,
    data: dict[str, np.ndarray],
    configs: Sequence[tuple[float, float, int, float]],
    steps: int,
    device: torch.device | None = None,
    warmup_steps: int = 10,
) -> dict[str, Any]:
    """Train each (tau_f, tau_b, seed, lr) config for `steps` Adam steps, one after another.

    Minibatches of `task_config.batch_size` come from a per-epoch `randperm` of the training
    set, which sits on the device. Returns {"wall_s": training time of all configs (model
    construction excluded), "per_config_s": [...], "final_loss": [...]}. A throwaway config
    runs `warmup_steps` steps first (CUDA context, cuBLAS handles, allocator).
    """
    device = device or default_device()
    x_all = torch.as_tensor(data["train_x"]).to(device)
    y_all = torch.as_tensor(data["train_y"]).long().to(device)
    n, bs = x_all.shape[0], int(task_config.batch_size)
    steps_per_epoch = n // bs

    def train(cfg, n_steps):
        tau_f, tau_b, seed, lr = cfg
        torch.manual_seed(seed)
        model = make_model(task_name, task_config, data).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sync(device)
        t0 = time.perf_counter()
        order = None
        for t in range(n_steps):
            pos = t % steps_per_epoch
            if pos == 0:
                order = torch.randperm(n, device=device)
            idx = order[pos * bs : (pos + 1) * bs]
            loss = model.loss(x_all[idx].float(), y_all[idx], tau_f, tau_b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        final = loss.item()  # synchronises, as reading the loss does in a real sweep
        return time.perf_counter() - t0, final

    if warmup_steps:
        train(configs[0], warmup_steps)
    per_config, losses = [], []
    for cfg in configs:
        seconds, final = train(cfg, steps)
        per_config.append(seconds)
        losses.append(final)
    return {"wall_s": sum(per_config), "per_config_s": per_config, "final_loss": losses}
