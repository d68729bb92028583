"""Scripts that print p2d's measured figures (docs/results.md) and rebuild its shipped weights.

Not part of the installed package: run them from the repository root as `python -m benchmarks.NAME`
(README.md here lists them). They import each other as `benchmarks.NAME`; nothing in `p2d/` imports them.
"""
