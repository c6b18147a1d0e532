"""Benchmarks of dst_jax against the alternatives a researcher would use.

Entry point: `python -m benchmarks.run --task {sbn,cae,dlgn}`; see `benchmarks/run.py` and
docs/PERFORMANCE.md. Nothing here is imported by the library.
"""
