"""Slurm: cancel what an interrupted or failed run left in the queue.

The Slurm executor plugin (2.8.0) cancels on interrupt only the jobs in its list of active jobs, and a job can be
missing from that list at that moment: the list is emptied while a status query runs and refilled after it, and a
submission is registered asynchronously after sbatch has returned. Such a job stays queued after Snakemake has
exited. The plugin names every job of a run after the run's ID (``--job-name``) and logs that ID, so the
workflow's ``onerror`` handler cancels, by that name, whatever of this run is still queued or running: at that
point Snakemake has stopped waiting for any of them.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"SLURM run ID: (\S+)")


def run_id(logfiles: str | Path | Iterable[str | Path] | None) -> str | None:
    """The Slurm run ID the executor plugin logged in Snakemake's log file(s) (the ``log`` of an ``onerror``
    handler: a path, or a list of them), or None (not a Slurm run)."""
    if isinstance(logfiles, (str, Path)):
        logfiles = [logfiles]
    for path in logfiles or []:
        if Path(path).is_file() and (m := RUN_ID.search(Path(path).read_text(errors="replace"))):
            return m.group(1)
    return None


def cancel_run(logfiles: str | Path | Iterable[str | Path] | None) -> str | None:
    """``scancel --name`` the jobs of the Slurm run logged in ``logfiles``; the run ID, or None if there was none."""
    rid = run_id(logfiles)
    if rid is None or shutil.which("scancel") is None:
        return None
    proc = subprocess.run(["scancel", f"--name={rid}"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        log.warning("scancel --name=%s failed (%s): %s", rid, proc.returncode, proc.stderr.strip())
    else:
        log.info("cancelled any job of Slurm run %s still queued or running", rid)
    return rid


__all__ = ["cancel_run", "run_id"]
