"""What the ``layerfs`` command prints for people: sizes, columns, the status summary.

``--json`` prints the same facts for machines. The one thing read back is
a size a person types (``parse_size``: ``64K``, ``10GiB``), in driver
options and command flags alike.

- ``human_size``: bytes in binary units, three significant digits, as
  ``du -h`` does (``4.0 KiB``, ``12 MiB``).
- ``table_lines``: a header and aligned columns, as ``ctr snapshots ls``
  prints them; a value is never cut, a long one only pushes its column.
- ``status_lines``: the store's facts as ``Label: value`` lines, nested
  like the storage section of ``docker info``: the driver with what it
  probed (and, for devmapper, the pool's usage), then the counts. Each
  driver has a summary of the facts it reports; facts no summary knows are
  still printed, under a label made from their key.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from layerfs import errors

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

_PARSE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

#: A line of the status summary: a label, and a value or the nested lines.
Entry = tuple[str, "str | list[Entry]"]


def human_size(n: int) -> str:
    """Return ``n`` bytes in binary units: ``0 B``, ``1023 B``, ``1.5 KiB``, ``12 MiB``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{n} B"
            if abs(value) < 9.95:
                return f"{value:.1f} {unit}"
            if round(abs(value)) < 1024:
                return f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # the last unit always returns


def table_lines(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return a header line and one line per row, columns three spaces apart."""
    widths = [max(len(str(r[j])) for r in [header, *rows]) for j in range(len(header))]
    return [
        "   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _text(value: Any) -> str:
    """A fact as words: yes/no for booleans, lists joined with commas."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "none"
    return str(value)


def _label(key: str) -> str:
    """A label made from a key no summary knows: ``max_layers`` -> ``Max layers``."""
    words = key.replace("_", " ")
    return words[:1].upper() + words[1:]


def _generic(facts: dict[str, Any]) -> list[Entry]:
    """Every remaining fact, nested dicts as nested lines; empties ``facts``."""
    out: list[Entry] = []
    for key in sorted(facts):
        value = facts.pop(key)
        if isinstance(value, dict):
            out.append((_label(key), _generic(dict(value))))
        elif key.endswith("_bytes") and isinstance(value, int):
            out.append((_label(key[: -len("_bytes")]), human_size(value)))
        else:
            out.append((_label(key), _text(value)))
    return out


def _take(facts: dict[str, Any], pairs: Sequence[tuple[str, str]]) -> list[Entry]:
    """Entries for the ``(key, label)`` pairs present in ``facts``, removing them."""
    return [(label, _text(facts.pop(key))) for key, label in pairs if key in facts]


def _overlay(facts: dict[str, Any]) -> list[Entry]:
    probes = dict(facts.pop("probes", None) or {})
    out = _take(probes, [("backing_fs", "Backing filesystem"), ("d_type", "Supports d_type")])
    api = facts.pop("mount_api", None)
    layers = facts.pop("max_layers", None)
    if api is not None:
        out.append(("Mount API", f"{api} (up to {layers} layers)" if layers else str(api)))
    out += _take(
        probes,
        [
            ("kernel", "Kernel"),
            ("native_diff", "Native diff"),
            ("privileged", "Privileged"),
            ("userxattr", "userxattr"),
            ("new_mount_api", "New mount API"),
            ("lowerdir_plus", "lowerdir+"),
            ("redirect_dir_default", "redirect_dir default"),
            ("metacopy_default", "metacopy default"),
            ("explicit_off", "Mounts with redirect_dir, metacopy off"),
        ],
    )
    if isinstance(probes.get("page_size"), int):
        out.append(("mount(2) options limit", human_size(probes.pop("page_size"))))
    out += _generic(probes)
    out += _take(facts, [("xattr_prefix", "Xattr prefix"), ("volatile", "Volatile")])
    return out


def _fuse(facts: dict[str, Any]) -> list[Entry]:
    out: list[Entry] = []
    mode = facts.pop("data_mode", None)
    option = facts.pop("passthrough_option", None)
    if mode is not None:
        out.append(("Data mode", f"{mode} (option passthrough={option})" if option else str(mode)))
    out += _take(facts, [("threads", "Request threads"), ("xattr_prefix", "Xattr prefix")])
    init = dict(facts.pop("init", None) or {})
    init.pop("data_mode", None)
    out += _take(
        init,
        [
            ("protocol", "FUSE protocol"),
            ("granted", "INIT flags used"),
            ("offered", "INIT flags offered"),
        ],
    )
    out += _generic(init)
    out += _take(facts, [("probe_error", "Probe error"), ("mounted", "FUSE mounts")])
    return out


def _space(facts: dict[str, Any], what: str) -> str | None:
    """``1.2 GiB of 10 GiB (12%), 8.8 GiB free`` from ``<what>_used/total_bytes``."""
    used = facts.pop(f"{what}_used_bytes", None)
    total = facts.pop(f"{what}_total_bytes", None)
    if not isinstance(used, int) or not isinstance(total, int):
        return None
    pct = f" ({100 * used / total:.0f}%)" if total else ""
    return f"{human_size(used)} used of {human_size(total)}{pct}, {human_size(total - used)} free"


def _devmapper(facts: dict[str, Any]) -> list[Entry]:
    out: list[Entry] = []
    pool = facts.pop("pool", None)
    owned = facts.pop("pool_owned", None)
    loop = facts.pop("loopback", None)
    if pool is not None:
        how = []
        if owned is not None:
            how.append("made by layerfs" if owned else "given")
        if loop:
            how.append("on loop files")
        out.append(("Pool", f"{pool} ({', '.join(how)})" if how else str(pool)))
    st = dict(facts.pop("pool_status", None) or {})
    out += _take(st, [("mode", "Pool mode")])
    for what, label in (("data", "Data space"), ("metadata", "Metadata space")):
        space = _space(facts, what)
        if space is not None:
            out.append((label, space))
    out += _take(
        st,
        [
            ("needs_check", "Needs check"),
            ("error_if_no_space", "Error if no space"),
            ("transaction_id", "Transaction id"),
            ("held_root", "Held metadata root"),
        ],
    )
    for raw in ("meta_used", "meta_total", "data_used", "data_total"):
        st.pop(raw, None)  # block counts: the sizes above say the same
    out += _generic(st)
    out += _take(facts, [("fs", "Filesystem"), ("devices", "Thin devices")])
    ids = facts.pop("thin_id_range", None)
    if isinstance(ids, list | tuple) and len(ids) == 2:
        out.append(("Thin ids", f"{ids[0]}-{ids[1]}"))
    out += _take(facts, [("udev", "udev sync"), ("device_prefix", "Device prefix")])
    return out


#: The summary of each built-in driver's status; any other driver gets ``_generic``.
SUMMARIES: dict[str, Callable[[dict[str, Any]], list[Entry]]] = {
    "overlay": _overlay,
    "fuse": _fuse,
    "devmapper": _devmapper,
}


def status_entries(status: Mapping[str, Any]) -> list[Entry]:
    """Return the summary of ``Store.status()`` as nested entries (see the module doc)."""
    facts = dict(status)
    driver = str(facts.pop("driver", "?"))
    inner = dict(facts.pop("driver_status", None) or {})
    inner.pop("driver", None)
    home = inner.pop("home", None)
    section = SUMMARIES.get(driver, _generic)(inner) + _generic(inner)
    if home is not None:
        section.append(("Home", str(home)))
    counts = dict(facts.pop("snapshots", None) or {})
    total = sum(v for v in counts.values() if isinstance(v, int))
    kinds: list[Entry] = _take(
        counts, [("committed", "Committed"), ("active", "Active"), ("view", "Views")]
    )
    out: list[Entry] = [
        ("Root", _text(facts.pop("root", "?"))),
        ("Driver", driver),
        *[(f" {label}", value) for label, value in section],
        ("Snapshots", str(total)),
        *[(f" {label}", value) for label, value in kinds + _generic(counts)],
    ]
    if "mounts" in facts:
        out.append(("Mounted", _text(facts.pop("mounts"))))
    return out + _generic(facts)


def status_lines(status: Mapping[str, Any], width: int | None = None) -> list[str]:
    """Return the status summary as lines, values aligned and wrapped to ``width``.

    Args:
        status: what ``Store.status()`` returned.
        width: the terminal's width (default: the terminal's, or 80).
    """
    width = width or shutil.get_terminal_size().columns
    flat: list[tuple[str, str]] = []

    def walk(entries: list[Entry], indent: str) -> None:
        for label, value in entries:
            if isinstance(value, list):
                flat.append((f"{indent}{label}:", ""))
                walk(value, indent + " ")
            else:
                flat.append((f"{indent}{label}:", value))

    walk(status_entries(status), "")
    keyw = max(len(k) for k, _ in flat) + 2
    room = max(width - keyw, 20)
    out: list[str] = []
    for key, value in flat:
        lines = textwrap.wrap(value, room, break_long_words=False, break_on_hyphens=False)
        out.append((key.ljust(keyw) + (lines[0] if lines else "")).rstrip())
        out += [" " * keyw + line for line in lines[1:]]
    return out


def parse_size(value: object, key: str) -> int:
    """Parse ``"64K"``, ``"10GiB"``, ``"512"`` or an int into bytes.

    Raises:
        errors.InvalidArgument: not a size; the message names ``key``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", str(value))
        if not m:
            raise errors.InvalidArgument(
                f"option {key}={value!r} is not a size; use e.g. 64K, 512M, 10G"
            )
        size = int(m.group(1)) * _PARSE_UNITS[m.group(2).lower()]
    if size <= 0:
        raise errors.InvalidArgument(f"option {key}={value!r} must be positive")
    return size
