"""Named lineage properties mapped to state-vector slots.

Many coalescent-type models keep, per state, *counts of lineages* by a few
properties (number of descendants, population, ...).  A :class:`StateIndexer`
gives each combination of property values one slot of the state vector, so a
callback can write ``state[indexer.index(descendants=2, population=1)]``
instead of computing offsets by hand.

Slots are numbered in row-major order over the properties as listed (the last
property varies fastest).  Both classes have ``to_dict()``/``from_dict()``, so
they can be passed to ``Graph(..., indexer=...)`` and are part of the cache key.

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

from phasic.exceptions import ParameterError

__all__ = ["Property", "StateIndexer"]


def _int(value, what):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ParameterError(f"{what}={value!r} must be an int")
    return int(value)


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
            raise ParameterError(f"property name {name!r} must be a Python identifier")
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


class StateIndexer:
    """Maps combinations of lineage properties to state-vector slots.

    Parameters
    ----------
    properties : list of Property (or of their ``to_dict()`` dicts)
        Property names must be unique.

    Examples
    --------
    >>> ix = StateIndexer([Property("descendants", max_value=4, min_value=1)])
    >>> s = ix.empty_state(); s[ix.index(descendants=1)] = 4; s.tolist()
    [4, 0, 0, 0]
    """

    def __init__(self, properties):
        props = []
        for p in properties:
            props.append(Property.from_dict(p) if isinstance(p, dict) else p)
        if not props or not all(isinstance(p, Property) for p in props):
            raise ParameterError(f"properties={properties!r} must be a non-empty list of Property objects")
        names = [p.name for p in props]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ParameterError(f"property names {dup!r} appear more than once; give each property its own name")
        self.properties = tuple(props)
        self._strides = []
        stride = 1
        for p in reversed(props):
            self._strides.append(stride)
            stride *= p.size
        self._strides.reverse()
        self._length = stride

    @property
    def state_length(self):
        """Number of slots (product of the property sizes)."""
        return self._length

    @property
    def names(self):
        """Property names in slot order."""
        return tuple(p.name for p in self.properties)

    def index(self, **props):
        """Slot of one combination of property values (every property must be given)."""
        missing = [n for n in self.names if n not in props]
        extra = sorted(set(props) - set(self.names))
        if missing or extra:
            raise ParameterError(
                f"index() got properties {sorted(props)!r}; it needs exactly {list(self.names)!r}"
                + (f" (unknown: {extra!r})" if extra else "")
            )
        slot = 0
        for p, stride in zip(self.properties, self._strides):
            v = _int(props[p.name], f"property {p.name!r}")
            if not p.min_value <= v <= p.max_value:
                raise ParameterError(
                    f"property {p.name!r}={props[p.name]!r} is outside {p.min_value}..{p.max_value}"
                )
            slot += (v - p.min_value) * stride
        return slot

    def props(self, slot):
        """Property values of a slot, as a dict (inverse of :meth:`index`)."""
        s = _int(slot, "slot")
        if not 0 <= s < self._length:
            raise ParameterError(f"slot {slot!r} is outside 0..{self._length - 1}")
        out = {}
        for p, stride in zip(self.properties, self._strides):
            out[p.name] = p.min_value + s // stride
            s %= stride
        return out

    def empty_state(self):
        """A zero state vector (int32) of length :attr:`state_length`."""
        return np.zeros(self._length, dtype=np.int32)

    def to_dict(self):
        """Plain-dict form (inverse of :meth:`from_dict`)."""
        return {"properties": [p.to_dict() for p in self.properties]}

    @classmethod
    def from_dict(cls, d):
        """Rebuild an indexer from :meth:`to_dict` output."""
        return cls([Property.from_dict(p) for p in d["properties"]])

    def __eq__(self, other):
        return isinstance(other, StateIndexer) and self.properties == other.properties

    def __hash__(self):
        return hash(self.properties)

    def __len__(self):
        return self._length

    def __repr__(self):
        return f"StateIndexer({list(self.properties)!r})"
