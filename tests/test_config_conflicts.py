"""Conflicts the config alone decides are refused when it is read, naming the key and what would happen; selections
narrow every stage alike; the presets' item counts add up for every stage."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from attnlab.attention.settings import measured_models
from attnlab.attribution.settings import attribution_models
from attnlab.config import validate_config
from attnlab.models.settings import diffusion_init_model
from attnlab.needle.settings import needle_models
from attnlab.perturbation.settings import perturbed_models
from attnlab.sft.settings import fine_tuned_models
from attnlab.stages import targets_by_stage
from attnlab.study.items import item_notes, items_per_variant, validation_split
from attnlab.study.schema import ConfigError, load_yaml
from attnlab.study.selections import PRESET_SAMPLES, as_name_list, study_models
from attnlab.validation.settings import validation_models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_config() -> dict:
    """config.yaml with the preset in charge of the item counts (its own max_samples is checked in test_config)."""
    return {**load_yaml(REPO / "config.yaml"), "max_samples": None}


def edited(config: dict, edit) -> dict:
    config = copy.deepcopy(config)
    edit(config)
    return config


def rejected(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, base_dir=REPO)
    return str(info.value)


# --- selections narrow every stage alike -------------------------------------------------------------------------


def stage_lists(study: dict) -> dict[str, list[str]]:
    return {
        "models": study_models(study),
        "sft": fine_tuned_models(study),
        "attention": measured_models(study),
        "needle": list(needle_models(study)),
        "attribution": attribution_models(study),
        "validation": validation_models(study),
        "perturbation": perturbed_models(study),
    }


@pytest.mark.parametrize("selection", ["llama", "diffllama", "mdlm", "gpt2", "mamba2", "llama,gpt2"])
def test_a_selection_drops_a_deselected_model_from_every_stage(default_config: dict, selection: str) -> None:
    everything = stage_lists(validate_config(default_config, base_dir=REPO))
    study = validate_config({**default_config, "select_models": selection}, base_dir=REPO)
    kept = set(as_name_list(selection))
    for stage, models in stage_lists(study).items():
        # each stage keeps exactly its own models whose configured base is selected, in its own order
        expected = [m for m in everything[stage] if m.split("+sft-")[0].split("-seed")[0] in kept]
        assert models == expected, (stage, models, expected)
    targets = targets_by_stage(study)
    for stage in ("sft", "attention", "needle", "validation", "perturbation"):
        assert bool(targets[stage]) == bool(stage_lists(study)[stage]), stage


def test_validated_models_stay_attributed_under_any_selection(default_config: dict) -> None:
    study = validate_config({**default_config, "select_models": "diffllama"}, base_dir=REPO)
    assert validation_models(study) == ["diffllama", "diffllama+sft-noisy"]
    assert set(validation_models(study)) <= set(attribution_models(study))
    # a validated model the attribution section leaves out is still refused, selection or not
    config = edited(default_config, lambda c: c["attribution"].update(models=["diffllama"]))
    for selection in ([], "diffllama"):
        assert "'validation.models': 'llama' is not attributed" in rejected({**config, "select_models": selection})


# --- presets: the item counts of every stage ----------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESET_SAMPLES))
def test_every_preset_splits_the_test_items_between_the_stages(default_config: dict, preset: str) -> None:
    study = validate_config({**default_config, "preset": preset}, base_dir=REPO)
    total = PRESET_SAMPLES[preset] or default_config["datasets"]["synthetic"]["test_size"]
    assert items_per_variant(study, "synthetic")[0] == total
    split = validation_split(study, "synthetic")
    attributed = min(default_config["attribution"]["items"], total)
    held_out = total - attributed
    assert split == {
        "test": total, "attributed": attributed, "held_out": held_out,
        "pass_items": min(default_config["validation"]["pass_items"], held_out),
        "loss_items": min(default_config["validation"]["loss_items"], held_out),
    }  # fmt: skip
    assert split["held_out"] >= 1 and split["pass_items"] >= 1 and split["loss_items"] >= 1
    notes = item_notes(study)
    # a count above what the files hold is reported with the count each stage uses instead
    attention_items = default_config["attention"]["items"]
    assert any(f"attention stage measures 20 (attention.items {attention_items})" in n for n in notes) == (preset == "quick")
    assert any("pass@1 on 4 (validation.pass_items 32)" in n for n in notes) == (preset == "quick")
    assert notes == [] or preset == "quick"


def test_max_samples_overrides_the_preset_and_names_itself(default_config: dict) -> None:
    study = validate_config({**default_config, "preset": "quick", "max_samples": 50}, base_dir=REPO)
    assert items_per_variant(study, "synthetic") == (50, "max_samples")
    small = validate_config(edited(default_config, lambda c: c["datasets"]["synthetic"].update(test_size=30)), base_dir=REPO)
    assert items_per_variant(small, "synthetic") == (30, "datasets.synthetic.test_size")


# --- each class of conflict, refused with its key -----------------------------------------------------------------


def test_validation_that_measures_no_item(default_config: dict) -> None:
    message = rejected(edited(default_config, lambda c: c["validation"].update(pass_items=0, loss_items=0)))
    assert "config key 'validation.loss_items': 0 with validation.pass_items 0 too measures no item" in message
    validate_config(edited(default_config, lambda c: c["validation"].update(pass_items=0)), base_dir=REPO)  # loss only


def test_attribution_taking_every_test_item(default_config: dict) -> None:
    message = rejected(edited(default_config, lambda c: c["attribution"].update(items=200)))
    assert "config key 'attribution.items': 200 attributed items take all 200 test items of dataset 'synthetic' (preset standard)" in message
    assert "set max_samples above 200" in message
    message = rejected({**default_config, "max_samples": 16})
    assert "take all 16 test items" in message and "(max_samples)" in message and "raise max_samples above 16" in message
    # without the validation stage nothing needs the rest
    validate_config({**default_config, "max_samples": 16, "validation": None}, base_dir=REPO)


def test_sft_samples_above_the_train_split(default_config: dict) -> None:
    message = rejected(edited(default_config, lambda c: c["sft"]["recipes"]["noisy"].update(samples=20001)))
    assert "config key 'sft.recipes.noisy.samples': 20001 problems exceed the 20000 of the train split" in message
    assert "(datasets.synthetic.train_size)" in message
    small = edited(default_config, lambda c: c["datasets"]["synthetic"].update(train_size=150))
    small["sft"]["recipes"]["noisy"]["samples"] = None  # the preset's count
    message = rejected({**small, "preset": "quick"})
    assert "config key 'sft.recipes.noisy.samples': null (preset quick: 200) problems exceed the 150" in message
    assert validate_config({**small, "preset": "full"}, base_dir=REPO)  # full = the whole split


def test_jacobian_with_one_text(default_config: dict) -> None:
    message = rejected(edited(default_config, lambda c: c["perturbation"]["jacobian"].update(num_texts=1)))
    assert "config key 'perturbation.jacobian.num_texts': 1 text; the Jacobian table's spread and interval over texts need at least 2" in message


def test_perturbation_sites_no_listed_model_has(default_config: dict) -> None:
    message = rejected(edited(default_config, lambda c: c["perturbation"].update(models=["gpt2"], sites=["residual", "delta"])))
    assert "config key 'perturbation.sites': no model of perturbation.models ['gpt2'] (gpt2) has site 'delta'" in message
    message = rejected(edited(default_config, lambda c: c["perturbation"].update(models=["mamba2"], sites=["mlp"])))
    assert "has site 'mlp'" in message
    validate_config(edited(default_config, lambda c: c["perturbation"].update(sites=["mlp", "delta"])), base_dir=REPO)


@pytest.mark.parametrize(
    ("corpus", "expected"),
    [  # every episode of 5 needles is too long: the bound alone decides
        ({"max_chars": 200, "chars_per_needle": 0}, "too small for 5 needles and a question (every episode needs at least"),
        # most 6-needle episodes fit, episode 210 of the seeded draws does not: the draws are replayed
        ({"max_chars": 360, "chars_per_needle": 0}, "too small for 6 needles and a question (episode 210 needs 361 characters)"),
    ],
)  # fmt: skip
def test_a_needle_corpus_too_small_for_its_needles(default_config: dict, corpus: dict, expected: str) -> None:
    message = rejected(edited(default_config, lambda c: c["needle"]["corpus"].update(corpus)))
    assert "config key 'needle.corpus.max_chars': needle.corpus.max_chars=" in message and expected in message
    assert "the needle corpus job would fail" in message


def test_the_needle_corpus_check_agrees_with_the_corpus_job(default_config: dict) -> None:
    from attnlab.needle.items import corpus_documents, corpus_shortfall
    from attnlab.needle.resources import load_needle_resources

    resources = load_needle_resources()
    spec = {"size": 400, "n_needles": [1, 2, 3, 4, 5, 6], "min_chars": 150, "number_digits": 7, "seed": 1234}
    for max_chars, per_needle in ((380, 45), (380, 0), (300, 20), (200, 0)):
        problem = corpus_shortfall(resources, resources.filler, max_chars=max_chars, chars_per_needle=per_needle, **spec)
        try:
            corpus_documents(resources, resources.filler, max_chars=max_chars, chars_per_needle=per_needle, **spec)
            failed = None
        except ValueError as err:
            failed = str(err)
        assert (problem is None) == (failed is None), (max_chars, per_needle, problem, failed)


def test_a_hub_entry_naming_a_missing_local_folder(default_config: dict, tmp_path: Path) -> None:
    missing = edited(default_config, lambda c: c["models"].update(local={"source": "hub", "id": "./models/not-there"}))
    message = rejected(missing)
    assert "config key 'models.local.id': './models/not-there' is a local path" in message
    assert "but no such folder exists (relative to" in message
    (tmp_path / "models" / "there").mkdir(parents=True)
    present = edited(default_config, lambda c: c["models"].update(local={"source": "hub", "id": str(tmp_path / "models" / "there")}))
    validate_config(present, base_dir=REPO)


# --- no silent surprises ------------------------------------------------------------------------------------------


def test_replicates_of_an_adapted_mdlm_adapt_from_their_own_seed(default_config: dict) -> None:
    both = edited(default_config, lambda c: c["pretrain"]["replicates"].update(models=["llama", "mdlm"]))
    study = validate_config(both, base_dir=REPO)
    assert [diffusion_init_model(study, m) for m in ("mdlm", "mdlm-seed1", "mdlm-seed2", "llama-seed1")] == [
        "llama", "llama-seed1", "llama-seed2", None
    ]  # fmt: skip
    alone = edited(default_config, lambda c: c["pretrain"]["replicates"].update(models=["diffllama", "mdlm"]))
    message = rejected(alone)
    assert "config key 'pretrain.replicates.models': 'mdlm' is adapted from 'llama' (models.mdlm.init.from)" in message
    assert "list 'llama' there too" in message


@pytest.mark.parametrize("key", ["models", "seeds"])
def test_an_empty_replicate_list_is_refused(default_config: dict, key: str) -> None:
    message = rejected(edited(default_config, lambda c: c["pretrain"]["replicates"].update({key: []})))
    assert f"config key 'pretrain.replicates.{key}': an empty list" in message
    assert "no replicate would be trained; to train none, leave out pretrain.replicates" in message
    no_replicates = edited(default_config, lambda c: c["pretrain"].pop("replicates"))
    assert validate_config(no_replicates, base_dir=REPO)["pretrain"]["replicates"]["seeds"] == []


def test_validating_an_mdlm_with_a_length_its_blocks_do_not_divide(default_config: dict) -> None:
    config = edited(default_config, lambda c: c["validation"].update(models=["llama", "mdlm"], max_new_tokens=90))
    message = rejected(config)
    assert "config key 'validation.max_new_tokens': 90 is not a multiple of models.mdlm.diffusion.block_length (32)" in message
    validate_config(edited(config, lambda c: c["validation"].update(max_new_tokens=96)), base_dir=REPO)


def test_one_needle_too_long_names_context_lengths(default_config: dict) -> None:
    def edit(c: dict) -> None:
        for name in ("llama", "diffllama", "mdlm", "gpt2"):
            c["models"][name]["max_position_embeddings"] = 1024  # only pretrain.max_length (512) limits the probe
        c["needle"].update(n_needles=[1], context_lengths=[508])

    message = rejected(edited(default_config, edit))
    assert "config key 'needle.context_lengths': the longest cell (508 tokens" in message
    assert "needle.context_per_needle" not in message
    grows = edited(default_config, lambda c: c["needle"].update(context_per_needle=60))
    longest = default_config["needle"]["context_lengths"][0] + 5 * 60  # six needles (max_new_tokens not counted)
    assert f"config key 'needle.context_per_needle': the longest cell ({longest} tokens" in rejected(grows)
