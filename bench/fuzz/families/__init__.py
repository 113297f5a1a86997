"""Every family of cases, by category name: ``<where>.<what>`` (``request.json``, ``bundle.bomb``...).

Each module holds one area's families and lists them in its ``FAMILIES`` with their weights;
a family is a function ``(Mutator, random.Random) -> Case``.
"""

from __future__ import annotations

from ..cases import Family
from . import batches, bundles, crafted, ownership, requests, wire

FAMILIES: dict[str, Family] = {
    **requests.FAMILIES, **wire.FAMILIES, **bundles.FAMILIES, **crafted.FAMILIES, **ownership.FAMILIES,
    **batches.FAMILIES,
}
