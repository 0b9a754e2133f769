"""Reads a Wenu lake from S3 (moto in the tests) with pyarrow, queries it
with DuckDB, and prints what both see. Usage: read_s3_lake.py ENDPOINT BUCKET
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds
from pyarrow import fs

endpoint, bucket = sys.argv[1], sys.argv[2]
scheme, host = endpoint.split("://", 1)
s3 = fs.S3FileSystem(endpoint_override=host, scheme=scheme, access_key="test", secret_key="test",
                     region="us-east-1")
files = [f.path for f in s3.get_file_info(fs.FileSelector(f"{bucket}/readings", recursive=True))
         if f.type == fs.FileType.File]
if not files:
    print(json.dumps({"files": 0}))
    sys.exit(0)
readings = ds.dataset(f"{bucket}/readings", filesystem=s3, format="parquet", partitioning="hive").to_table()
con = duckdb.connect()
con.register("readings", readings)
total, distinct = con.execute(
    "SELECT count(*), count(DISTINCT (device_id, seq, sensor)) FROM readings").fetchone()
messages = con.execute("SELECT DISTINCT device_id, seq FROM readings ORDER BY ALL").fetchall()
per_series = con.execute(
    "SELECT device_id, sensor, count(*) FROM readings GROUP BY ALL ORDER BY ALL").fetchall()
misplaced = con.execute(
    """SELECT count(*) FROM readings
       WHERE strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d') <> CAST(date AS VARCHAR)
          OR CAST(hour AS INTEGER) <> hour(ts AT TIME ZONE 'UTC')""").fetchone()[0]
companies = [c for (c,) in con.execute("SELECT DISTINCT company FROM readings").fetchall()]
print(json.dumps({
    "files": len(files),
    "pyarrow": {"rows": readings.num_rows, "schema": {f.name: str(f.type) for f in readings.schema}},
    "duckdb": {"rows": total, "distinct_readings": distinct, "messages": messages,
               "per_series": per_series, "rows_outside_their_partition": misplaced,
               "companies": companies},
}))
