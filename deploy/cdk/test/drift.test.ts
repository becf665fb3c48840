// scripts/check_deploy.py --cdk must notice drift: the example app's
// templates pass it, and each template changed in one way a construct could
// drift from deploy/aws (a TTL, a key, an action, a table, a flag) fails it,
// naming what differs. CDK_OUT names the synthesized templates.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";

const ROOT = resolve(__dirname, "../../../..");
const CDK_OUT = resolve(process.env.CDK_OUT ?? join(ROOT, "deploy/cdk/cdk.out"));
const PYTHON = join(ROOT, ".tools/venv/bin/python");

type Json = Record<string, unknown>;
interface Resource {
  Type: string;
  Properties: Json;
}

function check(dir: string): { status: number | null; output: string } {
  const r = spawnSync(PYTHON, ["scripts/check_deploy.py", "--cdk", dir], { cwd: ROOT, encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** A copy of the templates with `change` applied to the one named `file`. */
function mutated(file: string, change: (resources: Record<string, Resource>) => void): string {
  const dir = mkdtempSync(join(tmpdir(), "cdk-drift-"));
  cpSync(CDK_OUT, dir, { recursive: true });
  const path = join(dir, file);
  const tpl = JSON.parse(readFileSync(path, "utf8")) as { Resources: Record<string, Resource> };
  change(tpl.Resources);
  writeFileSync(path, JSON.stringify(tpl));
  return dir;
}

const tableNamed = (resources: Record<string, Resource>, name: string): Json => {
  const found = Object.values(resources).find(
    (r) => r.Type === "AWS::DynamoDB::Table" && JSON.stringify(r.Properties.TableName).includes(`"${name}"`),
  );
  assert.ok(found, `table ${name}`);
  return found.Properties;
};
const policy = (resources: Record<string, Resource>, description: string): { Action: string | string[]; Sid?: string }[] => {
  const found = Object.values(resources).find((r) => r.Type === "AWS::IAM::ManagedPolicy" && r.Properties.Description === description);
  assert.ok(found, description);
  return (found.Properties.PolicyDocument as { Statement: { Action: string | string[]; Sid?: string }[] }).Statement;
};
const sidecarCommand = (resources: Record<string, Resource>): unknown[] => {
  const td = Object.values(resources).find((r) => r.Type === "AWS::ECS::TaskDefinition");
  assert.ok(td);
  const c = (td.Properties.ContainerDefinitions as { Name: string; Command: unknown[] }[]).find((x) => x.Name === "cedargate");
  assert.ok(c);
  return c.Command;
};

const drifts: [string, string, (r: Record<string, Resource>) => void, RegExp][] = [
  ["no TTL on audit", "CedargateTables.template.json", (r) => delete tableNamed(r, "audit").TimeToLiveSpecification, /table audit ttl/],
  [
    "no point-in-time recovery on tenants",
    "CedargateTables.template.json",
    (r) => delete tableNamed(r, "tenants").PointInTimeRecoverySpecification,
    /table tenants pitr/,
  ],
  [
    "another sort key on documents",
    "CedargateTables.template.json",
    (r) => {
      const t = tableNamed(r, "documents");
      t.KeySchema = [
        { AttributeName: "tenantId", KeyType: "HASH" },
        { AttributeName: "docId", KeyType: "RANGE" },
      ];
    },
    /table documents keys/,
  ],
  [
    "an AWS-owned key on migrations",
    "CedargateTables.template.json",
    (r) => (tableNamed(r, "migrations").SSESpecification = { SSEEnabled: true }),
    /table migrations sse/,
  ],
  [
    "provisioned billing on changes",
    "CedargateTables.template.json",
    (r) => (tableNamed(r, "changes").BillingMode = "PROVISIONED"),
    /table changes billing/,
  ],
  [
    "a table the store does not create",
    "CedargateTables.template.json",
    (r) => (tableNamed(r, "migrations").TableName = { "Fn::Join": ["", [{ Ref: "TablePrefix" }, "migration"]] }),
    /table names/,
  ],
  [
    "the sidecar no longer follows the change log",
    "CedargateTables.template.json",
    (r) => {
      const st = policy(r, "cedargate sidecar").find((s) => s.Sid === "FollowChanges");
      assert.ok(st);
      st.Action = "dynamodb:Scan";
    },
    /policy 'cedargate sidecar'/,
  ],
  [
    "the admin service may delete audit items",
    "CedargateTables.template.json",
    (r) => {
      const st = policy(r, "cedargate-admin").find((s) => s.Sid === "Audit");
      assert.ok(st);
      st.Action = [...(st.Action as string[]), "dynamodb:DeleteItem"];
    },
    /policy 'cedargate-admin'.*DeleteItem/,
  ],
  [
    "no point-in-time recovery on policies",
    "CedargateTables.template.json",
    (r) => delete tableNamed(r, "policies").PointInTimeRecoverySpecification,
    /table policies pitr/,
  ],
  [
    "the admin service may scan tenants' policies",
    "CedargateTables.template.json",
    (r) => {
      const st = policy(r, "cedargate-admin").find((s) => s.Sid === "TenantPolicies");
      assert.ok(st);
      st.Action = [...(st.Action as string[]), "dynamodb:Scan"];
    },
    /policy 'cedargate-admin'.*TenantPolicies.*Scan/,
  ],
  [
    "the retention task may delete archives",
    "CedargateRetention.template.json",
    (r) => {
      const role = Object.values(r).find(
        (x) => x.Type === "AWS::IAM::Role" && JSON.stringify(x.Properties.Policies ?? []).includes('"retention"'),
      );
      assert.ok(role);
      const doc = (role.Properties.Policies as { PolicyDocument: { Statement: Json[] } }[])[0]?.PolicyDocument;
      doc?.Statement.push({ Effect: "Allow", Action: "s3:DeleteObject", Resource: "*" });
    },
    /retention role .*s3:DeleteObject/,
  ],
  [
    "a tenant key without the encryption context condition",
    "CedargateTenantKey-acme.template.json",
    (r) => {
      const key = Object.values(r).find((x) => x.Type === "AWS::KMS::Key");
      assert.ok(key);
      for (const st of (key.Properties.KeyPolicy as { Statement: Json[] }).Statement) delete st.Condition;
    },
    /tenant key/,
  ],
  [
    "a sidecar flag `cedargate serve` does not have",
    "Docsearch.template.json",
    (r) => {
      const cmd = sidecarCommand(r);
      cmd[cmd.indexOf("--listen")] = "--listen-on";
    },
    /no flag --listen-on/,
  ],
];

describe("check_deploy.py --cdk", () => {
  it("passes the example app's templates", () => {
    assert.ok(readdirSync(CDK_OUT).some((f) => f.endsWith(".template.json")), `templates in ${CDK_OUT}`);
    const r = check(CDK_OUT);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /cdk: 4 templates; tables, keys, IAM rights and the sidecar agree/);
  });

  for (const [what, file, change, message] of drifts) {
    it(`fails on drift: ${what}`, () => {
      const dir = mutated(file, change);
      try {
        const r = check(dir);
        assert.notEqual(r.status, 0, r.output);
        assert.match(r.output, message);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
