// The decision client against the real sidecar: decisions and their ids,
// typed errors, batches above the sidecar's limit, and the retry rules —
// refused connections, timeouts on a frozen sidecar, 503 store_unavailable
// from a sidecar whose store is broken — with jittered waits.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  BadRequestError,
  CedargateAdmin,
  CedargateClient,
  TimeoutError,
  UnauthorizedError,
  UnavailableError,
  isDecision,
  type AuthorizeRequest,
  type RetryInfo,
  type TenantInput,
} from "../src/index.js";
import { Env, corruptStore, countingFetch } from "./harness.js";

let env: Env;
let alice: string;

before(async () => {
  env = await Env.start();
  alice = env.token("alice", "acme", ["editor"], 1);
});
after(async () => {
  await env.stop();
});

const read = (id: string): AuthorizeRequest => ({ action: "Read", resource: { type: "Document", id } });

describe("authorize", () => {
  it("allows a read in the caller's tenant and names the decision", async () => {
    const client = new CedargateClient({ url: env.sidecar.url });
    const d = await client.authorize(read("q3-report"), { token: alice });
    assert.equal(d.decision, "Allow");
    assert.match(d.decision_id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.ok(d.determining_policies.length > 0);
    assert.match(d.policy_revision, /^sha256:/);
    assert.equal(d.reason, undefined);
  });

  it("answers another tenant's document exactly like a missing one", async () => {
    const client = new CedargateClient({ url: env.sidecar.url });
    const strip = (d: Record<string, unknown>) => {
      const rest = { ...d };
      delete rest.decision_id;
      delete rest.data_age_ms;
      return rest;
    };
    const foreign = await client.authorize(read("roadmap"), { token: alice });
    const missing = await client.authorize(read("no-such-document"), { token: alice });
    assert.equal(foreign.decision, "Deny");
    assert.equal(foreign.message, "You do not have permission to do this.");
    assert.deepEqual(strip({ ...foreign }), strip({ ...missing }));
    assert.notEqual(foreign.decision_id, missing.decision_id);
  });

  it("throws UnauthorizedError with the challenge when there is no token", async () => {
    const client = new CedargateClient({ url: env.sidecar.url });
    await assert.rejects(client.authorize(read("q3-report")), (e: unknown) => {
      assert.ok(e instanceof UnauthorizedError);
      assert.equal(e.status, 401);
      assert.equal(e.code, "missing_token");
      assert.match(e.wwwAuthenticate ?? "", /^Bearer /);
      return true;
    });
  });

  it("throws BadRequestError for an unknown action and does not send it twice", async () => {
    const counting = countingFetch();
    const client = new CedargateClient({ url: env.sidecar.url, fetch: counting.fetch });
    const bad = { action: "Fly", resource: { type: "Document", id: "q3-report" } } as unknown as AuthorizeRequest;
    await assert.rejects(client.authorize(bad, { token: alice }), (e: unknown) => {
      assert.ok(e instanceof BadRequestError);
      assert.equal(e.code, "unknown_action");
      return true;
    });
    assert.equal(counting.calls.length, 1);
  });
});

describe("authorizeBatch", () => {
  it("sends 250 requests in chunks of 100 and keeps their order", async () => {
    const counting = countingFetch();
    const client = new CedargateClient({ url: env.sidecar.url, fetch: counting.fetch });
    const ids = ["q3-report", "roadmap", "handbook", "no-such-document", "alice-notes"];
    const allowed = new Set(["q3-report", "handbook", "alice-notes"]);
    const requests = Array.from({ length: 250 }, (_, i) => read(ids[i % ids.length] ?? ""));
    requests[137] = { action: "Read", resource: { type: "Document", id: "bad id" } };
    const results = await client.authorizeBatch(requests, { token: alice });
    assert.deepEqual(counting.calls, Array(3).fill("POST /v1/authorize/batch"));
    assert.equal(results.length, 250);
    results.forEach((r, i) => {
      if (i === 137) {
        assert.ok(!isDecision(r), "the malformed request has an error in its place");
        assert.equal(r.error.code, "invalid_id");
        return;
      }
      assert.ok(isDecision(r));
      const id = ids[i % ids.length] ?? "";
      assert.equal(r.decision, allowed.has(id) ? "Allow" : "Deny", `request ${i} (${id})`);
    });
    const decided = results.filter(isDecision);
    assert.equal(new Set(decided.map((d) => d.decision_id)).size, decided.length);
  });

  it("sends 100 requests in one call", async () => {
    const counting = countingFetch();
    const client = new CedargateClient({ url: env.sidecar.url, fetch: counting.fetch });
    const results = await client.authorizeBatch(Array.from({ length: 100 }, () => read("handbook")), { token: alice });
    assert.equal(counting.calls.length, 1);
    assert.ok(results.every((r) => isDecision(r) && r.decision === "Allow"));
  });
});

describe("retries", () => {
  const base = 40;
  const check = (retries: RetryInfo[]) => {
    for (const r of retries) {
      assert.ok(r.delayMs >= 0 && r.delayMs <= base * 2 ** (r.attempt - 1), `wait ${r.delayMs} of attempt ${r.attempt}`);
    }
  };

  it("tries a decision again when the connection is refused, with jittered waits, then fails closed", async () => {
    const stopped = await env.startSidecar();
    await stopped.stop();
    const waits: number[][] = [];
    for (let run = 0; run < 3; run++) {
      const retries: RetryInfo[] = [];
      const client = new CedargateClient({
        url: stopped.url,
        retries: 3,
        retryBaseMs: base,
        onRetry: (r) => retries.push(r),
      });
      await assert.rejects(client.authorize(read("q3-report"), { token: alice }), (e: unknown) => {
        assert.ok(e instanceof UnavailableError);
        assert.equal(e.code, "unreachable");
        assert.equal(e.attempts, 4);
        return true;
      });
      assert.deepEqual(
        retries.map((r) => [r.attempt, r.reason]),
        [1, 2, 3].map((a) => [a, "ECONNREFUSED"]),
      );
      check(retries);
      waits.push(retries.map((r) => r.delayMs));
    }
    // Jitter: the same attempt does not wait the same time every run.
    assert.ok(new Set(waits.map((w) => w[2])).size > 1, `waits of the third retry: ${JSON.stringify(waits)}`);
  });

  it("tries a create again on a refused connection (nothing was sent)", async () => {
    const stopped = await env.startAdmin();
    await stopped.stop();
    const retries: RetryInfo[] = [];
    const admin = new CedargateAdmin({ url: stopped.url, retries: 2, retryBaseMs: base, onRetry: (r) => retries.push(r) });
    const ops = env.token("olga", "platform", ["platform-admin"], 3);
    await assert.rejects(admin.createTenant(tenantInput("refused-co"), { token: ops }), UnavailableError);
    assert.equal(retries.length, 2);
  });

  it("times out on a frozen sidecar and tries decisions again, but not a create", async () => {
    const sidecar = await env.startSidecar();
    const admin = await env.startAdmin();
    sidecar.pause();
    admin.pause();
    try {
      const retries: RetryInfo[] = [];
      const client = new CedargateClient({
        url: sidecar.url,
        timeoutMs: 300,
        retries: 1,
        retryBaseMs: base,
        onRetry: (r) => retries.push(r),
      });
      await assert.rejects(client.authorize(read("q3-report"), { token: alice }), (e: unknown) => {
        assert.ok(e instanceof TimeoutError);
        assert.equal(e.attempts, 2);
        return true;
      });
      assert.deepEqual(retries.map((r) => r.reason), ["timeout"]);

      const ops = env.token("olga", "platform", ["platform-admin"], 3);
      const adminRetries: RetryInfo[] = [];
      const mgmt = new CedargateAdmin({
        url: admin.url,
        timeoutMs: 300,
        retries: 2,
        retryBaseMs: base,
        onRetry: (r) => adminRetries.push(r),
      });
      // A read is tried again; a create that may have arrived is not.
      await assert.rejects(mgmt.getTenant("acme", { token: ops }), (e: unknown) => e instanceof TimeoutError && e.attempts === 3);
      adminRetries.length = 0;
      await assert.rejects(mgmt.createTenant(tenantInput("frozen-co"), { token: ops }), (e: unknown) => {
        assert.ok(e instanceof TimeoutError);
        assert.equal(e.attempts, 1);
        return true;
      });
      assert.equal(adminRetries.length, 0);
    } finally {
      sidecar.resume();
      admin.resume();
      await Promise.all([sidecar.stop(), admin.stop()]);
    }
  });

  it("tries a 503 store_unavailable again and then gives back the Deny", async () => {
    const store = env.importDemo("broken.db");
    // Its audit records cannot reach the broken store: no long drain on exit.
    const sidecar = await env.startSidecar(store, "[audit]\nshutdown_timeout_ms = 200\n");
    try {
      corruptStore(store.slice("sqlite:".length));
      const retries: RetryInfo[] = [];
      const counting = countingFetch();
      const client = new CedargateClient({
        url: sidecar.url,
        retries: 2,
        retryBaseMs: base,
        fetch: counting.fetch,
        onRetry: (r) => retries.push(r),
      });
      const d = await client.authorize(read("q3-report"), { token: alice });
      assert.equal(d.decision, "Deny");
      assert.equal(d.reason, "store_unavailable");
      assert.equal(counting.calls.length, 3);
      assert.deepEqual(retries.map((r) => r.reason), ["status 503 store_unavailable", "status 503 store_unavailable"]);
      check(retries);
    } finally {
      await sidecar.stop();
    }
  });
});

function tenantInput(id: string): TenantInput {
  return {
    tenantId: id,
    name: id,
    status: "active",
    subscription: { tier: "basic", startDate: "2026-01-01", features: [] },
    limits: { maxDocuments: 10, maxUsers: 5, maxStorageGB: 1, maxQueriesPerMonth: 100 },
    settings: { dataRetentionDays: 90, allowedFileTypes: ["pdf"] },
  };
}
