"""Where a run's numbers go: metrics.jsonl (one line per step, TRL's metric names), TensorBoard
event files, Weights & Biases when asked for, and a sample of completions per step."""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path

import yaml

from jgrpo.config import LogConfig

METRICS_FILE = "metrics.jsonl"
COMPLETIONS_FILE = "completions.jsonl"
WANDB_ID_FILE = "wandb_run_id"


def _rows(path: Path) -> list[tuple[str, dict]]:
    """(line, row) for each line of a JSONL log, less a last line a crash cut short."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append((line, json.loads(line)))
        except ValueError:
            continue
    return rows


def _truncate_after(path: Path, step: int) -> None:
    """Drops lines logged after `step`: a crashed run may have logged steps its last checkpoint
    does not contain, and the resumed run logs them again."""
    if not path.is_file():
        return
    kept = [line for line, row in _rows(path) if row["step"] <= step]
    tmp = path.with_name(f".{path.name}.tmp")  # renamed into place: a crash here loses no history
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl, one per step, less a last line a crash cut short;
    FileNotFoundError when it has none."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {run_dir}")
    return [row for _, row in _rows(path)]


def _flat_scalars(tree: dict, prefix: str = "") -> dict:
    """{"optim.learning_rate": 1e-6, ...}: the config's scalars; lists become their text."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat_scalars(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix + key] = value
        else:
            flat[prefix + key] = str(value)
    return flat


def _finite(value: float):
    return value if math.isfinite(value) else None  # JSON has no NaN


class RunLogger:
    """write=False (the other processes of a multi-host run) makes every method a no-op."""

    def __init__(self, run_dir: Path, cfg: LogConfig, config_dict: dict, start_step: int, write: bool = True):
        self.cfg = cfg
        self.write = write
        if not write:
            return
        for name in (METRICS_FILE, COMPLETIONS_FILE):
            _truncate_after(run_dir / name, start_step)
        self._metrics = open(run_dir / METRICS_FILE, "a")
        self._completions = open(run_dir / COMPLETIONS_FILE, "a")
        self._tb = None
        if cfg.tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)
            if start_step == 0:
                self._tb.add_text("config", "```yaml\n" + yaml.safe_dump(config_dict, sort_keys=False) + "```", 0)
                # The hparams plugin's table: one run, its flattened settings.
                self._tb.add_hparams(_flat_scalars(config_dict), {"hparams/start": 0.0}, name="hparams")
        self._wandb = None
        if cfg.wandb:
            import wandb  # checked before the run starts (jgrpo.train)

            # The run id lives in the run folder, so a resumed run continues the same W&B run.
            id_file = run_dir / WANDB_ID_FILE
            if not id_file.is_file():
                id_file.write_text(secrets.token_hex(4))
            self._wandb = wandb.init(project=cfg.wandb_project, dir=str(run_dir), config=config_dict,
                                     id=id_file.read_text().strip(), resume="allow", name=run_dir.name)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.write:
            return
        row = {"step": step, **{k: _finite(float(v)) for k, v in metrics.items()}}
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, float(v), step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)

    def log_completions(self, step: int, rows: list[dict]) -> None:
        if not self.write:
            return
        for row in rows[: self.cfg.completions_per_step]:
            self._completions.write(json.dumps({"step": step, **row}) + "\n")
        self._completions.flush()

    def close(self) -> None:
        if not self.write:
            return
        self._metrics.close()
        self._completions.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
