"""Stripe webhooks of `cedargate-admin serve`, checked against Stripe's own
Python library (PyPI `stripe`):

1. Signatures: headers made with `stripe.WebhookSignature` (and variants of
   them: other secrets, several v1, v0 only, tampered payloads, old
   timestamps, malformed items) are judged by Stripe's `verify_header`
   under each configured secret, and by the server; the verdicts must
   agree (the server also refuses timestamps too far ahead, which Stripe's
   library does not check: that case is asserted separately).
2. Events: subscription and invoice events signed by the library change the
   tenant as configured; replays and older events change nothing; an
   unknown customer or price is answered 200 and changes nothing; every
   handled event leaves a record.

usage: stripe_webhook.py PORT ADMIN_TOKEN
"""

import json
import sys
import time
import urllib.error
import urllib.request

import stripe

PORT, TOKEN = sys.argv[1], sys.argv[2]
BASE = f"http://127.0.0.1:{PORT}"
SECRETS = ["whsec_current_0123456789", "whsec_previous_abcdef"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what)


def call(method, path, body=None, headers=None):
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post(payload, header):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    status, _, body = call("POST", "/v1/billing/stripe/webhook", payload.encode(), headers)
    return status, json.loads(body or b"{}")


def tenant(tid):
    status, headers, body = call("GET", f"/v1/tenants/{tid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, (status, body)
    return json.loads(body), headers.get("ETag") or headers.get("etag")


def stripe_accepts(payload, header):
    for secret in SECRETS:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=300)
            return True
        except stripe.SignatureVerificationError:
            pass
    return False


def sign(payload, secret=SECRETS[0], t=None):
    return stripe.WebhookSignature.generate_signature_header(payload, secret, t or int(time.time()))


# 1. Signatures. The payload is an event of a type the server does not act
# on, so every accepted call answers 200 and changes nothing.
now = int(time.time())
payload = json.dumps({"id": "evt_sig", "object": "event", "type": "charge.succeeded",
                      "created": now, "data": {"object": {"id": "ch_1"}}})
good = sign(payload)
sig = good.split("v1=")[1]
other = sign(payload, "whsec_not_ours").split("v1=")[1]
cases = {
    "signed with the current secret": good,
    "signed with the previous secret": sign(payload, SECRETS[1]),
    "signed with another secret": sign(payload, "whsec_not_ours"),
    "a wrong v1 before the right one": f"t={now},v1={other},v1={sig}",
    "the right v1 before a wrong one": f"t={now},v1={sig},v1={other}",
    "v0 only": f"t={now},v0={sig}",
    "v1 and v0": f"t={now},v1={sig},v0={other}",
    "uppercase hex": f"t={now},v1={sig.upper()}",
    "truncated v1": f"t={now},v1={sig[:-2]}",
    "no timestamp": f"v1={sig}",
    "empty timestamp": f"t=,v1={sig}",
    "timestamp not a number": f"t=abc,v1={sig}",
    "timestamp moved by a second": f"t={now + 1},v1={sig}",
    "two timestamps, the signed one first": f"t={now},t={now + 5},v1={sig}",
    "two timestamps, the signed one second": f"t={now + 5},t={now},v1={sig}",
    "old timestamp, signed": sign(payload, t=now - 400),
    "timestamp inside the tolerance": sign(payload, t=now - 200),
    "unknown scheme items": f"t={now},v9=zz,v1={sig}",
    "space after a comma": f"t={now}, v1={sig}",
    "no signature at all": f"t={now}",
    "empty header": "",
}
for name, header in cases.items():
    expected = stripe_accepts(payload, header) if header else False
    status, body = post(payload, header)
    ours = status == 200
    check(ours == expected, f"signature '{name}': stripe {'accepts' if expected else 'refuses'}, server answered {status} {body}")
    if not ours:
        check(status == 400 and body.get("error", {}).get("code") == "invalid_signature",
              f"signature '{name}': refused with {status} {body}")
# Tampered payload under a good signature.
status, _ = post(payload.replace("evt_sig", "evt_sih"), good)
check(status == 400 and not stripe_accepts(payload.replace("evt_sig", "evt_sih"), good), "tampered payload refused by both")
# No header at all.
status, _ = post(payload, None)
check(status == 400, "missing header refused")
# Ahead of the clock by more than the tolerance: Stripe's library accepts
# it; the server refuses it (the window is both ways).
ahead = sign(payload, t=now + 600)
check(stripe_accepts(payload, ahead), "stripe's library accepts a future timestamp")
check(post(payload, ahead)[0] == 400, "the server refuses a timestamp ten minutes ahead")
print(f"signatures: {len(cases) + 3} cases compared with stripe {stripe.VERSION}")


# 2. Events.
def event(eid, kind, created, obj):
    return json.dumps({"id": eid, "object": "event", "api_version": "2025-03-31.basil", "type": kind,
                       "created": created, "livemode": False, "data": {"object": obj}})


def subscription(customer, status, price, tenant_hint=None):
    obj = {"id": "sub_acme1", "object": "subscription", "customer": customer, "status": status,
           "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": price},
                                                   "current_period_end": now + 30 * 86400}]}}
    if tenant_hint:
        obj["metadata"] = {"tenant_id": tenant_hint}
    return obj


def deliver(eid, kind, created, obj):
    p = event(eid, kind, created, obj)
    return post(p, sign(p))


before, etag0 = tenant("acme")
t0 = now - 1000
status, body = deliver("evt_a1", "customer.subscription.created", t0, subscription("cus_acme", "active", "price_enterprise", "acme"))
check(status == 200 and body.get("outcome") == "applied", f"subscription created: {status} {body}")
after, etag1 = tenant("acme")
check(after["subscription"]["tier"] == "enterprise", f"tier enterprise: {after['subscription']}")
check(after["limits"]["maxDocuments"] == 100000, f"limits from the price table: {after['limits']}")
check(after["subscription"]["features"] == ["export", "sso"], f"features: {after['subscription']}")
check(after["billing"]["priceId"] == "price_enterprise" and after["billing"]["paymentStatus"] == "active",
      f"billing: {after['billing']}")

# The same event again (Stripe retries): nothing changes.
status, body = deliver("evt_a1", "customer.subscription.created", t0, subscription("cus_acme", "active", "price_enterprise", "acme"))
check(status == 200 and body.get("outcome") == "duplicate", f"replay: {status} {body}")
check(tenant("acme")[1] == etag1, "replay leaves the tenant as it was")

# Out of order: a newer update, then an older one arriving late.
status, body = deliver("evt_a3", "customer.subscription.updated", t0 + 20, subscription("cus_acme", "active", "price_pro"))
check(body.get("outcome") == "applied", f"newer update (found without metadata): {body}")
status, body = deliver("evt_a2", "customer.subscription.updated", t0 + 10, subscription("cus_acme", "active", "price_enterprise"))
check(status == 200 and body.get("outcome") == "out_of_order", f"older update: {status} {body}")
check(tenant("acme")[0]["subscription"]["tier"] == "pro", "the newer update stands")

# Unpaid suspends; an invoice paid reopens.
deliver("evt_a4", "customer.subscription.updated", t0 + 30, subscription("cus_acme", "unpaid", "price_pro"))
check(tenant("acme")[0]["status"] == "suspended", "unpaid suspends")
status, body = deliver("evt_a5", "invoice.paid", t0 + 40, {"id": "in_1", "object": "invoice", "customer": "cus_acme",
                                                           "parent": {"subscription_details": {"subscription": "sub_acme1"}}})
check(body.get("outcome") == "applied" and tenant("acme")[0]["status"] == "active", f"paid reopens: {body}")

# Unknown customer and unknown price: 200, nothing changes.
_, etag = tenant("acme")
status, body = deliver("evt_x1", "customer.subscription.created", t0 + 50, subscription("cus_nobody", "active", "price_pro"))
check(status == 200 and body.get("outcome") == "unknown_customer", f"unknown customer: {status} {body}")
status, body = deliver("evt_x2", "customer.subscription.updated", t0 + 60, subscription("cus_acme", "active", "price_unlisted"))
check(status == 200 and body.get("outcome") == "unknown_price", f"unknown price: {status} {body}")
check(tenant("acme")[1] == etag, "unknown customer and price change nothing")
# Metadata naming another tenant does not move the event there.
_, globex_etag = tenant("globex")
status, body = deliver("evt_x3", "customer.subscription.updated", t0 + 70, subscription("cus_acme", "active", "price_enterprise", "globex"))
check(body.get("outcome") == "applied" and tenant("globex")[1] == globex_etag, f"metadata cannot redirect: {body}")

# Every handled event of acme's customer is in acme's log.
# (Records reach the store from the spool within moments.)
expected = sorted(["evt_a1", "evt_a1", "evt_a2", "evt_a3", "evt_a4", "evt_a5", "evt_x2", "evt_x3"])
for _ in range(100):
    status, _, body = call("GET", "/v1/tenants/acme/audit-logs?action=BillingEvent&limit=100",
                           headers={"Authorization": f"Bearer {TOKEN}"})
    records = json.loads(body).get("events", []) if status == 200 else []
    seen = sorted(r["details"]["eventId"] for r in records)
    if seen == expected:
        break
    time.sleep(0.1)
check(seen == expected, f"acme's billing records: {status} {seen}")
outcomes = {r["details"]["eventId"]: r["details"]["outcome"] for r in records if r["details"]["outcome"] != "duplicate"}
check(outcomes.get("evt_a2") == "out_of_order" and outcomes.get("evt_x2") == "unknown_price",
      f"outcomes recorded: {outcomes}")
check(all(r["userId"] == "system:stripe" for r in records), "recorded as the Stripe integration")

if failures:
    sys.exit(f"{len(failures)} Stripe webhook checks failed")
print("stripe webhooks: ok")
