"""Smoke tests of the benchmark harness (benchmarks/): structure, not timings.

The --quick runs use the smallest settings (one grid size, 2 steps, 1 sequential config); they
check that every comparison produces a row with positive throughput and that the JSON and the
printed table hold what docs/PERFORMANCE.md reads from them. The PyTorch models are checked
against the JAX tasks where torch is installed (the optional `bench` extra).
"""

import json
import math
import tarfile

import jax
import numpy as np
import pytest

from benchmarks import common, floor, logic_bench
from benchmarks import run as bench_run
from benchmarks.common import GRID, LOOP, TORCH
from dst_jax import estimators
from dst_jax.tasks import dlgn
from dst_jax.tasks.base import Batch, Hparams, fixed_arrays

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch (the bench extra) not installed")


def _check_ok_row(row, batch_size):
    assert row["status"] == "ok", row
    assert row["wall_s"] > 0 and row["model_steps_per_s"] > 0
    assert row["examples_per_s"] == pytest.approx(row["model_steps_per_s"] * batch_size)
    assert row["model_steps_per_s"] == pytest.approx(row["configs"] * row["steps"] / row["wall_s"])
    assert row["us_per_model_step"] == pytest.approx(1e6 / row["model_steps_per_s"])
    assert 0 < row["floor_fraction"] and math.isfinite(row["floor_fraction"])


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sbn", "dlgn"])
def test_quick_run_writes_table_and_json(task, tmp_path, capsys):
    path = tmp_path / "bench.json"
    # One torch thread: on a busy 2-core machine, two OpenMP threads wait on each other.
    argv = (
        f"--task {task} --quick --configs 3 --steps 2 --loop-configs 1 --kernel-repeats 1 "
        f"--torch-threads 1 --json {path}"
    ).split()
    if task == "dlgn":
        argv.append("--no-torch")  # the PyTorch paths are covered by the sbn run and below
    assert bench_run.main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(path.read_text())

    assert result["task"] == task and result["settings"]["quick"] is True
    assert result["command"].endswith(" ".join(argv))
    assert result["environment"]["jax"] == jax.__version__
    batch = result["settings"]["batch_size"]
    rows = {(r["method"], r["configs"]): r for r in result["training"]}
    assert set(rows) == {(GRID, 3), (LOOP, 3), (TORCH, 3)}
    for method in (GRID, LOOP):
        _check_ok_row(rows[method, 3], batch)
        assert rows[method, 3]["compile_s"] > 0
    # The loop was measured on 1 config and scaled to 3.
    assert rows[LOOP, 3]["measured_configs"] == 1 and rows[LOOP, 3]["extrapolated"]
    assert not rows[GRID, 3]["extrapolated"]
    torch_row = rows[TORCH, 3]
    if task == "dlgn":
        assert torch_row["status"].startswith("skipped")
    elif HAVE_TORCH:
        _check_ok_row(torch_row, batch)
        assert torch_row["compile_s"] is None
    else:
        assert "not installed" in torch_row["status"]

    (speedup,) = result["speedups"]
    assert speedup["configs"] == 3
    assert speedup["vs_loop"] == pytest.approx(
        rows[GRID, 3]["model_steps_per_s"] / rows[LOOP, 3]["model_steps_per_s"]
    )

    fl = result["floor"]
    assert fl["matmul_flops_per_s"] > 0 and fl["copy_bytes_per_s"] > 0
    assert fl["bound"] in ("arithmetic", "memory")
    assert fl["floor_s_per_model_step"] == pytest.approx(
        max(fl["matmul_s_per_model_step"], fl["memory_s_per_model_step"])
    )
    for method in (GRID, LOOP):
        assert rows[method, 3]["floor_fraction"] == pytest.approx(
            fl["floor_s_per_model_step"] * rows[method, 3]["model_steps_per_s"]
        )

    assert GRID in printed and LOOP in printed and "floor per model-step" in printed
    if task == "dlgn":
        kernels = result["kernels"]
        impls = {k["implementation"] for k in kernels}
        assert impls == {"dst_jax, decoupled_st", "dst_jax, relaxation"}
        assert len(kernels) == 6
        for k in kernels:
            assert k["status"] == "ok" and k["ms_per_call"] > 0
            assert k["examples_per_s"] == pytest.approx(batch / (k["ms_per_call"] / 1e3))
        assert "network 2x1000 fwd+bwd" in printed


def test_work_per_model_step_from_the_shapes():
    setup = common.make_setup("sbn", quick=True)
    work = floor.work_per_model_step(setup)
    b = 100
    assert work["params"] == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10
    # forward + weight gradients + input gradients of all layers but the first
    macs = 784 * 200 + 200 * 200 + 200 * 10
    assert work["matmul_flops"] == 2 * b * macs + 2 * b * macs + 2 * b * (macs - 784 * 200)
    assert work["min_bytes"] == 24 * work["params"] + b * (784 * 4 + 4)

    dl = floor.work_per_model_step(common.make_setup("dlgn", quick=True))
    assert dl["params"] == 2 * 1000 * 16 and dl["matmul_flops"] == 0
    assert dl["min_bytes"] == 24 * dl["params"] + b * (1536 * 1 + 4)  # uint8 inputs


def test_full_size_setups_have_the_protocol_shapes():
    """The GPU session runs these shapes; build them here on a few images."""
    sbn = common.make_setup("sbn", n_train=200)
    assert sbn.data["train_x"].shape == (200, 784) and sbn.task.config.hidden == (200, 200)
    assert floor.work_per_model_step(sbn)["params"] == 199_210
    dl = common.make_setup("dlgn", n_train=200)
    cfg = dl.task.config
    assert (cfg.layers, cfg.width, dl.in_dim, dl.batch_size) == (4, 12_000, 9_216, 100)
    assert dl.data["train_x"].dtype == np.uint8 and set(np.unique(dl.data["train_x"])) == {0, 1}
    wiring = [dlgn.layer_wiring(dl.data, i) for i in range(cfg.layers)]
    assert [w.shape for w in wiring] == [(2, 12_000)] * 4
    assert wiring[0].max() < 9_216 and all(w.max() < 12_000 for w in wiring[1:])
    assert floor.work_per_model_step(dl)["params"] == 4 * 12_000 * 16


def test_floor_names_the_larger_bound():
    setup = common.make_setup("sbn", quick=True)
    slow_memory = {
        "matmul_n": 1,
        "matmul_flops_per_s": 1e15,
        "copy_bytes": 1,
        "copy_bytes_per_s": 1e9,
    }
    fl = floor.floor(setup, slow_memory)
    assert fl["bound"] == "memory"
    assert fl["floor_s_per_model_step"] == pytest.approx(fl["min_bytes"] / 1e9)
    fl = floor.floor(setup, {**slow_memory, "matmul_flops_per_s": 1e9, "copy_bytes_per_s": 1e15})
    assert fl["bound"] == "arithmetic"
    assert fl["floor_model_steps_per_s"] == pytest.approx(1e9 / fl["matmul_flops"])


def test_grid_of_configs_walks_the_temperature_grid():
    setup = common.make_setup("sbn", quick=True)
    runs = common.make_runs(setup, 205)
    assert (runs[0].tau_f, runs[0].tau_b, runs[0].seed) == (0.1, 0.1, 0)
    assert (runs[13].tau_f, runs[13].tau_b) == (0.5, 0.2)
    assert runs[99].seed == 0 and runs[100].seed == 1 and runs[204].seed == 2
    assert len({(r.tau_f, r.tau_b, r.seed) for r in runs}) == 205
    assert all(r.estimator == "decoupled_st" and r.lr == 1e-3 for r in runs)


def test_bad_input_is_refused_with_a_clear_message(capsys):
    with pytest.raises(ValueError, match="unknown task 'mlp'"):
        common.make_setup("mlp")
    with pytest.raises(ValueError, match="at least 1 config"):
        common.make_runs(common.make_setup("sbn", quick=True), 0)
    for argv in (["--task", "sbn", "--configs", "0,4"], ["--task", "sbn", "--steps", "x"]):
        with pytest.raises(SystemExit):
            bench_run.main(argv)
        assert "--" in capsys.readouterr().err


def test_difflogic_sdist_is_unpacked_to_its_package_folder(tmp_path):
    pkg = tmp_path / "src" / "difflogic-9.9" / "difflogic"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    sdist = tmp_path / "difflogic-9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(pkg.parent, arcname="difflogic-9.9")
    folder = logic_bench._source_dir(str(sdist))
    assert (tmp_path / folder / "difflogic" / "__init__.py").is_file()
    assert logic_bench._source_dir(str(tmp_path / "src")).endswith("difflogic-9.9")
    with pytest.raises(ValueError, match="neither a folder nor"):
        logic_bench._source_dir(str(tmp_path / "missing.zip"))


# -- the PyTorch models are the same models --------------------------------------------------
@pytest.fixture
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@needs_torch
def test_torch_estimators_sample_and_differentiate_like_decoupled_st():
    import torch

    from benchmarks import torch_models

    torch.manual_seed(0)
    logits = torch.tensor([[1.0, -0.5, 0.3, 2.0]], requires_grad=True)
    tau_f, tau_b = 0.5, 2.0
    z = torch_models.decoupled_st(logits.expand(20000, 4), tau_f, tau_b)
    assert torch.all(z.sum(-1) == 1) and set(z.unique().tolist()) <= {0.0, 1.0}
    freq = z.detach().mean(0).numpy()
    np.testing.assert_allclose(
        freq, torch.softmax(logits[0] / tau_f, -1).detach().numpy(), atol=0.015
    )
    v = torch.tensor([0.3, -1.0, 2.0, 0.5])
    (g,) = torch.autograd.grad((torch_models.decoupled_st(logits, tau_f, tau_b) * v).sum(), logits)
    p = torch.softmax(logits[0].detach() / tau_b, -1)
    expected = (torch.diag(p) - torch.outer(p, p)) @ v / tau_b
    np.testing.assert_allclose(g[0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)

    a = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    samples = torch_models.decoupled_st_bernoulli(a.expand(20000, 3), tau_f, tau_b)
    np.testing.assert_allclose(
        samples.detach().mean(0).numpy(), torch.sigmoid(a / tau_f).detach().numpy(), atol=0.015
    )
    (ga,) = torch.autograd.grad(torch_models.decoupled_st_bernoulli(a, tau_f, tau_b).sum(), a)
    s = torch.sigmoid(a.detach() / tau_b)
    np.testing.assert_allclose(ga.numpy(), (s * (1 - s) / tau_b).numpy(), rtol=1e-5)


def _to_torch(w):
    import torch

    return torch.as_tensor(np.array(w))  # a writable copy


@needs_torch
def test_torch_models_compute_the_jax_tasks_losses(one_torch_thread):
    """Same weights, deterministic codes (tau_f tiny makes the sample the mode): same loss."""
    import torch

    from benchmarks import torch_models
    from dst_jax.tasks import cae as cae_lib

    tiny = 1e-6  # forward temperature: the sample is the argmax / 1[a > 0]
    for name in ("sbn", "cae"):
        setup = common.make_setup(name, quick=True)
        params = setup.task.init_params(jax.random.PRNGKey(0), setup.data)
        x = setup.data["train_x"][:8]
        y = setup.data["train_y"][:8]
        model = torch_models.make_model(name, setup.task.config, setup.data)
        if name == "sbn":
            layers, dense = model.layers, params
        else:
            layers = [*model.encoder, *model.decoder]
            dense = [*params["encoder"], *params["decoder"]]
        with torch.no_grad():
            for lin, p in zip(layers, dense, strict=True):
                lin.weight.copy_(_to_torch(p["w"]).reshape(lin.in_features, -1).T)
                lin.bias.copy_(_to_torch(p["b"]).reshape(-1))
        got = model.loss(torch.as_tensor(x), torch.as_tensor(y).long(), tiny, 1.0).item()
        if name == "sbn":
            hp = Hparams(estimators.REGISTRY["decoupled_st"], 1.0, 1.0)
            logits = setup.task.forward(params, None, x, hp)
            want = float(-jax.nn.log_softmax(logits)[np.arange(8), y].mean())
        else:
            bce, kl, _ = cae_lib.forward(params, x, cae_lib._argmax_codes)
            want = float((bce + setup.task.config.beta * kl).mean())
        assert got == pytest.approx(want, rel=2e-4), name

    setup = common.make_setup("dlgn", quick=True)
    cfg, data = setup.task.config, setup.data
    params = setup.task.init_params(jax.random.PRNGKey(0), data)
    x, y = data["train_x"][:8], data["train_y"][:8]
    net = torch_models.LogicNet(
        [dlgn.layer_wiring(data, i).reshape(-1) for i in range(cfg.layers)],
        cfg.n_classes,
        cfg.group_sum_tau,
        relaxation=True,
    )
    with torch.no_grad():
        for p_t, p_j in zip(net.logits, params["gate_logits"], strict=True):
            p_t.copy_(_to_torch(p_j))
    got = net.loss(torch.as_tensor(x), torch.as_tensor(y).long(), 1.0, 1.0).item()
    want, _ = setup.task.loss(
        params,
        jax.random.PRNGKey(1),
        Batch(x, y, fixed_arrays(data)),
        Hparams(estimators.REGISTRY["softmax_relaxation"], 1.0, 1.0),
    )
    assert got == pytest.approx(float(want), rel=1e-4)


@needs_torch
def test_torch_sweep_trains_every_config(one_torch_thread):
    from benchmarks import torch_models

    setup = common.make_setup("sbn", quick=True)
    configs = [(0.5, 1.0, 0, 1e-3), (1.0, 0.5, 1, 1e-3)]
    out = torch_models.sweep(
        "sbn", setup.task.config, setup.data, configs, steps=12, warmup_steps=1
    )
    assert len(out["per_config_s"]) == 2 and all(t > 0 for t in out["per_config_s"])
    assert out["wall_s"] == pytest.approx(sum(out["per_config_s"]))
    assert all(math.isfinite(v) and v > 0 for v in out["final_loss"])
