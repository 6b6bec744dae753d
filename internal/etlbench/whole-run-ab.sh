#!/usr/bin/env bash
# The whole sales ETL (builtin:sales_etl) run by two agent binaries on one
# CSV, alternated ROUNDS rounds after a warm-up run each (which fills its
# Wasm compilation cache, as every later run finds it), each process timed
# whole, and the median of the rounds' B/A wall-time ratios: a before/after
# of a change on a shared machine, where the rounds drift more than the
# change. Usage, from the module root:
#
#   go build -o /tmp/agent-a ./cmd/agent   (at the commit before)
#   go build -o /tmp/agent-b ./cmd/agent   (at the commit after)
#   internal/etlbench/whole-run-ab.sh /tmp/agent-a /tmp/agent-b /tmp/sales1m.csv [ROUNDS]
set -euo pipefail
a="$1"
b="$2"
csv="$3"
rounds="${4:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for v in a b; do
	bin=$a
	[ $v = b ] && bin=$b
	SALES_CSV="$csv" SALES_OUT="$work/warm" "$bin" --pipeline builtin:sales_etl --http-address "" \
		--data-dir "$work/data-$v" >/dev/null 2>&1
	rm -rf "$work/warm"
done
for r in $(seq "$rounds"); do
	for v in a b; do
		bin=$a
		[ $v = b ] && bin=$b
		rm -rf "$work/out"
		SALES_CSV="$csv" SALES_OUT="$work/out" /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
			"$bin" --pipeline builtin:sales_etl --http-address "" --data-dir "$work/data-$v" >"$work/log" 2>&1
		read -r wall user sys rss <"$work/time"
		echo "round $r $v: ${wall} s wall, ${user}+${sys} s CPU, ${rss} KB max RSS; $(grep -o 'steps="[^"]*"' "$work/log")"
	done
done | tee "$work/rounds"
awk '/ a: / {a[$2]=$4} / b: / {b[$2]=$4} END {n=0; for (r in a) if (r in b) x[++n]=b[r]/a[r];
	for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (x[j]<x[i]) {t=x[i];x[i]=x[j];x[j]=t}
	m = (n%2) ? x[(n+1)/2] : (x[n/2]+x[n/2+1])/2
	printf "B/A wall time by round, sorted:"; for (i=1;i<=n;i++) printf " %.2f", x[i]; printf "; median %.2f\n", m}' "$work/rounds"
