"""keep_freed_memory: a process that frees and again takes megabytes reuses its pages instead
of faulting in fresh ones (each run in its own interpreter: the setting is per process)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_CHURN = """
import resource, sys
from dtn.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # 16 MiB held, then all freed: a node's queue of 1 MiB bundles
    held = [bytearray(1 << 20) for _ in range(16)]
    del held
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 320)
"""


def _faults_a_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], check=True, capture_output=True,
                         text=True).stdout
    return float(out)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_freed_megabytes_are_reused_not_faulted_in_again():
    kept, default = _faults_a_mib("keep"), _faults_a_mib("default")
    assert kept < 64, f"{kept} page faults a MiB with freed memory kept"  # 256 = every page
    assert default > 4 * kept  # what the default costs, so that the test means something
