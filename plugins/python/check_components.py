#!/usr/bin/env python3
"""Run the built Python examples through `weir plugin test` (the gateway's own plugin host and limits):
`python3 check_components.py WEIR OUT_DIR [--rust-json-transform FILE] [--measure N]`.

* py-hmac-verify.wasm against every shared signature vector (tests/vectors/signatures/, at the vectors' `now`,
  future timestamps included), a rotation without `previous_secret`, the older `secret_previous` name, an
  unknown scheme (401 naming it) and the operator's mistakes (missing secret, bad tolerance: faults);
* py-json-transform.wasm on the end-to-end test's cases (tests/it/plugins.rs json_transform_*), and, with
  `--rust-json-transform`, byte for byte against the Rust plugin on bodies that stress the JSON edges;
* py-passthrough.wasm accepting unchanged.

With `--measure N` it also runs N triggers of a 1 KiB JSON body through each component and prints the CPU
time per trigger (p50, p90, max) and the linear-memory peak. Plain Python 3 (stdlib); needs `weir` only.
The limits are those a Python plugin needs (README.md, "Limits"), written to a temporary --weir-config.
"""

import argparse
import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

VECTORS = HERE.parent.parent / "tests" / "vectors" / "signatures"
SCHEMES = ["github", "stripe", "standard-webhooks", "shopify", "slack"]
REASON_OF = {
    "missing_header": "missing ",
    "malformed_header": "malformed ",
    "timestamp_out_of_tolerance": "outside the tolerance",
    "mismatch": "signature mismatch",
}
# What a Python plugin needs beyond Weir's defaults (README.md, "Limits").
WEIR_CONFIG = """[plugins]
max_component_bytes = 20971520
compile_memory_mb = 384

[[tenants]]
id = "test"
"""


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a TOML basic string


def write_case(dir, name, headers, body, *, config, expect, received_at_ms=None):
    lines = ["POST /ingest/test/webhook HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()] + ["", ""]
    body = body.encode("utf-8") if isinstance(body, str) else body
    (dir / f"{name}.http").write_bytes("\n".join(lines).encode("utf-8") + body)
    toml = []
    if received_at_ms is not None:
        toml.append(f"received_at_ms = {received_at_ms}")
    toml.append("[config]")
    toml += [f"{k} = {toml_str(v)}" for k, v in config.items()]
    toml.append("[expect]")
    for k, v in expect.items():
        if isinstance(v, dict):
            v = "{ " + ", ".join(f"{toml_str(a)} = {toml_str(b)}" for a, b in v.items()) + " }"
        else:
            v = toml_str(v) if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        toml.append(f"{k} = {v}")
    (dir / f"{name}.toml").write_text("\n".join(toml) + "\n", encoding="utf-8")


def run(weir, wasm, cases, config_file):
    """`weir plugin test --json` on a case directory: the parsed report (cases with `passed`)."""
    done = subprocess.run(
        [weir, "plugin", "test", str(wasm), "--request", str(cases), "--weir-config", str(config_file), "--json"],
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0, 1):
        sys.exit(f"weir plugin test {wasm} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def report(label, result):
    failed = [c for c in result["cases"] if not c["passed"]]
    print(f"{label}: {result['passed']} passed, {result['failed']} failed")
    for c in failed:
        print(f"  FAILED {c['name']}: {c.get('mismatches')}")
    return not failed


def hmac_cases(dir):
    for name in SCHEMES:
        data = json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))
        config = {"scheme": data["scheme"], "secret": data["secrets"][0], "previous_secret": data["secrets"][1]}
        if "tolerance_secs" in data:
            config["tolerance_secs"] = str(data["tolerance_secs"])
        at = data["now"] * 1000
        for case in data["cases"]:
            if case["expect"] == "ok":
                expect = {"verdict": "accept"}
                if case["matched_secret"] == 1:
                    expect["logs_contain"] = ["signature matched `previous_secret`"]
            else:
                expect = {"verdict": "reject", "status": 401, "reason_contains": REASON_OF[case["expect"]]}
            write_case(dir, f"{name}.{case['name']}", case["headers"], case["body"], config=config,
                       expect=expect, received_at_ms=at)  # fmt: skip
            if case.get("matched_secret") == 1:
                current_only = {k: v for k, v in config.items() if k != "previous_secret"}
                write_case(dir, f"{name}.{case['name']}.current_only", case["headers"], case["body"],
                           config=current_only, received_at_ms=at,
                           expect={"verdict": "reject", "status": 401, "reason_contains": "signature mismatch"})
                older = dict(current_only, secret_previous=data["secrets"][1])
                write_case(dir, f"{name}.{case['name']}.secret_previous", case["headers"], case["body"],
                           config=older, received_at_ms=at, expect={"verdict": "accept"})  # fmt: skip
            if case["name"] == "valid" and name == "github":
                write_case(dir, "unknown_scheme", case["headers"], case["body"],
                           config={"scheme": "git-hub", "secret": data["secrets"][0]},
                           expect={"verdict": "reject", "status": 401,
                                   "reason_contains": 'unknown signature scheme "git-hub" (expected github, stripe, '
                                                      "standard-webhooks, shopify or slack)"})
                write_case(dir, "missing_secret", case["headers"], case["body"], config={"scheme": "github"},
                           expect={"verdict": "fault", "logs_contain": ["tenant config key `secret` is not set"]})
            if case["name"] == "valid" and name == "stripe":
                write_case(dir, "bad_tolerance", case["headers"], case["body"], received_at_ms=at,
                           config=dict(config, tolerance_secs="5m"),
                           expect={"verdict": "fault", "logs_contain": ["`tolerance_secs` must be a whole number"]})
            if case["name"] == "valid" and name == "standard-webhooks":
                write_case(dir, "secret_not_base64", case["headers"], case["body"], received_at_ms=at,
                           config=dict(config, secret="whsec_not base64!"),
                           expect={"verdict": "fault", "logs_contain": ["is not a standard-webhooks secret"]})


JSON_EDGES = [
    '{"b":1,"a":{"d":[1,{"z":0,"y":0}],"c":null},"password":"x"}',
    '{"s":"\u00e9\\n\\u0001\\u007f/\\ud83d\\ude00","t":"\\"\\\\"}',
    '{"a":1e-5,"b":1e16,"c":1.5e-7,"d":1e15,"e":0.0001,"f":-0,"g":100000000000000000000,"h":-1.0E+2}',
    '{"a":1.0,"b":-2.50,"c":1e-6,"c2":1.5e+300,"d":18446744073709551615,"e":-9223372036854775808}',
    ' \n{"_weir":"spoofed","k":[true,false,null]}\r\n',
    '{"dup":1,"dup":2}',
    "[1,2]", "not json", "42", '"str"', "NaN", "[1e400]", '{"a":"\\ud800"}', "{\"a\":1,}", "\ufeff{}",
    "[" * 127 + "]" * 127, "{\"a\":" * 127 + "1" + "}" * 127, "{\"a\":" * 128 + "1" + "}" * 128,
]  # fmt: skip


def json_cases(dir):
    raw = '{"name":"ada","password":"hunter2","ssn":"123","n":1}'
    want = {"name": "ada", "n": 1, "_weir": {"tenant": "test", "source": "webhook"}}
    write_case(dir, "rewrite", {"content-type": "text/plain"}, raw, config={"drop": "password, ssn"},
               expect={"verdict": "accept", "body": json.dumps(want), "headers": {"content-type": "application/json"}})
    write_case(dir, "invalid", {}, "not json", config={},
               expect={"verdict": "reject", "status": 400, "reason_contains": "body is not valid JSON: "})
    for i, bad in enumerate(["[1,2]", "42"]):
        write_case(dir, f"not_object_{i}", {}, bad, config={},
                   expect={"verdict": "reject", "status": 400, "reason_contains": "body must be a JSON object"})


def edge_cases(dir):
    for i, body in enumerate(JSON_EDGES):
        write_case(dir, f"edge_{i:02}", {}, body, config={"drop": "password"}, expect={"verdict": "accept"})


def outcome(case):
    """What must be equal between the Rust and the Python json-transform (reasons aside: serde's and Python's
    parse errors differ after the shared prefix)."""
    reason_prefix = None
    if case.get("reject"):
        reason_prefix = case["reject"]["reason"].split(":")[0]
    body = case.get("body") or {}
    return (case["verdict"], case["status"], reason_prefix, body.get("bytes"), body.get("text"))


def compare_with_rust(weir, py_wasm, rust_wasm, dir, config_file):
    py = {c["name"]: c for c in run(weir, py_wasm, dir, config_file)["cases"]}
    rust = {c["name"]: c for c in run(weir, rust_wasm, dir, config_file)["cases"]}
    bad = [n for n in sorted(py) if outcome(py[n]) != outcome(rust[n])]
    print(f"json-transform vs Rust: {len(py) - len(bad)} of {len(py)} edge bodies give the same outcome and bytes")
    for n in bad:
        print(f"  DIFFERS {n}: python {outcome(py[n])}\n                rust   {outcome(rust[n])}")
    return not bad


def measure(weir, out_dir, n, config_file, rust_dir):
    body = json.dumps({"event": "order.paid", "items": [{"id": i, "sku": f"SKU-{i:04}", "qty": i % 3 + 1,
                       "price": round(i * 1.37, 2)} for i in range(16)], "customer": "Zo\u00eb"})  # fmt: skip
    body = (body[:-1] + ',"pad":"' + "x" * (1024 - len(body) - 9) + '"}').encode("utf-8")
    assert len(body) == 1024, len(body)
    secret = "measure-secret"
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    components = [(f"py-{n_}", out_dir / f"py-{n_}.wasm") for n_ in ("passthrough", "hmac-verify", "json-transform")]
    if rust_dir:
        components += [(f"rust-{n_}", Path(rust_dir) / f"{n_.replace('-', '_')}.wasm")
                       for n_ in ("passthrough", "hmac-verify", "json-transform")]  # fmt: skip
    for label, wasm in components:
        if not wasm.exists():
            continue
        with tempfile.TemporaryDirectory() as d:
            for i in range(n):
                write_case(Path(d), f"m{i:03}", {"x-hub-signature-256": sig, "content-type": "application/json"},
                           body, config={"secret": secret}, expect={"verdict": "accept"})
            result = run(weir, wasm, Path(d), config_file)
        cpu = sorted(c["usage"]["cpu_us"] for c in result["cases"])
        mem = max(c["usage"]["memory_peak_bytes"] for c in result["cases"])
        p90 = cpu[min(len(cpu) - 1, int(len(cpu) * 0.9))]
        print(f"{label:20} {wasm.stat().st_size / 1e6:6.2f} MB  CPU per trigger p50 {statistics.median(cpu) / 1000:.3f} ms"
              f"  p90 {p90 / 1000:.3f} ms  max {cpu[-1] / 1000:.3f} ms  memory peak {mem / 2**20:.2f} MiB"
              f"  ({result['passed']}/{n} accepted)")  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weir")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--rust-json-transform", type=Path)
    ap.add_argument("--rust-dir", help="with --measure: also measure the Rust twins (their .wasm files) there")
    ap.add_argument("--measure", type=int, default=0)
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="weir-py-check-") as tmp:
        tmp = Path(tmp)
        config_file = tmp / "weir.toml"
        config_file.write_text(WEIR_CONFIG)
        for name, make in [("hmac-verify", hmac_cases), ("json-transform", json_cases)]:
            cases = tmp / name
            cases.mkdir()
            make(cases)
            ok &= report(f"py-{name}", run(args.weir, args.out_dir / f"py-{name}.wasm", cases, config_file))
        cases = tmp / "passthrough"
        cases.mkdir()
        write_case(cases, "unchanged", {}, "not JSON, kept as it is: \u00e9\n", config={},
                   expect={"verdict": "accept", "body": "not JSON, kept as it is: \u00e9\n"})  # fmt: skip
        ok &= report("py-passthrough", run(args.weir, args.out_dir / "py-passthrough.wasm", cases, config_file))
        if args.rust_json_transform:
            cases = tmp / "edges"
            cases.mkdir()
            edge_cases(cases)
            ok &= compare_with_rust(args.weir, args.out_dir / "py-json-transform.wasm", args.rust_json_transform,
                                    cases, config_file)  # fmt: skip
        if args.measure:
            measure(args.weir, args.out_dir, args.measure, config_file, args.rust_dir)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
