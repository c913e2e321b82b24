"""Hand memory freed by dropped frames back to the operating system.

Arrow's memory pool and glibc's malloc arenas (one per thread) keep freed blocks for reuse;
between the pipeline's stages that memory is better returned, so that the next stage's peak
does not sit on top of the last one's leftovers.
"""

from __future__ import annotations


def release(*, collect: bool = False) -> None:
    """Return unused memory: ``gc.collect()`` first when ``collect``, then Arrow's pool, then
    glibc's ``malloc_trim`` (nothing to do on other C libraries)."""
    import pyarrow as pa

    if collect:
        import gc

        gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
