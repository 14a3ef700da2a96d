"""The seed's count of common characters, as flytekit code (flytesnacks' dynamic_workflow.py).

Unchanged but for ``cache=True, cache_version="1"`` on the tasks and the dynamic.
"""

from flytekit import dynamic, task, workflow


@task(cache=True, cache_version="1")
def return_index(character: str) -> int:
    """The index of a letter in the alphabet: A-Z / a-z map to 0-25."""
    if character.islower():
        return ord(character) - ord("a")
    else:
        return ord(character) - ord("A")


@task(cache=True, cache_version="1")
def update_list(freq_list: list[int], list_index: int) -> list[int]:
    """Counts one more occurrence of the letter at `list_index`."""
    freq_list[list_index] += 1
    return freq_list


@task(cache=True, cache_version="1")
def derive_count(freq1: list[int], freq2: list[int]) -> int:
    """The number of common characters of two frequency lists."""
    count = 0
    for i in range(26):
        count += min(freq1[i], freq2[i])
    return count


@dynamic(cache=True, cache_version="1")
def count_characters(s1: str, s2: str) -> int:
    # s1 and s2 are accessible

    # initialize an empty list consisting of 26 empty slots corresponding to every alphabet
    # (lower and upper case)
    freq1 = [0] * 26
    freq2 = [0] * 26

    # looping through the string s1
    for i in range(len(s1)):
        # index and freq1 are not accessible as they are promises
        index = return_index(character=s1[i])
        freq1 = update_list(freq_list=freq1, list_index=index)

    # looping through the string s2
    for i in range(len(s2)):
        # index and freq2 are not accessible as they are promises
        index = return_index(character=s2[i])
        freq2 = update_list(freq_list=freq2, list_index=index)

    # counting the common characters
    return derive_count(freq1=freq1, freq2=freq2)


@workflow
def dynamic_wf(s1: str, s2: str) -> int:
    return count_characters(s1=s1, s2=s2)
