// The sidecar's wire types: decisions, batch results and search plans, as
// the native API sends them (field names kept). The management API's types
// are generated from docs/openapi.json into generated/openapi.ts.

import type { components, paths } from "./generated/openapi.js";

/** The actions of the Cedar schema. */
export type DocumentAction = "Read" | "Update" | "Delete" | "Share" | "Restore";
export type TenantAction =
  | "CreateDocument"
  | "Search"
  | "ViewUsage"
  | "ViewAuditLogs"
  | "Export"
  | "ManageTenant"
  | "ListTenants"
  | "CreateTenant"
  | "UpdateTenantName"
  | "UpdateTenantSettings"
  | "UpdateTenantSubscription"
  | "UpdateTenantLimits"
  | "UpdateTenantStatus"
  | "ViewPolicies"
  | "ManagePolicies";
export type Action = DocumentAction | TenantAction;

export type ResourceType = "Document" | "Tenant";

export interface Resource {
  type: ResourceType;
  id: string;
}

/** The principal a trusted caller states (only in `--identity trusted`). */
export interface TrustedPrincipal {
  id: string;
  tenant: string;
  roles?: string[];
  clearance?: number;
}

export interface AuthorizeRequest {
  action: Action;
  resource: Resource;
  context?: Record<string, unknown>;
  principal?: TrustedPrincipal;
}

export type DenyReason =
  | "forbidden"
  | "no_permit"
  | "resource_not_found"
  | "tenant_not_found"
  | "store_unavailable"
  | "evaluation_error";

export interface Decision {
  decision: "Allow" | "Deny";
  /** The id of the decision's audit record; log it with the request. */
  decision_id: string;
  determining_policies: string[];
  errors: string[];
  policy_revision: string;
  data_age_ms: number;
  /** Why a Deny is a Deny. */
  reason?: DenyReason;
  /** Text safe to show the end user; present on every Deny. */
  message?: string;
}

/** A batch item the sidecar could not decide (malformed). */
export interface BatchItemError {
  error: { code: string; message: string };
}

export type BatchResult = Decision | BatchItemError;

export function isDecision(r: BatchResult): r is Decision {
  return "decision" in r;
}

export interface PlanRequest {
  action: Action;
  resourceType: ResourceType;
  context?: Record<string, unknown>;
}

/** A condition over resource attributes, the plan's own language. */
export type Condition =
  | { op: "and" | "or"; args: Condition[] }
  | { op: "not"; arg: Condition }
  | { op: "eq"; attr: string; value: unknown }
  | { op: "in" | "contains_any"; attr: string; values: unknown[] }
  | { op: "lt" | "le" | "gt" | "ge"; attr: string; value: number }
  | { op: "exists"; attr: string }
  | { op: "true" }
  | { op: "false" };

/** A Kendra document attribute value, as Kendra's JSON API takes it. */
export interface KendraAttributeValue {
  StringValue?: string;
  StringListValue?: string[];
  LongValue?: number;
  /** Seconds since the epoch (the JSON protocol), or an ISO 8601 text. */
  DateValue?: number | string;
}

export interface KendraDocumentAttribute {
  Key: string;
  Value: KendraAttributeValue;
}

/** Kendra's `AttributeFilter`, as its Query API takes it in JSON. */
export interface KendraAttributeFilter {
  AndAllFilters?: KendraAttributeFilter[];
  OrAllFilters?: KendraAttributeFilter[];
  NotFilter?: KendraAttributeFilter;
  EqualsTo?: KendraDocumentAttribute;
  ContainsAll?: KendraDocumentAttribute;
  ContainsAny?: KendraDocumentAttribute;
  GreaterThan?: KendraDocumentAttribute;
  GreaterThanOrEquals?: KendraDocumentAttribute;
  LessThan?: KendraDocumentAttribute;
  LessThanOrEquals?: KendraDocumentAttribute;
}

export interface PlanFilters {
  kendra: KendraAttributeFilter;
  /** An OpenSearch `bool` query. */
  opensearch: Record<string, unknown>;
  /** A WHERE fragment with `?` placeholders, and its parameters in order. */
  sql: { where: string; params: unknown[] };
}

interface PlanCommon {
  plan_id: string;
  determining_policies: string[];
  policy_revision: string;
}

/** Which resources of a type the principal may act on, as search filters. */
export type Plan =
  | (PlanCommon & { kind: "always_allowed" | "always_denied"; condition: null; filters: null })
  | (PlanCommon & { kind: "conditional"; condition: Condition; filters: PlanFilters });

// The management API's records, from docs/openapi.json.
export type Tenant = components["schemas"]["Tenant"];
export type TenantInput = components["schemas"]["TenantInput"];
export type DocumentRecord = components["schemas"]["Document"];
export type DocumentInput = components["schemas"]["DocumentInput"];
export type Share = components["schemas"]["Share"];
export type Usage =
  paths["/v1/tenants/{id}/usage"]["get"]["responses"][200]["content"]["application/json"];
export type TenantPage =
  paths["/v1/tenants"]["get"]["responses"][200]["content"]["application/json"];
/** A tenant's own Cedar policy, as stored and exported. */
export type TenantPolicy = components["schemas"]["TenantPolicy"];
/** A tenant policy as the API shows it: with its `etag`, `cedarId` and `status`. */
export type TenantPolicyView = components["schemas"]["TenantPolicyView"];
/** What `PUT /v1/tenants/{id}/policies/{policyId}` takes. */
export type TenantPolicyInput = components["schemas"]["TenantPolicyInput"];
/** Cedar text (`static`) or a link of a global template (`templateLinked`). */
export type PolicyDefinition = components["schemas"]["PolicyDefinition"];
/** An entity filling a template's slot. */
export type EntityRef = components["schemas"]["EntityRef"];
/** What `POST /v1/tenants/{id}/access-check` takes: a user of the tenant, an action, a document. */
export type AccessCheck = components["schemas"]["AccessCheck"];
/** The decision, its determining policies with their text, the reason; for `Search`, the search filter. */
export type AccessCheckResult = components["schemas"]["AccessCheckResult"];
export type PolicyList =
  paths["/v1/tenants/{id}/policies"]["get"]["responses"][200]["content"]["application/json"];
export type DeletedPolicy =
  paths["/v1/tenants/{id}/policies/{policyId}"]["delete"]["responses"][200]["content"]["application/json"];
export type AuditLogQuery = NonNullable<
  paths["/v1/tenants/{id}/audit-logs"]["get"]["parameters"]["query"]
>;
export type AuditLogPage =
  paths["/v1/tenants/{id}/audit-logs"]["get"]["responses"][200]["content"]["application/json"];
/**
 * One audit record in the default format: the seed's `AuditEvent`, the
 * decision or operation in `details`, and its place in the hash chain.
 * (docs/openapi.json leaves the record's shape open: `format=ocsf` gives
 * OCSF events instead, typed as plain objects.)
 */
export interface AuditEvent {
  /** The `decision_id` of a decision. */
  eventId: string;
  timestamp: string;
  tenantId: string;
  userId: string | null;
  action: string;
  resource: string;
  details: Record<string, unknown>;
  ipAddress: string | null;
  userAgent: string | null;
  success: boolean;
  errorMessage: string | null;
  /** Seconds since the epoch: the store's TTL. */
  expiresAt: number;
  writerId: string;
  seq: number;
  prevHash: string;
  hash: string;
}

/**
 * One line of an export: the tenant, one of its own policies, a document, an
 * audit record, the manifest. (The manifest's `policies` is absent from
 * exports made before there were tenant policies.)
 */
export type ExportLine =
  | { type: "tenant"; record: Tenant }
  | { type: "policy"; record: TenantPolicy }
  | { type: "document"; record: DocumentRecord }
  | { type: "audit"; record: Record<string, unknown> }
  | { type: "manifest"; tenants: number; documents: number; audit: number; policies?: number; sha256: string }
  | { type: "error"; message: string };
