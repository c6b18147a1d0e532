"""Test set-up shared by all test files.

Four host devices are forced before JAX initialises, so sharding across devices is exercised on
a plain CPU machine; tests that want one device pass `devices=jax.devices()[:1]`. The tests'
programs are tiny and compiled once or twice each, so XLA's backend optimisation is turned off:
it halves the suite's time (compilation dominates it) and changes no result beyond float
tolerance.
"""

import os

TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=4 {TEST_XLA_FLAGS}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from dst_jax import compilation_cache  # noqa: E402

# The suite compiles the same small programs on every run: keep them in the user's persistent
# cache (DST_JAX_COMPILATION_CACHE=0 turns it off).
compilation_cache.enable()

# The development and CI machines have the real data sets beside the checkout; a user's machine
# may not, and then the tests that need them say so when they skip.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> str:
    path = os.environ.get("DST_DATA_DIR") or str(SHARED_DATA)
    if not Path(path, "mnist").is_dir():
        pytest.skip(
            f"real data sets not found at {path}: set DST_DATA_DIR to a folder holding "
            "mnist/, fashion_mnist/ and cifar10/ (see README, 'Getting the data')"
        )
    return path


@pytest.fixture
def x64():
    """float64 for the duration of one test (analytic-Jacobian checks need its precision)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def count_calls(monkeypatch):
    """`count_calls(module, name)` wraps `module.name` for the test and returns the list of the
    argument tuples of its calls (how tests see that a cache spared a decode or a hash)."""

    def count(module, name):
        calls = []
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
        return calls

    return count
