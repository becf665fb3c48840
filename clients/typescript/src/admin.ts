// The management API of cedargate-admin (docs/openapi.json): tenants, usage,
// audit logs (an async iterator that follows the cursors), export (a stream
// of NDJSON), documents and shares, and the tenant's own Cedar policies
// (with ETags). Every call is decided by the policies for the principal of
// the caller's bearer token.

import { Transport, failure, parse, type CallOptions, type Safety, type TransportOptions } from "./http.js";
import type {
  AccessCheck,
  AccessCheckResult,
  AuditEvent,
  AuditLogPage,
  AuditLogQuery,
  DeletedPolicy,
  DocumentInput,
  DocumentRecord,
  ExportLine,
  PolicyList,
  Share,
  Tenant,
  TenantInput,
  TenantPage,
  TenantPolicyInput,
  TenantPolicyView,
  Usage,
} from "./types.js";

/** A tenant with the `ETag` to send back in `If-Match` when replacing it. */
export interface TaggedTenant {
  tenant: Tenant;
  etag: string;
}

/** A tenant policy with the `ETag` to send back in `If-Match` when replacing or deleting it. */
export interface TaggedPolicy {
  policy: TenantPolicyView;
  etag: string;
}

/** What `putPolicy` answers: the policy, its new `ETag`, and whether it was created (201) or replaced (200). */
export interface PutPolicyResult extends TaggedPolicy {
  created: boolean;
}

/**
 * The preconditions of `putPolicy`: `ifMatch` (an ETag, quoted or the bare
 * `etag` field) replaces only that version and is required to replace an
 * existing policy; `ifNoneMatch: "*"` only creates.
 */
export interface PolicyPreconditions {
  ifMatch?: string | undefined;
  ifNoneMatch?: "*" | undefined;
}

/** A page of records and the cursor of the next page (null at the end). */
export interface Page<T> {
  events: T[];
  next: string | null;
}

/** An audit record in OCSF (`format: "ocsf"`). */
export type OcsfEvent = Record<string, unknown>;

/** Who a share names: a user or a role. */
export type Grantee = { userId: string } | { role: string };

export class CedargateAdmin {
  readonly transport: Transport;

  constructor(opts: TransportOptions) {
    this.transport = new Transport(opts);
  }

  // Tenants

  async listTenants(page: { limit?: number; cursor?: string } = {}, opts?: CallOptions): Promise<TenantPage> {
    return this.get<TenantPage>(`/v1/tenants${query(page)}`, opts);
  }

  /** Every tenant, page after page (platform administrators). */
  async *tenants(page: { limit?: number } = {}, opts?: CallOptions): AsyncGenerator<Tenant> {
    let cursor: string | undefined;
    do {
      const p = await this.listTenants({ ...page, ...(cursor ? { cursor } : {}) }, opts);
      yield* p.tenants;
      cursor = p.next ?? undefined;
    } while (cursor);
  }

  async getTenant(id: string, opts?: CallOptions): Promise<TaggedTenant> {
    return this.tagged("GET", `/v1/tenants/${seg(id)}`, undefined, "idempotent", {}, opts);
  }

  /** Not retried after it may have been received: a second try would be a 409. */
  async createTenant(input: TenantInput, opts?: CallOptions): Promise<TaggedTenant> {
    return this.tagged("POST", "/v1/tenants", input, "unsafe", {}, opts);
  }

  /** Replaces the tenant if it is still as `ifMatch` saw it (412 otherwise). */
  async updateTenant(id: string, input: TenantInput, ifMatch: string, opts?: CallOptions): Promise<TaggedTenant> {
    return this.tagged("PUT", `/v1/tenants/${seg(id)}`, input, "idempotent", { "if-match": ifMatch }, opts);
  }

  /** Cancels the tenant; its data is kept for its retention period. */
  async deactivateTenant(id: string, opts?: CallOptions): Promise<TaggedTenant> {
    return this.tagged("DELETE", `/v1/tenants/${seg(id)}`, undefined, "idempotent", {}, opts);
  }

  async usage(id: string, opts?: CallOptions): Promise<Usage> {
    return this.get<Usage>(`/v1/tenants/${seg(id)}/usage`, opts);
  }

  /**
   * What the policies decide for a user of the tenant (as described) doing
   * `action` to a document or the tenant, and why: the determining
   * policies' text, the reason. Needs `ViewAuditLogs`; records nothing.
   */
  async checkAccess(id: string, check: AccessCheck, opts?: CallOptions): Promise<AccessCheckResult> {
    const { value } = await this.transport.json<AccessCheckResult>(
      { method: "POST", path: `/v1/tenants/${seg(id)}/access-check`, body: check, safety: "idempotent" },
      opts,
    );
    return value;
  }

  // Audit logs

  /** One page of the tenant's audit records and the cursor of the next (null at the end). */
  async auditLogPage(id: string, q: AuditLogQuery & { format: "ocsf" }, opts?: CallOptions): Promise<Page<OcsfEvent>>;
  async auditLogPage(id: string, q?: AuditLogQuery, opts?: CallOptions): Promise<Page<AuditEvent>>;
  async auditLogPage(id: string, q: AuditLogQuery = {}, opts?: CallOptions): Promise<Page<AuditEvent | OcsfEvent>> {
    const page = await this.get<AuditLogPage>(`/v1/tenants/${seg(id)}/audit-logs${query(q)}`, opts);
    return { events: page.events as unknown as (AuditEvent | OcsfEvent)[], next: page.next ?? null };
  }

  /**
   * The tenant's audit records, newest first, following the `next` cursor
   * until there is none. `q.limit` is the page size.
   */
  auditLogs(id: string, q: AuditLogQuery & { format: "ocsf" }, opts?: CallOptions): AsyncGenerator<OcsfEvent>;
  auditLogs(id: string, q?: AuditLogQuery, opts?: CallOptions): AsyncGenerator<AuditEvent>;
  async *auditLogs(id: string, q: AuditLogQuery = {}, opts?: CallOptions): AsyncGenerator<AuditEvent | OcsfEvent> {
    let cursor = q.cursor;
    do {
      const page = await this.auditLogPage(id, { ...q, ...(cursor ? { cursor } : {}) }, opts);
      yield* page.events;
      cursor = page.next ?? undefined;
    } while (cursor);
  }

  // Export

  /**
   * The tenant's data as NDJSON, as it arrives (no time limit once the
   * answer has started). The last line is the manifest.
   */
  async exportTenant(id: string, opts?: CallOptions): Promise<ReadableStream<Uint8Array>> {
    const answer = await this.transport.send(
      { method: "POST", path: `/v1/tenants/${seg(id)}/export`, safety: "idempotent", stream: true },
      opts,
    );
    if (answer.status !== 200 || !answer.body) throw failure(answer);
    return answer.body;
  }

  /** The export, one parsed line at a time. */
  async *exportLines(id: string, opts?: CallOptions): AsyncGenerator<ExportLine> {
    const stream = await this.exportTenant(id, opts);
    for await (const line of ndjsonLines(stream)) {
      yield JSON.parse(line) as ExportLine;
    }
  }

  // Documents of the caller's tenant

  /** Registers a document's ACL, or updates it. */
  async putDocument(tenant: string, docId: string, input: DocumentInput, opts?: CallOptions): Promise<DocumentRecord> {
    return this.doc("PUT", tenant, docId, "", input, "idempotent", opts);
  }

  async getDocument(tenant: string, docId: string, opts?: CallOptions): Promise<DocumentRecord> {
    return this.doc("GET", tenant, docId, "", undefined, "idempotent", opts);
  }

  /** Soft delete: restorable within the tenant's recovery window. Not
   *  retried once sent: a second try would read as a missing document. */
  async deleteDocument(tenant: string, docId: string, opts?: CallOptions): Promise<DocumentRecord> {
    return this.doc("DELETE", tenant, docId, "", undefined, "unsafe", opts);
  }

  async restoreDocument(tenant: string, docId: string, opts?: CallOptions): Promise<DocumentRecord> {
    return this.doc("POST", tenant, docId, "/restore", undefined, "unsafe", opts);
  }

  async share(tenant: string, docId: string, share: Share, opts?: CallOptions): Promise<DocumentRecord> {
    return this.doc("POST", tenant, docId, "/shares", share, "unsafe", opts);
  }

  async unshare(tenant: string, docId: string, grantee: Grantee, opts?: CallOptions): Promise<DocumentRecord> {
    const who = "userId" in grantee ? `user:${grantee.userId}` : `role:${grantee.role}`;
    return this.doc("DELETE", tenant, docId, `/shares/${seg(who)}`, undefined, "unsafe", opts);
  }

  // The tenant's own policies

  /** The tenant's policies, in policyId order, each with its `etag`, `cedarId` and `status`. */
  async listPolicies(tenant: string, opts?: CallOptions): Promise<TenantPolicyView[]> {
    const list = await this.get<PolicyList>(`/v1/tenants/${seg(tenant)}/policies`, opts);
    return list.policies;
  }

  async getPolicy(tenant: string, policyId: string, opts?: CallOptions): Promise<TaggedPolicy> {
    const { policy, etag } = await this.policyCall("GET", tenant, policyId, undefined, "idempotent", {}, opts);
    return { policy, etag };
  }

  /**
   * Creates the policy, or replaces it if it is still as `ifMatch` saw it.
   * Refused with 400 `invalid_policy` (`BadRequestError.problems`), 403 (no
   * `custom-policies` feature, or not the caller's to manage), 412 (a stale
   * `ifMatch`, or `ifNoneMatch` and it exists), 428 (it exists and no
   * `ifMatch`). Not retried after it may have been received: a second try
   * would find the first one's write (412 or 428).
   */
  async putPolicy(
    tenant: string,
    policyId: string,
    input: TenantPolicyInput,
    pre: PolicyPreconditions = {},
    opts?: CallOptions,
  ): Promise<PutPolicyResult> {
    const headers: Record<string, string> = {};
    if (pre.ifMatch !== undefined) headers["if-match"] = quoted(pre.ifMatch);
    if (pre.ifNoneMatch !== undefined) headers["if-none-match"] = pre.ifNoneMatch;
    return this.policyCall("PUT", tenant, policyId, input, "unsafe", headers, opts);
  }

  /**
   * Deletes the policy if it is still as `ifMatch` saw it (412 otherwise).
   * Answers the `cedarId` it had. Not retried once sent: a second try would
   * read as a missing policy.
   */
  async deletePolicy(tenant: string, policyId: string, ifMatch: string, opts?: CallOptions): Promise<DeletedPolicy> {
    const path = `/v1/tenants/${seg(tenant)}/policies/${seg(policyId)}`;
    const { value } = await this.transport.json<DeletedPolicy>(
      { method: "DELETE", path, safety: "unsafe", headers: { "if-match": quoted(ifMatch) } },
      opts,
    );
    return value;
  }

  private async get<T>(path: string, opts?: CallOptions): Promise<T> {
    const { value } = await this.transport.json<T>({ method: "GET", path, safety: "idempotent" }, opts);
    return value;
  }

  private async doc(
    method: string,
    tenant: string,
    docId: string,
    tail: string,
    body: unknown,
    safety: Safety,
    opts?: CallOptions,
  ): Promise<DocumentRecord> {
    const path = `/v1/tenants/${seg(tenant)}/documents/${seg(docId)}${tail}`;
    const { value } = await this.transport.json<DocumentRecord>({ method, path, body, safety }, opts);
    return value;
  }

  private async policyCall(
    method: string,
    tenant: string,
    policyId: string,
    body: unknown,
    safety: Safety,
    headers: Record<string, string>,
    opts?: CallOptions,
  ): Promise<PutPolicyResult> {
    const path = `/v1/tenants/${seg(tenant)}/policies/${seg(policyId)}`;
    const answer = await this.transport.send({ method, path, body, safety, headers }, opts);
    if (answer.status < 200 || answer.status > 299) throw failure(answer);
    const policy = parse<TenantPolicyView>(answer);
    return { policy, etag: answer.headers.get("etag") ?? quoted(policy.etag), created: answer.status === 201 };
  }

  private async tagged(
    method: string,
    path: string,
    body: unknown,
    safety: Safety,
    headers: Record<string, string>,
    opts?: CallOptions,
  ): Promise<TaggedTenant> {
    const { value, headers: h } = await this.transport.json<Tenant>({ method, path, body, safety, headers }, opts);
    return { tenant: value, etag: h.get("etag") ?? "" };
  }
}

/** The lines of an NDJSON byte stream, without their newlines. */
export async function* ndjsonLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  const reader = stream.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      buffered += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.trim() !== "") yield line;
      }
    }
    buffered += decoder.decode();
    if (buffered.trim() !== "") yield buffered;
  } finally {
    // A reader that stops early closes the connection.
    if (!finished) await reader.cancel();
    reader.releaseLock();
  }
}

/** An ETag as `If-Match` takes it: the bare `etag` field gets its quotes. */
function quoted(etag: string): string {
  return /^(W\/)?"/.test(etag) ? etag : `"${etag}"`;
}

function seg(s: string): string {
  return encodeURIComponent(s);
}

function query(q: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v !== undefined && v !== null) p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}
