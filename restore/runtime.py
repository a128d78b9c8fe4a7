"""Process-wide settings for CPU speed, applied by the command line and the benchmark scripts."""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

# mallopt parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed heap memory mapped (glibc only).

    glibc hands every allocation above its mmap threshold (which it raises to at most 32 MiB) fresh
    pages from the kernel and unmaps them on free. A network whose activations are larger than
    that, the 28x28 UNet on the solver benchmark's batch of 400 images, page-faults and zeroes its
    memory anew at every layer: about half its time at that batch (``benchmarks/malloc_speed.py``
    measures it). This turns both off, as MALLOC_MMAP_MAX_=0 and a large MALLOC_TRIM_THRESHOLD_
    would: the process keeps its peak resident memory until it exits. ``RESTORE_MALLOC=system``
    leaves glibc's defaults. Returns whether the setting was applied.
    """
    if os.environ.get("RESTORE_MALLOC", "").lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def machine(threads: bool = True) -> str:
    """The CPU's model name, its core count and (with ``threads``) torch's thread count, for benchmark
    reports: the same script's timings differ from one machine to the next. A table gathered from cells
    of several runs passes ``threads=False``: this run's thread count is not theirs."""
    import torch

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    cores = f"{name}, {os.cpu_count()} cores"
    return f"{cores}, {torch.get_num_threads()} torch threads" if threads else cores


def native_bf16() -> bool | None:
    """Whether this CPU computes in bfloat16 natively (x86: the avx512_bf16 or amx_bf16 flags; Arm: bf16),
    from Linux's /proc/cpuinfo; None where that cannot be read. Without it torch's CPU autocast to bfloat16
    converts in software: a DDPM's training step took 36.8 s in bf16 against 3.1 s in float32 on an AVX2-only
    AMD EPYC (batch 128, one thread; ``benchmarks/ddpm_cpu_speed.py``, quoted in the README)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.lower().startswith(("flags", "features"))), None)
    except OSError:
        return None
    if flags is None:
        return None
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(flags))


def bf16_warning(device_type: str) -> str | None:
    """A warning for bfloat16 autocast asked for on a CPU that does not compute in it natively, else None."""
    if device_type != "cpu" or native_bf16() is not False:
        return None
    return ("warning: --precision bf16 on a CPU without bfloat16 instructions (avx512_bf16, amx_bf16): torch emulates "
            "them, which was 12 times slower than --precision fp32 on such a CPU")


def available_memory() -> int:
    """Bytes of memory this process can still use: Linux's MemAvailable, else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def check_allocation(nbytes: float, what: str, fix: str) -> None:
    """Refuse, before allocating, work that needs more memory than is available: the kernel would kill the
    process (no error message at all) or the allocator would fail with a traceback. ``what`` names the
    size, ``fix`` the option to change."""
    from .errors import RestoreError

    have = available_memory()
    if nbytes > have:
        raise RestoreError(f"{what} needs about {nbytes / 2**30:.1f} GiB of memory and {have / 2**30:.1f} GiB is "
                           f"available: {fix}")


def to_device(t, device):
    """``t`` (a CPU tensor) on ``device``. To a GPU the copy is made from pinned memory without waiting:
    a plain copy from the CPU to CUDA synchronises the stream, so each one made while queueing a
    training step waits for everything queued before it, and the host can no longer work ahead of the
    device. The pinned block is PyTorch's cached host memory, which is not reused before the copy is done."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
