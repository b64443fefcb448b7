#!/usr/bin/env bash
# Runs a command with a pinned Node.js version first on PATH (fetched and cached by
# ensure-node.sh):
#
#   scripts/node/with-node.sh 24.22.3 npx tap test/cli/typescript.test.ts
#
# npm and npx run on that node too (their scripts start with `#!/usr/bin/env node`), and so does
# every `node` the command starts: tap's test processes, the CLI under test.
set -euo pipefail
(($# >= 2)) || { echo "usage: $0 <version> <command> [args...]" >&2; exit 2; }
bin="$("$(dirname "${BASH_SOURCE[0]}")/ensure-node.sh" "$1")"
shift
export PATH="$bin:$PATH"
printf '[node] %s from %s\n' "$(node --version)" "$bin" >&2
exec "$@"
