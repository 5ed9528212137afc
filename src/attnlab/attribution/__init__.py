"""Head attribution (HeadIG): which attention heads matter for producing the gold answer.

* :mod:`attnlab.attribution.gates` — a scalar gate α per head on the attention output projection's input.
* :mod:`attnlab.attribution.objectives` — J = −L, the answer-token loss (autoregressive or masked diffusion).
* :mod:`attnlab.attribution.headig` — integrated gradients over the gates: diagonal and stochastic-threshold
  paths, quadratures, completeness, the Michel et al. (2019) gradient baseline, the score tables.
* :mod:`attnlab.attribution.report` — rank correlations between methods and layer × head heatmaps.
* :mod:`attnlab.attribution.cli` — ``attnlab attribution score|correlations|heatmap``.

This package's ``__init__`` imports nothing heavy (no torch), so config helpers stay fast to import.
"""
