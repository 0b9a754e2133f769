#!/usr/bin/env python3
"""A reference Wenu device in Python: what docs/devices.md says, and nothing else.

It seals readings with AES-256-GCM (the `cryptography` package), publishes
them at QoS 1 with paho-mqtt (>= 2.0), keeps every message until its PUBACK
and sends what is unacknowledged again after a reconnect. Its sequence
number survives restarts in a small file. It shares no code with Wenu.

    wenu_device.py --check-vectors docs/test-vectors.json
    wenu_device.py --fleet fleet.json --device acme-00001 --count 10

It also follows the downlink: it subscribes to its configuration and
command topics after every connection, applies a newer configuration
version and reports it with its firmware and boot counter, and answers each
command once (reboot, sample_now and set_interval are done, anything else
rejected). A rotate_key command carries a new key sealed under the current
one: the device opens it, seals with it from then on, keeps it in
--key-file, and confirms once everything it sealed under older keys is
acknowledged (the confirmation retires those keys).

The readings it sends are made up but predictable, so tests can check them:
sensor temp-1 (temperature, degC) = 20 + (seq % 10) / 4 and sensor hum-1
(humidity, %RH) = 40 + seq % 7. At the end it prints one JSON line:
{"device": ..., "sent": ..., "acked": ..., "seqs": [first, last]}.
"""

import argparse
import base64
import json
import os
import queue
import secrets
import ssl
import struct
import sys
import threading
import time
from collections import OrderedDict

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1


def seal(device_id: str, key_id: int, key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """version | key id (big-endian) | nonce | ciphertext | tag; AAD = version | key id | device id."""
    header = struct.pack(">BI", VERSION, key_id) + nonce
    aad = struct.pack(">BI", VERSION, key_id) + device_id.encode("utf-8")
    return header + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_envelope(device_id: str, keys: dict, envelope: bytes) -> bytes:
    """Opens an envelope with whichever of `keys` (key id -> key) it names."""
    if len(envelope) < 33 or envelope[0] != VERSION:
        raise ValueError("not an envelope")
    key_id = struct.unpack(">I", envelope[1:5])[0]
    if key_id not in keys:
        raise ValueError(f"sealed under key {key_id}, which this device does not hold")
    aad = envelope[:5] + device_id.encode("utf-8")
    return AESGCM(keys[key_id]).decrypt(envelope[5:17], envelope[17:], aad)


def check_vectors(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        vectors = json.load(f)["vectors"]
    for v in vectors:
        key = base64.b64decode(v["key_base64"])
        sealed = seal(v["device_id"], v["key_id"], key, bytes.fromhex(v["nonce_hex"]), v["plaintext"].encode())
        if sealed.hex() != v["envelope_hex"]:
            print(f"vector {v['name']!r}: sealed {sealed.hex()}, expected {v['envelope_hex']}", file=sys.stderr)
            return 1
    transfers = json.load(open(path, encoding="utf-8")).get("key_transfers", [])
    for t in transfers:
        keys = {t["key_id"]: bytes.fromhex(t["key_hex"])}
        opened = open_envelope(t["device_id"], keys, bytes.fromhex(t["command_args"]["sealed"]))
        if opened.hex() != t["plaintext_hex"]:
            print(f"key transfer {t['name']!r}: opened {opened.hex()}, expected {t['plaintext_hex']}", file=sys.stderr)
            return 1
    print(f"{len(vectors)} vectors and {len(transfers)} key transfers match")
    return 0


def readings(seq: int) -> list:
    return [
        {"sensor": "temp-1", "kind": "temperature", "value": 20 + (seq % 10) / 4, "unit": "degC"},
        {"sensor": "hum-1", "kind": "humidity", "value": 40 + seq % 7, "unit": "%RH"},
    ]


class SeqFile:
    """The next sequence number, kept across restarts (written before use)."""

    def __init__(self, path):
        self.path = path
        self.next = 1
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.next = int(f.read().strip() or 1)

    def take(self) -> int:
        seq = self.next
        self.next += 1
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(str(self.next))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        return seq


class Device:
    """Everything but the network runs on the main thread: paho's callbacks
    only hand over what happened (paho holds its own locks while it calls
    them, so they must not wait for ours)."""

    def __init__(self, args, device):
        self.device_id = device["device_id"]
        self.key_file = args.key_file
        if self.key_file and os.path.exists(self.key_file):
            with open(self.key_file, encoding="utf-8") as f:
                device = dict(device, **json.load(f))
        self.key_id = device["key_id"]
        self.key = base64.b64decode(device["key"])
        self.keys = {self.key_id: self.key}
        # (key id, result): results that wait until nothing sealed under an older key is unacknowledged.
        self.held_results = []
        self.results_in_flight = set()  # mids of results without a PUBACK yet
        self.topic = f"wenu/{self.device_id}/telemetry"
        # seq -> envelope, oldest first: what has no PUBACK yet.
        self.unacked = OrderedDict()
        self.in_flight = {}  # mid -> seq of what was sent
        self.acked = 0
        self.acks = queue.Queue()  # (mid, refused, reason) from the network thread
        self.downlink = queue.Queue()  # (topic, payload) from the network thread
        self.reconnected = threading.Event()
        self.firmware = args.firmware
        self.boot = args.boot
        self.config_version = 0
        self.commands_run = set()
        protocol = mqtt.MQTTv5 if args.mqtt5 else mqtt.MQTTv311
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=protocol
        )
        self.client.username_pw_set(self.device_id, device["password"])
        if args.ca:
            self.client.tls_set(ca_certs=args.ca, cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self.on_connect
        self.client.on_publish = self.on_publish
        self.client.on_message = self.on_message

    def on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            print(f"connection refused: {reason_code}", file=sys.stderr)
        else:
            self.reconnected.set()

    def on_publish(self, client, userdata, mid, reason_code, properties):
        self.acks.put((mid, reason_code.is_failure, str(reason_code)))

    def on_message(self, client, userdata, message):
        self.downlink.put((message.topic, message.payload))

    def report(self):
        body = {"firmware": self.firmware, "boot": self.boot, "config_version": self.config_version}
        self.client.publish(f"wenu/{self.device_id}/reported", json.dumps(body), qos=1)

    def handle_downlink(self, topic, payload):
        message = json.loads(payload)
        if topic.endswith("/config"):
            # The same version may come twice: apply only a newer one.
            if message["version"] > self.config_version:
                self.config_version = message["version"]
                print(f"applied configuration {message['version']}: {message['config']}", file=sys.stderr)
                self.report()
        elif topic.endswith("/commands"):
            # At least once: run each id once.
            if message["id"] in self.commands_run:
                return
            self.commands_run.add(message["id"])
            if message["name"] == "rotate_key":
                self.take_key(message["id"], message["args"])
                return
            known = message["name"] in ("reboot", "sample_now", "set_interval")
            result = {"id": message["id"], "status": "done" if known else "rejected"}
            if not known:
                result["detail"] = f"unknown command {message['name']}"
            self.answer(result)

    def answer(self, result):
        info = self.client.publish(f"wenu/{self.device_id}/results", json.dumps(result), qos=1)
        self.results_in_flight.add(info.mid)

    def take_key(self, command_id, args):
        """Opens the new key (key id | key, sealed under a key this device holds) and seals with it from now on."""
        try:
            plaintext = open_envelope(self.device_id, self.keys, bytes.fromhex(args["sealed"]))
            if len(plaintext) != 36:
                raise ValueError(f"a sealed key is 36 bytes, not {len(plaintext)}")
            key_id = struct.unpack(">I", plaintext[:4])[0]
            if key_id != args["key_id"]:
                raise ValueError(f"the sealed key is {key_id}, the command says {args['key_id']}")
        except Exception as err:  # a tampered or foreign key: refuse it, keep the old one
            self.answer({"id": command_id, "status": "failed", "detail": str(err)})
            return
        self.keys[key_id] = plaintext[4:]
        self.key_id, self.key = key_id, plaintext[4:]
        if self.key_file:
            tmp = self.key_file + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"key_id": key_id, "key": base64.b64encode(self.key).decode()}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.key_file)
        print(f"took key {key_id} from the downlink", file=sys.stderr)
        self.held_results.append((key_id, {"id": command_id, "status": "done"}))

    def send(self, seq, envelope):
        # Sent even while disconnected: paho queues it, and a reconnect sends all again anyway.
        info = self.client.publish(self.topic, envelope, qos=1)
        self.in_flight[info.mid] = seq

    def pump(self):
        if self.reconnected.is_set():
            self.reconnected.clear()
            # A clean session keeps no subscriptions: subscribe again, and report.
            self.client.subscribe([(f"wenu/{self.device_id}/config", 1), (f"wenu/{self.device_id}/commands", 1)])
            self.report()
            # A new connection: everything unacknowledged goes again, oldest first.
            for seq, envelope in list(self.unacked.items()):
                self.send(seq, envelope)
        while not self.downlink.empty():
            self.handle_downlink(*self.downlink.get_nowait())
        # Confirming a key retires the older ones: wait until nothing sealed under them awaits its PUBACK.
        oldest = min((struct.unpack(">I", e[1:5])[0] for e in self.unacked.values()), default=None)
        for held in list(self.held_results):
            if oldest is None or oldest >= held[0]:
                self.held_results.remove(held)
                self.answer(held[1])
        while True:
            try:
                mid, refused, reason = self.acks.get_nowait()
            except queue.Empty:
                return
            seq = self.in_flight.pop(mid, None)
            if not refused:
                self.results_in_flight.discard(mid)
            if refused:
                # An MQTT 5 refusal: the message stays, and goes again on the next connection.
                print(f"seq {seq} refused: {reason}", file=sys.stderr)
            elif seq is not None and self.unacked.pop(seq, None) is not None:
                self.acked += 1

    def run(self, args):
        sequence = SeqFile(args.seq_file)
        self.client.connect_async(args.host, args.port, keepalive=30)
        self.client.loop_start()
        first = last = None
        for _ in range(args.count):
            seq = sequence.take()
            first = seq if first is None else first
            last = seq
            body = {"seq": seq, "ts": int(time.time() * 1000), "readings": readings(seq)}
            plaintext = json.dumps(body, separators=(",", ":")).encode()
            envelope = seal(self.device_id, self.key_id, self.key, secrets.token_bytes(12), plaintext)
            self.unacked[seq] = envelope
            self.send(seq, envelope)
            self.pump()
            time.sleep(args.interval)
        deadline = time.monotonic() + args.timeout
        while (self.unacked or self.held_results or self.results_in_flight) and time.monotonic() < deadline:
            time.sleep(0.05)
            self.pump()
        self.client.disconnect()
        self.client.loop_stop()
        print(json.dumps({"device": self.device_id, "sent": args.count, "acked": self.acked,
                          "unacked": len(self.unacked), "seqs": [first, last]}))
        return 0 if not self.unacked else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-vectors", metavar="FILE", help="seal the test vectors and compare")
    parser.add_argument("--fleet", help="fleet file written by `wenu devices provision`")
    parser.add_argument("--device", help="device id in the fleet file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--ca", help="CA certificate (PEM): connect over TLS and verify the server")
    parser.add_argument("--mqtt5", action="store_true", help="MQTT 5 instead of 3.1.1")
    parser.add_argument("--count", type=int, default=10, help="messages to send")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between messages")
    parser.add_argument("--seq-file", help="where the next sequence number is kept across runs")
    parser.add_argument("--key-file", help="where a key received over the downlink is kept across runs")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the last PUBACKs")
    parser.add_argument("--firmware", default="reference-python/1.0", help="firmware version to report")
    parser.add_argument("--boot", type=int, default=1, help="boot counter to report")
    args = parser.parse_args()
    if args.check_vectors:
        return check_vectors(args.check_vectors)
    if not (args.fleet and args.device):
        parser.error("--fleet and --device are needed to send")
    with open(args.fleet, encoding="utf-8") as f:
        devices = [d for d in json.load(f)["devices"] if d["device_id"] == args.device]
    if not devices:
        parser.error(f"{args.device} is not in {args.fleet}")
    return Device(args, devices[0]).run(args)


if __name__ == "__main__":
    sys.exit(main())
