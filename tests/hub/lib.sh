# Shared helpers for the hub shell tests (sourced). Needs: SMELT_BIN,
# SMELT_SOURCE, and a WORK folder set by the caller before use.

HUB_DIR="$SMELT_SOURCE/tests/hub"
. "$SMELT_SOURCE/tests/check.sh"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# GET a URL and ignore the answer; fails only when nothing answers (python3,
# so the tests need no curl program).
http_get() {
	python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5).read()
except urllib.error.HTTPError:
    pass
PY
}

# Poll URL until the server answers (any status), up to ~10 s.
wait_http() {
	local i
	for i in $(seq 1 50); do
		if http_get "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "server at $1 did not come up" >&2
	return 1
}

# Build the fixture and start nginx on two free ports (Hub and "CDN").
# Sets HUB_URL, CDN_URL, FX (fixture folder), ACCESS_LOG, TOKEN.
start_nginx() { # [BIG_MB]
	if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
		echo "nginx is not installed: run 'make deps' (Debian package nginx)" >&2
		exit 1
	fi
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
	FX="$WORK/fx"
	local port cdn
	port=$(free_port)
	cdn=$(free_port)
	while [ "$cdn" = "$port" ]; do cdn=$(free_port); done
	python3 "$HUB_DIR/make_fixture.py" serve "$FX" --port "$port" --cdn-port "$cdn" \
		--big-mb "${1:-0}"
	"$NGINX" -c "$FX/nginx.conf" -p "$FX" -e "$FX/error.log" || {
		cat "$FX/error.log" >&2
		exit 1
	}
	HUB_URL="http://127.0.0.1:$port"
	CDN_URL="http://127.0.0.1:$cdn"
	ACCESS_LOG="$FX/access.log"
	TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$FX/manifest.json")
	wait_http "$HUB_URL/" && wait_http "$CDN_URL/"
}

stop_nginx() {
	if [ -n "${FX:-}" ] && [ -s "$FX/nginx.pid" ]; then
		kill "$(cat "$FX/nginx.pid")" 2>/dev/null || true
		for _ in $(seq 1 50); do [ -e "$FX/nginx.pid" ] || break; sleep 0.1; done
	fi
}

# The fault server: sets FAULT_URL, FAULT_LOG, FAULT_PID.
start_fault() {
	FAULT_LOG="$WORK/fault.log"
	python3 "$HUB_DIR/fault_server.py" "$WORK/fault.port" "$FAULT_LOG" &
	FAULT_PID=$!
	for _ in $(seq 1 100); do [ -s "$WORK/fault.port" ] && break; sleep 0.1; done
	FAULT_URL="http://127.0.0.1:$(cat "$WORK/fault.port")"
	wait_http "$FAULT_URL/_ctl"
}

stop_fault() {
	if [ -n "${FAULT_PID:-}" ]; then
		kill "$FAULT_PID" 2>/dev/null || true
		wait "$FAULT_PID" 2>/dev/null || true
	fi
}

# Lines appended to a log since a mark taken with log_mark.
log_mark() { wc -l <"$1"; }
log_since() { tail -n +"$(($2 + 1))" "$1"; }

manifest() { # PYTHON-EXPRESSION over m (the manifest)
	python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print($1)" "$FX/manifest.json"
}

