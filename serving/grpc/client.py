#!/usr/bin/env python3
"""A Python client of TradeServe's gRPC API, with stubs generated from the repository's
.proto files at start (grpcio-tools), or KServe's own Open Inference Protocol stubs.

  python serving/grpc/client.py --target 127.0.0.1:50051 --symbol AAPL            # tradeserve.v1.Decisions/Predict
  python serving/grpc/client.py --target 127.0.0.1:50051 --symbol AAPL --oip      # inference.GRPCInferenceService/ModelInfer
  python serving/grpc/client.py ... --timestamp 2025-10-15T15:00:00Z --no-risk-check --key "$KEY"
  python serving/grpc/client.py ... --ca ca.crt [--client-cert c.crt --client-key c.key]       # TLS, mTLS

Prints the answer as one JSON object; a failed call prints {"code", "message", "reason",
"field"} (the REST error code travels as a google.rpc.ErrorInfo) and exits 1. Needs grpcio
and grpcio-tools (the KServe test environment pins both).
"""

import argparse
import importlib
import json
import os
import sys
import tempfile

import grpc
from google.protobuf import json_format

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOS = os.path.join(ROOT, "crates", "tradeserve-grpc", "proto")

# google.rpc.Status and ErrorInfo, field for field (to read grpc-status-details-bin without
# the googleapis-common-protos package).
RPC_STATUS = """syntax = "proto3";
package google.rpc;
import "google/protobuf/any.proto";
message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
"""


def generate(out):
    """Python stubs of decisions.proto, grpc_predict_v2.proto and google.rpc's status, in `out`."""
    from grpc_tools import protoc
    import grpc_tools

    with open(os.path.join(out, "rpc_status.proto"), "w") as f:
        f.write(RPC_STATUS)
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    for proto, include in [
        ("tradeserve/v1/decisions.proto", PROTOS),
        ("inference/grpc_predict_v2.proto", PROTOS),
        ("rpc_status.proto", out),
    ]:
        args = ["protoc", f"-I{include}", f"-I{wkt}", f"--python_out={out}", f"--grpc_python_out={out}", proto]
        if protoc.main(args) != 0:
            sys.exit(f"cannot compile {proto}")
    sys.path.insert(0, out)


def oip_stubs():
    """KServe's generated Open Inference Protocol stubs when KServe is installed, else ours."""
    try:
        return (importlib.import_module("kserve.protocol.grpc.grpc_predict_v2_pb2"),
                importlib.import_module("kserve.protocol.grpc.grpc_predict_v2_pb2_grpc"))
    except ImportError:
        return (importlib.import_module("inference.grpc_predict_v2_pb2"),
                importlib.import_module("inference.grpc_predict_v2_pb2_grpc"))


def error(e):
    """A failed call: its code, message and ErrorInfo."""
    out = {"code": e.code().name, "message": e.details()}
    rpc = importlib.import_module("rpc_status_pb2")
    for key, value in e.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = rpc.Status.FromString(value)
            for any_ in status.details:
                if any_.type_url.endswith("google.rpc.ErrorInfo"):
                    info = rpc.ErrorInfo.FromString(any_.value)
                    out["reason"] = info.reason
                    if "field" in info.metadata:
                        out["field"] = info.metadata["field"]
    return out


def native(channel, args, metadata):
    pb = importlib.import_module("tradeserve.v1.decisions_pb2")
    stub = importlib.import_module("tradeserve.v1.decisions_pb2_grpc").DecisionsStub(channel)
    request = pb.PredictRequest(symbol=args.symbol, explain=args.explain)
    if args.timestamp:
        request.timestamp = args.timestamp
    if args.no_risk_check:
        request.risk_check = False
    if args.client_order_id:
        request.client_order_id = args.client_order_id
    answer = stub.Predict(request, metadata=metadata, timeout=args.timeout)
    return json_format.MessageToDict(
        answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def oip(channel, args, metadata):
    pb, pb_grpc = oip_stubs()
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    inputs = [pb.ModelInferRequest.InferInputTensor(
        name="symbol", datatype="BYTES", shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[args.symbol.encode()]))]
    if args.timestamp:
        inputs.append(pb.ModelInferRequest.InferInputTensor(
            name="timestamp", datatype="BYTES", shape=[1],
            contents=pb.InferTensorContents(bytes_contents=[args.timestamp.encode()])))
    request = pb.ModelInferRequest(model_name="tradeserve", id="python-client", inputs=inputs)
    if args.no_risk_check:
        request.parameters["risk_check"].bool_param = False
    answer = stub.ModelInfer(request, metadata=metadata, timeout=args.timeout)
    outputs = {}
    for o in answer.outputs:
        c = o.contents
        values = (list(c.bytes_contents) or list(c.fp64_contents) or list(c.uint64_contents)
                  or list(c.bool_contents) or list(c.fp32_contents))
        values = [v.decode() if isinstance(v, bytes) else v for v in values]
        outputs[o.name] = values[0] if list(o.shape) == [1] else values
    params = {k: json_format.MessageToDict(v) for k, v in answer.parameters.items()}
    return {"model_name": answer.model_name, "model_version": answer.model_version,
            "id": answer.id, "outputs": outputs, "parameters": params}


def channel_to(args):
    """Plaintext (HTTP/2 prior knowledge), or TLS when --ca is given."""
    if not args.ca:
        return grpc.insecure_channel(args.target)
    read = lambda path: open(path, "rb").read() if path else None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.client_key),
        certificate_chain=read(args.client_cert))
    return grpc.secure_channel(args.target, credentials)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="127.0.0.1:50051", help="the gRPC listener, HOST:PORT")
    p.add_argument("--symbol", required=True)
    p.add_argument("--timestamp", help="RFC 3339: point-in-time features")
    p.add_argument("--no-risk-check", action="store_true")
    p.add_argument("--explain", action="store_true", help="(native) Shapley attributions")
    p.add_argument("--client-order-id", help="(native) idempotency key")
    p.add_argument("--oip", action="store_true", help="call the Open Inference Protocol instead")
    p.add_argument("--key", default=os.environ.get("TRADESERVE_API_KEY"), help="API key (or TRADESERVE_API_KEY)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (sent as grpc-timeout)")
    p.add_argument("--ca", help="TLS: the CA certificate (PEM) that signed the server's")
    p.add_argument("--client-cert", help="mTLS: this client's certificate (PEM)")
    p.add_argument("--client-key", help="mTLS: its private key (PEM)")
    args = p.parse_args()
    metadata = [("authorization", f"Bearer {args.key}")] if args.key else []
    with tempfile.TemporaryDirectory() as out:
        generate(out)
        with channel_to(args) as channel:
            try:
                answer = (oip if args.oip else native)(channel, args, metadata)
            except grpc.RpcError as e:
                print(json.dumps(error(e)))
                sys.exit(1)
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
