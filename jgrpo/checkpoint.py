"""Training checkpoints: the whole TrainState (parameters, AdamW moments, update count) plus a JSON
item with everything else a resumed run needs (data cursor, step, config, the HF config), kept as
the last K steps by an Orbax CheckpointManager. Restores onto whatever mesh the resumed run uses.

Next to the step folders, written once per run, `tokenizer/` holds the run's tokenizer files (and
generation_config.json): with meta["hf_config"] that is all `python -m ports.convert orbax-to-hf`
needs to turn any step into a Hugging Face folder, so a checkpoint costs no more than its arrays.
`model_card` describes such an export (base model, recipe, step, reward) for its README.md.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orbax.checkpoint as ocp

from jgrpo.run_log import METRICS_FILE, read_metrics
from ports import CheckpointError
from ports.atomic import atomic_dir
from ports.hf_export import TOKENIZER_FILES, tokenizer_files
from ports.orbax_ckpt import handler_registry, restore_args, save_args

STATE = "state"
TOKENIZER = "tokenizer"  # <run>/checkpoints/tokenizer, beside the step folders
# <run>/checkpoints/manifests/<step>.json: each file of a step folder with its size and CRC-32,
# written once Orbax has committed the step. Orbax notices a step that never committed, not one
# damaged afterwards (a truncated copy, a disk error): the manifest does.
MANIFESTS = "manifests"


def size_and_crc(path: Path) -> list[int]:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return [path.stat().st_size, crc]


def file_digests(folder: Path) -> dict[str, list[int]]:
    """Relative path -> [size, CRC-32] of every file under `folder`. One thread per core: reads
    and zlib.crc32 release the GIL, and a step is hundreds of files (one zarr array per leaf)."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return {str(p.relative_to(folder)): digest for p, digest in zip(paths, pool.map(size_and_crc, paths))}


def manifest_path(step_dir: Path) -> Path:
    return step_dir.parent / MANIFESTS / f"{step_dir.name}.json"


def damage(step_dir: Path) -> str | None:
    """Why the checkpoint in `step_dir` cannot be trusted (no manifest: its save never finished;
    a file missing, cut short or changed), or None when every file is as it was written."""
    manifest = manifest_path(step_dir)
    if not manifest.is_file():
        return "no manifest: its save did not finish"
    written = json.loads(manifest.read_text())
    found = file_digests(step_dir)
    for name, (size, crc) in written.items():
        if name not in found:
            return f"{name} is missing"
        if found[name][0] != size:
            return f"{name} is {found[name][0]} bytes, {size} were written"
        if found[name][1] != crc:
            return f"{name} has changed since it was written (CRC-32)"
    return None


class Checkpoints:
    def __init__(self, directory: Path, keep: int):
        self.directory = directory
        self.manager = ocp.CheckpointManager(
            directory.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            handler_registry=handler_registry([STATE]),
        )

    @property
    def tokenizer_dir(self) -> Path:
        return self.directory / TOKENIZER

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict, write_manifest: bool = True) -> None:
        """Blocks until written: a SIGKILL right after must still find this step complete. The
        manifest (main process only) follows the commit; manifests of pruned steps go."""
        self.manager.save(step, args=save_args({STATE: state}, meta))
        self.manager.wait_until_finished()
        if not write_manifest:
            return
        folder = self.directory / MANIFESTS
        folder.mkdir(exist_ok=True)
        manifest = manifest_path(self.directory / str(step))
        tmp = manifest.with_name(f".{manifest.name}.tmp")
        tmp.write_text(json.dumps(file_digests(self.directory / str(step))))
        tmp.replace(manifest)
        kept = {f"{s}.json" for s in self.manager.all_steps()}
        for old in folder.glob("*.json"):
            if old.name not in kept:
                old.unlink()

    def newest_intact(self) -> tuple[int | None, list[tuple[int, str]]]:
        """The newest step whose checkpoint is intact, and (step, why) for each newer one skipped."""
        skipped = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            why = damage(self.directory / str(step))
            if why is None:
                return step, skipped
            skipped.append((step, why))
        return None, skipped

    def set_aside(self, step: int) -> Path:
        """Renames a damaged step folder to <step>.damaged (kept for a look, out of Orbax's sight),
        so the resumed run can save that step again; the manager needs a reload() after."""
        aside = self.directory / f"{step}.damaged"
        shutil.rmtree(aside, ignore_errors=True)
        (self.directory / str(step)).rename(aside)
        manifest_path(self.directory / str(step)).unlink(missing_ok=True)
        return aside

    def save_tokenizer(self, source: str | Path, tokenizer=None) -> Path:
        """Writes the run's tokenizer beside the step folders unless it is there already (so once
        per run, resumes included): the files of the folder `source` as they are, or, when `source`
        is not a local tokenizer folder (a Hub id), `tokenizer.save_pretrained`. Main process only."""
        dst = self.tokenizer_dir
        if dst.is_dir():
            return dst
        files = tokenizer_files(source) if has_tokenizer(source) else None
        if files is None and tokenizer is None:
            raise CheckpointError(f"tokenizer folder not found: {source}")
        with atomic_dir(dst) as tmp:
            tmp.mkdir()
            if files is not None:
                for f in files:
                    shutil.copyfile(f, tmp / f.name)
            else:
                tokenizer.save_pretrained(str(tmp))
        return dst

    def restore(self, step: int, abstract_state):
        """(state, meta); `abstract_state`'s shardings say where each array goes."""
        out = self.manager.restore(step, args=restore_args({STATE: abstract_state}))
        return out[STATE], out["meta"]

    def close(self) -> None:
        self.manager.close()


# --- what a checkpoint says about its run (ports.convert, Trainer._export) ---------------------------

def has_tokenizer(folder: str | Path | None) -> bool:
    return folder is not None and Path(folder).is_dir() and any((Path(folder) / f).is_file() for f in TOKENIZER_FILES)


def run_dir_of(checkpoint: str | Path, meta: dict) -> Path | None:
    """The run folder of a training checkpoint (<run>/checkpoints/<step>), None for other checkpoints."""
    checkpoint = Path(checkpoint).absolute()
    if "config" in meta and checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent
    return None


def find_tokenizer(checkpoint: str | Path, meta: dict) -> Path | None:
    """The folder with a checkpoint's tokenizer, or None: the `tokenizer/` a training run writes
    beside its step folders; else meta["tokenizer"], the folder its writer recorded (hf-to-orbax:
    the source HF folder), while it still exists; else, for a run from before `tokenizer/` was
    written, its config's data.tokenizer or model.path, or <run>/initial_model (the built-in task)."""
    checkpoint = Path(checkpoint).absolute()
    candidates = [checkpoint.parent / TOKENIZER, meta.get("tokenizer")]
    config, run = meta.get("config") or {}, run_dir_of(checkpoint, meta)
    if config:
        candidates += [config.get("data", {}).get("tokenizer"), config.get("model", {}).get("path")]
        if run is not None:
            candidates.append(run / "initial_model")
    for folder in candidates:
        if has_tokenizer(folder):
            return Path(folder)
    return None


def _reward_summary(run_dir: Path | None, step: int | None) -> dict | None:
    """From <run>/metrics.jsonl: the reward at `step`, the mean over the last ten steps up to it, and
    each reward function's mean at `step`; None when the run logged no such step."""
    if run_dir is None or step is None or not (run_dir / METRICS_FILE).is_file():
        return None
    rows = {row["step"]: row for row in read_metrics(run_dir) if row["step"] <= step}
    if step not in rows or rows[step].get("reward") is None:
        return None
    last = [rows[s]["reward"] for s in sorted(rows)[-10:] if rows[s].get("reward") is not None]
    functions = {m.group(1): v for k, v in rows[step].items()
                 if (m := re.fullmatch(r"rewards/(.+)/mean", k)) and m.group(1) != "total" and v is not None}
    return {"reward": rows[step]["reward"], "last": sum(last) / len(last), "n_last": len(last),
            "functions": functions}


def _base_model(config: dict | None) -> tuple[str, str | None]:
    """(text for the card, Hub id for its metadata or None)."""
    if not config:
        return "unknown (the checkpoint does not record it)", None
    path = config.get("model", {}).get("path")
    if path is None:
        tiny = config.get("model", {}).get("tiny") or {}
        shape = ", ".join(f"{k} {v}" for k, v in tiny.items())
        return f"none: a randomly initialised Qwen2 ({shape})", None
    cached = re.search(r"models--([\w.-]+)--([\w.-]+)/snapshots/", path)  # a Hugging Face cache folder
    if cached:
        hub_id = f"{cached.group(1)}/{cached.group(2)}"
    else:
        hub_id = path if re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not Path(path).exists() else None
    return (f"[{hub_id}](https://huggingface.co/{hub_id})" if hub_id else f"`{path}`"), hub_id


_FAMILY_NAMES = {"qwen2": "Qwen2", "qwen3": "Qwen3", "llama": "Llama"}


def model_card(*, step: int | None, model_type: str, config: dict | None = None, recipe: str | None = None,
               run_dir: str | Path | None = None, tokenizer: bool = True, source: str | None = None):
    """A huggingface_hub ModelCard for a Hugging Face export of a jgrpo checkpoint."""
    from huggingface_hub import ModelCard, ModelCardData

    base_text, hub_id = _base_model(config)
    summary = _reward_summary(Path(run_dir) if run_dir is not None else None, step)
    data = ModelCardData(library_name="transformers", pipeline_tag="text-generation",
                         tags=["jgrpo", "grpo", model_type, "jax"], base_model=hub_id)
    max_steps = (config or {}).get("train", {}).get("max_steps")
    rows = [("Base model", base_text),
            ("Recipe", f"`{recipe}`" if recipe else "not recorded"),
            ("Steps", "unknown" if step is None else f"{step}" + (f" of {max_steps}" if max_steps else ""))]
    if summary is None:
        rows.append(("Final reward", "not recorded"))
    else:
        rows.append(("Final reward", f"{summary['reward']:.4f} at step {step} "
                                     f"(mean over the last {summary['n_last']} steps: {summary['last']:.4f})"))
        rows += [(f"Reward `{name}`", f"{value:.4f}") for name, value in sorted(summary["functions"].items())
                 if isinstance(value, (int, float)) and math.isfinite(value)]
    rows.append(("Tokenizer", "included" if tokenizer else "**none** (exported with `--no-tokenizer`: add one "
                                                          "before loading it with `AutoTokenizer`)"))
    if source:
        rows.append(("Converted from", f"`{source}`"))
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    title = f"GRPO checkpoint, step {step}" if step is not None else f"{_FAMILY_NAMES[model_type]} checkpoint"
    body = [f"# {title}", "",
            "Trained with GRPO by jgrpo (JAX/Flax; the open-rs recipe, arXiv:2503.16219) and exported to "
            "Hugging Face safetensors; transformers and vLLM load this folder as is.", "", table, ""]
    if config:
        import yaml

        body += ["<details><summary>Run config</summary>", "", "```yaml",
                 yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(), "```", "", "</details>", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
