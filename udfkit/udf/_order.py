"""The order in which a run merges the results its executor yields."""

from __future__ import annotations

__all__ = ["MergeOrder"]


class MergeOrder:
    """Results to merge now: each as it comes, or (``deterministic``) in task order, where
    an early one waits for its predecessors so that floating-point merges do not depend on
    which worker finished first.

    Examples
    --------
    >>> order = MergeOrder(deterministic=True)
    >>> order.ready(1, "b"), order.ready(0, "a"), order.ready(2, "c")
    ([], ['a', 'b'], ['c'])
    >>> MergeOrder(deterministic=False).ready(1, "b")
    ['b']
    """

    __slots__ = ("deterministic", "_waiting", "_next")

    def __init__(self, deterministic: bool):
        self.deterministic = deterministic
        self._waiting: dict = {}
        self._next = 0

    def ready(self, index: int, result) -> list:
        """The results that may be merged now that task ``index`` gave ``result``."""
        if not self.deterministic:
            return [result]
        self._waiting[index] = result
        out = []
        while self._next in self._waiting:
            out.append(self._waiting.pop(self._next))
            self._next += 1
        return out
