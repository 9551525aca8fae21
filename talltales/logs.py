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
