# Prewarm: the commands a developer and CI use.
.PHONY: up down status demo test lint fmt build

up:            ## install what is missing and start postgres, redis, tansu (Kafka), moto (S3)
	scripts/stack.sh up

down:          ## stop what `make up` started
	scripts/stack.sh down

status:
	scripts/stack.sh status

demo:          ## bring everything up, start both services, run the demo client
	scripts/demo.sh

test: up       ## the whole test suite, against the real stack
	scripts/test.sh

lint:          ## formatting and clippy, as CI would want them
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --workspace --release
