"""Reference backward passes of the newest estimators, written from the published code, for the
tests (numpy, float64, one categorical row at a time, explicit K x K matrices).

Each function returns the matrix M with VJP `v -> v^T M` (M[i, j] = d surrogate_i / d l_j) for
one row of logits `l` (K,), the sampled one-hot `d` (K,) and the estimator's parameters:

- `zgr`: the published `ZGR` builds `dx = (p + (y - sg(p)) log p_x) / 2` and backpropagates
  through it: its Jacobian is `(J(p) + (y - p)(y - p)^T) / 2`, assembled here entry by entry.
- `mve`: the published `MVE` builds A, B, solves `A V = B`, forms S and returns
  `dx = S.detach() @ eta`, so its Jacobian is S; rebuilt here with loops over i, j and the
  published diagonal (with its cancellation, harmless in float64).
- `gapped_st`: `gst_mover` of the GST authors (as ReinMax's benchmarks run it: gap 1.0,
  detach=True) shifts the logits by the constant `move - move2` and takes
  `softmax(shifted / tau)`; its Jacobian is the softmax Jacobian of the shifted logits / tau.
- `reinmax_cv`: the backward of `_CategoricalReinMaxCVST` (Algomancer/Better-Straight-Through-
  Estimators), with the fresh Gumbel draw and the conditional draws passed in.
"""

from __future__ import annotations

import numpy as np


def softmax(s):
    s = np.asarray(s, np.float64)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def softmax_jacobian(p):
    k = len(p)
    return np.array([[p[i] * ((i == j) - p[j]) for j in range(k)] for i in range(k)])


def zgr(l, d):
    p = softmax(l)
    k = len(p)
    jac = softmax_jacobian(p)
    # d log p_x / d l_j = y_j - p_j; the REINFORCE part (y - p) log p_x has Jacobian
    # (y_i - p_i)(y_j - p_j) with p held constant in its first factor.
    return np.array(
        [[(jac[i, j] + (d[i] - p[i]) * (d[j] - p[j])) / 2 for j in range(k)] for i in range(k)]
    )


def mve(l, d, temp):
    p = softmax(l)
    k = len(p)
    jac = softmax_jacobian(p)
    a = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            a[i, j] = -temp * p[i] * p[j] / (1 + temp * (p[i] + p[j]))
        a[i, i] = (1 + temp * p[i]) * sum(
            p[j] / (1 + temp * (p[i] + p[j])) for j in range(k)
        ) - temp * p[i] ** 2 / (1 + 2 * temp * p[i])
    b = np.array([(1 + temp * p[i]) / (1 + 2 * temp * p[i]) * jac[i] for i in range(k)])
    v = np.linalg.solve(a, b)
    x = int(np.argmax(d))
    s = np.zeros((k, k))
    for i in range(k):
        for kk in range(k):
            numer = (1 + temp * p[i]) * v[i, kk] - temp * p[i] * v[x, kk]
            if i == x:
                numer += temp * jac[x, kk]
            s[i, kk] = numer / (1 + temp * (p[i] + p[x]))
    return s


def gapped_st(l, d, tau, gap=1.0):
    l = np.asarray(l, np.float64)
    a = int(np.argmax(l))
    x = int(np.argmax(d))
    move = np.zeros_like(l)
    move[x] = l[a] - l[x]
    move2 = np.maximum(l - l[a] + gap, 0.0)
    move2[x] = 0.0
    shifted = l + move - move2
    shifted = shifted - shifted.mean()
    return softmax_jacobian(softmax(shifted / tau)) / tau


def reinmax_cv(l, d, tau, eta, gumbel_gs, cond_gr):
    """`gumbel_gs` (K,) the fresh Gumbel draw; `cond_gr` (k, K) the conditional Gumbel-perturbed
    logits `theta_D + h_i` (with `theta_D = log((p + D)/2)`, whose log-partition is 0)."""
    p = softmax(l)
    pi_d = 0.5 * (p + d)
    theta = np.log(pi_d)
    rm = 2 * softmax_jacobian(pi_d) - 0.5 * softmax_jacobian(p)
    gs = softmax_jacobian(softmax((theta + gumbel_gs) / tau)) / tau
    gr = np.mean([softmax_jacobian(softmax(c / tau)) / tau for c in cond_gr], axis=0)
    return rm + eta * (gr - gs)
