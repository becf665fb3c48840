// A Lambda handler behind an API Gateway HTTP API (payload format 2.0),
// wrapped by the middleware and invoked with such events, against the real
// sidecar: Allow runs the handler with the tenant context, a foreign
// document reads like a missing one, no token is a 401, a stopped sidecar a
// 503 without the handler.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";

import { CedargateClient, withCedargate, type AuthContext } from "../src/index.js";
import { Env } from "./harness.js";

let env: Env;
let alice: string;

before(async () => {
  env = await Env.start();
  alice = env.token("alice", "acme", ["editor"], 1);
});
after(async () => {
  await env.stop();
});

/** An event as API Gateway sends it for `METHOD path`. */
function event(method: string, path: string, token?: string, extra: Record<string, string> = {}, body?: string): APIGatewayProxyEventV2 {
  const [rawPath = "", rawQueryString = ""] = path.split("?");
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath,
    rawQueryString,
    headers: { host: "api.example.com", "user-agent": "test-agent", ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra },
    requestContext: {
      accountId: "123456789012",
      apiId: "api",
      domainName: "api.example.com",
      domainPrefix: "api",
      http: { method, path: rawPath, protocol: "HTTP/1.1", sourceIp: "203.0.113.7", userAgent: "test-agent" },
      requestId: "lambda-request",
      routeKey: "$default",
      stage: "$default",
      time: "01/Jan/2026:00:00:00 +0000",
      timeEpoch: 1767225600000,
    },
    isBase64Encoded: false,
    ...(body !== undefined ? { body } : {}),
  };
}

const context = { functionName: "docsearch", awsRequestId: "1" } as Context;

function handlerFor(url: string) {
  const seen: AuthContext[] = [];
  const handler = withCedargate(
    { client: new CedargateClient({ url, timeoutMs: 1000, retries: 1 }) },
    async (_event: APIGatewayProxyEventV2, _ctx: Context, auth): Promise<APIGatewayProxyStructuredResultV2> => {
      if (!auth) throw new Error("no tenant context");
      seen.push(auth);
      await Promise.resolve();
      return { statusCode: 200, body: JSON.stringify({ tenant: auth.tenant, user: auth.user.id }) };
    },
  );
  return { handler, seen };
}

describe("lambda middleware", () => {
  it("runs the handler for an own-tenant read with the verified tenant", async () => {
    const { handler, seen } = handlerFor(env.sidecar.url);
    const res = await handler(event("GET", "/documents/q3-report", alice), context);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(JSON.parse(String(res.body)), { tenant: "acme", user: "alice" });
    assert.equal(seen.length, 1);
    assert.match(seen[0]?.decisionId ?? "", /^[0-9a-f-]{36}$/);
  });

  it("answers another tenant's document exactly like a missing one", async () => {
    const { handler, seen } = handlerFor(env.sidecar.url);
    const foreign = await handler(event("GET", "/documents/roadmap", alice), context);
    const missing = await handler(event("GET", "/documents/not-there", alice), context);
    assert.equal(foreign.statusCode, 403);
    assert.deepEqual([foreign.statusCode, foreign.body], [missing.statusCode, missing.body]);
    assert.equal(seen.length, 0);
  });

  it("answers 401 without a token", async () => {
    const { handler, seen } = handlerFor(env.sidecar.url);
    const res = await handler(event("GET", "/documents/q3-report"), context);
    assert.equal(res.statusCode, 401);
    assert.match(String((res.headers as Record<string, string>)["www-authenticate"]), /^Bearer /);
    assert.equal(seen.length, 0);
  });

  it("takes sizeBytes from the body and fileType from the header of a create", async () => {
    const { handler, seen } = handlerFor(env.sidecar.url);
    const ok = await handler(event("POST", "/documents", alice, { "x-file-type": "pdf" }, "%PDF-1.7"), context);
    assert.equal(ok.statusCode, 200);
    assert.deepEqual(seen[0]?.resource, { type: "Tenant", id: "acme" });
    // acme may store 20 GB: a larger document is refused.
    const big = await handler(
      event("POST", "/documents", alice, { "x-file-type": "pdf", "content-length": String(30 * 1024 ** 3) }, "x"),
      context,
    );
    assert.equal(big.statusCode, 403);
    assert.equal(seen.length, 1);
  });

  it("answers 503 without running the handler when the sidecar is stopped", async () => {
    const sidecar = await env.startSidecar();
    const { handler, seen } = handlerFor(sidecar.url);
    assert.equal((await handler(event("GET", "/documents/q3-report", alice), context)).statusCode, 200);
    await sidecar.stop();
    const res = await handler(event("GET", "/documents/q3-report", alice), context);
    assert.equal(res.statusCode, 503);
    assert.equal(seen.length, 1);
  });
});
