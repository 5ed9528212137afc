"""``results/summary.md``: one page of a finished study, written from its tables.

Sections, in order (each a pure function of the results folder, so each can be tested on synthetic tables):

``Run`` (:func:`run_block`)
    the date (UTC) the summary was written, the git commit of the code (``(modified)`` when tracked files differ
    from it), the machine, and the study's job count, CPU time and wall time from the jobs' Snakemake benchmark
    files (:func:`benchmark_times`).
``Headline`` (:func:`headline_section`)
    pass@1 pooled over training seeds (``seeds_accuracy``, the same block as ``tables/seeds.md``) and each seed's
    pass@1 beside the final validation loss of its pretraining (``training/<model>/loss.parquet``).
``Accuracy`` (:func:`accuracy_section`)
    pass@1 of every evaluated model (``accuracy``), Wilson intervals.
``Verdicts`` (:func:`verdict_section`)
    one sentence per row of each test table of the run, naming its test and its table row. Where a stage already
    words its verdicts (robustness difference, needle, pruning, sparse attention, perturbation), its own function
    writes the sentence, with that stage's decision rule; the pooled seed comparisons and the SFT gains, which
    have no sentence of their own, are directional when their interval excludes 0 and "not resolved" otherwise.
    A table the run did not produce is listed as not part of this run.
``Where each output is`` (:func:`outputs_section`)
    relative links to the tables and figures.

Only the strict-match metric is quoted; the tables hold the flexible one too.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from attnlab.io import read_metadata, read_parquet, write_text
from attnlab.report.seeds import pooled_accuracy_lines
from attnlab.report.tables import markdown_table, variant_sort_key
from attnlab.stats import format_p_value
from attnlab.study.models import parse_sft_name

__all__ = [
    "OWN_BENCHMARK",
    "TABLES",
    "accuracy_section",
    "benchmark_times",
    "git_commit",
    "headline_section",
    "machine_info",
    "outputs_section",
    "per_seed_rows",
    "run_block",
    "summary_markdown",
    "verdict_section",
    "write_summary",
]

#: the metric every quoted number is of
METRIC = "strict"
#: the summary's own benchmark file (relative to the benchmarks folder): written after the summary, never counted
OWN_BENCHMARK = "summary/summary.tsv"
NOT_IN_RUN = "not part of this run"

#: the tables the summary reads, relative to the results folder
TABLES: dict[str, str] = {
    "accuracy": "tables/accuracy.parquet",
    "seeds_accuracy": "tables/seeds_accuracy.parquet",
    "seeds_comparison": "tables/seeds_comparison.parquet",
    "robustness_difference": "tables/robustness_difference.parquet",
    "sft": "tables/sft.parquet",
    "needle_comparison": "tables/needle_comparison.parquet",
    "pruning": "tables/pruning.parquet",
    "pruning_tests": "tables/pruning_tests.parquet",
    "sparse_attention": "tables/sparse_attention.parquet",
    "sparse_tests": "tables/sparse_tests.parquet",
    "perturbation_summary": "tables/perturbation_summary.parquet",
    "perturbation_comparison": "tables/perturbation_comparison.parquet",
    "attribution_correlations": "tables/attribution_correlations.parquet",
}

#: what each Markdown table of the results folder is (the list of outputs)
TABLE_DESCRIPTIONS: dict[str, str] = {
    "accuracy": "pass@1 per model, dataset and variant (Wilson intervals)",
    "robustness": "drop of pass@1 from clean to noisy, per model (Newcombe interval, McNemar)",
    "mcnemar": "paired model-vs-model comparisons per variant",
    "robustness_difference": "difference of noise drops between paired models, sign-flip test, Holm",
    "seeds": "pass@1, drops and comparisons pooled over training seeds",
    "sft": "SFT variant vs its zero-shot base on the same items",
    "attention_ratios": "share of attention on the inserted noise",
    "needle_depth": "needle in a haystack: attention to answer and noise by depth, and the verdict",
    "attribution_correlations": "rank correlation of the head-attribution methods",
    "pruning": "pruning the most important heads vs the least relevant / random ones",
    "sparse_attention": "importance-adaptive vs uniform sparse attention",
    "perturbation": "selected vs random channel perturbation, SSM vs Transformer",
    "jacobian": "layer-wise Jacobian sensitivity",
}


# --- the run -----------------------------------------------------------------------------------------------------


def benchmark_times(bench_dir: str | os.PathLike[str], exclude: Sequence[str] = (OWN_BENCHMARK,)) -> dict[str, Any]:
    """Job count, CPU and wall seconds of a run from its Snakemake benchmark files (``**/*.tsv`` under ``bench_dir``).

    ``cpu_seconds`` = the sum of the ``cpu_time`` column over every file (a file holds one row per repeat;
    ``NA``, a job whose processes could not be measured, counts in ``cpu_missing``); ``wall_seconds`` = the latest
    file modification time (a job's end) − the earliest start, a start being a file's modification time minus the
    sum of its ``s`` column. ``exclude``: paths relative to ``bench_dir`` left out. No file: ``jobs`` 0 and None
    times.
    """
    root = Path(bench_dir)
    skip = {Path(p) for p in exclude}
    files = sorted(p for p in root.rglob("*.tsv") if p.is_file() and p.relative_to(root) not in skip) if root.is_dir() else []
    out: dict[str, Any] = {"jobs": len(files), "cpu_seconds": None, "cpu_missing": 0, "wall_seconds": None,
                           "start": None, "end": None}
    if not files:
        return out
    cpu, starts, ends = 0.0, [], []
    for path in files:
        frame = pd.read_csv(path, sep="\t")
        if "cpu_time" not in frame.columns or "s" not in frame.columns:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' / 'cpu_time' column)")
        cpu_time = pd.to_numeric(frame["cpu_time"], errors="coerce")
        if cpu_time.isna().any():
            out["cpu_missing"] += 1
        cpu += float(cpu_time.sum())
        end = path.stat().st_mtime
        ends.append(end)
        starts.append(end - float(pd.to_numeric(frame["s"], errors="coerce").fillna(0.0).sum()))
    out.update(cpu_seconds=cpu, start=min(starts), end=max(ends), wall_seconds=max(ends) - min(starts))
    return out


def git_commit(directory: str | os.PathLike[str]) -> str:
    """``git rev-parse --short HEAD`` of the checkout holding ``directory``, plus `` (modified)`` when a tracked
    file differs from it; ``unknown`` outside a git checkout (or without git)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", os.fspath(directory), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    modified = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + (" (modified)" if modified else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def machine_info(device: str | None = None) -> dict[str, Any]:
    """The machine writing the summary: CPU model, cores, RAM, torch version, and the device ``device`` (the
    study's ``device`` setting; None: ``auto``) resolves to here."""
    from importlib import metadata

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    setting = device or "auto"
    resolved = setting
    if torch_version is not None and setting in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            resolved = f"cuda ({torch.cuda.get_device_name(0)})"
        else:
            resolved = "cpu"
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_bytes": _memory_bytes(), "torch": torch_version,
            "device_setting": setting, "device": resolved}


def _duration(seconds: float) -> str:
    """``12,345 s (3 h 25 min)``."""
    minutes = int(round(seconds / 60.0))
    hours, rest = divmod(minutes, 60)
    spoken = f"{hours} h {rest:02d} min" if hours else f"{rest} min"
    return f"{seconds:,.0f} s ({spoken})"


RUN_TIMES_SENTENCE = (
    "CPU time is the sum of the `cpu_time` column (user + system seconds of a job's processes) over every job's "
    "Snakemake benchmark file under `benchmarks/`; wall time runs from the earliest job start (a file's "
    "modification time minus its `s` column) to the latest modification time, so it spans every Snakemake "
    "invocation whose jobs made these results, idle time between them included."
)


def run_block(
    results: str | os.PathLike[str],
    *,
    now: datetime | None = None,
    commit: str | None = None,
    machine: Mapping[str, Any] | None = None,
    device: str | None = None,
) -> str:
    """The ``Run`` section. ``now``, ``commit`` and ``machine`` default to the present moment, :func:`git_commit`
    of the code's checkout and :func:`machine_info`."""
    from attnlab.paths import REPO_ROOT

    now = now or datetime.now(timezone.utc)
    commit = commit if commit is not None else git_commit(REPO_ROOT)
    machine = machine if machine is not None else machine_info(device)
    times = benchmark_times(Path(results) / "benchmarks")
    memory = machine.get("memory_bytes")
    ram = f"{memory / 2**30:.1f} GiB RAM" if memory else "RAM unknown"
    lines = [
        "## Run",
        "",
        f"- Summary written: {now.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Code: git commit {commit}",
        f"- Machine: {machine.get('cpu')}, {machine.get('cores')} cores, {ram}; torch {machine.get('torch') or 'not installed'}; "
        f"device `{machine.get('device_setting')}` (here: {machine.get('device')})",
    ]
    if times["jobs"]:
        missing = f" ({times['cpu_missing']} without a CPU measurement)" if times["cpu_missing"] else ""
        lines += [
            f"- Jobs: {times['jobs']} (benchmark files){missing}",
            f"- CPU time: {_duration(times['cpu_seconds'])}; wall time: {_duration(times['wall_seconds'])}, "
            f"{datetime.fromtimestamp(times['start'], timezone.utc):%Y-%m-%d %H:%M} to "
            f"{datetime.fromtimestamp(times['end'], timezone.utc):%Y-%m-%d %H:%M} UTC",
            "",
            RUN_TIMES_SENTENCE,
        ]
    else:
        lines.append("- Jobs, CPU and wall time: no benchmark file under `benchmarks/`, so not measured.")
    return "\n".join(lines) + "\n"


# --- the tables --------------------------------------------------------------------------------------------------


def _read(results: Path, name: str) -> pd.DataFrame | None:
    path = results / TABLES[name]
    return read_parquet(path) if path.is_file() else None


def _confidence(results: Path, name: str, default: float = 0.95) -> float:
    """The interval level recorded in a table's metadata (``confidence``, or ``spec.confidence``)."""
    meta = read_metadata(results / TABLES[name])
    value = meta.get("confidence", (meta.get("spec") or {}).get("confidence", default))
    return float(value)


def _absent(name: str) -> str:
    return f"- `{TABLES[name]}`: {NOT_IN_RUN}."


def final_validation_loss(results: str | os.PathLike[str], model: str) -> float | None:
    """The last validation loss of ``model``'s pretraining curve (``training/<model>/loss.parquet``); an SFT variant
    ``m+sft-r`` reports the pretraining of m. None when the curve is absent."""
    parsed = parse_sft_name(model)
    pretrained = parsed[0] if parsed else model
    path = Path(results) / "training" / pretrained / "loss.parquet"
    if not path.is_file():
        return None
    curve = read_parquet(path)
    validation = curve[curve["split"] == "validation"].sort_values("step")
    return float(validation["loss"].iloc[-1]) if len(validation) else None


def per_seed_rows(results: str | os.PathLike[str], metric: str = METRIC) -> pd.DataFrame:
    """One row per pooled model × training seed: its member model, its pass@1 per dataset / variant (as the
    ``seeds_accuracy`` table states it, ``per_seed``) and the final validation loss of its pretraining.

    Member names come from the table's metadata (``groups``); without them the member is unknown and no loss is
    read."""
    results = Path(results)
    accuracy = _read(results, "seeds_accuracy")
    if accuracy is None:
        raise FileNotFoundError(f"{results / TABLES['seeds_accuracy']}: table not found")
    groups = read_metadata(results / TABLES["seeds_accuracy"]).get("groups") or {}
    accuracy = accuracy[accuracy["metric"] == metric]
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for r in accuracy.itertuples():
        seeds = [int(s) for s in str(r.seeds).split(", ")]
        values = str(r.per_seed).split(", ")
        members = {int(s): str(m) for m, s in groups.get(r.model, [])}
        for seed, value in zip(seeds, values):
            row = rows.setdefault((r.model, seed), {"model": r.model, "seed": seed, "member": members.get(seed, "?")})
            row[f"{r.base} / {r.variant}" if accuracy["base"].nunique() > 1 else str(r.variant)] = value
    frame = pd.DataFrame(list(rows.values()))
    if frame.empty:
        return frame
    variant_columns = [c for c in frame.columns if c not in ("model", "seed", "member")]
    ordered = sorted(variant_columns, key=lambda c: (c.rsplit(" / ", 1)[0] if " / " in c else "",
                                                     variant_sort_key(c.rsplit(" / ", 1)[-1])))
    losses = []
    for member in frame["member"]:
        loss = final_validation_loss(results, member) if member != "?" else None
        losses.append("n/a" if loss is None else f"{loss:.3f}")
    frame = frame[["model", "seed", "member", *ordered]].copy()
    frame["pretraining validation loss"] = losses
    return frame


def headline_section(results: str | os.PathLike[str], metric: str = METRIC) -> str:
    """pass@1 pooled over training seeds with the per-seed spread, then each seed's pass@1 and pretraining loss."""
    results = Path(results)
    lines = ["## Headline: pass@1 pooled over training seeds", ""]
    accuracy = _read(results, "seeds_accuracy")
    if accuracy is None:
        return "\n".join([*lines, _absent("seeds_accuracy"), ""]) + "\n"
    confidence = _confidence(results, "seeds_accuracy")
    lines += [
        f"From `{TABLES['seeds_accuracy']}` ({metric} match): each cell is the mean over training seeds of each "
        f"seed's pass@1, with a {confidence:.0%} two-level bootstrap interval (resample seeds, then items within each "
        "seed) and, in brackets, the range of the per-seed pass@1.",
        "",
        *pooled_accuracy_lines(accuracy, metric),
        "Per seed: pass@1 of each seed (`per_seed` of the same table) and the final validation loss of the "
        "pretraining of the seed's model (`training/<model>/loss.parquet`; an SFT variant reports its base's).",
        "",
        markdown_table(per_seed_rows(results, metric)),
    ]
    return "\n".join(lines) + "\n"


def accuracy_pivot(accuracy: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """Rows = models (in table order), one column per dataset / variant, cells ``pass@1 [low, high]``."""
    rows = accuracy[accuracy["metric"] == metric]
    several = rows["base"].nunique() > 1
    cells = sorted({(b, v) for b, v in zip(rows["base"], rows["variant"])}, key=lambda bv: (bv[0], variant_sort_key(bv[1])))
    table = []
    for model, group in rows.groupby("model", sort=False):
        by_cell = {(r.base, r.variant): f"{r.pass_at_1:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]" for r in group.itertuples()}
        row = {"model": model}
        for base, variant in cells:
            row[f"{base} / {variant}" if several else variant] = by_cell.get((base, variant), "")
        table.append(row)
    return pd.DataFrame(table)


def accuracy_section(results: str | os.PathLike[str], metric: str = METRIC) -> str:
    """pass@1 of every evaluated model with its Wilson interval (``accuracy``)."""
    results = Path(results)
    lines = ["## Accuracy of every model", ""]
    accuracy = _read(results, "accuracy")
    if accuracy is None:
        return "\n".join([*lines, _absent("accuracy"), ""]) + "\n"
    confidence = _confidence(results, "accuracy")
    n = sorted(set(accuracy.loc[accuracy["metric"] == metric, "n"]))
    items = f"{n[0]} items per cell" if len(n) == 1 else f"{n[0]}–{n[-1]} items per cell"
    lines += [
        f"From `{TABLES['accuracy']}` ({metric} match, {items}): pass@1 with its {confidence:.0%} Wilson interval.",
        "",
        markdown_table(accuracy_pivot(accuracy, metric)),
    ]
    return "\n".join(lines) + "\n"


# --- the verdicts ------------------------------------------------------------------------------------------------


def _row_ref(name: str, keys: Mapping[str, Any]) -> str:
    return f"(row of `{TABLES[name]}`: " + ", ".join(f"{k} = {v}" for k, v in keys.items()) + ")"


def _interval_verdict(low: float, high: float, above: str, below: str, confidence: float) -> str:
    """``above`` when the interval is above 0, ``below`` when below, else not resolved."""
    if low > 0:
        return above
    if high < 0:
        return below
    return f"not resolved (the {confidence:.0%} interval includes 0)"


def seeds_comparison_sentences(table: pd.DataFrame, confidence: float, metric: str = METRIC) -> list[str]:
    """One sentence per ``seeds_comparison`` row of ``metric``: pooled model b − pooled model a, paired on items."""
    test = (f"paired bootstrap over items, each model's training seeds resampled independently, {confidence:.0%} "
            "percentile interval")
    lines = []
    for r in table[table["metric"] == metric].itertuples():
        if r.measure == "drop":
            verdict = _interval_verdict(r.diff_ci_low, r.diff_ci_high, f"{r.model_b} loses less pass@1 than {r.model_a}",
                                        f"{r.model_b} loses more pass@1 than {r.model_a}", confidence)
            what = "drop (noisy − clean)"
        else:
            verdict = _interval_verdict(r.diff_ci_low, r.diff_ci_high, f"{r.model_b} answers more than {r.model_a}",
                                        f"{r.model_b} answers less than {r.model_a}", confidence)
            what = "pass@1"
        lines.append(
            f"{r.base} / {r.variant} ({metric}), pooled over training seeds: {verdict} — pooled {what} "
            f"{r.value_a:.3f} ({r.model_a}) vs {r.value_b:.3f} ({r.model_b}), difference b − a {r.diff:+.3f} "
            f"[{r.diff_ci_low:+.3f}, {r.diff_ci_high:+.3f}] on {r.n_items} paired items, {r.n_seeds_a} vs {r.n_seeds_b} "
            f"seeds (test: {test}) "
            + _row_ref("seeds_comparison", {"model_a": r.model_a, "model_b": r.model_b, "base": r.base,
                                            "variant": r.variant, "measure": r.measure, "metric": metric})
        )
    return lines


def sft_sentences(table: pd.DataFrame, confidence: float, metric: str = METRIC) -> list[str]:
    """One sentence per ``sft`` row of ``metric``: the SFT variant against its zero-shot base on the same items."""
    lines = []
    for r in table[table["metric"] == metric].itertuples():
        verdict = _interval_verdict(r.gain_ci_low, r.gain_ci_high, f"{r.model} answers more than {r.base_model}",
                                    f"{r.model} answers less than {r.base_model}", confidence)
        lines.append(
            f"{r.base} / {r.variant} ({metric}): {verdict} — pass@1 {r.pass_at_1_base:.3f} ({r.base_model}) vs "
            f"{r.pass_at_1_sft:.3f} ({r.model}), gain {r.gain:+.3f} [{r.gain_ci_low:+.3f}, {r.gain_ci_high:+.3f}] on "
            f"{r.n} paired items (test: Newcombe paired {confidence:.0%} interval of the gain; exact McNemar "
            f"{format_p_value(float(r.mcnemar_p))}) "
            + _row_ref("sft", {"model": r.model, "base": r.base, "variant": r.variant, "metric": metric})
        )
    return lines


def robustness_difference_lines(table: pd.DataFrame, metric: str = METRIC) -> list[str]:
    """The robustness-difference stage's own sentences (:func:`attnlab.report.robustness.drop_difference_sentences`),
    each with its row."""
    from attnlab.report.robustness import drop_difference_sentences

    if table.empty:
        return drop_difference_sentences(table)
    rows = table[table["metric"] == metric]
    sentences = drop_difference_sentences(table, metric=metric)
    return [
        f"{s} " + _row_ref("robustness_difference", {"model_a": r.model_a, "model_b": r.model_b, "base": r.base,
                                                     "variant": r.variant, "metric": metric})
        for s, r in zip(sentences, rows.itertuples())
    ]


def needle_lines(table: pd.DataFrame, confidence: float) -> list[str]:
    """The needle stage's own verdict (:func:`attnlab.needle.aggregate.verdict_lines`), per model pair, with the
    rows it reads (the pooled ``depth = all`` rows and the per-depth cells)."""
    from attnlab.needle.aggregate import verdict_lines

    if table.empty:
        return verdict_lines(table, confidence)
    lines: list[str] = []
    for (a, b), rows in table.groupby(["model_a", "model_b"], sort=False):
        verdicts = verdict_lines(rows, confidence)
        if not lines:
            lines.append(verdicts[0])  # the paper's numbers, once
        ref = _row_ref("needle_comparison", {"model_a": a, "model_b": b})
        lines += [f"{line[2:]} {ref}" for line in verdicts if line.startswith("- ")]
    return lines


def pruning_lines(table: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """The validation stage's own pruning verdicts (:func:`attnlab.validation.tables.pruning_verdicts`), one per
    ``pruning_tests`` model × base × scope × comparator, with its rows."""
    from attnlab.validation.tables import _PRUNING_GROUP, pruning_verdicts

    lines = []
    for keys, group in tests.groupby(_PRUNING_GROUP, sort=True):
        for comparator, sub in group.groupby("comparator", sort=False):
            ref = _row_ref("pruning_tests", {**dict(zip(_PRUNING_GROUP, keys)), "comparator": comparator})
            lines += [f"{s} {ref}" for s in pruning_verdicts(table, sub)]
    return lines


def sparse_lines(table: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """The validation stage's own sparse-attention verdicts (:func:`attnlab.validation.tables.sparse_verdicts`),
    one per ``sparse_tests`` model × base × allocation, with its rows."""
    from attnlab.validation.tables import _SPARSE_GROUP, sparse_verdicts

    keys_of = [*_SPARSE_GROUP, "allocation"]
    lines = []
    for keys, sub in tests.groupby(keys_of, sort=True):
        ref = _row_ref("sparse_tests", dict(zip(keys_of, keys)))
        lines += [f"{s} {ref}" for s in sparse_verdicts(table, sub)]
    return lines


def perturbation_lines(summary: pd.DataFrame | None, comparison: pd.DataFrame | None, confidence: float) -> list[str]:
    """The perturbation stage's own sentences (:mod:`attnlab.perturbation.tables`): the like-for-like SSM vs
    Transformer rows, then each ``diff`` row of the summary (selected − random channels), each with its row."""
    from attnlab.perturbation.tables import comparison_sentences, comparison_verdict

    lines = []
    for _, row in (comparison if comparison is not None else pd.DataFrame()).iterrows():
        lines.append(f"{comparison_verdict(row, confidence)} " + _row_ref(
            "perturbation_comparison", {k: row[k] for k in ("method", "mode", "ssm_model", "transformer_model")}))
    if summary is not None:
        for index in summary.index:
            one = summary.loc[[index]]
            (sentence,) = comparison_sentences(one, None, confidence, None)
            keys = {k: one[k].iloc[0] for k in ("model", "site", "method", "mode")}
            lines.append(f"{sentence} " + _row_ref("perturbation_summary", keys))
    return lines


def correlation_sentences(table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """One sentence per ``attribution_correlations`` row: do two attribution methods rank the heads alike?"""
    lines = []
    for r in table.itertuples():
        if not (math.isfinite(r.spearman_rho) and math.isfinite(r.p_value)):
            verdict = "not tested (a constant score vector or fewer than three heads)"
        elif r.p_value < alpha:
            verdict = (f"{r.method_a} and {r.method_b} rank the heads alike" if r.spearman_rho > 0
                       else f"{r.method_a} and {r.method_b} rank the heads in opposite orders")
        else:
            verdict = f"not resolved (p ≥ {alpha})"
        lines.append(
            f"{r.model} / {r.base}: {verdict} — Spearman ρ = {r.spearman_rho:.3f} over {r.n_heads} heads (test: "
            f"Spearman rank correlation, two-sided t-approximation {format_p_value(float(r.p_value))}) "
            + _row_ref("attribution_correlations", {"model": r.model, "base": r.base, "method_a": r.method_a,
                                                    "method_b": r.method_b})
        )
    return lines


def completeness_lines(results: str | os.PathLike[str]) -> list[str]:
    """HeadIG completeness of every score file (``attribution/<model>/<base>/<method>.parquet``, dp and stp): the
    mean |Σ IG − (J(1) − J(α₀))| over items and that relative to the mean |J(1) − J(α₀)|."""
    lines = []
    root = Path(results) / "attribution"
    for path in sorted(root.glob("*/*/*.parquet")) if root.is_dir() else []:
        if path.stem.endswith("_items"):
            continue
        scores = read_parquet(path)
        if scores.empty or "completeness_delta_mean" not in scores.columns:
            continue
        first = scores.iloc[0]
        if not math.isfinite(float(first["completeness_delta_mean"])):
            continue  # michel: a gradient, no completeness
        lines.append(
            f"{first['model']} / {first['base']}, {first['method']}: mean |Σ IG − (J(1) − J(α₀))| = "
            f"{float(first['completeness_delta_mean']):.3g}, relative {float(first['relative_delta_mean']):.3g} "
            f"(`{path.relative_to(results).as_posix()}`)"
        )
    return lines


#: tables a verdict block states when present and does without otherwise
OPTIONAL_TABLES = frozenset({"perturbation_comparison"})


def _verdict_block(title: str, names: Sequence[str], results: Path, build: Callable[..., list[str]]) -> list[str]:
    """``### title`` and the sentences ``build(*frames)`` makes of the tables ``names``; each missing table (but
    :data:`OPTIONAL_TABLES`) is listed as not part of this run, and no sentence is made."""
    lines = [f"### {title}", ""]
    frames = [_read(results, name) for name in names]
    missing = [name for name, frame in zip(names, frames) if frame is None and name not in OPTIONAL_TABLES]
    if missing:
        return [*lines, *(_absent(name) for name in missing), ""]
    sentences = build(*frames)
    if not sentences:
        sentences = [f"`{TABLES[names[0]]}` has no row to state."]
    return [*lines, *(f"- {s}" for s in sentences), ""]


def verdict_section(results: str | os.PathLike[str], metric: str = METRIC) -> str:
    """Every verdict of the run's test tables, one sentence per row, each naming its test and its table row."""
    results = Path(results)
    lines = [
        "## Verdicts",
        "",
        "One sentence per row of each test table of this run. Where a stage words its own verdicts (robustness "
        "difference, needle, pruning, sparse attention, perturbation), the sentence is that stage's, with the "
        "decision rule its test names; the pooled seed comparisons and the SFT gains are directional when their "
        f"interval excludes 0 and not resolved otherwise. {metric.capitalize()} match only.",
        "",
    ]

    def conf(name: str) -> float:
        return _confidence(results, name)

    blocks: list[tuple[str, list[str], Callable[..., list[str]]]] = [
        ("Pooled over training seeds: model b vs model a", ["seeds_comparison"],
         lambda t: seeds_comparison_sentences(t, conf("seeds_comparison"), metric)),
        ("Difference of noise drops (sign-flip test, Holm over noise types)", ["robustness_difference"],
         lambda t: robustness_difference_lines(t, metric)),
        ("Fine-tuned vs zero-shot", ["sft"], lambda t: sft_sentences(t, conf("sft"), metric)),
        ("Needle in a haystack", ["needle_comparison"], lambda t: needle_lines(t, conf("needle_comparison"))),
        ("Pruning the most important heads", ["pruning_tests", "pruning"], lambda tests, table: pruning_lines(table, tests)),
        ("Adaptive vs uniform sparse attention", ["sparse_tests", "sparse_attention"],
         lambda tests, table: sparse_lines(table, tests)),
        ("Perturbation: selected vs random channels", ["perturbation_summary", "perturbation_comparison"],
         lambda summary, comparison: perturbation_lines(summary, comparison, conf("perturbation_summary"))),
        ("Head attribution: agreement of the methods", ["attribution_correlations"], correlation_sentences),
    ]
    for title, names, build in blocks:
        lines += _verdict_block(title, names, results, build)
    completeness = completeness_lines(results)
    if completeness:
        lines += ["Completeness of HeadIG (a check of the attribution, not a test):", "",
                  *(f"- {s}" for s in completeness), ""]
    return "\n".join(lines) + "\n"


# --- where each output is ----------------------------------------------------------------------------------------


def outputs_section(results: str | os.PathLike[str], out: str | os.PathLike[str]) -> str:
    """Relative links (from ``out``'s folder) to every Markdown table, the tables without one, and the figures."""
    results = Path(results)
    base = Path(out).resolve().parent

    def link(path: Path) -> str:
        rel = Path(os.path.relpath(path.resolve(), base)).as_posix()
        return f"[{path.relative_to(results).as_posix()}]({rel})"

    lines = ["## Where each output is", ""]
    tables = results / "tables"
    markdown = sorted(tables.glob("*.md")) if tables.is_dir() else []
    for path in markdown:
        described = TABLE_DESCRIPTIONS.get(path.stem)
        lines.append(f"- {link(path)}" + (f": {described}" if described else ""))
    covered = {p.stem for p in markdown}
    if "seeds" in covered:  # seeds.md holds the three pooled tables
        covered |= {"seeds_accuracy", "seeds_robustness", "seeds_comparison"}
    bare = [p for p in sorted(tables.glob("*.parquet")) if p.stem not in covered] if tables.is_dir() else []
    if bare:
        lines.append("- Tables without a Markdown copy: " + ", ".join(link(p) for p in bare))
    figures = results / "figures"
    if figures.is_dir():
        top = sorted(figures.glob("*.png"))
        if top:
            lines.append("- Figures: " + ", ".join(link(p) for p in top))
        for folder in sorted(p for p in figures.iterdir() if p.is_dir()):
            pngs = sorted(folder.rglob("*.png"))
            if pngs:
                lines.append(f"- Figures, {folder.name}: " + ", ".join(link(p) for p in pngs))
    curves = sorted((results / "training").glob("*/loss.png")) if (results / "training").is_dir() else []
    if curves:
        lines.append("- Loss curves: " + ", ".join(link(p) for p in curves))
    if len(lines) == 2:
        lines.append("- No table or figure in this run.")
    lines.append("- Every job's log is under `logs/`, its time and memory under `benchmarks/`.")
    return "\n".join(lines) + "\n"


# --- the page ----------------------------------------------------------------------------------------------------


def summary_markdown(results: str | os.PathLike[str], out: str | os.PathLike[str], **run: Any) -> str:
    """The whole page; ``run`` goes to :func:`run_block` (``now``, ``commit``, ``machine``, ``device``)."""
    sections = [
        "# Summary of the study\n",
        run_block(results, **run),
        headline_section(results),
        accuracy_section(results),
        verdict_section(results),
        outputs_section(results, out),
    ]
    return "\n".join(section.rstrip("\n") + "\n" for section in sections)


def write_summary(results: str | os.PathLike[str], out: str | os.PathLike[str], **run: Any) -> None:
    """Write :func:`summary_markdown` to ``out`` atomically.

    Raises:
        FileNotFoundError: ``results`` is not a folder.
    """
    if not Path(results).is_dir():
        raise FileNotFoundError(f"{results}: results folder not found")
    write_text(out, summary_markdown(results, out, **run))
