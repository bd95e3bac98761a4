# ovphi: two set-up commands — `make demo` (tiny model end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OVPHI := $(VENV)/bin/ovphi
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

TINY := models/tiny

.PHONY: demo test install clean-models

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

$(TINY)/config.json: $(VENV)/.installed
	$(OVPHI) make-checkpoint tiny $(TINY) --force

demo: $(TINY)/config.json
	$(PY) -m ovphi.model.demo $(TINY)

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean-models:
	rm -rf models
