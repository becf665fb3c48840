// CedargateSidecar: the sidecar container added to an application's ECS task
// definition, as in deploy/ecs/task-definition.json — non-root, read-only
// root file system, `cedargate probe` as its health check, an audit spool
// volume, optionally the policies copied in by an init container — and the
// tables' least-privilege sidecar policy on the task role.

import { Duration, Stack } from "aws-cdk-lib";
import * as ecs from "aws-cdk-lib/aws-ecs";
import { Construct } from "constructs";

import type { CedargateTables } from "./tables";

export interface CedargateSidecarProps {
  readonly taskDefinition: ecs.TaskDefinition;
  /** The cedargate image (see Containerfile). */
  readonly image: ecs.ContainerImage;
  /** The store: the sidecar reads these tables and gets their sidecar policy. */
  readonly tables: CedargateTables;
  /** The Cognito user pool's JWKS URL. */
  readonly jwksUrl: string;
  /** The expected `iss`. */
  readonly issuer: string;
  /** Accepted app client ids. */
  readonly audiences: string[];
  /**
   * An image whose `/bundle` holds `policies/` and `schemas/`; an init
   * container copies it into a volume the sidecar reads. Without it the
   * sidecar uses the policies in its own image.
   */
  readonly policiesImage?: ecs.ContainerImage;
  /** Default `127.0.0.1:8180`: loopback only, reachable from the task's other containers. */
  readonly listen?: string;
  /** The tables' region. Default: the stack's. */
  readonly region?: string;
  /** Default: awslogs, stream prefix `cedargate`. */
  readonly logging?: ecs.LogDriver;
  /** More `cedargate serve` flags. */
  readonly extraArgs?: string[];
  /** Default 96 MiB reserved, 256 MiB limit (measured; see deploy/kubernetes). */
  readonly memoryReservationMiB?: number;
  readonly memoryLimitMiB?: number;
}

const SPOOL = "/var/lib/cedargate";

export class CedargateSidecar extends Construct {
  readonly container: ecs.ContainerDefinition;
  readonly policiesContainer: ecs.ContainerDefinition | undefined;
  /** The sidecar's URL for the task's other containers. */
  readonly url: string;

  constructor(scope: Construct, id: string, props: CedargateSidecarProps) {
    super(scope, id);
    const td = props.taskDefinition;
    const listen = props.listen ?? "127.0.0.1:8180";
    this.url = `http://${listen}`;
    const region = props.region ?? Stack.of(this).region;

    td.addVolume({ name: "audit-spool" });
    const command = [
      "serve",
      "--listen",
      listen,
      "--store",
      props.tables.storeUrl(region),
      ...(props.policiesImage ? ["--policies", "/policies/policies", "--schema", "/policies/schemas"] : []),
      "--audit-spool",
      `${SPOOL}/audit-spool`,
      "--jwks-url",
      props.jwksUrl,
      "--issuer",
      props.issuer,
      ...props.audiences.flatMap((a) => ["--audience", a]),
      ...(props.extraArgs ?? []),
    ];
    this.container = td.addContainer("cedargate", {
      containerName: "cedargate",
      image: props.image,
      essential: true,
      user: "10001",
      readonlyRootFilesystem: true,
      memoryReservationMiB: props.memoryReservationMiB ?? 96,
      memoryLimitMiB: props.memoryLimitMiB ?? 256,
      command,
      healthCheck: {
        command: ["CMD", "cedargate", "probe", `${this.url}/readyz`],
        interval: Duration.seconds(10),
        timeout: Duration.seconds(3),
        retries: 3,
        startPeriod: Duration.seconds(10),
      },
      stopTimeout: Duration.seconds(30),
      logging: props.logging ?? ecs.LogDrivers.awsLogs({ streamPrefix: "cedargate" }),
    });
    this.container.addMountPoints({ sourceVolume: "audit-spool", containerPath: SPOOL, readOnly: false });

    if (props.policiesImage) {
      td.addVolume({ name: "policies" });
      this.policiesContainer = td.addContainer("policies", {
        containerName: "policies",
        image: props.policiesImage,
        essential: false,
        readonlyRootFilesystem: true,
        command: ["cp", "-r", "/bundle/.", "/policies/"],
      });
      this.policiesContainer.addMountPoints({ sourceVolume: "policies", containerPath: "/policies", readOnly: false });
      this.container.addMountPoints({ sourceVolume: "policies", containerPath: "/policies", readOnly: true });
      this.container.addContainerDependencies({
        container: this.policiesContainer,
        condition: ecs.ContainerDependencyCondition.SUCCESS,
      });
    }

    td.taskRole.addManagedPolicy(props.tables.sidecarPolicy);
  }

  /** Starts `app` only once the sidecar is healthy and tells it where the sidecar is (`AUTHZ_URL`). */
  protect(app: ecs.ContainerDefinition): void {
    app.addContainerDependencies({ container: this.container, condition: ecs.ContainerDependencyCondition.HEALTHY });
    app.addEnvironment("AUTHZ_URL", this.url);
  }
}
