"""Runs one SQL query over a Wenu lake in DuckDB and prints the rows as JSON.

`{readings}` in the query stands for the lake's readings table.
Usage: query_lake.py LAKE_DIR SQL
"""
import json
import sys

import duckdb

lake, sql = sys.argv[1], sys.argv[2]
readings = f"read_parquet('{lake}/readings/**/*.parquet', hive_partitioning = true)"
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
rows = con.execute(sql.replace("{readings}", readings)).fetchall()
print(json.dumps(rows))
