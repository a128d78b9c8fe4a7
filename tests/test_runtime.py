"""keep_freed_memory: large tensors stop costing fresh pages from the kernel on every allocation."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROGRAM = """
import resource, torch
from restore import runtime
applied = runtime.keep_freed_memory()
for _ in range(20):  # 64 MiB, allocated and freed until the heap's layout settles
    torch.ones(16 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 * 2**20)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(malloc: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM], env={**os.environ, "RESTORE_MALLOC": malloc},
                         capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_freed_tensors_are_reused_without_page_faults():
    # Ten 64 MiB tensors are 163,840 pages of 4 KiB. glibc's default maps each afresh (one fault
    # per page touched: 163,850 measured). Kept heap memory is faulted in during the first few
    # allocations (up to 8 of them measured), before counting; 0 faults measured after.
    applied, kept = _faults("")
    default_applied, default = _faults("system")
    assert applied and not default_applied
    assert default > 100_000, default
    assert kept < 5_000, kept


def test_the_machine_is_named_with_its_cores_and_threads():
    import torch

    from restore.runtime import machine

    text = machine()
    assert text.endswith(f", {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    assert not text.startswith(",")
    assert machine(threads=False) == text.rsplit(", ", 1)[0]
