"""The peak resident memory of this process, as every results file records it."""

import resource


def peak_memory_mb():
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
