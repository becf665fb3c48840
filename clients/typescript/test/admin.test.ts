// The management client against the real cedargate-admin: tenants with
// ETags, typed refusals (403 with the refused fields, 404 alike for another
// tenant's document and a missing one, 409, 412), documents and shares,
// audit logs followed over their cursors, and the export read as a stream
// whose manifest matches what arrived.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import {
  CedargateAdmin,
  CedargateClient,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  ndjsonLines,
  type AuditEvent,
  type ExportLine,
  type TenantInput,
} from "../src/index.js";
import { Env, countingFetch } from "./harness.js";

let env: Env;
let carol: string; // acme's administrator
let ops: string; // a platform administrator

before(async () => {
  env = await Env.start();
  carol = env.token("carol", "acme", ["admin"], 3);
  ops = env.token("olga", "platform", ["platform-admin"], 3);
});
after(async () => {
  await env.stop();
});

const admin = () => new CedargateAdmin({ url: env.admin.url });

describe("tenants", () => {
  it("reads a tenant with its ETag and replaces it only with a current one", async () => {
    const { tenant, etag } = await admin().getTenant("acme", { token: carol });
    assert.equal(tenant.name, "Acme Corp");
    assert.ok(etag.length > 0);
    const input: TenantInput = { ...tenant, name: "Acme Corporation" };
    const renamed = await admin().updateTenant("acme", input, etag, { token: carol });
    assert.equal(renamed.tenant.name, "Acme Corporation");
    assert.notEqual(renamed.etag, etag);
    await assert.rejects(admin().updateTenant("acme", input, etag, { token: carol }), (e: unknown) => {
      assert.ok(e instanceof ConflictError);
      assert.equal(e.status, 412);
      return true;
    });
  });

  it("refuses a tenant administrator's change of tier, naming the field", async () => {
    const { tenant, etag } = await admin().getTenant("acme", { token: carol });
    const input: TenantInput = { ...tenant, subscription: { ...tenant.subscription, tier: "enterprise" } };
    await assert.rejects(admin().updateTenant("acme", input, etag, { token: carol }), (e: unknown) => {
      assert.ok(e instanceof ForbiddenError);
      assert.equal(e.code, "fields_forbidden");
      assert.ok(e.fields?.some((f) => f.startsWith("subscription")), `fields: ${JSON.stringify(e.fields)}`);
      return true;
    });
  });

  it("answers another tenant and a missing one with the same 403", async () => {
    const errors = await Promise.all(
      ["globex", "no-such-tenant"].map((id) => admin().getTenant(id, { token: carol }).then(() => null, (e: unknown) => e)),
    );
    for (const e of errors) assert.ok(e instanceof ForbiddenError);
    const [a, b] = errors as ForbiddenError[];
    assert.deepEqual([a?.status, a?.code, a?.message], [b?.status, b?.code, b?.message]);
  });

  it("creates a tenant once (409 the second time) and lists every tenant page by page", async () => {
    const input: TenantInput = {
      tenantId: "hooli",
      name: "Hooli",
      status: "trial",
      subscription: { tier: "basic", startDate: "2026-03-01", features: [] },
      limits: { maxDocuments: 5, maxUsers: 5, maxStorageGB: 1, maxQueriesPerMonth: 100 },
      settings: { dataRetentionDays: 90, allowedFileTypes: ["pdf"] },
    };
    const created = await admin().createTenant(input, { token: ops });
    assert.equal(created.tenant.tenantId, "hooli");
    assert.ok(created.etag.length > 0);
    await assert.rejects(admin().createTenant(input, { token: ops }), (e: unknown) => e instanceof ConflictError && e.status === 409);

    const counting = countingFetch();
    const listing = new CedargateAdmin({ url: env.admin.url, fetch: counting.fetch });
    const ids: string[] = [];
    for await (const t of listing.tenants({ limit: 2 }, { token: ops })) ids.push(t.tenantId);
    assert.deepEqual([...ids].sort(), ["acme", "globex", "hooli", "initech", "platform"]);
    assert.equal(counting.calls.length, 3);
  });

  it("explains a decision, with the determining policy's text", async () => {
    const r = await admin().checkAccess(
      "acme",
      { principal: { userId: "zoe", roles: ["viewer"], clearance: 0 }, action: "Read", documentId: "handbook" },
      { token: carol },
    );
    assert.equal(r.decision, "Allow");
    assert.ok(r.determiningPolicies.some((p) => p.text?.includes("permit")));
    await assert.rejects(
      admin().checkAccess("globex", { principal: { userId: "zoe" }, action: "Search" }, { token: carol }),
      ForbiddenError,
    );
  });

  it("reports usage against limits", async () => {
    const usage = await admin().usage("acme", { token: carol });
    assert.equal(usage.tenantId, "acme");
    assert.equal(usage.limits.maxDocuments, 1000);
    assert.equal(usage.remaining.documents, usage.limits.maxDocuments - usage.usage.documents);
  });
});

describe("documents", () => {
  it("registers, shares, unshares, deletes and restores a document", async () => {
    const a = admin();
    const doc = await a.putDocument("acme", "plan-b", { ownerId: "carol", visibility: "private", fileType: "pdf", sizeBytes: 10 }, { token: carol });
    assert.equal(doc.documentId, "plan-b");
    const shared = await a.share("acme", "plan-b", { userId: "bob", permission: "read" }, { token: carol });
    assert.deepEqual(shared.sharedWith, [{ userId: "bob", permission: "read" }]);
    const unshared = await a.unshare("acme", "plan-b", { userId: "bob" }, { token: carol });
    assert.deepEqual(unshared.sharedWith, []);
    const deleted = await a.deleteDocument("acme", "plan-b", { token: carol });
    assert.ok(deleted.deletedAt);
    const restored = await a.restoreDocument("acme", "plan-b", { token: carol });
    assert.equal(restored.deletedAt ?? null, null);
    assert.equal((await a.getDocument("acme", "plan-b", { token: carol })).ownerId, "carol");
  });

  it("reads another tenant's document like a missing one (404)", async () => {
    const errors = await Promise.all(
      ["roadmap", "no-such-document"].map((d) => admin().getDocument("acme", d, { token: carol }).then(() => null, (e: unknown) => e)),
    );
    for (const e of errors) assert.ok(e instanceof NotFoundError);
    const [a, b] = errors as NotFoundError[];
    assert.deepEqual([a?.code, a?.message], [b?.code, b?.message]);
  });
});

describe("audit logs", () => {
  it("follows the cursors over every record, newest first, without repeats", async () => {
    // Decisions on the sidecar leave records the admin service reads back.
    const client = new CedargateClient({ url: env.sidecar.url });
    const alice = env.token("alice", "acme", ["editor"], 1);
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++) {
      const d = await client.authorize({ action: "Read", resource: { type: "Document", id: "handbook" } }, { token: alice });
      ids.add(d.decision_id);
    }
    const all = async (limit: number, fetchFn?: typeof fetch): Promise<AuditEvent[]> => {
      const out: AuditEvent[] = [];
      const a = new CedargateAdmin({ url: env.admin.url, ...(fetchFn ? { fetch: fetchFn } : {}) });
      for await (const e of a.auditLogs("acme", { limit, user: "alice" }, { token: carol })) out.push(e);
      return out;
    };
    // The records reach the store once the sidecar's spool drains.
    let events: AuditEvent[] = [];
    for (let i = 0; i < 100; i++) {
      events = await all(1000);
      if ([...ids].every((id) => events.some((e) => e.eventId === id))) break;
      await sleep(100);
    }
    assert.ok([...ids].every((id) => events.some((e) => e.eventId === id)), "every decision has its record");

    const counting = countingFetch();
    const paged = await all(3, counting.fetch);
    // Pages of three: as many calls as pages (one more if the last page is full).
    assert.ok(paged.length >= 7);
    const pages = Math.ceil(paged.length / 3);
    assert.ok(counting.calls.length === pages || counting.calls.length === pages + 1, counting.calls.join());
    assert.deepEqual(paged.map((e) => e.eventId), events.map((e) => e.eventId));
    assert.equal(new Set(paged.map((e) => e.eventId)).size, paged.length);
    const times = paged.map((e) => e.timestamp);
    assert.ok(times.every((t) => typeof t === "string" && !Number.isNaN(Date.parse(t))));
    assert.deepEqual(times, [...times].sort().reverse());
  });
});

describe("export", () => {
  it("streams NDJSON whose manifest counts and hashes what arrived", async () => {
    const stream = await admin().exportTenant("acme", { token: carol });
    const lines: string[] = [];
    for await (const line of ndjsonLines(stream)) lines.push(line);
    const manifestLine = lines.at(-1) ?? "";
    const manifest = JSON.parse(manifestLine) as Extract<ExportLine, { type: "manifest" }>;
    assert.equal(manifest.type, "manifest");
    const body = lines.slice(0, -1).map((l) => `${l}\n`).join("");
    assert.equal(createHash("sha256").update(body).digest("hex"), manifest.sha256);
    const parsed = lines.slice(0, -1).map((l) => JSON.parse(l) as ExportLine);
    assert.equal(parsed[0]?.type, "tenant");
    assert.equal(parsed.filter((l) => l.type === "document").length, manifest.documents);
    assert.equal(parsed.filter((l) => l.type === "audit").length, manifest.audit);
    assert.ok(manifest.documents >= 4);

    const typed: ExportLine[] = [];
    for await (const l of admin().exportLines("acme", { token: carol })) typed.push(l);
    assert.equal(typed.at(-1)?.type, "manifest");
  });

  it("refuses an export of another tenant", async () => {
    await assert.rejects(admin().exportTenant("globex", { token: carol }), ForbiddenError);
  });
});
