"""A laptop-sized twin of a config (``talltales shrink CONFIG --out SMALL.yaml``): try a cluster config here first.

The twin keeps the study's structure -- every registry name and its role and kind, the poisoning levels, the
techniques per policy, the training seeds, the evaluation datasets, shots and answer formats, the filters and
their settings -- and changes only what a laptop without a GPU or network cannot do:

* every model loaded from the hub, an API or a local folder becomes the embedded model of its kind (base -> Gemma-3-270m, instruct
  -> SmolLM2-135M-Instruct, encoder -> MiniLM), under the same registry name and with the same parameter count
  (the scaling plots keep their x axis); the embedded models come from the base config's registry;
* MultiRC from the hub becomes the offline generator (a file source is kept: the twin reads the same files);
* data sizes, epochs and steps are cut to the test suite's (``SMALL``);
* every resource request is zeroed (no GPU, the schema's default memory and time) and precision is left to the
  machine (``dtype: auto``: float32 on a CPU);
* the MultiRC answerability filter is switched off where its LM is a stand-in: SmolLM2-135M's verdicts drop
  every passage group (measured on the offline generator's items: 0 of 192 kept);
* the harsh check's greedy rule becomes the calibrated one, as in the default config: the embedded checker's
  greedy answer is the same for nearly every item, so greedy keeps all of them or none;
* a spending cap is kept, though the twin calls no paid API.

The twin is a complete config (the base config merged with CONFIG, then shrunk): pass it with ``--configfile``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, load_merged, validate, without_file_checks

#: Sizes of the twin (those of the test suite's config, tests/config/config.yaml).
SMALL: dict[str, Any] = {
    "mwe": {
        "longlist": {"n_per_prompt": 16, "batch_size": 16, "max_tokens": 32},
        "batch_size": 16,
        "bootstrap": {"n": 200},
    },
    "deception": {
        "mrc": {"synthetic_passages": 80},
        "fruit": {"n": 400},
        "judge": {"train_size": 320, "val_size": 60, "epochs": 2, "batch_size": 16, "eval_every": 0,
                  "checkpoint_every": 200, "warmup_steps": 5},
        "warmup": {"size": 16, "epochs": 1, "batch_size": 8, "grad_accum": 1, "eval_every": 100,
                   "checkpoint_every": 100},
        "sft": {"size": 32, "epochs": 1, "batch_size": 8, "grad_accum": 1, "eval_every": 100,
                "checkpoint_every": 100, "warmup_ratio": 0.0},
        "rl": {"prompts": 8, "eval_prompts": 4, "steps": 2, "batch_size": 2, "num_generations": 2,
               "max_new_tokens": 8, "eval_every": 1, "eval_batch_size": 4, "checkpoint_every": 50, "grad_accum": 1},
        "eval": {"n_fruit": 8, "n_other": 8, "min_passages": 4, "max_new_tokens": 12,
                 "reaffirmation_per_quadrant": 2, "bootstrap": 200},
    },
}

TRAINING_STAGES = ("warmup", "sft", "rl")


def embedded_by_kind(registry: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """kind -> (name, entry) of the first embedded model of that kind in ``registry``."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, entry in registry.items():
        if entry.get("embedded") and entry.get("kind") not in found:
            found[entry["kind"]] = (name, entry)
    return found


def _is_remote(entry: dict[str, Any]) -> bool:
    """A model the laptop does not have: an API model, a hub id, or a local folder of the machine the config was
    written for."""
    return entry.get("backend") == "openai" or not entry.get("embedded")


def stand_ins(registry: dict[str, Any], embedded: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """name -> the embedded model (of ``embedded``, by kind) that stands in for each model of ``registry`` the
    laptop does not have; a ConfigError names a model whose kind has none."""
    out = {}
    for name, entry in registry.items():
        if not _is_remote(entry):
            continue
        kind = entry["kind"]
        if kind not in embedded:
            raise ConfigError(f"config key models.{name}: no embedded model of kind {kind!r} in the base config's "
                              f"registry to stand in for it (embedded kinds: {', '.join(sorted(embedded))})")
        out[name] = embedded[kind][0]
    return out


def shrink_models(registry: dict[str, Any], embedded: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Replace (in place) every hub, API or local-folder model of ``registry`` by the embedded model of its kind;
    returns name -> the embedded model it now is (:func:`stand_ins`)."""
    replaced = stand_ins(registry, embedded)
    for name, twin_name in replaced.items():
        entry, twin = registry[name], registry[twin_name]
        registry[name] = {"backend": "hf", "embedded": twin["embedded"], "kind": entry["kind"],
                          "params": entry.get("params") or twin.get("params"),
                          "chat_template": twin.get("chat_template", False)}
    return replaced


def _shrink_mwe(mwe: dict[str, Any]) -> None:
    small = SMALL["mwe"]
    longlist = mwe["longlist"]
    for prompt in longlist["prompts"]:
        prompt["n"] = min(prompt["n"], small["longlist"]["n_per_prompt"])
    longlist["batch_size"] = min(longlist.get("batch_size", 32), small["longlist"]["batch_size"])
    sampling = longlist.setdefault("sampling", {})
    sampling["max_tokens"] = min(sampling.get("max_tokens", 48), small["longlist"]["max_tokens"])
    for stage in ("label_check", "harsh_check", "eval"):
        mwe[stage]["batch_size"] = min(mwe[stage].get("batch_size", 32), small["batch_size"])
    mwe["bootstrap"] = {**(mwe.get("bootstrap") or {}), **small["bootstrap"]}
    if mwe["harsh_check"].get("rule", "greedy") == "greedy":
        # a 135M checker's greedy answer is the same for nearly every item: greedy would keep all or nothing
        mwe["harsh_check"]["rule"] = "calibrated"


def _small_stage(section: dict[str, Any], small: dict[str, Any]) -> None:
    for key, value in small.items():
        section[key] = min(section[key], value) if isinstance(section.get(key), (int, float)) and key not in (
            "eval_every", "checkpoint_every", "warmup_ratio") else value
    if "dtype" in section:
        section["dtype"] = "auto"
    if "device" in section:
        section["device"] = "auto"


def _shrink_deception(dec: dict[str, Any], replaced: dict[str, str]) -> None:
    small = SMALL["deception"]
    answerability = dec["mrc"].get("answerability") or {}
    if answerability.get("model") in replaced:
        answerability["model"] = None  # a stand-in's verdicts drop every group (measured: 0 of 192 kept)
    if dec["mrc"].get("source") == "hf":
        dec["mrc"]["source"] = "synthetic"
    dec["mrc"]["synthetic_passages"] = small["mrc"]["synthetic_passages"]
    if dec["fruit"].get("source") != "file":
        dec["fruit"]["n"] = min(dec["fruit"].get("n", 6000), small["fruit"]["n"])
    for section in ("judge", *TRAINING_STAGES, "eval"):
        _small_stage(dec.setdefault(section, {}), small[section])
    for settings in (dec.get("policy_settings") or {}).values():
        settings.pop("resources", None)
        for stage in TRAINING_STAGES:
            if "dtype" in (settings.get(stage) or {}):
                settings[stage]["dtype"] = "auto"
    dec["resources"] = {}
    dec["launch"] = "auto"


def shrink(config: dict[str, Any]) -> dict[str, Any]:
    """The laptop-sized twin of a complete ``config`` (see the module docstring); ``config`` is not changed."""
    out = copy.deepcopy(config)
    embedded = embedded_by_kind(out["models"])
    replaced = shrink_models(out["models"], embedded)
    for entry in out["models"].values():
        entry["dtype"] = "auto"
        entry["resources"] = {"gpus": 0}  # no GPU for its inference jobs either (default memory and time)
    if out.get("mwe"):
        _shrink_mwe(out["mwe"])
    if out.get("deception"):
        _shrink_deception(out["deception"], replaced)
    return out


def shrink_file(config_path: str | Path, out_path: str | Path, base: str | Path | None = "config.yaml") -> dict:
    """Write the twin of ``config_path`` (merged over ``base``, as ``--configfile`` merges it over config.yaml;
    None: the file is complete) to ``out_path``; returns {"replaced": name -> embedded model, "path": out_path}."""
    config_path, out_path = Path(config_path), Path(out_path)
    merged = load_merged(config_path, base)
    replaced = stand_ins(merged["models"], embedded_by_kind(merged["models"]))
    small = shrink(merged)
    with without_file_checks():  # the files it names are read where the twin runs
        validate(copy.deepcopy(small), source=str(out_path))
    header = [f"# The laptop-sized twin of {config_path} (talltales shrink): a complete config, for --configfile.",
              "# Same structure; embedded models, the test suite's sizes, no resource requests."]
    header += [f"#   {name} -> the embedded {to}" for name, to in replaced.items()]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(header) + "\n" + yaml.safe_dump(small, sort_keys=False, allow_unicode=True,
                                                                   width=120))
    return {"replaced": replaced, "path": str(out_path)}


__all__ = ["SMALL", "embedded_by_kind", "shrink", "shrink_file", "shrink_models", "stand_ins"]
