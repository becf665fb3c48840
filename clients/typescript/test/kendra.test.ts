// The Kendra search helper with the real AWS SDK v3 Kendra client: a
// middleware at the end of the SDK's stack keeps the signed request and
// stops before the network, and the serialized AttributeFilter is compared
// with the plan — plans written out here for each kind, and the sidecar's
// own plan for real callers.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { KendraClient, QueryCommand, type QueryCommandInput, type QueryCommandOutput } from "@aws-sdk/client-kendra";

import {
  CedargateClient,
  KendraSearch,
  UnauthorizedError,
  type KendraAttributeFilter,
  type Plan,
  type SdkAttributeFilter,
} from "../src/index.js";
import { Env } from "./harness.js";

class StoppedBeforeNetwork extends Error {}

/** A Kendra client that records each serialized Query body and sends nothing. */
function capturingKendra(): { kendra: KendraClient; bodies: Record<string, unknown>[] } {
  const bodies: Record<string, unknown>[] = [];
  const kendra = new KendraClient({
    region: "eu-west-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "not-a-secret" },
    maxAttempts: 1,
  });
  kendra.middlewareStack.add(
    () => (args) => {
      const request = args.request as { headers: Record<string, string>; body: string | Uint8Array };
      assert.equal(request.headers["x-amz-target"], "AWSKendraFrontendService.Query");
      assert.match(request.headers.authorization ?? "", /^AWS4-HMAC-SHA256 /);
      const text = typeof request.body === "string" ? request.body : new TextDecoder().decode(request.body);
      bodies.push(JSON.parse(text) as Record<string, unknown>);
      return Promise.reject(new StoppedBeforeNetwork("stopped before the network"));
    },
    { step: "deserialize", priority: "low", name: "stopBeforeNetwork" },
  );
  return { kendra, bodies };
}

// Plans written out here need no sidecar: nothing is asked of this client.
const unused = new CedargateClient({ url: "http://127.0.0.1:9" });

function search(cedargate: CedargateClient, kendra: KendraClient) {
  return new KendraSearch({
    cedargate,
    send: (input: QueryCommandInput): Promise<QueryCommandOutput> => kendra.send(new QueryCommand(input)),
  });
}

const common = { plan_id: "00000000-0000-4000-8000-000000000000", determining_policies: [], policy_revision: "sha256:x" };
const kendraFilter: KendraAttributeFilter = {
  OrAllFilters: [
    { EqualsTo: { Key: "visibility", Value: { StringValue: "public" } } },
    { EqualsTo: { Key: "_owner", Value: { StringValue: "alice" } } },
    { ContainsAny: { Key: "readers", Value: { StringListValue: ["user:alice", "role:editor"] } } },
    {
      AndAllFilters: [
        { LessThanOrEquals: { Key: "classification", Value: { LongValue: 1 } } },
        { NotFilter: { GreaterThan: { Key: "deletedAt", Value: { DateValue: 1767225600 } } } },
      ],
    },
  ],
};
const conditional: Plan = {
  ...common,
  kind: "conditional",
  condition: { op: "eq", attr: "visibility", value: "public" },
  filters: { kendra: kendraFilter, opensearch: { bool: {} }, sql: { where: "visibility = ?", params: ["public"] } },
};
const appFilter: SdkAttributeFilter = { EqualsTo: { Key: "_language_code", Value: { StringValue: "en" } } };
const appFilterJson = { EqualsTo: { Key: "_language_code", Value: { StringValue: "en" } } };

describe("kendra helper, through the SDK's serializer", () => {
  it("sends the plan's filter exactly as the plan states it", async () => {
    const { kendra, bodies } = capturingKendra();
    await assert.rejects(search(unused, kendra).queryWith(conditional, { IndexId: "idx", QueryText: "q3" }), StoppedBeforeNetwork);
    assert.equal(bodies.length, 1);
    assert.deepEqual(bodies[0]?.AttributeFilter, kendraFilter);
    assert.equal(bodies[0].QueryText, "q3");
  });

  it("ANDs the application's filter with the plan's, never instead of it", async () => {
    const { kendra, bodies } = capturingKendra();
    await assert.rejects(
      search(unused, kendra).queryWith(conditional, { IndexId: "idx", QueryText: "q3", AttributeFilter: appFilter }),
      StoppedBeforeNetwork,
    );
    assert.deepEqual(bodies[0]?.AttributeFilter, { AndAllFilters: [kendraFilter, appFilterJson] });
  });

  it("runs no query when the plan allows nothing", async () => {
    const { kendra, bodies } = capturingKendra();
    const denied: Plan = { ...common, kind: "always_denied", condition: null, filters: null };
    const result = await search(unused, kendra).queryWith(denied, { IndexId: "idx", QueryText: "q3", AttributeFilter: appFilter });
    assert.deepEqual(result.output.ResultItems, []);
    assert.equal(result.output.TotalNumberOfResults, 0);
    assert.equal(bodies.length, 0);
  });

  it("adds no authorization filter when the plan allows everything", async () => {
    const allowed: Plan = { ...common, kind: "always_allowed", condition: null, filters: null };
    const { kendra, bodies } = capturingKendra();
    await assert.rejects(search(unused, kendra).queryWith(allowed, { IndexId: "idx", QueryText: "q3" }), StoppedBeforeNetwork);
    assert.equal(bodies[0]?.AttributeFilter, undefined);
    await assert.rejects(
      search(unused, kendra).queryWith(allowed, { IndexId: "idx", QueryText: "q3", AttributeFilter: appFilter }),
      StoppedBeforeNetwork,
    );
    assert.deepEqual(bodies[1]?.AttributeFilter, appFilterJson);
  });

  it("refuses a plan filter it does not understand instead of dropping it", async () => {
    const { kendra, bodies } = capturingKendra();
    const odd = { ...conditional, filters: { ...conditional.filters, kendra: { MatchesRegex: { Key: "x" } } as KendraAttributeFilter } };
    await assert.rejects(search(unused, kendra).queryWith(odd, { IndexId: "idx", QueryText: "q3" }), /unknown Kendra filter/);
    assert.equal(bodies.length, 0);
  });
});

describe("kendra helper, with the sidecar's plan", () => {
  let env: Env;
  before(async () => {
    env = await Env.start();
  });
  after(async () => {
    await env.stop();
  });

  it("filters a reader's query by the plan the sidecar made for that reader", async () => {
    const client = new CedargateClient({ url: env.sidecar.url });
    const alice = env.token("alice", "acme", ["editor"], 1);
    const plan = await client.plan({ action: "Read", resourceType: "Document" }, { token: alice });
    // Alice reads public documents, her own, and those shared with her: a condition.
    assert.equal(plan.kind, "conditional");
    assert.match(plan.plan_id, /^[0-9a-f-]{36}$/);
    const { kendra, bodies } = capturingKendra();
    await assert.rejects(search(client, kendra).query({ IndexId: "idx", QueryText: "q3" }, { token: alice }), StoppedBeforeNetwork);
    const again = await client.plan({ action: "Read", resourceType: "Document" }, { token: alice });
    assert.equal(again.kind, "conditional");
    assert.deepEqual(bodies[0]?.AttributeFilter, plan.filters.kendra);
    assert.deepEqual(plan.filters.kendra, again.filters.kendra);

    // Another tenant's reader gets another filter.
    const eve = env.token("eve", "globex", ["editor"], 3);
    const evePlan = await client.plan({ action: "Read", resourceType: "Document" }, { token: eve });
    assert.notDeepEqual(evePlan.filters?.kendra, plan.filters.kendra);
  });

  it("sends no query for a caller the sidecar says may read nothing", async () => {
    const client = new CedargateClient({ url: env.sidecar.url });
    const stranger = env.token("mallory", "no-such-tenant", ["admin"], 3);
    const { kendra, bodies } = capturingKendra();
    const result = await search(client, kendra).query({ IndexId: "idx", QueryText: "q3" }, { token: stranger });
    assert.equal(result.plan.kind, "always_denied");
    assert.deepEqual(result.output.ResultItems, []);
    assert.equal(bodies.length, 0);
  });

  it("refuses a plan without a token", async () => {
    const client = new CedargateClient({ url: env.sidecar.url });
    await assert.rejects(client.plan({ action: "Read", resourceType: "Document" }), UnauthorizedError);
  });
});
