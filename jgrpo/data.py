"""Training prompts: load a dataset, map its columns, apply the chat template, batch.

Pipeline: :func:`load_examples` (JSONL, JSON, CSV, Parquet, a dataset folder, a bundled set or a
Hugging Face dataset)
-> :func:`encode_prompts` (chat template + token ids) -> :class:`PromptBatcher` (seeded,
resumable batches of prompts, each to be sampled ``num_generations`` times).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jgrpo.choices import check_choice
from jgrpo.hub import first_line

# open-rs's system prompt (recipes/grpo.yaml), verbatim. YAML leaves the doubled braces
# in "\boxed{{}}" as they are, so the model saw them doubled.
OPEN_RS_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer, and put your final answer within \\boxed{{}} . The "
    "reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. Note that respond by English, NOT use other languages."
)

# The user prompt of open-rs's evaluation (lighteval, no system prompt), verbatim, with the
# double space after "clearly.". {Question} is replaced by the problem.
EVAL_PROMPT_TEMPLATE = (
    "Solve the following math problem efficiently and clearly.  The last line of your "
    "response should be of the following format: 'Therefore, the final answer is: "
    "$\\boxed{ANSWER}$. I hope it is correct' (without quotes) where ANSWER is just the final "
    "number or expression that solves the problem. Think step by step before answering."
    "\n\n{Question}"
)

ASSETS_DIR = Path(__file__).parent / "assets"
BUNDLED_TOKENIZER_DIR = ASSETS_DIR / "tokenizer" / "deepseek-r1-distill-qwen-1.5b"
# Use as ``load_examples("bundled:deepscaler_math", ...)``.
BUNDLED_DATASETS = {"deepscaler_math": ASSETS_DIR / "train" / "deepscaler_math.jsonl"}
_BUNDLED_PREFIX = "bundled:"
_FILE_SUFFIXES = (".jsonl", ".parquet", ".json", ".csv", ".tsv", ".txt", ".arrow")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------
# Reading rows
# ---------------------------------------------------------------------------------------


def read_rows(source: str | Path, split: str = "train", subset: str | None = None) -> list[dict[str, Any]]:
    """Rows of a dataset, in order:

    - a file: ``.jsonl``, ``.json`` (an array of objects, or JSON lines), ``.csv`` (a header
      row; every value read as text) or ``.parquet``;
    - a folder: one written by ``datasets``' ``save_to_disk``, or a dataset repository laid out
      as on the Hub (a ``git clone``, or data files with an optional README.md of subsets);
    - ``"bundled:<name>"``: a set shipped with jgrpo (:data:`BUNDLED_DATASETS`);
    - a Hugging Face dataset name (``"owner/name"``), read with ``datasets.load_dataset``.
      Offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable) it comes from ``datasets``' own
      cache, else from the Hub cache's snapshot (``hf download --repo-type dataset NAME``).

    ``split`` and ``subset`` (a Hub dataset's configuration, e.g. a README.md ``config_name``;
    None: its default or only one) apply to folders and Hub names; ``split`` also takes
    ``datasets``' slices (``"train[:1000]"``).
    """
    source = str(source)
    if source.startswith(_BUNDLED_PREFIX):
        name = source.removeprefix(_BUNDLED_PREFIX)
        if name not in BUNDLED_DATASETS:
            raise DatasetError(
                f"unknown bundled dataset {name!r}; bundled: {', '.join(sorted(BUNDLED_DATASETS))}"
            )
        _no_subset(source, subset)
        return _read_jsonl(BUNDLED_DATASETS[name])
    path = Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        reader = _FILE_READERS.get(suffix)
        if reader is None:
            raise DatasetError(
                f"{path}: unsupported dataset file type {suffix!r}; use .jsonl, .json, .csv or "
                ".parquet, a dataset folder or a Hugging Face dataset name"
            )
        _no_subset(path, subset)
        return reader(path)
    if path.is_dir():
        return _read_folder(path, subset, split, label=str(path))
    if path.exists():
        raise DatasetError(f"{path} is neither a file nor a folder")
    if path.suffix.lower() in _FILE_SUFFIXES or not _HUB_NAME.match(source):
        raise FileNotFoundError(f"dataset file not found: {path}")
    return _read_hub(source, subset, split)


def _no_subset(source, subset: str | None) -> None:
    if subset is not None:
        raise DatasetError(
            f"{source}: a subset ({subset!r}) applies only to Hugging Face datasets and dataset folders"
        )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{line_number}: a JSONL row must be an object")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    """An array of objects; or an object holding one such array (``{"data": [...]}``); or JSON
    lines saved as ``.json`` (``datasets``' ``to_json`` writes those)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("{"):
            return _read_jsonl(path)
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if isinstance(data, dict):
        tables = [v for v in data.values() if _is_rows(v)]
        data = tables[0] if len(tables) == 1 else [data]
    if not isinstance(data, list):
        raise DatasetError(f"{path}: a .json dataset must be an array of objects, not a {type(data).__name__}")
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: item {index} of the array is a {type(row).__name__}, not an object")
    return data


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """Every value as text, exactly as written (``"007"`` stays ``"007"``); an empty cell is an
    empty string, so an empty answer counts as missing."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                return []
            rows = []
            for record in reader:
                if not record:
                    continue
                if len(record) != len(header):
                    raise DatasetError(
                        f"{path}:{reader.line_num}: {len(record)} fields, the header has {len(header)}"
                    )
                rows.append(dict(zip(header, record)))
        except csv.Error as exc:
            raise DatasetError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from exc
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet

    try:
        return pyarrow.parquet.read_table(path).to_pylist()
    except (OSError, pyarrow.ArrowException) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file ({first_line(exc)})") from exc


_FILE_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_csv,
    ".parquet": _read_parquet,
}


def _read_folder(path: Path, subset: str | None, split: str, label: str) -> list[dict[str, Any]]:
    """A ``save_to_disk`` folder (a single saved split is used whole), or a dataset repository
    folder read by ``datasets.load_dataset``."""
    import datasets

    saved_dict, saved_one = path / "dataset_dict.json", path / "state.json"
    if saved_dict.is_file() or saved_one.is_file():
        _no_subset(label, subset)
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise DatasetError(f"{label}: cannot read this save_to_disk folder ({first_line(exc)})") from None
        if isinstance(loaded, datasets.Dataset):
            return loaded.to_list()
        return _split_rows(loaded, split, label, lambda: loaded[split])
    loaded = _load_dataset(datasets, str(path), subset, label)
    return _split_rows(loaded, split, label, lambda: datasets.load_dataset(str(path), subset, split=split))


def _read_hub(name: str, subset: str | None, split: str) -> list[dict[str, Any]]:
    import datasets

    from jgrpo import hub

    label = f"Hugging Face dataset {name!r}"
    try:
        loaded = datasets.load_dataset(name, subset)
    except Exception as exc:
        if not (isinstance(exc, ConnectionError) or hub.offline()):
            raise DatasetError(_load_error(datasets, name, subset, exc, label)) from None
        # Offline or the Hub unreachable, and not in datasets' own cache (or not this subset):
        # the files a `hf download` or an earlier online run left in the Hub cache.
        folder = hub.cached_dataset(name)
        if folder is None:
            reason = "HF_HUB_OFFLINE is set" if hub.offline() else "the Hub cannot be reached"
            raise DatasetError(
                f"{label} is not a local file or folder, {reason}, and neither the datasets cache nor "
                f"the Hub cache ({hub.hub_cache()}) holds it: run once with network access or "
                f"`hf download --repo-type dataset {name}`"
            ) from None
        return _read_folder(folder, subset, split, label)
    return _split_rows(loaded, split, label, lambda: datasets.load_dataset(name, subset, split=split))


def _load_dataset(datasets, path: str, subset: str | None, label: str):
    try:
        return datasets.load_dataset(path, subset)
    except Exception as exc:
        raise DatasetError(_load_error(datasets, path, subset, exc, label)) from None


def _load_error(datasets, path: str, subset: str | None, exc: Exception, label: str) -> str:
    """One line: an unknown or missing subset names the available ones."""
    if isinstance(exc, ValueError) and ("BuilderConfig" in str(exc) or "Config name is missing" in str(exc)):
        try:
            names = datasets.get_dataset_config_names(path)
        except Exception:
            names = None
        if names and (subset is not None or len(names) > 1):
            if subset is None:
                return f"{label} has several subsets; choose one of: {', '.join(names)}"
            return f"{label} has no subset {subset!r}; subsets: {', '.join(names)}"
    return f"cannot load {label}" + (f" (subset {subset!r})" if subset else "") + f": {first_line(exc)}"


def _split_rows(loaded, split: str, label: str, load_split) -> list[dict[str, Any]]:
    """``loaded[split]``; a slice or sum of splits (``"train[:100]"``) is loaded by ``load_split``."""
    if split in loaded:
        return loaded[split].to_list()
    available = ", ".join(loaded)
    if not any(c in split for c in "[+"):
        raise DatasetError(f"{label} has no split {split!r}; splits: {available}")
    try:
        return load_split().to_list()
    except Exception as exc:
        raise DatasetError(
            f"{label}: cannot read split {split!r} ({first_line(exc)}); splits: {available}"
        ) from None


# ---------------------------------------------------------------------------------------
# Column mapping
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns hold the problem, the answer, and (optionally) a worked
    solution and a row id. ``solution`` and ``id`` may be absent from the data."""

    problem: str = "problem"
    answer: str = "answer"
    solution: str | None = "solution"
    id: str | None = "id"


@dataclass(frozen=True)
class Example:
    id: str
    problem: str
    answer: str
    solution: str | None = None


@dataclass(frozen=True)
class LoadedDataset:
    """Examples in file order; ``dropped_ids`` are rows skipped for an empty answer."""

    source: str
    examples: list[Example]
    dropped_ids: list[str]


def load_examples(
    source: str | Path,
    columns: ColumnMap = ColumnMap(),
    split: str = "train",
    drop_missing_answers: bool = False,
    subset: str | None = None,
) -> LoadedDataset:
    """Read a dataset (any source :func:`read_rows` takes) and map it to :class:`Example` rows.

    A missing problem/answer column, or a row with an empty problem, raises
    :class:`DatasetError`. So does a row with an empty answer, unless
    ``drop_missing_answers`` (such rows are then listed in ``dropped_ids``).
    """
    rows = read_rows(source, split, subset)
    if not rows:
        raise DatasetError(f"{source}: the dataset is empty")
    present = set().union(*(row.keys() for row in rows))
    for role, name in (("problem", columns.problem), ("answer", columns.answer)):
        if name not in present:
            raise DatasetError(
                f"{source}: no {role} column {name!r} (columns: {', '.join(sorted(present))})"
            )
    examples, dropped = [], []
    for index, row in enumerate(rows):
        row_id = str(row.get(columns.id, index)) if columns.id else str(index)
        where = f"{source}: row {index} (id {row_id!r})"
        problem = row.get(columns.problem)
        if not isinstance(problem, str) or not problem.strip():
            raise DatasetError(
                f"{where} has an empty or non-text problem in column {columns.problem!r}"
            )
        answer = _answer_text(row.get(columns.answer), where)
        if answer is None:
            if drop_missing_answers:
                dropped.append(row_id)
                continue
            raise DatasetError(
                f"{where} has no answer in column {columns.answer!r} "
                "(drop_missing_answers=True skips such rows)"
            )
        solution = row.get(columns.solution) if columns.solution else None
        examples.append(
            Example(
                id=row_id,
                problem=problem,
                answer=answer,
                solution=solution if isinstance(solution, str) else None,
            )
        )
    return LoadedDataset(source=str(source), examples=examples, dropped_ids=dropped)


def _answer_text(value: Any, where: str) -> str | None:
    if isinstance(value, bool):
        raise DatasetError(f"{where}: answer {value!r} is a boolean, not a maths answer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):  # a missing value in a pandas-written Parquet file
            return None
        # Some sources store integer answers as floats (AMC's 27.0).
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value if value.strip() else None
    if value is None:
        return None
    raise DatasetError(
        f"{where}: answer {value!r} is a {type(value).__name__}, not text or a number"
    )


# ---------------------------------------------------------------------------------------
# Chat template
# ---------------------------------------------------------------------------------------


def load_tokenizer(path: str | Path = BUNDLED_TOKENIZER_DIR):
    """A Hugging Face tokenizer; by default the bundled DeepSeek-R1-Distill-Qwen-1.5B one."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def render_prompt(
    tokenizer, problem: str, system_prompt: str | None, user_template: str | None = None
) -> str:
    """The prompt text the model sees: the tokenizer's chat template with the generation
    prompt (for R1 models it ends with a prefilled ``"<think>\\n"``); without a template, the
    system prompt and the problem as plain text.

    ``user_template`` wraps the problem, ``{Question}`` marking its place (see
    :data:`EVAL_PROMPT_TEMPLATE`); None sends the problem as it is.
    """
    user = problem if user_template is None else user_template.replace("{Question}", problem)
    if tokenizer.chat_template is None:
        # A model without a chat template (a base model; the CPU default's export): the plain text,
        # after the BOS a template would have written.
        return (tokenizer.bos_token or "") + "\n\n".join(p for p in (system_prompt, user) if p is not None)
    messages = [{"role": "user", "content": user}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt; ``token_ids`` are the whole prompt (the template writes BOS)."""

    example: Example
    text: str
    token_ids: tuple[int, ...]


def encode_prompts(
    examples: Sequence[Example],
    tokenizer,
    system_prompt: str | None = OPEN_RS_SYSTEM_PROMPT,
    user_template: str | None = None,
    double_bos: bool = False,
) -> list[Prompt]:
    """Render and tokenise every example's prompt (training defaults: open-rs's system
    prompt, the problem as the user message).

    The chat template already starts with BOS, so by default no other is added. double_bos: the
    paper's prompts, tokenised with the tokenizer's special tokens on top (TRL handed vLLM the
    templated text, and lighteval did the same, so the model saw BOS twice)."""
    texts = [render_prompt(tokenizer, e.problem, system_prompt, user_template) for e in examples]
    ids = tokenizer(texts, add_special_tokens=double_bos)["input_ids"]
    return [Prompt(e, t, tuple(i)) for e, t, i in zip(examples, texts, ids)]


def truncate_left(token_ids: Sequence[int], max_length: int | None) -> list[int]:
    """Keep the last ``max_length`` tokens, as TRL truncates prompts for the training
    forward (the start, with the system prompt, is lost; the question's end is kept)."""
    return list(token_ids if max_length is None else token_ids[-max_length:])


# ---------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptBatch:
    """``prompts_per_batch`` distinct prompts, each to be sampled ``num_generations`` times.

    :meth:`columns` gives the per-completion columns for the rewards: prompt i's
    ``num_generations`` rows are contiguous, in the order completions are expected.
    """

    prompts: tuple[Prompt, ...]
    num_generations: int
    epoch: int
    index_in_epoch: int
    max_prompt_length: int | None

    @property
    def texts(self) -> list[str]:
        """Full prompt texts, for the generation engine (open-rs generated from these)."""
        return [p.text for p in self.prompts]

    @property
    def prompt_ids(self) -> list[list[int]]:
        """Prompt token ids left-truncated to ``max_prompt_length`` (training forward)."""
        return [truncate_left(p.token_ids, self.max_prompt_length) for p in self.prompts]

    @property
    def num_truncated(self) -> int:
        limit = self.max_prompt_length
        return 0 if limit is None else sum(len(p.token_ids) > limit for p in self.prompts)

    def columns(self) -> dict[str, list]:
        """``id``, ``problem``, ``answer``, ``prompt`` and, when every example has one,
        ``solution``: each of length prompts x num_generations."""
        examples = [p.example for p in self.prompts]
        table: dict[str, list] = {
            "id": [e.id for e in examples],
            "problem": [e.problem for e in examples],
            "answer": [e.answer for e in examples],
            "prompt": self.texts,
        }
        if all(e.solution is not None for e in examples):
            table["solution"] = [e.solution for e in examples]
        g = self.num_generations
        return {name: [v for v in values for _ in range(g)] for name, values in table.items()}


DATA_ORDERS = ("jgrpo", "trl")


class PromptBatcher:
    """Endless batches over shuffled epochs; deterministic and resumable.

    Epoch e visits the prompts in the order of a permutation, in ``len(prompts) //
    prompts_per_batch`` batches; the remainder of each epoch is skipped (a different remainder
    every epoch). order "jgrpo": numpy's permutation seeded by (seed, e). order "trl": the e-th
    ``torch.randperm`` of one generator seeded with ``seed``, as TRL 0.16's RepeatRandomSampler
    draws it (the paper's prompt order; needs torch). :meth:`state_dict` is the cursor (epoch,
    next batch), so a resumed run continues with exactly the batch that comes next.
    """

    def __init__(
        self,
        prompts: Sequence[Prompt],
        prompts_per_batch: int,
        num_generations: int,
        seed: int,
        max_prompt_length: int | None = None,
        order: str = "jgrpo",
    ):
        check_choice("order", order, DATA_ORDERS)
        if prompts_per_batch < 1 or num_generations < 1:
            raise ValueError("prompts_per_batch and num_generations must be >= 1")
        if len(prompts) < prompts_per_batch:
            raise ValueError(
                f"{len(prompts)} prompts cannot fill a batch of {prompts_per_batch} prompts"
            )
        self.prompts = list(prompts)
        self.prompts_per_batch = prompts_per_batch
        self.num_generations = num_generations
        self.seed = seed
        self.max_prompt_length = max_prompt_length
        self.order = order
        self.batches_per_epoch = len(self.prompts) // prompts_per_batch
        self._fingerprint = _fingerprint(p.example for p in self.prompts)
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if self.order == "jgrpo":
            return np.random.default_rng([self.seed, epoch]).permutation(len(self.prompts))
        import torch

        # TRL's generator is never reseeded: epoch e's order is its (e + 1)-th draw, replayed here so
        # that a resumed run needs no generator state.
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(epoch):
            torch.randperm(len(self.prompts), generator=generator)
        return torch.randperm(len(self.prompts), generator=generator).numpy()

    def next_batch(self) -> PromptBatch:
        if self.position == self.batches_per_epoch:
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
        start = self.position * self.prompts_per_batch
        indices = self._order[start : start + self.prompts_per_batch]
        batch = PromptBatch(
            prompts=tuple(self.prompts[i] for i in indices),
            num_generations=self.num_generations,
            epoch=self.epoch,
            index_in_epoch=self.position,
            max_prompt_length=self.max_prompt_length,
        )
        self.position += 1
        return batch

    def __iter__(self) -> Iterator[PromptBatch]:
        return self

    def __next__(self) -> PromptBatch:
        return self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_prompts": len(self.prompts),
            "prompts_per_batch": self.prompts_per_batch,
            "fingerprint": self._fingerprint,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; refuses a state from other data or batch settings,
        which would silently replay or skip prompts."""
        mine = self.state_dict()
        for key in ("seed", "num_prompts", "prompts_per_batch", "fingerprint"):
            if state[key] != mine[key]:
                raise ValueError(
                    f"cannot resume: saved {key} {state[key]!r} differs from {mine[key]!r}"
                )
        if not 0 <= state["position"] <= self.batches_per_epoch:
            raise ValueError(f"cannot resume: position {state['position']} is out of range")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._permutation(self.epoch)


def _fingerprint(examples) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.id, e.problem, e.answer]).encode())
    return digest.hexdigest()[:16]
