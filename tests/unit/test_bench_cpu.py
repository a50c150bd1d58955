"""bench.serve's CPU accounting: a process and its live descendants, read from /proc."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.serve import process_tree_cpu_s

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux /proc")

# Burns 0.3 s of CPU, says so, then waits to be killed (so it is still a live descendant).
_BURNER = """
import time
while time.process_time() < 0.3:
    pass
print("burnt", flush=True)
time.sleep(60)
"""


def test_a_process_s_own_cpu_is_what_it_measures_itself() -> None:
    started = time.process_time()
    while time.process_time() - started < 0.2:
        pass
    # /proc counts in clock ticks (10 ms here); process_time is finer.
    assert process_tree_cpu_s(os.getpid()) == pytest.approx(time.process_time(), abs=0.05)


def test_children_count_with_their_parent() -> None:
    own = process_tree_cpu_s(os.getpid())
    with subprocess.Popen(
        [sys.executable, "-c", _BURNER], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "burnt"
            assert process_tree_cpu_s(os.getpid()) - own >= 0.28
        finally:
            child.kill()
