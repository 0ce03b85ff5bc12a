"""weir_plugin: the Python SDK for Weir trigger plugins (the `weir:plugin/trigger-plugin@0.2.0` world of
`wit/plugin.wit`), built into a component with componentize-py. The twin of the Rust SDK (`plugins/sdk`).

Weir calls the component's `handle` once for every trigger of the tenant that installed it, in a **fresh
instance** each time (nothing carries over between triggers), and uses the returned verdict to accept
(optionally transformed), reject (4xx) or silently drop the trigger.

    import weir_plugin as weir

    def handle(trigger):
        event = weir.find_header(trigger.headers, "X-Event")
        if event is None:
            return weir.reject(400, "missing X-Event header")
        if event == "ping":
            return weir.drop()
        weir.info(f"{event} event from {trigger.source}")
        return weir.accept(set_headers={"x-event-kind": event}, route=event)

    WitWorld = weir.export(handle)   # componentize-py looks for `WitWorld` in the app module

Failure semantics: an exception that escapes `handle` traps the instance, and Weir treats a trap (like a
missed deadline, running out of memory, or a reject status outside 400..=499) as a *plugin fault*: the trigger
is stored quarantined (or answered 503 with `on_plugin_error = "reject"`). `fault(message)` is the way to say
so on purpose, for an operator mistake such as a missing secret; a bad request deserves `reject(4xx, ...)`.

Outside a component (plain CPython, e.g. your unit tests) everything but the host imports works: the WIT
types fall back to plain dataclasses with the same fields, and `log`/`config` call `weir_plugin.testing_host`
(set it to an object with `log(level, message)` and `config(key)`; by default they raise).
"""

from . import jsonc  # noqa: F401  (weir_plugin.jsonc)
from . import signature  # noqa: F401  (weir_plugin.signature, re-exported for convenience)
from .util import ascii_lower as _ascii_lower
from .util import find_header, header_values, split_list  # noqa: F401

try:  # Inside a component: componentize-py's bindings of wit/plugin.wit (generated at build time).
    import wit_world as _wit_world
    from wit_world.imports import host as _host
    from wit_world.imports.types import (  # noqa: F401
        Accepted,
        Header,
        Phase,
        Rejected,
        Trigger,
        Verdict_Accept,
        Verdict_Drop,
        Verdict_Reject,
    )

    Level = _host.Level
    IN_COMPONENT = True
except ModuleNotFoundError as _missing:
    if _missing.name not in ("wit_world", "wit_world.imports"):
        raise
    from ._native import (  # noqa: F401
        Accepted,
        Header,
        Level,
        Phase,
        Rejected,
        Trigger,
        Verdict_Accept,
        Verdict_Drop,
        Verdict_Reject,
    )

    _wit_world = None
    _host = None
    IN_COMPONENT = False

#: Version of the WIT package this SDK targets.
WIT_PACKAGE = "weir:plugin@0.2.0"

#: Outside a component, `log` and `config` call this object (see the module docs); ignored inside one.
testing_host = None


# ---------------------------------------------------------------------------------------------------------
# Exporting the plugin
# ---------------------------------------------------------------------------------------------------------


def export(handle):
    """The `WitWorld` class componentize-py exports, calling `handle(trigger) -> verdict`. Assign it at the top
    level of the app module: `WitWorld = weir_plugin.export(handle)`."""
    base = _wit_world.WitWorld if _wit_world is not None else object

    class WitWorld(base):
        def handle(self, trigger):
            return handle(trigger)

    WitWorld.__doc__ = handle.__doc__
    return WitWorld


class PluginFault(BaseException):
    """Raised by `fault`. A BaseException, so an `except Exception` in plugin code does not swallow it."""


# ---------------------------------------------------------------------------------------------------------
# Host imports
# ---------------------------------------------------------------------------------------------------------


def _host_or_testing():
    if _host is not None:
        return _host
    if testing_host is None:
        raise RuntimeError("weir_plugin: host imports (log, config) exist only inside a component")
    return testing_host


def log(level, message):
    """Log `message` at `level` (a `Level`), attributed to the tenant. The host truncates long messages and
    caps the number of calls per trigger: logging is for diagnostics, not for data."""
    _host_or_testing().log(level, message)


def trace(message):
    """`log` at `Level.TRACE`."""
    log(Level.TRACE, message)


def debug(message):
    """`log` at `Level.DEBUG`."""
    log(Level.DEBUG, message)


def info(message):
    """`log` at `Level.INFO`."""
    log(Level.INFO, message)


def warn(message):
    """`log` at `Level.WARN`."""
    log(Level.WARN, message)


def error(message):
    """`log` at `Level.ERROR`."""
    log(Level.ERROR, message)


def config(key):
    """The value of `key` in the tenant's `[tenants.config]` table, or `None` when it is not set."""
    return _host_or_testing().config(key)


def config_or(key, default):
    """`config(key)`, or `default` when the key is not set."""
    value = config(key)
    return default if value is None else value


def config_list(key):
    """`config(key)` read as a comma-separated list (see `split_list`); empty when the key is not set."""
    value = config(key)
    return [] if value is None else split_list(value)


def fault(message):
    """Fail the trigger as a *plugin fault*: log `message` at ERROR (so the tenant's log says why), then raise
    PluginFault, which traps the instance. For operator mistakes (a missing or invalid config value): Weir then
    quarantines the trigger (or answers 503 with `on_plugin_error = "reject"`) instead of blaming the sender."""
    error(message)
    raise PluginFault(message)


# ---------------------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------------------


def _header_list(headers):
    if headers is None:
        return []
    pairs = headers.items() if hasattr(headers, "items") else headers
    return [Header(_ascii_lower(name), value) for name, value in pairs]


def accept(body=None, *, set_headers=None, remove_headers=(), idempotency_key=None, route=None):
    """Accept the trigger. `body`: a new body (bytes, or str stored as UTF-8); `None` keeps the raw body (no
    copy). `set_headers`: a dict or (name, value) pairs to set on the stored trigger (replacing any of that
    name; names are lower-cased). `remove_headers`: names to remove. `idempotency_key`: used for
    deduplication and delivery instead of the sender's `Idempotency-Key`. `route`: a route name for the
    forwarder."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return Verdict_Accept(
        Accepted(
            body=body,
            set_headers=_header_list(set_headers),
            remove_headers=[_ascii_lower(n) for n in remove_headers],
            idempotency_key=idempotency_key,
            route=route,
        )
    )


def accept_unchanged():
    """Accept the trigger exactly as received (no body crosses back)."""
    return Verdict_Accept(Accepted(body=None, set_headers=[], remove_headers=[], idempotency_key=None, route=None))


def accept_with_body(body):
    """Accept the trigger, replacing its body (bytes, or str stored as UTF-8)."""
    return accept(body)


def reject(status, reason):
    """Refuse the trigger; the sender gets `status` and `reason`. `status` must be in 400..=499: Weir treats
    any other status as a plugin fault, not as a rejection."""
    return Verdict_Reject(Rejected(status=status, reason=reason))


def drop():
    """Acknowledge the sender (202) but neither store nor forward."""
    return Verdict_Drop()


# ---------------------------------------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------------------------------------


def received_at_secs(trigger):
    """The trigger's arrival time in whole seconds since the Unix epoch."""
    return trigger.received_at_ms // 1000


def body_str(trigger):
    """The body as text, or `None` when it is not valid UTF-8."""
    try:
        return bytes(trigger.body).decode("utf-8")
    except UnicodeDecodeError:
        return None


def body_json(trigger):
    """The body parsed as JSON, read as serde_json (the Rust SDK's plugins) reads it: strict UTF-8, no
    NaN/Infinity, no out-of-range number, no lone surrogate, at most 127 levels deep (see `jsonc`). Raises
    ValueError with a reason otherwise. `jsonc.dumps` writes JSON back as serde_json does."""
    return jsonc.loads(trigger.body)
