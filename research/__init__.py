"""One-off research: label rounds and trials of ideas that were not kept (README.md here says what each
found). Run from the repository root as `python -m research.NAME`; nothing in `p2d/` imports them."""
