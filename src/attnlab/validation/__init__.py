"""Causal validation of head-importance scores (research question 3).

* :mod:`attnlab.validation.pruning` -- prune the most / least / random important heads (gates α = 0) and
  measure pass@1 and answer-token loss over a grid of pruned fractions, with paired tests.
* :mod:`attnlab.validation.sparse_attention` -- an attention function registered with transformers'
  attention interface that keeps each query's top-scoring keys per head; adaptive (importance-driven) versus
  uniform keep ratios at equal total budget.
* :mod:`attnlab.validation.tables`, :mod:`attnlab.validation.figures` -- aggregate tables and figures.
* :mod:`attnlab.validation.cli` -- ``attnlab validation ...`` subcommands.

This ``__init__`` imports nothing heavy (no torch), so config helpers stay cheap to import.
"""
