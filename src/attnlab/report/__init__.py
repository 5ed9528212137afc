"""Aggregate tables, statistics and figures over per-sample evaluation results.

* :mod:`attnlab.report.tables` -- accuracy / robustness / pairwise-model tables.
* :mod:`attnlab.report.figures` -- bar charts of those tables.
* :mod:`attnlab.report.cli` -- ``attnlab report tables`` and ``attnlab report figures``.
"""

from attnlab.report.tables import accuracy_tables, write_tables

__all__ = ["accuracy_tables", "write_tables"]
