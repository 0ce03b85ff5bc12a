"""weir_plugin.signature against the shared vectors (tests/vectors/signatures/*.json, made by the providers'
official libraries; format in tests/vectors/README.md) at their `now`, as the Rust SDK's vectors.rs runs them,
plus the reasons every SDK must give word for word."""

import json
import unittest

import _paths  # noqa: F401  (puts the SDK on sys.path)
from weir_plugin import signature as sig
from weir_plugin.signature import Scheme

SCHEMES = ["github", "stripe", "standard-webhooks", "shopify", "slack"]


def load(name):
    with open(_paths.VECTORS / f"{name}.json", encoding="utf-8") as f:
        data = json.load(f)
    scheme = sig.parse_scheme(data["scheme"])
    assert scheme.value == name, name
    data["scheme"] = scheme
    data["keys"] = [sig.scheme_key(scheme, s) for s in data["secrets"]]
    data.setdefault("tolerance_secs", sig.DEFAULT_TOLERANCE_SECS)
    return data


def outcome(data, case, keys=None, tolerance=None):
    """`("ok", index)` or `(kind, reason)`."""
    try:
        index = sig.verify(
            data["scheme"],
            data["keys"] if keys is None else keys,
            case["headers"],
            case["body"].encode("utf-8"),
            data["now"],
            data["tolerance_secs"] if tolerance is None else tolerance,
        )
        return ("ok", index)
    except sig.SignatureError as e:
        return (e.kind, str(e))


class Vectors(unittest.TestCase):
    def test_every_vector_gets_its_expected_outcome_at_now(self):
        ran = 0
        for name in SCHEMES:
            data = load(name)
            for case in data["cases"]:
                with self.subTest(f"{name}/{case['name']}"):
                    got = outcome(data, case)
                    if case["expect"] == "ok":
                        self.assertEqual(got, ("ok", case["matched_secret"]))
                    else:
                        self.assertEqual(got[0], case["expect"], got)
                ran += 1
        self.assertGreaterEqual(ran, 50)

    def test_the_vectors_cover_every_scheme_rotation_and_error(self):
        for name in SCHEMES:
            data = load(name)
            expects = {(c["expect"], c.get("matched_secret")) for c in data["cases"]}
            self.assertEqual(len(data["keys"]), 2, name)
            for want in [("ok", 0), ("ok", 1), ("mismatch", None), ("missing_header", None), ("malformed_header", None)]:
                self.assertIn(want, expects, name)
            self.assertEqual(("timestamp_out_of_tolerance", None) in expects, data["scheme"].is_timestamped, name)

    def test_future_timestamps_are_refused_as_the_past_ones(self):
        futures = 0
        for name in SCHEMES:
            data = load(name)
            for case in data["cases"]:
                if case.get("timestamp", 0) > data["now"]:
                    kind, reason = outcome(data, case)
                    self.assertEqual(kind, "timestamp_out_of_tolerance", f"{name}/{case['name']}")
                    self.assertIn("s after the arrival time", reason)
                    futures += 1
        self.assertEqual(futures, 3, "stripe, standard-webhooks and slack each have one")

    def test_rotated_vectors_need_the_previous_secret(self):
        for name in SCHEMES:
            data = load(name)
            for case in (c for c in data["cases"] if c.get("matched_secret") == 1):
                kind, _ = outcome(data, case, keys=data["keys"][:1])
                self.assertEqual(kind, "mismatch", f"{name}/{case['name']}")

    def test_a_zero_tolerance_accepts_genuine_stale_vectors(self):
        for name in SCHEMES:
            data = load(name)
            for case in (c for c in data["cases"] if c["expect"] == "timestamp_out_of_tolerance"):
                self.assertEqual(outcome(data, case, tolerance=0), ("ok", 0), f"{name}/{case['name']}")


class Reasons(unittest.TestCase):
    """The texts of the Rust SDK's SignatureError/UnknownScheme/InvalidSecret Display, word for word."""

    def test_error_reasons(self):
        self.assertEqual(str(sig.MissingHeader("Webhook-Id")), "missing Webhook-Id header")
        self.assertEqual(
            str(sig.MalformedHeader("X-Hub-Signature-256", "sha256=<64 hex digits>")),
            "malformed X-Hub-Signature-256 header (expected sha256=<64 hex digits>)",
        )
        self.assertEqual(
            str(sig.Mismatch()),
            "signature mismatch: no signature matched the request under the configured secrets",
        )
        self.assertEqual(
            str(sig.TimestampOutOfTolerance(301, 300)),
            "signature timestamp is 301s before the arrival time, outside the tolerance of 300s",
        )
        self.assertEqual(
            str(sig.TimestampOutOfTolerance(-301, 300)),
            "signature timestamp is 301s after the arrival time, outside the tolerance of 300s",
        )

    def test_tolerance_both_directions_and_clamped(self):
        sig._check_tolerance(1000, 1300, 300)
        sig._check_tolerance(1300, 1000, 300)
        sig._check_tolerance(0, 2**64 - 1, 0)
        with self.assertRaises(sig.TimestampOutOfTolerance) as past:
            sig._check_tolerance(1000, 1301, 300)
        self.assertEqual(past.exception.age_secs, 301)
        with self.assertRaises(sig.TimestampOutOfTolerance) as huge:
            sig._check_tolerance(0, 2**64 - 1, 1)
        self.assertEqual(huge.exception.age_secs, 2**63 - 1, "clamped to i64 as in Rust")

    def test_scheme_names(self):
        for scheme in Scheme:
            self.assertIs(sig.parse_scheme(scheme.value), scheme)
            self.assertEqual(str(scheme), scheme.value)
        self.assertIs(sig.parse_scheme(" Stripe "), Scheme.STRIPE)
        self.assertEqual(
            str(sig.UnknownScheme("git-hub")),
            'unknown signature scheme "git-hub" (expected github, stripe, standard-webhooks, shopify or slack)',
        )
        self.assertIn('"say \\"hi\\"\\n"', str(sig.UnknownScheme('say "hi"\n')), "Rust's {:?} quoting")
        for bad in ["", "svix", "slac\u212a"]:  # the Kelvin sign lower-cases to k in Unicode, not in ASCII
            with self.assertRaises(sig.UnknownScheme):
                sig.parse_scheme(bad)

    def test_keys_by_scheme(self):
        self.assertEqual(sig.scheme_key(Scheme.STRIPE, "whsec_abc"), b"whsec_abc", "Stripe uses it as it is")
        self.assertEqual(sig.scheme_key(Scheme.STANDARD_WEBHOOKS, "whsec_AQID"), b"\x01\x02\x03")
        self.assertEqual(sig.scheme_key(Scheme.STANDARD_WEBHOOKS, " AQID "), b"\x01\x02\x03")
        with self.assertRaises(sig.InvalidSecret) as e:
            sig.scheme_key(Scheme.STANDARD_WEBHOOKS, "whsec_not base64!")
        self.assertEqual(str(e.exception), "a Standard Webhooks secret must be whsec_ followed by base64")
        for scheme, secret in [(Scheme.STANDARD_WEBHOOKS, "whsec_"), (Scheme.GITHUB, "")]:
            with self.assertRaises(sig.InvalidSecret) as e:
                sig.scheme_key(scheme, secret)
            self.assertEqual(str(e.exception), "the secret is empty")


class Schemes(unittest.TestCase):
    """The providers' documented examples and the Rust SDK's edge cases."""

    def test_github_documented_example(self):
        key, body = b"It's a Secret to Everybody", b"Hello, World!"
        header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        self.assertEqual(sig.github([key], {"X-Hub-Signature-256": header}, body), 0)
        self.assertEqual(sig.github([b"x", key], {"x-hub-signature-256": header.upper()}, body), 1)
        for bad in ["sha1=abcd", "sha256=zz", "sha256", "sha25\u00e9=00", header[:-2], "sha256=" + "0 " * 32]:
            with self.assertRaises(sig.MalformedHeader, msg=bad):
                sig.github([key], {"x-hub-signature-256": bad}, body)
        with self.assertRaises(sig.MissingHeader):
            sig.github([key], {"x-hub-signature-256": "  "}, body)
        with self.assertRaises(sig.Mismatch):
            sig.github([], {"x-hub-signature-256": header}, body)

    def test_stripe_parse(self):
        v1 = "aa" * 32
        for bad in [f"v1={v1}", f"t=abc,v1={v1}", f"t=-1,v1={v1}", f"t=1,t=2,v1={v1}", "garbage", "t=1",
                    "t=1,v1=abcd", f"t=1,v0={v1}", f"t=\u0661,v1={v1}"]:  # fmt: skip
            with self.assertRaises(sig.MalformedHeader, msg=bad):
                sig.stripe([b"k"], {"stripe-signature": bad}, b"", 1)

    def test_stripe_known_vector(self):
        header = "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        self.assertEqual(sig.stripe([b"whsec_test"], {"stripe-signature": header}, b"{}", 1_700_000_100, 300), 0)

    def test_standard_webhooks_specification_example(self):
        key = sig.standard_webhooks_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        headers = {
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        }
        self.assertEqual(sig.standard_webhooks([key], headers, b'{"test": 2432232314}', 1614265330, 300), 0)

    def test_standard_webhooks_svix_names_only_without_webhook_names(self):
        key = sig.standard_webhooks_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        svix = [
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            ("svix-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ]
        body = b'{"test": 2432232314}'
        self.assertEqual(sig.standard_webhooks([key], svix, body, 1614265330, 300), 0)
        with self.assertRaises(sig.MissingHeader) as e:
            sig.standard_webhooks([key], svix + [("webhook-id", "x")], body, 1614265330, 300)
        self.assertEqual(str(e.exception), "missing Webhook-Timestamp header")
        with self.assertRaises(sig.MissingHeader) as e:
            sig.standard_webhooks([key], svix[:2], body, 1614265330, 300)
        self.assertEqual(str(e.exception), "missing Svix-Signature header")

    def test_slack_documented_example(self):
        key = b"8f742231b10e8888abcd99yyyzzz85a5"
        body = (
            b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGl"
            b"gcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
        )
        headers = {
            "X-Slack-Request-Timestamp": "1531420618",
            "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        }
        self.assertEqual(sig.slack([b"other", key], headers, body, 1531420618 + 60, 300), 1)
        with self.assertRaises(sig.TimestampOutOfTolerance):
            sig.slack([key], headers, body, 1531420618 + 301, 300)


if __name__ == "__main__":
    unittest.main()
