"""Hugging Face Hub ids -> local folders, through huggingface_hub's cache.

``resolve_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")`` is the cached snapshot folder of
that model, downloaded first when something is missing and the Hub can be reached; with
``HF_HUB_OFFLINE=1`` only the cache is read. A local folder is returned as it is (a local path
always wins over a Hub id of the same spelling). ``"org/name@revision"`` pins a branch, tag or
commit. The cache is huggingface_hub's: ``HF_HUB_CACHE``, by default ``$HF_HOME/hub``
(``~/.cache/huggingface/hub``); ``hf download <id>`` fills it ahead of an offline run.

Errors are :class:`HubError` (a ValueError), one line naming the id and the problem.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# What jgrpo reads from a model repository: config/generation/tokenizer JSON, safetensors weights,
# merges/vocab text, sentencepiece and tiktoken vocabularies, chat templates. Not the README's
# figures, ONNX/GGUF/PyTorch-pickle copies of the weights, or remote code.
MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja")

_PART = r"[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:@(?P<revision>[\w./-]+))?$")


class HubError(ValueError):
    """A model or dataset that cannot be found locally or on the Hub; the message is one line."""


def parse_hub_id(text: str) -> tuple[str, str | None] | None:
    """``"org/name"`` -> ``("org/name", None)``, ``"org/name@rev"`` -> ``("org/name", "rev")``;
    None for anything that cannot be a Hub repository id (an absolute path, ``./x``, ``a/b/c``)."""
    match = _HUB_ID.match(text)
    if match is None or ".." in match["repo"] or "--" in match["repo"]:
        return None
    return match["repo"], match["revision"]


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids reaching the Hub."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_model(path_or_id: str | os.PathLike) -> Path:
    """A local model folder (must hold ``config.json``), or the Hub cache's snapshot of a model id."""
    text = str(path_or_id)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise HubError(f"model path {path} is a file, not a model folder")
        if not (path / "config.json").is_file():
            raise HubError(f"{path} has no config.json: not a Hugging Face model folder")
        return path
    parsed = parse_hub_id(text)
    if parsed is None:
        raise HubError(f"model folder not found: {path} (and not a Hugging Face model id, org/name)")
    repo_id, revision = parsed
    folder = snapshot(repo_id, revision=revision, repo_type="model", allow_patterns=MODEL_FILES)
    if not (folder / "config.json").is_file():
        raise HubError(f"model {repo_id!r} has no config.json (snapshot {folder}): not a transformers model")
    return folder


def cached_dataset(repo_id: str, revision: str | None = None) -> Path | None:
    """The Hub cache's snapshot of a dataset repository (what ``hf download --repo-type dataset``
    or an online ``datasets.load_dataset`` left there), or None; never touches the network."""
    try:
        return snapshot(repo_id, revision=revision, repo_type="dataset", local_files_only=True)
    except HubError:
        return None


def snapshot(repo_id: str, *, revision: str | None = None, repo_type: str = "model",
             allow_patterns=None, local_files_only: bool = False) -> Path:
    """``huggingface_hub.snapshot_download`` with its failures as one-line :class:`HubError`."""
    from huggingface_hub import errors, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    at = f" at revision {revision!r}" if revision else ""
    download = ("hf download" + (" --repo-type dataset" if repo_type == "dataset" else "") + f" {repo_id}"
                + (f" --revision {revision}" if revision else ""))
    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                                      allow_patterns=list(allow_patterns) if allow_patterns else None,
                                      local_files_only=local_files_only))
    except LocalEntryNotFoundError as e:  # not (completely) cached, and the Hub is off limits or unreachable
        incomplete = getattr(errors, "IncompleteSnapshotError", ())  # absent from older huggingface_hub
        partial = "is only partly" if isinstance(e, incomplete) else "is not"
        reason = ("HF_HUB_OFFLINE is set" if offline() else
                  "only the cache was read" if local_files_only else "the Hub cannot be reached")
        raise HubError(f"{repo_type} {repo_id!r}{at} {partial} in the Hugging Face cache {hub_cache()} and {reason}: "
                       f"download it with network access (`{download}`) or give a local folder") from None
    except GatedRepoError:
        raise HubError(f"{repo_type} {repo_id!r} is gated on the Hugging Face Hub: accept its terms on its page "
                       "and log in (`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise HubError(f"no {repo_type} {repo_id!r} on the Hugging Face Hub (nor a local folder of that name); "
                       "a private repository needs a login (`hf auth login` or HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_type} {repo_id!r} has no revision {revision!r} on the Hugging Face Hub") from None
    except (HfHubHTTPError, OSError) as e:
        raise HubError(f"cannot download {repo_type} {repo_id!r}{at} from the Hugging Face Hub: "
                       f"{first_line(e)}") from None


def first_line(error: BaseException) -> str:
    """An exception as one line of an error message: its first line, or its type when it is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
