// CedargateRetention: `cedargate-admin retention run` once a day as an ECS
// Fargate task started by EventBridge Scheduler, its archives copied to an S3
// bucket (versioned, KMS-encrypted, moved to Glacier Deep Archive, expired
// after the archive retention), its audit spool and archives on EFS. The
// same resources as deploy/aws/retention.yaml (docs/retention.md).

import { Arn, Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as logs from "aws-cdk-lib/aws-logs";
import * as s3 from "aws-cdk-lib/aws-s3";
import * as scheduler from "aws-cdk-lib/aws-scheduler";
import { Construct } from "constructs";

import { accountAdministers, type CedargateTables } from "./tables";

export interface CedargateRetentionProps {
  /** The ECS cluster the task runs in. */
  readonly clusterArn: string;
  readonly subnetIds: string[];
  /** Allows outbound HTTPS (DynamoDB, S3) and NFS to the file system. */
  readonly securityGroupId: string;
  /** The cedargate image (both binaries). */
  readonly image: ecs.ContainerImage;
  /** EFS file system for /var/lib/cedargate (audit spool, archives). */
  readonly fileSystemId: string;
  /** The tables; or `tablePrefix` when they live in another account's stack. */
  readonly tables?: CedargateTables;
  /** Default `cedargate-`; ignored when `tables` is given. */
  readonly tablePrefix?: string;
  /** How long archives are kept in S3. Default 2557 days (7 years). */
  readonly archiveRetentionDays?: number;
  /** Default `cron(0 3 * * ? *)`. */
  readonly scheduleExpression?: string;
  /** Default `public.ecr.aws/aws-cli/aws-cli:2.17.0`. */
  readonly uploadImage?: ecs.ContainerImage;
}

const STATE = "/var/lib/cedargate";

export class CedargateRetention extends Construct {
  readonly archiveKey: kms.Key;
  readonly archiveBucket: s3.Bucket;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly taskRole: iam.Role;
  readonly schedule: scheduler.CfnSchedule;

  constructor(scope: Construct, id: string, props: CedargateRetentionProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const prefix = props.tables?.tablePrefix ?? props.tablePrefix ?? "cedargate-";
    const tableArn = (name: "tenants" | "documents" | "changes" | "audit" | "migrations" | "policies"): string =>
      props.tables
        ? props.tables.tables[name].tableArn
        : Arn.format({ service: "dynamodb", resource: "table", resourceName: `${prefix}${name}` }, stack);

    this.archiveKey = new kms.Key(this, "ArchiveKey", {
      description: "cedargate tenant archives",
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
      policy: accountAdministers(),
    });

    this.archiveBucket = new s3.Bucket(this, "ArchiveBucket", {
      versioned: true,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.archiveKey,
      bucketKeyEnabled: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        {
          id: "archives-to-deep-archive",
          prefix: "archives/",
          transitions: [{ storageClass: s3.StorageClass.DEEP_ARCHIVE, transitionAfter: Duration.days(1) }],
          expiration: Duration.days(props.archiveRetentionDays ?? 2557),
          noncurrentVersionExpiration: Duration.days(30),
        },
      ],
    });

    const logGroup = new logs.LogGroup(this, "LogGroup", {
      retention: logs.RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const executionRole = new iam.Role(this, "ExecutionRole", {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName("service-role/AmazonECSTaskExecutionRolePolicy")],
    });

    // What the job needs and no more: list and update tenants, read and
    // delete documents and a purged tenant's own policies, append change-log items, write and read audit items
    // (never delete them: the table's TTL does), write archives. Soft-deleted
    // documents come from the deletedDocuments index once the migrations
    // table has its marker (step 0004), the table before.
    this.taskRole = new iam.Role(this, "TaskRole", {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      inlinePolicies: {
        retention: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              actions: ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:PutItem"],
              resources: [tableArn("tenants")],
            }),
            new iam.PolicyStatement({
              actions: ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteItem"],
              resources: [tableArn("documents")],
            }),
            new iam.PolicyStatement({
              actions: ["dynamodb:Query"],
              resources: [`${tableArn("documents")}/index/deletedDocuments`],
            }),
            new iam.PolicyStatement({
              actions: ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:DeleteItem"],
              resources: [tableArn("policies")],
            }),
            new iam.PolicyStatement({ actions: ["dynamodb:GetItem"], resources: [tableArn("migrations")] }),
            new iam.PolicyStatement({
              actions: ["dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:Query"],
              resources: [tableArn("changes"), tableArn("audit")],
            }),
            new iam.PolicyStatement({
              actions: ["s3:PutObject", "s3:ListBucket"],
              resources: [this.archiveBucket.bucketArn, this.archiveBucket.arnForObjects("archives/*")],
            }),
            new iam.PolicyStatement({
              actions: ["kms:GenerateDataKey", "kms:Decrypt"],
              resources: [this.archiveKey.keyArn],
            }),
          ],
        }),
      },
    });
    if (props.tables) {
      // The tables' own key, for the items the job reads and writes.
      this.taskRole.addToPolicy(
        new iam.PolicyStatement({ actions: ["kms:Decrypt", "kms:GenerateDataKey"], resources: [props.tables.key.keyArn] }),
      );
    }

    this.taskDefinition = new ecs.FargateTaskDefinition(this, "TaskDefinition", {
      cpu: 256,
      memoryLimitMiB: 512,
      executionRole,
      taskRole: this.taskRole,
      volumes: [
        {
          name: "state",
          efsVolumeConfiguration: { fileSystemId: props.fileSystemId, transitEncryption: "ENABLED" },
        },
      ],
    });
    const retention = this.taskDefinition.addContainer("retention", {
      containerName: "retention",
      image: props.image,
      essential: false,
      user: "10001",
      readonlyRootFilesystem: true,
      command: [
        "cedargate-admin",
        "retention",
        "run",
        "--store",
        `dynamodb://${prefix}?region=${stack.region}`,
        "--archive-dir",
        `${STATE}/archives`,
        "--audit-spool",
        `${STATE}/audit-spool`,
      ],
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: "retention" }),
    });
    retention.addMountPoints({ sourceVolume: "state", containerPath: STATE, readOnly: false });
    // Copies new archives once the run succeeded (a failed run is finished by the next one).
    const upload = this.taskDefinition.addContainer("upload", {
      containerName: "upload",
      image: props.uploadImage ?? ecs.ContainerImage.fromRegistry("public.ecr.aws/aws-cli/aws-cli:2.17.0"),
      essential: true,
      command: ["s3", "sync", `${STATE}/archives`, `s3://${this.archiveBucket.bucketName}/archives/`, "--exclude", "*.partial"],
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: "upload" }),
    });
    upload.addMountPoints({ sourceVolume: "state", containerPath: STATE, readOnly: true });
    upload.addContainerDependencies({ container: retention, condition: ecs.ContainerDependencyCondition.SUCCESS });

    const schedulerRole = new iam.Role(this, "SchedulerRole", {
      assumedBy: new iam.ServicePrincipal("scheduler.amazonaws.com"),
      inlinePolicies: {
        "run-retention-task": new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({ actions: ["ecs:RunTask"], resources: [this.taskDefinition.taskDefinitionArn] }),
            new iam.PolicyStatement({ actions: ["iam:PassRole"], resources: [executionRole.roleArn, this.taskRole.roleArn] }),
          ],
        }),
      },
    });

    this.schedule = new scheduler.CfnSchedule(this, "Schedule", {
      description: "cedargate-admin retention run",
      scheduleExpression: props.scheduleExpression ?? "cron(0 3 * * ? *)",
      flexibleTimeWindow: { mode: "OFF" },
      target: {
        arn: props.clusterArn,
        roleArn: schedulerRole.roleArn,
        retryPolicy: { maximumRetryAttempts: 2 },
        ecsParameters: {
          taskDefinitionArn: this.taskDefinition.taskDefinitionArn,
          launchType: "FARGATE",
          networkConfiguration: {
            awsvpcConfiguration: {
              subnets: props.subnetIds,
              securityGroups: [props.securityGroupId],
              assignPublicIp: "DISABLED",
            },
          },
        },
      },
    });
  }
}
