"""Config loading and checks: defaults are filled, and every mistake gives one ConfigError naming its key.

Configs are the repo's config.yaml, loaded with yaml and modified in a deep copy.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from talltales.config import ConfigError, load_config, model_entry, validate
from talltales.lm import spec_from_entry

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(REPO_CONFIG.read_text())


@pytest.fixture
def cfg(raw) -> dict:
    return copy.deepcopy(raw)


def error(config: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        validate(config)
    return str(exc.value)


def test_repo_config_loads(raw):
    cfg = load_config(REPO_CONFIG)
    assert set(cfg["models"]) == {"smollm2-135m-instruct", "gemma3-270m", "minilm-l6"}
    assert cfg["mwe"]["eval_models"] == raw["mwe"]["eval_models"]
    # schema defaults are filled into model entries
    assert cfg["models"]["gemma3-270m"]["dtype"] == "auto"
    assert cfg["models"]["gemma3-270m"]["max_retries"] == 6


def test_defaults_filled_when_omitted(cfg):
    for key in ("bootstrap", "classes", "eval_datasets", "datasets"):
        del cfg["mwe"][key]
    del cfg["mwe"]["longlist"]["seed"]
    del cfg["mwe"]["label_check"]["strict_threshold"]
    del cfg["paths"]
    out = validate(cfg)
    assert out["mwe"]["bootstrap"] == {"n": 2000, "seed": 0, "ci": 0.95}
    assert out["mwe"]["classes"] == [" Yes", " No"]
    assert out["mwe"]["eval_datasets"] == ["final", "final_strict"]
    assert out["mwe"]["datasets"] == {}
    assert out["mwe"]["longlist"]["seed"] == 1234
    assert out["mwe"]["label_check"]["strict_threshold"] == {" Yes": 0.6, " No": 0.5}
    assert out["mwe"]["harsh_check"]["rule"] == "calibrated"  # given in config.yaml, kept
    assert out["paths"] == {"models_dir": "resources/models", "cache": "resources/cache/responses.sqlite"}


def test_partial_section_gets_remaining_defaults(cfg):
    cfg["mwe"]["bootstrap"] = {"n": 300}
    out = validate(cfg)
    assert out["mwe"]["bootstrap"] == {"n": 300, "seed": 0, "ci": 0.95}


def test_sampling_defaults_filled_when_omitted(cfg):
    """longlist.sampling is a $ref to definitions/sampling, whose default must apply too."""
    del cfg["mwe"]["longlist"]["sampling"]
    out = validate(cfg)
    assert out["mwe"]["longlist"]["sampling"] == {"max_tokens": 48, "temperature": 0.8, "top_p": 1.0, "stop": ["\n"]}
    cfg2 = copy.deepcopy(cfg)
    cfg2["mwe"]["longlist"]["sampling"] = {"max_tokens": 10}
    assert validate(cfg2)["mwe"]["longlist"]["sampling"]["stop"] == ["\n"]


def test_defaults_are_independent_copies(raw):
    a, b = validate(copy.deepcopy(raw)), validate(copy.deepcopy(raw))
    a["mwe"]["longlist"]["sampling"]["stop"].append("X")
    a["models"]["gemma3-270m"]["extra_body"]["x"] = 1
    assert b["mwe"]["longlist"]["sampling"]["stop"] == raw["mwe"]["longlist"]["sampling"]["stop"]
    assert b["models"]["gemma3-270m"]["extra_body"] == {}


def test_unknown_eval_model(cfg):
    cfg["mwe"]["eval_models"] = ["gemma3-270m", "gpt-17"]
    msg = error(cfg)
    assert "mwe.eval_models[1]" in msg and "'gpt-17'" in msg
    assert "gemma3-270m, minilm-l6, smollm2-135m-instruct" in msg  # lists what the registry has


def test_unknown_generator(cfg):
    cfg["mwe"]["longlist"]["generator"] = "nope"
    msg = error(cfg)
    assert "mwe.longlist.generator" in msg and "'nope'" in msg


def test_unknown_checker(cfg):
    cfg["mwe"]["harsh_check"]["checker"] = "nope"
    assert "mwe.harsh_check.checker" in error(cfg)


def test_answer_index_out_of_range(cfg):
    cfg["mwe"]["longlist"]["prompts"][1]["answer_index"] = 2
    msg = error(cfg)
    assert "mwe.longlist.prompts[1].answer_index" in msg and "mwe.classes" in msg


def test_answer_index_in_range_of_more_classes(cfg):
    cfg["mwe"]["classes"] = [" Yes", " No", " Unknown"]
    cfg["mwe"]["longlist"]["prompts"][1]["answer_index"] = 2
    validate(cfg)


def test_threshold_for_unknown_class(cfg):
    cfg["mwe"]["label_check"]["strict_threshold"] = {" Yes": 0.6, " Maybe": 0.5}
    msg = error(cfg)
    assert "mwe.label_check.strict_threshold" in msg and "' Maybe'" in msg


@pytest.mark.parametrize("stage", ["label_check", "harsh_check", "eval"])
def test_template_without_prompt(cfg, stage):
    cfg["mwe"][stage]["template"] = "{body} Question:\nAssistant:"
    msg = error(cfg)
    assert f"mwe.{stage}.template" in msg and "{prompt}" in msg


def test_harsh_template_without_answer(cfg):
    cfg["mwe"]["harsh_check"]["template"] = "{body}{prompt}\nHarsh?:"
    msg = error(cfg)
    assert "mwe.harsh_check.template" in msg and "{answer}" in msg


def test_hf_model_without_location(cfg):
    cfg["models"]["bare"] = {"backend": "hf", "kind": "base", "params": 1e6}
    msg = error(cfg)
    assert "models.bare" in msg and "'path', 'id' or 'embedded'" in msg


def test_hf_model_with_unknown_embedded_package(cfg):
    cfg["models"]["bare"] = {"backend": "hf", "kind": "base", "embedded": "no-such-package"}
    assert "models.bare.embedded" in error(cfg)


def test_openai_model_without_base_url(cfg):
    cfg["models"]["api"] = {"backend": "openai", "kind": "base", "id": "davinci-002", "api_key_env": "K"}
    msg = error(cfg)
    assert "models.api.base_url" in msg


def test_openai_model_without_id(cfg):
    cfg["models"]["api"] = {"backend": "openai", "kind": "base", "base_url": "http://127.0.0.1:1/v1"}
    assert "models.api.id" in error(cfg)


def test_unknown_backend_is_an_error_naming_the_key(cfg):
    from talltales.config import SCHEMA_PATH, check
    from talltales.lm import BACKENDS

    cfg["models"]["api"] = {"backend": "vllm", "kind": "base", "id": "m", "base_url": "http://127.0.0.1:1/v1"}
    assert "models.api.backend" in error(copy.deepcopy(cfg))  # the schema
    # the cross-checks dispatch on the backend's name: an unknown one is not taken for openai
    good = validate(copy.deepcopy(cfg | {"models": {k: v for k, v in cfg["models"].items() if k != "api"}}))
    good["models"]["api"] = dict(cfg["models"]["api"])
    with pytest.raises(ConfigError, match=r"models\.api\.backend: unknown backend 'vllm'"):
        check(good)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert tuple(schema["definitions"]["model"]["properties"]["backend"]["enum"]) == BACKENDS


def test_valid_extra_models_pass(cfg):
    cfg["models"]["api"] = {"backend": "openai", "kind": "base", "id": "m", "base_url": "http://127.0.0.1:1/v1"}
    cfg["models"]["hub"] = {"backend": "hf", "kind": "base", "id": "EleutherAI/pythia-70m", "params": 7e7}
    cfg["mwe"]["eval_models"].append("hub")
    out = validate(cfg)
    assert out["models"]["api"]["endpoint"] == "completions"


@pytest.mark.parametrize(
    "where, key",
    [((), "bogus"), (("mwe",), "evals"), (("mwe", "eval"), "tmplate"), (("models", "gemma3-270m"), "quant")],
)
def test_unknown_key(cfg, where, key):
    node = cfg
    for w in where:
        node = node[w]
    node[key] = 1
    msg = error(cfg)
    assert f"'{key}' was unexpected" in msg
    assert f"config key {'.'.join(where) or '(top level)'}:" in msg


def test_schema_type_error_names_the_key(cfg):
    cfg["mwe"]["bootstrap"] = {"n": 10}
    msg = error(cfg)
    assert "config key mwe.bootstrap.n" in msg
    cfg2 = copy.deepcopy(cfg)
    cfg2["mwe"]["bootstrap"] = {"n": 2000}
    cfg2["models"]["gemma3-270m"]["kind"] = "chat"
    assert "config key models.gemma3-270m.kind" in error(cfg2)


def test_eval_dataset_names(cfg):
    cfg["mwe"]["eval_datasets"] = ["final", "mine"]
    assert "mwe.eval_datasets[1]" in error(cfg)
    cfg2 = copy.deepcopy(cfg)
    cfg2["mwe"]["eval_datasets"] = ["final"]
    cfg2["mwe"]["datasets"] = {"final": "x.jsonl"}
    assert "mwe.datasets.final" in error(cfg2)


def test_format_datasets_must_be_evaluated(cfg):
    cfg["mwe"]["eval_datasets"] = ["final"]
    cfg["mwe"]["negation"]["datasets"] = ["final"]
    cfg["mwe"]["eval"]["format_datasets"] = ["final", "final_strict"]
    assert "config key mwe.eval.format_datasets[1]: 'final_strict' is not an evaluated dataset" in error(cfg)
    cfg["mwe"]["eval"]["format_datasets"] = ["final"]
    assert validate(cfg)["mwe"]["eval"]["format_datasets"] == ["final"]


def test_load_config_errors_name_the_file(tmp_path, cfg):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    cfg["mwe"]["eval_models"] = ["x"]
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"mwe\.eval_models\[0\]"):
        load_config(f)


def test_model_entry_resolves_embedded_path(raw):
    cfg = validate(copy.deepcopy(raw))
    entry = model_entry(cfg, "gemma3-270m")
    assert entry["path"] == str(Path("resources/models") / "gemma3-270m")
    assert entry["name"] == "gemma3-270m"
    assert "path" not in cfg["models"]["gemma3-270m"]  # the registry itself is not modified
    spec = spec_from_entry(entry)
    assert (spec.name, spec.kind, spec.params, spec.location) == ("gemma3-270m", "base", 268098176, entry["path"])
    with pytest.raises(ConfigError, match="unknown model 'x'"):
        model_entry(cfg, "x")


def test_readme_model_registry_example_validates(cfg):
    """The model registry example in README.md, read from README.md itself, passes validation; its parameter
    counts (1.4e9, 175e9: strings to YAML) are stored as integers."""
    import re

    readme = (REPO_CONFIG.parent / "README.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "1.4e9" in b]
    assert len(blocks) == 1
    example = yaml.safe_load(blocks[0])
    assert isinstance(example["models"]["pythia-1.4b"]["params"], str)  # what PyYAML makes of 1.4e9
    cfg["models"].update(example["models"])
    out = validate(cfg)
    assert out["models"]["pythia-1.4b"]["params"] == 1_400_000_000
    assert out["models"]["davinci-002"]["params"] == 175_000_000_000
    assert out["models"]["my-local-model"]["params"] == 7_000_000_000
    assert all(type(m.get("params")) in (int, type(None)) for m in out["models"].values())


@pytest.mark.parametrize("text, count", [("7B", 7_000_000_000), ("1.3B", 1_300_000_000), ("135M", 135_000_000),
                                         ("1.4e9", 1_400_000_000), (" 8e9 ", 8_000_000_000), ("500k", 500_000)])
def test_params_written_as_text_are_counts(cfg, text, count):
    cfg["models"]["gemma3-270m"]["params"] = text
    assert validate(cfg)["models"]["gemma3-270m"]["params"] == count


def test_params_that_are_no_count_name_the_key(cfg):
    cfg["models"]["gemma3-270m"]["params"] = "7 billion"
    assert "models.gemma3-270m.params" in error(cfg)


def test_each_study_checks_its_own_section():
    """config.check runs a study's checks (talltales/STUDY/checks.py) only when its section is there."""
    import importlib

    from talltales import config as ttc

    cfg = yaml.safe_load(REPO_CONFIG.read_text())
    assert set(ttc.STUDY_CHECKS) == {"mwe", "deception"}
    for module in ttc.STUDY_CHECKS.values():
        assert callable(importlib.import_module(module).check)
    bad = copy.deepcopy(cfg)
    bad["deception"]["policies"] = ["no-such-model"]
    with pytest.raises(ttc.ConfigError, match=r"deception\.policies\[0\]"):
        ttc.validate(copy.deepcopy(bad))
    bad.pop("deception")
    ttc.validate(bad)  # without its section, study 2's checks do not run


def test_judge_over_several_nodes_is_refused():
    cfg = yaml.safe_load(REPO_CONFIG.read_text())
    cfg["deception"]["resources"]["judge"]["nodes"] = 2
    with pytest.raises(ConfigError, match=r"deception\.resources\.judge\.nodes"):
        validate(cfg)


def test_the_talltales_rl_engine_on_several_gpus_is_one_clear_error(tmp_path):
    """The project's RL step runs in one process: more than one GPU (or node) for RL needs engine trl."""
    from conftest import make_config

    from talltales.config import ConfigError, check

    for resources in ({"gpus": 2}, {"gpus": 2, "nodes": 2}):
        cfg = make_config(tmp_path, studies=("deception",), deception={"resources": {"rl": resources}})
        with pytest.raises(ConfigError, match=r"deception\.rl\.engine.*set deception\.rl\.engine: trl"):
            check(validate(cfg))
        cfg = make_config(tmp_path, studies=("deception",), deception={"resources": {"rl": resources},
                                                                       "rl": {"engine": "trl"}})
        check(validate(cfg))


def test_policy_settings_go_over_the_stage_section_for_that_policy_only(cfg):
    """deception.policy_settings.POLICY.STAGE: that policy's training stage gets those keys over deception.STAGE;
    the other policy keeps the section as it is."""
    from talltales.deception.checks import stage_settings

    first, second = cfg["deception"]["policies"][:2]
    cfg["deception"]["policy_settings"] = {first: {"rl": {"lr": 5.0e-5, "steps": 9}, "sft": {"epochs": 1}}}
    dec = validate(cfg)["deception"]
    assert stage_settings(dec, "rl", first) == {**dec["rl"], "lr": 5.0e-5, "steps": 9}
    assert stage_settings(dec, "sft", first)["epochs"] == 1
    assert stage_settings(dec, "rl", second) == dec["rl"] and stage_settings(dec, "warmup", first) == dec["warmup"]
    assert dec["rl"]["lr"] != 5.0e-5  # the section itself is unchanged


def test_policy_settings_take_numbers_yaml_reads_as_text_and_check_the_rl_engine_per_policy(cfg):
    from talltales.deception.checks import stage_settings

    first, second = cfg["deception"]["policies"][:2]
    cfg["deception"]["policy_settings"] = yaml.safe_load(f"{first}: {{rl: {{lr: 1e-5}}}}")
    assert stage_settings(validate(copy.deepcopy(cfg))["deception"], "rl", first)["lr"] == 1e-5
    cfg["deception"]["rl"]["engine"] = "trl"
    cfg["deception"]["resources"]["rl"] = {"gpus": 2}
    validate(copy.deepcopy(cfg))  # trl for both policies
    cfg["deception"]["policy_settings"] = {second: {"rl": {"engine": "talltales"}}}
    assert error(cfg).startswith(f"config key deception.policy_settings.{second}.rl.engine: the talltales engine")


@pytest.mark.parametrize("override, message", [
    ({"no-such-policy": {"rl": {"lr": 1e-5}}}, r"policy_settings\.no-such-policy: .* not one of deception\.policies"),
    ({"{first}": {"rl": {"learning_rate": 1e-5}}}, r"policy_settings\.{first}\.rl\.learning_rate: not a key of "
                                                   r"deception\.rl \(known: .*\blr\b"),
    ({"{first}": {"rl": {"prompts": 10}}}, r"policy_settings\.{first}\.rl\.prompts: a data size"),
    ({"{first}": {"sft": {"size": 10}}}, r"policy_settings\.{first}\.sft\.size: a data size"),
    ({"{first}": {"rl": {"steps": 0}}}, r"policy_settings\.{first}\.rl\.steps: 0 is less than the minimum of 1"),
    ({"{first}": {"judge": {"epochs": 2}}}, r"policy_settings\.{first}: Additional properties"),
])
def test_policy_settings_errors_name_the_key(cfg, override, message):
    first = cfg["deception"]["policies"][0]
    cfg["deception"]["policy_settings"] = {k.replace("{first}", first): v for k, v in override.items()}
    assert re.search(message.replace("{first}", re.escape(first)), error(cfg)), error(cfg)


def test_a_number_yaml_reads_as_text_is_taken_as_the_number(cfg):
    """PyYAML (YAML 1.1) reads 1e-4 and 1e3 as strings: a key that takes a number gets the number; text that is no
    number is still an error naming the key."""
    text = yaml.safe_load("rl: {lr: 1e-4, steps: 1e1}\nsft: {lr: 2E-5}")
    assert text["rl"]["lr"] == "1e-4"  # what YAML makes of it
    cfg["deception"]["rl"].update(text["rl"])
    cfg["deception"]["sft"].update(text["sft"])
    dec = validate(cfg)["deception"]
    assert dec["rl"]["lr"] == 1e-4 and dec["rl"]["steps"] == 10 and isinstance(dec["rl"]["steps"], int)
    assert dec["sft"]["lr"] == 2e-5
    cfg["deception"]["rl"]["lr"] = "1e-4x"
    assert "config key deception.rl.lr: '1e-4x' is not of type 'number'" in error(cfg)


@pytest.mark.parametrize("section, key", [("rl", "lr"), ("sft", "lr"), ("warmup", "lr"), ("judge", "lr"),
                                          ("rl", "steps"), ("sft", "size"), ("judge", "epochs")])
def test_learning_rates_sizes_and_steps_must_be_positive(cfg, section, key):
    cfg["deception"][section][key] = 0
    assert re.search(rf"^config key deception\.{section}\.{key}: 0 is less than (or equal to )?the minimum of",
                     error(cfg)), error(cfg)


def test_messages_name_the_key_once_in_one_style(cfg, tmp_path):
    """No "config: config key" doubling; list items as key[i], the style of the cross-reference checks."""
    cfg["deception"]["poisoning"] = [0, "x"]
    assert error(cfg).startswith("config key deception.poisoning[1]: 'x' is not of type")
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(f))}: config key deception\.poisoning\[1\]: "):
        load_config(f)


@pytest.mark.parametrize("study, other", [("deception", "mwe"), ("mwe", "deception")])
def test_a_study_set_to_null_is_left_out(cfg, study, other):
    """`STUDY: null` in a --configfile over config.yaml: that study is left out, the other keeps its defaults."""
    cfg[study] = None
    out = validate(cfg)
    assert study not in out and out[other]


def test_files_named_in_config_must_exist(cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg["mwe"]["datasets"] = {"mine": "lists/mine.jsonl"}
    msg = error(copy.deepcopy(cfg))
    assert msg.startswith("config key mwe.datasets.mine: no file 'lists/mine.jsonl' (relative to the working "
                          f"directory {tmp_path})"), msg
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "mine.jsonl").write_text("{}\n")
    validate(copy.deepcopy(cfg))
    cfg["deception"]["fruit"].update(source="file", file=str(tmp_path / "fruit.csv"))
    assert error(copy.deepcopy(cfg)).startswith(f"config key deception.fruit.file: no file '{tmp_path / 'fruit.csv'}'")
    cfg["deception"]["fruit"].update(source="synthetic", file=None)
    cfg["models"]["local"] = {"backend": "hf", "path": "no/such/folder", "kind": "base"}
    validate(copy.deepcopy(cfg))  # an entry no stage uses is not checked
    cfg["mwe"]["eval_models"].append("local")
    msg = error(cfg)
    assert msg.startswith("config key models.local.path: no folder 'no/such/folder'") and "mwe.eval_models[" in msg


def test_an_encoder_cannot_be_an_evaluated_or_generating_model(cfg):
    cfg["mwe"]["eval_models"].append("minilm-l6")
    assert re.search(r"^config key mwe\.eval_models\[\d+\]: 'minilm-l6' is an encoder", error(copy.deepcopy(cfg)))
    cfg["mwe"]["eval_models"].pop()
    cfg["mwe"]["label_check"]["checker"] = "minilm-l6"
    assert error(cfg).startswith("config key mwe.label_check.checker: 'minilm-l6' is an encoder")
