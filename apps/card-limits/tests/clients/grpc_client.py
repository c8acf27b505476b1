"""Drives card-limits over gRPC through a client generated from its .proto.

The stubs are what grpcio-tools' protoc makes from
crates/kappa-gateway/proto/kappa/gateway/v1/gateway.proto, generated here
into OUT_DIR before anything else; the health and reflection stubs are
grpcio's own. Nothing here is written by hand against the wire protocol.
(apps/card-limits/tests/api_document.rs runs this and checks what it saw.)

Usage: grpc_client.py HOST:PORT PROTO_ROOT OUT_DIR CARD AUTHORIZATION
Prints one JSON object with what the service answered.
"""

import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc

PROTO = "kappa/gateway/v1/gateway.proto"


def generate(proto_root, out_dir):
    """Generates the messages and the stub, and makes them importable."""
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{proto_root}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", PROTO]
    )
    if code != 0:
        raise SystemExit(f"protoc failed on {PROTO} ({code})")
    sys.path.insert(0, out_dir)


def main():
    address, proto_root, out_dir, card, authorization = sys.argv[1:6]
    generate(proto_root, out_dir)
    from kappa.gateway.v1 import gateway_pb2 as pb
    from kappa.gateway.v1 import gateway_pb2_grpc as rpc

    channel = grpc.insecure_channel(address)
    stub = rpc.GatewayStub(channel)
    auth = [("authorization", authorization)]
    now = 1_780_272_000_000
    seen = {}

    def command(action, data, wait, metadata=auth):
        return stub.SendCommand(
            pb.SendCommandRequest(action=action, key=card, data_json=json.dumps(data), wait=wait, timeout_ms=10_000),
            metadata=metadata,
        )

    def authorize(auth_id, amount):
        return {"auth_id": auth_id, "card": card, "amount": amount, "merchant": "Corner Coffee", "timestamp": now}

    # Without credentials: refused, and nothing written (checked by the caller).
    try:
        command("set-limit", {"card": card, "limit": 1}, True, metadata=[])
        seen["unauthenticated"] = "accepted"
    except grpc.RpcError as e:
        seen["unauthenticated"] = e.code().name

    def sync(action, data):
        r = command(action, data, True)
        return [pb.CommandStatus.Name(r.status), [e.action for e in r.events]]

    seen["set_limit"] = sync("set-limit", {"card": card, "limit": 10_000})
    seen["approved"] = sync("authorize", authorize("a1", 2_500))
    seen["declined"] = sync("authorize", authorize("a2", 9_000))

    # Without waiting; then read the card once it reflects the command
    # (read-your-writes through min_position) and look the command up.
    accepted = command("authorize", authorize("a3", 1_000), False)
    seen["accepted"] = pb.CommandStatus.Name(accepted.status)
    read = stub.GetView(
        pb.GetViewRequest(view="cards", key=card, min_position=accepted.command.position, wait_ms=10_000),
        metadata=auth,
    )
    seen["card"] = {"value": json.loads(read.value_json), "position": read.position}
    looked_up = stub.GetCommand(pb.GetCommandRequest(id=accepted.command.id), metadata=auth)
    seen["command"] = [looked_up.command.action, looked_up.command.key, looked_up.command.principal]

    # The card's commands from the beginning, two at a time: the second
    # stream resumes from the first one's last cursor.
    ids = []
    cursor = None
    for _ in range(2):
        request = pb.StreamRequest(cursor=cursor) if cursor else pb.StreamRequest(from_beginning=True)
        stream = stub.StreamCommands(request, metadata=auth)
        for _ in range(2):
            message = next(stream)
            ids.append([message.record.id, message.record.action])
            cursor = message.cursor
        stream.cancel()
    seen["streamed"] = ids
    seen["sent_ids"] = [accepted.command.id, looked_up.command.id]

    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="kappa.gateway.v1.Gateway")
    )
    seen["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
    listed = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=auth
    )
    seen["services"] = sorted(s.name for s in next(listed).list_services_response.service)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
