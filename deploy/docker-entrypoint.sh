#!/bin/sh
# Beamline gateway container entrypoint (Dockerfile ENTRYPOINT; PID 1 after the exec).
#
# 1. Validate the config (GATEWAY_CONFIG or $BEAMLINE_HOME/gateway.yaml, plus the environment
#    overrides: NATS_URL, GATEWAY_PORT, …) and render it into the writable prefix.
# 2. Check the result with `nginx -t`, with exactly the arguments nginx is started with and
#    the container's own stdout/stderr (the access log opens /dev/stdout), like the nginx that
#    follows.
#    Any failure in 1 or 2 exits non-zero (set -e) before nginx starts.
# 3. exec nginx in the foreground (the config says `daemon off`), so nginx is PID 1 and gets
#    the container's stop signal itself: STOPSIGNAL SIGQUIT = graceful quit (workers finish
#    in-flight requests, bounded by server.worker_shutdown_timeout_seconds).
#
# Only the prefix is written (config, gateway.json 0600, pid, temp files), so the root
# filesystem can be read-only. Everything runs as the image's non-root user; the rendered
# config has no `user` directive (it only matters when the master runs as root).
#
# The defaults are the image's paths; tests run this same script against the repository
# (BEAMLINE_HOME=<repo>, GATEWAY_PREFIX=<tmp>, GATEWAY_RUNTIME=debian, NGINX_BIN=/usr/sbin/nginx).
set -eu

BEAMLINE_HOME="${BEAMLINE_HOME:-/opt/beamline}"
GATEWAY_PREFIX="${GATEWAY_PREFIX:-/var/run/beamline}"
GATEWAY_RUNTIME="${GATEWAY_RUNTIME:-debian}"
NGINX_BIN="${NGINX_BIN:-/usr/sbin/nginx}"
NODE_BIN="${NODE_BIN:-node}"
export NGINX_BIN

cd "$BEAMLINE_HOME"
"$NODE_BIN" "$BEAMLINE_HOME/scripts/render.js" \
  --runtime "$GATEWAY_RUNTIME" \
  --prefix "$GATEWAY_PREFIX" \
  --lua-dir "$BEAMLINE_HOME/dist-lua"

"$NGINX_BIN" -t -p "$GATEWAY_PREFIX/" -c "$GATEWAY_PREFIX/nginx.conf" -e stderr

exec "$NGINX_BIN" -p "$GATEWAY_PREFIX/" -c "$GATEWAY_PREFIX/nginx.conf" -e stderr
