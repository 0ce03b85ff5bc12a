"""JSON read and written as serde_json (the Rust plugins' library) does, so a Python plugin's output is the
Rust twin's byte for byte: the same inputs refused, compact output with object keys sorted at every level.

Python's `json` alone differs at the edges: it takes `NaN`/`Infinity`, lone UTF-16 surrogates (`"\\ud800"`),
out-of-range numbers (`1e400` becomes inf) and any nesting depth, keeps integers beyond 64 bits exact, and
writes `1e-05`/`1e-07` where serde_json writes `0.00001`/`1e-7`. `loads` refuses what serde_json refuses and
reads as it does (an integer beyond i64/u64 becomes a float, `-0` is `-0.0`); `dumps` writes numbers as
serde_json (Ryu) does. The common case (no float outside Python's and Ryu's shared notation) takes the C
encoder's fast path.
"""

import json as _json

__all__ = ["loads", "dumps", "MAX_DEPTH"]

#: serde_json's recursion limit: a document nested deeper is refused.
MAX_DEPTH = 127

_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1


def loads(data):
    """Parse `data` (bytes as strict UTF-8, or str) as serde_json would; ValueError with a reason otherwise."""
    text = bytes(data).decode("utf-8") if not isinstance(data, str) else data  # UnicodeDecodeError: ValueError
    try:
        value = _json.loads(text, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError:
        raise ValueError("recursion limit exceeded") from None
    # Cheap guards (C-speed scans of the text) before the walks they justify.
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise ValueError("recursion limit exceeded")
    if "\\u" in text and not _encodable(value):
        raise ValueError("lone surrogate in a string escape")
    return value


def dumps(value):
    """Compact UTF-8 JSON of `value`, object keys sorted at every level, numbers as serde_json writes them."""
    if not _needs_ryu(value):
        return _json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    out = []
    _write(value, out)
    return "".join(out).encode("utf-8")


def _parse_float(s):
    value = float(s)
    if value in (_INF, -_INF):
        raise ValueError("number out of range")
    return value


def _parse_int(s):
    if s == "-0":
        return -0.0  # serde_json reads -0 as the float -0.0
    value = int(s)
    if _I64_MIN <= value <= _U64_MAX:
        return value
    return _parse_float(s)  # beyond 64 bits, serde_json reads a float


def _parse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _ryu(x):
    """`x` as Ryu (serde_json) writes it; Python's repr has the same shortest digits, in another notation."""
    if x == 0:
        return "-0.0" if str(x)[0] == "-" else "0.0"
    r = repr(abs(x))
    mantissa, _, exp = r.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    k = int(exp or 0) - len(frac)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    kk = n + k  # the value is 0.digits x 10^kk
    if 0 <= k and kk <= 16:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * -kk + digits
    else:  # serde_json 1.0.154 (zmij) writes a sign on the exponent: 1e+16, 1.5e-7
        text = (digits if n == 1 else f"{digits[0]}.{digits[1:]}") + ("e+" if kk > 0 else "e") + str(kk - 1)
    return "-" + text if x < 0 else text


def _needs_ryu(value):
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if "e" in repr(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _write(v, out):
    if isinstance(v, dict):
        out.append("{")
        for i, k in enumerate(sorted(v)):
            if i:
                out.append(",")
            out.append(_json.dumps(k, ensure_ascii=False))
            out.append(":")
            _write(v[k], out)
        out.append("}")
    elif isinstance(v, list):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _write(x, out)
        out.append("]")
    elif isinstance(v, float):
        out.append(_ryu(v))
    else:
        out.append(_json.dumps(v, ensure_ascii=False))


def _depth(value):
    best, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            best = max(best, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            best = max(best, d)
            stack.extend((x, d + 1) for x in v)
    return best


def _encodable(value):
    stack = [value]
    while stack:
        v = stack.pop()
        try:
            if isinstance(v, str):
                v.encode("utf-8")
            elif isinstance(v, dict):
                for k in v:
                    k.encode("utf-8")
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
        except UnicodeEncodeError:
            return False
    return True


_INF = float("inf")


# Pre-initialisation (see weir_plugin/crypto.py): every path once, at import, so whatever it imports is in the
# component's snapshot.
assert dumps(loads('{"b":[1.5e-7,-0,1e20,"\\u00e9"],"a":null}')) == '{"a":null,"b":[1.5e-7,-0.0,1e+20,"\u00e9"]}'.encode()
