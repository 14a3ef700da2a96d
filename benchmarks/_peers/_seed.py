"""The seed merge sort's task bodies as plain functions, for the peers' runners to wrap in their
own decorators (the same code as `examples/merge_sort.py`, without plait)."""

from __future__ import annotations


def split(numbers: list[int]) -> tuple[list[int], list[int], int, int]:
    """The two halves and their lengths."""
    half = len(numbers) // 2
    return numbers[:half], numbers[half:], half, len(numbers) - half


def merge(sorted_list1: list[int], sorted_list2: list[int]) -> list[int]:
    """Two sorted lists as one, as the seed merges them."""
    result = []
    while len(sorted_list1) > 0 and len(sorted_list2) > 0:
        if sorted_list1[0] < sorted_list2[0]:
            result.append(sorted_list1.pop(0))
        else:
            result.append(sorted_list2.pop(0))
    result.extend(sorted_list1)
    result.extend(sorted_list2)
    return result
