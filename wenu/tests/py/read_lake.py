"""Reads a Wenu lake with two independent readers and prints what they see.

DuckDB and pyarrow must agree with each other and with what the devices were
acknowledged; the Rust test compares. Usage: read_lake.py LAKE_DIR
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds

lake = sys.argv[1]
readings = f"read_parquet('{lake}/readings/**/*.parquet', hive_partitioning = true)"
con = duckdb.connect()
total, distinct = con.execute(
    f"SELECT count(*), count(DISTINCT (device_id, seq, sensor)) FROM {readings}"
).fetchone()
messages = con.execute(f"SELECT DISTINCT device_id, seq FROM {readings} ORDER BY ALL").fetchall()
types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {readings}").fetchall()}
companies = [c for (c,) in con.execute(f"SELECT DISTINCT company FROM {readings}").fetchall()]
misplaced = con.execute(
    f"""SELECT count(*) FROM {readings}
        WHERE strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d') <> CAST(date AS VARCHAR)
           OR CAST(hour AS INTEGER) <> hour(ts AT TIME ZONE 'UTC')"""
).fetchone()[0]
quarantine = dict(
    con.execute(
        f"""SELECT reason, count(*) FROM read_parquet('{lake}/quarantine/**/*.parquet', hive_partitioning = true)
            GROUP BY reason"""
    ).fetchall()
)

dataset = ds.dataset(f"{lake}/readings", format="parquet", partitioning="hive")
table = dataset.to_table()
schema = {field.name: str(field.type) for field in table.schema}

print(json.dumps({
    "duckdb": {"rows": total, "distinct_readings": distinct, "companies": companies,
               "types": types, "rows_outside_their_partition": misplaced, "quarantine": quarantine,
               "messages": messages},
    "pyarrow": {"rows": table.num_rows, "schema": schema},
}))
