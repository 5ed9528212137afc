"""A real single-node SLURM cluster on localhost, for the SLURM workflow test.

Starts munged, slurmctld and slurmd (Debian's slurm-wlm and munge packages) with
a ``slurm.conf`` written for this machine's cores and memory, and stops exactly
the daemons it started, by pid. Facts this relies on (measured, see
``shared/notes/slurm-single-node.md``):

- the config must be at ``/etc/slurm/slurm.conf`` (with ``SLURM_CONF`` elsewhere
  the ``srun`` inside batch jobs cannot find a configuration source), so an
  existing file is moved aside and restored afterwards;
- there is no accounting (no slurmdbd): the executor plugin must query job
  status with ``squeue`` (``--slurm-status-command squeue``); ``MinJobAge`` keeps
  finished jobs visible to squeue long enough (300 s ≫ the status interval).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
DEBIAN_PACKAGES = ("slurm-wlm", "munge")


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]


def why_unavailable() -> str | None:
    """None when a cluster can be started here, else the reason (printed by the skipping test)."""
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    missing = missing_binaries()
    if missing:
        return (
            f"SLURM binaries not found: {', '.join(missing)} "
            f"(install with: apt-get install -y {' '.join(DEBIAN_PACKAGES)}; .ci/run does this)"
        )
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def node_line(hostname: str) -> str:
    """The NodeName line from ``slurmd -C``, with RealMemory a little below what is free."""
    detected = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    line = next(l for l in detected.splitlines() if l.startswith("NodeName="))
    fields = dict(part.split("=", 1) for part in line.split())
    fields["NodeName"] = hostname
    fields["RealMemory"] = str(int(int(fields["RealMemory"]) * 0.9))
    fields.pop("UpTime", None)
    return " ".join(f"{k}={v}" for k, v in fields.items())


def slurm_conf(scratch: Path, hostname: str) -> str:
    return "\n".join(
        [
            "ClusterName=attnlabtest",
            f"SlurmctldHost={hostname}(127.0.0.1)",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            "MinJobAge=300",
            "SchedulerType=sched/backfill",
            f"StateSaveLocation={scratch}/state",
            f"SlurmdSpoolDir={scratch}/spool",
            f"SlurmctldPidFile={scratch}/slurmctld.pid",
            f"SlurmdPidFile={scratch}/slurmd.pid",
            f"SlurmctldLogFile={scratch}/slurmctld.log",
            f"SlurmdLogFile={scratch}/slurmd.log",
            node_line(hostname),
            f"PartitionName=debug Nodes={hostname} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


@dataclass
class Cluster:
    scratch: Path
    started: dict[str, Path] = field(default_factory=dict)  # daemon -> pid file
    _moved_conf: Path | None = None
    _munge_dir: Path | None = None

    def start(self) -> None:
        hostname = socket.gethostname()
        for sub in ("state", "spool"):
            (self.scratch / sub).mkdir(parents=True, exist_ok=True)
        self._start_munged()
        if SLURM_CONF.exists():
            self._moved_conf = SLURM_CONF.with_name(f"slurm.conf.before-attnlab-test-{os.getpid()}")
            SLURM_CONF.rename(self._moved_conf)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(slurm_conf(self.scratch, hostname))
        for daemon in ("slurmctld", "slurmd"):
            proc = subprocess.run([_binary(daemon)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{daemon} did not start: {proc.stderr.strip()} (logs in {self.scratch})")
            self.started[daemon] = self.scratch / f"{daemon}.pid"
        self._wait_idle()

    def _start_munged(self) -> None:
        run_dir = Path("/run/munge")
        if (run_dir / "munge.socket.2").exists() and subprocess.run(
            ["pgrep", "-x", "munged"], capture_output=True
        ).returncode == 0:
            return  # a munged is already serving; not ours to stop
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        # munged runs as the munge user, which cannot enter pytest's private tmp folders
        munge_dir = Path(tempfile.mkdtemp(prefix="attnlab-munge-"))
        shutil.chown(munge_dir, "munge", "munge")
        self._munge_dir = munge_dir
        pid_file = munge_dir / "munged.pid"
        proc = subprocess.run(
            [
                "runuser", "-u", "munge", "--", _binary("munged"),
                f"--pid-file={pid_file}", f"--log-file={munge_dir}/munged.log",
                f"--seed-file={munge_dir}/munged.seed",
            ],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"munged did not start: {proc.stderr.strip()}")
        self.started["munged"] = pid_file

    def _wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run([_binary("sinfo"), "-h", "-o", "%T"], capture_output=True, text=True)
            state = proc.stdout.strip()
            if proc.returncode == 0 and state in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the SLURM node did not come up within {timeout} s (state {state!r}); logs in {self.scratch}")

    def stop(self) -> None:
        """Stop every daemon this cluster started, by pid, and restore /etc/slurm/slurm.conf."""
        for daemon in ("slurmd", "slurmctld", "munged"):
            pid_file = self.started.pop(daemon, None)
            if pid_file is None or not pid_file.exists():
                continue
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        if SLURM_CONF.exists():
            SLURM_CONF.unlink()
        if self._moved_conf is not None:
            self._moved_conf.rename(SLURM_CONF)
            self._moved_conf = None
        if self._munge_dir is not None:
            shutil.rmtree(self._munge_dir, ignore_errors=True)
            self._munge_dir = None
