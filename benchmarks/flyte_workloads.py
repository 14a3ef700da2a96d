"""The flytekit twins of `workloads.py`: the same code, imported from flytekit."""
# mypy: disable-error-code="untyped-decorator,no-any-return"

from typing import Tuple  # noqa: UP035

from flytekit import conditional, dynamic, task, workflow

# -- (a) fan-out: a dynamic yields N independent no-op tasks ----------------------------------


@task
def inc(x: int) -> int:
    """A no-op task: its input plus one."""
    return x + 1


@dynamic
def fan(n: int) -> list[int]:
    """N independent `inc` tasks."""
    return [inc(x=i) for i in range(n)]


@workflow
def fan_out(n: int) -> list[int]:
    return fan(n=n)


# -- (d) chain: N no-op tasks, each waiting for the previous one (a latency probe) ----------


@dynamic
def chain_dyn(n: int) -> int:
    """N `inc` tasks in a line: nothing queues, so each hop is pure engine latency."""
    x = inc(x=0)
    for _ in range(n - 1):
        x = inc(x=x)
    return x


@workflow
def chain(n: int) -> int:
    return chain_dyn(n=n)


# -- (b) merge sort: the seed example -------------------------------------------------------


@task
def split(numbers: list[int]) -> Tuple[list[int], list[int], int, int]:  # noqa: UP006
    return (
        numbers[0 : int(len(numbers) / 2)],
        numbers[int(len(numbers) / 2) :],
        int(len(numbers) / 2),
        len(numbers) - int(len(numbers) / 2),
    )


@task
def merge(sorted_list1: list[int], sorted_list2: list[int]) -> list[int]:
    result = []
    while len(sorted_list1) > 0 and len(sorted_list2) > 0:
        if sorted_list1[0] < sorted_list2[0]:
            result.append(sorted_list1.pop(0))
        else:
            result.append(sorted_list2.pop(0))
    result.extend(sorted_list1)
    result.extend(sorted_list2)
    return result


@task
def sort_locally(numbers: list[int]) -> list[int]:
    return sorted(numbers)


@dynamic
def merge_sort_remotely(numbers: list[int], run_local_at_count: int) -> list[int]:
    split1, split2, new_count1, new_count2 = split(numbers=numbers)
    sorted1 = merge_sort(
        numbers=split1, numbers_count=new_count1, run_local_at_count=run_local_at_count
    )
    sorted2 = merge_sort(
        numbers=split2, numbers_count=new_count2, run_local_at_count=run_local_at_count
    )
    return merge(sorted_list1=sorted1, sorted_list2=sorted2)


@workflow
def merge_sort(numbers: list[int], numbers_count: int, run_local_at_count: int = 5) -> list[int]:
    return (
        conditional("terminal_case")
        .if_(numbers_count <= run_local_at_count)
        .then(sort_locally(numbers=numbers))
        .else_()
        .then(merge_sort_remotely(numbers=numbers, run_local_at_count=run_local_at_count))
    )


# -- (c) count common characters: the seed's dynamic_workflow -------------------------------


@task
def return_index(character: str) -> int:
    if character.islower():
        return ord(character) - ord("a")
    return ord(character) - ord("A")


@task
def update_list(freq_list: list[int], list_index: int) -> list[int]:
    freq_list[list_index] += 1
    return freq_list


@task
def derive_count(freq1: list[int], freq2: list[int]) -> int:
    count = 0
    for i in range(26):
        count += min(freq1[i], freq2[i])
    return count


@dynamic
def count_characters(s1: str, s2: str) -> int:
    freq1 = [0] * 26
    freq2 = [0] * 26
    for i in range(len(s1)):
        index = return_index(character=s1[i])
        freq1 = update_list(freq_list=freq1, list_index=index)
    for i in range(len(s2)):
        index = return_index(character=s2[i])
        freq2 = update_list(freq_list=freq2, list_index=index)
    return derive_count(freq1=freq1, freq2=freq2)


@workflow
def dynamic_wf(s1: str, s2: str) -> int:
    return count_characters(s1=s1, s2=s2)
