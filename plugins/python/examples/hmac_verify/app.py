"""hmac-verify: accepts only triggers whose webhook signature is valid, under the scheme the tenant's config
names (the Python twin of plugins/hmac-verify: same config, statuses, reasons and logs).

Tenant config (`[tenants.config]`):

| key               | meaning |
|-------------------|---------|
| `scheme`          | `github` (default), `stripe`, `standard-webhooks`, `shopify` or `slack` |
| `secret`          | required: the signing secret, as the provider shows it (`whsec_...` for Standard Webhooks) |
| `previous_secret` | optional: the previous secret, also accepted during a rotation (`secret_previous` still works) |
| `tolerance_secs`  | timestamped schemes (`stripe`, `standard-webhooks`, `slack`): max distance between the signed timestamp and the arrival time, either direction; default 300, 0 disables the check |

A missing, malformed, stale or wrong signature is the sender's problem: 401 with a reason saying which. An
unknown `scheme` is refused the same way (401, naming the scheme and the known ones): quarantining every
unverifiable request would let anyone fill the tenant's store. A missing `secret`, a Standard Webhooks secret
that is not base64 or a non-numeric `tolerance_secs` is a plugin fault (logged, then raised): the trigger is
quarantined (or answered 503 with `on_plugin_error = "reject"`) until the configuration is fixed.

Valid triggers are accepted unchanged (no body copy).
"""

import re

import weir_plugin as weir
from weir_plugin.util import trim
from weir_plugin.signature import DEFAULT_TOLERANCE_SECS, InvalidSecret, Mismatch, SignatureError, UnknownScheme
from weir_plugin.signature import parse_scheme, scheme_key, verify_trigger

#: The status of every refusal: the request could not be authenticated.
UNAUTHORIZED = 401

# What Rust's `u64::from_str` takes: an optional '+', then ASCII digits.
_U64 = re.compile(r"\+?[0-9]+")


def setting(key):
    """A config value, None when unset or blank."""
    value = weir.config(key)
    return value if value is not None and trim(value) else None


def tolerance_secs():
    value = setting("tolerance_secs")
    if value is None:
        return DEFAULT_TOLERANCE_SECS
    value = trim(value)
    if not _U64.fullmatch(value) or int(value) >= 2**64:
        weir.fault("hmac-verify: config `tolerance_secs` must be a whole number of seconds")
    return int(value)


def key(scheme, name):
    """The HMAC key of config `name`; None when unset, a fault when the scheme cannot use it."""
    secret = setting(name)
    if secret is None:
        return None
    try:
        return scheme_key(scheme, secret)
    except InvalidSecret as e:
        weir.fault(f"hmac-verify: config `{name}` is not a {scheme} secret: {e}")


def verify(scheme, key, trigger):
    """The index of the matching key, or the SignatureError (returned, not raised: the caller retries)."""
    # Only the timestamped schemes read the tolerance (one host call less per trigger for the others).
    tolerance = tolerance_secs() if scheme.is_timestamped else 0
    try:
        return verify_trigger(scheme, [key], trigger, tolerance)
    except SignatureError as e:
        return e


def handle(trigger):
    try:
        scheme = parse_scheme(setting("scheme") or "github")
    except UnknownScheme as unknown:
        reason = f"hmac-verify: cannot verify the request: {unknown}"
        weir.error(reason)
        return weir.reject(UNAUTHORIZED, reason)
    current = key(scheme, "secret")
    if current is None:
        weir.fault("hmac-verify: tenant config key `secret` is not set")
    result = verify(scheme, current, trigger)
    # The previous secret is read only when the current one did not match: a rotation costs the hot path
    # nothing.
    if isinstance(result, Mismatch):
        previous = key(scheme, "previous_secret")
        if previous is None:
            previous = key(scheme, "secret_previous")
        if previous is not None:
            result = verify(scheme, previous, trigger)
            if not isinstance(result, SignatureError):
                weir.info("hmac-verify: signature matched `previous_secret`; finish the rotation at the sender")
    if isinstance(result, SignatureError):
        reason = str(result)
        weir.warn(f"hmac-verify: rejected ({scheme}, {result.kind}): {reason}")
        return weir.reject(UNAUTHORIZED, reason)
    return weir.accept_unchanged()


WitWorld = weir.export(handle)
