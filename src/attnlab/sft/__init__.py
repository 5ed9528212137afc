"""Supervised fine-tuning (SFT): noise-augmented training sets and answer-only fine-tuning.

* :mod:`attnlab.sft.data` -- the SFT training set of a recipe: problems drawn from a base
  dataset's train split, a share of them made noisy by :func:`attnlab.data.noise.apply_noise`.
* :mod:`attnlab.sft.train` -- fine-tune one model (full or LoRA) on it: answer-only loss,
  learned EOS, resumable checkpoints, loss curves; saves a ``save_pretrained`` folder that the
  one loader (:func:`attnlab.models.loader.load_model`) reads back with the same class.
* :mod:`attnlab.sft.cli` -- ``attnlab sft data`` and ``attnlab sft train``.

This ``__init__`` imports nothing heavy (no torch), so the Snakefile parse stays fast.
"""
