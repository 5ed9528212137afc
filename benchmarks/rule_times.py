"""Per-rule wall times of a finished study, from Snakemake's ``benchmark:`` files.

    python benchmarks/rule_times.py [results/benchmarks]
    python benchmarks/rule_times.py NEW/results/benchmarks --before OLD/results/benchmarks

Prints a Markdown table: one row per rule with the number of jobs, the total and
the largest wall time of a job, the total CPU time (``cpu_time``: user + system
seconds of the job's processes) and the largest peak memory (max_rss, MB); then
the study's totals (the CPU-time budget of a study is the sum over every job). With ``--before`` it prints
one row per rule with the CPU seconds of both runs and their difference, and the totals: the measurement of a
design change's cost (only jobs that ran in a run count for it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def rule_times(bench_dir: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rule = tsv.relative_to(bench_dir).parts[0]
        record = pd.read_csv(tsv, sep="\t").iloc[-1]
        rows.append({"rule": rule, "job": str(tsv.relative_to(bench_dir / rule).with_suffix("")),
                     "seconds": float(record["s"]), "cpu_seconds": float(record["cpu_time"]),
                     "max_rss_mb": float(record["max_rss"])})
    if not rows:
        raise SystemExit(f"no benchmark files under {bench_dir}")
    jobs = pd.DataFrame(rows)
    return (
        jobs.groupby("rule", sort=False)
        .agg(jobs=("job", "count"), total_s=("seconds", "sum"), max_job_s=("seconds", "max"),
             cpu_s=("cpu_seconds", "sum"), max_rss_mb=("max_rss_mb", "max"))
        .reset_index()
    )


def compare(after: pd.DataFrame, before: pd.DataFrame) -> pd.DataFrame:
    """CPU seconds and jobs per rule of two runs (missing rule = 0) and the difference after - before."""
    both = before[["rule", "jobs", "cpu_s"]].merge(
        after[["rule", "jobs", "cpu_s"]], on="rule", how="outer", suffixes=("_before", "_after")
    ).fillna(0)
    both["cpu_s_change"] = both["cpu_s_after"] - both["cpu_s_before"]
    return both


def main() -> None:
    args = list(sys.argv[1:])
    before_dir = None
    if "--before" in args:
        i = args.index("--before")
        before_dir = Path(args[i + 1])
        del args[i : i + 2]
    bench_dir = Path(args[0] if args else "results/benchmarks")
    table = rule_times(bench_dir)
    if before_dir is not None:
        rows = compare(table, rule_times(before_dir))
        print("| rule | jobs before | jobs after | CPU s before | CPU s after | change |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in rows.itertuples():
            print(f"| {row.rule} | {row.jobs_before:.0f} | {row.jobs_after:.0f} | {row.cpu_s_before:.1f} | "
                  f"{row.cpu_s_after:.1f} | {row.cpu_s_change:+.1f} |")
        print(f"| **all** | {rows.jobs_before.sum():.0f} | {rows.jobs_after.sum():.0f} | {rows.cpu_s_before.sum():.1f} | "
              f"{rows.cpu_s_after.sum():.1f} | {rows.cpu_s_change.sum():+.1f} |")
        return
    print("| rule | jobs | total s | slowest job s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in table.itertuples():
        print(f"| {row.rule} | {row.jobs} | {row.total_s:.1f} | {row.max_job_s:.1f} | {row.cpu_s:.1f} | {row.max_rss_mb:.0f} |")
    print(f"| **all** | {table.jobs.sum()} | {table.total_s.sum():.1f} | {table.max_job_s.max():.1f} | "
          f"{table.cpu_s.sum():.1f} | {table.max_rss_mb.max():.0f} |")


if __name__ == "__main__":
    main()
