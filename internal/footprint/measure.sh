#!/usr/bin/env bash
# The agent's footprint, as docs/BENCHMARKS.md records it: binary size
# (as built, stripped, linux/arm64), start-up time to /readyz for the main
# job (cold: an empty data dir, so every builtin plugin is compiled; warm:
# the compilation cache filled), idle RSS (with state_memory standard and
# small), and peak RSS while wrk posts events to the HTTP ingest for 10 s. Usage, from the module root:
#
#   internal/footprint/measure.sh               # the full build
#   internal/footprint/measure.sh sluice_lean   # built with these tags
#
# Needs curl and wrk (Debian). Ports 19092, 14195 and 14196 must be free.
set -euo pipefail
tags="${1:-}"
work="$(mktemp -d)"
trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT

go build -tags "$tags" -o "$work/agent" ./cmd/agent
go build -tags "$tags" -ldflags='-s -w' -o "$work/agent-stripped" ./cmd/agent
GOOS=linux GOARCH=arm64 go build -tags "$tags" -o "$work/agent-arm64" ./cmd/agent
mb() { echo "scale=1; $(stat -c %s "$1") / 1048576" | bc; }
echo "build tags: ${tags:-none}"
echo "binary: $(mb "$work/agent") MB; stripped (-s -w): $(mb "$work/agent-stripped") MB; linux/arm64: $(mb "$work/agent-arm64") MB"

export SLUICE_DEV_KAFKA_ADDRESS=127.0.0.1:19092 SLUICE_HTTP_ADDRESS=127.0.0.1:14195 REALTIME_HTTP_ADDRESS=127.0.0.1:14196
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$1/status"; }
start() { # start the main job on data dir $1; print seconds to /readyz
	local t0 t1
	t0=$(date +%s.%N)
	(cd "$work" && SLUICE_DATA_DIR="$1" exec ./agent >"$work/log" 2>&1) &
	echo $! >"$work/pid"
	until curl -fs http://127.0.0.1:14195/readyz >/dev/null 2>&1; do
		kill -0 "$(cat "$work/pid")" 2>/dev/null || { echo "the agent exited:" >&2; cat "$work/log" >&2; exit 1; }
		sleep 0.01
	done
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc
}
stop() { kill -TERM "$(cat "$work/pid")"; while kill -0 "$(cat "$work/pid")" 2>/dev/null; do sleep 0.05; done; }

echo "start-up to /readyz, cold (empty data dir): $(start "$work/data") s"
sleep 5
echo "idle RSS after 5 s: $(rss "$(cat "$work/pid")") MB"
stop
echo "start-up with state_memory: small: $(SLUICE_STATE_MEMORY=small start "$work/data") s"
sleep 5
echo "idle RSS after 5 s, state_memory small: $(rss "$(cat "$work/pid")") MB"
stop
echo "start-up to /readyz, warm (compilation cache filled): $(start "$work/data") s"
sleep 2
peak=0
( wrk -t2 -c8 -d10s -s internal/realtimebench/testdata/post_event.lua http://127.0.0.1:14196/v1/events >"$work/wrk" 2>&1 ) &
wrkpid=$!
while kill -0 "$wrkpid" 2>/dev/null; do
	r=$(rss "$(cat "$work/pid")"); [ "$r" -gt "$peak" ] && peak=$r
	sleep 0.2
done
echo "peak RSS under load (wrk, 8 connections, one event per request): $peak MB; $(grep 'Requests/sec' "$work/wrk"); $(grep 'events predicted' "$work/wrk")"
stop
