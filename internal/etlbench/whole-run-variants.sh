#!/usr/bin/env bash
# The whole sales ETL (builtin:sales_etl) on one CSV, four variants
# alternated 3 rounds, each process timed whole: as shipped (GOGC=100, the
# default), GOGC=200, GOGC=400, and the pipeline with parallel_calls: 1 on
# its two Wasm steps instead of one call per core. Usage, from the module
# root:
#
#   go build -o /tmp/sluice ./cmd/agent
#   internal/etlbench/whole-run-variants.sh /tmp/sluice /tmp/sales1m.csv
set -euo pipefail
bin="$1"
csv="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed 's/parallel_calls: 0/parallel_calls: 1/' pipelines/sales_etl.yaml >"$work/sales_p1.yaml"
# A first run fills the Wasm compilation cache, as every later run finds it.
SALES_CSV="$csv" SALES_OUT="$work/warm" "$bin" --pipeline builtin:sales_etl --http-address "" \
	--data-dir "$work/data" >/dev/null 2>&1
for r in 1 2 3; do
	for v in shipped GOGC=200 GOGC=400 parallel_calls=1; do
		rm -rf "$work/out"
		pipeline=builtin:sales_etl gogc=100
		case $v in
		GOGC=*) gogc="${v#GOGC=}" ;;
		parallel_calls=1) pipeline="$work/sales_p1.yaml" ;;
		esac
		GOGC="$gogc" SALES_CSV="$csv" SALES_OUT="$work/out" /usr/bin/time -f "%e s wall, %U+%S s CPU, %M KB max RSS" \
			-o "$work/time" "$bin" --pipeline "$pipeline" --http-address "" --data-dir "$work/data" >"$work/log" 2>&1
		echo "round $r $v: $(cat "$work/time"); $(grep -o 'sales_data=[^ ]*' "$work/log")"
	done
done
