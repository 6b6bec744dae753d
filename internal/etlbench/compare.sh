#!/usr/bin/env bash
# Side by side: the seed's sales ETL in Python (../shared/peers/seed_sales_etl.py)
# and Sluice's pipelines/sales_etl.yaml on the same generated CSV, with
# the time each of Sluice's steps spent, from its run outcome (the steps
# run concurrently, so they add up to more than the run), the Python's
# own steps timed by seed_steps.py, the summaries of both compared, and
# the driver's bare insert of the rows the run loaded (BenchmarkBulkLoadFrom
# in agent/sqliteout) beside the whole run.
# Usage, from the module root:
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

# The same Python again, with a clock around each of its steps
# (seed_steps.py), for the per-step comparison; its total is not the one
# compared.
python3 "$(dirname "$0")/seed_steps.py" "$work/sales.csv" "$work/python-steps.db" >"$work/python-steps.log"

start=$(date +%s.%N)
SALES_CSV="$work/sales.csv" SALES_OUT="$work/out" /usr/bin/time -f "%M %U %S" -o "$work/rss" "$work/agent" \
	--pipeline builtin:sales_etl --http-address "" --data-dir "$work/data" 2>"$work/agent.log"
sl=$(echo "$(date +%s.%N) - $start" | bc)

python3 - "$work/agent.log" "$rows" "$py" "$sl" "$(cut -d' ' -f1 "$work/rss")" "$work/python.log" "$work/python.db" "$work/out/sales.db" "$work/python-steps.log" "$work/rss" <<'PY'
import re, sqlite3, sys
log, rows, py, sl, rss, pylog, pydb, sldb, pysteps, timef = sys.argv[1:11]
cpu = sum(float(x) for x in open(timef).read().split()[1:3])
rows, py, sl, rss = int(rows), float(py), float(sl), int(rss)
text = open(log).read()
outcome = re.search(r'msg="run outcome" (.*)', text).group(1)
commit = re.search(r"summaries, after_run and commit took ([^)]+)\)", text)
print("python seed_sales_etl.py: %6.2f s  %8.0f rows/s  (%s)" % (py, rows / py, open(pylog).read().strip()))
print("  python steps (seed_steps.py, a second run): " + open(pysteps).read().strip())
print("sluice sales_etl:         %6.2f s  %8.0f rows/s  max RSS %d MB, CPU %.1f s (user+sys)" % (sl, rows / sl, rss // 1024, cpu))
print("  outcome: " + outcome)
if commit:
    print("  summaries and commit: " + commit.group(1))
print("sluice / python time: %.2fx" % (sl / py))
a, b = sqlite3.connect(pydb), sqlite3.connect(sldb)
for table, key in (("daily_summary", "date"), ("customer_summary", "customer_id")):
    p = {r[0]: r[1:] for r in a.execute("SELECT * FROM %s" % table)}
    s = {r[0]: r[1:] for r in b.execute("SELECT * FROM %s" % table)}
    differ = sorted(k for k in p if p[k] != s.get(k))
    print("%s: %d groups in Python, %d in Sluice, %d differ%s" % (table, len(p), len(s), len(differ),
          (": e.g. %s %s vs %s" % (differ[0], p[differ[0]], s.get(differ[0]))) if differ else ""))
PY

# The whole run against the driver's bare insert of the very rows it
# loaded (its sales_data, read back; BenchmarkBulkLoadFrom), alternated
# three times so that both see the machine alike: the ratio of their
# medians is the issue's "within 1.3x of the bare bulk insert on the same
# rows". The first pair's run is the one above.
go test -c -o "$work/sqliteout.test" ./agent/sqliteout/
runs=("$sl") bares=()
for i in 1 2 3; do
	if [ "$i" -gt 1 ]; then
		rm -rf "$work/again"
		start=$(date +%s.%N)
		SALES_CSV="$work/sales.csv" SALES_OUT="$work/again" "$work/agent" \
			--pipeline builtin:sales_etl --http-address "" --data-dir "$work/data" 2>/dev/null
		runs+=("$(echo "$(date +%s.%N) - $start" | bc)")
	fi
	bares+=("$(cd agent/sqliteout && SLUICE_BULK_FROM="$work/out/sales.db" "$work/sqliteout.test" \
		-test.run '^$' -test.bench 'BulkLoadFrom$' -test.benchtime 1x -test.count 1 |
		sed -n 's/^BenchmarkBulkLoadFrom[^[:space:]]*[[:space:]]*1[[:space:]]*\([0-9]*\) ns\/op.*/\1/p')")
done
python3 - "${runs[*]}" "${bares[*]}" <<'PY'
import statistics, sys
runs = [float(x) for x in sys.argv[1].split()]
bares = [float(x) / 1e9 for x in sys.argv[2].split()]
if len(bares) != len(runs):
    sys.exit("BenchmarkBulkLoadFrom gave %d figures for %d runs" % (len(bares), len(runs)))
r, b = statistics.median(runs), statistics.median(bares)
print("whole run vs bare insert of its rows, alternated: runs %s s, bare %s s; medians %.2f / %.2f s = %.2fx" %
      (" / ".join("%.2f" % x for x in runs), " / ".join("%.2f" % x for x in bares), r, b, r / b))
PY
