"""The C allocator's arenas: bounded per core, and the bound keys the tuning measurements."""

import pytest

from app import memory

glibc_only = pytest.mark.skipif(memory.allocator_plan() == "not glibc", reason="glibc only")


@glibc_only
def test_arenas_are_bounded_per_core_and_named_in_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_tuned_arenas", None)
    assert memory.allocator_plan() == "glibc, glibc's own arenas, glibc's own mmap threshold"

    assert memory.tune_allocator(3)

    assert memory.allocator_plan() == (
        f"glibc, {3 * memory.ARENAS_PER_CORE} arenas, glibc's own mmap threshold"
    )


@glibc_only
def test_a_process_with_no_core_count_still_gets_its_own_arenas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "_tuned_arenas", None)
    assert memory.tune_allocator(0)
    assert memory.allocator_plan().startswith(f"glibc, {memory.ARENAS_PER_CORE} arenas")
