# distributed-counter — see README.md.
#   make run    build (release) and start on 127.0.0.1:8085
#   make test   format check, clippy, and every test (scale-out tests when
#               redis-server is installed, browser tests when chromium is,
#               the API fuzz run when .ci/schemathesis.sh --install was run)
#   make lint   format check and clippy only
#   make bench  release benchmark; prints a table (see README "Performance");
#               ARGS=--quick for a short run, ARGS="--only scaleout" for one
#               section (the usage comment of src/bin/bench/main.rs lists them)

CARGO ?= cargo
ARGS ?=

.PHONY: run build test lint fmt bench clean

run:
	$(CARGO) run --release -- $(ARGS)

build:
	$(CARGO) build --release

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features scaleout -- -D warnings

test: lint
	$(CARGO) test --workspace --all-targets
	@if command -v redis-server >/dev/null; then \
		$(CARGO) test --features scaleout --test scaleout --test scaleout_http; \
	else \
		echo "redis-server is not installed: the scale-out tests are skipped (see README)"; \
	fi
	@if [ -x target/schemathesis-venv/bin/st ]; then \
		.ci/schemathesis.sh && .ci/schemathesis.sh --fault-injection; \
	else \
		echo "schemathesis is not installed: the API fuzz run is skipped (.ci/schemathesis.sh --install)"; \
	fi

fmt:
	$(CARGO) fmt --all

# The scale-out rows need the service built with --features scaleout; it goes
# to its own target dir so that target/release keeps the default build.
bench:
	$(CARGO) build --release --bins
	@if command -v redis-server >/dev/null; then \
		$(CARGO) build --release --features scaleout --bin distributed-counter \
			--target-dir target/scaleout; \
	else \
		echo "redis-server is not installed: the scale-out rows are skipped"; \
	fi
	./target/release/bench $(ARGS)

clean:
	$(CARGO) clean
