"""The workflow with hostile or broken inputs: no config string reaches a shell unquoted, duplicate keys fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.io import read_parquet

from workflow_helpers import snakemake, write_config

pytestmark = pytest.mark.workflow


def hub_study(model_id: str, revision: str = "main") -> dict:
    """A study of one hub (or local-folder) model on a few synthetic items: data + evaluation jobs only."""
    return {
        "study": "hostile", "seed": 3, "max_samples": 2, "device": "cpu",
        "datasets": {"synthetic": {"loader": "synthetic", "train_size": 10, "test_size": 4}},
        "noise": {"types": ["inf"]},
        "models": {"evil": {"source": "hub", "id": model_id, "revision": revision}},
        "evaluation": {"batch_size": 2, "max_new_tokens": 4},
    }  # fmt: skip


def test_a_metacharacter_laden_folder_id_is_one_inert_argument(tmp_path: Path) -> None:
    """A model folder named ``tiny $(touch PWNED)`` is evaluated for real; the shell runs no ``touch``."""
    from attnlab.evaluate.tiny import build_tiny_model, build_tiny_tokenizer

    folder = tmp_path / "models" / "tiny $(touch PWNED)"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model("llama", tokenizer, hidden_size=32, intermediate_size=64).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    configfile = write_config(tmp_path / "study.yaml", hub_study(f"./models/{folder.name}"))
    proc = snakemake(tmp_path, configfile, "-p", "results/eval/evil/synthetic/clean.parquet")
    assert "--model './models/tiny $(touch PWNED)' " in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("PWNED")), "the shell ran a command taken from the config"
    table = read_parquet(tmp_path / "results/eval/evil/synthetic/clean.parquet")
    assert len(table) == 2 and (table.model == "evil").all()


def test_a_metacharacter_laden_hub_id_is_rejected_before_any_job(tmp_path: Path) -> None:
    configfile = write_config(tmp_path / "study.yaml", hub_study("gpt2$(touch PWNED)", revision="main;touch PWNED2"))
    proc = snakemake(tmp_path, configfile, "prefetch", check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "config key 'models.evil.id'" in output and "config key 'models.evil.revision'" in output
    assert not (tmp_path / "results").exists() and not list(tmp_path.rglob("PWNED*"))


def test_a_configfile_with_a_duplicate_key_is_rejected(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "configs" / "ci.yaml").read_text(encoding="utf-8")
    configfile = tmp_path / "dup.yaml"
    configfile.write_text(text.replace("  synthetic:\n", "  synthetic:\n    loader: gsm8k\n  synthetic:\n", 1))
    proc = snakemake(tmp_path, configfile, "-n", check=False)
    assert proc.returncode != 0
    assert f"{configfile}: line 11: duplicate key 'datasets.synthetic' (first on line 9)" in proc.stdout + proc.stderr


def copy_library(tmp_path: Path) -> Path:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(Path(__file__).resolve().parents[1] / "src" / "attnlab", src / "attnlab",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return src


def test_a_library_edit_reruns_the_stage_that_runs_it_and_a_comment_edit_nothing(
    ci_study: tuple[Path, Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attnlab.config import validate_config
    from attnlab.study.selections import model_variants

    from workflow_helpers import planned_jobs

    workdir, configfile, config = ci_study
    src = copy_library(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(src))
    monkeypatch.delenv("ATTNLAB_RESOURCES", raising=False)  # the copy carries its own resources (package data)
    module = src / "attnlab" / "evaluate" / "cli.py"
    text = module.read_text(encoding="utf-8")
    module.write_text(text.replace("def evaluate_file(", "# evaluation of one data file\ndef evaluate_file(", 1))
    assert planned_jobs(snakemake(workdir, configfile, "-n")) == set()  # a comment: nothing to rerun

    code_edit = "    progress: bool = False,\n"
    assert code_edit in text
    module.write_text(text.replace(code_edit, "    progress: bool = True,\n", 1))
    jobs = planned_jobs(snakemake(workdir, configfile, "-n"))
    models = model_variants(validate_config(config, base_dir=workdir), list(config["models"]))
    evaluations = {
        ("evaluate", f"model={m}, base=synthetic, variant={v}") for m in models for v in ["clean", *config["noise"]["types"]]
    }
    # the evaluations and every aggregate built from them (the difference of drops reads every evaluation), and
    # the summary page, which reads every final table
    assert jobs == evaluations | {("tables", ""), ("figures", ""), ("sft_tables", ""), ("robustness_difference", ""),
                                  ("summary", "")}
    # without the code trigger the same edit reruns nothing
    assert planned_jobs(snakemake(workdir, configfile, "-n", "--rerun-triggers", "mtime", "params", "input")) == set()


def test_deleted_per_model_outputs_are_rebuilt(ci_study: tuple[Path, Path, dict], tmp_path: Path) -> None:
    import shutil

    from workflow_helpers import planned_jobs

    source, configfile, _ = ci_study
    workdir = tmp_path / "study"
    shutil.copytree(source, workdir, symlinks=True)
    evaluation = workdir / "results/eval/llama/synthetic/clean.parquet"
    before = evaluation.read_bytes()
    evaluation.unlink()
    snakemake(workdir, configfile)
    assert evaluation.read_bytes() == before  # rebuilt, byte-identical
    assert planned_jobs(snakemake(workdir, configfile, "-n")) == set()

    shutil.rmtree(workdir / "results/models/gpt2")
    jobs = planned_jobs(snakemake(workdir, configfile, "-n"))
    assert ("pretrain", "scratch_model=gpt2") in jobs
    assert ("evaluate", "model=gpt2, base=synthetic, variant=clean") in jobs
    assert not any("llama" in wildcards for _, wildcards in jobs)


#: what --list-untracked lists although the rules declare it (benchmark files, the contents of directory() outputs),
#: and the report `snakemake --report` writes (no job does)
DECLARED_ELSEWHERE = ("results/benchmarks/", "results/models/", "results/tokenizer/", "results/report.html")


def test_every_file_a_job_writes_is_declared(ci_study: tuple[Path, Path, dict]) -> None:
    workdir, configfile, _ = ci_study
    proc = snakemake(workdir, configfile, "--list-untracked")
    lines = (proc.stdout + proc.stderr).splitlines()
    assert any(line.startswith("results/benchmarks/") for line in lines)  # the listing is there
    untracked = [line for line in lines if line.startswith("results/") and not line.startswith(DECLARED_ELSEWHERE)]
    assert untracked == [], untracked
