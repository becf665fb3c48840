// The sidecar's decision API: one decision, a batch of any size (sent in
// chunks the sidecar accepts), and search plans. Every call decides for the
// principal of the end user's bearer token.

import { Transport, failure, parse, type CallOptions, type TransportOptions } from "./http.js";
import type { AuthorizeRequest, BatchResult, Decision, Plan, PlanRequest } from "./types.js";

export interface ClientOptions extends TransportOptions {
  /** Requests per batch call; the sidecar's `max_batch`. Default 100. */
  maxBatch?: number;
  /** Batch calls in flight at once. Default 4. */
  batchConcurrency?: number;
}

export class CedargateClient {
  readonly transport: Transport;
  private readonly maxBatch: number;
  private readonly batchConcurrency: number;

  constructor(opts: ClientOptions) {
    this.transport = new Transport(opts);
    this.maxBatch = opts.maxBatch ?? 100;
    this.batchConcurrency = opts.batchConcurrency ?? 4;
  }

  /**
   * One decision. A Deny is an answer, not an error: so is the 503 Deny of
   * `store_unavailable` once the retries are spent. Errors: 400
   * (`BadRequestError`), 401 (`UnauthorizedError`), no answer
   * (`UnavailableError`).
   */
  async authorize(request: AuthorizeRequest, opts: CallOptions = {}): Promise<Decision> {
    const answer = await this.transport.send(
      { method: "POST", path: "/v1/authorize", body: wire(request), safety: "idempotent" },
      opts,
    );
    if (answer.status === 200 || (answer.status === 503 && isDecisionBody(answer.text))) {
      return parse<Decision>(answer);
    }
    throw failure(answer);
  }

  /**
   * Many decisions for one principal, in request order. Above `maxBatch`
   * the requests go in several calls. A malformed request gets
   * `{error: {code, message}}` in its place.
   */
  async authorizeBatch(requests: AuthorizeRequest[], opts: CallOptions = {}): Promise<BatchResult[]> {
    const chunks: AuthorizeRequest[][] = [];
    for (let i = 0; i < requests.length; i += this.maxBatch) {
      chunks.push(requests.slice(i, i + this.maxBatch));
    }
    const results: BatchResult[][] = new Array<BatchResult[]>(chunks.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < chunks.length) {
        const i = next++;
        const chunk = chunks[i] ?? [];
        const { value } = await this.transport.json<{ results: BatchResult[] }>(
          {
            method: "POST",
            path: "/v1/authorize/batch",
            body: { requests: chunk.map(wire) },
            safety: "idempotent",
          },
          opts,
        );
        if (value.results.length !== chunk.length) {
          throw new Error(`batch answered ${value.results.length} results for ${chunk.length} requests`);
        }
        results[i] = value.results;
      }
    };
    const workers = Array.from({ length: Math.min(this.batchConcurrency, chunks.length) }, worker);
    await Promise.all(workers);
    return results.flat();
  }

  /**
   * Which resources of a type the principal may act on, as filters for a
   * search engine (`POST /v1/authorize/plan`). 422 `untranslatable`: the
   * policies say something no filter can express (`BadRequestError`).
   */
  async plan(request: PlanRequest, opts: CallOptions = {}): Promise<Plan> {
    const { value } = await this.transport.json<Plan>(
      {
        method: "POST",
        path: "/v1/authorize/plan",
        body: {
          action: request.action,
          resource_type: request.resourceType,
          context: request.context ?? {},
        },
        safety: "idempotent",
      },
      opts,
    );
    return value;
  }

  /** True once the sidecar's policies are loaded and its store answers. */
  async ready(opts: CallOptions = {}): Promise<boolean> {
    try {
      const answer = await this.transport.send({ method: "GET", path: "/readyz", safety: "idempotent" }, opts);
      return answer.status === 200;
    } catch {
      return false;
    }
  }
}

function wire(r: AuthorizeRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {
    action: r.action,
    resource: { type: r.resource.type, id: r.resource.id },
    context: r.context ?? {},
  };
  if (r.principal) body.principal = r.principal;
  return body;
}

function isDecisionBody(text: string): boolean {
  try {
    return typeof (JSON.parse(text) as { decision?: unknown }).decision === "string";
  } catch {
    return false;
  }
}
