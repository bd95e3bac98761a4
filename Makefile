# ovphi: two set-up commands — `make demo` (tiny model end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OVPHI := $(VENV)/bin/ovphi
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

TINY := models/tiny
TINY_IR := models/tiny-int4
IMAGE ?= ovphi/calibration/builtin/bar_chart_0.png
MODEL ?= microsoft/Phi-3.5-vision-instruct
OUT ?= models/phi-3.5-vision-int4
DATASET ?= contextual

# The browser the chat page's tests drive: Debian's chromium (Playwright's own browser download is not reachable).
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test install browser convert chat serve bench bench-full bench-int4 clean-models

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,eval,serve]'
	touch $@

install: $(VENV)/.installed browser

browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
		apt-get install -y -qq chromium >/dev/null; } || { echo "make: chromium is missing and could not be installed:" \
		"install Debian's chromium package (sudo apt-get install chromium) or set CHROMIUM=/path/to/chrome"; exit 1; }

$(TINY)/config.json: $(VENV)/.installed
	$(OVPHI) make-checkpoint tiny $(TINY) --force

$(TINY_IR)/ovphi_manifest.json: $(TINY)/config.json
	$(OVPHI) convert $(TINY) $(TINY_IR) --dataset builtin --force

# The tiny model has random weights: the answer is gibberish; the pipeline is what it shows.
demo: $(TINY_IR)/ovphi_manifest.json
	@echo "--- the demo model has RANDOM weights: expect a streamed but meaningless answer ---"
	$(OVPHI) ask $(TINY_IR) --image $(IMAGE) --task caption --max-new-tokens 32
	$(OVPHI) ask $(TINY_IR) --image $(IMAGE) --task vqa --prompt "Which bar is the highest?" --format json --max-new-tokens 16

convert: $(VENV)/.installed
	$(OVPHI) convert $(MODEL) $(OUT) --dataset $(DATASET)

test: $(VENV)/.installed browser
	OVPHI_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q

# Chat about IMAGE with the folder `make convert` wrote (MODEL_DIR=models/tiny-int4 for the demo model).
MODEL_DIR ?= $(OUT)
chat: $(VENV)/.installed
	$(OVPHI) chat $(MODEL_DIR) --image $(IMAGE)

# The OpenAI-compatible API on the folder `make convert` wrote (MODEL_DIR=models/tiny-int4 for the demo model).
serve: $(VENV)/.installed
	$(OVPHI) serve $(MODEL_DIR)

# Latency of the demo IR, both backends, beside the PyTorch checkpoint.
bench: $(TINY_IR)/ovphi_manifest.json
	$(OVPHI) bench $(TINY_IR) pytorch:$(TINY) --out reports/bench-tiny

# The real model's dimensions with random weights (latency does not depend on weight values):
# 8 GB checkpoint, data-free INT4 / INT8 / FP16 IRs, then one bench run of all of them and PyTorch.
# Building takes 2 minutes; an INT4 convert about 5 (12 more where --vision auto picks static INT8 and
# calibrates the vision encoder); measuring about an hour, on 2 cores; needs ~20 GB of RAM.
FULL := models/full
$(FULL)/config.json: $(VENV)/.installed
	$(OVPHI) make-checkpoint full $(FULL) --force

$(FULL)-int4/ovphi_manifest.json: $(FULL)/config.json
	$(OVPHI) convert $(FULL) $(FULL)-int4 --no-awq --dataset builtin --force

$(FULL)-%/ovphi_manifest.json: $(FULL)/config.json
	$(OVPHI) convert $(FULL) $(FULL)-$* --weight-format $* --dataset builtin --force

bench-full: $(FULL)-int4/ovphi_manifest.json $(FULL)-int8/ovphi_manifest.json $(FULL)-fp16/ovphi_manifest.json
	$(OVPHI) bench pytorch:$(FULL) $(FULL)-int4 $(FULL)-int8 $(FULL)-fp16 --runs 2 --out benchmarks/reports/full

# The INT4 targets: ovphi's two engines beside optimum-intel and openvino.genai run with their own defaults,
# first turns, conversations, a new conversation about the same picture and a fresh process, in one run
# (~45 min). The report goes in a folder of this kind of CPU (e.g. full-int4-intel-xeon-amx).
CPU_KIND = $(shell $(PY) -c "from ovphi.cpu import cpu_kind; print(cpu_kind())" 2>/dev/null)
bench-int4: $(FULL)-int4/ovphi_manifest.json
	$(OVPHI) bench $(FULL)-int4 genai-stock:$(FULL)-int4 optimum-stock:$(FULL)-int4 --runs 2 \
		--scenario image_nc4 --scenario second_turn --scenario chat_3turns --scenario repeat_image \
		--scenario ask_cold --out benchmarks/reports/full-int4-$(CPU_KIND)

clean-models:
	rm -rf models
