"""The stage registry: every stage's final targets come from its settings module, and only when it runs."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest

from attnlab.config import validate_config
from attnlab.study.schema import load_yaml
from attnlab.paths import REPO_ROOT
from attnlab.stages import STAGES, stage_targets


@pytest.fixture(scope="module")
def ci_config() -> dict:
    return load_yaml(REPO_ROOT / "configs" / "ci.yaml")


def _targets(config: dict, **changes) -> list[str]:
    changed = copy.deepcopy(config)
    changed.update(changes)
    return stage_targets(validate_config(changed, base_dir=REPO_ROOT))


def test_every_stage_module_declares_its_checks_and_targets() -> None:
    names = [name for name, _ in STAGES]
    assert len(names) == len(set(names))
    for _, module in STAGES:
        settings = importlib.import_module(module)
        assert callable(settings.targets) and callable(settings.config_errors), module


def test_the_core_names_no_stage() -> None:
    """attnlab.study imports no stage package: stages depend on the core, never the other way round."""
    import ast

    stage_packages = {module.split(".")[1] for _, module in STAGES}
    core = Path(importlib.import_module("attnlab.study").__file__).parent
    for source in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attnlab."):
                assert node.module.split(".")[1] not in stage_packages | {"config", "stages"}, (source.name, node.module)


def test_a_stage_check_runs_through_the_registry(ci_config: dict) -> None:
    """A stage's own check reaches validate_config without being listed anywhere else (here: the needle stage)."""
    from attnlab.study.schema import ConfigError

    bad = copy.deepcopy(ci_config)
    bad["needle"] = {**bad["needle"], "models": ["mamba2"]}
    with pytest.raises(ConfigError, match="config key 'needle.models': 'mamba2' is a mamba2 model"):
        validate_config(bad, base_dir=REPO_ROOT)


def test_a_stage_that_does_not_run_adds_no_target(ci_config: dict) -> None:
    full = _targets(ci_config)
    assert len(full) == len(set(full))
    assert {"results/tables/sft.parquet", "results/tables/attention_ratios.parquet", "results/tables/needle_depth.md",
            "results/tables/attribution_correlations.parquet", "results/tables/pruning.parquet",
            "results/tables/perturbation_comparison.parquet"} <= set(full)  # fmt: skip
    assert "results/tables/seeds.md" not in full  # no evaluated training-seed replicates
    seeds = {"models": ["llama", "diffllama"], "seeds": [1, 2], "evaluate": True}
    assert "results/tables/seeds.md" in _targets(ci_config, pretrain={**ci_config["pretrain"], "replicates": seeds})
    no_sft = _targets(ci_config, sft=None)
    assert not any("sft" in t for t in no_sft)
    no_attention = _targets(ci_config, attention=None)
    assert not any("attention_ratios" in t or "figures/attention/" in t for t in no_attention)
    assert "results/tables/sft.parquet" in no_attention
    without = {k: v for k, v in ci_config.items() if k not in ("perturbation", "needle")}
    bare = stage_targets(validate_config({**without, "pretrain": {**ci_config["pretrain"], "extra_corpora": []}},
                                         base_dir=REPO_ROOT))  # fmt: skip
    assert not any("perturbation" in t or "jacobian" in t or "needle" in t for t in bare)
    only_llama = _targets(ci_config, select_models="llama", validation={**ci_config["validation"], "models": ["llama"]})
    assert "results/tables/robustness_difference.parquet" not in only_llama  # no differential model to pair with
    assert "results/tables/robustness_difference.parquet" in full


def test_every_target_is_built_by_the_ci_study(ci_study) -> None:
    workdir, _, config = ci_study
    for target in stage_targets(validate_config(config, base_dir=workdir)):
        assert (workdir / target).is_file(), target
