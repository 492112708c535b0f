#!/usr/bin/env bash
# Fuzzes the live release binary against docs/openapi.yaml with schemathesis:
# every check, stateful testing, positive and negative data. Fails on any
# 5xx but a documented 503 and on any response the document does not allow.
#
#   .ci/schemathesis.sh --install            only install schemathesis (see below)
#   .ci/schemathesis.sh [SERVER FLAGS...]     e.g. .ci/schemathesis.sh --fault-injection
#
# `make test` runs the fuzz (plain and with --fault-injection) whenever the
# venv is installed; `.ci/run` installs it first, so CI always runs it.
#
# Environment: ST_MAX_EXAMPLES (default 150 per operation), ST_SEED (replay a
# run: the seed is printed at its end). Schemathesis and its dependencies,
# pinned in .ci/schemathesis-requirements.txt, are installed from PyPI into a
# venv under target/, nothing system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=target/schemathesis-venv
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-150}"

fail() { echo "schemathesis.sh: $*" >&2; exit 1; }

command -v python3 >/dev/null ||
    fail "python3 is missing; install it (Debian: apt-get install python3 python3-venv)"
python3 -c 'import venv, ensurepip' 2>/dev/null ||
    fail "python3 cannot make a venv with pip; install it (Debian: apt-get install python3-venv python3-pip)"

# The venv is (re)made when the pinned requirements change.
REQUIREMENTS=.ci/schemathesis-requirements.txt
grep -qx "schemathesis==$SCHEMATHESIS_VERSION" "$REQUIREMENTS" ||
    fail "$REQUIREMENTS does not pin schemathesis==$SCHEMATHESIS_VERSION"
if ! cmp -s "$REQUIREMENTS" "$VENV/installed-requirements.txt" ||
    [ "$("$VENV/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
    echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv --clear "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" ||
        fail "pip could not install $REQUIREMENTS from PyPI"
    cp "$REQUIREMENTS" "$VENV/installed-requirements.txt"
fi
[ "${1:-}" = --install ] && exit 0

cargo build --release --quiet --bin distributed-counter

log=$(mktemp)
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill "$server"
        wait "$server" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT

target/release/distributed-counter --listen 127.0.0.1:0 --node-port 0 "$@" 2>"$log" &
server=$!
url=""
for _ in $(seq 100); do
    url=$(sed -n 's/^listening on \(http:\/\/[^ ]*\)$/\1/p' "$log" | head -n 1)
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$log" >&2; fail "the server exited before listening"; }
    sleep 0.1
done
[ -n "$url" ] || { cat "$log" >&2; fail "the server printed no 'listening on' line within 10 s"; }
echo "schemathesis.sh: server $* on $url"

# One worker: with several, Python 3.11 can fail inside ast.parse
# ("AST constructor recursion depth mismatch") while hypothesis describes
# its strategies from several threads at once.
command=(
    "$VENV/bin/st" --config-file .ci/schemathesis.toml run "$url/openapi.yaml"
    --url "$url"
    --checks all
    --phases examples,coverage,fuzzing,stateful
    --mode all
    --max-examples "$MAX_EXAMPLES"
    --workers 1
    --request-timeout 10
    --no-color
    --output-truncate true
    ${ST_SEED:+--seed "$ST_SEED"}
)
echo "schemathesis.sh: SCHEMATHESIS_HOOKS=.ci/schemathesis_hooks.py ${command[*]}"
status=0
SCHEMATHESIS_HOOKS=.ci/schemathesis_hooks.py "${command[@]}" || status=$?

# The server must have survived the run (a dead child stays a zombie, Z,
# until it is waited for, so kill -0 would not tell).
state=$(awk '{ print $3 }' "/proc/$server/stat" 2>/dev/null || true)
if [ -z "$state" ] || [ "$state" = Z ]; then
    cat "$log" >&2
    fail "the server died during the run"
fi
if grep -q panicked "$log"; then
    grep panicked "$log" >&2
    fail "a request handler panicked during the run"
fi
exit "$status"
