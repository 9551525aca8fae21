"""Send a job's logging, warnings and progress bars (stderr) to the rule's ``log:`` file."""

from __future__ import annotations

import logging
import sys


def to_logfile(path: str | None) -> None:
    if path:
        fh = open(path, "a", buffering=1, encoding="utf-8")
        sys.stderr = fh
        sys.stdout = fh
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)


def start_job(smk) -> None:
    """The preamble of every workflow script: log to the rule's ``log:`` file, then the test hook
    ``TALLTALES_FAULTS`` (talltales.faults), which may fail this job before it does anything."""
    to_logfile(smk.log[0] if len(smk.log) else None)
    from .faults import load_spec, maybe_fail

    maybe_fail(load_spec(), smk.rule, dict(smk.wildcards.items()))
