# Beamline gateway. Quick start: `make run` (the gateway with everything it needs) and
# `make test` (every test). Each target runs the idempotent setup first.
.PHONY: setup build check run dev test clean switch

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

# The traffic switch of the running gateway (docs/RUNBOOK.md): PERCENT=0-100 of the tenants on
# this gateway, SHADOW=on|off; a checked reload (nginx -t on a staging render first). Optional:
# PREFIX=<nginx prefix> (default nginx/), GATEWAY_CONFIG=<file>, FORCE=1 (also apply other
# pending config changes).
switch:
	@node scripts/switch.js --percent "$(PERCENT)" $(if $(SHADOW),--shadow "$(SHADOW)") $(if $(PREFIX),--prefix "$(PREFIX)") $(if $(FORCE),--force)

clean:
	rm -rf dist-lua nginx
