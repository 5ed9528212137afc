"""Perturbation sensitivity (research question 4): neuron perturbation on factual relations and layer-wise Jacobians.

* :mod:`attnlab.perturbation.relations` -- the knowledge bases in ``resources/relations/``: probes
  (prompt / target pairs with the target's character span) and the ``facts`` pretraining corpus.
* :mod:`attnlab.perturbation.sites` -- where a model's channels live (residual stream, MLP neurons,
  SSM step sizes Δ) and forward hooks that read or rewrite them.
* :mod:`attnlab.perturbation.selection` -- channel statistics (|grad × activation|, variance) and top-k.
* :mod:`attnlab.perturbation.metrics` -- target / sentence perplexity and change metrics.
* :mod:`attnlab.perturbation.perturb` -- the per-model perturbation experiment.
* :mod:`attnlab.perturbation.jacobian` -- Jacobian sensitivity, spectral norm, effective rank.
* :mod:`attnlab.perturbation.tables`, :mod:`attnlab.perturbation.figures` -- aggregates and plots.

This package's ``__init__`` imports nothing heavy (the Snakefile parse imports config helpers).
"""
