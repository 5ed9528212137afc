"""Knowledge bases, probes, the facts corpus, site hooks and the perturbation run on tiny real models."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from attnlab.evaluate.tiny import build_tiny_tokenizer
from attnlab.models.registry import build_scratch_config
from attnlab.perturbation.metrics import change_metrics, encode_probes, pooled_perplexities, token_nll
from attnlab.perturbation.perturb import run_perturbation
from attnlab.perturbation.relations import RelationsError, build_probes, facts_corpus, load_relations
from attnlab.perturbation.selection import channel_statistics, random_channels, top_channels
from attnlab.perturbation.sites import prepare_for_analysis, require_called, site_available, site_hook, site_width
from attnlab.perturbation.tables import perturbation_summary, perturbation_table, t_interval

SIZE_KEYS = {
    "gpt2": ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"),
    "llama": ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"),
    "mamba": ("hidden_size", "num_layers", "state_size", "expand"),
    "mamba2": ("hidden_size", "num_layers", "state_size", "expand", "head_dim"),
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def tiny(arch, tokenizer):
    from conftest import TINY_SIZE

    torch.manual_seed(0)
    config = build_scratch_config(arch, {k: TINY_SIZE[k] for k in SIZE_KEYS[arch]}, tokenizer)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module")
def probes():
    return build_probes(load_relations("fictional"), ["capital", "author"], max_facts=3, templates=[0, 1])


def test_fictional_and_real_knowledge_bases_are_large_enough():
    fictional = load_relations("fictional", min_relations=12, min_facts=20)
    real = load_relations("real", min_facts=20)
    assert "capital" in fictional and "capital" in real
    objects = {o for r in fictional.values() for _, o in r["facts"]}
    assert "Paris" not in objects


def test_probes_record_the_target_span(probes):
    assert len(probes) == 2 * 3 * 2
    for _, row in probes.iterrows():
        assert row.sentence[row.target_start : row.target_end] == " " + row.object
        assert row.sentence.startswith(row.prompt) and row.sentence.endswith(row.object + ".")


def test_malformed_knowledge_base_names_the_relation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("relations:\n  r1:\n    templates: ['{object} is {subject}']\n    facts: [[a, b]]\n")
    with pytest.raises(RelationsError, match="r1.*end with"):
        load_relations(str(bad))


def test_facts_corpus_is_seeded_and_complete():
    relations = load_relations("fictional")
    a, b = facts_corpus(relations, 2, seed=3), facts_corpus(relations, 2, seed=3)
    n_statements = sum(len(r["facts"]) * len(r["templates"]) for r in relations.values())
    assert list(a.columns) == ["text"] and len(a) == 2 * n_statements
    assert a.equals(b) and not a.equals(facts_corpus(relations, 2, seed=4))


def test_target_mask_covers_exactly_the_object_tokens(tokenizer, probes):
    batch = encode_probes(tokenizer, probes)
    for i in range(batch.n):
        ids = batch.input_ids[i][batch.target_mask[i]].tolist()
        assert tokenizer.decode(ids).strip() == probes.object.iloc[i]
        assert not batch.target_mask[i, : batch.last_prompt[i] + 1].any()


def test_change_metrics_and_denominator_effect():
    low, high = change_metrics(1.1, 1.65), change_metrics(100.0, 150.0)
    assert low["pct_change"] == pytest.approx(50.0) == high["pct_change"]
    assert low["log_ratio"] == pytest.approx(math.log(1.5)) == pytest.approx(high["log_ratio"])
    assert low["abs_change"] == pytest.approx(0.55) and high["abs_change"] == pytest.approx(50.0)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "mamba", "mamba2"])
def test_site_hooks_identity_is_exact_and_zero_changes_output(arch, tokenizer, probes, one_torch_thread):
    model = tiny(arch, tokenizer)
    batch = encode_probes(tokenizer, probes)
    with torch.no_grad():
        base = token_nll(model, batch)
        for site in ("residual", "mlp", "delta"):
            if not site_available(model, site):
                continue
            with site_hook(model, site, 1, lambda x: x) as calls:
                same = token_nll(model, batch)
            require_called(calls, site, 1)
            with site_hook(model, site, 1, torch.zeros_like):
                changed = token_nll(model, batch)
            assert torch.equal(same, base), site
            assert not torch.allclose(changed, base), site


def test_mamba1_delta_site_is_dt_proj_output(tokenizer, probes, one_torch_thread):
    model = tiny("mamba", tokenizer)
    mixer = model.backbone.layers[0].mixer
    batch = encode_probes(tokenizer, probes)
    seen = {}
    xproj = {}
    mixer.x_proj.register_forward_hook(lambda m, a, out: xproj.setdefault("out", out))
    with torch.no_grad(), site_hook(model, "delta", 0, lambda x: seen.setdefault("x", x)):
        token_nll(model, batch)
    expected = mixer.dt_proj(xproj["out"][..., : mixer.time_step_rank])  # [batch, seq, inner]
    assert seen["x"].shape[-1] == site_width(model, "delta") == mixer.intermediate_size
    torch.testing.assert_close(seen["x"], expected, rtol=1e-5, atol=1e-5)


def test_mamba2_delta_site_is_per_head_dt_and_chunk_size_is_exact(tokenizer, probes, one_torch_thread):
    model = tiny("mamba2", tokenizer)
    batch = encode_probes(tokenizer, probes)
    with torch.no_grad():
        before = token_nll(model, batch)
        prepare_for_analysis(model)
        after = token_nll(model, batch)
    assert model.backbone.layers[0].mixer.chunk_size == 16
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert site_width(model, "delta") == model.config.num_heads


def test_run_perturbation_rows_controls_and_tables(tokenizer, probes, one_torch_thread):
    model = prepare_for_analysis(tiny("mamba2", tokenizer))
    spec = {"modes": ["zero", "scale"], "layers": [1], "random_seeds": 5, "fraction": 0.25}
    selection = build_probes(load_relations("fictional"), ["capital", "author"], max_facts=3, templates=[2])
    rows = run_perturbation(model, tokenizer, probes, selection, spec, seed=1, model_name="m")
    # 2 relations x 2 sites (residual, delta) x 1 layer x (2 methods + 5 seeds) x 2 modes
    assert len(rows) == 2 * 2 * 7 * 2
    assert set(rows.site) == {"residual", "delta"} and set(rows.method) == {"attribution", "variance", "random"}
    np.testing.assert_allclose(rows.target_log_ratio, np.log(rows.perturbed_target_ppl / rows.baseline_target_ppl))
    again = run_perturbation(model, tokenizer, probes, selection, spec, seed=1, model_name="m")
    pd.testing.assert_frame_equal(rows, again)
    # the channels are chosen on the selection probes, the perplexities measured on the measurement probes
    differs = []
    for relation in ("capital", "author"):
        def top(table, site, method, k):
            batch = encode_probes(tokenizer, table[table.relation == relation])
            return top_channels(channel_statistics(model, batch, [(site, 1)])[site, 1].scores(method), k).tolist()

        for site, method in (("delta", "attribution"), ("residual", "attribution"), ("residual", "variance")):
            chosen = rows[(rows.relation == relation) & (rows.site == site) & (rows.method == method)].channels.iloc[0]
            assert list(chosen) == top(selection, site, method, len(chosen))
            differs.append(list(chosen) != top(probes, site, method, len(chosen)))
        base = encode_probes(tokenizer, probes[probes.relation == relation])
        with torch.no_grad():
            expected = pooled_perplexities(token_nll(model, base), base).target_ppl
        assert rows[rows.relation == relation].baseline_target_ppl.iloc[0] == pytest.approx(expected, rel=1e-6)
    assert any(differs), "the measurement probes would have chosen the same channels everywhere: the check is vacuous"
    with pytest.raises(ValueError, match="both selection and measurement"):
        run_perturbation(model, tokenizer, probes, probes, spec, seed=1, model_name="m")
    # the stacked forward pass equals one pass per perturbation
    batch = encode_probes(tokenizer, probes[probes.relation == "capital"])
    row = rows[(rows.relation == "capital") & (rows.site == "delta") & (rows["mode"] == "zero")].iloc[0]
    idx = torch.tensor(row.channels)

    def zero(x):
        x = x.clone()
        x[..., idx] = 0.0
        return x

    with torch.no_grad(), site_hook(model, "delta", 1, zero):
        single = pooled_perplexities(token_nll(model, batch), batch)
    assert single.target_ppl == pytest.approx(row.perturbed_target_ppl, rel=1e-5)
    table = perturbation_table(rows)
    assert len(table) == 2 * 2 * 2 * 2 * 2  # relations x sites x methods x modes x (layer 1, mean)
    assert (table.random_target_log_ratio_low <= table.random_target_log_ratio_high).all()
    summary = perturbation_summary(table)
    assert set(summary.columns) >= {"selected_log_ratio", "selected_low", "random_low", "relations_above_random"}


def test_selection_helpers():
    assert top_channels(np.array([0.1, 3.0, 3.0, 2.0]), 3).tolist() == [1, 2, 3]
    draw = random_channels(10, 4, seed=5)
    assert draw.tolist() == random_channels(10, 4, seed=5).tolist() and len(set(draw)) == 4
    mean, low, high = t_interval(np.array([1.0, 2.0, 3.0]), 0.95)
    assert mean == 2.0 and low == pytest.approx(2 - 4.302653 / math.sqrt(3), rel=1e-5) and high > 2
