"""The failure-injection hook (talltales.faults, environment variable TALLTALES_FAULTS) used by the retry/resume
tests on Slurm."""

from __future__ import annotations

import json

import pytest

from talltales.faults import ENV, FaultSpecError, InjectedFailure, load_spec, maybe_fail


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


def test_spec_is_json_text_or_a_yaml_file(tmp_path):
    spec = {"deception_rl": {"times": 2, "wildcards": {"level": 100}}}
    assert load_spec({}) is None and load_spec({ENV: ""}) is None
    assert load_spec({ENV: json.dumps(spec)}) == spec
    (tmp_path / "faults.yaml").write_text("deception_rl: {times: 2, wildcards: {level: 100}}\n")
    assert load_spec({ENV: str(tmp_path / "faults.yaml")}) == spec
    for bad in ("{not json", str(tmp_path / "missing.yaml"), '{"deception_rl": {"times": 0}}',
                '{"deception_rl": {"tiems": 1}}', '{"deception_rl": 3}'):
        with pytest.raises(FaultSpecError, match=ENV):
            load_spec({ENV: bad})


def test_unknown_rule_is_an_error_before_any_job(tmp_path):
    from conftest import make_config, snakemake, write_config

    write_config(tmp_path, make_config(tmp_path))
    proc = snakemake(tmp_path, "-n", check=False, env={ENV: json.dumps({"sfft": {"times": 1}})})
    assert proc.returncode != 0 and f"{ENV}: unknown rule(s) sfft" in proc.stdout + proc.stderr


def test_config_key_fault_injection_is_gone(tmp_path):
    from conftest import make_config, snakemake, write_config

    write_config(tmp_path, make_config(tmp_path, fault_injection={"mwe_eval": {"times": 1}}))
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "fault_injection" in proc.stdout + proc.stderr


def test_a_job_started_with_the_variable_fails_then_its_retry_runs(tmp_path):
    """The variable reaches the job (logs.start_job): its first attempt fails before any work, the rerun passes."""
    from conftest import make_config, snakemake, write_config

    write_config(tmp_path, make_config(tmp_path, studies=("deception",)))
    env = {ENV: json.dumps({"deception_fruit": {"times": 1}})}
    target = "results/deception/data/fruit_train.csv"
    proc = snakemake(tmp_path, target, check=False, env=env)
    assert proc.returncode != 0 and not (tmp_path / target).exists()
    log = (tmp_path / "logs/deception/data/fruit.log").read_text()
    assert "fault_injection.deception_fruit: injected failure 1 of 1" in log
    snakemake(tmp_path, target, env=env)
    assert (tmp_path / target).exists()
