"""The sidecar's Verified Permissions API through boto3.

Usage: avp_boto3.py PORT ID_TOKEN FOREIGN_TOKEN. Every check raises on
failure; the last line says how many passed.
"""

import json
import sys
import time
import urllib.request

import boto3
import botocore.exceptions

port, id_token, foreign_token = sys.argv[1], sys.argv[2], sys.argv[3]
endpoint = f"http://127.0.0.1:{port}"

for _ in range(200):
    try:
        urllib.request.urlopen(f"{endpoint}/readyz", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("cedargate did not become ready")

avp = boto3.client(
    "verifiedpermissions",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def ent(t, i):
    return {"entityType": t, "entityId": i}


def action(a):
    return {"actionType": "CedarGate::Action", "actionId": a}


def s(v):
    return {"string": v}


def n(v):
    return {"long": v}


def ref(t, i):
    return {"entityIdentifier": ent(t, i)}


def user(uid, role):
    return {
        "identifier": ent("CedarGate::User", uid),
        "attributes": {"tenant": ref("CedarGate::Tenant", "acme"), "clearance": n(1)},
        "parents": [ent("CedarGate::Role", role)],
    }


entities = {
    "entityList": [
        {
            "identifier": ent("CedarGate::Tenant", "acme"),
            "attributes": {
                "name": s("Acme"),
                "status": s("active"),
                "subscription": {"record": {"tier": s("pro"), "startDate": s("2026-01-01"),
                                            "features": {"set": [s("export")]}}},
                "limits": {"record": {"maxDocuments": n(10), "maxUsers": n(10),
                                      "maxStorageGB": n(5), "maxQueriesPerMonth": n(100)}},
                "usage": {"record": {"documents": n(1), "users": n(2), "storageGB": n(0),
                                     "queriesThisMonth": n(0)}},
                "settings": {"record": {"dataRetentionDays": n(30),
                                        "allowedFileTypes": {"set": [s("pdf")]}}},
                "remaining": {"record": {"documents": n(9), "storageBytes": n(5 << 30),
                                         "queriesThisMonth": n(100)}},
            },
        },
        user("rita", "viewer"),
        user("olga", "editor"),
        {
            "identifier": ent("CedarGate::Document", "memo"),
            "attributes": {
                "tenant": ref("CedarGate::Tenant", "acme"),
                "owner": ref("CedarGate::User", "olga"),
                "visibility": s("public"),
                "classification": n(0),
                "fileType": s("pdf"),
                "sizeBytes": n(10),
                "readers": {"set": []},
                "editors": {"set": []},
                "readerRoles": {"set": []},
                "editorRoles": {"set": []},
                "deleted": {"boolean": False},
            },
        },
    ]
}

# IsAuthorized: a public document of the tenant is readable, not deletable.
out = avp.is_authorized(
    policyStoreId="cedargate",
    principal=ent("CedarGate::User", "rita"),
    action=action("Read"),
    resource=ent("CedarGate::Document", "memo"),
    entities=entities,
)
check(out["decision"] == "ALLOW", out)
check(len(out["determiningPolicies"]) >= 1 and out["errors"] == [], out)
check(out["ResponseMetadata"]["RequestId"], "x-amzn-RequestId is read")
out = avp.is_authorized(
    policyStoreId="cedargate",
    principal=ent("CedarGate::User", "rita"),
    action=action("Delete"),
    resource=ent("CedarGate::Document", "memo"),
    entities={"cedarJson": json.dumps([])},
)
check(out["decision"] == "DENY", out)

# BatchIsAuthorized: in order, each request echoed.
asked = [("rita", "Read"), ("olga", "Delete"), ("rita", "Share")]
out = avp.batch_is_authorized(
    policyStoreId="cedargate",
    entities=entities,
    requests=[
        {"principal": ent("CedarGate::User", who), "action": action(a),
         "resource": ent("CedarGate::Document", "memo")}
        for who, a in asked
    ],
)
got = [(r["request"]["principal"]["entityId"], r["request"]["action"]["actionId"], r["decision"])
       for r in out["results"]]
check(got == [("rita", "Read", "ALLOW"), ("olga", "Delete", "ALLOW"), ("rita", "Share", "DENY")], got)

# The token calls on the Git store: the principal is the native API's,
# CedarGate::User::"<sub>" in the token's tenant (acme) with its groups as
# roles, and its tenant comes from the store, so the Git policies hold as
# they do natively. The request's entities are the rest: users, documents.
token_entities = {"entityList": [e for e in entities["entityList"]
                                 if e["identifier"]["entityType"] != "CedarGate::Tenant"]}
out = avp.is_authorized_with_token(
    policyStoreId="cedargate",
    identityToken=id_token,
    action=action("Read"),
    resource=ent("CedarGate::Document", "memo"),
    entities=token_entities,
)
check(out["principal"] == ent("CedarGate::User", "ann"), out)
check(out["decision"] == "ALLOW", out)
check(out["errors"] == [], out)
check({"policyId": "visibility.public-read"} in out["determiningPolicies"], out)
out = avp.batch_is_authorized_with_token(
    policyStoreId="cedargate",
    identityToken=id_token,
    entities=token_entities,
    requests=[{"action": action(a), "resource": ent("CedarGate::Document", "memo")}
              for a in ("Read", "Delete")],
)
check(out["principal"]["entityId"] == "ann", out)
check([r["request"]["action"]["actionId"] for r in out["results"]] == ["Read", "Delete"], out)
# Another tenant's public document: tenant isolation holds for a token
# principal too.
foreign_doc = json.loads(json.dumps(token_entities))
doc = foreign_doc["entityList"][-1]
doc["attributes"]["tenant"] = ref("CedarGate::Tenant", "globex")
out = avp.is_authorized_with_token(
    policyStoreId="cedargate",
    identityToken=id_token,
    action=action("Read"),
    resource=ent("CedarGate::Document", "memo"),
    entities=foreign_doc,
)
check(out["decision"] == "DENY", out)
check({"policyId": "tenant-isolation.document"} in out["determiningPolicies"], out)
# What the token says is not the caller's to restate: its tenant is read
# from the store, not taken from the request.
e = None
try:
    avp.is_authorized_with_token(policyStoreId="cedargate", identityToken=id_token,
                                 action=action("Read"), resource=ent("CedarGate::Document", "memo"),
                                 entities=entities)
except botocore.exceptions.ClientError as err:
    e = err.response
check(e is not None and e["Error"]["Code"] == "ValidationException", e)


def error_of(call, **kwargs):
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response
    raise AssertionError(f"{call.__name__} should have failed")


e = error_of(avp.is_authorized, policyStoreId="PSnope", principal=ent("CedarGate::User", "u"),
             action=action("Read"), resource=ent("CedarGate::Document", "d"))
check(e["Error"]["Code"] == "ResourceNotFoundException", e)
check(e["ResponseMetadata"]["HTTPStatusCode"] == 404, e)
e = error_of(avp.batch_is_authorized, policyStoreId="cedargate",
             requests=[{"principal": ent("CedarGate::User", "u"), "action": action("Read"),
                        "resource": ent("CedarGate::Document", "d")}] * 31)
check(e["Error"]["Code"] == "ValidationException", e)
check(e["fieldList"][0]["path"] == "requests", e)
e = error_of(avp.is_authorized, policyStoreId="cedargate", principal=ent("CedarGate::User", "u"),
             action={"actionType": "CedarGate::Thing", "actionId": "Read"},
             resource=ent("CedarGate::Document", "d"))
check(e["Error"]["Code"] == "ValidationException", e)
check(e["fieldList"][0]["path"] == "action.actionType", e)
e = error_of(avp.is_authorized_with_token, policyStoreId="cedargate", identityToken=foreign_token,
             action=action("Read"), resource=ent("CedarGate::Document", "memo"))
check(e["Error"]["Code"] == "AccessDeniedException", e)

print(f"boto3: {checks} checks passed")
