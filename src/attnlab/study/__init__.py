"""The stage-agnostic core of a study: its config and the models it names.

* :mod:`attnlab.study.schema` — loading a config file, the schema (main file plus one fragment per stage), schema
  errors that name the key, defaults (only from the schema) and the plugin modules a config lists;
* :mod:`attnlab.study.selections` — presets, selections of models / datasets / variants, the models a study
  evaluates and its seed groups;
* :mod:`attnlab.study.models` — one model reference: a name of the study (configured model, training-seed
  replicate ``m-seedN`` or SFT variant ``m+sft-r``) resolved to its configured entry, training seed, recipe,
  source, location and loader flags;
* :mod:`attnlab.study.hubfiles` — what a hub entry's cached ``config.json`` and tokenizer say before a job runs.

The core names no stage: each stage's checks, model lists, job specs and targets live in its own
``attnlab.<stage>.settings`` module, found through :mod:`attnlab.stages`; :func:`attnlab.config.validate_config`
puts the two together.
"""
