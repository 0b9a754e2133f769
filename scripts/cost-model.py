#!/usr/bin/env python3
"""Monthly cost of a Wenu stage on AWS (docs/aws.md, "Cost model").

Prints the Markdown tables of docs/aws.md: for 1,000, 10,000 and 100,000
devices sending one message (a batch of READINGS_PER_MESSAGE readings)
every 10 s, per service, for an enrich batching window (StatsBatchingSeconds)
of 60 s and of 1 s and 300 s. Change the assumptions below and run again.

Prices: us-east-1 list prices in USD, on-demand, no free tier, as we know
them on 2026-11-27; check them with the AWS Pricing Calculator before you
rely on them.
"""

import math

PRICES = {
    "iot_connection_minute": 0.08 / 1e6,
    # Messages per million, by tier (metered per 5 KB).
    "iot_message_tiers": [(1e9, 1.00), (4e9, 0.80), (float("inf"), 0.70)],
    "iot_rule_triggered": 0.15 / 1e6,
    "iot_rule_action": 0.15 / 1e6,
    "kinesis_shard_hour": 0.015,
    "kinesis_put_unit": 0.014 / 1e6,  # 25 KB units
    "firehose_ingest_gb": 0.029,  # billed per record rounded up to 5 KB
    "firehose_conversion_gb": 0.018,
    "firehose_partitioning_gb": 0.020,
    "lambda_arm_gb_second": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "sqs_fifo_request": 0.50 / 1e6,
    "dynamodb_write_unit": 0.625 / 1e6,
    "dynamodb_read_unit": 0.125 / 1e6,
    "dynamodb_gb_month": 0.25,
    "s3_gb_month": 0.023,
    "rds_t4g_medium_multi_az_hour": 0.130,
    "rds_gp3_gb_month": 0.115,
    "nat_gateway_hour": 0.045,
    "public_ipv4_hour": 0.005,
    "cloudwatch_alarm_month": 0.10,
    "secret_month": 0.40,
    "kms_key_month": 1.00,
}

HOURS = 730
SECONDS = 30 * 24 * 3600
MESSAGE_INTERVAL_SECS = 10
READINGS_PER_MESSAGE = 3  # one per sensor
ROW_BYTES = 200  # a reading as the decrypt function's JSON row
PARQUET_BYTES_PER_READING = 25
ROLLUP_ITEM_BYTES = 400  # measured: 205-289 bytes of rollup, plus keys
KINESIS_BATCH_MAX = 10_000


def tiered(count, tiers):
    cost, left = 0.0, count
    for size, per_million in tiers:
        take = min(left, size)
        cost += take / 1e6 * per_million
        left -= take
        if left <= 0:
            break
    return cost


def lambda_cost(invocations, seconds, memory_mb):
    return invocations * seconds * memory_mb / 1024 * PRICES["lambda_arm_gb_second"] + invocations * PRICES["lambda_request"]


def month(devices, window_secs):
    p = PRICES
    messages = devices * SECONDS / MESSAGE_INTERVAL_SECS
    per_second = devices / MESSAGE_INTERVAL_SECS
    readings = messages * READINGS_PER_MESSAGE
    series = devices * READINGS_PER_MESSAGE
    # Shards: under 70% of 1,000 records/s each, and few enough records per
    # shard that a window's batch fits Kinesis' 10,000-record maximum.
    shards = max(2, math.ceil(per_second / 700), math.ceil(per_second * window_secs / KINESIS_BATCH_MAX))
    batch = per_second / shards * max(window_secs, 1)  # records per enrich batch
    # One stats job per series and enrich batch.
    jobs = series * min(1 / MESSAGE_INTERVAL_SECS, 1 / max(window_secs, 1)) * SECONDS
    cost = {
        "IoT Core connectivity": devices * SECONDS / 60 * p["iot_connection_minute"],
        "IoT Core messaging": tiered(messages, p["iot_message_tiers"]),
        "IoT Core rule + Kinesis action": messages * (p["iot_rule_triggered"] + p["iot_rule_action"]),
        f"Kinesis ({shards} shards)": shards * HOURS * p["kinesis_shard_hour"] + messages * p["kinesis_put_unit"],
        "Firehose (ingest, Parquet, partitions)": messages * 5 / 1024**2 * p["firehose_ingest_gb"]
        + readings * ROW_BYTES / 1e9 * (p["firehose_conversion_gb"] + p["firehose_partitioning_gb"]),
        "Lambda (5 functions)": lambda_cost(messages / 4000, 0.1, 512)  # decrypt: 1 MB buffers
        + lambda_cost(shards * SECONDS / max(window_secs, 1), 0.05 + batch * 0.0002, 512)  # enrich
        + lambda_cost(shards * SECONDS * max(1, per_second / shards / 100), 0.05, 512)  # alarms
        + lambda_cost(jobs / 10, 0.05, 256)  # stats: 10 jobs a batch
        + lambda_cost(SECONDS, 0.05, 512),  # API: a dashboard request a second
        "SQS FIFO (send, receive, delete by 10)": jobs * 3 / 10 * p["sqs_fifo_request"],
        # A job reads its 3 rollups (strongly consistent) and writes them in a transaction (2 WRU each).
        "DynamoDB stats requests": jobs * (6 * p["dynamodb_write_unit"] + 3 * p["dynamodb_read_unit"]),
        "DynamoDB stats storage": series * (7 * 1440 + 90 * 24 + 730) * ROLLUP_ITEM_BYTES / 1e9 * p["dynamodb_gb_month"],
        "S3 lake (each month of data kept)": readings * PARQUET_BYTES_PER_READING / 1e9 * p["s3_gb_month"],
        "RDS PostgreSQL (t4g.medium, 2 zones)": HOURS * p["rds_t4g_medium_multi_az_hour"] + 2 * 20 * p["rds_gp3_gb_month"],
        "NAT gateway and its address": HOURS * (p["nat_gateway_hour"] + p["public_ipv4_hour"]),
        "CloudWatch alarms, secrets, KMS key": 19 * p["cloudwatch_alarm_month"]
        + (math.ceil(devices / 500) + 1) * p["secret_month"]
        + p["kms_key_month"],
    }
    return cost, readings


def table(window_secs):
    fleets = [1_000, 10_000, 100_000]
    results = [month(devices, window_secs) for devices in fleets]
    print(f"| StatsBatchingSeconds = {window_secs} | " + " | ".join(f"{d:,} devices" for d in fleets) + " |")
    print("|---|" + "---:|" * len(fleets))
    for row in range(len(results[0][0])):
        names = [list(cost)[row] for cost, _ in results]
        name = names[0].split(" (")[0] + " (" + "/".join(n.split("(")[1].split()[0] for n in names) + " shards)" if names[0].startswith("Kinesis") else names[0]
        print(f"| {name} | " + " | ".join(f"{list(cost.values())[row]:,.0f}" for cost, _ in results) + " |")
    totals = [sum(cost.values()) for cost, _ in results]
    print("| **total per month** | " + " | ".join(f"**{t:,.0f}**" for t in totals) + " |")
    print("| per million readings | " + " | ".join(f"{t / (r / 1e6):.2f}" for t, (_, r) in zip(totals, results)) + " |")
    print()


if __name__ == "__main__":
    for window in (60, 1, 300):
        table(window)
