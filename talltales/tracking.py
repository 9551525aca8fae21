"""Optional Weights & Biases logging of training runs (judges, warm-up, SFT, RL).

Switched on by the environment, not by config.yaml, so turning it on or off never makes a trained model stale:
``export WANDB_PROJECT=talltales`` (plus ``WANDB_MODE=offline`` without network; sync later with ``wandb sync``).
The API key comes from ``WANDB_API_KEY`` or ``wandb login`` and is never written by this project. Every run also
keeps its own ``metrics.jsonl`` next to the model, with or without W&B.
"""

from __future__ import annotations

import os
from typing import Any


class TrackingError(RuntimeError):
    pass


def wandb_project() -> str | None:
    """The W&B project runs log to, or None (off)."""
    return os.environ.get("WANDB_PROJECT") or None


def require() -> None:
    """Fail before training when W&B is asked for but not installed."""
    if wandb_project() is None:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise TrackingError(
            f"WANDB_PROJECT={wandb_project()!r} is set but the wandb package is not installed: "
            "pip install -e '.[wandb]' (or unset WANDB_PROJECT)") from None


def report_to() -> list[str]:
    """The ``report_to`` of transformers/trl training arguments."""
    require()
    return ["wandb"] if wandb_project() else []


class Run:
    """A W&B run for a hand-written training loop; every method is a no-op when W&B is off."""

    def __init__(self, name: str, config: dict[str, Any], group: str | None = None):
        require()
        self._run = None
        if wandb_project():
            import wandb

            self._run = wandb.init(project=wandb_project(), name=name, group=group, config=config, reinit="finish_previous")

    def log(self, row: dict[str, Any], step: int) -> None:
        if self._run is not None:
            self._run.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}, step=step)

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
