#!/usr/bin/env python3
"""The seed's exercise 1 exactly as ../shared/peers/seed_sales_etl.py runs it
(the same statements, in the same order), with a clock around each step, so
that Sluice's steps can be set beside the Python's same steps:

  parse+validate+transform  reading the CSV, the quality checks and the
                            derived columns (one loop in the seed)
  load                      the INSERT of every row
  aggregate                 the daily and customer summaries
  summaries+commit          writing them, and the commit

usage: seed_steps.py sales.csv out.db   (prints one line of step times)"""
import csv, sqlite3, sys, time
from collections import defaultdict
from datetime import date


def main(src, dbpath):
    t0 = time.perf_counter()
    rows, seen, issues = [], set(), defaultdict(int)
    with open(src, newline="") as f:
        r = csv.DictReader(f)
        missing = {"date", "product_id", "quantity", "price", "customer_id"} - set(r.fieldnames or [])
        if missing:
            raise SystemExit("Missing required columns: %s" % sorted(missing))
        for rec in r:
            key = tuple(rec.values())
            if any(v == "" for v in rec.values()):
                issues["missing_values"] += 1
                continue
            if key in seen:
                issues["duplicate_records"] += 1
                continue
            seen.add(key)
            q, p = int(rec["quantity"]), float(rec["price"])
            if q <= 0 or p <= 0:
                issues["non_positive"] += 1
                continue
            d = date.fromisoformat(rec["date"])
            rows.append((d.isoformat(), int(rec["product_id"]), q, p, int(rec["customer_id"]), q * p,
                         d.year, d.month, d.day, d.weekday()))
    t1 = time.perf_counter()
    con = sqlite3.connect(dbpath)
    con.execute("DROP TABLE IF EXISTS sales_data")
    con.execute("CREATE TABLE sales_data(date TEXT, product_id INT, quantity INT, price REAL, customer_id INT,"
                " total_amount REAL, year INT, month INT, day INT, day_of_week INT)")
    con.executemany("INSERT INTO sales_data VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    t2 = time.perf_counter()
    daily = defaultdict(lambda: [0.0, 0, set(), set()])
    cust = defaultdict(lambda: [0.0, 0, set(), None, None])
    for d, pid, q, p, cid, tot, *_ in rows:
        a = daily[d]; a[0] += tot; a[1] += q; a[2].add(cid); a[3].add(pid)
        c = cust[cid]; c[0] += tot; c[1] += 1; c[2].add(pid)
        c[3] = d if c[3] is None or d < c[3] else c[3]
        c[4] = d if c[4] is None or d > c[4] else c[4]
    t3 = time.perf_counter()
    con.execute("DROP TABLE IF EXISTS daily_summary")
    con.execute("CREATE TABLE daily_summary(date TEXT, daily_revenue REAL, daily_quantity INT,"
                " daily_customers INT, daily_products INT)")
    con.executemany("INSERT INTO daily_summary VALUES (?,?,?,?,?)",
                    [(d, round(a[0], 2), a[1], len(a[2]), len(a[3])) for d, a in sorted(daily.items())])
    con.execute("DROP TABLE IF EXISTS customer_summary")
    con.execute("CREATE TABLE customer_summary(customer_id INT, total_spent REAL, avg_order_value REAL,"
                " order_count INT, unique_products INT, customer_lifetime_days INT)")
    con.executemany("INSERT INTO customer_summary VALUES (?,?,?,?,?,?)",
                    [(cid, round(c[0], 2), round(c[0] / c[1], 2), c[1], len(c[2]),
                      (date.fromisoformat(c[4]) - date.fromisoformat(c[3])).days) for cid, c in sorted(cust.items())])
    con.commit()
    con.close()
    t4 = time.perf_counter()
    print("parse+validate+transform=%.2fs load=%.2fs aggregate=%.2fs summaries+commit=%.2fs total=%.2fs rows=%d"
          % (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0, len(rows)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
