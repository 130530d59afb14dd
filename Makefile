# Two commands for a newcomer: `make book` and `make test`. Both create .venv from requirements.txt when it
# is missing or older than requirements.txt/pyproject.toml, and generate the notebooks from nbs_src/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Widgets draw static panels, TensorFlow stays quiet, while building or testing. The determinism settings
# are exported so every kernel has them before it imports TensorFlow, whatever a notebook imports first.
export BOOK_STATIC := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0

.PHONY: book test unit nbval notebooks lab bench robustness clean env
.DEFAULT_GOAL := book

env: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

notebooks: $(STAMP)
	@$(BIN)/python scripts/make_notebooks.py

# Execute every chapter (quick profile, jupyter-cache: unchanged chapters are not re-run), then gather the
# findings into the reproduction report and rebuild incrementally so the report is current.
book: notebooks
	@$(BIN)/python scripts/build_pages.py
	$(BIN)/jupyter-book build . -W --keep-going
	@$(BIN)/python scripts/build_pages.py
	$(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# Unit tests and every chapter through nbval, in one pytest run (one summary line).
test: notebooks
	$(BIN)/python -m pytest tests book/chapters --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest tests

nbval: notebooks
	$(BIN)/python -m pytest book/chapters --nbval-lax --nbval-current-env --nbval-cell-timeout=600

lab: notebooks
	BOOK_STATIC=0 $(BIN)/jupyter lab book/chapters

# Every chapter at BOOK_SEED = 0, 1, 2 (one cache per seed); the reproduction report then shows the table.
robustness: notebooks
	$(BIN)/python scripts/robustness.py --seeds 0 1 2 --record

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf _build .cache book/chapters book/report.md book/api.md .pytest_cache
