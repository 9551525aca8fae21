"""Failure injection, a test hook for retries and resumption (environment variable ``TALLTALES_FAULTS``).

``TALLTALES_FAULTS`` holds, as JSON, or names a YAML/JSON file holding ``{RULE: {times: N, wildcards: {NAME:
VALUE}}}``: the first N attempts of every job of RULE whose wildcards match fail at its start, before any work
(:func:`talltales.logs.start_job` reads the variable once per job). Attempts are counted in ``.talltales-faults/``
in the working directory (shared by the jobs of a cluster run), so a retry of the same job, in the same run or a
rerun, sees the failures already spent. The hook is no part of the config: setting or unsetting it never makes a
finished job stale. The workflow checks at parse time that it names only its own rules (:func:`check_rules`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

ENV = "TALLTALES_FAULTS"
STATE_DIR = Path(".talltales-faults")


class InjectedFailure(RuntimeError):
    """The failure asked for by ``TALLTALES_FAULTS``."""


class FaultSpecError(ValueError):
    """``TALLTALES_FAULTS`` is not a valid spec."""


def load_spec(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The spec in ``TALLTALES_FAULTS`` (JSON text, or the path of a YAML/JSON file), or None when it is unset."""
    text = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not text:
        return None
    try:
        spec = json.loads(text) if text.startswith("{") else yaml.safe_load(Path(text).read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise FaultSpecError(f"{ENV}: neither JSON nor a readable YAML/JSON file: {e}") from e
    if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
        raise FaultSpecError(f"{ENV}: expected {{RULE: {{times: N, wildcards: {{...}}}}}}, got {spec!r}")
    for rule, entry in spec.items():
        if set(entry) - {"times", "wildcards"} or not isinstance(entry.get("times", 1), int) \
                or entry.get("times", 1) < 1 or not isinstance(entry.get("wildcards") or {}, dict):
            raise FaultSpecError(f"{ENV}: {rule}: expected {{times: N >= 1, wildcards: {{NAME: VALUE}}}}, got {entry!r}")
    return spec


def check_rules(spec: Mapping[str, Any] | None, rule_names: Iterable[str]) -> None:
    """Raise :class:`FaultSpecError` if ``spec`` names a rule not in ``rule_names`` (a typo would inject nothing)."""
    names = set(rule_names)
    unknown = sorted(set(spec or {}) - names)
    if unknown:
        raise FaultSpecError(f"{ENV}: unknown rule(s) {', '.join(unknown)}; rules of this workflow: "
                             f"{', '.join(sorted(names))}")


def _job_key(rule: str, wildcards: Mapping[str, Any]) -> str:
    key = rule + "".join(f"-{k}={v}" for k, v in sorted(wildcards.items()))
    return re.sub(r"[^A-Za-z0-9=._-]", "_", key)


def maybe_fail(spec: Mapping[str, Any] | None, rule: str, wildcards: Mapping[str, Any],
               state_dir: str | Path = STATE_DIR) -> None:
    """Raise :class:`InjectedFailure` if ``spec`` (see :func:`load_spec`) asks this job to fail on this attempt;
    otherwise return."""
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
    raise InjectedFailure(f"{ENV} fault_injection.{rule}: injected failure {spent + 1} of "
                          f"{entry.get('times', 1)} for job {_job_key(rule, wildcards)}")


__all__ = ["ENV", "FaultSpecError", "InjectedFailure", "STATE_DIR", "check_rules", "load_spec", "maybe_fail"]
