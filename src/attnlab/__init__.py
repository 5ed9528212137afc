"""attnlab: how attention mechanisms handle noise.

The library behind the Snakemake workflow: data generation with span-labelled
noise, one model loader for hub and scratch models, batched evaluation,
statistics and figures. Every stage is a pure-ish function that can be called
from Python, from the ``attnlab`` CLI, or from a Snakemake rule.
"""

__version__ = "0.1.0"
