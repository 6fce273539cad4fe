"""Model outputs with named parts that survive fastai: one base for every method's structured forward."""
from __future__ import annotations

from operator import itemgetter


class OutputTuple(tuple):
    """A tuple whose parts are named by the subclass's ``fields`` (each becomes a read-only property).

    A plain tuple subclass rather than a ``NamedTuple``: fastai rebuilds tuples with ``type(x)([items])``
    (``to_detach``, ``to_cpu``, ``to_float``, ``get_preds``), which a NamedTuple cannot take. Built from the
    parts (``Out(a, b)``) or from one iterable of them (``Out([a, b])``).
    """

    fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for index, name in enumerate(cls.fields):
            setattr(cls, name, property(itemgetter(index)))

    def __new__(cls, *items):
        items = tuple(items[0]) if len(items) == 1 else items
        if len(items) != len(cls.fields):
            raise ValueError(f"{cls.__name__} holds ({', '.join(cls.fields)})")
        return super().__new__(cls, items)
