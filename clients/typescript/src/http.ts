// The one place that talks HTTP: the platform fetch, a time limit per
// attempt, and retries with full jitter only where a second try is safe —
// an idempotent call (a decision, a read, a conditional or keyed write), or
// any call whose connection was refused (nothing was sent). A 503 is tried
// again only for idempotent calls.

import { CedargateError, TimeoutError, UnavailableError, errorFromResponse } from "./errors.js";

export interface RetryInfo {
  method: string;
  path: string;
  /** The attempt that failed (1 for the first). */
  attempt: number;
  /** How long the client waits before the next attempt. */
  delayMs: number;
  /** `status 503 store_unavailable`, `timeout`, `ECONNREFUSED`, … */
  reason: string;
}

export interface TransportOptions {
  /** The service's base URL, e.g. `http://127.0.0.1:8180`. */
  url: string;
  /** Time allowed for one attempt, response body included. Default 2000. */
  timeoutMs?: number;
  /** Further attempts after the first, where safe. Default 2. */
  retries?: number;
  /** The first retry waits up to this long; each later one up to twice as long. Default 50. */
  retryBaseMs?: number;
  /** No wait is longer than this. Default 1000. */
  retryMaxMs?: number;
  /** Another fetch (a wrapper for metrics or tracing). Default: the platform's. */
  fetch?: typeof globalThis.fetch;
  /** Called before each retry, e.g. to log it. */
  onRetry?: (info: RetryInfo) => void;
}

/** Per-call options. */
export interface CallOptions {
  /** The end user's bearer token (its principal is the one decided for). */
  token?: string | undefined;
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
  /** Recorded in the audit record (`X-Request-Id`). */
  requestId?: string | undefined;
  /** The end user's address, recorded in the audit record (`X-Forwarded-For`). */
  clientIp?: string | undefined;
  /** The end user's agent, recorded in the audit record. */
  userAgent?: string | undefined;
}

export type Safety = "idempotent" | "unsafe";

export interface Call {
  method: string;
  path: string;
  body?: unknown;
  safety: Safety;
  headers?: Record<string, string>;
  /** Give back the response once its headers arrive, body unread. */
  stream?: boolean;
}

export interface Answer {
  status: number;
  headers: Headers;
  /** The body as text (not for streams). */
  text: string;
  /** The body, for streams. */
  body: ReadableStream<Uint8Array> | null;
  attempts: number;
}

const USER_AGENT = "cedargate-client-ts/0.1.0";

export class Transport {
  readonly url: string;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly fetchFn: typeof globalThis.fetch;
  private readonly onRetry: ((info: RetryInfo) => void) | undefined;

  constructor(opts: TransportOptions) {
    this.url = opts.url.replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.retries = Math.max(0, opts.retries ?? 2);
    this.baseMs = opts.retryBaseMs ?? 50;
    this.maxMs = opts.retryMaxMs ?? 1000;
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.onRetry = opts.onRetry;
  }

  /** Sends `call`; error statuses are answers here, not exceptions. */
  async send(call: Call, opts: CallOptions = {}): Promise<Answer> {
    const headers: Record<string, string> = {
      accept: call.stream ? "application/x-ndjson, application/json" : "application/json",
      "user-agent": opts.userAgent ?? USER_AGENT,
      ...call.headers,
    };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    if (opts.requestId !== undefined) headers["x-request-id"] = opts.requestId;
    if (opts.clientIp !== undefined) headers["x-forwarded-for"] = opts.clientIp;
    let body: string | undefined;
    if (call.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(call.body);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    for (let attempt = 1; ; attempt++) {
      const limit = new AbortController();
      const timer = setTimeout(() => {
        limit.abort(new Error("timeout"));
      }, timeoutMs);
      const signal = opts.signal ? AbortSignal.any([opts.signal, limit.signal]) : limit.signal;
      const more = attempt <= this.retries;
      try {
        const res = await this.fetchFn(this.url + call.path, {
          method: call.method,
          headers,
          body: body ?? null,
          signal,
        });
        if (res.status === 503 && call.safety === "idempotent" && more) {
          const text = await res.text();
          await this.pause(call, attempt, `status 503 ${errorCode(text)}`);
          continue;
        }
        if (call.stream && res.ok) {
          clearTimeout(timer);
          return { status: res.status, headers: res.headers, text: "", body: res.body, attempts: attempt };
        }
        const text = await res.text();
        return { status: res.status, headers: res.headers, text, body: null, attempts: attempt };
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        const timedOut = limit.signal.aborted;
        const reason = timedOut ? "timeout" : networkCode(err);
        const safe = call.safety === "idempotent" || reason === "ECONNREFUSED";
        if (safe && more) {
          await this.pause(call, attempt, reason);
          continue;
        }
        const where = `${call.method} ${this.url}${call.path}`;
        if (timedOut) {
          throw new TimeoutError(0, "timeout", `no answer from ${where} within ${timeoutMs} ms`, {
            attempts: attempt,
          });
        }
        throw new UnavailableError(0, "unreachable", `cannot reach ${where}: ${reason}`, {
          attempts: attempt,
          cause: err,
        });
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Sends `call` and parses a 2xx JSON answer; other statuses throw. */
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the body's type
  async json<T>(call: Call, opts: CallOptions = {}): Promise<{ value: T; headers: Headers }> {
    const answer = await this.send(call, opts);
    if (answer.status < 200 || answer.status > 299) throw failure(answer);
    return { value: parse<T>(answer), headers: answer.headers };
  }

  /** Full jitter: a random wait up to base·2^(attempt-1), capped. */
  private async pause(call: Call, attempt: number, reason: string): Promise<void> {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** (attempt - 1));
    const delayMs = Math.random() * ceiling;
    this.onRetry?.({ method: call.method, path: call.path, attempt, delayMs, reason });
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/** The typed error for an error answer. */
export function failure(answer: Answer): CedargateError {
  return errorFromResponse(answer.status, answer.text, answer.headers, answer.attempts);
}

/** The JSON body of an answer; a body that is not JSON is an error. */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the body's type
export function parse<T>(answer: Answer): T {
  try {
    return JSON.parse(answer.text) as T;
  } catch (cause) {
    throw new CedargateError(answer.status, "invalid_response", "the answer is not JSON", {
      attempts: answer.attempts,
      cause,
    });
  }
}

function errorCode(text: string): string {
  try {
    const v = JSON.parse(text) as { reason?: unknown; error?: { code?: unknown } } | null;
    const code = v?.error?.code ?? v?.reason;
    return typeof code === "string" ? code : "";
  } catch {
    return "";
  }
}

/** ECONNREFUSED, ECONNRESET, …: the socket error under fetch's TypeError. */
function networkCode(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("E")) return code;
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      const codes = new Set(errors.map((x) => (x as { code?: unknown }).code));
      if (codes.size === 1) {
        const [only] = codes;
        if (typeof only === "string") return only;
      }
    }
    e = e.cause;
  }
  return err instanceof Error ? err.message : String(err);
}
