"""The schedule: which family makes case ``k``, deterministically from the seed."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import replace

from .cases import HUGE, Case, Family
from .families import FAMILIES
from .material import Material
from .mutator import Mutator


class Fuzzer:
    """Deterministic hostile cases from :class:`~bench.fuzz.material.Material`, by category.

    Every mutation decision comes from ``random.Random(f"{seed}/{category}/{k}")``, so case
    ``k`` of a category is the same mutation on every run (the key itself is fresh).

    Example:
        >>> fuzzer = Fuzzer(material, seed=0)            # doctest: +SKIP
        >>> for case in fuzzer.cases(3000): ...          # doctest: +SKIP
    """

    def __init__(self, material: Material, seed: int = 0, *, bomb_bytes: int = HUGE) -> None:
        self.seed = seed
        self.mutator = Mutator(material, bomb_bytes=bomb_bytes)
        self.families: dict[str, Family] = {
            name: family for name, family in FAMILIES.items() if material.batch is not None or not family.needs_batches}

    def schedule(self, n: int, categories: list[str] | None = None) -> list[tuple[str, int]]:
        """(category, k) for ``n`` cases, each category in proportion to its weight, shuffled.

        Raises:
            ValueError: if no category starts with one of ``categories``.
        """
        names = [c for c in self.families if not categories or any(c.startswith(p) for p in categories)]
        if not names:
            raise ValueError(f"no category matches {categories}")
        weights = [self.families[c].weight for c in names]
        total = sum(weights)
        counts = [max(1, math.floor(n * w / total)) for w in weights]
        order = sorted(range(len(names)), key=lambda i: -weights[i])
        i = 0
        while sum(counts) < n:
            counts[order[i % len(order)]] += 1
            i += 1
        while sum(counts) > n and any(c > 1 for c in counts):
            j = max(range(len(counts)), key=lambda j: counts[j])
            counts[j] -= 1
        plan = [(name, k) for name, count in zip(names, counts) for k in range(count)]
        random.Random(f"{self.seed}/schedule").shuffle(plan)
        return plan[:n]

    def case(self, category: str, k: int, index: int = 0) -> Case:
        """Case ``k`` of ``category``: the same mutation for the same seed, every time."""
        rng = random.Random(f"{self.seed}/{category}/{k}")
        return replace(self.families[category].make(self.mutator, rng), category=category, index=index)

    def cases(self, n: int, categories: list[str] | None = None) -> Iterator[Case]:
        """``n`` cases, made one at a time (a case's bytes are dropped once used)."""
        for index, (category, k) in enumerate(self.schedule(n, categories)):
            yield self.case(category, k, index)

    def prepare(self) -> None:
        """Build the decompression bombs now (they are cached; building takes about a second)."""
        self.mutator.prepare()
