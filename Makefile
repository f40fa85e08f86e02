# Beamline gateway. Quick start: `make run` (the gateway with everything it needs) and
# `make test` (every test). Each target runs the idempotent setup first.
.PHONY: setup build check run dev test clean

setup:
	@bash scripts/setup.sh

build: setup
	@node scripts/build.js

check: setup
	@node scripts/check.js

run: setup
	@node scripts/run.js

# run + watch src-ts/, templates/ and the config: recompile, re-render, nginx -t, reload.
dev: setup
	@node scripts/dev.js

test: setup
	@node scripts/test.js

clean:
	rm -rf dist-lua nginx
