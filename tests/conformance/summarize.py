"""Summarises a kosoku/Autobahn client report and fails on any bad case.

usage: summarize.py REPORT_DIR AGENT [--allow-unimplemented]
Prints the count per behaviour, every bad case, and the line `conformance: N passed, N failed`.
"""
import collections
import json
import sys

GOOD = {"OK", "NON-STRICT", "INFORMATIONAL"}
GOOD_CLOSE = {"OK", "INFORMATIONAL"}


def main():
    report_dir, agent = sys.argv[1], sys.argv[2]
    allowed = set(GOOD)
    if "--allow-unimplemented" in sys.argv:
        allowed.add("UNIMPLEMENTED")
    with open(f"{report_dir}/index.json") as f:
        cases = json.load(f)[agent]
    behaviours = collections.Counter(c["behavior"] for c in cases.values())
    bad = []
    for case_id, c in sorted(cases.items(), key=lambda kv: [int(p) for p in kv[0].split(".")]):
        if c["behavior"] not in allowed or c["behaviorClose"] not in GOOD_CLOSE | ({"UNIMPLEMENTED"} & allowed):
            bad.append(f"  {case_id}: behavior={c['behavior']} close={c['behaviorClose']} "
                       f"remoteCloseCode={c.get('remoteCloseCode')}")
    print("behaviours: " + ", ".join(f"{k}={v}" for k, v in sorted(behaviours.items())))
    if bad:
        print(f"{len(bad)} bad cases:")
        print("\n".join(bad))
    print(f"conformance: {len(cases) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
