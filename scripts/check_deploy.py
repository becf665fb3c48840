"""Cross-checks of deploy/ that no linter makes.

- Every DynamoDB table ARN an IAM policy names (in any template) is one of
  the tables deploy/aws/tables.yaml defines, and those tables are the ones
  the store creates (the `format!("{p}<name>")` table names of
  src/store/dynamo.rs), with the same key attributes.
- The ECS task definition parses, runs the sidecar as a non-root user with a
  read-only root file system, and passes only flags `cedargate serve` has.
"""

import glob
import json
import re
import subprocess
import sys

from cfnlint.decode import decode

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

if failures:
    sys.exit("\n".join(failures))
print(f"{len(defined)} tables, IAM table ARNs and the ECS task definition agree")
