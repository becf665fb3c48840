// An Express application protected by the middleware, against the real
// sidecar: the verified tenant context on Allow; 401 without a token or with
// a forged one; another tenant's document refused with exactly the body of a
// missing one on every document route; the policies' own message on a
// quota refusal; and 503 with the handler never run when the sidecar is
// stopped or its store is broken.

import assert from "node:assert/strict";
import type { Server as HttpServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import express from "express";

import { CedargateAdmin, CedargateClient, authOf, cedargateExpress, defaultRoutes, type AuditEvent } from "../src/index.js";
import { Env, corruptStore, type Server } from "./harness.js";

let env: Env;
let alice: string;

before(async () => {
  env = await Env.start();
  alice = env.token("alice", "acme", ["editor"], 1);
});
after(async () => {
  await env.stop();
});

/** The application: every route of the default table answers who asked. */
async function app(sidecarUrl: string): Promise<{ url: string; calls: string[]; close: () => Promise<void> }> {
  const calls: string[] = [];
  const a = express();
  a.use(cedargateExpress({ client: new CedargateClient({ url: sidecarUrl, timeoutMs: 1000, retries: 1 }) }));
  const handler = (req: express.Request, res: express.Response) => {
    calls.push(`${req.method} ${req.path}`);
    const auth = authOf(req);
    res.json({ tenant: req.tenant, user: req.user, decisionId: req.decisionId, action: auth.action, resource: auth.resource });
  };
  for (const r of defaultRoutes) {
    const path = r.path.replace(/\{(\w+)\}/g, ":$1");
    const method = r.method.toLowerCase() as "get" | "head" | "put" | "patch" | "delete" | "post";
    a[method](path, handler);
  }
  a.get("/unmapped", handler);
  const server: HttpServer = await new Promise((ok) => {
    const s = a.listen(0, "127.0.0.1", () => {
      ok(s);
    });
  });
  const addr = server.address();
  const port = addr && typeof addr === "object" ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    close: () =>
      new Promise((ok) => {
        server.close(() => {
          ok();
        });
      }),
  };
}

async function call(url: string, method: string, token?: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    ...(method === "POST" || method === "PUT" || method === "PATCH" ? { body: "{}" } : {}),
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

describe("express middleware", () => {
  it("lets an own-tenant read through with the verified tenant context", async () => {
    const application = await app(env.sidecar.url);
    try {
      const res = await call(`${application.url}/documents/q3-report`, "GET", alice, { "x-request-id": "req-own-read" });
      assert.equal(res.status, 200, res.body);
      const body = JSON.parse(res.body) as Record<string, unknown>;
      assert.equal(body.tenant, "acme");
      assert.deepEqual(body.user, { id: "alice", tenant: "acme", groups: ["editor"], clearance: 1 });
      assert.match(String(body.decisionId), /^[0-9a-f-]{36}$/);
      assert.deepEqual(body.resource, { type: "Document", id: "q3-report" });
      assert.deepEqual(application.calls, ["GET /documents/q3-report"]);

      // The decision's audit record carries the request id the middleware sent.
      const admin = new CedargateAdmin({ url: env.admin.url });
      const carol = env.token("carol", "acme", ["admin"], 3);
      let found: AuditEvent | undefined;
      for (let i = 0; i < 100 && !found; i++) {
        for await (const e of admin.auditLogs("acme", { user: "alice" }, { token: carol })) {
          if (e.eventId === body.decisionId) found = e;
        }
        if (!found) await sleep(100);
      }
      assert.ok(found, "the decision has an audit record");
      assert.match(JSON.stringify(found), /req-own-read/);
    } finally {
      await application.close();
    }
  });

  it("refuses another tenant's document with exactly the body of a missing one, on every document route", async () => {
    const application = await app(env.sidecar.url);
    try {
      const foreign = ["roadmap", "budget", "tps-reports"];
      const missing = ["no-such-document", "roadmap2", "q3-report-old"];
      for (const r of defaultRoutes.filter((r) => r.resource === "Document")) {
        const answers = [];
        for (const id of [...foreign, ...missing]) {
          const res = await call(application.url + r.path.replace("{docId}", id), r.method, alice);
          answers.push({ id, status: res.status, body: res.body, reason: res.headers.get("x-cedargate-reason") });
        }
        const first = answers[0];
        assert.ok(first);
        assert.equal(first.status, 403, `${r.method} ${r.path}`);
        if (r.method !== "HEAD") {
          assert.deepEqual(JSON.parse(first.body), { error: { code: "forbidden", message: "You do not have permission to do this." } });
        }
        for (const a of answers) {
          assert.deepEqual([a.status, a.body, a.reason], [first.status, first.body, first.reason], `${r.method} ${r.path} ${a.id}`);
        }
      }
      // Spellings Express routes to the same handler but the table does not
      // know are refused, never let through undecided.
      for (const path of ["/DOCUMENTS/roadmap", "/documents/roadmap/", "//documents/roadmap", "/documents/roadmap?x=1"]) {
        const res = await call(application.url + path, "GET", alice);
        assert.equal(res.status, 403, path);
      }
      assert.deepEqual(application.calls, [], "no handler ran");
    } finally {
      await application.close();
    }
  });

  it("answers 401 without a token, with a malformed one, and with a forged tenant", async () => {
    const application = await app(env.sidecar.url);
    try {
      const none = await call(`${application.url}/documents/q3-report`, "GET");
      assert.equal(none.status, 401);
      assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer /);
      assert.equal((JSON.parse(none.body) as { error: { code: string } }).error.code, "missing_token");

      const garbage = await call(`${application.url}/documents/q3-report`, "GET", "not-a-jwt");
      assert.equal(garbage.status, 401);

      // Alice's token with the tenant changed to globex: the signature no longer holds.
      const [h, p, sig] = alice.split(".");
      const claims = JSON.parse(Buffer.from(p ?? "", "base64url").toString()) as Record<string, unknown>;
      claims["custom:tenant_id"] = "globex";
      const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
      for (const path of ["/documents/roadmap", "/search", "/documents/q3-report"]) {
        const res = await call(application.url + path, "GET", forged);
        assert.equal(res.status, 401, path);
        assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, "invalid_token");
      }
      assert.deepEqual(application.calls, []);
    } finally {
      await application.close();
    }
  });

  it("decides the caller's own tenant for tenant routes and relays the policies' message", async () => {
    const application = await app(env.sidecar.url);
    try {
      const search = await call(`${application.url}/search?q=report`, "GET", alice);
      assert.equal(search.status, 200, search.body);
      assert.deepEqual((JSON.parse(search.body) as { resource: unknown }).resource, { type: "Tenant", id: "acme" });

      const created = await call(`${application.url}/documents`, "POST", alice, { "x-file-type": "pdf" });
      assert.equal(created.status, 200, created.body);
      assert.equal((JSON.parse(created.body) as { action: string }).action, "CreateDocument");

      const exe = await call(`${application.url}/documents`, "POST", alice, { "x-file-type": "exe" });
      assert.equal(exe.status, 403);
      const message = (JSON.parse(exe.body) as { error: { message: string } }).error.message;
      assert.notEqual(message, "You do not have permission to do this.");
      assert.equal(exe.headers.get("x-cedargate-reason"), message);

      const noType = await call(`${application.url}/documents`, "POST", alice);
      assert.equal(noType.status, 400);

      const carol = env.token("carol", "acme", ["admin"], 3);
      const other = await call(`${application.url}/tenants/globex/usage`, "GET", carol);
      const none = await call(`${application.url}/tenants/no-such-tenant/usage`, "GET", carol);
      assert.equal(other.status, 403);
      assert.deepEqual([other.status, other.body], [none.status, none.body]);
      const own = await call(`${application.url}/tenants/acme/usage`, "GET", carol);
      assert.equal(own.status, 200);

      const unmapped = await call(`${application.url}/unmapped`, "GET", alice);
      assert.equal(unmapped.status, 403);
      const dots = await call(`${application.url}/documents/a%2Fb`, "GET", alice);
      assert.equal(dots.status, 400, dots.body);
      assert.deepEqual(application.calls, ["GET /search", "POST /documents", "GET /tenants/acme/usage"]);
    } finally {
      await application.close();
    }
  });

  it("answers 503 and never runs the handler when the sidecar is stopped", async () => {
    const sidecar: Server = await env.startSidecar();
    const application = await app(sidecar.url);
    try {
      assert.equal((await call(`${application.url}/documents/q3-report`, "GET", alice)).status, 200);
      await sidecar.stop();
      for (const path of ["/documents/q3-report", "/search", "/documents/roadmap"]) {
        const res = await call(application.url + path, "GET", alice);
        assert.equal(res.status, 503, path);
        assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, "authorization_unavailable");
      }
      assert.deepEqual(application.calls, ["GET /documents/q3-report"]);
    } finally {
      await application.close();
      await sidecar.stop();
    }
  });

  it("answers 503 and never runs the handler when the sidecar's store is broken", async () => {
    const store = env.importDemo("broken.db");
    const sidecar = await env.startSidecar(store, "[audit]\nshutdown_timeout_ms = 200\n");
    const application = await app(sidecar.url);
    try {
      corruptStore(store.slice("sqlite:".length));
      const res = await call(`${application.url}/documents/q3-report`, "GET", alice);
      assert.equal(res.status, 503);
      assert.match(res.headers.get("x-decision-id") ?? "", /^[0-9a-f-]{36}$/);
      assert.deepEqual(application.calls, []);
    } finally {
      await application.close();
      await sidecar.stop();
    }
  });
});
