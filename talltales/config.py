"""Load and check the workflow configuration; look up models in the registry.

Two layers of checks, both before any job runs:
* the JSON schema (``talltales/schemas/config.schema.yaml``, draft 2020-12, with defaults filled in);
* :func:`check`: cross-references the schema cannot express (model names used by stages exist, templates
  carry their placeholders, thresholds name real classes ...). Every error names the config key.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import importlib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from .lm import BACKENDS
from .lm.cost import has_price
from .lm.spend import is_openai_api, spending_for

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"
# Each study checks its own config section: SECTION -> module with check(config) (a new study adds one line).
STUDY_CHECKS = {"mwe": "talltales.mwe.checks", "deception": "talltales.deception.checks"}


class ConfigError(ValueError):
    """A configuration problem; the message names the config key and what was expected."""


def _validator():
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))
                elif key in instance:
                    instance[key] = number_from_text(instance[key], sub)
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def number_from_text(value: Any, sub: dict[str, Any]) -> Any:
    """A number written so that YAML reads it as text (``1e-4``: YAML 1.1 wants ``1.0e-4``) as the number, where
    the key takes a number and no text; anything else as it is (the schema then says what was expected)."""
    types = sub.get("type")
    types = [types] if isinstance(types, str) else types or []
    if not isinstance(value, str) or "string" in types or not _NUMBER.fullmatch(value.strip()):
        return value
    number = float(value)
    if "number" in types:
        return int(number) if number.is_integer() and "e" not in value.lower() and "." not in value else number
    if "integer" in types and number.is_integer():
        return int(number)
    return value


def _ref_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """Copy the ``default`` of a referenced definition onto each ``{$ref: ...}`` that has none, so that
    default filling (which looks at a property's own schema) also fills properties declared by $ref."""
    defs = schema.get("definitions", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/") and "default" not in node:
                target = defs.get(ref[len("#/definitions/") :], {})
                if "default" in target:
                    node["default"] = target["default"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return schema


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base`` as Snakemake merges a --configfile: dicts key by key, anything
    else (lists, scalars, null) replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def key_path(parts: Iterable[Any]) -> str:
    """A config key as messages write it: ``deception.poisoning[1]``, ``(top level)`` for none."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def validate(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Fill defaults and validate against the schema (raises ConfigError naming the key)."""
    schema = _ref_defaults(yaml.safe_load(SCHEMA_PATH.read_text()))
    validator = _validator()(schema)
    # defaults are filled while iterating; collect errors after a first pass so paths are final
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = f"{source}: " if source != "config" else ""
        raise ConfigError(f"{where}config key {key_path(e.absolute_path)}: {e.message}")
    for study in STUDY_CHECKS:  # `STUDY: null` (e.g. in a --configfile over config.yaml) leaves the study out
        if study in config and config[study] is None:
            del config[study]
    for name, entry in config["models"].items():
        if isinstance(entry.get("params"), str):
            entry["params"] = parse_params(entry["params"], f"models.{name}.params")
    check(config)
    return config


_PARAMS = re.compile(r"\s*(?P<num>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<exp>[eE][+-]?[0-9]+)?\s*(?P<unit>[kKmMbBtT]?)\s*")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_params(value: str, key: str = "params") -> int:
    """A parameter count written as text (YAML reads ``1.4e9`` as a string) as an integer: ``1.4e9``, ``175e9``,
    ``7B``, ``1.3B``, ``135M``, ``500k``."""
    m = _PARAMS.fullmatch(str(value))
    if not m:
        raise ConfigError(f"config key {key}: {value!r} is not a parameter count (write e.g. 1.4e9, 7B or 135M)")
    number = Decimal(m["num"] + (m["exp"] or "")) * _UNITS[m["unit"].lower()]
    return int(number.to_integral_value())


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return validate(config, source=str(path))


def load_merged(config_path: str | Path, base: str | Path | None = "config.yaml") -> dict[str, Any]:
    """``config_path`` merged over ``base`` as ``--configfile`` merges it over config.yaml (None: complete)."""
    merged = read_config_file(config_path)
    return merged if base is None else deep_merge(read_config_file(base), merged)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a config file holds, unvalidated; one ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


_FILES_CHECKED = contextvars.ContextVar("talltales_files_checked", default=True)


@contextlib.contextmanager
def without_file_checks() -> Iterator[None]:
    """Validate a config for another machine: files it names need not exist here (e.g. shrink, estimate)."""
    token = _FILES_CHECKED.set(False)
    try:
        yield
    finally:
        _FILES_CHECKED.reset(token)


def existing_path(key: str, value: str, what: str = "file") -> None:
    """A file (or folder) named in config must exist; relative paths are read from the working directory."""
    if not _FILES_CHECKED.get():
        return
    path = Path(value)
    if not (path.is_dir() if what == "folder" else path.is_file()):
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ConfigError(f"config key {key}: no {what} {value!r}{where}")


def model_ref(config: dict, key: str, name: str) -> None:
    """``key`` names model ``name``: it must be in the registry, and a local folder it names (``path``) must exist
    (an entry no stage uses is not checked)."""
    if name not in config["models"]:
        known = ", ".join(sorted(config["models"]))
        raise ConfigError(f"config key {key}: unknown model {name!r}; the registry (models:) has: {known}")
    if config["models"][name].get("path"):
        try:
            existing_path(f"models.{name}.path", config["models"][name]["path"], "folder")
        except ConfigError as e:
            raise ConfigError(f"{e} (the model of {key})") from None


def check(config: dict[str, Any]) -> None:
    """Cross-reference checks the schema cannot express."""
    from .lm.embedded import SOURCES

    for name, entry in config["models"].items():
        key = f"models.{name}"
        if entry["backend"] not in BACKENDS:
            raise ConfigError(
                f"config key {key}.backend: unknown backend {entry['backend']!r}; expected one of {', '.join(BACKENDS)}"
            )
        if entry["backend"] == "hf":
            if not (entry.get("path") or entry.get("id") or entry.get("embedded")):
                raise ConfigError(f"config key {key}: an hf model needs one of 'path', 'id' or 'embedded'")
            if entry.get("embedded") and entry["embedded"] not in SOURCES:
                raise ConfigError(
                    f"config key {key}.embedded: unknown package {entry['embedded']!r}; known: {', '.join(SOURCES)}"
                )
        elif entry["backend"] == "openai":
            if not entry.get("id"):
                raise ConfigError(f"config key {key}.id: an openai model needs the API model name in 'id'")
            if not entry.get("base_url"):
                raise ConfigError(f"config key {key}.base_url: an openai model needs 'base_url'")
            capped = (config.get("spending") or {}).get("max_usd") is not None
            if capped and is_openai_api(entry["base_url"]) and not has_price(entry.get("price_per_1k")):
                raise ConfigError(f"config key {key}.price_per_1k: spending.max_usd caps paid requests, but this "
                                  "api.openai.com model has no price ({input: USD, output: USD} per 1000 tokens), so "
                                  "the cap could not be enforced")
    for section, module in STUDY_CHECKS.items():
        if config.get(section):
            importlib.import_module(module).check(config)
    if config.get("mwe") and config.get("deception"):
        evaluated = list(config["mwe"]["eval_datasets"]) + list(config["mwe"]["datasets"])
        for i, name in enumerate(config.get("cross", {}).get("datasets", [])):
            if name not in evaluated:
                raise ConfigError(f"config key cross.datasets[{i}]: {name!r} is not one of study 1's evaluated "
                                  f"datasets (mwe.eval_datasets or mwe.datasets: {evaluated})")


def model_entry(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The registry entry of ``name`` with ``path`` resolved for embedded models (a plain dict, for params:)."""
    if name not in config["models"]:
        raise ConfigError(f"unknown model {name!r}; the registry (models:) has: {', '.join(sorted(config['models']))}")
    entry = dict(config["models"][name])
    entry.pop("resources", None)  # what its jobs ask the cluster for: not a setting of the model's outputs
    if entry.get("embedded"):
        entry["path"] = str(Path(config["paths"]["models_dir"]) / name)
    entry["name"] = name
    spending = spending_for(entry, config.get("spending"))  # the cap and ledger of paid API requests
    if spending is not None:
        entry["spending"] = spending
    return entry
