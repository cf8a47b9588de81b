.PHONY: setup run test bench

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/deqstudio

test: setup
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q

bench: setup
	.venv/bin/deqstudio bench
