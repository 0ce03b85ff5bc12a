"""Text and header helpers shared by the SDK and its signature schemes; plain Python, no bindings.

Headers may be given as the trigger's `Header` records (`.name`, `.value`), as `(name, value)` pairs, or as
a mapping of name to value: every helper here takes any of the three.
"""

from collections.abc import Mapping as _Mapping

__all__ = ["find_header", "header_values", "split_list", "ascii_lower", "trim"]

# Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips. Python's `str.strip()`
# would also strip U+001C..U+001F: trimming exactly as the Rust SDK does keeps every SDK's verdicts equal.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def trim(text):
    """`text` without surrounding whitespace, as Rust's `str::trim`."""
    return text.strip(_WHITESPACE)


def ascii_lower(text):
    """`text` with A-Z lower-cased and nothing else changed (Rust's `to_ascii_lowercase`)."""
    return text.translate(_ASCII_LOWER)


def _pairs(headers):
    if isinstance(headers, _Mapping):
        return headers.items()
    return ((h.name, h.value) if hasattr(h, "name") else h for h in headers)


def header_values(headers, name):
    """Every value of the headers called `name` (compared case-insensitively), in arrival order."""
    wanted = ascii_lower(name)
    return [value for key, value in _pairs(headers) if ascii_lower(key) == wanted]


def find_header(headers, name):
    """The value of the first header called `name` (compared case-insensitively), or `None`."""
    wanted = ascii_lower(name)
    for key, value in _pairs(headers):
        if ascii_lower(key) == wanted:
            return value
    return None


def split_list(text):
    """Split a comma-separated list, trimming whitespace around each item and skipping empty items:
    `" a, b,,c "` gives `["a", "b", "c"]`."""
    return [item for item in (trim(part) for part in text.split(",")) if item]
