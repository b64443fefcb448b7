# syntax=docker/dockerfile:1
#
# modelkit-ts serving image: the HTTP service and the bundled example models.
#
#   docker build -t modelkit-ts .
#   docker run --rm -p 8000:8000 modelkit-ts
#
# Models are chosen at run time (MODELKIT_MODELS, MODELKIT_REQUIRED_MODELS), so this one image
# serves the examples, or your own models mounted into the container or added with
# `FROM modelkit-ts` + `COPY`. See docs/deployment.md.

# Any Node >= 20 image with a `node` user (uid 1000), `node` and `npm` on PATH. Override it to
# build from a mirror or from a locally made base (scripts/container/base-image.sh does that).
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: dev dependencies and the TypeScript compiler; nothing of this stage ships ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: none of our dependencies needs an install script, and a root `prepare`
# script would run before the sources are copied.
# The `npm_ca` build secret is optional: an extra CA bundle for networks whose proxy re-signs
# TLS (`--secret id=npm_ca,src=/path/to/ca.pem`); as a secret it never lands in a layer.
RUN --mount=type=secret,id=npm_ca \
    --mount=type=cache,target=/root/.npm,sharing=locked \
    if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY examples ./examples
# Compiles, trains the example `spam` (examples/spam), publishes its weights to a local store
# and fetches them into the assets cache, which the runtime stage takes; the store and the file
# it was published from stay here.
ENV MODELKIT_ASSETS_DIR=/app/assets
RUN npm run build && rm -rf dist/examples/store dist/examples/spam/spam.onnx
# onnxruntime-node (an optional peer dependency, which `spam` needs) goes to the runtime stage
# from here, as npm installed it with --ignore-scripts: no download at install. Its package holds
# the binaries of five platforms (290 MB); only this one's are kept.
RUN find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 \
      ! -path "*/linux/$(node -p process.arch)" -exec rm -rf {} +

# ---- runtime: production dependencies, compiled JavaScript, unprivileged user ----
FROM ${NODE_IMAGE} AS runtime
# glibc's malloc otherwise raises its mmap threshold each time a large buffer (an input tensor,
# a big body) is freed, and from then on serves such buffers from per-thread arenas that never
# shrink back; a fixed threshold and two arenas keep them returned to the system
# (docs/deployment.md, Memory).
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm_ca \
    --mount=type=cache,target=/root/.npm,sharing=locked \
    if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund
# The application stays owned by root and read-only to the `node` user that runs it.
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/examples ./dist/examples
COPY --from=build /app/node_modules/onnxruntime-node ./node_modules/onnxruntime-node
COPY --from=build /app/node_modules/onnxruntime-common ./node_modules/onnxruntime-common
COPY --from=build /app/assets ./assets
COPY examples ./examples
# Model assets (docs/assets.md) are cached in /app/assets, in one of two ways:
#  - pre-fetched here, when the build is given a store (the build arguments below, credentials
#    as the `aws_credentials` secret: an AWS shared credentials file); the container then runs
#    with a read-only root file system and no store at all;
#  - or fetched at start into a volume mounted on /app/assets, which replicas share: set
#    MODELKIT_STORAGE_* when running instead.
# Only the directory itself belongs to `node`, so that a volume mounted there is writable; what
# the build fetched stays root's.
ENV MODELKIT_ASSETS_DIR=/app/assets
# The store, and which assets to fetch: specs (MODELKIT_PREFETCH_ASSETS), or else every asset
# of the models MODELKIT_MODELS names (else the examples').
ARG MODELKIT_STORAGE_PROVIDER=""
ARG MODELKIT_STORAGE_BUCKET=""
ARG MODELKIT_STORAGE_PREFIX=""
ARG MODELKIT_STORAGE_ENDPOINT=""
ARG MODELKIT_STORAGE_REGION=""
ARG MODELKIT_PREFETCH_ASSETS=""
ARG MODELKIT_MODELS=""
RUN --mount=type=secret,id=aws_credentials,target=/root/.aws/credentials \
    if [ -n "$MODELKIT_STORAGE_PROVIDER" ]; then \
      node dist/src/cli/main.js assets fetch $MODELKIT_PREFETCH_ASSETS; \
    fi && \
    mkdir -p /app/assets && chown node:node /app/assets
USER node
EXPOSE 8000
# Liveness only: /livez answers while the event loop runs, also while models are still loading,
# so no start period is needed. Readiness (/readyz) is for load balancers and orchestrators,
# which stop routing to a draining or loading container without restarting it. Node itself
# makes the request: slim images have no curl or wget.
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/livez').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself, then drains and exits 0.
CMD ["node", "dist/src/cli/main.js", "serve"]
