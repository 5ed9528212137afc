"""``attnlab doctor``: is this machine ready to run a study?

    attnlab doctor                         # checks ./config.yaml if there is one
    attnlab doctor --config configs/paper.yaml [--json]

Reports, one row per check, with a status ``ok`` / ``warn`` / ``FAIL``:

* versions of Python, torch, transformers, huggingface_hub, datasets, snakemake and the
  SLURM executor plugin (the plugin is optional: ``warn`` when missing);
* devices: CPU cores available to this process, memory, every CUDA GPU with its memory
  (and whether the config's ``device`` can be honoured);
* the Hugging Face cache in use and whether the hub is switched offline;
* whether the config validates (against the schema and the semantic checks);
* per model and per dataset of the config, whether it is available offline: hub ids
  in the cache (:mod:`attnlab.tools.hfcache`), local folders and files present,
  scratch and fine-tuned models trained already or to be trained by the workflow.

The exit code is 1 when a check ``FAIL``\\ s (something needed is missing), else 0.
A hub model or dataset missing from the cache fails when the config runs offline
(``prefetch.offline``, the default) and warns otherwise (the job would download it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from attnlab.tools.hfcache import (
    cached_dataset,
    cached_model_snapshot,
    datasets_cache_dir,
    hub_cache_dir,
    is_local_path,
)

__all__ = ["Check", "run_checks", "register"]

OK, WARN, FAIL = "ok", "warn", "FAIL"

#: distribution name -> whether it is needed (missing = FAIL) or optional (missing = warn)
PACKAGES: dict[str, bool] = {
    "torch": True,
    "transformers": True,
    "tokenizers": True,
    "huggingface_hub": True,
    "datasets": True,
    "pandas": True,
    "pyarrow": True,
    "snakemake": True,
    "snakemake-executor-plugin-slurm": False,
}
MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    section: str
    item: str
    status: str
    detail: str


def _version_checks() -> list[Check]:
    checks = []
    py_ok = sys.version_info[:2] >= MIN_PYTHON
    checks.append(Check("versions", "python", OK if py_ok else FAIL,
                        f"{platform.python_version()} ({sys.executable})"
                        + ("" if py_ok else f"; needs >= {'.'.join(map(str, MIN_PYTHON))}")))
    for dist, needed in PACKAGES.items():
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            hint = "pip install snakemake-executor-plugin-slurm (only for --executor slurm)" if not needed else f"pip install {dist}"
            checks.append(Check("versions", dist, FAIL if needed else WARN, f"not installed; {hint}"))
            continue
        checks.append(Check("versions", dist, OK, version))
    return checks


def _memory_gib() -> tuple[float | None, float | None]:
    """(total, available) system memory in GiB from /proc/meminfo (None where unknown)."""
    try:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            fields[key] = int(rest.split()[0]) / 2**20
        return fields.get("MemTotal"), fields.get("MemAvailable")
    except (OSError, ValueError, IndexError):
        return None, None


def _device_checks(requested: str | None) -> list[Check]:
    import torch

    checks = []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    total, available = _memory_gib()
    memory = f"; memory {total:.1f} GiB total, {available:.1f} GiB available" if total and available else ""
    checks.append(Check("devices", "cpu", OK, f"{cores} cores for this process; torch threads {torch.get_num_threads()}{memory}"))
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index in range(n_gpus):
        props = torch.cuda.get_device_properties(index)
        free, total_b = torch.cuda.mem_get_info(index)
        bf16 = "bf16" if torch.cuda.is_bf16_supported() else "no bf16"
        checks.append(Check("devices", f"cuda:{index}", OK,
                            f"{props.name}; {total_b / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free; {bf16}"))
    if n_gpus == 0:
        wants_gpu = requested is not None and requested.startswith("cuda")
        checks.append(Check("devices", "cuda", FAIL if wants_gpu else OK,
                            f"no CUDA GPU visible (torch {torch.__version__})"
                            + (f"; the config asks for device {requested!r}" if wants_gpu else "; jobs run on the CPU")))
    elif requested is not None and requested.startswith("cuda:") and int(requested.split(":")[1]) >= n_gpus:
        checks.append(Check("devices", requested, FAIL, f"the config asks for {requested} but {n_gpus} GPU(s) are visible"))
    return checks


def _offline(config: Mapping[str, Any] | None) -> bool:
    if config is not None:
        return bool((config.get("prefetch") or {}).get("offline", True))
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def _cache_root(config: Mapping[str, Any] | None, base_dir: Path) -> Path | None:
    root = (config or {}).get("prefetch", {}).get("hf_cache_dir") if config else None
    return None if root is None else (base_dir / root)


def _cache_checks(config: Mapping[str, Any] | None, base_dir: Path) -> list[Check]:
    root = _cache_root(config, base_dir)
    hub, data = hub_cache_dir(root), datasets_cache_dir(root)
    env_offline = os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}
    mode = "jobs run offline (prefetch.offline)" if _offline(config) else "jobs may download (prefetch.offline: false)"
    return [
        Check("cache", "hub cache", OK, f"{hub}{'' if hub.is_dir() else ' (does not exist yet)'}"),
        Check("cache", "datasets cache", OK, f"{data}{'' if data.is_dir() else ' (does not exist yet)'}"),
        Check("cache", "network", OK, f"HF_HUB_OFFLINE is {'set' if env_offline else 'not set'} in this shell; {mode}"),
    ]


def _prefetch_hint(configfile: str | None) -> str:
    return f"run `attnlab prefetch --config {configfile or 'YOUR_CONFIG.yaml'}` on a machine with network"


def _model_checks(config: Mapping[str, Any], configfile: str | None, base_dir: Path, results: Path) -> list[Check]:
    from attnlab.study.selections import model_variants

    checks = []
    offline = _offline(config)
    root = _cache_root(config, base_dir)
    names = model_variants(config, list(config["models"]))
    for name in names:
        spec = config["models"].get(name)
        if spec is None or spec["source"] == "scratch":
            folder = results / "models" / name
            kind = "scratch model" if spec is not None else "derived model (fine-tuned)"
            if (folder / "config.json").is_file():
                checks.append(Check("models", name, OK, f"{kind}, trained: {folder}"))
            else:
                checks.append(Check("models", name, OK, f"{kind}, not trained yet: the workflow builds {folder}"))
            continue
        location = spec["id"]
        if is_local_path(location):
            folder = base_dir / location
            status = OK if (folder / "config.json").is_file() else FAIL
            checks.append(Check("models", name, status, f"local folder {folder}"
                                + ("" if status == OK else " has no config.json (not a save_pretrained folder)")))
            continue
        subfolder = spec.get("subfolder")
        label = f"hub {location}@{spec.get('revision', 'main')}" + (f" sub-folder {subfolder}" if subfolder else "")
        snapshot = cached_model_snapshot(location, spec.get("revision", "main"), hub_cache_dir(root), subfolder)
        if snapshot is not None:
            checks.append(Check("models", name, OK, f"{label}: cached, commit {snapshot.name}"))
        else:
            checks.append(Check("models", name, FAIL if offline else WARN,
                                f"{label}: not in the cache {hub_cache_dir(root)}; " + _prefetch_hint(configfile)))
    return checks


def _dataset_checks(config: Mapping[str, Any], configfile: str | None, base_dir: Path) -> list[Check]:
    checks = []
    offline = _offline(config)
    root = _cache_root(config, base_dir)
    for name, spec in config["datasets"].items():
        if "hub_id" in spec:
            folder = cached_dataset(spec["hub_id"], spec.get("hub_config"), datasets_cache_dir(root))
            if folder is not None:
                checks.append(Check("datasets", name, OK, f"hub {spec['hub_id']} ({spec.get('hub_config')}): cached in {folder}"))
            else:
                checks.append(Check("datasets", name, FAIL if offline else WARN,
                                    f"hub {spec['hub_id']} ({spec.get('hub_config')}): not in the cache "
                                    f"{datasets_cache_dir(root)}; " + _prefetch_hint(configfile)))
            continue
        paths = [spec[k] for k in ("test_path", "train_path", "templates") if k in spec]
        missing = [p for p in paths if not (base_dir / p).is_file()]
        if missing:
            checks.append(Check("datasets", name, FAIL, f"missing file(s): {', '.join(missing)}"))
        elif paths:
            checks.append(Check("datasets", name, OK, f"loader {spec['loader']}: local file(s) {', '.join(paths)}"))
        else:
            checks.append(Check("datasets", name, OK, f"loader {spec['loader']}: generated locally, nothing to fetch"))
    return checks


def run_checks(
    configfile: str | os.PathLike[str] | None,
    *,
    base_dir: str | os.PathLike[str] = ".",
    results: str | os.PathLike[str] = "results",
) -> list[Check]:
    """Every check of the report, in order (see the module docstring)."""
    from attnlab.config import validate_config
    from attnlab.study.schema import ConfigError, load_yaml

    base = Path(base_dir)
    config = None
    config_checks: list[Check] = []
    if configfile is not None:
        try:
            config = validate_config(load_yaml(configfile), base_dir=base)
            config_checks.append(Check("config", str(configfile), OK, f"valid (study {config['study']!r})"))
        except (ConfigError, OSError) as err:
            config_checks.append(Check("config", str(configfile), FAIL, str(err).replace("\n", " ")))
    else:
        config_checks.append(Check("config", "-", WARN, "no config given and no ./config.yaml: models and datasets not checked"))
    checks = _version_checks() + _device_checks(config["device"] if config else None) + _cache_checks(config, base)
    checks += config_checks
    if config is not None:
        label = None if configfile is None else os.fspath(configfile)
        checks += _model_checks(config, label, base, base / results)
        checks += _dataset_checks(config, label, base)
    return checks


def format_table(checks: Sequence[Check]) -> str:
    """The report as an aligned text table."""
    rows = [("section", "item", "status", "detail")] + [(c.section, c.item, c.status, c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row[:3])) + "  " + row[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
    return "\n".join(lines)


def _handle(args: argparse.Namespace) -> int:
    configfile = args.config
    if configfile is None and Path("config.yaml").is_file():
        configfile = "config.yaml"
    checks = run_checks(configfile, base_dir=args.base_dir, results=args.results)
    failed = [c for c in checks if c.status == FAIL]
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print(format_table(checks))
        print()
        print(f"{len(failed)} problem(s): " + "; ".join(f"{c.section} {c.item}" for c in failed) if failed
              else "everything needed is in place")
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``attnlab doctor``."""
    parser = subparsers.add_parser(
        "doctor",
        help="check versions, devices, the config and that its models and datasets are available offline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="the study config (default ./config.yaml if present)")
    parser.add_argument("--base-dir", default=".", help="the workflow's working directory (relative paths, results/)")
    parser.add_argument("--results", default="results", help="results folder relative to --base-dir")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(func=_handle)
