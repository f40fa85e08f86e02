# Beamline gateway image: the same rendered config, Lua paths and runtime as local runs and the
# tests (`make run`, `make test`): Debian 12's nginx + lua-nginx-module + LuaJIT2 + lua-resty-core
# (deploy/runtime-packages.txt, the list scripts/setup.sh installs; why: docs/adr/0004).
# Hardened: runs as a non-root user (uid 10001) on port 8080, writes only to its prefix
# (/var/run/beamline: a volume, tmpfs or emptyDir), so the root filesystem can be mounted
# read-only; SIGQUIT = graceful stop; /healthz health check.
#
#   docker build -t beamline-gateway .
#   docker run --read-only --tmpfs /var/run/beamline:uid=10001,gid=10001,mode=0700 \
#     -p 8080:8080 -e NATS_URL=nats://nats:4222 beamline-gateway
#   docker build --target reference-router -t beamline-reference-router .   # dev/test only
#
# See docs/DEPLOYMENT.md. spec/deploy/dockerfile.test.js checks the invariants of this file
# (no Docker engine where the tests run), and spec/deploy/entrypoint.test.js runs the
# entrypoint against the repository.

# Stage 1: compile src-ts/ to Lua with TypeScriptToLua, render once (fails the build on a
# template or config error).
FROM node:20-bookworm-slim AS build
WORKDIR /opt/beamline
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json gateway.yaml ./
COPY src-ts ./src-ts
COPY scripts ./scripts
COPY templates ./templates
RUN node scripts/build.js --force --prefix /tmp/nginx-render

# Stage 2: the runtime's node_modules (the render tooling only: ajv, handlebars, yaml).
FROM build AS prod-deps
RUN npm prune --omit=dev --no-audit --no-fund

# Optional stage: the reference Router (docker-compose's `router` service; never production,
# where the real Router answers). Keeps the dev dependencies: it needs the `nats` client.
FROM node:20-bookworm-slim AS reference-router
WORKDIR /opt/beamline
COPY --from=build /opt/beamline/node_modules ./node_modules
COPY package.json ./
COPY router ./router
COPY deploy/router-healthcheck.js ./deploy/
ENV NATS_URL=nats://nats:4222
USER node
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "/opt/beamline/deploy/router-healthcheck.js"]
ENTRYPOINT ["node", "/opt/beamline/router/reference-router.js"]

# Stage 3 (default target): Debian 12 with the runtime packages the tests run on (nginx 1.22 +
# lua-nginx-module 0.10.23 + LuaJIT2 + lua-resty-core; deploy/runtime-packages.txt). The config is
# rendered at container start so environment overrides (NATS_URL, GATEWAY_PORT, …) apply, and
# checked with `nginx -t` before nginx starts (deploy/docker-entrypoint.sh); node is only used
# for rendering and for the health check.
FROM debian:bookworm-slim AS runtime
ARG BEAMLINE_UID=10001
ARG BEAMLINE_GID=10001
COPY deploy/runtime-packages.txt /tmp/runtime-packages.txt
# The runtime packages (nginx's default site and its :80 server are never used: the rendered
# nginx.conf is the only config), libstdc++ for the node binary copied below; a dedicated system
# user with no home and no shell; the prefix directory is the only place it may write.
RUN apt-get update \
 && grep -Ev '^\s*(#|$)' /tmp/runtime-packages.txt \
      | xargs apt-get install -y --no-install-recommends libstdc++6 \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt /etc/nginx/sites-enabled/default \
 && groupadd --system --gid "${BEAMLINE_GID}" beamline \
 && useradd --system --uid "${BEAMLINE_UID}" --gid beamline --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin beamline \
 && mkdir -p /var/run/beamline \
 && chown beamline:beamline /var/run/beamline \
 && chmod 0700 /var/run/beamline
WORKDIR /opt/beamline
# Code and templates stay root-owned and read-only for the gateway user.
COPY --from=build /usr/local/bin/node /usr/local/bin/node
COPY --from=prod-deps /opt/beamline/node_modules ./node_modules
COPY --from=build /opt/beamline/dist-lua ./dist-lua
COPY --from=build /opt/beamline/scripts ./scripts
COPY --from=build /opt/beamline/templates ./templates
COPY --from=build /opt/beamline/package.json /opt/beamline/gateway.yaml ./
COPY deploy/docker-entrypoint.sh deploy/healthcheck.js ./deploy/
ENV BEAMLINE_HOME=/opt/beamline \
    GATEWAY_PREFIX=/var/run/beamline \
    GATEWAY_RUNTIME=debian \
    GATEWAY_LISTEN=0.0.0.0 \
    GATEWAY_ACCESS_LOG=stdout \
    GATEWAY_ERROR_LOG=stderr \
    NGINX_BIN=/usr/sbin/nginx
# Fail the build, not the first start, when node does not run here or the rendered config does
# not pass `nginx -t` (Lua loaded by init_by_lua included) on this runtime. Logs to files for
# this check only: render.js's nginx -t has no stderr it could open (see the entrypoint).
RUN chmod 0755 /opt/beamline/deploy/docker-entrypoint.sh \
 && node --version \
 && GATEWAY_ERROR_LOG=logs/error.log GATEWAY_ACCESS_LOG=logs/access.log \
      node scripts/render.js --runtime debian --prefix /tmp/render-check \
      --lua-dir /opt/beamline/dist-lua --check \
 && rm -rf /tmp/render-check
USER 10001:10001
# Writable even with --read-only when no tmpfs/volume is given (an anonymous volume).
VOLUME ["/var/run/beamline"]
EXPOSE 8080
# nginx is PID 1 (the entrypoint execs it): SIGQUIT is its graceful shutdown; old workers get
# server.worker_shutdown_timeout_seconds (default 10 s) to finish in-flight requests.
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "/opt/beamline/deploy/healthcheck.js", "--prefix", "/var/run/beamline", "--path", "/healthz"]
ENTRYPOINT ["/opt/beamline/deploy/docker-entrypoint.sh"]
CMD []
