# Two commands do everything on a fresh machine:
#   make demo   set up .venv and watch a live simultaneous translation on the bundled model
#   make test   set up .venv and run the test suite (the real-model test included)
VENV   ?= .venv
PY     := $(VENV)/bin/python
SEQPO  := $(VENV)/bin/seqpo
PYTHON ?= python3

.PHONY: demo test test-fast setup clean system-packages

setup: $(VENV)/.installed

# torch is pinned to the CPU wheel that ships with this machine image; any other spec pulls a
# multi-GB CUDA build. On a GPU machine install your own torch first, then `pip install -e .`.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,speech]'
	touch $@

# Debian packages the tests drive: espeak-ng synthesizes English speech (speech tests), chromium is
# the headless browser of the web page tests (Playwright's own browser downloads fail here); g++ and
# cmake compile llama.cpp for the `--quantize gguf` tests.
# Installed by `make test` itself, so a fresh clone runs every test; needs root or sudo.
system-packages:
	@missing=""; command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	  { [ -x /usr/bin/chromium ] || command -v chromium >/dev/null; } || missing="$$missing chromium"; \
	  command -v g++ >/dev/null || missing="$$missing g++"; command -v cmake >/dev/null || missing="$$missing cmake"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing (apt-get)"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || \
	    { echo "error: could not install$$missing (run: sudo apt-get install$$missing)"; exit 1; }; \
	  fi

demo: setup
	printf '%s\n' "The city council approved the new budget for public schools yesterday." \
	  "My sister lives in a small village near the sea." | $(SEQPO) translate --pair en-de --policy llm
	$(SEQPO) translate --pair en-zh --policy llm \
	  "Our team released a new version of the software last week."

# the tests also run `--quantize gguf`, whose llama-cpp-python compiles llama.cpp (~8 min, once);
# its multimodal library is not needed and not built
$(VENV)/.llama-cpp: $(VENV)/.installed
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(PY) -m pip install -q -e '.[llama-cpp]'
	touch $@

test: setup system-packages $(VENV)/.llama-cpp
	$(PY) -m pytest -q -m "slow or not slow"

test-fast: setup system-packages $(VENV)/.llama-cpp
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
