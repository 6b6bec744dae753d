#!/usr/bin/env python3
"""The seed's Airflow DAG (ml_data_pipeline) in pandas, its extract and
transform_data statements as the seed writes them, over the three CSVs of
a directory, with a clock around each step; and a deterministic generator
of those CSVs, for setting pipelines/ml_dag.yaml beside it (dag.sh).

  seed_dag.py gen DIR ROWS   writes DIR/{user_behavior,product_catalog,
                             transaction_history}.csv: ROWS users' sessions
                             and ROWS transactions (one page_views in a
                             hundred missing), 1000 products
  seed_dag.py run DIR        extracts and transforms them as the DAG does;
                             prints one line of step times

The load (to_parquet) is left out: it needs pyarrow or fastparquet, which
Debian does not package, so the Python's time here is extract + transform
only, beside Sluice's whole run."""
import random, sys, time


def gen(d, rows):
    r = random.Random(7)
    with open(d + "/user_behavior.csv", "w") as f:
        f.write("user_id,page_views,session_duration,timestamp\n")
        for i in range(rows):
            views = "" if r.random() < 0.01 else str(r.randint(1, 50))
            f.write("%d,%s,%d,2025-01-%02d %02d:%02d:00\n" % (r.randint(1, 5000), views, r.randint(10, 3600), 1 + i % 28, i % 24, i % 60))
    with open(d + "/transaction_history.csv", "w") as f:
        f.write("transaction_id,user_id,amount,timestamp\n")
        for i in range(rows):
            f.write("%d,%d,%.2f,2025-01-%02d %02d:%02d:00\n" % (i + 1, r.randint(1, 5000), r.uniform(5, 500), 1 + i % 28, i % 24, (i * 7) % 60))
    with open(d + "/product_catalog.csv", "w") as f:
        f.write("product_id,category,price,rating\n")
        for i in range(1000):
            f.write("%d,%s,%.2f,%.2f\n" % (i + 1, r.choice(["clothing", "electronics", "home"]), r.uniform(1, 1500), r.uniform(1, 5)))


def run(d):
    import pandas as pd
    t0 = time.perf_counter()
    extracted = {}
    for source in ("user_behavior", "product_catalog", "transaction_history"):
        parse = ["timestamp"] if source != "product_catalog" else None
        extracted[source] = pd.read_csv("%s/%s.csv" % (d, source), parse_dates=parse)
    t1 = time.perf_counter()
    transformed = {}
    for source_name, data in extracted.items():
        data = data.fillna(method='ffill')
        if source_name == 'user_behavior':
            data['engagement_score'] = (
                data['page_views'] * 0.3 +
                data['session_duration'] * 0.7
            )
            data['is_active_user'] = data['engagement_score'] > data['engagement_score'].median()
        elif source_name == 'product_catalog':
            data['price_category'] = pd.cut(
                data['price'],
                bins=[0, 50, 200, 1000],
                labels=['budget', 'mid-range', 'premium']
            )
        elif source_name == 'transaction_history':
            data['hour_of_day'] = data['timestamp'].dt.hour
            data['day_of_week'] = data['timestamp'].dt.dayofweek
            data['is_weekend'] = data['day_of_week'].isin([5, 6])
        transformed[source_name] = data
    t2 = time.perf_counter()
    rows = sum(len(v) for v in transformed.values())
    print("pandas %s: rows=%d extract=%.3fs transform=%.3fs extract+transform=%.3fs" % (pd.__version__, rows, t1 - t0, t2 - t1, t2 - t0))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]))
    else:
        run(sys.argv[2])
