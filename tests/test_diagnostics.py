"""The diagnostics of the compiled training step (benchmarks/diagnostics/) and the checkout
comparison: their parsing and their rows, never timings."""

from pathlib import Path

import pytest

from benchmarks import compare_checkouts
from benchmarks.diagnostics import copies, vmap_overhead

# A module in the shape of XLA's optimised HLO text: the entry copies 4 floats, runs a loop of
# 3 trips whose body copies 2 x 8 bytes (float) + 4 x 2 bytes (int), then a conditional whose
# larger branch copies 16 int bytes; the fusion's inner copy is not memory traffic.
HLO = """HloModule m, is_scheduled=true

%fused (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  ROOT %c = f32[4]{0} copy(%p)
}

%body (t: (s32[], f32[2])) -> (s32[], f32[2]) {
  %a = f32[2]{0} copy(%x)
  %b = f64[1]{0} copy(%y)
  %c = u16[2,2]{1,0} copy(%z)
}

%small (q: s32[]) -> s32[] {
  %d = s32[1]{0} copy(%q)
}

%large (q: s32[]) -> s32[] {
  %e = u32[2,2]{1,0} copy(%q)
}

ENTRY %main (x: f32[4]) -> f32[4] {
  %x = f32[4]{0} parameter(0)
  %f = f32[4]{0} copy(%x)
  %g = f32[4]{0} fusion(%f), kind=kLoop, calls=%fused
  %w = (s32[], f32[2]) while(%t), condition=%cond, body=%body, backend_config={TRIPS}
  %k = s32[] conditional(%i, %q, %q), branch_computations={%small, %large}
}
""".replace("{TRIPS}", '{"known_trip_count":{"n":"3"}}')


def test_copied_bytes_follows_loops_branches_and_types():
    assert copies.copied_bytes(HLO) == {"float": 16 + 3 * (8 + 8), "int": 3 * 8 + 16}


def test_a_loop_of_unknown_length_is_refused():
    with pytest.raises(ValueError, match="known trip count"):
        copies.copied_bytes(HLO.replace('"known_trip_count":{"n":"3"}', '"x":1'))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sbn", "cae", "dlgn"])
def test_training_loop_copies_no_float_buffers(task):
    """Parameters, Adam moments and activations are updated in place: the training state is
    donated and no select of the whole optimiser state sits in the step."""
    r = copies.per_step(task, n_configs=1, steps=2, quick=True)
    assert r["float_mb"] * 1e6 <= 64, r  # a few scalars at most (e.g. the step's loss)


@pytest.mark.slow
def test_vmap_overhead_measures_both_programs():
    r = vmap_overhead.measure("sbn", repeats=1, quick=True)
    assert r["task"] == "sbn" and r["plain_ms"] > 0 and r["vmap1_ms"] > 0


@pytest.mark.slow
def test_compare_checkouts_times_a_checkout_against_itself():
    root = Path(__file__).resolve().parents[1]
    baseline = compare_checkouts.import_baseline(root)
    rows = compare_checkouts.compare(baseline, "sbn", n_configs=2, repeats=1, quick=True)
    assert [r["variant"] for r in rows] == ["plain", "vmap(2)"]
    assert all(r["baseline_ms"] > 0 and r["this_ms"] > 0 for r in rows)
