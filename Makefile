# Each target does its own setup: a fresh clone needs only `make sample` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: sample test test-fast test-gpu install install-gpu bench bench-data clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e ".[cpu,dev]"
	touch $(STAMP)

install: $(STAMP)

# CUDA face models: swap onnxruntime for onnxruntime-gpu (never both installed).
install-gpu: $(STAMP)
	$(PY) -m pip uninstall -y -q onnxruntime
	$(PY) -m pip install -q -e ".[gpu]"

sample: $(STAMP)
	$(VENV)/bin/keyrender run samples/shotlist.csv --out renders/sample

test: $(STAMP)
	$(PY) -m pytest -q

# the fast tier: ~90% of the tests in under 2 minutes on 2 cores (end-to-end renders, Ray and real
# face photos marked `slow` are left out); `make test` runs everything
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) benchmarks/interpolation.py

# second benchmark clip: vtest.avi from Debian's opencv-doc (OpenCV sample data, like tree.avi)
bench-data: benchmarks/data/vtest.avi
benchmarks/data/vtest.avi:
	mkdir -p benchmarks/data/.deb
	cd benchmarks/data/.deb && apt-get download opencv-doc && dpkg -x opencv-doc_*.deb x
	cp benchmarks/data/.deb/x/usr/share/doc/opencv-doc/examples/data/vtest.avi $@
	rm -rf benchmarks/data/.deb

clean:
	rm -rf renders build *.egg-info .pytest_cache
