"""Every Kendra AttributeFilter the search-plan tests generated, checked
against the Kendra service model by boto3's client (botocore's parameter
validation) with botocore's Stubber: no network, no AWS account.

Usage: kendra_filters.py FILE (one filter as JSON per line). The last line
says how many were checked.
"""

import json
import sys

import boto3
from botocore.stub import Stubber

path = sys.argv[1]
kendra = boto3.client(
    "kendra",
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)
index_id = "0" * 36
checked = 0
with open(path) as f:
    for line in f:
        if not line.strip():
            continue
        attribute_filter = json.loads(line)
        with Stubber(kendra) as stub:
            params = {"IndexId": index_id, "QueryText": "report", "AttributeFilter": attribute_filter}
            stub.add_response("query", {"ResultItems": [], "TotalNumberOfResults": 0}, params)
            kendra.query(**params)
            stub.assert_no_pending_responses()
        checked += 1
if checked == 0:
    sys.exit(f"no filters in {path}: the search tests did not write them")
print(f"kendra: {checked} filters valid against the service model")
