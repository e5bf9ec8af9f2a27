"""Named lineage properties mapped to state-vector slots.

Many coalescent-type models keep, per state, *counts of lineages* by a few
properties (number of descendants, population, ...).  A :class:`StateIndexer`
gives each combination of property values one slot of the state vector, so a
callback can write ``state[indexer.index(descendants=2, population=1)]``
instead of computing offsets by hand.

Slots are numbered in row-major order over the properties as listed (the last
property varies fastest).  An indexer can also hold several *named* property
sets (``StateIndexer(lineage=[...], mutation=[...])``, one block of slots each,
reached as ``indexer.lineage``) and single named slots (``StateIndexer("n_mut")``
or ``slots=["n_mut"]``, reached as ``indexer.n_mut``).  Both classes have
``to_dict()``/``from_dict()``, so they can be passed to
``Graph(..., indexer=...)`` and are part of the cache key.

Examples
--------
>>> ix = StateIndexer([Property("descendants", max_value=3, min_value=1), Property("population", max_value=1)])
>>> ix.state_length
6
>>> ix.index(descendants=2, population=1)
3
>>> ix.props(3)
{'descendants': 2, 'population': 1}
"""

from __future__ import annotations

import numbers

import numpy as np

from phasic.callbacks import plain
from phasic.exceptions import ParameterError

__all__ = ["Property", "PropertySet", "StateIndexer"]


def _int(value, what):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ParameterError(f"{what}={plain(value)!r} must be an int")
    return int(value)


def _ints(value, what):
    """`value` (an int or an integer array) as an int64 array, or a ParameterError."""
    if isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{what}={value!r} must be an int or an array of ints")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise ParameterError(f"{what}={plain(value)!r} must be an int or an array of ints, not {arr.dtype}")
    return arr.astype(np.int64)


def _first_outside(arr, low, high):
    """The first entry of `arr` outside ``low..high`` and its position, or None."""
    bad = np.flatnonzero((arr < low) | (arr > high))
    if not bad.size:
        return None
    pos = np.unravel_index(bad[0], arr.shape) if arr.ndim else ()
    return int(arr.reshape(-1)[bad[0]]), tuple(int(i) for i in pos)


def _name(value, what):
    if not isinstance(value, str) or not value.isidentifier() or value.startswith("_"):
        raise ParameterError(f"{what} {value!r} must be a Python identifier not starting with '_'")
    return value


class Property:
    """One per-lineage property with integer values ``min_value..max_value`` (inclusive).

    Parameters
    ----------
    name : str
        A Python identifier (used as a keyword of :meth:`StateIndexer.index`).
    max_value : int
        Largest value.
    min_value : int, default 0
        Smallest value.

    Examples
    --------
    >>> Property("population", max_value=2).size
    3
    """

    __slots__ = ("name", "max_value", "min_value")

    def __init__(self, name, max_value, min_value=0):
        if not isinstance(name, str) or not name.isidentifier():
            raise ParameterError(f"property name {plain(name)!r} must be a Python identifier")
        self.name = name
        self.max_value = _int(max_value, f"Property {name!r}: max_value")
        self.min_value = _int(min_value, f"Property {name!r}: min_value")
        if self.max_value < self.min_value:
            raise ParameterError(
                f"Property {name!r}: max_value={max_value!r} is below min_value={min_value!r}; give max_value >= min_value"
            )

    @property
    def size(self):
        """Number of values the property takes."""
        return self.max_value - self.min_value + 1

    def to_dict(self):
        """Plain-dict form (inverse of :meth:`from_dict`)."""
        return {"name": self.name, "max_value": self.max_value, "min_value": self.min_value}

    @classmethod
    def from_dict(cls, d):
        """Rebuild a property from :meth:`to_dict` output."""
        return cls(d["name"], max_value=d["max_value"], min_value=d.get("min_value", 0))

    def __eq__(self, other):
        return isinstance(other, Property) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash((self.name, self.max_value, self.min_value))

    def __repr__(self):
        return f"Property({self.name!r}, max_value={self.max_value}, min_value={self.min_value})"


class PropertySet:
    """One block of slots: every combination of a few properties' values, row-major.

    Made by :class:`StateIndexer`; reached as ``indexer.<name>`` for a named set. Slot
    numbers are positions in the *whole* state vector (the block starts at :attr:`offset`),
    so ``state[indexer.lineage.p2i(descendants=2)]`` is the count of lineages with two
    descendants.

    Parameters
    ----------
    name : str or None
        The set's name (None for the unnamed set of ``StateIndexer([...])``).
    properties : list of Property (or of their ``to_dict()`` dicts)
        Property names must be unique within the set.
    offset : int, default 0
        The first slot of the block in the state vector.

    Examples
    --------
    >>> ix = StateIndexer(lineage=[Property("descendants", max_value=3, min_value=1)],
    ...                   deme=[Property("deme", max_value=1)])
    >>> ix.deme.offset, ix.deme.p2i(deme=1)
    (3, 4)
    """

    def __init__(self, name, properties, offset=0):
        where = "properties" if name is None else f"property set {name!r}"
        if isinstance(properties, (Property, dict, str)) or not isinstance(properties, (list, tuple)):
            raise ParameterError(f"{where}={plain(properties)!r} must be a non-empty list of Property objects")
        props = [Property.from_dict(p) if isinstance(p, dict) else p for p in properties]
        if not props or not all(isinstance(p, Property) for p in props):
            raise ParameterError(f"{where}={plain(properties)!r} must be a non-empty list of Property objects")
        names = [p.name for p in props]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ParameterError(
                f"property names {dup!r} appear more than once in {where}; give each property its own name"
            )
        self.name = name
        self.properties = tuple(props)
        self.offset = int(offset)
        strides, stride = [], 1
        for p in reversed(props):
            strides.append(stride)
            stride *= p.size
        self._strides = tuple(reversed(strides))
        self.state_length = stride

    @property
    def names(self):
        """Property names in slot order."""
        return tuple(p.name for p in self.properties)

    @property
    def slice(self):
        """The block's slots as a ``slice`` of the state vector."""
        return slice(self.offset, self.offset + self.state_length)

    def props_to_index(self, props=None, /, **kwargs):
        """Slot(s) of combinations of property values; every property must be given.

        Parameters
        ----------
        props : dict, optional
            ``{name: value}``; or give the values as keywords.
        **kwargs : int or array of int
            Values per property; arrays broadcast against each other.

        Returns
        -------
        int or numpy.ndarray
            The slot (an int when every value is a scalar), else an int64 array of slots.
        """
        if props is not None:
            if kwargs or not isinstance(props, dict):
                raise ParameterError(
                    f"props_to_index() takes a dict or keywords, got {plain(props)!r} and {sorted(kwargs)!r}"
                )
            kwargs = props
        missing = [n for n in self.names if n not in kwargs]
        extra = sorted(set(kwargs) - set(self.names))
        if missing or extra:
            raise ParameterError(
                f"index() got properties {sorted(kwargs)!r}; it needs exactly {list(self.names)!r}"
                + (f" (unknown: {extra!r})" if extra else "")
            )
        values = [kwargs[n] for n in self.names]
        if all(
            isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values
        ):  # the common scalar case, without arrays
            slot = self.offset
            for p, stride, v in zip(self.properties, self._strides, values):
                if not p.min_value <= v <= p.max_value:
                    raise ParameterError(f"property {p.name!r}={plain(v)!r} is outside {p.min_value}..{p.max_value}")
                slot += (int(v) - p.min_value) * stride
            return slot
        arrays = [_ints(v, f"property {p.name!r}") for p, v in zip(self.properties, values)]
        try:
            arrays = np.broadcast_arrays(*arrays)
        except ValueError:
            raise ParameterError(
                f"the values of {list(self.names)!r} have shapes "
                f"{[np.shape(v) for v in values]!r}, which do not broadcast"
            ) from None
        slot = np.full(arrays[0].shape, self.offset, np.int64)
        for p, stride, arr in zip(self.properties, self._strides, arrays):
            bad = _first_outside(arr, p.min_value, p.max_value)
            if bad is not None:
                raise ParameterError(
                    f"property {p.name!r} has the value {bad[0]} (at position "
                    f"{list(bad[1])}) outside {p.min_value}..{p.max_value}"
                )
            slot += (arr - p.min_value) * stride
        return slot

    def index_to_props(self, index):
        """Property values of slot(s) (the inverse of :meth:`props_to_index`).

        Parameters
        ----------
        index : int or array of int
            Slot(s) of this block.

        Returns
        -------
        dict
            ``{name: value}``: ints for one slot, int64 arrays shaped like `index` for an array.
        """
        lo, hi = self.offset, self.offset + self.state_length - 1
        if isinstance(index, (numbers.Integral, np.integer)) and not isinstance(index, (bool, np.bool_)):
            if not lo <= index <= hi:
                raise ParameterError(
                    f"slot {plain(index)!r} is outside {lo}..{hi}"
                    + ("" if self.name is None else f" (property set {self.name!r})")
                )
            s, out = int(index) - lo, {}
            for p, stride in zip(self.properties, self._strides):
                out[p.name] = p.min_value + s // stride
                s %= stride
            return out
        arr = _ints(index, "slot")
        bad = _first_outside(arr, lo, hi)
        if bad is not None:
            raise ParameterError(
                f"slot {bad[0]} (at position {list(bad[1])}) is outside {lo}..{hi}"
                + ("" if self.name is None else f" (property set {self.name!r})")
            )
        s, out = arr - lo, {}
        for p, stride in zip(self.properties, self._strides):
            out[p.name] = p.min_value + s // stride
            s = s % stride
        return out

    p2i = props_to_index
    i2p = index_to_props

    def index(self, **props):
        """Slot of one combination of property values (every property must be given)."""
        return self.props_to_index(**props)

    def props(self, slot):
        """Property values of a slot, as a dict (inverse of :meth:`index`)."""
        return self.index_to_props(_int(slot, "slot"))

    def to_list(self):
        """The properties as plain dicts."""
        return [p.to_dict() for p in self.properties]

    def __eq__(self, other):
        return isinstance(other, PropertySet) and (self.name, self.properties, self.offset) == (
            other.name,
            other.properties,
            other.offset,
        )

    def __hash__(self):
        return hash((self.name, self.properties, self.offset))

    def __len__(self):
        return self.state_length

    def __repr__(self):
        return f"PropertySet({self.name!r}, {list(self.properties)!r}, offset={self.offset})"


class StateIndexer:
    """Maps combinations of lineage properties to state-vector slots.

    The state vector is laid out as: the unnamed property list (if given), then each named
    property set in the order given, then each named single slot.

    Parameters
    ----------
    properties : list of Property (or of their ``to_dict()`` dicts), optional
        The unnamed property set (the single-list form): its methods are the indexer's own.
    *slot_names : str
        Named single slots (a counter each), reached as ``indexer.<name>``.
    slots : list of str, optional
        More single slots (the same as positional names).
    **sets : list of Property
        Named property sets (``lineage=[Property(...), ...]``), reached as ``indexer.<name>``
        (a :class:`PropertySet`). Set and slot names must be unique identifiers that are not
        attributes of the indexer.

    Notes
    -----
    ``index_to_props``/``props_to_index`` (aliases ``i2p``/``p2i``, and the older
    ``props``/``index``) of the indexer itself need it to hold exactly one property set;
    otherwise use the set's, ``indexer.lineage.p2i(...)``. Both take arrays as well as ints.
    ``to_dict()`` of the single-list form is ``{"properties": [...]}``, as it always was,
    so cache keys of existing models do not change.

    Examples
    --------
    >>> ix = StateIndexer([Property("descendants", max_value=4, min_value=1)])
    >>> s = ix.empty_state(); s[ix.index(descendants=1)] = 4; s.tolist()
    [4, 0, 0, 0]

    Named sets and slots, as in the reference documentation:

    >>> ix = StateIndexer("mutations", lineage=[Property("descendants", max_value=10)])
    >>> ix.state_length, ix.lineage.p2i(descendants=3), ix.mutations
    (12, 3, 11)
    >>> ix.lineage.i2p(np.array([2, 10]))["descendants"].tolist()
    [2, 10]
    >>> StateIndexer.from_dict(ix.to_dict()) == ix
    True
    """

    def __init__(self, *args, slots=None, properties=None, **sets):
        from phasic._csr import MAX_STATE_LENGTH

        args = list(args)
        if args and not isinstance(args[0], str):
            if properties is not None:
                raise ParameterError("give the property list once: positionally or as properties=")
            properties = args.pop(0)
        elif not args and properties is None and not sets and not slots:
            raise ParameterError(
                "StateIndexer() needs a property list, named property sets (lineage=[Property(...)]) or slot names"
            )
        bad = [a for a in args if not isinstance(a, str)]
        if bad:
            raise ParameterError(
                f"positional arguments after the property list must be slot names (str), got {plain(bad)!r}"
            )
        if slots is not None and (isinstance(slots, str) or not isinstance(slots, (list, tuple))):
            raise ParameterError(f"slots={plain(slots)!r} must be a list of slot names")
        slot_names = [_name(n, "slot name") for n in [*args, *(slots or ())]]
        taken = set(dir(type(self)))
        names = [*sets, *slot_names]
        clash = sorted({n for n in names if names.count(n) > 1} | {n for n in names if n in taken})
        if clash:
            raise ParameterError(
                f"set/slot names {clash!r} appear twice or are StateIndexer attributes; choose other names"
            )
        blocks, offset = [], 0
        if properties is not None:
            blocks.append(PropertySet(None, properties, offset))
            offset += blocks[-1].state_length
        for name, props in sets.items():
            blocks.append(PropertySet(_name(name, "property set name"), props, offset))
            offset += blocks[-1].state_length
        self._sets = {b.name: b for b in blocks}
        self._slots = {n: offset + i for i, n in enumerate(slot_names)}
        self._length = offset + len(slot_names)
        if self._length > MAX_STATE_LENGTH:
            raise ParameterError(
                f"the indexer has {self._length} slots, more than {MAX_STATE_LENGTH} "
                f"(the longest state vector a graph takes); check the max_values "
                f"{[p.max_value for b in blocks for p in b.properties]!r}"
            )

    # ------------------------------------------------------------------ layout
    @property
    def state_length(self):
        """Number of slots (the length of the state vector)."""
        return self._length

    @property
    def sets(self):
        """The property sets by name (None: the unnamed one), in slot order."""
        return dict(self._sets)

    @property
    def slots(self):
        """The named single slots: ``{name: slot}``."""
        return dict(self._slots)

    def _only(self):
        if len(self._sets) == 1:
            return next(iter(self._sets.values()))
        named = [n for n in self._sets if n is not None]
        raise ParameterError(
            f"this indexer has {len(self._sets)} property sets"
            + (f" ({named!r})" if named else "")
            + (": use a set's own methods, e.g. indexer." + named[0] + ".props_to_index(...)" if named else "")
        )

    def __getattr__(self, name):
        if not name.startswith("_"):
            if name in self.__dict__.get("_sets", ()):
                return self._sets[name]
            if name in self.__dict__.get("_slots", ()):
                return self._slots[name]
        raise AttributeError(f"StateIndexer has no property set, slot or attribute {name!r}")

    def __dir__(self):
        return sorted(set(super().__dir__()) | {n for n in self._sets if n} | set(self._slots))

    # --------------------------------------------------------- the sole property set
    @property
    def properties(self):
        """The properties of the indexer's only property set."""
        return self._only().properties

    @property
    def names(self):
        """Property names in slot order (of the indexer's only property set)."""
        return self._only().names

    def props_to_index(self, props=None, /, **kwargs):
        """Slot(s) of property values; see :meth:`PropertySet.props_to_index`."""
        return self._only().props_to_index(props, **kwargs)

    def index_to_props(self, index):
        """Property values of slot(s); see :meth:`PropertySet.index_to_props`."""
        return self._only().index_to_props(index)

    p2i = props_to_index
    i2p = index_to_props

    def index(self, **props):
        """Slot of one combination of property values (every property must be given)."""
        return self._only().props_to_index(**props)

    def props(self, slot):
        """Property values of a slot, as a dict (inverse of :meth:`index`)."""
        return self._only().props(slot)

    def empty_state(self):
        """A zero state vector (int32) of length :attr:`state_length`."""
        return np.zeros(self._length, dtype=np.int32)

    # ------------------------------------------------------------------ dict form
    def to_dict(self):
        """Plain-dict form (inverse of :meth:`from_dict`; part of cache keys).

        The single-list form gives ``{"properties": [...]}``; named sets add ``"sets"`` (a
        list of ``{"name", "properties"}``, in slot order) and named slots ``"slots"``.
        """
        out = {}
        if None in self._sets:
            out["properties"] = self._sets[None].to_list()
        named = [{"name": n, "properties": b.to_list()} for n, b in self._sets.items() if n is not None]
        if named:
            out["sets"] = named
        if self._slots:
            out["slots"] = list(self._slots)
        return out

    @classmethod
    def from_dict(cls, d):
        """Rebuild an indexer from :meth:`to_dict` output."""
        if not isinstance(d, dict) or not set(d) <= {"properties", "sets", "slots"}:
            raise ParameterError(
                f"{plain(d)!r} is not a StateIndexer.to_dict() dict (keys 'properties', 'sets', 'slots')"
            )
        sets = {}
        for entry in d.get("sets", ()):
            if not isinstance(entry, dict) or "name" not in entry or "properties" not in entry:
                raise ParameterError(f"set {plain(entry)!r} needs 'name' and 'properties'")
            if entry["name"] in sets or entry["name"] == "properties":
                raise ParameterError(f"set name {entry['name']!r} cannot be used here")
            sets[entry["name"]] = [Property.from_dict(p) for p in entry["properties"]]
        props = d.get("properties")
        return cls(
            properties=None if props is None else [Property.from_dict(p) for p in props],
            slots=list(d.get("slots", ())),
            **sets,
        )

    def __eq__(self, other):
        return isinstance(other, StateIndexer) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(tuple(self._sets.values())) ^ hash(tuple(self._slots))

    def __len__(self):
        return self._length

    def __repr__(self):
        parts = []
        if None in self._sets:
            parts.append(repr(list(self._sets[None].properties)))
        parts += [repr(s) for s in self._slots]
        parts += [f"{n}={list(b.properties)!r}" for n, b in self._sets.items() if n is not None]
        return f"StateIndexer({', '.join(parts)})"
