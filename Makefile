# Prewarm: the commands a developer and CI use.
.PHONY: up up-hardened down status demo test test-fast lint fmt build bench bench-quick bench-build check-artifacts images fuzz schema

up:            ## install what is missing and start the core: postgres, redis, tansu (Kafka), moto (S3)
	scripts/stack.sh up

up-hardened: up ## the servers only the connectivity tests use (TLS Postgres, PgBouncer, TLS Redis, Redis Cluster and Sentinel, TLS Kafka) and schemathesis
	scripts/stack.sh hardened

down:          ## stop what `make up` started
	scripts/stack.sh down

status:
	scripts/stack.sh status

demo:          ## start what the demo uses (postgres, redis, moto, the dev-broker), both services, and the demo client
	scripts/demo.sh

test: up up-hardened ## the whole test suite, against the real stack (what CI runs)
	scripts/test.sh

test-fast:     ## no server at all: unit, property, settings, chart and OpenAPI checks (under 60 s once built)
	scripts/test-fast.sh

check-artifacts: ## the Helm chart (lint, render, validate) and docs/openapi.json, offline (also part of `make test`)
	scripts/check-artifacts.sh

images:        ## build both images with a real Docker engine (local base, host binaries) and smoke-test them
	scripts/images.sh

fuzz:          ## each fuzz target for FUZZ_SECS (default 600) over its committed corpus (fuzz/)
	scripts/fuzz.sh

schema:        ## regenerate crates/store/src/db/schema.rs with diesel print-schema (installs the diesel CLI into the cache)
	scripts/schema.sh

lint:          ## formatting and clippy, as CI would want them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --workspace --release

bench-build:
	cargo build --release -p template-api -p warmup-worker -p prewarm-recommender -p prewarm-bench

bench: bench-build  ## all scenarios; writes docs/benchmarks.md and docs/bench-latency.png
	scripts/stack.sh bench
	target/release/prewarm-bench

bench-quick: bench-build  ## the same scenarios, shorter (about 10 minutes once built: the catalogue scenario is 6 of them); writes .run/
	scripts/stack.sh bench
	target/release/prewarm-bench --quick --out .run/benchmarks-quick.md --plot .run/bench-latency-quick.png
