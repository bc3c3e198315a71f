"""Seeded random draws for the synthetic corpora, cheaper than random.Random's own."""

import random
from bisect import bisect
from itertools import accumulate
from typing import NamedTuple


class Weighted(NamedTuple):
    options: tuple
    cumulative_weights: tuple[int, ...]


def weighted(weights: dict) -> Weighted:
    return Weighted(tuple(weights), tuple(accumulate(weights.values())))


class Draws(random.Random):
    """A seeded random.Random with cheaper draws: ample for synthetic data, not for statistics.

    random.Random's own choice and randint cost several times one call to random(), which adds
    up to most of the rendering time over 50,000 messages.
    """

    def below(self, stop: int) -> int:
        return int(self.random() * stop)

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def pick(self, options):
        return options[int(self.random() * len(options))]

    def weighted(self, table: Weighted):
        cumulative_weights = table.cumulative_weights
        return table.options[bisect(cumulative_weights, self.random() * cumulative_weights[-1])]
