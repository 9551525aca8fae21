"""Failure injection, a test hook for retries and resumption (config key ``fault_injection``).

``fault_injection: {RULE: {times: N, wildcards: {NAME: VALUE}}}`` makes the first N attempts of every job of RULE
whose wildcards match fail at its start, before any work. Attempts are counted in ``.talltales-faults/`` in the
working directory (shared by the jobs of a cluster run), so a retry of the same job, in the same run or a rerun,
sees the failures already spent. The key is read by the job itself, not passed as a rule param: adding or removing
it never makes a finished job stale.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

STATE_DIR = Path(".talltales-faults")


class InjectedFailure(RuntimeError):
    """The failure asked for by the config key ``fault_injection``."""


def _job_key(rule: str, wildcards: Mapping[str, Any]) -> str:
    key = rule + "".join(f"-{k}={v}" for k, v in sorted(wildcards.items()))
    return re.sub(r"[^A-Za-z0-9=._-]", "_", key)


def maybe_fail(spec: Mapping[str, Any] | None, rule: str, wildcards: Mapping[str, Any],
               state_dir: str | Path = STATE_DIR) -> None:
    """Raise :class:`InjectedFailure` if ``spec`` (the ``fault_injection`` section) asks this job to fail on
    this attempt; otherwise return."""
    entry = (spec or {}).get(rule)
    if not entry:
        return
    want = entry.get("wildcards") or {}
    if any(str(wildcards.get(k)) != str(v) for k, v in want.items()):
        return
    counter = Path(state_dir) / (_job_key(rule, wildcards) + ".failed")
    spent = int(counter.read_text()) if counter.exists() else 0
    if spent >= int(entry.get("times", 1)):
        return
    counter.parent.mkdir(parents=True, exist_ok=True)
    counter.write_text(str(spent + 1))
    raise InjectedFailure(f"config key fault_injection.{rule}: injected failure {spent + 1} of "
                          f"{entry.get('times', 1)} for job {_job_key(rule, wildcards)}")


__all__ = ["InjectedFailure", "STATE_DIR", "maybe_fail"]
