"""Stand-ins for the WIT types outside a component (plain CPython, for unit tests): the same names and fields
as componentize-py's bindings of wit/plugin.wit (tests/test_sdk.py checks them against freshly generated
bindings when componentize-py is installed)."""

from dataclasses import dataclass
from enum import Enum
from typing import List, Optional


@dataclass
class Header:
    """One HTTP header. Names are lower-case; a name may repeat."""

    name: str
    value: str


class Phase(Enum):
    """When the plugin runs."""

    INGEST = 0
    REPLAY = 1


@dataclass
class Trigger:
    """The trigger as Weir stores it; the same at ingest and at replay."""

    tenant: str
    source: str
    method: str
    path: str
    query: str
    headers: List[Header]
    body: bytes
    received_at_ms: int
    phase: Phase


@dataclass
class Accepted:
    """Accept the trigger, optionally transformed."""

    body: Optional[bytes]
    set_headers: List[Header]
    remove_headers: List[str]
    idempotency_key: Optional[str]
    route: Optional[str]


@dataclass
class Rejected:
    """Refuse the trigger: the sender gets `status` and `reason`."""

    status: int
    reason: str


@dataclass
class Verdict_Accept:  # noqa: N801 (the bindings' name)
    value: Accepted


@dataclass
class Verdict_Reject:  # noqa: N801
    value: Rejected


@dataclass
class Verdict_Drop:  # noqa: N801
    pass


class Level(Enum):
    """Log levels of the host interface."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
