"""Remembering a pure function of memory by the words it read.

The spec's walks are pure: given the same non-memory arguments and the same values at the words they
read, they give the same result, and they read the same words in the same order (the next address
they read depends only on the values read so far). So the results of one call can be kept in a tree
keyed first by the non-memory arguments, then by each word read in turn: a later call follows the
tree by reading its own memory at each node's address and gets the stored result when every value
matches, after as many dictionary look-ups as the walk made reads, instead of walking again.

Checkers call the same walks at thousands of points whose memories differ only in words the walk
never reads (a bounded search re-checks the same tables after each step); this is what makes that
cheap. Nothing is restated: a miss runs the function itself, over a memory that records its reads.
Only Python-int memories (mappings read with ``get``) are remembered.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping



class _Leaf:
    """The stored result at the end of one read path."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result


class _Recording(Mapping[int, int]):
    """``memory`` as the backend reads it (``get``), noting the first read of each word (a word read
    again gives the same value: memory does not change during a call)."""

    __slots__ = ("memory", "reads", "_seen")

    def __init__(self, memory: Mapping[int, int]) -> None:
        self.memory, self.reads, self._seen = memory, [], set()

    def get(self, address: int, default: Any = None) -> Any:  # noqa: D401 - the Mapping API
        value = self.memory.get(address, default)
        if address not in self._seen:
            self._seen.add(address)
            self.reads.append((address, value))
        return value

    def __getitem__(self, address: int) -> int:
        return self.get(address, 0)

    def __iter__(self):  # a walk never iterates memory; a function that does cannot be remembered
        raise TypeError("a remembered function must read memory word by word")

    def __len__(self) -> int:
        return len(self.memory)


class ReadMemo:
    """Results of pure functions of memory, by their other arguments and the words they read.

    A node of a tree is a ``[address, {value: node}]`` list (the next word the function reads, and
    where each value of it leads) or a :class:`_Leaf`.
    """

    def __init__(self, *, from_second_ask: bool = False) -> None:
        """``from_second_ask``: a key's first :meth:`call` computes over memory as it is, without
        recording (a caller whose questions mostly come once, such as a DMA stream in a long replay,
        pays nothing for them); the result is remembered from its second ask on."""
        self._roots: dict[Hashable, Any] = {}
        self._asked_once: set[Hashable] | None = set() if from_second_ask else None
        self.hits = self.misses = 0

    def __len__(self) -> int:
        """How many keys (calls with distinct non-memory arguments) are remembered."""
        return len(self._roots)

    def call(self, key: Hashable, memory: Mapping[int, int], compute: Callable[[Mapping[int, int]], Any]) -> Any:
        """``compute(memory)``, or its stored result when ``memory`` holds the same words it read.

        ``key`` must name everything else the result depends on (the function and its arguments).
        """
        root = node = self._roots.get(key)  # the walk of call_reading, without noting the path: most calls hit
        read = memory.get
        while node.__class__ is list:
            node = node[1].get(read(node[0], 0))
        if node is not None:
            self.hits += 1
            return node.result
        once = self._asked_once
        if root is None and once is not None and key not in once:
            if len(once) > len(self._roots) + (1 << 16):  # keys never asked again: start counting afresh
                once.clear()
            once.add(key)
            self.misses += 1
            return compute(memory)
        return self.call_reading(key, memory, compute, [])

    def call_reading(self, key: Hashable, memory: Mapping[int, int], compute: Callable[[Mapping[int, int]], Any],
                     reads: list[int]) -> Any:
        """:meth:`call`, also appending to ``reads`` every word the result depends on (the path followed)."""
        node = self._roots.get(key)
        read = memory.get
        while node.__class__ is list:
            reads.append(node[0])
            node = node[1].get(read(node[0], 0))
        if node is not None:
            self.hits += 1
            return node.result
        self.misses += 1
        recording = _Recording(memory)
        result = compute(recording)
        self._insert(key, recording.reads, result)
        reads.extend(address for address, _ in recording.reads)
        return result

    def _insert(self, key: Hashable, reads: list[tuple[int, Any]], result: Any) -> None:
        parent, slot = self._roots, key
        for address, value in reads:
            node = parent.get(slot)
            if node is None:
                node = parent[slot] = [address, {}]
            elif node.__class__ is not list or node[0] != address:
                raise ValueError(f"not a pure function of memory: read {address:#x} where an earlier call "
                                 "stopped or read another word after the same values")
            parent, slot = node[1], value
        if slot in parent:
            raise ValueError("not a pure function of memory: one call stopped where another read on")
        parent[slot] = _Leaf(result)
