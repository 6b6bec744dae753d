"""A Sluice native plugin in Python, with no Go and no go-plugin library.

It flags events whose amount is above a threshold:

    {"user_id": 7, "event_data": {"amount": 250}}
 -> {"user_id": 7, "event_data": {"amount": 250}, "flagged": true}

Config (the processor's `config:` block): {"field": "event_data.amount",
"above": 100}. Unknown keys are refused, as the Go SDK does.

What makes it a plugin (docs/NATIVE_PLUGINS.md, "A plugin in another
language"):

1. refuse to run without the handshake cookie in the environment;
2. serve, on a local port, the sluice.plugin.v1.Plugin service
   (plugins/native/proto/sluice/plugin/v1/plugin.proto), the gRPC health
   service (service name "plugin" SERVING) and go-plugin's
   plugin.GRPCController/Shutdown;
3. print one line on stdout, "1|1|tcp|127.0.0.1:PORT|grpc", and nothing
   else there;
4. log to stderr, as go-plugin's JSON log lines or plain text.

The messages come from plugin_pb2, which protoc generates from the proto
(see README.md). The health and controller services are answered by hand:
their messages are one enum field or empty, so no generated code is
needed for them.
"""

import datetime
import json
import os
import sys
import threading
from concurrent import futures

import grpc

from sluice.plugin.v1 import plugin_pb2

COOKIE_KEY = "SLUICE_PLUGIN"
COOKIE_VALUE = "b3f1c6e2-sluice-native-plugin"
PROTOCOL_VERSION = "1"


def log(level, message, **kv):
    """Writes one go-plugin JSON log line; the agent logs it at its level."""
    now = datetime.datetime.now(datetime.timezone.utc)
    entry = {"@level": level, "@message": message,
             "@timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")}
    entry.update(kv)
    print(json.dumps(entry), file=sys.stderr, flush=True)


class Flagger:
    def __init__(self):
        self.path = ["event_data", "amount"]
        self.above = 100.0

    def init(self, request, context):
        try:
            cfg = json.loads(request.config_json or b"null") or {}
            if not isinstance(cfg, dict):
                raise ValueError("config: want a mapping")
            unknown = set(cfg) - {"field", "above"}
            if unknown:
                raise ValueError("config: unknown keys: " + ", ".join(sorted(unknown)))
            self.path = str(cfg.get("field", "event_data.amount")).split(".")
            self.above = float(cfg.get("above", 100))
        except (ValueError, TypeError) as e:
            return plugin_pb2.InitResponse(error=str(e))
        log("info", "flagger ready", step=request.step, field=".".join(self.path), above=self.above)
        return plugin_pb2.InitResponse()

    def process(self, request, context):
        results = []
        for msg in request.messages:
            try:
                event = json.loads(msg.value)
                value = event
                for key in self.path:
                    value = value.get(key) if isinstance(value, dict) else None
                if value is not None and not isinstance(value, (int, float)):
                    raise ValueError("field %r: want a number, got %r" % (".".join(self.path), value))
                event["flagged"] = value is not None and value > self.above
                body = json.dumps(event, separators=(",", ":")).encode()
                results.append(plugin_pb2.Result(outcome=plugin_pb2.OUTCOME_REPLACE, value=body))
            except (ValueError, AttributeError) as e:
                results.append(plugin_pb2.Result(outcome=plugin_pb2.OUTCOME_ERROR, error=str(e)))
        # One result per message, in order: the host refuses anything else.
        return plugin_pb2.ProcessResponse(results=results)


def identity(b):
    return b


def main():
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        print("This binary is a plugin. These are not meant to be executed directly.", file=sys.stderr)
        sys.exit(1)
    if PROTOCOL_VERSION not in os.environ.get("PLUGIN_PROTOCOL_VERSIONS", "").split(","):
        print("the agent does not speak protocol version " + PROTOCOL_VERSION, file=sys.stderr)
        sys.exit(1)
    limit = int(os.environ.get("SLUICE_PLUGIN_MAX_MESSAGE_BYTES", 64 << 20))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ])
    flagger = Flagger()
    done = threading.Event()

    def health_check(request, context):
        return b"\x08\x01"  # HealthCheckResponse{status: SERVING}

    def shutdown(request, context):
        done.set()
        return b""

    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("sluice.plugin.v1.Plugin", {
            "Init": grpc.unary_unary_rpc_method_handler(
                flagger.init,
                request_deserializer=plugin_pb2.InitRequest.FromString,
                response_serializer=plugin_pb2.InitResponse.SerializeToString),
            "Process": grpc.unary_unary_rpc_method_handler(
                flagger.process,
                request_deserializer=plugin_pb2.ProcessRequest.FromString,
                response_serializer=plugin_pb2.ProcessResponse.SerializeToString),
        }),
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(
                health_check, request_deserializer=identity, response_serializer=identity),
        }),
        grpc.method_handlers_generic_handler("plugin.GRPCController", {
            "Shutdown": grpc.unary_unary_rpc_method_handler(
                shutdown, request_deserializer=identity, response_serializer=identity),
        }),
    ])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("1|%s|tcp|127.0.0.1:%d|grpc" % (PROTOCOL_VERSION, port), flush=True)
    done.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
