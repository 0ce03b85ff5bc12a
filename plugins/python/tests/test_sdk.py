"""weir_plugin outside a component: verdict helpers, host imports through `testing_host`, fault, headers,
lists, JSON read and written as serde_json, and the native stand-in types against componentize-py's bindings."""

import json
import shutil
import subprocess
import sys
import tempfile
import unittest
from dataclasses import fields
from pathlib import Path

import _paths
import weir_plugin as weir
from weir_plugin import jsonc


class RecordingHost:
    def __init__(self, config):
        self.config_table, self.logs = config, []

    def log(self, level, message):
        self.logs.append((level.name, message))

    def config(self, key):
        return self.config_table.get(key)


def trigger(body=b"{}", headers=None):
    return weir.Trigger(
        tenant="acme", source="github", method="POST", path="/ingest/acme/github", query="",
        headers=[weir.Header(n, v) for n, v in (headers or [("content-type", "application/json"),
                                                            ("x-many", "1"), ("x-many", "2")])],
        body=body, received_at_ms=1_700_000_000_123, phase=weir.Phase.INGEST,
    )  # fmt: skip


class Sdk(unittest.TestCase):
    def setUp(self):
        self.host = weir.testing_host = RecordingHost({"drop": " a, b,,c ", "region": "eu"})

    def tearDown(self):
        weir.testing_host = None

    def test_verdict_helpers(self):
        self.assertEqual(weir.accept_unchanged(), weir.Verdict_Accept(weir.Accepted(None, [], [], None, None)))
        self.assertEqual(weir.accept_with_body("é").value.body, "é".encode())
        self.assertEqual(weir.reject(418, "teapot"), weir.Verdict_Reject(weir.Rejected(418, "teapot")))
        self.assertEqual(weir.drop(), weir.Verdict_Drop())
        v = weir.accept(b"x", set_headers={"Content-Type": "application/json"}, remove_headers=["X-Secret"],
                        idempotency_key="k1", route="r").value  # fmt: skip
        self.assertEqual(v.set_headers, [weir.Header("content-type", "application/json")])
        self.assertEqual((v.body, v.remove_headers, v.idempotency_key, v.route), (b"x", ["x-secret"], "k1", "r"))

    def test_headers_and_trigger(self):
        t = trigger()
        self.assertEqual(weir.find_header(t.headers, "Content-Type"), "application/json")
        self.assertEqual(weir.find_header(t.headers, "X-MANY"), "1")
        self.assertEqual(weir.header_values(t.headers, "x-Many"), ["1", "2"])
        self.assertIsNone(weir.find_header(t.headers, "missing"))
        self.assertEqual(weir.find_header({"A": "1"}, "a"), "1")
        self.assertEqual(weir.received_at_secs(t), 1_700_000_000)
        self.assertEqual(weir.body_str(t), "{}")
        self.assertIsNone(weir.body_str(trigger(b"\xff")))

    def test_config_logs_and_lists(self):
        self.assertEqual(weir.config("region"), "eu")
        self.assertIsNone(weir.config("nope"))
        self.assertEqual(weir.config_or("nope", "d"), "d")
        self.assertEqual(weir.config_list("drop"), ["a", "b", "c"])
        self.assertEqual(weir.config_list("nope"), [])
        self.assertEqual(weir.split_list(" , "), [])
        weir.info("hello")
        weir.trace("t")
        self.assertEqual(self.host.logs, [("INFO", "hello"), ("TRACE", "t")])

    def test_fault_logs_then_escapes_except_exception(self):
        def plugin(_):
            try:
                weir.fault("config `secret` is not set")
            except Exception:  # noqa: BLE001  (what a careless plugin writes)
                return weir.accept_unchanged()

        with self.assertRaises(weir.PluginFault):
            weir.export(plugin)().handle(trigger())
        self.assertEqual(self.host.logs, [("ERROR", "config `secret` is not set")])

    def test_host_imports_outside_a_component_say_so(self):
        weir.testing_host = None
        with self.assertRaisesRegex(RuntimeError, "only inside a component"):
            weir.config("x")


class Json(unittest.TestCase):
    def test_written_as_serde_json(self):
        cases = {
            '{"b":1,"a":{"d":[1,{"z":0,"y":0}],"c":null}}': '{"a":{"c":null,"d":[1,{"y":0,"z":0}]},"b":1}',
            '{"s":"\u00e9\\n\\u0001\\u007f/\\ud83d\\ude00"}': '{"s":"\u00e9\\n\\u0001\x7f/\U0001f600"}',
            '{"a":1e-5,"b":1e16,"c":1.5e-7,"d":1e15,"e":0.0001,"f":-0,"g":100000000000000000000}':
                '{"a":0.00001,"b":1e+16,"c":1.5e-7,"d":1000000000000000.0,"e":0.0001,"f":-0.0,"g":1e+20}',
            '{"a":1.0,"b":-2.50,"c":12345678901234567.0,"d":18446744073709551615,"e":-9223372036854775808}':
                '{"a":1.0,"b":-2.5,"c":1.2345678901234568e+16,"d":18446744073709551615,"e":-9223372036854775808}',
        }  # fmt: skip
        for text, want in cases.items():
            self.assertEqual(jsonc.dumps(jsonc.loads(text)).decode("utf-8"), want, text)

    def test_refused_as_serde_json_refuses(self):
        nested_ok = "[" * 127 + "]" * 127
        jsonc.loads(nested_ok)
        for bad in [b"NaN", b"[Infinity]", b"[1e400]", b'"\\ud800"', b"\xff", b"\xef\xbb\xbf{}", b"[1,]",
                    b"{'a':1}", b"[" * 128 + b"]" * 128, b"[" * 100000, b"1 2"]:  # fmt: skip
            with self.assertRaises(ValueError, msg=bad[:20]):
                jsonc.loads(bad)

    def test_body_json(self):
        self.assertEqual(weir.body_json(trigger(b'{"a":[1]}')), {"a": [1]})
        with self.assertRaises(ValueError):
            weir.body_json(trigger(b"not json"))


class NativeTypes(unittest.TestCase):
    """The stand-ins in weir_plugin/_native.py have the names and fields of componentize-py's bindings."""

    @unittest.skipUnless(
        shutil.which("componentize-py") or (Path(sys.executable).parent / "componentize-py").exists(),
        "componentize-py is not installed (run with plugins/python/.venv/bin/python)",
    )
    def test_native_types_match_the_bindings(self):
        from weir_plugin import _native

        tool = shutil.which("componentize-py") or str(Path(sys.executable).parent / "componentize-py")
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([tool, "-q", "-d", str(_paths.WIT), "-w", "trigger-plugin", "bindings", out], check=True)
            code = (
                "import json, dataclasses, enum\n"
                "from wit_world.imports import types, host\n"
                "out = {}\n"
                "for mod in (types, host):\n"
                "    for name, v in vars(mod).items():\n"
                "        if getattr(v, '__module__', None) != mod.__name__: continue\n"
                "        if dataclasses.is_dataclass(v): out[name] = ['fields', [f.name for f in dataclasses.fields(v)]]\n"
                "        elif isinstance(v, type) and issubclass(v, enum.Enum):\n"
                "            out[name] = ['enum', [[m.name, m.value] for m in v]]\n"
                "print(json.dumps(out))\n"
            )
            # componentize-py's generated code needs Python >= 3.11 (typing.Self).
            found = json.loads(subprocess.run([sys.executable, "-c", code], cwd=out, check=True,
                                              capture_output=True, text=True).stdout)  # fmt: skip
        self.assertEqual(
            sorted(found),
            ["Accepted", "Header", "Level", "Phase", "Rejected", "Trigger", "Verdict_Accept", "Verdict_Drop",
             "Verdict_Reject"],
        )  # fmt: skip
        for name, (kind, shape) in found.items():
            ours = getattr(_native, name)
            got = [f.name for f in fields(ours)] if kind == "fields" else [[m.name, m.value] for m in ours]
            self.assertEqual(got, shape, name)


if __name__ == "__main__":
    unittest.main()
