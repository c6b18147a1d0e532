"""What XLA makes of the training loop: no avoidable copies (benchmarks/copies.py), and the
vmap-overhead benchmark runs (benchmarks/vmap_overhead.py). Counts, never timings."""

from pathlib import Path

import pytest

from benchmarks import compare_checkouts, copies, vmap_overhead

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


@pytest.mark.parametrize("task", ["sbn", "cae", "dlgn"])
def test_training_loop_copies_no_float_buffers(task):
    """Parameters, Adam moments and activations are updated in place: a select of the optimiser
    state (the divergence guard, before) and a lax.scan over dlgn's layers both made XLA copy
    them every step."""
    r = copies.per_step(task, n_configs=1, steps=2, quick=True)
    assert r["float_mb"] * 1e6 <= 64, r  # a few scalars at most (e.g. the step's loss)
    # The count sees inside loops: JAX's CPU threefry is a rolled loop that copies its state.
    assert r["int_mb"] > 0.0, r


def test_vmap_overhead_prints_one_row_per_task(capsys):
    assert vmap_overhead.main(["--tasks", "sbn", "--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[0] == "task" and out[2].split()[0] == "sbn"
    plain, vmapped = float(out[2].split()[1]), float(out[2].split()[2])
    assert plain >= 0 and vmapped >= 0


def test_compare_checkouts_times_a_checkout_against_itself(capsys):
    root = Path(__file__).resolve().parents[1]
    argv = ["--baseline", str(root), "--tasks", "sbn", "--configs", "2", "--repeats", "1"]
    assert compare_checkouts.main([*argv, "--quick"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    assert [r[:2] for r in rows] == [["sbn", "plain"], ["sbn", "vmap(2)"]]
    assert all(float(r[2]) >= 0 and float(r[3]) >= 0 for r in rows)
