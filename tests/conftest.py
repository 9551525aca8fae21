"""Shared fixtures: real Snakemake runs of the repository's workflow in temporary working directories."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from talltales import config as ttc

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
# Materialized embedded models are shared by all tests (and with a default run in the checkout).
MODELS_DIR = Path(os.environ.get("TALLTALES_TEST_MODELS", REPO / "resources" / "models"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random-init causal LM with its tokenizer, saved once per test module (tests/tiny.py)."""
    from tiny import make_model, make_tokenizer

    path = tmp_path_factory.mktemp("tiny_policy")
    tok = make_tokenizer()
    make_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


deep_update = ttc.deep_merge  # how --configfile merges a file over config.yaml


def interruptible() -> None:
    """In the child: SIGINT at its default, so Python raises KeyboardInterrupt on it even when these tests run
    where SIGINT is ignored (a shell starts background commands so, and a child inherits the ignoring)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_config(workdir: Path, studies: tuple[str, ...] = ("mwe",), **overrides) -> dict:
    """The repository's config.yaml + tests/config/config.yaml + ``overrides``, with paths in ``workdir``,
    keeping the sections of ``studies`` ("mwe", "deception")."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg = deep_update(cfg, yaml.safe_load((REPO / "tests" / "config" / "config.yaml").read_text()))
    for study in ("mwe", "deception"):
        if study not in studies:
            cfg.pop(study, None)
    cfg = deep_update(cfg, {"paths": {"models_dir": str(MODELS_DIR), "cache": str(workdir / "cache.sqlite")}})
    return deep_update(cfg, overrides)


def write_config(workdir: Path, cfg: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1800,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real workflow in ``workdir`` (which holds its config.yaml); ``env``: variables added to ours."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), "-c2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_rules(workdir: Path, *targets: str) -> dict[str, int]:
    """Rules (with job counts) a dry run would execute."""
    proc = snakemake(workdir, "-n", *targets)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    m = re.search(r"Job stats:\n(.*?)\n\n", out, re.S)
    assert m, out[-3000:]
    rules = {}
    for line in m.group(1).splitlines()[2:]:
        parts = line.split()
        if len(parts) == 2 and parts[0] != "total":
            rules[parts[0]] = int(parts[1])
    return rules


# ------------------------------------------------------------------------------------------ Slurm cluster

SLURM_CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_BINARIES = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd")


@dataclass
class SlurmCluster:
    """The single-node cluster of tests/slurm/cluster.sh: ``env`` is os.environ plus SLURM_CONF (pass it to
    every Slurm command and to Snakemake); partitions ``cpu`` (default) and ``gpu``; ``gpus`` fake GPUs."""

    env: dict = field(repr=False)
    state_dir: Path
    gpus: int
    account: str = "talltales"

    def run(self, *cmd: str, check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc


def _slurm_installable() -> str | None:
    """Why Slurm cannot be brought up here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the Slurm test cluster needs root (its daemons run as root; packages come from apt-get)"
    have = all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in SLURM_BINARIES)
    if not have and shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it (Debian/Ubuntu only)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """A real Slurm 22.05 cluster on 127.0.0.1 (slurmctld, slurmd, slurmdbd + MariaDB, munged), set up by
    ``tests/slurm/cluster.sh setup`` (installs the Debian packages when missing, ~45 s the first time, ~2 s when
    it is already up) and left running after the session. Skips only where it cannot be installed; any other
    setup failure is a test error."""
    reason = _slurm_installable()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(["bash", str(SLURM_CLUSTER_SH), "setup"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"tests/slurm/cluster.sh setup failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    exports = subprocess.run(["bash", str(SLURM_CLUSTER_SH), "env"], capture_output=True, text=True, check=True)
    env = dict(os.environ)
    for line in exports.stdout.splitlines():
        m = re.fullmatch(r"export (\w+)=(.*)", line.strip())
        if m:
            env[m.group(1)] = shlex.split(m.group(2))[0]
    return SlurmCluster(env=env, state_dir=Path(env["TALLTALES_SLURM_DIR"]),
                        gpus=int(os.environ.get("TALLTALES_SLURM_GPUS", "8")))
