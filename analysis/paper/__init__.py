"""`python -m analysis.paper` renders paper/README.md from its hand-written template.

The prose is written by hand in `paper/README.template.md`; every number in it is a
`{{placeholder}}` computed here from `results/` (or, for the notebook's own printed results
and the planning constants, from NOTEBOOK and PLANNING below), so no number is ever typed:
tests/test_paper.py fails on a literal number outside its allow-list. An unknown placeholder
is an error, and so is a placeholder whose study is missing. `--list` prints every computed
number with its source.
"""
