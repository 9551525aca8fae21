"""Study 1's cross-reference checks of its config section ``mwe`` (run by :func:`talltales.config.check`)."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, existing_path, model_ref

OWN_DATASETS = ("longlist", "shortlist", "shortlist_strict", "final", "final_strict")


def _language_model(config: dict[str, Any], key: str, name: str) -> None:
    """``key`` names a model that writes or answers text: in the registry, and not a sequence encoder."""
    model_ref(config, key, name)
    if config["models"][name].get("kind") == "encoder":
        raise ConfigError(f"config key {key}: {name!r} is an encoder (models.{name}.kind); this stage needs a "
                          "language model that answers (kind base or instruct)")


def check(config: dict[str, Any]) -> None:
    mwe = config["mwe"]
    classes = mwe["classes"]
    _language_model(config, "mwe.longlist.generator", mwe["longlist"]["generator"])
    for i, p in enumerate(mwe["longlist"]["prompts"]):
        if p["answer_index"] >= len(classes):
            raise ConfigError(
                f"config key mwe.longlist.prompts[{i}].answer_index: {p['answer_index']} is not an index of "
                f"mwe.classes {classes}"
            )
    ids = [p["id"] for p in mwe["longlist"]["prompts"]]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"config key mwe.longlist.prompts: prompt ids must be unique, got {ids}")
    for stage in ("label_check", "harsh_check"):
        _language_model(config, f"mwe.{stage}.checker", mwe[stage]["checker"])
    for label in mwe["label_check"]["strict_threshold"]:
        if label not in classes:
            raise ConfigError(
                f"config key mwe.label_check.strict_threshold: {label!r} is not one of mwe.classes {classes}"
            )
    if mwe["harsh_check"]["keep"] not in mwe["harsh_check"]["classes"]:
        raise ConfigError("config key mwe.harsh_check.keep: must be one of mwe.harsh_check.classes")
    for stage, needed in (("label_check", ["{prompt}"]), ("harsh_check", ["{prompt}", "{answer}"]), ("eval", ["{prompt}"])):
        for ph in needed:
            if ph not in mwe[stage]["template"]:
                raise ConfigError(f"config key mwe.{stage}.template: must contain the placeholder {ph}")
    for i, name in enumerate(mwe["eval_models"]):
        _language_model(config, f"mwe.eval_models[{i}]", name)
    for i, name in enumerate(mwe["eval_datasets"]):
        if name not in OWN_DATASETS:
            raise ConfigError(
                f"config key mwe.eval_datasets[{i}]: {name!r} is not one of the pipeline's lists {OWN_DATASETS}"
                " (use mwe.datasets: {NAME: PATH} for other files)"
            )
    for name in mwe["datasets"]:
        if name in OWN_DATASETS:
            raise ConfigError(f"config key mwe.datasets.{name}: the name is taken by the pipeline's own list")
        if name.endswith("_neg"):
            raise ConfigError(f"config key mwe.datasets.{name}: names ending in _neg are taken by negated twins "
                              "(mwe.negation)")
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"config key mwe.datasets.{name}: names may use letters, digits, '-' and '_' only")
        existing_path(f"mwe.datasets.{name}", mwe["datasets"][name])
    _check_negation(config, mwe)
    _evaluated_only(mwe, "mwe.eval.format_datasets", mwe["eval"]["format_datasets"] or [])
    for name, fmt in (mwe["eval"]["formats"] or {}).items():
        key = f"mwe.eval.formats.{name}"
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"config key {key}: format names may use letters, digits, '-' and '_' only")
        if len(fmt["classes"]) > len(classes) or len(set(fmt["classes"])) != len(fmt["classes"]):
            raise ConfigError(f"config key {key}.classes: needs distinct answer strings, one per class of mwe.classes "
                              f"{classes} in its order (at most {len(classes)}: the first ones); got {fmt['classes']}")
        if "{prompt}" not in fmt["template"]:
            raise ConfigError(f"config key {key}.template: must contain the placeholder {{prompt}}")


def _evaluated_only(mwe: dict[str, Any], key: str, names: list[str]) -> None:
    """Each of ``names`` (config key ``key``) must be an evaluated dataset."""
    evaluated = list(mwe["eval_datasets"]) + list(mwe["datasets"])
    for i, name in enumerate(names):
        if name not in evaluated:
            raise ConfigError(f"config key {key}[{i}]: {name!r} is not an evaluated dataset "
                              f"(mwe.eval_datasets or mwe.datasets: {evaluated})")


def _check_negation(config: dict[str, Any], mwe: dict[str, Any]) -> None:
    neg = mwe["negation"]
    _evaluated_only(mwe, "mwe.negation.datasets", neg["datasets"])
    if neg["source"] == "lm":
        if neg["generator"] is not None:
            _language_model(config, "mwe.negation.generator", neg["generator"])
        if "{prompt}" not in neg["prompt"]:
            raise ConfigError("config key mwe.negation.prompt: must contain the placeholder {prompt}")
        return
    for name in neg["datasets"]:
        if name not in neg["files"]:
            raise ConfigError(f"config key mwe.negation.files: source file needs a twins file for {name!r} "
                              "(mwe.negation.files.NAME: path)")
    for name, path in neg["files"].items():
        if name not in neg["datasets"]:
            raise ConfigError(f"config key mwe.negation.files.{name}: not one of mwe.negation.datasets {neg['datasets']}")
        existing_path(f"mwe.negation.files.{name}", path)
