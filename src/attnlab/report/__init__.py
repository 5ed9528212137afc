"""Aggregate tables, statistics and figures over per-sample evaluation results.

* :mod:`attnlab.report.tables` -- accuracy / robustness / pairwise-model tables.
* :mod:`attnlab.report.figures` -- bar charts of those tables.
* :mod:`attnlab.report.cli` -- ``attnlab report tables`` and ``attnlab report figures``.
* :mod:`attnlab.report.settings` -- the report stage's config checks (imported when a config is validated,
  so this package imports nothing heavy on its own).
"""
