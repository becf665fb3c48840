// Search with Amazon Kendra that cannot leave out authorization: the
// sidecar's plan for the caller becomes the `AttributeFilter` of the Kendra
// query (AND-ed with the application's own filter), a caller who may read
// nothing gets an empty result without a query, and a filter this code does
// not understand is an error rather than dropped.

import type { CedargateClient } from "./client.js";
import type { CallOptions } from "./http.js";
import type { Action, KendraAttributeFilter, KendraAttributeValue, KendraDocumentAttribute, Plan } from "./types.js";

/** Kendra's `DocumentAttributeValue` as the AWS SDK for JavaScript v3 takes it. */
export interface SdkAttributeValue {
  StringValue?: string | undefined;
  StringListValue?: string[] | undefined;
  LongValue?: number | undefined;
  DateValue?: Date | undefined;
}

export interface SdkDocumentAttribute {
  Key: string | undefined;
  Value: SdkAttributeValue | undefined;
}

/** Kendra's `AttributeFilter` as the AWS SDK for JavaScript v3 takes it. */
export interface SdkAttributeFilter {
  AndAllFilters?: SdkAttributeFilter[] | undefined;
  OrAllFilters?: SdkAttributeFilter[] | undefined;
  NotFilter?: SdkAttributeFilter | undefined;
  EqualsTo?: SdkDocumentAttribute | undefined;
  ContainsAll?: SdkDocumentAttribute | undefined;
  ContainsAny?: SdkDocumentAttribute | undefined;
  GreaterThan?: SdkDocumentAttribute | undefined;
  GreaterThanOrEquals?: SdkDocumentAttribute | undefined;
  LessThan?: SdkDocumentAttribute | undefined;
  LessThanOrEquals?: SdkDocumentAttribute | undefined;
}

/** The result of a search the plan says finds nothing. */
export interface EmptyQueryOutput {
  ResultItems: [];
  TotalNumberOfResults: 0;
  $metadata: Record<string, never>;
}

const LISTS = ["AndAllFilters", "OrAllFilters"] as const;
const ATTRIBUTES = [
  "EqualsTo",
  "ContainsAll",
  "ContainsAny",
  "GreaterThan",
  "GreaterThanOrEquals",
  "LessThan",
  "LessThanOrEquals",
] as const;

/** A Kendra filter in JSON (the plan's) as the SDK takes it: dates become `Date`s. */
export function toSdkFilter(filter: KendraAttributeFilter): SdkAttributeFilter {
  // The filter comes over the network: its type is checked here, not trusted.
  const untrusted: unknown = filter;
  if (untrusted === null || typeof untrusted !== "object" || Array.isArray(untrusted)) {
    throw new Error("cedargate: a Kendra filter must be an object");
  }
  const keys = Object.keys(filter);
  if (keys.length === 0) throw new Error("cedargate: an empty Kendra filter");
  const out: SdkAttributeFilter = {};
  for (const key of keys) {
    if ((LISTS as readonly string[]).includes(key)) {
      const list = filter[key as (typeof LISTS)[number]];
      if (!Array.isArray(list)) throw new Error(`cedargate: Kendra filter ${key} is not a list`);
      out[key as (typeof LISTS)[number]] = list.map(toSdkFilter);
    } else if (key === "NotFilter") {
      out.NotFilter = toSdkFilter(filter.NotFilter as KendraAttributeFilter);
    } else if ((ATTRIBUTES as readonly string[]).includes(key)) {
      out[key as (typeof ATTRIBUTES)[number]] = attribute(filter[key as (typeof ATTRIBUTES)[number]]);
    } else {
      throw new Error(`cedargate: unknown Kendra filter ${key}`);
    }
  }
  return out;
}

function attribute(a: KendraDocumentAttribute | undefined): SdkDocumentAttribute {
  const untrusted = a as { Key?: unknown; Value?: unknown } | undefined;
  if (!untrusted || typeof untrusted.Key !== "string" || !untrusted.Value || typeof untrusted.Value !== "object") {
    throw new Error("cedargate: a Kendra filter attribute needs Key and Value");
  }
  return { Key: untrusted.Key, Value: value(untrusted.Value) };
}

function value(v: KendraAttributeValue): SdkAttributeValue {
  const out: SdkAttributeValue = {};
  for (const key of Object.keys(v)) {
    switch (key) {
      case "StringValue":
        out.StringValue = String(v.StringValue);
        break;
      case "StringListValue":
        if (!Array.isArray(v.StringListValue)) throw new Error("cedargate: StringListValue is not a list");
        out.StringListValue = v.StringListValue.map(String);
        break;
      case "LongValue":
        if (typeof v.LongValue !== "number") throw new Error("cedargate: LongValue is not a number");
        out.LongValue = v.LongValue;
        break;
      case "DateValue": {
        const d = typeof v.DateValue === "number" ? new Date(v.DateValue * 1000) : new Date(String(v.DateValue));
        if (Number.isNaN(d.getTime())) throw new Error("cedargate: DateValue is not a date");
        out.DateValue = d;
        break;
      }
      default:
        throw new Error(`cedargate: unknown Kendra attribute value ${key}`);
    }
  }
  return out;
}

/**
 * The `AttributeFilter` a query for this plan must carry: the plan's (for
 * `conditional`) AND-ed with the application's; `null` for `always_denied`
 * (run no query); the application's alone (or none) for `always_allowed`.
 */
export function authorizedFilter(
  plan: Plan,
  appFilter?: SdkAttributeFilter,
): { filter: SdkAttributeFilter | undefined } | null {
  switch (plan.kind) {
    case "always_denied":
      return null;
    case "always_allowed":
      return { filter: appFilter };
    case "conditional": {
      const mine = toSdkFilter(plan.filters.kendra);
      return { filter: appFilter ? { AndAllFilters: [mine, appFilter] } : mine };
    }
    default:
      throw new Error(`cedargate: unknown plan kind ${(plan as { kind: unknown }).kind as string}`);
  }
}

export interface KendraSearchOptions<I, O> {
  cedargate: CedargateClient;
  /** Runs one Kendra query: `(input) => kendra.send(new QueryCommand(input))`. */
  send: (input: I) => Promise<O>;
  /** The action a result is for. Default `Read`. */
  action?: Action;
  /** The action's context. */
  context?: Record<string, unknown>;
}

export interface KendraSearchResult<O> {
  /** The plan the query was filtered by (log its `plan_id`). */
  plan: Plan;
  output: O | EmptyQueryOutput;
}

/** Kendra queries filtered by the caller's plan. */
export class KendraSearch<I extends { AttributeFilter?: SdkAttributeFilter | undefined }, O> {
  private readonly opts: KendraSearchOptions<I, O>;

  constructor(opts: KendraSearchOptions<I, O>) {
    this.opts = opts;
  }

  /** Queries for the caller of `call.token`; `input.AttributeFilter`, if any, is AND-ed with the plan's. */
  async query(input: I, call: CallOptions): Promise<KendraSearchResult<O>> {
    const plan = await this.opts.cedargate.plan(
      { action: this.opts.action ?? "Read", resourceType: "Document", context: this.opts.context ?? {} },
      call,
    );
    return this.queryWith(plan, input);
  }

  /** Queries under a plan already fetched (the next page of the same search). */
  async queryWith(plan: Plan, input: I): Promise<KendraSearchResult<O>> {
    const authorized = authorizedFilter(plan, input.AttributeFilter);
    if (authorized === null) {
      return { plan, output: { ResultItems: [], TotalNumberOfResults: 0, $metadata: {} } };
    }
    const query = { ...input };
    if (authorized.filter === undefined) delete query.AttributeFilter;
    else query.AttributeFilter = authorized.filter;
    return { plan, output: await this.opts.send(query) };
  }
}
