"""Study 2's cross-reference checks of its config section ``deception`` (run by :func:`talltales.config.check`)."""

from __future__ import annotations

from typing import Any

from ..config import SCHEMA_PATH, ConfigError, number_from_text, existing_path, key_path, model_ref

# the keys of the stages deception.policy_settings may not set per policy (data shared by all policies); the schema
# names the stages it may set (warmup, sft, rl)
SHARED_KEYS = {"warmup": {"size"}, "sft": {"size"}, "rl": {"prompts", "eval_prompts"}}


def _overrides(dec: dict[str, Any], policy: str | None) -> dict[str, Any]:
    """``deception.policy_settings.POLICY`` ({} for none)."""
    return ((dec.get("policy_settings") or {}).get(policy) or {}) if policy is not None else {}


def stage_settings(dec: dict[str, Any], stage: str, policy: str) -> dict[str, Any]:
    """The settings of ``stage`` (warmup / sft / rl) for ``policy``: the section ``deception.STAGE`` with
    ``deception.policy_settings.POLICY.STAGE`` over it."""
    return {**dec[stage], **_overrides(dec, policy).get(stage, {})}


def techniques(dec: dict[str, Any], policy: str) -> list[str]:
    """What ``policy`` is trained with (``deception.policy_settings.POLICY.techniques``; default sft and rl)."""
    return list(_overrides(dec, policy).get("techniques") or ["sft", "rl"])


def stage_resources(dec: dict[str, Any], stage: str, policy: str | None = None) -> dict[str, Any]:
    """What training stage ``stage`` (judge / warmup / sft / rl) asks for: ``deception.resources.STAGE`` with
    ``deception.policy_settings.POLICY.resources.STAGE`` over it (keys left out: the schema's defaults)."""
    per_policy = _overrides(dec, policy).get("resources") or {}
    return {**(dec.get("resources") or {}).get(stage, {}), **(per_policy.get(stage) or {})}


def _check_policy_settings(dec: dict[str, Any]) -> None:
    import jsonschema
    import yaml

    overrides = dec.get("policy_settings") or {}
    if not overrides:
        return
    sections = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["deception"]["properties"]
    for policy, stages in overrides.items():
        key = f"deception.policy_settings.{policy}"
        if policy not in dec["policies"]:
            raise ConfigError(f"config key {key}: {policy!r} is not one of deception.policies ({dec['policies']})")
        for stage, values in stages.items():
            if stage in ("resources", "techniques"):  # checked by the schema
                continue
            props = sections[stage]["properties"]
            for name in values:
                if name in SHARED_KEYS[stage]:
                    raise ConfigError(f"config key {key}.{stage}.{name}: a data size, shared by all policies; set "
                                      f"it in deception.{stage}")
                if name not in props:
                    raise ConfigError(f"config key {key}.{stage}.{name}: not a key of deception.{stage} (known: "
                                      f"{', '.join(sorted(set(props) - SHARED_KEYS[stage]))})")
            for name in values:  # numbers YAML reads as text, as in the sections
                values[name] = number_from_text(values[name], props[name])
            sub = {"type": "object", "properties": {k: props[k] for k in values}}
            for error in jsonschema.Draft202012Validator(sub).iter_errors(values):
                raise ConfigError(f"config key {key_path([*key.split('.'), stage, *error.absolute_path])}: "
                                  f"{error.message}")


def check(config: dict[str, Any]) -> None:
    dec = config["deception"]
    _check_policy_settings(dec)
    backbone = dec["judge"]["backbone"]
    model_ref(config, "deception.judge.backbone", backbone)
    if config["models"][backbone]["backend"] != "hf":
        raise ConfigError(
            f"config key deception.judge.backbone: {backbone!r} uses the {config['models'][backbone]['backend']!r} "
            "backend; a judge is a sequence classifier trained locally and needs an hf model"
        )
    for i, name in enumerate(dec["policies"]):
        model_ref(config, f"deception.policies[{i}]", name)
        entry = config["models"][name]
        if entry["backend"] != "hf" or entry["kind"] == "encoder":
            raise ConfigError(
                f"config key deception.policies[{i}]: {name!r} must be a generative hf model (got backend "
                f"{entry['backend']!r}, kind {entry['kind']!r})"
            )
    for i, level in enumerate(dec["poisoning"]):
        if not 0 <= level <= 100:
            raise ConfigError(f"config key deception.poisoning[{i}]: {level} is outside [0, 100] (percent of fruit items)")
    if len(set(dec["poisoning"])) != len(dec["poisoning"]):
        raise ConfigError(f"config key deception.poisoning: levels must be unique, got {dec['poisoning']}")
    if dec["mrc"]["answerability"]["model"]:
        model_ref(config, "deception.mrc.answerability.model", dec["mrc"]["answerability"]["model"])
    if dec["fruit"]["source"] == "file" and not dec["fruit"]["file"]:
        raise ConfigError("config key deception.fruit.file: required when deception.fruit.source is 'file'")
    if dec["fruit"]["source"] == "lm":
        if not dec["fruit"]["generator"]:
            raise ConfigError("config key deception.fruit.generator: required when deception.fruit.source is 'lm'")
        model_ref(config, "deception.fruit.generator", dec["fruit"]["generator"])
    if dec["mrc"]["source"] == "file" and not (dec["mrc"]["train_file"] and dec["mrc"]["val_file"]):
        raise ConfigError("config keys deception.mrc.train_file and val_file: required when deception.mrc.source is 'file'")
    if dec["fruit"]["source"] == "file":
        existing_path("deception.fruit.file", dec["fruit"]["file"])
    if dec["mrc"]["source"] == "file":
        for name in ("train_file", "val_file"):
            existing_path(f"deception.mrc.{name}", dec["mrc"][name])
    if (dec.get("resources", {}).get("judge") or {}).get("nodes", 1) > 1:
        raise ConfigError(
            "config key deception.resources.judge.nodes: a judge trains on one node (gpus on that node may be > 1)"
        )
    for policy in dec["policies"]:
        rl_res = stage_resources(dec, "rl", policy)
        engine = stage_settings(dec, "rl", policy).get("engine", "talltales")
        if engine == "talltales" and (rl_res.get("gpus", 0) > 1 or rl_res.get("nodes", 1) > 1):
            where = ("deception.rl.engine" if dec["rl"].get("engine", "talltales") == "talltales"
                     else f"deception.policy_settings.{policy}.rl.engine")
            raise ConfigError(
                f"config key {where}: the talltales engine runs in one process (CPU or one GPU); with "
                f"deception.resources.rl gpus={rl_res.get('gpus', 0)}, nodes={rl_res.get('nodes', 1)} set "
                "deception.rl.engine: trl"
            )
