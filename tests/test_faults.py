"""The failure-injection hook (talltales.faults) used by the retry/resume tests on Slurm."""

from __future__ import annotations

import pytest

from talltales.faults import InjectedFailure, maybe_fail


def test_fails_the_first_n_attempts_of_matching_jobs_only(tmp_path):
    spec = {"sft": {"times": 2, "wildcards": {"level": "100"}}}
    for attempt in (1, 2):
        with pytest.raises(InjectedFailure, match=rf"fault_injection\.sft: injected failure {attempt} of 2"):
            maybe_fail(spec, "sft", {"policy": "m", "level": "100"}, tmp_path)
    maybe_fail(spec, "sft", {"policy": "m", "level": "100"}, tmp_path)  # third attempt runs
    maybe_fail(spec, "sft", {"policy": "m", "level": "0"}, tmp_path)  # other wildcards: never
    maybe_fail(spec, "rl", {"policy": "m", "level": "100"}, tmp_path)  # other rule: never
    maybe_fail(None, "sft", {}, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["sft-level=100-policy=m.failed"]


def test_unknown_rule_is_a_config_error(tmp_path):
    from conftest import make_config, snakemake, write_config

    write_config(tmp_path, make_config(tmp_path, fault_injection={"sfft": {"times": 1}}))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "config key fault_injection: unknown rule(s) sfft" in proc.stdout + proc.stderr
