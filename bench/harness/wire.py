"""What every benchmark call carries: the gRPC-framed EchoRequest and the request headers.

Every set-up receives exactly the same bytes, so a difference in cost is the proxy's.
"""

import base64
import hashlib
import json
import struct

METHOD_PATH = "/esprit.echo.v1.Echo/Unary"

# EchoRequest.payload: small, like most unary calls between services.
PAYLOAD = b"esprit-benchmark-payload-32bytes"


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def echo_request(payload=PAYLOAD, sleep_ms=0):
    """A protobuf-encoded esprit.echo.v1.EchoRequest (fields 1 `payload` and 3 `sleep_ms`)."""
    msg = b"\x0a" + _varint(len(payload)) + payload
    if sleep_ms:
        msg += b"\x18" + _varint(sleep_ms)
    return msg


def grpc_frame(message):
    """The gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def fixed_token():
    """A JWT-shaped bearer token with the size of a real RS256 service-account token.

    Deterministic, and not valid: only the harness's own tests use it. A run sends a real token
    minted at its start (creds.py), the same in every set-up.
    """
    header = {"alg": "RS256", "kid": "esprit-bench-key-1", "typ": "JWT"}
    claims = {
        "iss": "bench-client@esprit-bench.iam.gserviceaccount.com",
        "sub": "bench-client@esprit-bench.iam.gserviceaccount.com",
        "email": "bench-client@esprit-bench.iam.gserviceaccount.com",
        "aud": "echo.esprit.example",
        "iat": 1795680000,
        "exp": 1795683600,
    }
    signature = b"".join(
        hashlib.sha256(b"esprit-bench-%d" % i).digest() for i in range(8)
    )  # 256 bytes, the size of an RSA-2048 signature
    return ".".join(
        [
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(claims, separators=(",", ":")).encode()),
            _b64url(signature),
        ]
    )


# An API key shaped like esprit's (39 characters). Only the harness's tests use it: a run sends
# a real key made at its start (creds.py), in every set-up, in ESP's default header location.
API_KEY = "AIzaSyBenchBenchBenchBenchBenchBench01"


# The calls a row can make (setups.Setup.kind). Every kind sends the same token and API key.
#   grpc:      POST METHOD_PATH, `application/grpc`, the gRPC-framed EchoRequest
#   grpc-web:  POST METHOD_PATH, `application/grpc-web+proto` (binary: the same framed bytes as
#              gRPC), `x-grpc-web: 1` as grpc-web clients send, no `te`
#   http-json: GET TRANSCODED_PATH, no body (the payload in the path), `accept: application/json`
CALL_KINDS = ("grpc", "grpc-web", "http-json")
TRANSCODED_PATH = "/v1/echo/" + PAYLOAD.decode("ascii")
# The service config's HTTP rule for the transcoded row (google.api.http).
TRANSCODED_HTTP_RULE = (
    "http:\n  rules:\n  - selector: esprit.echo.v1.Echo.Unary\n    get: /v1/echo/{payload}\n"
)


def call_path(kind):
    return TRANSCODED_PATH if kind == "http-json" else METHOD_PATH


def has_body(kind):
    return kind != "http-json"


def request_headers(token, api_key=API_KEY, kind="grpc"):
    """The request headers of every call, as (name, value) pairs; no `authorization` header when
    `token` is None (the token-pool rows carry their token in the URI instead).

    `user-agent`, `accept` and `accept-encoding` are set explicitly because h2load and nghttp
    (the tracer) have different defaults, so that the traced call and the load carry the same
    bytes through the proxy.
    """
    content_type = {"grpc": "application/grpc", "grpc-web": "application/grpc-web+proto",
                    "http-json": None}[kind]
    headers = [
        ("content-type", content_type),
        ("te", "trailers" if kind == "grpc" else None),
        ("x-grpc-web", "1" if kind == "grpc-web" else None),
        ("authorization", "Bearer " + token if token else None),
        ("x-api-key", api_key),
        ("user-agent", "esprit-bench/1"),
        ("accept", "application/json" if kind == "http-json" else "*/*"),
        ("accept-encoding", "identity"),
    ]
    return [(name, value) for name, value in headers if value is not None]


def pool_path(token):
    """The `:path` of a token-pool call: the token in ESP's default query parameter."""
    return "%s?access_token=%s" % (METHOD_PATH, token)


def header_args(headers):
    """`-H 'name: value'` arguments, understood by both h2load and nghttp."""
    args = []
    for name, value in headers:
        args += ["-H", "%s: %s" % (name, value)]
    return args
