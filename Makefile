# Two commands do everything on a fresh machine with Python 3.11 and pip:
#   make reproduce   # the whole embedded reproduction -> figures/ and figures/results.json
#   make test        # unit tests + every notebook (smoke profile), pytest's summary last
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PROFILE ?= default

.PHONY: setup reproduce test lab docs clean-data

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mtc_nb)" >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

reproduce: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/mtc reproduce --profile $(PROFILE) $(if $(VARIANT),--variant $(VARIANT))

test: $(STAMP)
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(BIN)/python -m pytest

# JupyterLab on the notebooks (--allow-root: a container's root user may open them too). The notebooks open on the
# `smoke` profile: its run is made first (about a minute, then current), so Run All works in every notebook.
lab: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/mtc reproduce --profile smoke
	HF_HUB_OFFLINE=1 $(BIN)/jupyter lab --notebook-dir=nbs --allow-root

# the docs site: the README, the docs pages, every notebook with its outputs (the smoke profile's run) and the API
# reference, by Sphinx with myst-nb -> docs/_build/html/index.html (a few minutes on 2 cores: it runs the notebooks)
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[docs]"
	HF_HUB_OFFLINE=1 $(BIN)/mtc reproduce --profile smoke
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(BIN)/python docs/build_site.py --profile smoke

clean-data:
	rm -rf data/smoke data/default
