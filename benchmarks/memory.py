"""Resident memory of a process tree (Ray's workers included), as the benchmarks sample it."""

import psutil


def tree_rss(tree: list[psutil.Process]) -> int:
    """The summed RSS of the processes still alive in `tree`."""
    total = 0
    for member in tree:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total
