"""results/summary.md: the run block, the headline and accuracy numbers, the verdicts and the absent tables, from
synthetic tables written by each stage's own writers."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnlab.cli import main
from attnlab.io import read_parquet, write_parquet
from attnlab.models.pretrain import CURVE_SCHEMA
from attnlab.report import summary as S
from attnlab.report.robustness import COLUMNS as DROP_COLUMNS
from attnlab.report.robustness import write_drop_difference
from attnlab.report.seeds import SEED_TABLE_SCHEMAS, seed_tables, write_seed_tables
from attnlab.report.tables import SFT_TABLE_SCHEMA, accuracy_tables, write_tables

MACHINE = {"cpu": "Test CPU", "cores": 2, "memory_bytes": 8 * 2**30, "torch": "2.13.0", "device_setting": "auto",
           "device": "cpu"}
NOW = datetime(2026, 12, 8, 3, 0, tzinfo=timezone.utc)
GROUPS = {"llama": [["llama", 7], ["llama-seed1", 1]], "diffllama": [["diffllama", 7], ["diffllama-seed1", 1]]}
#: the last validation loss of each member's pretraining curve
LOSSES = {"llama": 0.241, "llama-seed1": 0.252, "diffllama": 0.305, "diffllama-seed1": 0.333}


def _eval(model: str, variant: str, correct: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"model": model, "base": "synthetic", "variant": variant,
                         "id": [f"q{i:03d}" for i in range(len(correct))],
                         "correct_strict": correct.astype(bool), "correct_flexible": correct.astype(bool)})


def _study(results: Path) -> None:
    """Accuracy and pooled-seed tables of two models x two seeds, their loss curves, with the stages' writers."""
    rng = np.random.default_rng(0)
    n = 40
    frames = []
    for (model, p_clean, p_noisy) in (("llama", 0.8, 0.4), ("llama-seed1", 0.7, 0.5), ("diffllama", 0.4, 0.3),
                                      ("diffllama-seed1", 0.3, 0.3)):
        frames += [_eval(model, "clean", rng.random(n) < p_clean), _eval(model, "inf", rng.random(n) < p_noisy)]
    write_tables(accuracy_tables(frames), results / "tables", metadata={"confidence": 0.95})
    groups = {g: [(m, s) for m, s in members] for g, members in GROUPS.items()}
    write_seed_tables(seed_tables(frames, groups, n_resamples=200, seed=0), results / "tables",
                      metadata={"groups": GROUPS, "confidence": 0.95})
    for model, loss in LOSSES.items():
        curve = pd.DataFrame({"step": [0, 10, 10, 20, 20], "split": ["validation", "train", "validation", "train",
                                                                     "validation"],
                              "loss": [3.0, 0.5, 0.9, 0.2, loss], "lr": 1e-3, "tokens_seen": [0, 10, 10, 20, 20]})
        write_parquet(curve, results / "training" / model / "loss.parquet", schema=CURVE_SCHEMA)


def _benchmark(path: Path, rows: list[tuple[float, str]], mtime: float) -> None:
    """A Snakemake benchmark file: one row per repeat, (s, cpu_time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    path.write_text(header + "".join(f"{s}\t0:00:01\t10\t10\t10\t10\t0\t0\t1\t{cpu}\n" for s, cpu in rows))
    os.utime(path, (mtime, mtime))


def test_run_block_sums_the_cpu_time_of_the_benchmark_files(tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks"
    t0 = 1_800_000_000.0
    _benchmark(bench / "pretrain" / "scratch_model=llama.tsv", [(100.0, "150.25")], t0 + 100)  # ran t0 .. t0+100
    _benchmark(bench / "evaluate" / "a.tsv", [(20.0, "30.5"), (10.0, "12.0")], t0 + 400)  # two repeats: t0+370 ..
    _benchmark(bench / "tables" / "tables.tsv", [(5.0, "NA")], t0 + 500)  # unmeasured CPU
    _benchmark(bench / S.OWN_BENCHMARK, [(1.0, "999")], t0 + 900)  # the summary's own file is left out
    times = S.benchmark_times(bench)
    assert times["jobs"] == 3 and times["cpu_missing"] == 1
    assert times["cpu_seconds"] == pytest.approx(150.25 + 30.5 + 12.0)
    assert times["wall_seconds"] == pytest.approx(500.0)  # the earliest start t0, the latest end t0 + 500
    text = S.run_block(tmp_path, now=NOW, commit="abc1234", machine=MACHINE)
    assert "- CPU time: 193 s (3 min); wall time: 500 s (8 min)" in text
    assert "- Jobs: 3 (benchmark files) (1 without a CPU measurement)" in text
    assert "2026-12-08 03:00 UTC" in text and "git commit abc1234" in text and "Test CPU, 2 cores, 8.0 GiB RAM" in text
    assert S.RUN_TIMES_SENTENCE in text
    empty = S.run_block(tmp_path / "nowhere", now=NOW, commit="x", machine=MACHINE)
    assert "no benchmark file" in empty and "CPU time:" not in empty


def test_git_commit_names_the_checkout_and_its_tracked_changes(tmp_path: Path) -> None:
    assert S.git_commit(tmp_path) == "unknown"
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("one\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "untracked.txt").write_text("not tracked\n")
    assert S.git_commit(tmp_path) == head  # an untracked file is no modification
    (tmp_path / "a.txt").write_text("two\n")
    assert S.git_commit(tmp_path) == f"{head} (modified)"


def test_headline_quotes_the_pooled_table_and_each_seed_with_its_loss(tmp_path: Path) -> None:
    _study(tmp_path)
    text = S.headline_section(tmp_path)
    pooled = read_parquet(tmp_path / "tables" / "seeds_accuracy.parquet")
    pooled = pooled[pooled["metric"] == "strict"]
    for r in pooled.itertuples():
        assert f"{r.pass_at_1:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] (seeds {r.seed_min:.3f}–{r.seed_max:.3f})" in text
    rows = S.per_seed_rows(tmp_path).set_index("member")
    assert sorted(rows.index) == sorted(LOSSES)
    for r in pooled.itertuples():
        for (member, seed), value in zip(GROUPS[r.model], r.per_seed.split(", ")):
            assert rows.loc[member, r.variant] == value and rows.loc[member, "seed"] == seed
    for member, loss in LOSSES.items():
        assert rows.loc[member, "pretraining validation loss"] == f"{loss:.3f}"
        per_seed = text[text.index("Per seed:"):]
        line = next(line for line in per_seed.splitlines() if f" | {member} | " in line)
        assert line.endswith(f"| {loss:.3f} |")


def test_accuracy_section_quotes_every_row_of_the_accuracy_table(tmp_path: Path) -> None:
    _study(tmp_path)
    text = S.accuracy_section(tmp_path)
    table = read_parquet(tmp_path / "tables" / "accuracy.parquet")
    strict = table[table["metric"] == "strict"]
    assert "40 items per cell" in text
    for r in strict.itertuples():
        line = next(line for line in text.splitlines() if line.startswith(f"| {r.model} |"))
        assert f"{r.pass_at_1:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" in line


def _seeds_comparison(tmp_path: Path, rows: list[dict]) -> None:
    base = {"base": "synthetic", "metric": "strict", "n_seeds_a": 3, "n_seeds_b": 3, "n_items": 200}
    frame = pd.DataFrame([{**base, **row} for row in rows], columns=SEED_TABLE_SCHEMAS["seeds_comparison"].names)
    write_parquet(frame, tmp_path / "tables" / "seeds_comparison.parquet", metadata={"confidence": 0.9},
                  schema=SEED_TABLE_SCHEMAS["seeds_comparison"])


def test_seed_comparison_verdicts_follow_their_intervals(tmp_path: Path) -> None:
    _seeds_comparison(tmp_path, [
        {"variant": "clean", "model_a": "diffllama", "model_b": "llama", "measure": "pass_at_1", "value_a": 0.2,
         "value_b": 0.6, "diff": 0.4, "diff_ci_low": 0.25, "diff_ci_high": 0.55},
        {"variant": "inf", "model_a": "diffllama", "model_b": "llama", "measure": "pass_at_1", "value_a": 0.2,
         "value_b": 0.25, "diff": 0.05, "diff_ci_low": -0.02, "diff_ci_high": 0.12},
        {"variant": "inf", "model_a": "diffllama", "model_b": "llama", "measure": "drop", "value_a": -0.05,
         "value_b": -0.3, "diff": -0.25, "diff_ci_low": -0.4, "diff_ci_high": -0.1},
    ])
    text = S.verdict_section(tmp_path)
    clean, noisy, drop = [line for line in text.splitlines() if "pooled over training seeds:" in line]
    assert "llama answers more than diffllama" in clean and "+0.400 [+0.250, +0.550]" in clean
    assert "measure = pass_at_1" in clean and "`tables/seeds_comparison.parquet`" in clean
    assert "not resolved (the 90% interval includes 0)" in noisy and "answers" not in noisy.split("—")[0]
    assert "llama loses more pass@1 than diffllama" in drop and "measure = drop" in drop
    assert "paired bootstrap over items" in clean  # the test is named


def test_sft_verdicts_follow_their_intervals(tmp_path: Path) -> None:
    def row(variant: str, gain: float, low: float, high: float) -> dict:
        return {"model": "llama+sft-noisy", "base_model": "llama", "recipe": "noisy", "base": "synthetic",
                "variant": variant, "metric": "strict", "n": 100, "n_base": 100, "n_sft": 100, "pass_at_1_base": 0.3,
                "pass_at_1_sft": 0.3 + gain, "gain": gain, "gain_ci_low": low, "gain_ci_high": high,
                "both_correct": 20, "only_base": 5, "only_sft": 15, "neither_correct": 60, "mcnemar_p": 0.04}

    frame = pd.DataFrame([row("inf", 0.2, 0.1, 0.3), row("clean", -0.01, -0.08, 0.06), row("sd", -0.2, -0.3, -0.1)])
    write_parquet(frame, tmp_path / "tables" / "sft.parquet", metadata={"confidence": 0.95}, schema=SFT_TABLE_SCHEMA)
    lines = [line for line in S.verdict_section(tmp_path).splitlines() if "row of `tables/sft.parquet`" in line]
    assert len(lines) == 3
    inf, clean, sd = lines
    assert "llama+sft-noisy answers more than llama" in inf and "gain +0.200 [+0.100, +0.300]" in inf
    assert "not resolved (the 95% interval includes 0)" in clean
    assert "llama+sft-noisy answers less than llama" in sd
    assert "Newcombe paired 95% interval" in inf and "McNemar p = 0.04" in inf


def test_robustness_difference_uses_the_stage_sentence_with_its_row(tmp_path: Path) -> None:
    def row(variant: str, p_holm: float, diff: float) -> dict:
        return {"base": "synthetic", "variant": variant, "metric": "strict", "model_a": "diffllama",
                "model_b": "llama", "recipe": "", "n_items": 100, "seeds_a": 1, "seeds_b": 1, "drop_a": -0.1,
                "drop_b": -0.1 - diff, "diff": diff, "diff_ci_low": diff - 0.05, "diff_ci_high": diff + 0.05,
                "p_value": p_holm, "p_holm": p_holm, "test": "t"}

    table = pd.DataFrame([row("inf", 0.001, 0.2), row("sd", 0.4, 0.01)], columns=DROP_COLUMNS)
    write_drop_difference(table, tmp_path / "tables" / "robustness_difference.parquet", tmp_path / "x.md")
    lines = [line for line in S.verdict_section(tmp_path).splitlines() if "robustness_difference.parquet" in line]
    inf, sd = lines
    assert "diffllama loses less than llama" in inf and "variant = inf" in inf and "Holm-adjusted p = 0.001" in inf
    assert "diffllama is not distinguished from llama" in sd and "variant = sd" in sd


def test_tables_absent_from_the_run_are_listed_and_no_number_is_invented(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    page = S.summary_markdown(tmp_path, tmp_path / "summary.md", now=NOW, commit="unknown", machine=MACHINE)
    for name, relative in S.TABLES.items():
        if name in S.OPTIONAL_TABLES:
            continue
        assert f"- `{relative}`: not part of this run." in page, name
    verdicts = page[page.index("## Verdicts"):page.index("## Where each output is")]
    assert not any(ch.isdigit() for line in verdicts.splitlines() if "not part" in line for ch in line.split("`")[2])
    assert "[+" not in page and "Completeness" not in page


def test_needle_pruning_and_perturbation_verdicts_are_the_stages_own(tmp_path: Path) -> None:
    from attnlab.needle.aggregate import verdict_lines
    from attnlab.perturbation.tables import comparison_sentences
    from attnlab.validation.tables import pruning_table, pruning_tests, pruning_verdicts

    needle = pd.DataFrame([
        {"model_a": "diffllama", "model_b": "llama", "depth": "all", "metric": metric, "mean_a": 0.1, "mean_b": 0.3,
         "diff": diff, "ci_low": low, "ci_high": high, "p_value": 0.01, "n_items": 30, "n_seeds_a": 3,
         "n_seeds_b": 3, "p_holm": np.nan}
        for metric, diff, low, high in (("answer", 0.02, -0.01, 0.05), ("answer_sentence", 0.03, 0.01, 0.05),
                                        ("noise", -0.2, -0.3, -0.1), ("accuracy", 0.0, -0.1, 0.1))
    ])
    write_parquet(needle, tmp_path / "tables" / "needle_comparison.parquet", metadata={"spec": {"confidence": 0.95}})

    def items(strategy, seed, fraction, correct, loss):
        k = int(fraction * 10)
        heads = range(k) if strategy != "least" else range(9, 9 - k, -1)
        return pd.DataFrame({
            "model": "m", "base": "syn", "scores": "dp", "scope": "global", "least_by": "magnitude",
            "strategy": strategy, "seed": pd.array([seed] * len(correct), dtype="Int64"), "fraction": fraction,
            "k": k, "n_heads": 10, "pruned": ";".join(f"0.{h}" for h in heads),
            "id": [f"i{j}" for j in range(len(correct))], "correct": pd.array(correct, dtype="boolean"), "loss": loss,
        })

    rng = np.random.default_rng(0)
    most_loss = 3.0 + rng.normal(size=12)
    frames = [items("most", None, 0.2, [False] * 12, most_loss), items("least", None, 0.2, [True] * 12, most_loss - 0.5)]
    write_parquet(pruning_table(frames), tmp_path / "tables" / "pruning.parquet")
    write_parquet(pruning_tests(frames), tmp_path / "tables" / "pruning_tests.parquet")
    summary = pd.DataFrame([{
        "model": "gpt2", "model_type": "gpt2", "site": "residual", "method": "headig", "mode": "zero",
        "comparison": "like_for_like", "n_channels": 4, "site_width": 32, "fraction": 0.125, "n_relations": 8,
        "selected_log_ratio": 0.2, "selected_low": 0.1, "selected_high": 0.3, "random_log_ratio": 0.01,
        "random_low": 0.0, "random_high": 0.02, "selected_pct_change": 20.0, "diff": 0.19, "diff_low": 0.09,
        "diff_high": 0.29, "diff_p": 0.008, "relations_above_random": 5, "above_random_level": 0.025,
    }])
    write_parquet(summary, tmp_path / "tables" / "perturbation_summary.parquet", metadata={"confidence": 0.95})
    text = S.verdict_section(tmp_path)

    needle_expected = [line[2:] for line in verdict_lines(needle, 0.95) if line.startswith("- ")]
    for sentence in needle_expected:
        assert f"- {sentence} (row of `tables/needle_comparison.parquet`: model_a = diffllama, model_b = llama)" in text
    assert "the paper's direction (less for DIFF) reproduces" in text  # noise: interval below 0
    assert "attention to answer: 0.100 vs 0.300, difference +0.020 [-0.010, +0.050]" in text
    [pruning_sentence] = pruning_verdicts(read_parquet(tmp_path / "tables" / "pruning.parquet"),
                                          read_parquet(tmp_path / "tables" / "pruning_tests.parquet"))
    assert pruning_sentence.split(": ", 1)[1].startswith("pruning the most important heads hurts more")
    assert f"- {pruning_sentence} (row of `tables/pruning_tests.parquet`: model = m, base = syn, scores = dp, " \
           "scope = global, least_by = magnitude, comparator = least)" in text
    [perturbation_sentence] = comparison_sentences(summary, None, 0.95, None)
    assert "raises the target perplexity more than random channels" in perturbation_sentence
    assert f"- {perturbation_sentence} (row of `tables/perturbation_summary.parquet`: model = gpt2, site = residual, " \
           "method = headig, mode = zero)" in text
    assert "- `tables/sparse_tests.parquet`: not part of this run." in text
    assert "- `tables/sparse_attention.parquet`: not part of this run." in text
    (tmp_path / "tables" / "pruning.parquet").unlink()  # a test table without its per-condition table: no sentence
    text = S.verdict_section(tmp_path)
    assert "- `tables/pruning.parquet`: not part of this run." in text and pruning_sentence not in text


def test_correlations_and_completeness(tmp_path: Path) -> None:
    table = pd.DataFrame([
        {"model": "llama", "base": "synthetic", "method_a": "dp", "method_b": "stp", "spearman_rho": 0.95,
         "p_value": 1e-6, "n_heads": 16},
        {"model": "llama", "base": "synthetic", "method_a": "dp", "method_b": "michel", "spearman_rho": 0.1,
         "p_value": 0.7, "n_heads": 16},
    ])
    write_parquet(table, tmp_path / "tables" / "attribution_correlations.parquet")
    scores = pd.DataFrame({"model": "llama", "base": "synthetic", "method": "dp", "layer": [0, 0], "head": [0, 1],
                           "score": [0.1, 0.2], "score_std": 0.0, "n_items": 4, "completeness_delta_mean": 0.0123,
                           "relative_delta_mean": 0.0456})
    write_parquet(scores, tmp_path / "attribution" / "llama" / "synthetic" / "dp.parquet")
    write_parquet(scores.assign(method="michel", completeness_delta_mean=np.nan, relative_delta_mean=np.nan),
                  tmp_path / "attribution" / "llama" / "synthetic" / "michel.parquet")
    text = S.verdict_section(tmp_path)
    assert "llama / synthetic: dp and stp rank the heads alike — Spearman ρ = 0.950 over 16 heads" in text
    assert "llama / synthetic: not resolved (p ≥ 0.05) — Spearman ρ = 0.100" in text
    assert "llama / synthetic, dp: mean |Σ IG − (J(1) − J(α₀))| = 0.0123, relative 0.0456" in text
    assert "michel: mean" not in text


def test_outputs_are_linked_relative_to_the_summary(tmp_path: Path) -> None:
    _study(tmp_path)
    (tmp_path / "figures" / "attention").mkdir(parents=True)
    for name in ("figures/accuracy.png", "figures/attention/llama_ni_heatmap.png", "training/llama/loss.png"):
        (tmp_path / name).write_bytes(b"\x89PNG")
    text = S.outputs_section(tmp_path, tmp_path / "summary.md")
    assert "[tables/accuracy.md](tables/accuracy.md): pass@1 per model" in text
    assert "[figures/attention/llama_ni_heatmap.png](figures/attention/llama_ni_heatmap.png)" in text
    assert "[training/llama/loss.png](training/llama/loss.png)" in text
    assert "seeds_comparison" not in text  # seeds.md holds it
    elsewhere = S.outputs_section(tmp_path, tmp_path / "pages" / "summary.md")
    assert "[tables/accuracy.md](../tables/accuracy.md)" in elsewhere


def test_cli_writes_the_summary_and_rejects_a_missing_results_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    _study(tmp_path / "results")
    monkeypatch.setattr(S, "machine_info", lambda device=None: {**MACHINE, "device_setting": device})
    out = tmp_path / "results" / "summary.md"
    assert main(["report", "summary", "--results", str(tmp_path / "results"), "--out", str(out), "--device", "cpu"]) == 0
    page = out.read_text()
    assert page.index("## Run") < page.index("## Headline") < page.index("## Accuracy") < page.index("## Verdicts") \
        < page.index("## Where each output is")
    assert "device `cpu`" in page and "not part of this run" in page
    assert main(["report", "summary", "--results", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "attnlab report summary: error:" in capsys.readouterr().err
