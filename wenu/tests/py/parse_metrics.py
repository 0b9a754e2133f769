"""Parses Prometheus exposition text from stdin with the official Python
client's parser (which raises on malformed input) and prints, as JSON, each
metric family's type and number of samples.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {"type": family.type, "samples": len(family.samples)}
print(json.dumps(families))
