"""`--help` for the run config, written from the config classes themselves, and the hints given
for a key that does not exist ("did you mean", TRL's flat names).

Each key's description is its field's comment in the source (the comment lines right above the
field and the one at the end of its line), so the help cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import io
import textwrap
import tokenize
from typing import Any



# TRL GRPOConfig / open-r1 names whose jgrpo key has another leaf name. A flat name that equals a
# jgrpo leaf (learning_rate, beta, ...) is found without this table.
TRL_NAMES = {
    "model_name_or_path": "model.path",
    "dataset_name": "data.source",
    "dataset_config": "data.subset",
    "torch_dtype": "model.param_dtype",
    "bf16": "model.compute_dtype",
    "gradient_checkpointing": "model.remat",
    "use_vllm": "rollout.engine",
    "vllm_gpu_memory_utilization": "rollout.gpu_memory_utilization",
    "vllm_max_model_len": "rollout.max_model_len",
    "vllm_enforce_eager": "rollout.enforce_eager",
    "reward_funcs": "rewards.funcs",
    "reward_weights": "rewards.weights",
    "epsilon": "loss.epsilon_low",
    "per_device_train_batch_size": "loss.micro_batch_size",
    "vllm_importance_sampling_cap": "loss.importance_sampling_cap",
    "lr_scheduler_type": "optim.schedule",
    "adam_beta1": "optim.b1",
    "adam_beta2": "optim.b2",
    "adam_epsilon": "optim.eps",
    "logging_dir": "train.output_dir",
    "save_total_limit": "train.keep_checkpoints",
    "report_to": "log.wandb",
}


def field_comments(cls) -> dict[str, str]:
    """Field name -> its comment: the comment lines right above the field, then the one at the
    end of its line. Fields without a comment are absent."""
    source = textwrap.dedent(inspect.getsource(cls))
    docs: dict[str, str] = {}
    pending: list[str] = []
    line_field: dict[int, str] = {}
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        body_level = tok.start[1] == 4
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if tok.start[0] in line_field:
                name = line_field[tok.start[0]]
                docs[name] = " ".join(filter(None, [docs.get(name, ""), text]))
            elif body_level:
                pending.append(text)
        elif tok.type == tokenize.NAME and body_level and tokens[i + 1].string == ":":
            line_field[tok.start[0]] = tok.string
            if pending:
                docs[tok.string] = " ".join(pending)
            pending = []
        elif tok.type == tokenize.NL and tok.line.strip() == "":
            pending = []
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT) \
                and body_level:
            pending = []  # a statement other than a field: the comments above were about it
    return docs


def _leaves(cfg, prefix: str = ""):
    """(dotted key, value, comment) for every settable key of a config instance."""
    docs = field_comments(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, value, docs.get(f.name, "")


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(_show, value)) + "]"
    if isinstance(value, str) and ("\n" in value or len(value) > 60):
        return repr(value[:57] + "...")
    return str(value)


def describe_keys(cfg, choices: dict[str, tuple[str, ...]], skip: set[str] = frozenset()) -> list[str]:
    """Every settable key of `cfg` with its value there (the effective default of the config being
    loaded), its allowed values (`choices`, by dotted key) and its comment."""
    lines, section = [], None
    for key, value, doc in _leaves(cfg):
        if key in skip:
            continue
        head = key.split(".")[0]
        if head != section:
            lines.append(f"\n{head}:")
            section = head
        allowed = choices.get(key) or (("true", "false") if isinstance(value, bool) else None)
        lines.append(f"  --{key} {_show(value)}" + (f"   [{' | '.join(allowed)}]" if allowed else ""))
        if doc:
            lines += textwrap.wrap(doc, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines


def all_keys(cfg) -> list[str]:
    return [key for key, _, _ in _leaves(cfg)]


def unknown_key_hint(key: str, known: list[str]) -> str:
    """What to say about `key`, which is not a config key: the jgrpo key for a TRL name, or the
    closest keys."""
    if key in TRL_NAMES:
        return f"TRL's {key} is --{TRL_NAMES[key]} here"
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf and k != key]
    if same_leaf:
        return "did you mean " + " or ".join(f"--{k}" for k in same_leaf) + "?"
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.75)
    if not close:  # a typo in the last part only: compare within the same section
        section = key.rsplit(".", 1)[0] + "." if "." in key else ""
        leaves = {k.rsplit(".", 1)[-1]: k for k in known if k.startswith(section)}
        close = [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=2, cutoff=0.6)]
    return ("did you mean " + " or ".join(f"--{k}" for k in close) + "?") if close else \
        "python -m jgrpo.train --help lists every key"
