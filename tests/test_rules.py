"""The workflow's rules in dry runs (cheap: no job runs)."""

from __future__ import annotations

from conftest import make_config, planned_rules, snakemake, write_config


def test_a_decimal_poisoning_level_plans_its_jobs(tmp_path):
    """deception.poisoning may hold decimals (the schema allows 12.5): the level's jobs are planned like any other's."""
    write_config(tmp_path, make_config(tmp_path, studies=("deception",), deception={"poisoning": [0, 12.5]}))
    rules = planned_rules(tmp_path, "all")
    for rule in ("deception_policy_data", "deception_sft", "deception_rl"):
        assert rules[rule] == 2, (rule, rules)
    out = snakemake(tmp_path, "-n", "all").stdout
    for path in ("results/deception/data/sft_p12.5.csv",
                 "results/deception/policies/sft/smollm2-135m-instruct/seed62/p12.5",
                 "results/deception/policies/rl/smollm2-135m-instruct/seed62/p12.5"):
        assert path in out, path
