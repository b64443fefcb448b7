#!/usr/bin/env bash
# End-to-end test of the container image (npm run test:container).
#
# Builds the image from the Dockerfile, then proves what the Dockerfile promises:
#   - it runs as an unprivileged user and carries no dev dependencies, sources or tests;
#   - with no configuration it serves the bundled examples, its HEALTHCHECK reports healthy and
#     predictions over HTTP work, the ONNX model `spam` included;
#   - a user's model mounted into the container is served (MODELKIT_MODELS), and on SIGTERM a
#     request in flight still completes with 200, /readyz turns 503 at once, and the container
#     exits 0 within the drain delay plus the grace period;
#   - a model whose asset comes from an S3-compatible store (s3rver, started here on the host) is
#     served both ways docs/deployment.md shows: the asset pre-fetched into the image at build
#     and the container run read-only with no store, and fetched at start by two replicas into
#     a volume they share.
# It removes the containers and the image it created; the base image stays cached.
#
# Needs root (podman, and apt-get to install podman, runc, debootstrap and curl when missing).
# Set MODELKIT_NODE_IMAGE to build from a pulled Node image instead of the local stand-in,
# MODELKIT_KEEP_IMAGE=1 to keep the built image, or MODELKIT_TEST_IMAGE=<image> to test an image
# already built (skips the build; the image is kept). On an idle 2-core machine it takes about
# 2.5 minutes, 4 when the base image and npm's cache are cold (debootstrap, downloads); a busy
# machine can take several times that.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
# shellcheck source=scripts/container/lib.sh
source scripts/container/lib.sh

# Shutdown timings given to the server under test. The slow request outlives the drain delay,
# so it is still in flight when the listener closes, and ends well within the grace period.
DRAIN_DELAY_MS=1000
GRACE_PERIOD_MS=10000
SLOW_MS=3000

run_id="$$-$(date +%s)"
image="${MODELKIT_TEST_IMAGE:-localhost/modelkit-ts:test-$run_id}"
containers=()
tmp="$(mktemp -d)"
started_at=$(date +%s)
step=0

pass() {
  step=$((step + 1))
  printf 'ok %d - %s\n' "$step" "$*"
}
fail() {
  step=$((step + 1))
  printf 'not ok %d - %s\n' "$step" "$1"
  shift
  for detail in "$@"; do printf '  # %s\n' "$detail"; done
  exit 1
}
now_ms() { date +%s%3N; }

cleanup() {
  local status=$?
  set +e
  for c in "${containers[@]}"; do
    if ((status != 0)); then
      printf '# last log lines of container %s:\n' "$c"
      podman logs --tail 30 "$c" 2>&1 | sed 's/^/#   /'
    fi
    podman rm --force --time 0 "$c" >/dev/null 2>&1
  done
  if [[ -z "${MODELKIT_KEEP_IMAGE:-}${MODELKIT_TEST_IMAGE:-}" ]]; then
    podman rmi --force "$image" >/dev/null 2>&1
  fi
  if [[ -n "${s3rver_pid:-}" ]]; then kill "$s3rver_pid" 2>/dev/null; fi
  rm -rf "$tmp"
  if ((status == 0)); then
    printf '# container test passed in %ss\n' "$(($(date +%s) - started_at))"
  else
    printf '# container test FAILED (exit %d) after %ss\n' "$status" "$(($(date +%s) - started_at))"
  fi
}
trap cleanup EXIT

# An unused TCP port on this host: the containers share the host's network (--network host).
free_port() {
  node -e 'const s=require("node:net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# http METHOD URL [BODY]: prints the status code; the response body is left in $tmp/body.
http() {
  local args=(--silent --output "$tmp/body" --write-out '%{http_code}' --max-time 30 -X "$1" "$2")
  if (($# > 2)); then args+=(-H 'content-type: application/json' --data "$3"); fi
  curl "${args[@]}" || true
}

# start NAME [podman run options...]: starts the image detached as container "$container" and
# registers it for cleanup. podman logs systemd errors here because it cannot install
# healthcheck timers without systemd; they are harmless (the test runs the healthcheck itself)
# and kept out of the output.
start() {
  container="modelkit-ts-test-$1-$run_id"
  shift
  containers+=("$container")
  podman run --detach --name "$container" "${PODMAN_RUN_FLAGS[@]}" "$@" "$image" \
    >"$tmp/run.log" 2>&1 || fail "podman run $container" "$(tail -5 "$tmp/run.log")"
}

# wait_healthy CONTAINER: runs the image's HEALTHCHECK on demand (podman has no timers here)
# until it passes, and reads the health status podman recorded.
wait_healthy() {
  local deadline=$(($(date +%s) + 60)) status
  until podman healthcheck run "$1" >/dev/null 2>&1; do
    [[ "$(podman inspect --format '{{.State.Running}}' "$1")" == true ]] ||
      fail "HEALTHCHECK: container $1 stopped before it became healthy"
    (($(date +%s) < deadline)) || fail "HEALTHCHECK did not pass within 60s"
    sleep 1
  done
  status="$(podman inspect --format '{{.State.Health.Status}}' "$1")"
  [[ "$status" == healthy ]] || fail "HEALTHCHECK passed but podman reports '$status'"
}

# wait_ready PORT: polls /readyz until 200.
wait_ready() {
  local deadline=$(($(date +%s) + 60)) code
  until [[ "$(http GET "http://127.0.0.1:$1/readyz")" == 200 ]]; do
    (($(date +%s) < deadline)) || fail "/readyz did not turn 200 within 60s" "$(cat "$tmp/body" 2>/dev/null)"
    sleep 0.5
  done
}

printf '# modelkit-ts container test (podman %s)\n' "$(podman --version 2>/dev/null | awk '{print $3}' || echo 'not installed yet')"

# ---------------------------------------------------------------------------------------------
ensure_tools

# An S3-compatible store on the host for the model assets part (the containers share the host's
# network), with one asset published by the CLI, as a training job would.
[[ -f dist/test/helpers/s3rver-main.js && -f dist/src/cli/main.js ]] || npm run build >/dev/null
mkdir -p "$tmp/s3rver"
node dist/test/helpers/s3rver-main.js "$tmp/s3rver" >"$tmp/s3rver.log" 2>&1 &
s3rver_pid=$!
deadline=$(($(date +%s) + 30))
until s3_port="$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$tmp/s3rver.log")" && [[ -n "$s3_port" ]]; do
  (($(date +%s) < deadline)) || fail "s3rver starts" "$(cat "$tmp/s3rver.log")"
  sleep 0.2
done
s3_env=(
  MODELKIT_STORAGE_PROVIDER=s3 MODELKIT_STORAGE_BUCKET=assets MODELKIT_STORAGE_PREFIX=container
  MODELKIT_STORAGE_ENDPOINT="http://127.0.0.1:$s3_port" MODELKIT_STORAGE_REGION=us-east-1
  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
)
printf 'Hello from the store' >"$tmp/greeting.txt"
env "${s3_env[@]}" MODELKIT_ASSETS_DIR="$tmp/host-cache" \
  node dist/src/cli/main.js assets new "$tmp/greeting.txt" tests/greeting >"$tmp/publish.log" 2>&1 ||
  fail "assets new publishes to the store" "$(cat "$tmp/publish.log")"
pass "s3rver on port $s3_port; $(grep '^published' "$tmp/publish.log")"
printf '[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' >"$tmp/aws-credentials"
prefetch_args=(--secret "id=aws_credentials,src=$tmp/aws-credentials")
for pair in "${s3_env[@]:0:5}"; do prefetch_args+=(--build-arg "$pair"); done
prefetch_args+=(--build-arg MODELKIT_PREFETCH_ASSETS=tests/greeting:0)
if [[ -n "${MODELKIT_TEST_IMAGE:-}" ]]; then
  podman image exists "$image" || fail "MODELKIT_TEST_IMAGE=$image exists"
  pass "testing the image $image as built (MODELKIT_TEST_IMAGE)"
else
  t0=$(now_ms)
  base="${MODELKIT_NODE_IMAGE:-$(scripts/container/base-image.sh 2>"$tmp/base.log")}" ||
    fail "base image" "$(tail -20 "$tmp/base.log")"
  pass "base image $base ($((($(now_ms) - t0) / 1000))s)"

  t0=$(now_ms)
  # The build pre-fetches the model asset from the store started above (see "Model assets").
  # --layers=false: no intermediate images to clean up afterwards.
  MODELKIT_NODE_IMAGE="$base" scripts/container/build-image.sh "$image" --layers=false \
    "${prefetch_args[@]}" >"$tmp/build.log" 2>&1 ||
    fail "image builds from the Dockerfile" "$(tail -40 "$tmp/build.log")"
  pass "image builds from the Dockerfile, pre-fetching tests/greeting:0 from the store ($((($(now_ms) - t0) / 1000))s)"
fi

# ---------------------------------------------------------------------------------------------
# What the image is, before running the server.
user="$(podman image inspect --format '{{.User}}' "$image")"
uid="$(podman run --rm "${PODMAN_RUN_FLAGS[@]}" "$image" id -u 2>/dev/null)"
[[ -n "$user" && "$user" != root && "$user" != 0 && "$uid" != 0 ]] ||
  fail "image runs as a non-root user" "USER='$user', id -u='$uid'"
pass "image runs as a non-root user ($user, uid $uid)"

healthcheck="$(podman image inspect --format '{{json .HealthCheck}}' "$image")"
[[ "$healthcheck" == *livez* ]] || fail "image declares a HEALTHCHECK on /livez" "HealthCheck: $healthcheck"
pass "image declares a HEALTHCHECK on /livez"

# No package that package-lock.json marks dev-only (typescript, tap, biome and everything only
# they need; a devDependency that production code also needs, like ajv, is not dev-only), and
# no sources, tests or compiler configuration. The optional peer dependencies (onnxruntime-node,
# which the example `spam` needs) and what they require are there on purpose.
read -r dev_only direct found < <(podman run --rm "${PODMAN_RUN_FLAGS[@]}" "$image" node -e '
  const fs = require("node:fs");
  const lock = JSON.parse(fs.readFileSync("/app/package-lock.json", "utf8"));
  const peers = Object.keys(lock.packages[""].peerDependencies ?? {}).flatMap((name) => [
    name,
    ...Object.keys(lock.packages[`node_modules/${name}`]?.dependencies ?? {}),
  ]);
  const shipped = new Set(peers.map((name) => `node_modules/${name}`));
  const devOnly = Object.keys(lock.packages).filter(
    (p) => p && lock.packages[p].dev && !shipped.has(p),
  );
  const direct = Object.keys(lock.packages[""].devDependencies ?? {}).filter(
    (name) => lock.packages[`node_modules/${name}`]?.dev && !shipped.has(`node_modules/${name}`),
  );
  const found = [...devOnly, ...process.argv.slice(1)].filter((p) => fs.existsSync(`/app/${p}`));
  console.log(devOnly.length, direct.join(",") || "-", found.join(",") || "-");
' src test tsconfig.json tsconfig.build.json 2>/dev/null) || fail "inspect /app in the image"
[[ "$dev_only" =~ ^[0-9]+$ && "$dev_only" -gt 0 ]] ||
  fail "package-lock.json lists dev-only packages" "got '$dev_only'"
[[ "$found" == - ]] || fail "no dev dependencies, sources or tests in /app" "found: ${found//,/ }"
pass "no dev dependencies in /app: none of the $dev_only dev-only packages (${direct//,/, } and theirs); no sources or tests; onnxruntime-node, an optional peer, is there for spam"

# ---------------------------------------------------------------------------------------------
# Out of the box: the bundled examples, HEALTHCHECK, a prediction, a clean stop. Run as
# locked down as deploy/kubernetes.yaml asks: read-only root file system (podman still mounts
# a tmpfs on /tmp), no capabilities, no privilege escalation.
port="$(free_port)"
start examples --env "PORT=$port" --read-only --cap-drop ALL --security-opt no-new-privileges
examples="$container"
wait_healthy "$examples"
pass "HEALTHCHECK reports healthy (read-only root file system, no capabilities)"
wait_ready "$port"
pass "/readyz is 200 once the example models are loaded"

code="$(http POST "http://127.0.0.1:$port/predict/tokenizer" '"Hello, Container World"')"
body="$(cat "$tmp/body")"
[[ "$code" == 200 && "$body" == '["hello","container","world"]' ]] ||
  fail "POST /predict/tokenizer answers the prediction" "status $code, body $body"
pass "POST /predict/tokenizer answers $body"

code="$(http POST "http://127.0.0.1:$port/predict/tokenizer" '{"not":"a string"}')"
[[ "$code" == 422 ]] || fail "an invalid item is a 422" "status $code, body $(cat "$tmp/body")"
pass "an invalid item is a 422 problem"

# dedup is a sync model whose dependency is async: served through a worker thread, so this
# proves the image carries the bridge's worker and can start threads as the node user.
keys=()
for text in 'Hello,  CONTAINER world!' 'hello container world'; do
  code="$(http POST "http://127.0.0.1:$port/predict/dedup" "{\"text\":\"$text\"}")"
  body="$(cat "$tmp/body")"
  [[ "$code" == 200 && "$body" =~ \"key\":\"([0-9a-f]{16})\" ]] ||
    fail "POST /predict/dedup (sync model -> async model in a worker thread)" "status $code, body $body"
  keys+=("${BASH_REMATCH[1]}")
done
[[ "${keys[0]}" == "${keys[1]}" ]] || fail "dedup gives equal texts one key" "keys ${keys[*]}"
pass "POST /predict/dedup (sync model -> async model in a worker thread) answers key ${keys[0]}"

# spam is a neural network served by onnxruntime-node: proves the image carries the trained
# model (built in the build stage) and the runtime's native library for this platform.
code="$(http POST "http://127.0.0.1:$port/predict/spam" \
  '{"subject": "You have WON a FREE cruise!!!", "body": "Congratulations! Click here to claim your prize now. Limited time offer."}')"
body="$(cat "$tmp/body")"
[[ "$code" == 200 && "$body" =~ \{\"label\":\"spam\",\"spamProbability\":0\.9[0-9]*\} ]] ||
  fail "POST /predict/spam (ONNX model, onnxruntime-node)" "status $code, body $body"
pass "POST /predict/spam (ONNX model, onnxruntime-node) answers $body"

podman stop --time 30 "$examples" >/dev/null 2>&1
exit_code="$(podman inspect --format '{{.State.ExitCode}}' "$examples")"
[[ "$exit_code" == 0 ]] || fail "podman stop: the server exits 0" "exit code $exit_code"
pass "podman stop: the server exits 0"

# ---------------------------------------------------------------------------------------------
# A user's model mounted at run time, and a graceful stop with a request in flight.
# Mounted under /app, the module is inside the package's scope, so `import "modelkit-ts"`
# resolves to the image's own build (a package may import itself by name) and its other
# imports resolve from /app/node_modules: the way docs/deployment.md tells users to add models.
# It is TypeScript, uncompiled: the image's Node 24 strips the types.
cat >"$tmp/slow.ts" <<'TS'
// Mounted into the container by test/container/run.sh: a model that takes as long as it is
// asked to, so that a request is in flight when the container is told to stop.
import { AsyncModel } from "modelkit-ts";

interface Nap {
  ms: number;
}

export class Slow extends AsyncModel<Nap, { sleptMs: number }> {
  static override configurations = { slow: {} };
  protected override async _predict(item: Nap): Promise<{ sleptMs: number }> {
    await new Promise<void>((resolve) => setTimeout(resolve, item.ms));
    return { sleptMs: item.ms };
  }
}
TS
chmod 0755 "$tmp"
chmod 0644 "$tmp/slow.ts"

port="$(free_port)"
start slow --env "PORT=$port" \
  --env "MODELKIT_MODELS=./models/slow.ts" \
  --env "MODELKIT_DRAIN_DELAY_MS=$DRAIN_DELAY_MS" \
  --env "MODELKIT_GRACE_PERIOD_MS=$GRACE_PERIOD_MS" \
  --volume "$tmp/slow.ts:/app/models/slow.ts:ro"
slow="$container"
wait_ready "$port"
pass "a TypeScript model mounted into the container is served (MODELKIT_MODELS=./models/slow.ts)"

# The slow request, in the background; its status and body land in files.
request_start=$(now_ms)
curl --silent --max-time 60 --output "$tmp/slow-body" --write-out '%{http_code}' \
  -H 'content-type: application/json' --data "{\"ms\":$SLOW_MS}" \
  "http://127.0.0.1:$port/predict/slow" >"$tmp/slow-code" 2>/dev/null &
slow_request=$!
sleep 0.5 # let the request reach the model

term_at=$(now_ms)
podman kill --signal TERM "$slow" >/dev/null 2>&1 || fail "podman kill --signal TERM"
readyz="$(http GET "http://127.0.0.1:$port/readyz")"
[[ "$readyz" == 503 ]] || fail "SIGTERM: /readyz turns 503 at once" "status $readyz"
pass "SIGTERM: /readyz turns 503 at once, while the listener drains"

wait "$slow_request" || true
request_ms=$(($(now_ms) - request_start))
code="$(cat "$tmp/slow-code")"
body="$(cat "$tmp/slow-body")"
[[ "$code" == 200 && "$body" == "{\"sleptMs\":$SLOW_MS}" ]] ||
  fail "SIGTERM: the request in flight completes" "status $code, body $body after ${request_ms}ms"
pass "SIGTERM: the request in flight completes with 200 $body (${request_ms}ms)"

exit_code="$(timeout 60 podman wait "$slow" 2>/dev/null)" || fail "container exits after SIGTERM" "still running after 60s"
exited_ms=$(($(now_ms) - term_at))
budget_ms=$((DRAIN_DELAY_MS + GRACE_PERIOD_MS))
[[ "$exit_code" == 0 ]] || fail "SIGTERM: the container exits 0" "exit code $exit_code"
((exited_ms <= budget_ms)) ||
  fail "SIGTERM: exit within drain delay + grace period" "${exited_ms}ms > ${budget_ms}ms"
pass "SIGTERM: the container exits 0 after ${exited_ms}ms (drain ${DRAIN_DELAY_MS}ms + grace ${GRACE_PERIOD_MS}ms allowed)"

# ---------------------------------------------------------------------------------------------
# Model assets (docs/assets.md, docs/deployment.md): a model reads the file its asset names.
cat >"$tmp/greeting.js" <<'JS'
// Mounted into the container by test/container/run.sh: a model whose asset comes from a store.
import { readFileSync } from "node:fs";
import { Model } from "modelkit-ts";

export class Greeting extends Model {
  static configurations = { greeting: { asset: "tests/greeting:0" } };
  _load() {
    this.text = readFileSync(this.assetPath, "utf8");
  }
  _predict(name) {
    return `${this.text}, ${name}`;
  }
}
JS
chmod 0644 "$tmp/greeting.js"
greeting_mount=(--env "MODELKIT_MODELS=./models/greeting.js" --volume "$tmp/greeting.js:/app/models/greeting.js:ro")
expected='"Hello from the store, container"'

# 1. Pre-fetched at build: read-only root file system, no store configured at all.
if [[ -n "${MODELKIT_TEST_IMAGE:-}" ]]; then
  pass "# SKIP pre-fetched asset: MODELKIT_TEST_IMAGE was not built with the test store"
else
  port="$(free_port)"
  start prefetched --env "PORT=$port" "${greeting_mount[@]}" \
    --read-only --cap-drop ALL --security-opt no-new-privileges
  wait_ready "$port"
  code="$(http POST "http://127.0.0.1:$port/predict/greeting" '"container"')"
  [[ "$code" == 200 && "$(cat "$tmp/body")" == "$expected" ]] ||
    fail "the asset pre-fetched at build is served read-only" "status $code, body $(cat "$tmp/body")"
  pass "asset pre-fetched at build: served with a read-only root file system and no store ($expected)"
fi

# 2. Fetched at start into a volume that two replicas share.
mkdir -p "$tmp/assets-volume"
chown 1000:1000 "$tmp/assets-volume"
store_env=()
for pair in "${s3_env[@]}"; do store_env+=(--env "$pair"); done
ports=("$(free_port)" "$(free_port)")
replicas=()
for i in 0 1; do
  start "replica$i" --env "PORT=${ports[$i]}" "${greeting_mount[@]}" "${store_env[@]}" \
    --volume "$tmp/assets-volume:/app/assets" --read-only --cap-drop ALL --security-opt no-new-privileges
  replicas+=("$container")
done
for i in 0 1; do
  wait_ready "${ports[$i]}"
  code="$(http POST "http://127.0.0.1:${ports[$i]}/predict/greeting" '"container"')"
  [[ "$code" == 200 && "$(cat "$tmp/body")" == "$expected" ]] ||
    fail "replica $i serves the asset it fetched at start" "status $code, body $(cat "$tmp/body")"
done
cached="$(cd "$tmp/assets-volume" && find . -mindepth 1 | sort | tr '\n' ' ')"
[[ "$cached" == "./tests ./tests/greeting ./tests/greeting/0.0 ./tests/greeting/0.0.json ./tests/greeting/0.0/greeting.txt " ]] ||
  fail "the shared volume holds the asset once, with no lock or partial file left" "found: $cached"
pass "asset fetched at start: two replicas on one volume serve it; the volume holds one verified copy"
