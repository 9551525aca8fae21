"""The run-directory protocol of every training run on a transformers ``Trainer`` (SFT, RL, ...).

A run writes into ``out_dir + ".partial"`` (:func:`partial_dir`): the trainer's checkpoints (``checkpoint-K``, every
``save_steps``), ``metrics.jsonl`` (one JSON object per logged step, :class:`MetricsWriter` and the callback
:class:`MetricsToJsonl`) and ``run_fingerprint.txt`` (the identity of the run: :func:`fingerprint`). A new start
calls :func:`prepare_partial`, which resumes from the newest complete checkpoint of a run with the same identity (and
drops the metrics logged after it), or starts afresh. The finished result replaces ``out_dir`` by one rename
(:func:`finalize_dir`), so ``out_dir`` is either absent or complete. A run whose result is one model folder (SFT,
the judge) ends with :func:`save_final`: the model into ``partial/final``, its report and metrics beside it, the
rename, the partial dir removed.

Use on ``P`` processes: call :func:`prepare_partial` inside ``args.main_process_first()`` with ``main`` true on
process 0 only, give every process a :class:`MetricsWriter` (it writes on the main process only) and pass
:func:`callbacks` to the Trainer; ``trainer.train(resume_from_checkpoint=resume)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from talltales.io import write_json, write_jsonl, write_text

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
FINGERPRINT_FILE = "run_fingerprint.txt"
METRICS_FILE = "metrics.jsonl"
REPORT_FILE = "train_report.json"
HELDOUT_FILE = "heldout.jsonl"  # RL: each held-out evaluation, per prompt (answer, reward)

__all__ = ["CHECKPOINT_PREFIX", "HELDOUT_FILE", "MetricsToJsonl", "MetricsWriter", "StopAfter", "callbacks", "checkpoints",
           "finalize_dir", "fingerprint", "partial_dir", "prepare_partial", "read_metrics", "run_facts", "save_final",
           "write_json"]


def partial_dir(out_dir: str | os.PathLike) -> Path:
    """Where a run into ``out_dir`` works until it is complete."""
    return Path(str(out_dir) + ".partial")


def checkpoints(partial: Path) -> list[tuple[int, Path, bool]]:
    """(step, path, complete) of the trainer checkpoints in ``partial``; complete = trainer_state.json written
    (the Trainer writes it last)."""
    out = []
    if partial.is_dir():
        for p in partial.iterdir():
            if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.name[len(CHECKPOINT_PREFIX):].isdigit():
                out.append((int(p.name[len(CHECKPOINT_PREFIX):]), p, (p / "trainer_state.json").is_file()))
    return sorted(out)


def fingerprint(kind: str, start: str, cfg, *frames) -> str:
    """Identity of a run (kind, start model, config dataclass, data frames): a partial run with another identity is
    not resumed."""
    import pandas as pd

    h = hashlib.sha256(json.dumps([kind, str(start), asdict(cfg)], sort_keys=True, default=str).encode())
    for df in frames:
        if df is not None:
            h.update(str(len(df)).encode())
            h.update(pd.util.hash_pandas_object(df.reset_index(drop=True), index=False).values.tobytes())
    return h.hexdigest()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; a line cut short by a kill is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping a truncated line in %s", path)
    return rows


def prepare_partial(partial: Path, main: bool, ident: str) -> tuple[str | None, int]:
    """Find the newest complete checkpoint in ``partial`` (or start fresh): returns (checkpoint path or None, its
    step). On the main process: remove incomplete checkpoints, drop metrics (and held-out records) logged after the resumed step, and
    (when starting fresh, or when the partial run has another fingerprint ``ident``: config, data or start model
    changed) everything."""
    ident_file = partial / FINGERPRINT_FILE
    same = ident_file.exists() and ident_file.read_text().strip() == ident
    if partial.exists() and not same and checkpoints(partial):
        log.warning("%s holds a run with another config, data or start model: starting afresh", partial)
    ckpts = checkpoints(partial) if same else []
    complete = [(s, p) for s, p, ok in ckpts if ok]
    step, path = complete[-1] if complete else (0, None)
    if main:
        for s, p, ok in ckpts:
            if not ok:
                log.warning("removing incomplete checkpoint %s", p)
                shutil.rmtree(p, ignore_errors=True)
        if path is None and partial.exists():
            for p in partial.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        partial.mkdir(parents=True, exist_ok=True)
        write_text(ident_file, ident + "\n")
        for log_file in (partial / METRICS_FILE, partial / HELDOUT_FILE):
            if path is not None and log_file.exists():
                write_jsonl(log_file, [r for r in read_metrics(log_file) if r.get("step", 0) <= step])
    if path is not None:
        log.info("resuming from step %d (%s)", step, path)
    return (str(path) if path else None), step


class MetricsWriter:
    """Appends one JSON object per line to ``path`` (when ``enabled``: the main process), flushed at once; tensors
    become numbers, non-finite floats null."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {}
        for k, v in row.items():
            if hasattr(v, "item"):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            clean[k] = v
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")


class MetricsToJsonl(TrainerCallback):
    """The trainer's logged metrics (loss, lr, reward, kl, ...) as rows {"step": k, "epoch": e, ...}."""

    def __init__(self, writer: MetricsWriter):
        self.writer = writer

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            row = {"step": state.global_step, "epoch": state.epoch}
            for k, v in logs.items():
                row["lr" if k == "learning_rate" else k] = v
            self.writer.write(row)


class StopAfter(TrainerCallback):
    """Testing hook: raise KeyboardInterrupt once step K is complete (logged, evaluated and checkpointed when
    due), i.e. when the next step would begin."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            raise KeyboardInterrupt(f"stop_after_steps={self.steps}")
        return control


def callbacks(writer: MetricsWriter, stop_after_steps: int | None = None) -> list[TrainerCallback]:
    """The protocol's trainer callbacks: metrics to ``metrics.jsonl`` and, for tests, a stop after a step."""
    out: list[TrainerCallback] = [MetricsToJsonl(writer)]
    if stop_after_steps is not None:
        out.append(StopAfter(stop_after_steps))
    return out


def run_facts(t0: float, rt: dict[str, Any], trainer, cfg) -> dict[str, Any]:
    """The closing fields of a train report: seconds since ``t0``, device and precision (``rt``, from
    ``settings.runtime``), how the trainer ran (distributed type, world size) and the run's config dataclass."""
    return {
        "seconds": round(time.time() - t0, 2),
        "device": rt["device"],
        "bf16": rt["bf16"],
        "distributed_type": str(trainer.accelerator.distributed_type.value),
        "world_size": trainer.args.world_size,
        "config": asdict(cfg),
    }


def finalize_dir(src: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``src`` with one rename."""
    if out_dir.exists():
        log.warning("replacing existing %s", out_dir)
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, out_dir)


SAVE_DTYPES = ("float32", "float16", "bfloat16")
EMBEDDINGS_FILE = "model-embeddings.safetensors"  # a policy's input-embedding matrix, apart from the other weights
BODY_FILE = "model-body.safetensors"  # the other weights of a one-file model
INDEX_FILE = "model.safetensors.index.json"  # which file holds which tensor (transformers reads it)
LINK_MIN_BYTES = 1 << 20  # smaller identical files are not worth a link


def freeze_input_embeddings(model) -> int:
    """Stop training the input-embedding matrix of ``model`` (and an output head tied to it, as in Gemma, SmolLM2
    and GPT-Neo): its weights then stay those of the starting checkpoint, whose stored copy the saved policy shares
    (:func:`compact_weights`). Logs and returns the number of frozen parameters."""
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(False)
    log.info("input embeddings frozen (%d parameters)", weight.numel())
    return weight.numel()


def embedding_names(folder: Path) -> list[str]:
    """The state-dict names of the input-embedding matrix of the causal LM stored in ``folder`` (the model built
    from its config on the meta device: no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(folder)))
    weight = model.get_input_embeddings().weight
    return [n for n, p in model.named_parameters(remove_duplicate=False) if p is weight]


def link_identical(folder: Path, source: Path, min_bytes: int = LINK_MIN_BYTES,
                   always: tuple[str, ...] = (EMBEDDINGS_FILE,)) -> list[str]:
    """Replace every file of ``folder`` that is byte-identical to the same-named file of ``source`` (and at least
    ``min_bytes`` long, or named in ``always``) by a hard link to it: the two folders then store it once. Nothing
    is ever written into a checkpoint's file (a rewrite makes a new file), so a link cannot change under a later
    stage; where links are impossible (another file system) the copy stays. Returns the linked names."""
    import filecmp

    linked = []
    for f in sorted(Path(folder).iterdir()):
        s = Path(source) / f.name
        if not (f.is_file() and s.is_file()) or os.path.samefile(f, s):
            continue
        if f.stat().st_size < min_bytes and f.name not in always:
            continue
        if f.stat().st_size != s.stat().st_size or not filecmp.cmp(f, s, shallow=False):
            continue
        tmp = f.with_name(f.name + ".link")
        tmp.unlink(missing_ok=True)  # left by a run killed here
        try:
            os.link(s, tmp)
        except OSError as exc:
            log.info("%s: kept a copy of %s (%s)", folder, f.name, exc)
            continue
        os.replace(tmp, f)
        linked.append(f.name)
    return linked


def compact_weights(folder: Path, save_dtype: str, *, split_embeddings: bool = False,
                    share_with: str | Path | None = None) -> None:
    """Store the model folder ``folder`` compactly.

    - The floating-point weights in ``save_dtype`` (one of :data:`SAVE_DTYPES`): every ``*.safetensors`` file
      rewritten (integer tensors untouched) and the config's dtype updated. A model loaded from it in float32 then
      computes with the rounded weights: half the disk, results measured in README ("Disk").
    - ``split_embeddings`` (a causal LM): the input-embedding matrix in a file of its own, :data:`EMBEDDINGS_FILE`
      (the rest in :data:`BODY_FILE` for a one-file model), listed in :data:`INDEX_FILE`; transformers loads the
      folder as before.
    - ``share_with``: the run's starting checkpoint, if it is one of this workflow's (it holds a
      :data:`REPORT_FILE`): files byte-identical to its own become hard links (:func:`link_identical`), e.g. the
      embeddings of a policy trained with them frozen, and the tokenizer.
    """
    if save_dtype not in SAVE_DTYPES:
        raise ValueError(f"save_dtype must be one of {SAVE_DTYPES}, not {save_dtype!r}")
    folder = Path(folder)
    if save_dtype != "float32" or split_embeddings:
        _rewrite_weights(folder, save_dtype, set(embedding_names(folder)) if split_embeddings else set())
    if save_dtype != "float32":
        config = folder / "config.json"
        if config.exists():
            c = json.loads(config.read_text())
            c["dtype"] = save_dtype
            c.pop("torch_dtype", None)
            write_json(config, c)
    if share_with is not None and (Path(share_with) / REPORT_FILE).exists():
        linked = link_identical(folder, Path(share_with))
        if linked:
            log.info("%s shares %s with %s (hard links)", folder, ", ".join(linked), share_with)


def _rewrite_weights(folder: Path, save_dtype: str, embed: set[str]) -> None:
    """The weight files of ``folder`` rewritten in ``save_dtype`` (float32: tensors left as they are), the tensors
    named ``embed`` moved to :data:`EMBEDDINGS_FILE` (see :func:`compact_weights`).

    In an order that leaves a loadable folder at every moment, so that a run killed here and resumed loses nothing:
    every rewritten file is first written beside its original (``.tmp``); then the embeddings file, the index and
    the rewritten files take their places; a one-file model's ``model.safetensors``, which transformers prefers
    to the index, goes last. A folder freshly saved over an earlier split (``model.safetensors`` present) has the
    earlier split's files removed first: the new save is the only source."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    cast = None if save_dtype == "float32" else getattr(torch, save_dtype)

    def converted(tensors: dict) -> dict:
        return {k: (v.to(cast) if cast is not None and v.is_floating_point() else v) for k, v in tensors.items()}

    def nbytes(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    single = folder / "model.safetensors"
    if single.exists():
        for stale in (EMBEDDINGS_FILE, BODY_FILE, INDEX_FILE):
            (folder / stale).unlink(missing_ok=True)
    moved = converted(load_file(str(folder / EMBEDDINGS_FILE))) if (folder / EMBEDDINGS_FILE).exists() else {}
    files = sorted(f for f in folder.glob("*.safetensors") if f.name not in (EMBEDDINGS_FILE,))
    weight_map: dict[str, str] = {}
    total = 0
    pending: list[tuple[Path, Path]] = []  # (rewritten copy, its place)
    for f in files:
        with safe_open(str(f), "pt") as h:
            names = list(h.keys())
            if cast is None and not embed.intersection(names):  # nothing to change in this file
                weight_map.update({k: f.name for k in names})
                total += nbytes(map(h.get_tensor, names))
                continue
        tensors = converted(load_file(str(f)))
        moved.update({k: tensors.pop(k) for k in [k for k in tensors if k in embed]})
        target = folder / BODY_FILE if (f == single and embed.intersection(names)) else f
        tmp = target.with_name(target.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        pending.append((tmp, target))
        weight_map.update({k: target.name for k in tensors})
        total += nbytes(tensors.values())
    if embed and not moved:
        log.warning("%s: no tensor named %s to store apart; the weights stay as they are", folder, sorted(embed))
    if moved:
        tmp = folder / (EMBEDDINGS_FILE + ".tmp")
        save_file(moved, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, folder / EMBEDDINGS_FILE)
        weight_map.update({k: EMBEDDINGS_FILE for k in moved})
        total += nbytes(moved.values())
    if moved or (folder / INDEX_FILE).exists():
        write_json(folder / INDEX_FILE, {"metadata": {"total_size": total},
                                         "weight_map": dict(sorted(weight_map.items()))})
    for tmp, target in pending:
        os.replace(tmp, target)
    if single.exists() and moved:
        single.unlink()


def save_final(trainer, tok, partial: Path, out_dir: Path, *, lora: bool, main: bool,
               make_report: Callable[[], dict[str, Any]], report_file: str = REPORT_FILE,
               save_dtype: str = "float32", split_embeddings: bool = False,
               share_with: str | Path | None = None) -> dict[str, Any]:
    """End a run whose result is one model folder; every process calls it. The model goes to ``partial/final``
    (a LoRA model merged into its base and saved with ``tok`` by the main process, otherwise
    ``trainer.save_model``); after a barrier the main process builds the report (``make_report()``), writes it as
    ``report_file`` next to a copy of ``metrics.jsonl``, renames the folder to ``out_dir`` and removes ``partial``.
    The weights are stored in ``save_dtype``, a policy's embeddings apart (``split_embeddings``) and files identical
    to those of the starting checkpoint ``share_with`` linked (:func:`compact_weights`). Returns the report (``{}``
    on the other processes)."""
    final = partial / "final"
    if main and final.exists():  # left by a run killed while saving: never write into it (its files may be links)
        shutil.rmtree(final)
    trainer.accelerator.wait_for_everyone()
    if lora:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        if main:
            merged.save_pretrained(final)
            tok.save_pretrained(final)
    else:
        trainer.save_model(str(final))
    trainer.accelerator.wait_for_everyone()
    if not main:
        return {}
    compact_weights(final, save_dtype, split_embeddings=split_embeddings, share_with=share_with)
    report = make_report()
    shutil.copy2(partial / METRICS_FILE, final / METRICS_FILE)
    write_json(final / report_file, report)
    finalize_dir(final, out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    return report
