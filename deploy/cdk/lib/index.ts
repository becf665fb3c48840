// The construct library: cedargate's tables, sidecar, retention schedule and
// per-tenant keys for AWS CDK v2 applications.

export { CedargateTables, type CedargateTableSet, type CedargateTablesProps } from "./tables";
export { CedargateSidecar, type CedargateSidecarProps } from "./sidecar";
export { CedargateRetention, type CedargateRetentionProps } from "./retention";
export { TenantKey, type TenantKeyProps } from "./tenant-key";
