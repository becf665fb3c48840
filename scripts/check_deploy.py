"""Cross-checks of deploy/ that no linter makes.

- Every DynamoDB table ARN an IAM policy names (in any template) is one of
  the tables deploy/aws/tables.yaml defines, and those tables are the ones
  the store creates (the `format!("{p}<name>")` table names of
  src/store/dynamo.rs), with the same key attributes.
- The ECS task definition parses, runs the sidecar as a non-root user with a
  read-only root file system, and passes only flags `cedargate serve` has.
- With `--cdk DIR` (the templates `node build/example/app.js DIR` of
  deploy/cdk synthesizes): the CDK constructs make the same tables (names,
  keys, attributes, billing, TTL, point-in-time recovery, encryption with a
  rotated customer-managed key, retention on delete) and the same IAM
  actions on the same tables and key as deploy/aws/tables.yaml; the
  retention task's and scheduler's rights and the tenant key's policy are
  those of retention.yaml and tenant-key.yaml; the CDK sidecar container
  passes the flags of the ECS task definition, all of which `cedargate
  serve` has.
"""

import argparse
import glob
import json
import re
import subprocess
import sys

from cfnlint.decode import decode

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--cdk", metavar="DIR", help="the synthesized CDK templates to check as well")
args = parser.parse_args()

failures = []


def fail(msg):
    failures.append(msg)


def template(path):
    tpl, matches = decode(path)
    if matches:
        sys.exit(f"{path}: {matches}")
    return tpl


def sub_text(v):
    """The text of a string or a Fn::Sub."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and "Fn::Sub" in v:
        s = v["Fn::Sub"]
        return s if isinstance(s, str) else s[0]
    return None


tables = template("deploy/aws/tables.yaml")
resources = tables["Resources"]
defined = {}  # logical id -> (suffix, hash key, range key)
for lid, r in resources.items():
    if r["Type"] != "AWS::DynamoDB::Table":
        continue
    name = sub_text(r["Properties"]["TableName"])
    m = re.fullmatch(r"\$\{TablePrefix\}([a-z]+)", name or "")
    if not m:
        fail(f"tables.yaml {lid}: TableName is not ${{TablePrefix}}<name>")
        continue
    keys = {k["KeyType"]: k["AttributeName"] for k in r["Properties"]["KeySchema"]}
    defined[lid] = (m.group(1), keys.get("HASH"), keys.get("RANGE"))
suffixes = {v[0] for v in defined.values()}

# The store's own table names and keys.
code = open("src/store/dynamo.rs").read()
in_code = set(re.findall(r'format!\("\{p\}([a-z]+)"\)', code))
if in_code != suffixes:
    fail(f"tables in the code {sorted(in_code)} != tables in tables.yaml {sorted(suffixes)}")
for field, hash_key, range_key in re.findall(
    r'ensure_table\(&self\.(\w+), "(\w+)", (None|Some\("\w+"\))', code
):
    range_key = None if range_key == "None" else range_key[6:-2]
    match = [v for v in defined.values() if v[0] == field]
    if not match:
        fail(f"the code's table {field} is not in tables.yaml")
    elif match[0][1:] != (hash_key, range_key):
        fail(f"table {field}: keys in code {(hash_key, range_key)} != template {match[0][1:]}")


def iam_resources(tpl):
    """Every Resource of every IAM statement in a template."""
    for r in tpl.get("Resources", {}).values():
        props = r.get("Properties", {})
        docs = []
        if r["Type"] == "AWS::IAM::ManagedPolicy":
            docs.append(props["PolicyDocument"])
        if r["Type"] == "AWS::IAM::Role":
            docs.extend(p["PolicyDocument"] for p in props.get("Policies", []))
        for doc in docs:
            for st in doc["Statement"]:
                res = st.get("Resource", [])
                yield from res if isinstance(res, list) else [res]


for path in sorted(glob.glob("deploy/aws/*.yaml")):
    tpl = tables if path.endswith("tables.yaml") else template(path)
    for res in iam_resources(tpl):
        if isinstance(res, dict) and "Fn::GetAtt" in res:
            target = res["Fn::GetAtt"]
            target = target[0] if isinstance(target, list) else target.split(".")[0]
            rtype = tpl["Resources"].get(target, {}).get("Type", "")
            if rtype == "AWS::DynamoDB::Table" and target not in defined:
                fail(f"{path}: {target} is not a table of tables.yaml")
        text = sub_text(res)
        if text and ":dynamodb:" in text:
            m = re.search(r":table/\$\{TablePrefix\}([a-z]+)", text)
            if not m or m.group(1) not in suffixes:
                fail(f"{path}: IAM names table ARN {text!r}, not one of {sorted(suffixes)}")

# ECS: the sidecar container.
task = json.load(open("deploy/ecs/task-definition.json"))
side = next(c for c in task["containerDefinitions"] if c["name"] == "cedargate")
if side.get("user") in (None, "0", "root"):
    fail("ecs: the sidecar runs as root")
if not side.get("readonlyRootFilesystem"):
    fail("ecs: the sidecar's root file system is writable")
help_text = subprocess.run(
    ["target/debug/cedargate", "serve", "--help"], capture_output=True, text=True, check=True
).stdout
for flag in [a for a in side["command"] if a.startswith("--")]:
    if flag not in help_text:
        fail(f"ecs: `cedargate serve` has no flag {flag}")
probe = side["healthCheck"]["command"]
if probe[1] != "cedargate" or probe[2] != "probe":
    fail("ecs: the health check does not use `cedargate probe`")



# CDK: the synthesized templates against the CloudFormation ones.


def join_text(v):
    """The text of a string, Fn::Sub or Fn::Join, with ${Ref} for references."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and "Fn::Sub" in v:
        return sub_text(v)
    if isinstance(v, dict) and "Fn::Join" in v:
        sep, parts = v["Fn::Join"]
        return sep.join(join_text(p) for p in parts)
    if isinstance(v, dict) and "Ref" in v:
        return "${" + v["Ref"] + "}"
    if isinstance(v, dict) and "Fn::GetAtt" in v:
        t = v["Fn::GetAtt"]
        t = t if isinstance(t, list) else t.split(".")
        return "${" + ".".join(t) + "}"
    if isinstance(v, dict) and "Fn::ImportValue" in v:
        return "${Import}"
    return repr(v)


def table_suffix(name):
    """The store's name of a table (`tenants`) from its TableName."""
    text = join_text(name)
    m = re.fullmatch(r"(?:\$\{TablePrefix\}|cedargate-)([a-z]+)", text)
    return m.group(1) if m else None


class Model:
    """A template's tables, keys and IAM rights in comparable form."""

    def __init__(self, tpl):
        self.tpl = tpl
        self.res = tpl.get("Resources", {})
        self.tables = {}  # logical id -> suffix
        for lid, r in self.res.items():
            if r["Type"] == "AWS::DynamoDB::Table":
                self.tables[lid] = table_suffix(r["Properties"].get("TableName"))

    def kind(self, lid):
        return self.res.get(lid, {}).get("Type")

    def resource(self, v):
        """An IAM resource as `table:NAME`, `key`, `bucket`, `*`, … ."""
        if v == "*":
            return "*"
        if isinstance(v, dict) and "Fn::GetAtt" in v:
            t = v["Fn::GetAtt"]
            lid = t[0] if isinstance(t, list) else t.split(".")[0]
            if lid in self.tables:
                return f"table:{self.tables[lid]}"
            if self.kind(lid) == "AWS::IAM::Role":
                return f"role:{self.role_name(lid)}"
            return {"AWS::KMS::Key": "key", "AWS::S3::Bucket": "bucket"}.get(self.kind(lid), f"?{lid}")
        if isinstance(v, dict) and "Ref" in v and self.kind(v["Ref"]) == "AWS::ECS::TaskDefinition":
            return "task-definition"
        text = join_text(v)
        # A table, or its indexes (`table:audit/index/*`).
        m = re.search(r":table/(?:\$\{TablePrefix\}|cedargate-)([a-z]+)(/index/[\w.*-]+)?$", text)
        if m:
            return f"table:{m.group(1)}{m.group(2) or ''}"
        m = re.fullmatch(r"\$\{(\w+)\.Arn\}(/.*)", text)
        if m and self.kind(m.group(1)) == "AWS::S3::Bucket":
            return "bucket" + m.group(2)
        if m and m.group(1) in self.tables and re.fullmatch(r"/index/[\w.*-]+", m.group(2)):
            return f"table:{self.tables[m.group(1)]}{m.group(2)}"
        return text

    def role_name(self, lid):
        """A role by what assumes it and its inline policy names."""
        props = self.res[lid]["Properties"]
        services = sorted(
            s["Principal"].get("Service", "")
            for s in props["AssumeRolePolicyDocument"]["Statement"]
        )
        policies = sorted(p["PolicyName"] for p in props.get("Policies", []))
        return "+".join(services + policies)

    def rights(self, doc):
        """(sid, action, resource) of every statement of a policy document."""
        out = set()
        for st in doc["Statement"]:
            if st.get("Effect") != "Allow":
                out.add((st.get("Sid"), "effect", st.get("Effect")))
            acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            res = st.get("Resource", [])
            res = res if isinstance(res, list) else [res]
            for a in acts:
                for r in res:
                    out.add((st.get("Sid"), a, self.resource(r)))
        return out

    def managed_policy(self, description):
        docs = [
            r["Properties"]["PolicyDocument"]
            for r in self.res.values()
            if r["Type"] == "AWS::IAM::ManagedPolicy" and r["Properties"].get("Description") == description
        ]
        return self.rights(docs[0]) if len(docs) == 1 else None

    def role_rights(self, role_name):
        """Rights of a role: its inline policies and any AWS::IAM::Policy attached to it."""
        lids = [lid for lid, r in self.res.items() if r["Type"] == "AWS::IAM::Role" and self.role_name(lid) == role_name]
        if len(lids) != 1:
            return None
        lid = lids[0]
        out = set()
        for p in self.res[lid]["Properties"].get("Policies", []):
            out |= {(None, a, r) for _, a, r in self.rights(p["PolicyDocument"])}
        for r in self.res.values():
            if r["Type"] == "AWS::IAM::Policy" and {"Ref": lid} in r["Properties"].get("Roles", []):
                out |= {(None, a, x) for _, a, x in self.rights(r["Properties"]["PolicyDocument"])}
        return out

    def key_shape(self, lid):
        props = self.res[lid]["Properties"]
        return (props.get("EnableKeyRotation"), props.get("PendingWindowInDays"), self.key_policy(props["KeyPolicy"]))

    def key_policy(self, doc):
        out = set()
        for st in doc["Statement"]:
            principal = st["Principal"].get("AWS")
            text = join_text(principal)
            who = "account-root" if re.fullmatch(r"arn:\$\{AWS::Partition\}:iam::\$\{AWS::AccountId\}:root", text) else "role"
            acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            cond = sorted(
                (op, k) for op, kv in st.get("Condition", {}).items() for k in kv
            )
            for a in acts:
                out.add((st.get("Sid"), who, a, join_text(st.get("Resource")), tuple(cond)))
        return out

    def table_shapes(self):
        shapes = {}
        for lid, suffix in self.tables.items():
            r = self.res[lid]
            p = r["Properties"]
            sse = p.get("SSESpecification", {})
            key = sse.get("KMSMasterKeyId")
            key_ok = (
                isinstance(key, dict)
                and "Fn::GetAtt" in key
                and self.kind(key["Fn::GetAtt"][0]) == "AWS::KMS::Key"
                and self.res[key["Fn::GetAtt"][0]]["Properties"].get("EnableKeyRotation") is True
            )
            ttl = p.get("TimeToLiveSpecification")
            shapes[suffix] = {
                "keys": sorted((k["KeyType"], k["AttributeName"]) for k in p["KeySchema"]),
                "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in p["AttributeDefinitions"]),
                "indexes": sorted(json.dumps(i, sort_keys=True) for i in p.get("GlobalSecondaryIndexes", [])),
                "billing": p.get("BillingMode"),
                "ttl": (ttl.get("AttributeName"), ttl.get("Enabled")) if ttl else None,
                "pitr": bool(p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")),
                "sse": (sse.get("SSEEnabled"), sse.get("SSEType"), "rotated customer-managed key" if key_ok else repr(key)),
                "retained": r.get("DeletionPolicy") == "Retain",
            }
        return shapes


def differ(what, want, got):
    if want != got:
        if isinstance(want, set) and isinstance(got, set):
            fail(f"cdk {what}: missing {sorted(want - got, key=str)}, extra {sorted(got - want, key=str)}")
        else:
            fail(f"cdk {what}: {got!r} != {want!r}")


def check_cdk(directory):
    templates = {}
    for path in sorted(glob.glob(f"{directory}/*.template.json")):
        templates[path] = Model(template(path))

    def by(pred):
        return [m for m in templates.values() if pred(m)]

    if not templates:
        fail(f"cdk: no templates in {directory}")
        return

    # Tables: the same set, each the same, and the same as the store's.
    yaml = Model(tables)
    with_tables = by(lambda m: m.tables)
    if len(with_tables) != 1:
        fail(f"cdk: {len(with_tables)} templates define tables; expected one")
        return
    cdk = with_tables[0]
    if None in cdk.tables.values():
        fail(f"cdk: table names not <prefix><name>: {cdk.tables}")
    differ("table names", sorted(yaml.tables.values()), sorted(cdk.tables.values()))
    differ("table names vs src/store/dynamo.rs", sorted(in_code), sorted(cdk.tables.values()))
    want, got = yaml.table_shapes(), cdk.table_shapes()
    for suffix in sorted(set(want) & set(got)):
        for field in want[suffix]:
            differ(f"table {suffix} {field}", want[suffix][field], got[suffix][field])
    for description in ("cedargate sidecar", "cedargate-admin"):
        w, g = yaml.managed_policy(description), cdk.managed_policy(description)
        if g is None:
            fail(f"cdk: no single managed policy {description!r}")
        else:
            differ(f"policy {description!r}", w, g)
    ykey = [lid for lid, r in yaml.res.items() if r["Type"] == "AWS::KMS::Key"]
    ckey = [lid for lid, r in cdk.res.items() if r["Type"] == "AWS::KMS::Key"]
    if len(ckey) != 1:
        fail(f"cdk: {len(ckey)} KMS keys beside the tables; expected one")
    else:
        differ("table key", yaml.key_shape(ykey[0]), cdk.key_shape(ckey[0]))

    # Every table an IAM statement of any CDK template names is one of them.
    for path, m in templates.items():
        for r in m.res.values():
            docs = []
            if r["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                docs.append(r["Properties"]["PolicyDocument"])
            if r["Type"] == "AWS::IAM::Role":
                docs.extend(p["PolicyDocument"] for p in r["Properties"].get("Policies", []))
            for doc in docs:
                for _, _, res in m.rights(doc):
                    if res.startswith("table:") and res[6:].split("/")[0] not in suffixes:
                        fail(f"{path}: IAM names table {res[6:]}, not one of {sorted(suffixes)}")
                    if ":dynamodb:" in res:
                        fail(f"{path}: IAM names a table ARN the check cannot read: {res}")

    # Retention: the task's and the scheduler's rights.
    retention_yaml = Model(template("deploy/aws/retention.yaml"))
    with_schedule = by(lambda m: any(r["Type"] == "AWS::Scheduler::Schedule" for r in m.res.values()))
    if len(with_schedule) != 1:
        fail(f"cdk: {len(with_schedule)} templates schedule the retention task; expected one")
    else:
        for role in ("ecs-tasks.amazonaws.com+retention", "scheduler.amazonaws.com+run-retention-task"):
            w, g = retention_yaml.role_rights(role), with_schedule[0].role_rights(role)
            if g is None:
                fail(f"cdk: no single role {role}")
            else:
                differ(f"retention role {role}", w, g)

    # Tenant keys: the key policy of tenant-key.yaml.
    key_yaml = Model(template("deploy/aws/tenant-key.yaml"))
    want_key = key_yaml.key_shape("TenantKey")
    with_alias = by(lambda m: any(r["Type"] == "AWS::KMS::Alias" for r in m.res.values()))
    if not with_alias:
        fail("cdk: no tenant key")
    for m in with_alias:
        for r in m.res.values():
            if r["Type"] == "AWS::KMS::Alias":
                target = r["Properties"]["TargetKeyId"]
                lid = target["Fn::GetAtt"][0] if "Fn::GetAtt" in target else target.get("Ref")
                differ("tenant key", want_key, m.key_shape(lid))
                if not join_text(r["Properties"]["AliasName"]).startswith("alias/cedargate-"):
                    fail(f"cdk: tenant key alias {r['Properties']['AliasName']!r}")

    # The sidecar container: the ECS example's flags, all of them `cedargate serve`'s.
    sidecars = [
        c
        for m in templates.values()
        for r in m.res.values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
        for c in r["Properties"]["ContainerDefinitions"]
        if c.get("Name") == "cedargate"
    ]
    if len(sidecars) != 1:
        fail(f"cdk: {len(sidecars)} sidecar containers; expected one")
        return
    c = sidecars[0]
    flags = [a for a in c["Command"] if isinstance(a, str) and a.startswith("--")]
    differ("sidecar flags", sorted(a for a in side["command"] if a.startswith("--")), sorted(flags))
    for flag in flags:
        if flag not in help_text:
            fail(f"cdk: `cedargate serve` has no flag {flag}")
    if c.get("User") in (None, "0", "root"):
        fail("cdk: the sidecar runs as root")
    if c.get("ReadonlyRootFilesystem") is not True:
        fail("cdk: the sidecar's root file system is writable")
    differ("sidecar health check", side["healthCheck"]["command"], c["HealthCheck"]["Command"])
    print(f"cdk: {len(templates)} templates; tables, keys, IAM rights and the sidecar agree with deploy/")


if args.cdk:
    check_cdk(args.cdk)
else:
    print("cdk: not checked here (scripts/test-typescript.sh synthesizes deploy/cdk and passes --cdk)")

if failures:
    sys.exit("\n".join(failures))
print(f"{len(defined)} tables, IAM table ARNs and the ECS task definition agree")
