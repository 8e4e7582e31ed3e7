"""Benchmarks (`make bench`, `python -m bench [--quick]`): they measure and report, never test.

Results go to docs/benchmarks.md (generated section) and bench/results/ (raw JSON, not committed).
"""
