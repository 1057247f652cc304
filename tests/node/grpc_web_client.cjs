// A gRPC-Web client esprit did not write: @connectrpc/connect-node's gRPC-Web transport, with the
// echo service's descriptors loaded at run time (no generated code). Calls Unary and ServerStream
// through the proxy and prints one JSON object with what came back, for
// crates/proxy/tests/grpc_web_connect.rs to check.
//
//   node grpc_web_client.cjs DESCRIPTOR_SET_FILE BASE_URL HTTP_VERSION(1.1|2) [TOKEN]
"use strict";

const fs = require("node:fs");
const { fromBinary, create } = require("@bufbuild/protobuf");
const { FileDescriptorSetSchema } = require("@bufbuild/protobuf/wkt");
const { createFileRegistry } = require("@bufbuild/protobuf");
const { createClient, ConnectError } = require("@connectrpc/connect");
const { createGrpcWebTransport } = require("@connectrpc/connect-node");

async function main() {
  const [descriptorFile, baseUrl, httpVersion, token] = process.argv.slice(2);
  const registry = createFileRegistry(
    fromBinary(FileDescriptorSetSchema, fs.readFileSync(descriptorFile)),
  );
  const service = registry.getService("esprit.echo.v1.Echo");
  const request = registry.getMessage("esprit.echo.v1.EchoRequest");
  const transport = createGrpcWebTransport({ baseUrl, httpVersion, useBinaryFormat: true });
  const client = createClient(service, transport);
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const timeoutMs = 10000;
  const out = {};
  const failure = (err) => {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  };
  try {
    const reply = await client.unary(
      create(request, { payload: new TextEncoder().encode("hello web") }),
      { headers, timeoutMs },
    );
    out.unary = { payload: new TextDecoder().decode(reply.payload) };
  } catch (err) {
    out.unary = failure(err);
  }
  try {
    const indexes = [];
    for await (const reply of client.serverStream(
      create(request, { payload: new TextEncoder().encode("s"), count: 3 }),
      { headers, timeoutMs },
    )) {
      indexes.push(reply.index);
    }
    out.stream = { indexes };
  } catch (err) {
    out.stream = failure(err);
  }
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
