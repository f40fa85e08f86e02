# Beamline gateway image: the same rendered config and Lua paths as local runs
# (`make run`), on the official OpenResty runtime.
#
#   docker build -t beamline-gateway .
#   docker run -p 8080:8080 -e NATS_URL=nats://nats:4222 beamline-gateway
#
# Stage 1 compiles src-ts/ to Lua with TypeScriptToLua and installs the render tooling.
FROM node:20-bookworm-slim AS build
WORKDIR /opt/beamline
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json gateway.yaml ./
COPY src-ts ./src-ts
COPY scripts ./scripts
COPY templates ./templates
RUN node scripts/build.js --force --prefix /tmp/nginx-check \
 && npm prune --omit=dev --no-audit --no-fund

# Stage 2: OpenResty (nginx + LuaJIT + lua-resty-core built in). The config is rendered at
# container start so environment overrides (NATS_URL, GATEWAY_PORT, …) apply, then checked
# with `nginx -t` before nginx starts; node is only used for that step.
FROM openresty/openresty:1.25.3.2-bookworm
WORKDIR /opt/beamline
COPY --from=build /usr/local/bin/node /usr/local/bin/node
COPY --from=build /opt/beamline/node_modules ./node_modules
COPY --from=build /opt/beamline/dist-lua ./dist-lua
COPY --from=build /opt/beamline/scripts ./scripts
COPY --from=build /opt/beamline/templates ./templates
COPY --from=build /opt/beamline/package.json /opt/beamline/gateway.yaml ./
ENV GATEWAY_LISTEN=0.0.0.0 \
    GATEWAY_ACCESS_LOG=stdout \
    GATEWAY_ERROR_LOG=stderr \
    NGINX_BIN=/usr/local/openresty/nginx/sbin/nginx
EXPOSE 8080
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/sh", "-c", "node scripts/render.js --runtime openresty --prefix /opt/beamline/nginx --lua-dir /opt/beamline/dist-lua --check && exec \"$NGINX_BIN\" -p /opt/beamline/nginx/ -c /opt/beamline/nginx/nginx.conf -e stderr"]
