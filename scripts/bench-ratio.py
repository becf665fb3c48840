#!/usr/bin/env python3
"""Prints the median of each decision benchmark and the ratio of the
sidecar's whole decision path to a bare Authorizer::is_authorized, from the
estimates criterion wrote in the last `cargo bench --bench decision` run."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion" / "decision"
names = {
    "full": "bare_is_authorized/full_set",
    "slice": "bare_is_authorized/action_slice",
    "read": "engine_decide_warm/read_document",
    "create": "engine_decide_warm/create_document",
    "remembered": "engine_decide_remembered/read_document",
}
medians = {}
for key, name in names.items():
    path = root / name.replace("/", "_") / "new" / "estimates.json"
    if not path.exists():
        sys.exit(f"missing {path}: run `cargo bench --bench decision` first")
    medians[key] = json.loads(path.read_text())["median"]["point_estimate"] / 1000.0
for key, name in names.items():
    print(f"{name:40s} median {medians[key]:8.2f} us")
print(f"ratio read_document / bare on the same slice: {medians['read'] / medians['slice']:.2f}")
print(f"ratio read_document / bare on the full set:   {medians['read'] / medians['full']:.2f}")
