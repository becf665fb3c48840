// CedargateTables: the DynamoDB tables `cedargate-admin migrate` creates,
// with the global secondary indexes of its steps 0003 and 0004, encrypted
// with a customer-managed KMS key, with point-in-time recovery and TTL, and
// least-privilege managed policies for the sidecar and the admin service.
// The same resources as deploy/aws/tables.yaml; scripts/check_deploy.py
// compares the synthesized template with it.

import { RemovalPolicy, Token } from "aws-cdk-lib";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import { Construct } from "constructs";

export interface CedargateTablesProps {
  /** The store's table prefix (`dynamodb://PREFIX`). Default `cedargate-`. */
  readonly tablePrefix?: string;
}

/** The tables, by the name the store gives them after the prefix. */
export interface CedargateTableSet {
  readonly tenants: dynamodb.Table;
  readonly documents: dynamodb.Table;
  readonly changes: dynamodb.Table;
  readonly audit: dynamodb.Table;
  readonly migrations: dynamodb.Table;
  readonly usage: dynamodb.Table;
  readonly policies: dynamodb.Table;
}

export class CedargateTables extends Construct {
  readonly tablePrefix: string;
  readonly key: kms.Key;
  readonly tables: CedargateTableSet;
  /** What the sidecar needs: read tenants, their policies and documents, follow changes, write audit, count searches. */
  readonly sidecarPolicy: iam.ManagedPolicy;
  /** What cedargate-admin needs: manage tenants, documents and tenants' policies, read audit (and the indexes), migrate. Never delete audit items. */
  readonly adminPolicy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: CedargateTablesProps = {}) {
    super(scope, id);
    const prefix = props.tablePrefix ?? "cedargate-";
    if (!Token.isUnresolved(prefix) && !/^[a-zA-Z0-9_.-]*$/.test(prefix)) {
      throw new Error(`CedargateTables: table prefix ${JSON.stringify(prefix)} has characters DynamoDB does not allow`);
    }
    this.tablePrefix = prefix;

    this.key = new kms.Key(this, "TableKey", {
      description: "cedargate tables",
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
      policy: accountAdministers(),
    });

    const table = (
      logicalId: string,
      name: string,
      partitionKey: string,
      sortKey: string | undefined,
      opts: { ttl?: boolean; pitr: boolean; retain: boolean },
    ) =>
      new dynamodb.Table(this, logicalId, {
        tableName: `${prefix}${name}`,
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
        ...(sortKey ? { sortKey: { name: sortKey, type: dynamodb.AttributeType.STRING } } : {}),
        ...(opts.ttl ? { timeToLiveAttribute: "expiresAt" } : {}),
        ...(opts.pitr ? { pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true } } : {}),
        encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
        encryptionKey: this.key,
        removalPolicy: opts.retain ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
      });

    this.tables = {
      tenants: table("TenantsTable", "tenants", "tenantId", undefined, { pitr: true, retain: true }),
      documents: table("DocumentsTable", "documents", "tenantId", "documentId", { pitr: true, retain: true }),
      // The change log sidecars follow: one partition per day, items expire.
      changes: table("ChangesTable", "changes", "bucket", "seq", { ttl: true, pitr: false, retain: false }),
      // Audit records: pk = tenant#shard, sk = time#event; TTL 7 years.
      audit: table("AuditTable", "audit", "pk", "sk", { ttl: true, pitr: true, retain: true }),
      migrations: table("MigrationsTable", "migrations", "id", undefined, { pitr: false, retain: true }),
      // API usage: decisions per tenant and month, `n#<action>#<decision>`.
      usage: table("UsageTable", "usage", "tenantId", "month", { pitr: true, retain: true }),
      // Tenants' own Cedar policies: one item per policy (the record and
      // `rev`), read with one Query per tenant load, written in a
      // transaction with the tenant's change-log entry.
      policies: table("PoliciesTable", "policies", "tenantId", "policyId", { pitr: true, retain: true }),
    };
    const t = this.tables;

    // The indexes of migration steps 0003 and 0004 (docs/dynamodb.md).
    // `cedargate-admin migrate` gives items written before them their index
    // attributes and finds the indexes already here, so it never creates
    // its own: this construct owns them.
    const index = (on: dynamodb.Table, indexName: string, partitionKey: string, sortKey: string): void => {
      on.addGlobalSecondaryIndex({
        indexName,
        partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
        sortKey: { name: sortKey, type: dynamodb.AttributeType.STRING },
        projectionType: dynamodb.ProjectionType.ALL,
      });
    };
    // The audit-log filters, sharded like the table: tenant#shard#user,
    // tenant#shard#action, tenant#shard (on denials only: sparse).
    index(t.audit, "auditByUser", "auditUser", "sk");
    index(t.audit, "auditByAction", "auditAction", "sk");
    index(t.audit, "auditDenials", "auditDenied", "sk");
    // Soft-deleted documents by tenant, for retention; sparse.
    index(t.documents, "deletedDocuments", "deletedTenant", "documentId");

    const all = [t.tenants, t.documents, t.changes, t.audit, t.migrations, t.usage, t.policies].map((x) => x.tableArn);
    const statement = (sid: string, actions: string[], resources: string[]) =>
      new iam.PolicyStatement({ sid, effect: iam.Effect.ALLOW, actions, resources });

    this.sidecarPolicy = new iam.ManagedPolicy(this, "SidecarPolicy", {
      description: "cedargate sidecar",
      statements: [
        statement("Readiness", ["dynamodb:DescribeTable"], all),
        statement("ReadTenantsAndDocuments", ["dynamodb:GetItem"], [t.tenants.tableArn, t.documents.tableArn]),
        // A tenant's policies, one Query by tenantId (never a Scan).
        statement("ReadTenantPolicies", ["dynamodb:Query"], [t.policies.tableArn]),
        statement("CountSearches", ["dynamodb:PutItem"], [t.tenants.tableArn, t.changes.tableArn]),
        statement("CountDecisions", ["dynamodb:UpdateItem"], [t.usage.tableArn]),
        statement("FollowChanges", ["dynamodb:Query"], [t.changes.tableArn]),
        statement("WriteAudit", ["dynamodb:BatchWriteItem", "dynamodb:PutItem"], [t.audit.tableArn]),
        statement("Tables", ["kms:Decrypt", "kms:GenerateDataKey"], [this.key.keyArn]),
      ],
    });

    this.adminPolicy = new iam.ManagedPolicy(this, "AdminPolicy", {
      description: "cedargate-admin",
      statements: [
        statement("Tables", ["dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive", "dynamodb:DescribeContinuousBackups"], all),
        statement(
          "TenantsAndDocuments",
          [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:ConditionCheckItem",
          ],
          [t.tenants.tableArn, t.documents.tableArn, t.migrations.tableArn],
        ),
        // Tenants' policies: read by key or by tenant (Query, never a Scan);
        // written by TransactWriteItems, a conditional Put or Delete here and
        // the change-log Put (ChangeLog), which needs the rights of each part.
        statement(
          "TenantPolicies",
          ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"],
          [t.policies.tableArn],
        ),
        statement("ChangeLog", ["dynamodb:PutItem", "dynamodb:Query"], [t.changes.tableArn]),
        statement("Audit", ["dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:Query"], [t.audit.tableArn]),
        statement("Usage", ["dynamodb:GetItem", "dynamodb:UpdateItem"], [t.usage.tableArn]),
        statement("Indexes", ["dynamodb:Query"], [`${t.audit.tableArn}/index/*`, `${t.documents.tableArn}/index/*`]),
        // Steps 0003/0004 give older items their index keys: a Scan for them,
        // a conditional UpdateItem each. No UpdateTable: the indexes are ours.
        statement("IndexKeys", ["dynamodb:Scan", "dynamodb:UpdateItem"], [t.audit.tableArn, t.documents.tableArn]),
        statement("Key", ["kms:Decrypt", "kms:GenerateDataKey"], [this.key.keyArn]),
      ],
    });
  }

  /** The `--store` URL of these tables in `region`. */
  storeUrl(region: string): string {
    return `dynamodb://${this.tablePrefix}?region=${region}`;
  }
}

/** A key policy that leaves the key to the account's IAM policies, as the templates have it. */
export function accountAdministers(): iam.PolicyDocument {
  return new iam.PolicyDocument({
    statements: [
      new iam.PolicyStatement({
        sid: "AccountAdministers",
        principals: [new iam.AccountRootPrincipal()],
        actions: ["kms:*"],
        resources: ["*"],
      }),
    ],
  });
}
