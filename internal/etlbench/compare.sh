#!/usr/bin/env bash
# Side by side: the seed's sales ETL in Python (../shared/peers/seed_sales_etl.py)
# and Sluice's pipelines/sales_etl.yaml on the same generated CSV, with
# Sluice's run split into read (csv_file), process (validate, dedupe,
# transform) and load (aggregates, SQLite, Parquet, rejects) from its
# debug log. Usage, from the module root:
#
#   internal/etlbench/compare.sh [ROWS] [PEERS_DIR]
#
# ROWS defaults to 1000000; PEERS_DIR to ../shared/peers (gen_sales.py and
# seed_sales_etl.py). Results go to stdout; work files to a temp dir.
set -euo pipefail
rows="${1:-1000000}"
peers="${2:-../shared/peers}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

go build -o "$work/agent" ./cmd/agent
python3 "$peers/gen_sales.py" "$rows" 7 >"$work/sales.csv"
echo "rows: $rows ($(du -h "$work/sales.csv" | cut -f1)), cores: $(nproc)"

# A first run fills the agent's Wasm compilation cache, as any run after the
# first finds it; its output is thrown away.
SALES_CSV="$work/sales.csv" SALES_OUT="$work/warm" "$work/agent" --pipeline builtin:sales_etl \
	--http-address "" --data-dir "$work/data" >/dev/null 2>&1 || true
rm -rf "$work/warm"

start=$(date +%s.%N)
python3 "$peers/seed_sales_etl.py" "$work/sales.csv" "$work/python.db" 2>"$work/python.log"
py=$(echo "$(date +%s.%N) - $start" | bc)

start=$(date +%s.%N)
SALES_CSV="$work/sales.csv" SALES_OUT="$work/out" /usr/bin/time -f "%M" -o "$work/rss" "$work/agent" \
	--pipeline builtin:sales_etl --http-address "" --data-dir "$work/data" --log-level debug 2>"$work/agent.log"
sl=$(echo "$(date +%s.%N) - $start" | bc)

python3 - "$work/agent.log" "$rows" "$py" "$sl" "$(cat "$work/rss")" "$work/python.log" <<'PY'
import re, sys
from datetime import datetime
log, rows, py, sl, rss, pylog = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
def at(pattern):
    for line in open(log):
        if re.search(pattern, line):
            return datetime.fromisoformat(re.search(r'time=(\S+)', line).group(1).replace('Z', '+00:00'))
    raise SystemExit("no log line matches " + pattern)
t0 = at(r'Input type csv_file is now active')
t1 = at(r'Pending acks resolved')
t2 = at(r'Attempting to write')
t3 = at(r'msg="run outcome"')
outcome = re.search(r'rows_in=.*', open(log).read().split('msg="run outcome"')[1].splitlines()[0]).group(0)
print("python seed_sales_etl.py: %.2f s  %8.0f rows/s  (%s)" % (py, rows / py, open(pylog).read().strip()))
print("sluice sales_etl:         %.2f s  %8.0f rows/s  (%s), max RSS %d MB" % (sl, rows / sl, outcome, rss // 1024))
for name, a, b in (("read", t0, t1), ("process", t1, t2), ("load", t2, t3)):
    d = (b - a).total_seconds()
    print("  %-8s %6.2f s  %8.0f rows/s" % (name, d, rows / d if d else 0))
print("sluice / python time: %.2fx" % (sl / py))
PY
