"""Webhook signature schemes from the field: GitHub, Stripe, Standard Webhooks (Svix and the many providers
that follow it), Shopify and Slack; the Python twin of the Rust SDK's `weir_plugin_sdk::signature`, with the
same rules, error kinds and reason texts (the shared vectors in `tests/vectors/signatures/` hold both).

Every verifier takes a list of candidate keys so that a secret can be rotated without downtime (current first,
then the previous one): the request is genuine if *any* key verifies it, and the verifier returns the index of
that key. Tags are compared in constant time. Time comes from the caller (the trigger's arrival time,
`received_at_secs(trigger)`), never from a clock, so a verdict can be reproduced at replay and in tests.

Failures raise a `SignatureError` whose `str()` is a reason fit for the sender (never a secret or an expected
signature) and whose `kind` names the case: `missing_header`, `malformed_header`,
`timestamp_out_of_tolerance`, `mismatch`.

    scheme = parse_scheme(config("scheme") or "github")     # UnknownScheme names the known ones
    keys = [scheme_key(scheme, s) for s in secrets]         # InvalidSecret: the operator's mistake
    try:
        index = verify_trigger(scheme, keys, trigger, DEFAULT_TOLERANCE_SECS)
    except SignatureError as e:
        return reject(401, str(e))

Plain Python (no bindings), so it can be unit-tested with any CPython.
"""

from enum import Enum as _Enum

from . import crypto as _crypto
from .util import find_header as _find_header
from .util import trim as _trim
from .util import ascii_lower as _ascii_lower

__all__ = [
    "DEFAULT_TOLERANCE_SECS",
    "Scheme",
    "SignatureError",
    "MissingHeader",
    "MalformedHeader",
    "TimestampOutOfTolerance",
    "Mismatch",
    "UnknownScheme",
    "InvalidSecret",
    "parse_scheme",
    "scheme_key",
    "verify",
    "verify_trigger",
    "github",
    "stripe",
    "standard_webhooks",
    "shopify",
    "slack",
]

#: Default distance allowed between a signed timestamp and the arrival time, in either direction: five
#: minutes, as Stripe, Slack and Standard Webhooks recommend.
DEFAULT_TOLERANCE_SECS = 300

_I64_MIN, _I64_MAX, _U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


class SignatureError(Exception):
    """Why a signature check failed; `str(e)` is the reason, `e.kind` the case."""

    kind = ""


class MissingHeader(SignatureError):
    """A header the scheme needs is absent or blank (`header`: its display name)."""

    kind = "missing_header"

    def __init__(self, header):
        super().__init__(f"missing {header} header")
        self.header = header


class MalformedHeader(SignatureError):
    """A header does not have the scheme's shape."""

    kind = "malformed_header"

    def __init__(self, header, expected):
        super().__init__(f"malformed {header} header (expected {expected})")
        self.header, self.expected = header, expected


class TimestampOutOfTolerance(SignatureError):
    """A genuine signature whose timestamp is too far from the arrival time (a replayed request, or a badly
    skewed clock). Only raised once the signature matched, so a forger learns nothing from it. `age_secs`:
    arrival time minus the signed time (negative: signed in the future)."""

    kind = "timestamp_out_of_tolerance"

    def __init__(self, age_secs, tolerance_secs):
        when = f"{age_secs}s before" if age_secs >= 0 else f"{-age_secs}s after"
        super().__init__(
            f"signature timestamp is {when} the arrival time, outside the tolerance of {tolerance_secs}s"
        )
        self.age_secs, self.tolerance_secs = age_secs, tolerance_secs


class Mismatch(SignatureError):
    """No signature of the request matches it under any of the keys: a wrong secret, or a body or signed
    header changed on the way."""

    kind = "mismatch"

    def __init__(self):
        super().__init__("signature mismatch: no signature matched the request under the configured secrets")


class UnknownScheme(ValueError):
    """A scheme name that is not one of `Scheme`; `str(e)` names the known ones."""

    def __init__(self, name):
        super().__init__(
            f"unknown signature scheme {_rust_debug(name)} "
            "(expected github, stripe, standard-webhooks, shopify or slack)"
        )
        self.name = name


class InvalidSecret(ValueError):
    """A configured secret that the scheme cannot use (`kind`: `empty` or `not_base64`)."""

    def __init__(self, kind):
        super().__init__(
            "the secret is empty" if kind == "empty" else "a Standard Webhooks secret must be whsec_ followed by base64"
        )
        self.kind = kind


def _rust_debug(text):
    """`text` quoted as Rust's `{:?}` does, so UnknownScheme's reason is the Rust SDK's byte for byte."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c in "\t\r\n\0":
            out.append({"\t": "\\t", "\r": "\\r", "\n": "\\n", "\0": "\\0"}[c])
        elif c.isprintable():
            out.append(c)
        else:
            out.append("\\u{%x}" % ord(c))
    return '"' + "".join(out) + '"'


# ---------------------------------------------------------------------------------------------------------
# The pieces every scheme shares, each written once.
# ---------------------------------------------------------------------------------------------------------


def _required(headers, name, display):
    """The trimmed value of header `name`; MissingHeader(display) when it is absent or blank."""
    value = _find_header(headers, name)
    value = _trim(value) if value is not None else ""
    if not value:
        raise MissingHeader(display)
    return value


def _parse_unix_secs(value):
    """Unix seconds written as plain ASCII decimal digits (no sign, no fraction), within u64; else None."""
    if not value or not value.isascii() or not value.isdigit():
        return None
    secs = int(value)
    return secs if secs <= _U64_MAX else None


def _first_match(keys, tags, message):
    """The index of the first key whose HMAC of `message` verifies one of `tags` (constant-time each)."""
    for index, key in enumerate(keys):
        mac = _crypto.hmac_sha256(key, message)
        if any(_crypto.constant_time_eq(mac, tag) for tag in tags):
            return index
    raise Mismatch()


def _check_tolerance(signed_secs, now_secs, tolerance_secs):
    """`signed_secs` must be within `tolerance_secs` of `now_secs`, either direction; 0 disables the check."""
    age = now_secs - signed_secs
    if tolerance_secs > 0 and abs(age) > tolerance_secs:
        raise TimestampOutOfTolerance(max(_I64_MIN, min(_I64_MAX, age)), tolerance_secs)


def _bytes(body):
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


# ---------------------------------------------------------------------------------------------------------
# The schemes
# ---------------------------------------------------------------------------------------------------------


def github(keys, headers, body):
    """GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` (prefix and hex in either
    case). Returns the index of the key that matched."""
    display = "X-Hub-Signature-256"
    value = _required(headers, "x-hub-signature-256", display)
    tag = None
    if _ascii_lower(value[:7]) == "sha256=":
        tag = _crypto.hex_decode(value[7:], _crypto.TAG_LEN)
    if tag is None:
        raise MalformedHeader(display, "sha256=<64 hex digits>")
    return _first_match(keys, [tag], _bytes(body))


def stripe(keys, headers, body, now_secs, tolerance_secs=DEFAULT_TOLERANCE_SECS):
    """Stripe: `Stripe-Signature: t=<unix secs>,v1=<hex>[,v1=<hex>...]`, each `v1` the HMAC-SHA256 of
    `"{t}.{raw body}"` under the endpoint's `whsec_...` secret used as it is. Other schemes (`v0`) and unknown
    items are ignored; `t` must appear once and be within the tolerance of `now_secs`, either direction."""
    display = "Stripe-Signature"
    malformed = MalformedHeader(display, "t=<unix seconds>,v1=<64 hex digits>")
    timestamp, tags = None, []
    for item in (_trim(i) for i in _required(headers, "stripe-signature", display).split(",")):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep:
            raise malformed
        key = _trim(key)
        if key == "t":
            if timestamp is not None:
                raise malformed
            timestamp = _parse_unix_secs(_trim(val))
            if timestamp is None:
                raise malformed
        elif key == "v1":
            tag = _crypto.hex_decode(_trim(val), _crypto.TAG_LEN)
            if tag is not None:  # a malformed v1 could never match: skipped
                tags.append(tag)
    if timestamp is None or not tags:
        raise malformed
    # Stripe's libraries sign the decimal of the parsed `t`.
    matched = _first_match(keys, tags, b"%d." % timestamp + _bytes(body))
    _check_tolerance(timestamp, now_secs, tolerance_secs)
    return matched


# (lower-case name, display name) of the three Standard Webhooks headers, and Svix's own names.
_WEBHOOK_NAMES = (("webhook-id", "Webhook-Id"), ("webhook-timestamp", "Webhook-Timestamp"),
                  ("webhook-signature", "Webhook-Signature"))  # fmt: skip
_SVIX_NAMES = (("svix-id", "Svix-Id"), ("svix-timestamp", "Svix-Timestamp"), ("svix-signature", "Svix-Signature"))


def _any_in(names, headers):
    return any(_find_header(headers, name) is not None for name, _ in names)


def standard_webhooks_secret(secret):
    """The key of a Standard Webhooks secret: the base64 after the optional `whsec_` prefix."""
    encoded = _trim(secret)
    if encoded.startswith("whsec_"):
        encoded = encoded[len("whsec_") :]
    key = _crypto.base64_decode(encoded)
    if key is None:
        raise InvalidSecret("not_base64")
    if not key:
        raise InvalidSecret("empty")
    return key


def standard_webhooks(keys, headers, body, now_secs, tolerance_secs=DEFAULT_TOLERANCE_SECS):
    """Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
    space-separated list of `v1,<base64>` signatures, each the HMAC-SHA256 of `"{id}.{timestamp}.{raw body}"`
    under the bytes of a `whsec_<base64>` secret (`standard_webhooks_secret`). Other versions (`v1a,`) are
    skipped. Svix's names (`svix-id`, ...) are read when the request carries none of the `webhook-*` ones (so
    a missing `webhook-*` header is reported, not papered over)."""
    names = _SVIX_NAMES if not _any_in(_WEBHOOK_NAMES, headers) and _any_in(_SVIX_NAMES, headers) else _WEBHOOK_NAMES
    (id_name, id_display), (ts_name, ts_display), (sig_name, sig_display) = names
    msg_id = _required(headers, id_name, id_display)
    timestamp_text = _required(headers, ts_name, ts_display)
    signatures = _required(headers, sig_name, sig_display)
    timestamp = _parse_unix_secs(timestamp_text)
    if timestamp is None:
        raise MalformedHeader(ts_display, "<unix seconds>")
    tags = []
    for item in signatures.split(" "):
        version, sep, sig = item.partition(",")
        if sep and version == "v1":
            tag = _crypto.base64_decode(sig, _crypto.TAG_LEN)
            if tag is not None:
                tags.append(tag)
    if not tags:
        raise MalformedHeader(sig_display, "space-separated v1,<base64 of 32 bytes>")
    # The reference libraries sign the decimal of the parsed timestamp.
    matched = _first_match(keys, tags, b"%s.%d." % (msg_id.encode("utf-8"), timestamp) + _bytes(body))
    _check_tolerance(timestamp, now_secs, tolerance_secs)
    return matched


def shopify(keys, headers, body):
    """Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the raw body>` under the app's client secret.
    No signed timestamp, so no tolerance. Returns the index of the key that matched."""
    display = "X-Shopify-Hmac-Sha256"
    tag = _crypto.base64_decode(_required(headers, "x-shopify-hmac-sha256", display), _crypto.TAG_LEN)
    if tag is None:
        raise MalformedHeader(display, "base64 of a 32-byte HMAC-SHA256")
    return _first_match(keys, [tag], _bytes(body))


def slack(keys, headers, body, now_secs, tolerance_secs=DEFAULT_TOLERANCE_SECS):
    """Slack: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 of `"v0:{X-Slack-Request-Timestamp}:{raw body}"`
    under the app's signing secret; the timestamp must be within the tolerance, either direction."""
    signature = _required(headers, "x-slack-signature", "X-Slack-Signature")
    timestamp_text = _required(headers, "x-slack-request-timestamp", "X-Slack-Request-Timestamp")
    timestamp = _parse_unix_secs(timestamp_text)
    if timestamp is None:
        raise MalformedHeader("X-Slack-Request-Timestamp", "<unix seconds>")
    tag = _crypto.hex_decode(signature[3:], _crypto.TAG_LEN) if signature.startswith("v0=") else None
    if tag is None:
        raise MalformedHeader("X-Slack-Signature", "v0=<64 hex digits>")
    # Slack signs the header's text as sent.
    matched = _first_match(keys, [tag], b"v0:" + timestamp_text.encode("utf-8") + b":" + _bytes(body))
    _check_tolerance(timestamp, now_secs, tolerance_secs)
    return matched


# ---------------------------------------------------------------------------------------------------------
# Picking a scheme by name
# ---------------------------------------------------------------------------------------------------------


class Scheme(_Enum):
    """A webhook signature scheme, by the name a tenant's config gives it (`Scheme.GITHUB.value == "github"`)."""

    GITHUB = "github"
    STRIPE = "stripe"
    STANDARD_WEBHOOKS = "standard-webhooks"
    SHOPIFY = "shopify"
    SLACK = "slack"

    def __str__(self):
        return self.value

    @property
    def is_timestamped(self):
        """Whether the scheme signs a timestamp (and so checks a tolerance)."""
        return self in (Scheme.STRIPE, Scheme.STANDARD_WEBHOOKS, Scheme.SLACK)


def parse_scheme(name):
    """The scheme of a config name (surrounding whitespace and ASCII case ignored); UnknownScheme otherwise."""
    wanted = _ascii_lower(_trim(name))
    for scheme in Scheme:
        if scheme.value == wanted:
            return scheme
    raise UnknownScheme(name)


def scheme_key(scheme, secret):
    """The HMAC key of a secret as the provider hands it out: the bytes of a Standard Webhooks
    `whsec_<base64>` secret, the UTF-8 bytes of any other (Stripe's `whsec_...` secrets included: Stripe uses
    them as they are). InvalidSecret when the scheme cannot use it."""
    key = standard_webhooks_secret(secret) if scheme is Scheme.STANDARD_WEBHOOKS else secret.encode("utf-8")
    if not key:
        raise InvalidSecret("empty")
    return key


def verify(scheme, keys, headers, body, now_secs, tolerance_secs=DEFAULT_TOLERANCE_SECS):
    """Verify a request's `headers` and raw `body` (bytes; str is taken as UTF-8) against `keys` (see
    `scheme_key`) at `now_secs`. `tolerance_secs` applies to the timestamped schemes; 0 disables the
    timestamp check. Returns the index of the key that matched; raises SignatureError."""
    if scheme is Scheme.GITHUB:
        return github(keys, headers, body)
    if scheme is Scheme.STRIPE:
        return stripe(keys, headers, body, now_secs, tolerance_secs)
    if scheme is Scheme.STANDARD_WEBHOOKS:
        return standard_webhooks(keys, headers, body, now_secs, tolerance_secs)
    if scheme is Scheme.SHOPIFY:
        return shopify(keys, headers, body)
    return slack(keys, headers, body, now_secs, tolerance_secs)


def verify_trigger(scheme, keys, trigger, tolerance_secs=DEFAULT_TOLERANCE_SECS):
    """`verify` on a trigger, at its arrival time."""
    return verify(scheme, keys, trigger.headers, trigger.body, trigger.received_at_ms // 1000, tolerance_secs)
