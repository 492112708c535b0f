# distributed-counter — see README.md.
#   make run    build (release) and start on 127.0.0.1:8085
#   make test   format check, clippy, and every test
#   make lint   format check and clippy only
#   make bench  release benchmark; prints a table (see README "Performance")

CARGO ?= cargo
ARGS ?=

.PHONY: run build test lint fmt bench clean

run:
	$(CARGO) run --release -- $(ARGS)

build:
	$(CARGO) build --release

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

test: lint
	$(CARGO) test --all-targets

fmt:
	$(CARGO) fmt

bench:
	$(CARGO) build --release --bins
	./target/release/bench $(ARGS)

clean:
	$(CARGO) clean
