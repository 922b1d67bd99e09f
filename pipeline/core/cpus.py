"""How many CPUs this process may use; apart from pipeline/device.py so ingest's decoding
processes need not import torch."""

import os


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers, cgroups' cpusets
    and taskset narrow), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1
