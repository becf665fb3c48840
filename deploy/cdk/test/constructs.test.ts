// The constructs on their own, with aws-cdk-lib's assertions: what they
// refuse, and what they add to a stack beyond the example app.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { App, Stack } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import * as ecs from "aws-cdk-lib/aws-ecs";

import { CedargateRetention, CedargateSidecar, CedargateTables, TenantKey } from "../lib";

const stack = () => new Stack(new App(), "Test", { env: { account: "123456789012", region: "eu-west-1" } });

describe("constructs", () => {
  it("refuse a table prefix DynamoDB would refuse and a tenant id that is not one", () => {
    assert.throws(() => new CedargateTables(stack(), "T", { tablePrefix: "bad prefix/" }), /table prefix/);
    assert.throws(() => new TenantKey(stack(), "K", { tenantId: "../acme", adminRoleArn: "arn:aws:iam::1:role/a" }), /not a tenant id/);
    assert.throws(() => new TenantKey(stack(), "K", { tenantId: "", adminRoleArn: "arn:aws:iam::1:role/a" }), /not a tenant id/);
  });

  it("name the tables with the prefix and point the sidecar's store at them", () => {
    const s = stack();
    const tables = new CedargateTables(s, "T", { tablePrefix: "prod-" });
    const td = new ecs.FargateTaskDefinition(s, "Task");
    td.addContainer("app", { image: ecs.ContainerImage.fromRegistry("app") });
    new CedargateSidecar(s, "Side", {
      taskDefinition: td,
      image: ecs.ContainerImage.fromRegistry("cedargate"),
      tables,
      jwksUrl: "https://issuer.example/jwks.json",
      issuer: "https://issuer.example",
      audiences: ["a", "b"],
    });
    const t = Template.fromStack(s);
    t.resourceCountIs("AWS::DynamoDB::Table", 7);
    for (const name of ["tenants", "documents", "changes", "audit", "migrations", "usage", "policies"]) {
      t.hasResourceProperties("AWS::DynamoDB::Table", { TableName: `prod-${name}` });
    }
    t.hasResourceProperties("AWS::ECS::TaskDefinition", {
      ContainerDefinitions: Match.arrayWith([
        Match.objectLike({
          Name: "cedargate",
          Command: Match.arrayWith(["--store", "dynamodb://prod-?region=eu-west-1", "--audience", "a", "--audience", "b"]),
        }),
      ]),
    });
    // Without a policies image there is no init container and no --policies flag.
    const defs = Object.values(t.findResources("AWS::ECS::TaskDefinition"))[0] as {
      Properties: { ContainerDefinitions: { Name: string; Command?: string[] }[] };
    };
    assert.deepEqual(defs.Properties.ContainerDefinitions.map((c) => c.Name).sort(), ["app", "cedargate"]);
    assert.ok(!defs.Properties.ContainerDefinitions.some((c) => c.Command?.includes("--policies")));
    // The task role gets the sidecar's policy, nothing broader.
    t.hasResourceProperties("AWS::IAM::Role", {
      ManagedPolicyArns: Match.arrayWith([Match.objectLike({ Ref: Match.stringLikeRegexp("TSidecarPolicy") })]),
    });
  });

  it("give the retention task the tables' key when it is given the tables", () => {
    const s = stack();
    const tables = new CedargateTables(s, "T");
    new CedargateRetention(s, "R", {
      clusterArn: "arn:aws:ecs:eu-west-1:123456789012:cluster/c",
      subnetIds: ["subnet-0123456789abcdef0"],
      securityGroupId: "sg-0123456789abcdef0",
      image: ecs.ContainerImage.fromRegistry("cedargate"),
      fileSystemId: "fs-0123456789abcdef0",
      tables,
    });
    const t = Template.fromStack(s);
    t.hasResourceProperties("AWS::IAM::Policy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: ["kms:Decrypt", "kms:GenerateDataKey"], Resource: { "Fn::GetAtt": [Match.stringLikeRegexp("TTableKey"), "Arn"] } }),
        ]),
      },
    });
    t.resourceCountIs("AWS::Scheduler::Schedule", 1);
  });
});
