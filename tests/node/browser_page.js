// The script of the page crates/proxy/tests/browser.rs loads in headless Chromium: esbuild
// bundles it (at test time, into a temporary directory) with @connectrpc/connect-web, a gRPC-Web
// client esprit did not write. The page is served from one origin and calls the Bookstore through
// the proxy on another, so every call is cross-origin and the browser preflights it.
//
// Query parameters:
//   proxy   the proxy's base URL (http://127.0.0.1:PORT)
//   token   a JWT the proxy accepts, sent as `authorization: Bearer …`
//   create  (optional) the theme of a shelf to create with the token
//   mode    `grpc-web` (default) or `rest` (fetch of the transcoded HTTP/JSON routes)
//
// What came back is written to `window.results` and, as JSON, into `#output`: for each call
// `{ok: true, …}` with the data, or `{ok: false, …}` with what the page could read of the failure.
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

const params = new URLSearchParams(location.search);
const proxy = params.get("proxy");
const token = params.get("token");
const timeoutMs = 20000;

function failure(err) {
  const e = ConnectError.from(err);
  const cause = e.cause instanceof Error ? `${e.cause.name}: ${e.cause.message}` : "";
  return { ok: false, code: e.code, message: e.rawMessage, cause };
}

const shelf = (s) => ({ id: String(s.id), theme: s.theme });

async function grpcWeb() {
  // The Bookstore's descriptors, from the page's own origin (no generated code).
  const descriptors = await fetch("bookstore.pb");
  const registry = createFileRegistry(
    fromBinary(FileDescriptorSetSchema, new Uint8Array(await descriptors.arrayBuffer())),
  );
  const service = registry.getService("endpoints.examples.bookstore.Bookstore");
  const client = createClient(
    service,
    createGrpcWebTransport({ baseUrl: proxy, useBinaryFormat: true }),
  );
  const calls = {};
  const call = async (name, run) => {
    try {
      calls[name] = { ok: true, ...(await run()) };
    } catch (err) {
      calls[name] = failure(err);
    }
  };
  for (const [suffix, headers] of [
    ["with_token", { authorization: `Bearer ${token}` }],
    ["without_token", {}],
  ]) {
    await call(`list_shelves_${suffix}`, async () => {
      const reply = await client.listShelves({}, { headers, timeoutMs });
      return { shelves: reply.shelves.map(shelf) };
    });
    await call(`get_shelf_${suffix}`, async () => {
      const reply = await client.getShelf({ shelf: 1n }, { headers, timeoutMs });
      return { shelf: shelf(reply) };
    });
  }
  const theme = params.get("create");
  if (theme) {
    await call("create_shelf_with_token", async () => {
      const reply = await client.createShelf(
        { shelf: { theme } },
        { headers: { authorization: `Bearer ${token}` }, timeoutMs },
      );
      return { shelf: shelf(reply) };
    });
  }
  return calls;
}

// Transcoded HTTP/JSON with the browser's own fetch: a bearer token makes it a non-simple
// request, so the browser preflights it.
async function rest() {
  const calls = {};
  const call = async (name, path, init) => {
    try {
      const response = await fetch(`${proxy}${path}`, init);
      const text = await response.text();
      let body = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: kept as text
      }
      calls[name] = { ok: response.ok, status: response.status, body };
    } catch (err) {
      // A CORS refusal: the page learns nothing of the answer.
      calls[name] = { ok: false, status: null, error: `${err.name}: ${err.message}` };
    }
  };
  const bearer = { headers: { authorization: `Bearer ${token}` } };
  await call("list_shelves_with_token", "/v1/shelves", bearer);
  await call("get_shelf_with_token", "/v1/shelves/1", bearer);
  await call("list_shelves_without_token", "/v1/shelves", {});
  return calls;
}

async function main() {
  const mode = params.get("mode") || "grpc-web";
  let results;
  try {
    results = { mode, calls: mode === "rest" ? await rest() : await grpcWeb() };
  } catch (err) {
    results = { mode, error: `${err.name}: ${err.message}` };
  }
  document.getElementById("output").textContent = JSON.stringify(results);
  window.results = results;
}

main();
