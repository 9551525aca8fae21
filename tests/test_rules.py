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


def test_a_configfile_can_leave_a_study_out(tmp_path):
    """`deception: null` in a --configfile over the full config plans study 1 only (and `mwe: null` study 2 only);
    a number written 1e-4 in it is read as the number."""
    write_config(tmp_path, make_config(tmp_path, studies=("mwe", "deception")))
    both = planned_rules(tmp_path, "all")
    assert any(r.startswith("deception_") for r in both) and any(r.startswith("mwe_") for r in both)
    (tmp_path / "no_study2.yaml").write_text("deception: null\n")
    rules = planned_rules(tmp_path, "all", "--configfile", str(tmp_path / "no_study2.yaml"))
    assert rules and not any(r.startswith("deception_") for r in rules) and "mwe_eval" in rules, rules
    (tmp_path / "no_study1.yaml").write_text("mwe: null\ndeception: {rl: {lr: 1e-4}}\n")
    rules = planned_rules(tmp_path, "all", "--configfile", str(tmp_path / "no_study1.yaml"))
    assert "deception_rl" in rules and not any(r.startswith("mwe") for r in rules), rules
