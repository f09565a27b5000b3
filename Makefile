# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := espeak-ng flite fluidsynth fluid-soundfont-gm libsndfile1 sox flac festival festvox-kdlpc16k festvox-kallpc16k festvox-us-slt-hts
# The browser test of `soundlm serve` (headless Chromium driven by Selenium); skipped where it cannot install.
BROWSER_PACKAGES := chromium chromium-driver
# MPI for `accelerate launch --cpu --num_processes N --mpirun_hostfile FILE` (several CPU processes through mpirun);
# its test is skipped where it cannot install.
MPI_PACKAGES := mpich

.PHONY: demo test test-slow system venv bench clean serve

system:
	@if command -v apt-get >/dev/null 2>&1 && ! (command -v espeak-ng >/dev/null && command -v flite >/dev/null && command -v fluidsynth >/dev/null && command -v text2wave >/dev/null && test -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts && test -d /usr/share/festival/voices/english/kal_diphone && test -f /usr/share/sounds/sf2/FluidR3_GM.sf2); then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@if command -v apt-get >/dev/null 2>&1 && ! (command -v chromium >/dev/null && command -v chromedriver >/dev/null); then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(BROWSER_PACKAGES)) \
			|| echo "chromium did not install: the browser test of soundlm serve will be skipped"; \
	fi
	@if command -v apt-get >/dev/null 2>&1 && ! (command -v mpirun >/dev/null || command -v mpiexec >/dev/null); then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(MPI_PACKAGES)) \
			|| echo "mpich did not install: the test of accelerate launch --cpu through mpirun will be skipped"; \
	fi

$(BIN)/soundlm: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,eval,plot,serve,finetune,onnx]'
	touch $@

venv: $(BIN)/soundlm

demo: system venv
	$(BIN)/soundlm demo --out demo_out

# The web page and API on http://127.0.0.1:8000/ with the shipped model (Ctrl-C stops).
serve: system venv
	$(BIN)/soundlm serve

test: system venv
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: system venv
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) demo_out
