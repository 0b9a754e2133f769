"""The edge seen by Eclipse Paho (paho-mqtt 2), over MQTT 3.1.1 and 5.

Usage: paho_edge.py PORT DEVICE PASSWORD OTHER_DEVICE
Prints one JSON object: the CONNACK and PUBACK reason codes each case got.
"""

import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PORT, DEVICE, PASSWORD, OTHER = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
TIMEOUT = 30
PIPELINED = 200


class Session:
    """A paho client that records its CONNACK and the PUBACKs it gets."""

    def __init__(self, client_id, user, password, protocol, in_flight=20):
        self.connected = threading.Event()
        self.acked = {}
        self.ack_order = []
        self.ack_event = threading.Condition()
        self.connack = None
        self.properties = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(in_flight)
        self.client.on_connect = self.on_connect
        self.client.on_connect_fail = lambda *a: self.connected.set()
        self.client.on_disconnect = self.on_disconnect
        self.client.on_publish = self.on_publish
        self.client.connect("127.0.0.1", int(PORT))
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"

    def on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = reason_code.value
        if properties is not None:
            for name in ("ReceiveMaximum", "RetainAvailable", "MaximumQoS"):
                if hasattr(properties, name):
                    self.properties[name] = getattr(properties, name)
        self.connected.set()

    def on_disconnect(self, *args):
        self.connected.set()
        with self.ack_event:
            self.ack_event.notify_all()

    def on_publish(self, client, userdata, mid, reason_code, properties):
        with self.ack_event:
            self.acked[mid] = reason_code.value
            self.ack_order.append(mid)
            self.ack_event.notify_all()

    def pipelined(self, topic, count):
        """Publishes `count` messages without waiting for acknowledgements;
        returns whether every one was acknowledged, in the order sent."""
        sent = [self.client.publish(topic, b"%d" % n, qos=1).mid for n in range(count)]
        with self.ack_event:
            self.ack_event.wait_for(lambda: all(mid in self.acked for mid in sent), TIMEOUT)
        return [mid for mid in self.ack_order if mid in set(sent)] == sent and all(
            self.acked[mid] == 0 for mid in sent
        )

    def publish(self, topic, payload=b"not decrypted by the edge"):
        """The PUBACK's reason code, or None when the connection closed instead."""
        info = self.client.publish(topic, payload, qos=1)
        with self.ack_event:
            self.ack_event.wait_for(lambda: info.mid in self.acked or not self.client.is_connected(), TIMEOUT)
            return self.acked.get(info.mid)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


own, foreign = f"wenu/{DEVICE}/telemetry", f"wenu/{OTHER}/telemetry"
result = {}

# An MQTT 5 client keeps to the receive maximum of the CONNACK (64); paho
# does not read it, so it is told.
v5 = Session(DEVICE, DEVICE, PASSWORD, mqtt.MQTTv5, in_flight=64)
result["v5_connack"] = v5.connack
result["v5_connack_properties"] = v5.properties
result["v5_own_topic"] = v5.publish(own)
result["v5_foreign_topic"] = v5.publish(foreign)
result["v5_after_refusal"] = v5.publish(own)
result["v5_pipelined_in_order"] = v5.pipelined(own, PIPELINED)
v5.close()

wrong_id = Session(OTHER, DEVICE, PASSWORD, mqtt.MQTTv5)
result["v5_client_id_of_another_device"] = wrong_id.connack
wrong_id.close()

bad = Session(DEVICE, DEVICE, "wrong", mqtt.MQTTv311)
result["v311_bad_password"] = bad.connack
bad.close()

v311 = Session(DEVICE, DEVICE, PASSWORD, mqtt.MQTTv311)
result["v311_connack"] = v311.connack
result["v311_own_topic"] = v311.publish(own)
result["v311_foreign_topic"] = v311.publish(foreign)
v311.close()

# MQTT 3.1.1 has no receive maximum: all at once, the edge paces its reading.
v311 = Session(DEVICE, DEVICE, PASSWORD, mqtt.MQTTv311, in_flight=PIPELINED)
result["v311_pipelined_in_order"] = v311.pipelined(own, PIPELINED)
v311.close()

print(json.dumps(result))
