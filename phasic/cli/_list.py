"""What the ``phasic cache list`` and ``phasic cache import`` commands show about store entries.

A listing reads only what it needs from each entry: the head and index in the entry's
HDF5 userblock (64 bytes plus the index JSON), with the store's own
:func:`phasic.store._entry.read_head`, never through h5py.  Only a compressed entry, whose
index holds no array shapes, is read whole by the store's checked reader
(:func:`phasic.store._entry.read_entry`, its SHA-256 first) to count its vertices.  A
listing never checks an indexed entry's content checksum (``phasic cache verify`` does),
never opens anything that is not a regular file, and never moves or changes an entry: a
file whose head or index is damaged or inconsistent with its size, or a compressed entry
that fails its check, is reported as ``damaged``, an entry of another user as
``unreadable``, a format-1 entry (which the store no longer reads) as ``legacy`` and an
entry of a newer store format as ``newer``, each with the reason.

Parameters stored in an entry's key material are type-tagged (see :mod:`phasic.keys`);
:func:`decode_value` turns them back into plain Python values for display.

Examples
--------
>>> decode_value(["float", "0x1.0000000000000p+1"])
2.0
>>> decode_value(["tuple", [["int", "3"], ["str", "a"]]])
(3, 'a')
>>> format_params({"n": 4, "label": "pop A"})
"n=4 label='pop A'"
"""

from __future__ import annotations

import datetime
import json
import os
import stat

__all__ = [
    "decode_value",
    "format_params",
    "entry_info",
    "list_entries",
    "format_listing",
    "format_size",
    "provenance_summary",
    "jsonable_rows",
]

#: How :func:`entry_info` shows a status of :func:`phasic.store._entry.read_entry`.
_STATUS_WORD = {"bad": "damaged", "newer": "newer", "legacy": "legacy"}
#: Datasets whose first dimension is the number of vertices, by kind.
_VERTEX_ARRAYS = {"graphs": ("states",), "traces": ("xinit", "order")}


class _Shown:
    """A value shown by its text (repr gives the text unquoted)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text

    def __eq__(self, other):
        return isinstance(other, _Shown) and other.text == self.text

    def __hash__(self):
        return hash(self.text)


def decode_value(enc):
    """Plain Python value of a type-tagged key-material value (for display only).

    Parameters
    ----------
    enc : object
        A value as :func:`phasic.keys.encode_value` wrote it.

    Returns
    -------
    object
        int, float, bool, None, str, complex, tuple, list, dict or set for those tags;
        values that are not stored in full (numpy arrays, functions, objects) come back
        as a short description that prints without quotes, e.g. ``ndarray(<f8, shape=[3])``.
        Anything unrecognised comes back as its JSON text.
    """
    try:
        return _decode(enc)
    except (TypeError, ValueError, IndexError, KeyError, OverflowError, AttributeError):
        return _Shown(json.dumps(enc, separators=(",", ":"))[:200])


def _decode(enc):
    tag = enc[0]
    if tag == "int":
        return int(enc[1])
    if tag == "float":
        return float.fromhex(enc[1])
    if tag in ("bool", "str"):
        return enc[1]
    if tag == "none":
        return None
    if tag == "complex":
        return complex(float.fromhex(enc[1]), float.fromhex(enc[2]))
    if tag == "bytes":
        return bytes.fromhex(enc[1])
    if tag == "npscalar":
        import numpy as np

        return np.frombuffer(bytes.fromhex(enc[2]), np.dtype(enc[1]))[0].item()
    if tag == "ndarray":
        return _Shown(f"ndarray({enc[1]}, shape={list(enc[2])})")
    if tag in ("tuple", "list"):
        items = [_decode(v) for v in enc[1]]
        return tuple(items) if tag == "tuple" else items
    if tag == "set":
        return {_decode(v) for v in enc[1]}
    if tag == "dict":
        return {_decode(k): _decode(v) for k, v in enc[1]}
    if tag == "function":
        return _Shown(f"<function {enc[1]['name']}>")
    if tag in ("extfunc", "named"):
        return _Shown(f"<{enc[-1]}>")
    if tag == "object":
        return _Shown(f"<{enc[1]} object>")
    if tag == "partial":
        return _Shown(f"partial({_decode(enc[1])!r}, ...)")
    if tag == "method":
        return _Shown(f"<method {enc[2][1]['name']}>")
    raise ValueError(tag)


def _jsonable(value):
    """`value` with descriptions as strings, tuples/sets as lists and non-str keys as text."""
    if isinstance(value, _Shown):
        return value.text
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, complex):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def format_params(params):
    """``k=v k=v`` of a decoded parameter dict (``-`` when there is none)."""
    if not params:
        return "-"
    return " ".join(f"{k}={v!r}" for k, v in params.items())


def format_size(nbytes):
    """A size in B, KiB, MiB or GiB."""
    if nbytes is None:
        return "-"
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def _iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds")


def _model_fields(attrs):
    """``callback``, ``module`` and decoded ``params`` from an entry's attributes."""
    callback = attrs.get("callback")
    module = attrs.get("callback_module") or attrs.get("module")
    params = None
    material = attrs.get("key_material")
    if isinstance(material, str):
        try:
            doc = json.loads(material)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            raw = doc.get("params")
            if isinstance(raw, dict):
                params = {k: decode_value(v) for k, v in raw.items()}
            cb = doc.get("callback")
            if isinstance(cb, list) and len(cb) > 1 and isinstance(cb[1], dict):
                callback = callback or cb[1].get("name")
                module = module or cb[1].get("module")
    return callback, module, params


def entry_info(store, kind, key):
    """What ``phasic cache list`` shows about one entry.

    Parameters
    ----------
    store : phasic.store.Store
    kind : {"graphs", "traces"}
    key : str

    Returns
    -------
    dict or None
        ``kind``, ``key``, ``path``, ``status`` (``"ok"``, or ``"damaged: <reason>"``,
        ``"newer: <reason>"``, ``"legacy: <reason>"`` or ``"unreadable: <reason>"``),
        ``callback``, ``module``, ``params`` (decoded dict or None), ``vertices``, ``bytes``,
        ``created``, ``last_used`` (the file's mtime, which the store sets on hits, ISO 8601
        UTC), ``phasic_version``, ``user`` and ``host`` (``"-"`` when the entry does not
        record it); None when the entry is gone or is not a regular file.
    """
    path = store.path(kind, key)
    info = {
        "kind": kind,
        "key": key,
        "path": str(path),
        "status": "ok",
        "callback": "-",
        "module": "-",
        "params": None,
        "vertices": None,
        "bytes": None,
        "created": "-",
        "last_used": "-",
        "phasic_version": "-",
        "user": "-",
        "host": "-",
    }
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    info["bytes"], info["last_used"] = st.st_size, _iso(st.st_mtime)  # replaced when `created` is known
    from phasic.store._entry import NotRegularFile, _open_regular, read_entry, read_head

    try:
        fd, fst = _open_regular(str(path))
    except (FileNotFoundError, NotRegularFile):  # gone, or replaced by a non-regular file since the lstat
        return None
    except PermissionError:
        info["status"] = "unreadable: permission denied (another user's entry?)"
        return info
    except OSError as exc:
        info["status"] = f"damaged: cannot open it ({exc.strerror or exc})"
        return info
    try:
        status, detail, attrs, shapes = read_head(fd, fst.st_size, key)
    except OSError as exc:
        status, detail = "bad", f"cannot read it ({exc.strerror or exc})"
    finally:
        os.close(fd)
    if status == "ok" and shapes is None:  # compressed: the shapes are only in the HDF5 part, read
        try:  # by the store's checked reader (its SHA-256 first)
            arrays, _attrs, _st, status, detail = read_entry(str(path), key)
        except OSError as exc:
            arrays, status, detail = None, "bad", f"cannot read it ({exc.strerror or exc})"
        shapes = {name: a.shape for name, a in arrays.items()} if status == "ok" else {}
    if status != "ok":
        info["status"] = f"{_STATUS_WORD[status]}: {detail}"
        return info
    callback, module, params = _model_fields(attrs)
    info.update(callback=callback or "-", module=module or "-", params=params)
    for name in _VERTEX_ARRAYS[kind]:
        if shapes.get(name):
            info["vertices"] = int(shapes[name][0])
            break
    for field in ("created", "phasic_version", "user", "host"):
        value = attrs.get(field)
        if value not in (None, ""):
            info[field] = str(value)
    info["last_used"] = _last_used(st.st_mtime, info["created"])
    return info


def _last_used(mtime, created):
    """The entry's mtime, or its creation time when later: the store sets the mtime a little in
    the past (``MTIME_BACKDATE``), so a fresh entry's mtime precedes its ``created``."""
    try:
        made = datetime.datetime.fromisoformat(created).timestamp()
    except (TypeError, ValueError):
        made = None
    return _iso(max(mtime, made) if made is not None else mtime)


def list_entries(store, kinds):
    """:func:`entry_info` of every entry of `kinds` (sorted by kind, then key)."""
    rows = []
    for kind in kinds:
        for key in store.entries(kind):
            info = entry_info(store, kind, key)
            if info is not None:
                rows.append(info)
    return rows


def _who(row):
    return "-" if row["user"] == "-" and row["host"] == "-" else f"{row['user']}@{row['host']}"


def _short_time(text):
    return text.replace("T", " ").removesuffix("+00:00") if text != "-" else "-"


def _shout(status):
    word, sep, rest = status.partition(":")
    return word.upper() + sep + rest


def format_listing(rows):
    """The text table of ``phasic cache list``: a header and one line per entry.

    The columns are the kind, the key's first 12 digits, the model (``module.callback``, or the
    callback alone when the entry does not record its module), the parameters, the number of
    vertices, the file size, when it was created and last used (UTC), who made it
    (``user@host``) with which phasic version, and for an entry that is not ``ok`` its status in
    capitals with the reason (``DAMAGED: ...``, ``NEWER: ...``, ``LEGACY: ...``, ``UNREADABLE: ...``).
    """
    header = (
        "KIND",
        "KEY",
        "MODEL",
        "PARAMS",
        "VERTICES",
        "SIZE",
        "CREATED (UTC)",
        "LAST USED (UTC)",
        "BY",
        "PHASIC",
        "",
    )
    table = []
    for r in rows:
        model = (
            "-" if r["callback"] == "-" else (r["callback"] if r["module"] == "-" else f"{r['module']}.{r['callback']}")
        )
        table.append(
            (
                r["kind"],
                r["key"][:12],
                model,
                format_params(r["params"]),
                "-" if r["vertices"] is None else str(r["vertices"]),
                format_size(r["bytes"]),
                _short_time(r["created"]),
                _short_time(r["last_used"]),
                _who(r),
                r["phasic_version"],
                "" if r["status"] == "ok" else _shout(r["status"]),
            )
        )
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(header)]
    lines = []
    for cells in [header, *table]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1])
    return "\n".join(line.rstrip() for line in lines)


def jsonable_rows(rows):
    """`rows` ready for :func:`json.dumps` (descriptions as strings, tuples as lists)."""
    return [_jsonable(r) for r in rows]


def provenance_summary(rows):
    """Lines saying who made `rows` (user@host, phasic version) and when, grouped.

    Returns
    -------
    list of str
        One line per distinct (user, host, phasic version), with its number of entries and
        the range of their creation times; damaged entries are counted separately.
    """
    groups = {}
    bad = 0
    for r in rows:
        if r["status"] != "ok":
            bad += 1
            continue
        groups.setdefault((r["user"], r["host"], r["phasic_version"]), []).append(
            None if r["created"] == "-" else r["created"]
        )
    lines = []
    for (user, host, version), created in sorted(groups.items()):
        who = "an unrecorded user and host" if user == "-" and host == "-" else f"{user}@{host}"
        times = sorted(t for t in created if t)
        when = (
            "at an unrecorded time"
            if not times
            else f"created {_short_time(times[0])} UTC"
            if times[0] == times[-1]
            else f"created {_short_time(times[0])} to {_short_time(times[-1])} UTC"
        )
        lines.append(f"  {len(created)} made by {who} with phasic {version}, {when}")
    if bad:
        lines.append(f"  {bad} unreadable (see phasic cache list)")
    return lines
