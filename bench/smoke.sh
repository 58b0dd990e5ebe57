#!/usr/bin/env bash
# Smoke run of the load tool against the example server, for CI: builds
# both, starts the server on loopback with a fresh data folder, creates the
# accounts with the server's admin command, runs each scenario for a few
# seconds and fails on any error. Takes well under a minute.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/community" ./examples/community
go build -o "$work/treff-load" ./cmd/treff-load

port=$((20000 + RANDOM % 20000))
# The load tool's accounts are new and flood strangers on purpose: the
# abuse limits (antispam) would bounce them, as compare.sh knows too.
limits=(-limit-messages none -limit-strangers none -limit-joins none -limit-room-creations none -limit-pre-auth none)
"$work/community" -data "$work/data" -c2s "127.0.0.1:$port" -c2s-tls "" -s2s "" -http "" -https "" -log-level warn "${limits[@]}" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	sleep 0.1
done

load() {
	"$work/treff-load" -addr "127.0.0.1:$port" -pid "$pid" -duration 2s \
		-create-cmd "sed 's/ /@localhost /' | '$work/community' adduser -batch -data '$work/data'" \
		-delete-cmd "sed 's/\$/@localhost/' | '$work/community' deluser -batch -data '$work/data'" \
		-json "$@" | tee -a "$work/results"
}
load -scenario login -users 4 -mech SCRAM-SHA-256
load -scenario chat -users 10
load -scenario chat -users 10 -sm -carbons
load -scenario idle -users 200
load -scenario presence -users 20 -contacts 4 -rate 4
load -scenario muc -users 10 -room smoke@conference.localhost

# Every run must have done something and met no error.
if grep -v '"errors":0,' "$work/results" | grep . || grep '"ops":0,' "$work/results"; then
	echo "smoke: errors above" >&2
	cat "$work/server.log" >&2
	exit 1
fi
echo "smoke: ok"
