"""Model ids through the Hugging Face cache (jgrpo.hub), offline: a fake Hub cache laid out as
huggingface_hub writes it (blobs, symlinked snapshots, refs/main)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from jgrpo.hub import HubError, parse_hub_id, resolve_model

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], *, repo_type: str = "model",
                     commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Lay ``files`` (path in repo -> bytes) out as huggingface_hub's cache holds a downloaded
    snapshot: content in ``blobs/<sha256>``, ``snapshots/<commit>/<path>`` symlinks to it, and
    ``refs/<ref>`` naming the commit. Returns the snapshot folder."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def offline_env(tmp_path: Path) -> dict[str, str]:
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
            "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and an empty Hub cache under tmp_path (the environment, plus the module
    constants huggingface_hub and datasets read it into at import). Returns the Hub cache."""
    env = offline_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    try:
        import datasets
    except ImportError:
        pass
    else:
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", Path(env["HF_DATASETS_CACHE"]))
    cache = Path(env["HF_HUB_CACHE"])
    cache.mkdir(parents=True)
    return cache


@pytest.fixture(scope="module")
def tiny_model_files(tmp_path_factory) -> dict[str, bytes]:
    """A tiny random Qwen2 as transformers saves it (config.json, model.safetensors, ...)."""
    from tests.tiny_models import make_hf_model

    folder = tmp_path_factory.mktemp("tiny_qwen2")
    make_hf_model(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_hub_id_resolves_offline_to_the_cached_snapshot(offline_hub, tiny_model_files):
    from ports.hf_load import load_hf_params

    snapshot = put_in_hub_cache(offline_hub, "tiny-org/tiny-qwen2", tiny_model_files)
    folder = resolve_model("tiny-org/tiny-qwen2")
    assert folder == snapshot
    assert resolve_model(f"tiny-org/tiny-qwen2@{COMMIT}") == snapshot  # a pinned commit
    cfg, params = load_hf_params(folder)  # the weights, read through the cache's symlinks
    assert cfg.vocab_size == 257 and params


def test_absent_hub_id_offline_is_one_line(offline_hub):
    with pytest.raises(HubError) as info:
        resolve_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model 'deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B' is not in the Hugging Face cache")
    assert str(offline_hub) in message and "HF_HUB_OFFLINE is set" in message
    assert "`hf download deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B`" in message


def test_unknown_revision_offline(offline_hub, tiny_model_files):
    put_in_hub_cache(offline_hub, "tiny-org/tiny-qwen2", tiny_model_files)
    with pytest.raises(HubError, match=r"^model 'tiny-org/tiny-qwen2' at revision 'v2' is not in the Hugging Face cache"):
        resolve_model("tiny-org/tiny-qwen2@v2")


def test_snapshot_without_config_is_refused(offline_hub):
    put_in_hub_cache(offline_hub, "org/weights-only", {"model.safetensors": b"{}"})
    with pytest.raises(HubError, match=r"^model 'org/weights-only' has no config.json \(snapshot "):
        resolve_model("org/weights-only")


def test_local_folders(tmp_path, offline_hub, monkeypatch):
    folder = tmp_path / "org" / "name"
    folder.mkdir(parents=True)
    with pytest.raises(HubError, match=r"name has no config.json: not a Hugging Face model folder$"):
        resolve_model(folder)
    (folder / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("org/name") == Path("org/name")  # a local folder wins over the Hub id
    assert resolve_model(folder) == folder
    with pytest.raises(HubError, match=r"^model path .*config.json is a file, not a model folder$"):
        resolve_model(folder / "config.json")
    with pytest.raises(HubError, match=r"^model folder not found: /no/such/model \(and not a Hugging Face model id"):
        resolve_model("/no/such/model")


@pytest.mark.parametrize("text, expected", [
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", None)),
    ("org/name@main", ("org/name", "main")),
    ("org/name@refs/pr/1", ("org/name", "refs/pr/1")),
    ("/abs/path", None), ("./org/name", None), ("a/b/c", None), ("name", None), ("org/na--me", None),
    ("org/../x", None), ("org/name-", None),
])
def test_parse_hub_id(text, expected):
    assert parse_hub_id(text) == expected


def test_trainer_names_the_key(offline_hub):
    from jgrpo.train import SetupError, Trainer

    trainer = SimpleNamespace(cfg=SimpleNamespace(model=SimpleNamespace(path="org/absent")))
    with pytest.raises(SetupError, match=r"^model.path: model 'org/absent' is not in the Hugging Face cache"):
        Trainer._model_folder(trainer)


def test_environment_variables_alone_select_the_cache_and_offline_mode(tmp_path, tiny_model_files):
    """The user's route: HF_HUB_CACHE / HF_HUB_OFFLINE set before Python starts."""
    env = {**os.environ, **offline_env(tmp_path)}
    snapshot = put_in_hub_cache(Path(env["HF_HUB_CACHE"]), "tiny-org/tiny-qwen2", tiny_model_files)
    code = ("import sys; from jgrpo.hub import resolve_model, HubError\n"
            "print(resolve_model(sys.argv[1]))\n"
            "try: resolve_model(sys.argv[2])\n"
            "except HubError as e: print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code, "tiny-org/tiny-qwen2", "org/absent"], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found, error = proc.stdout.splitlines()
    assert Path(found) == snapshot
    assert error.startswith("model 'org/absent' is not in the Hugging Face cache") and "HF_HUB_OFFLINE" in error
