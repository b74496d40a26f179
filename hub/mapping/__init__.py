"""Declarative, versioned field mappings between partner formats and canonical messages.

A mapping file (``mappings/*.toml``) names a mapping, its version, what it reads and what it
produces, and one line per output field::

    name = "vendor-meter-reading"
    version = 2
    source = "vendor.demo.reading"       # a partner format id or a catalogue message type
    target = "meter.reading"
    format = "json"                      # or "xml": then every "from" is an XPath 1.0 expression

    [fields]
    meter_id  = { from = "devId" }
    volume_m3 = { from = "reading.litres", convert = "litres_to_m3" }
    read_at   = { from = "ts", convert = "epoch_ms_to_iso", tz = "Asia/Shanghai" }
    source    = { const = "vendor" }
    valve = { from = "v", convert = "enum", values = { "0" = "open", "1" = "closed" }, default = "unknown" }
    note      = { template = "{devId}/{seq}", optional = true }
    tariff    = { from = "plan", lookup = "plans" }
    amount.total = { from = "amount.total", convert = "fen_to_yuan" }   # dotted targets nest

    [lookups.plans]
    "R1" = "residential"

Each field takes exactly one of ``from`` (``a.b[0].c``, or an XPath), ``const`` or ``template``
(``{path}`` placeholders); then optional ``convert`` (a converter name or a list applied in order,
see :mod:`hub.mapping.converters`; options such as ``tz``, ``values``, ``little_endian``, ``width``
and ``scale`` sit beside it) and ``lookup`` (a ``[lookups.<name>]`` table). A source that is absent,
null or empty text takes ``default``, is left out when ``optional = true``, and otherwise makes the
message unmappable. ``default`` is also ``enum``'s and ``lookup``'s fallback for unknown values.

XML input is parsed without DTDs, entity expansion or network access; a DOCTYPE is refused.
"""

from hub.mapping.converters import CONVERTERS, ConversionError
from hub.mapping.diff import FieldChange, diff
from hub.mapping.engine import Mapping
from hub.mapping.loader import MappingSet, UnknownMapping, check_mappings, load_mappings

__all__ = [
    "CONVERTERS",
    "ConversionError",
    "FieldChange",
    "Mapping",
    "MappingSet",
    "UnknownMapping",
    "check_mappings",
    "diff",
    "load_mappings",
]
