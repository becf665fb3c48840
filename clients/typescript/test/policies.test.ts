// The tenant-policy methods of the management client against a fake fetch
// (no server): the paths and ETag preconditions they send, the ETag and
// creation they read back, the typed refusals (400 with the policy's
// problems, 403, 412, 428), and which calls are tried again after a 503.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  BadRequestError,
  CedargateAdmin,
  ConflictError,
  ForbiddenError,
  UnavailableError,
  type TenantPolicyInput,
  type TenantPolicyView,
} from "../src/index.js";

interface Sent {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** A fetch that records what is sent and answers `replies` in turn. */
function fakeFetch(...replies: Reply[]): { fetch: typeof fetch; sent: Sent[] } {
  const sent: Sent[] = [];
  const f: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const body = typeof init?.body === "string" ? (JSON.parse(init.body) as unknown) : undefined;
    sent.push({
      method: init?.method ?? "GET",
      path: url.pathname,
      headers: { ...(init?.headers as Record<string, string> | undefined) },
      body,
    });
    const reply = replies[Math.min(sent.length, replies.length) - 1];
    if (reply === undefined) return Promise.reject(new Error("no reply left"));
    return Promise.resolve(
      new Response(JSON.stringify(reply.body), {
        status: reply.status,
        headers: { "content-type": "application/json", ...reply.headers },
      }),
    );
  };
  return { fetch: f, sent };
}

const admin = (f: typeof fetch) => new CedargateAdmin({ url: "http://admin.invalid/", fetch: f, retryBaseMs: 0 });

const ETAG = "0123456789abcdef0123456789abcdef";
const STATEMENT = `permit (
  principal in CedarGate::Role::"contractor",
  action == CedarGate::Action::"Read",
  resource is CedarGate::Document
)
when { resource.visibility == "shared" };`;
const input: TenantPolicyInput = { definition: { static: { statement: STATEMENT } }, description: "Contractors read shared documents" };

function view(policyId: string, etag = ETAG): TenantPolicyView {
  return {
    tenantId: "acme",
    policyId,
    definition: input.definition,
    createdAt: "2026-03-01T10:00:00Z",
    updatedAt: "2026-03-01T10:00:00Z",
    updatedBy: "carol",
    etag,
    cedarId: `tenant/acme/${policyId}`,
    status: "valid",
  };
}

const forbidden = { status: 403, body: { error: { code: "forbidden", message: "you may not do this to this tenant" } } };

describe("tenant policies", () => {
  it("lists the tenant's policies", async () => {
    const fake = fakeFetch({ status: 200, body: { policies: [view("a"), view("b")] } });
    const list = await admin(fake.fetch).listPolicies("acme", { token: "t" });
    assert.deepEqual(list.map((p) => p.cedarId), ["tenant/acme/a", "tenant/acme/b"]);
    assert.deepEqual(
      fake.sent.map((s) => [s.method, s.path, s.headers.authorization]),
      [["GET", "/v1/tenants/acme/policies", "Bearer t"]],
    );
  });

  it("reads a policy with its ETag, the path escaped", async () => {
    const fake = fakeFetch({ status: 200, body: view("q1.read_all-x"), headers: { etag: `"${ETAG}"` } });
    const { policy, etag } = await admin(fake.fetch).getPolicy("acme", "q1.read_all-x");
    assert.equal(policy.status, "valid");
    assert.equal(etag, `"${ETAG}"`);
    assert.equal(fake.sent[0]?.path, "/v1/tenants/acme/policies/q1.read_all-x");
    const odd = fakeFetch({ status: 200, body: view("x") });
    await admin(odd.fetch).getPolicy("ac me", "a/b");
    assert.equal(odd.sent[0]?.path, "/v1/tenants/ac%20me/policies/a%2Fb");
  });

  it("creates only with If-None-Match: *, and says it created", async () => {
    const fake = fakeFetch({
      status: 201,
      body: view("contractors-read"),
      headers: { etag: `"${ETAG}"`, location: "/v1/tenants/acme/policies/contractors-read" },
    });
    const r = await admin(fake.fetch).putPolicy("acme", "contractors-read", input, { ifNoneMatch: "*" });
    assert.equal(r.created, true);
    assert.equal(r.etag, `"${ETAG}"`);
    assert.equal(r.policy.cedarId, "tenant/acme/contractors-read");
    const sent = fake.sent[0];
    assert.ok(sent);
    assert.equal(sent.method, "PUT");
    assert.equal(sent.path, "/v1/tenants/acme/policies/contractors-read");
    assert.equal(sent.headers["if-none-match"], "*");
    assert.equal(sent.headers["if-match"], undefined);
    assert.equal(sent.headers["content-type"], "application/json");
    assert.deepEqual(sent.body, input);
  });

  it("replaces with If-Match, quoting a bare etag field and keeping a header's", async () => {
    const next = "fedcba9876543210fedcba9876543210";
    const fake = fakeFetch(
      { status: 200, body: view("p", next), headers: { etag: `"${next}"` } },
      { status: 200, body: view("p", next), headers: { etag: `"${next}"` } },
    );
    const a = admin(fake.fetch);
    const r = await a.putPolicy("acme", "p", input, { ifMatch: ETAG });
    assert.equal(r.created, false);
    assert.equal(r.etag, `"${next}"`);
    await a.putPolicy("acme", "p", input, { ifMatch: `W/"${ETAG}"` });
    assert.deepEqual(
      fake.sent.map((s) => s.headers["if-match"]),
      [`"${ETAG}"`, `W/"${ETAG}"`],
    );
    assert.ok(fake.sent.every((s) => s.headers["if-none-match"] === undefined));
  });

  it("takes the ETag from the body when the header is missing", async () => {
    const fake = fakeFetch({ status: 200, body: view("p") });
    const r = await admin(fake.fetch).putPolicy("acme", "p", input, { ifMatch: ETAG });
    assert.equal(r.etag, `"${ETAG}"`);
  });

  it("deletes with If-Match and answers the cedarId", async () => {
    const fake = fakeFetch({ status: 200, body: { deleted: "tenant/acme/p" } });
    const r = await admin(fake.fetch).deletePolicy("acme", "p", ETAG, { token: "t" });
    assert.deepEqual(r, { deleted: "tenant/acme/p" });
    assert.deepEqual(
      fake.sent.map((s) => [s.method, s.path, s.headers["if-match"], s.body]),
      [["DELETE", "/v1/tenants/acme/policies/p", `"${ETAG}"`, undefined]],
    );
  });

  it("refuses an invalid policy with its problems", async () => {
    const problems = ["p:5:20: attribute `nope` not found", "p:1:1: another"];
    const fake = fakeFetch({
      status: 400,
      body: { error: { code: "invalid_policy", message: `the policy is not valid: ${problems[0] ?? ""}`, problems } },
    });
    await assert.rejects(admin(fake.fetch).putPolicy("acme", "p", input), (e: unknown) => {
      assert.ok(e instanceof BadRequestError);
      assert.equal(e.code, "invalid_policy");
      assert.deepEqual(e.problems, problems);
      assert.equal(e.fields, undefined);
      return true;
    });
    const described = fakeFetch({
      status: 400,
      body: { error: { code: "invalid_policy", message: "`description` must be at most 1000 printable characters", fields: ["description"] } },
    });
    await assert.rejects(admin(described.fetch).putPolicy("acme", "p", input), (e: unknown) => {
      assert.ok(e instanceof BadRequestError);
      assert.deepEqual(e.fields, ["description"]);
      assert.equal(e.problems, undefined);
      return true;
    });
  });

  it("types the refusals: 403, 412 and 428", async () => {
    const fake = fakeFetch(
      forbidden,
      { status: 412, body: { error: { code: "policy_exists", message: "policy p exists" } } },
      { status: 428, body: { error: { code: "if_match_required", message: "send the policy's ETag in If-Match to replace it" } } },
      { status: 412, body: { error: { code: "conflict", message: "policy p has changed" } } },
    );
    const a = admin(fake.fetch);
    await assert.rejects(a.putPolicy("acme", "p", input), (e: unknown) => e instanceof ForbiddenError && e.code === "forbidden");
    await assert.rejects(
      a.putPolicy("acme", "p", input, { ifNoneMatch: "*" }),
      (e: unknown) => e instanceof ConflictError && e.status === 412 && e.code === "policy_exists",
    );
    await assert.rejects(
      a.putPolicy("acme", "p", input),
      (e: unknown) => e instanceof ConflictError && e.status === 428 && e.code === "if_match_required",
    );
    await assert.rejects(
      a.deletePolicy("acme", "p", ETAG),
      (e: unknown) => e instanceof ConflictError && e.status === 412 && e.code === "conflict",
    );
  });

  it("tries reads again after a 503, never a write", async () => {
    const unavailable = { status: 503, body: { error: { code: "unavailable", message: "the store cannot be reached; try again" } } };
    const read = fakeFetch(unavailable, { status: 200, body: { policies: [] } });
    assert.deepEqual(await admin(read.fetch).listPolicies("acme"), []);
    assert.equal(read.sent.length, 2);
    for (const write of [
      (a: CedargateAdmin) => a.putPolicy("acme", "p", input, { ifMatch: ETAG }),
      (a: CedargateAdmin) => a.deletePolicy("acme", "p", ETAG),
    ]) {
      const fake = fakeFetch(unavailable, { status: 200, body: view("p") });
      await assert.rejects(write(admin(fake.fetch)), UnavailableError);
      assert.equal(fake.sent.length, 1);
    }
  });
});
