#!/usr/bin/env bash
# Schema fuzzing of the live API (issue 8): installs schemathesis from PyPI, starts
# `halyard serve --dev` on a loopback port with a fresh data directory, and runs schemathesis
# against the OpenAPI document the server publishes, with the dev tenant's key (and the
# credential each other route takes). Fails on any 5xx (but the documented 503 of a server the
# request names that cannot be reached) and on any response that breaks the documented schema
# (status code, content type, body).
# Bounded: SCHEMATHESIS_EXAMPLES examples per operation and phase (default 20), and
# SCHEMATHESIS_SECONDS for the whole run (default 600, a hard stop). One worker: schemathesis
# 4.32's coverage phase failed with an internal error ("AST constructor recursion depth
# mismatch") under two. The server is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

examples="${SCHEMATHESIS_EXAMPLES:-20}"
seconds="${SCHEMATHESIS_SECONDS:-600}"

echo "== schemathesis: install"
python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4.1,<5' 2>&1 \
    | grep -v "Running pip as the 'root' user" || true
schemathesis --version

echo "== schemathesis: build halyard"
cargo build --bin halyard
bin=target/debug/halyard

data_dir="$(mktemp -d /tmp/halyard-schemathesis.XXXXXX)"
report_dir="$(mktemp -d /tmp/halyard-schemathesis-report.XXXXXX)"
# Where `POST /api/v1/admin/backup` may write: without it the route answers 503, which the
# not_a_server_error check would count as a failure.
backup_dir="$(mktemp -d /tmp/halyard-schemathesis-backups.XXXXXX)"
log="$data_dir.log"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$data_dir" "$log" "$report_dir" "$backup_dir"
}
trap cleanup EXIT

# Rate limits off: schemathesis sends bursts from one address with one key, and a 429 (which
# every operation documents) would only hide the operation's own behaviour. A short provider
# timeout: the schemas let it create openai agents with made-up base URLs, and a turn on
# one must fail (503) well within schemathesis' request timeout.
# The operator key, for the admin routes.
root="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
HALYARD_ROOT_KEY="$root" "$bin" serve --dev --no-rate-limits --provider-timeout-ms 2000 --threads 2 \
    --backup-dir "$backup_dir" --listen "127.0.0.1:$port" --data-dir "$data_dir" >"$log" 2>&1 &
pid=$!
for _ in $(seq 200); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health/live', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "halyard exited"; exit 1; }
    sleep 0.1
done
key="$(tr -d '[:space:]' <"$data_dir/dev-api-key")"
project="$(python3 - "$port" "$key" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/api/projects",
                             headers={"Authorization": f"Bearer {sys.argv[2]}"})
body = json.load(urllib.request.urlopen(req, timeout=5))
items = body.get("projects") or body.get("data") or []
print(next(p["id"] for p in items if p.get("slug") == "demo"))
PY
)"
# Credentials for the routes the dev key cannot call: the root key for the admin routes (and
# a tenant of their own for PATCH, so that they cannot disable the dev tenant), the demo
# page's public key and origin for the SDK's init and config, and an SDK token from it for
# refresh.
origin="$(grep -o 'demo page: http://127.0.0.1:[0-9]*' "$log" | sed 's/^demo page: //')"
pk="$(tr -d '[:space:]' <"$data_dir/dev-public-key")"
# A session with one streamed turn, a secret, and a key restricted to the project (the
# OpenAI-compatible routes take no other), for the routes that use them.
read -r sdk_token target_tenant session stream project_key < <(python3 - "$port" "$project" "$pk" "$origin" "$root" "$key" <<'PY'
import json, sys, urllib.request
port, project, pk, origin, root, key = sys.argv[1:]
def post(path, body, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **headers})
    return urllib.request.urlopen(req, timeout=5)
token = json.load(post("/api/v1/sdk/init", {"projectId": project},
                       {"X-Public-Key": pk, "Origin": origin}))["token"]
tenant = json.load(post("/api/v1/admin/tenants", {"name": "schemathesis target"},
                        {"Authorization": f"Bearer {root}"}))["tenant"]["id"]
dev = {"Authorization": f"Bearer {key}"}
session = json.load(post(f"/api/projects/{project}/sessions", {}, dev))["session"]["id"]
post(f"/api/projects/{project}/secrets", {"name": "SCHEMATHESIS", "value": "v"}, dev).read()
turn = post("/api/v1/chat/agent/stream", {"projectId": project, "sessionId": session,
                                          "message": "hello"}, dev)
stream = turn.headers["X-Stream-Id"]
turn.read()
project_key = json.load(post("/api/v1/api-keys", {"name": "schemathesis openai",
                                                  "projectIds": [project]}, dev))["key"]
print(token, tenant, session, stream, project_key)
PY
)
if [ -z "$origin" ] || [ -z "$project_key" ]; then
    cat "$log"
    echo "setup failed"
    exit 1
fi

# Path parameters of the seeded data (tenant `dev`, project `demo`, agent `assistant`, the
# session, stream and secret made above), so that the operations reach their handlers
# instead of answering 404; deletions get ids that do not exist, so that they cannot take the
# seeded data away from the operations after them.
config="$report_dir/schemathesis.toml"
cat >"$config" <<TOML
headers = { Authorization = "Bearer $key" }

[parameters]
"path.projectId" = "$project"
"path.name" = "assistant"
"path.sessionId" = "$session"
"path.streamId" = "$stream"

# Where several entries match an operation, the first one listed that sets a field (headers,
# parameters) sets it whole; the filters of one entry select the operations any of them
# matches, so an entry for one method on some paths filters on the name ("METHOD /path").
# Deleting a tenant gets one that does not exist, so that the target tenant stays for the
# operations after.
[[operations]]
include-name-regex = "^DELETE /api/v1/admin/tenants/"
headers = { Authorization = "Bearer $root" }
parameters = { "path.tenantId" = "ten_missing" }

[[operations]]
include-name = "DELETE /api/projects/{projectId}"
headers = { Authorization = "Bearer $key" }
parameters = { "path.projectId" = "proj_missing" }

# Inside the project: names and ids that do not exist, so that the seeded data stays.
[[operations]]
include-method = "DELETE"
headers = { Authorization = "Bearer $key" }
parameters = { "path.projectId" = "$project", "path.name" = "missing", "path.sessionId" = "ses_missing", "path.keyId" = "key_missing" }

[[operations]]
include-path-regex = "/secrets/[{]name[}]/rotate\$"
parameters = { "path.projectId" = "$project", "path.name" = "SCHEMATHESIS" }

# The OpenAI-compatible routes take a key restricted to projects.
[[operations]]
include-path-regex = "^/v1/"
headers = { Authorization = "Bearer $project_key" }

[[operations]]
include-path-regex = "^/api/v1/admin/"
headers = { Authorization = "Bearer $root" }
parameters = { "path.tenantId" = "$target_tenant" }

[[operations]]
include-path-regex = "^/api/v1/sdk/(init|config)"
headers = { "X-Public-Key" = "$pk", Origin = "$origin" }

[[operations]]
include-path = "/api/v1/sdk/refresh"
headers = { "X-SDK-Token" = "$sdk_token", Origin = "$origin" }
TOML

echo "== schemathesis: run ($examples examples per operation, at most $seconds s; project $project)"
status=0
# Run from the scratch directory: schemathesis keeps its example database in ./.schemathesis.
# The hooks (.ci/schemathesis_hooks.py) keep a URL that urllib refuses, in a response, from
# ending the run with an internal error, and define the server-error check: any 5xx fails,
# but the documented 503 of an operation that calls a server the request names (here, with
# no network, every name the generator makes up is unreachable).
(cd "$report_dir" && PYTHONPATH="$OLDPWD/.ci" SCHEMATHESIS_HOOKS=schemathesis_hooks \
    timeout --signal=INT --kill-after=30 "$seconds" schemathesis --config-file "$config" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --checks not_a_server_error_but_an_unreachable_backend,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" \
    --request-timeout 10 \
    --workers 1 \
    --seed 8 \
    --no-color \
    --report junit --report-dir "$report_dir") \
    || status=$?

# Figures for the record: operations, test cases, failures.
python3 - "$report_dir" <<'EOF' || true
import glob, sys, xml.etree.ElementTree as ET
for path in glob.glob(sys.argv[1] + "/*.xml"):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    print(f"schemathesis junit: {tests} operations tested, {failures} failing")
EOF
if ! kill -0 "$pid" 2>/dev/null; then
    echo "halyard died during the run:"
    cat "$log"
    exit 1
fi
exit "$status"
