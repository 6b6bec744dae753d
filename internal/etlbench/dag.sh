#!/usr/bin/env bash
# Side by side: the seed's Airflow DAG in pandas (seed_dag.py: its extract
# and transform_data; pandas' load, to_parquet, needs pyarrow, which Debian
# does not package, so the Python does less than Sluice here) and
# pipelines/ml_dag.yaml, as shipped and as it was at OLD_REV, over the same
# generated CSVs, alternated three rounds; each process's wall time, CPU
# and peak RSS, and Sluice's run outcome (its steps' times).
# Usage, from the module root:
#
#   internal/etlbench/dag.sh [ROWS] [OLD_REV]
#
# ROWS (default 320000) user_behavior rows and as many transactions;
# OLD_REV (default bffa773, the DAG as one JSON message per row) the
# commit whose ml_dag.yaml runs beside the shipped one, with the same
# agent binary. Needs python3-pandas (apt-get install python3-pandas).
set -euo pipefail
rows="${1:-320000}"
old="${2:-bffa773}"
here="$(dirname "$0")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
py=/usr/bin/python3 # Debian's, where python3-pandas installs

go build -o "$work/agent" ./cmd/agent
git show "$old:pipelines/ml_dag.yaml" >"$work/old.yaml"
mkdir "$work/in"
"$py" "$here/seed_dag.py" gen "$work/in" "$rows"
echo "rows: $rows user_behavior + $rows transaction_history + 1000 products ($(du -sh "$work/in" | cut -f1)), cores: $(nproc)"

sluice() { # name pipeline
	rm -rf "$work/out-$1"
	DAG_IN="$work/in" DAG_OUT="$work/out-$1" /usr/bin/time -f "%e s wall, %U+%S s CPU, %M KB peak RSS" -o "$work/time" \
		"$work/agent" --pipeline "$2" --once --http-address "" --data-dir "$work/data" 2>"$work/log"
	echo "$1: $(cat "$work/time")"
	echo "  $(grep 'run outcome' "$work/log" | grep -o 'duration=.*')"
}
# A first run of each fills the agent's Wasm compilation cache.
sluice warm-old "$work/old.yaml" >/dev/null
sluice warm-new builtin:ml_dag >/dev/null
for round in 1 2 3; do
	echo "round $round"
	/usr/bin/time -f "pandas: %e s wall, %U+%S s CPU, %M KB peak RSS" -o "$work/time" "$py" "$here/seed_dag.py" run "$work/in"
	cat "$work/time"
	sluice "old ($old)" "$work/old.yaml"
	sluice "shipped" builtin:ml_dag
done
