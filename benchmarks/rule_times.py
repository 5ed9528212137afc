"""Per-rule wall times of a finished study, from Snakemake's ``benchmark:`` files.

    python benchmarks/rule_times.py [results/benchmarks]

Prints a Markdown table: one row per rule with the number of jobs, the total and
the largest wall time of a job, the total CPU time (``cpu_time``: user + system
seconds of the job's processes) and the largest peak memory (max_rss, MB); then
the study's totals (the CPU-time budget of a study is the sum over every job).
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


def main() -> None:
    bench_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "results/benchmarks")
    table = rule_times(bench_dir)
    print("| rule | jobs | total s | slowest job s | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in table.itertuples():
        print(f"| {row.rule} | {row.jobs} | {row.total_s:.1f} | {row.max_job_s:.1f} | {row.cpu_s:.1f} | {row.max_rss_mb:.0f} |")
    print(f"| **all** | {table.jobs.sum()} | {table.total_s.sum():.1f} | {table.max_job_s.max():.1f} | "
          f"{table.cpu_s.sum():.1f} | {table.max_rss_mb.max():.0f} |")


if __name__ == "__main__":
    main()
