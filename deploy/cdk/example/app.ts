// An example application of the constructs, synthesized offline (no AWS
// account, no network): `node build/example/app.js [OUTDIR]` writes one
// CloudFormation template per stack to OUTDIR (default cdk.out). The tests
// lint them with cfn-lint and compare the tables stack with
// deploy/aws/tables.yaml (scripts/check_deploy.py).

import { App, CfnOutput, CfnParameter, DefaultStackSynthesizer, Stack } from "aws-cdk-lib";
import * as ecs from "aws-cdk-lib/aws-ecs";

import { CedargateRetention, CedargateSidecar, CedargateTables, TenantKey } from "../lib";

const outdir = process.argv[2] ?? "cdk.out";
const app = new App({ outdir, analyticsReporting: false });
const synthesizer = () => new DefaultStackSynthesizer({ generateBootstrapVersionRule: false });

// The tables, with the prefix as a parameter, as deploy/aws/tables.yaml has it.
const tablesStack = new Stack(app, "CedargateTables", { synthesizer: synthesizer() });
const prefix = new CfnParameter(tablesStack, "TablePrefix", {
  type: "String",
  default: "cedargate-",
  allowedPattern: "[a-zA-Z0-9_.-]*",
  description: "The store's table prefix (dynamodb://PREFIX).",
});
const tables = new CedargateTables(tablesStack, "Tables", { tablePrefix: prefix.valueAsString });
new CfnOutput(tablesStack, "SidecarPolicyArn", { value: tables.sidecarPolicy.managedPolicyArn });
new CfnOutput(tablesStack, "AdminPolicyArn", { value: tables.adminPolicy.managedPolicyArn });
new CfnOutput(tablesStack, "TableKeyArn", { value: tables.key.keyArn });

// The application's task with the sidecar, as deploy/ecs/task-definition.json.
const appStack = new Stack(app, "Docsearch", { synthesizer: synthesizer() });
const task = new ecs.FargateTaskDefinition(appStack, "Task", { family: "docsearch", cpu: 1024, memoryLimitMiB: 2048 });
const application = task.addContainer("app", {
  containerName: "app",
  image: ecs.ContainerImage.fromRegistry("registry.example.com/docsearch:1.0.0"),
  essential: true,
  readonlyRootFilesystem: true,
  portMappings: [{ containerPort: 8080 }],
  logging: ecs.LogDrivers.awsLogs({ streamPrefix: "app" }),
});
const sidecar = new CedargateSidecar(appStack, "Cedargate", {
  taskDefinition: task,
  image: ecs.ContainerImage.fromRegistry("registry.example.com/cedargate:0.1.0"),
  policiesImage: ecs.ContainerImage.fromRegistry("registry.example.com/docsearch-policies:main"),
  tables,
  jwksUrl: "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE/.well-known/jwks.json",
  issuer: "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
  audiences: ["1example23456789"],
});
sidecar.protect(application);

// The retention schedule, with deploy/aws/retention.yaml's parameters.
const retentionStack = new Stack(app, "CedargateRetention", { synthesizer: synthesizer() });
const param = (id: string, type: string, description: string) =>
  new CfnParameter(retentionStack, id, { type, description });
new CedargateRetention(retentionStack, "Retention", {
  clusterArn: param("ClusterArn", "String", "ECS cluster the task runs in.").valueAsString,
  subnetIds: param("Subnets", "List<AWS::EC2::Subnet::Id>", "Subnets of the task.").valueAsList,
  securityGroupId: param("SecurityGroup", "AWS::EC2::SecurityGroup::Id", "Outbound HTTPS and NFS.").valueAsString,
  image: ecs.ContainerImage.fromRegistry(param("Image", "String", "The cedargate image.").valueAsString),
  fileSystemId: param("FileSystemId", "String", "EFS for /var/lib/cedargate.").valueAsString,
  tablePrefix: "cedargate-",
});

// One tenant's archive key.
const keyStack = new Stack(app, "CedargateTenantKey-acme", { synthesizer: synthesizer() });
const adminRole = new CfnParameter(keyStack, "AdminRoleArn", {
  type: "String",
  description: "The role cedargate-admin and the retention task run as.",
});
const tenantKey = new TenantKey(keyStack, "Acme", { tenantId: "acme", adminRoleArn: adminRole.valueAsString });
new CfnOutput(keyStack, "KeyArn", { value: tenantKey.key.keyArn });

app.synth();
