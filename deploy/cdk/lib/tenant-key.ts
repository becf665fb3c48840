// TenantKey: one tenant's KMS key for archive encryption (docs/keys.md), as
// deploy/aws/tenant-key.yaml makes it — alias/cedargate-<tenant>, rotation
// on, usable by the admin role only with that tenant's encryption context.
// Scheduling the key's deletion shreds the tenant's archives.

import { Duration, RemovalPolicy, Token } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import { Construct } from "constructs";

export interface TenantKeyProps {
  readonly tenantId: string;
  /** The role cedargate-admin and the retention task run as. */
  readonly adminRoleArn: string;
}

const TENANT_ID = /^[A-Za-z0-9.-][A-Za-z0-9._-]{0,63}$/;

export class TenantKey extends Construct {
  readonly key: kms.Key;
  readonly alias: kms.Alias;

  constructor(scope: Construct, id: string, props: TenantKeyProps) {
    super(scope, id);
    if (!Token.isUnresolved(props.tenantId) && !TENANT_ID.test(props.tenantId)) {
      throw new Error(`TenantKey: ${JSON.stringify(props.tenantId)} is not a tenant id`);
    }
    this.key = new kms.Key(this, "TenantKey", {
      description: `cedargate archives of tenant ${props.tenantId}`,
      enableKeyRotation: true,
      pendingWindow: Duration.days(30),
      removalPolicy: RemovalPolicy.RETAIN,
      policy: new iam.PolicyDocument({
        statements: [
          new iam.PolicyStatement({
            sid: "AccountAdministers",
            principals: [new iam.AccountRootPrincipal()],
            actions: [
              "kms:Create*",
              "kms:Describe*",
              "kms:Enable*",
              "kms:List*",
              "kms:Put*",
              "kms:Update*",
              "kms:Revoke*",
              "kms:Disable*",
              "kms:Get*",
              "kms:Delete*",
              "kms:TagResource",
              "kms:UntagResource",
              "kms:ScheduleKeyDeletion",
              "kms:CancelKeyDeletion",
            ],
            resources: ["*"],
          }),
          new iam.PolicyStatement({
            sid: "ThisTenantsDataKeysOnly",
            principals: [new iam.ArnPrincipal(props.adminRoleArn)],
            actions: ["kms:GenerateDataKey", "kms:Decrypt"],
            resources: ["*"],
            conditions: { StringEquals: { "kms:EncryptionContext:tenantId": props.tenantId } },
          }),
        ],
      }),
    });
    this.alias = new kms.Alias(this, "TenantKeyAlias", {
      aliasName: `alias/cedargate-${props.tenantId}`,
      targetKey: this.key,
    });
  }
}
