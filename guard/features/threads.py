"""One BLAS thread for the numpy stages of a request.

numpy's and scipy's BLAS (OpenBLAS) keep their worker threads spinning on the cores for a while
after each call. The black-box heads make many small BLAS calls (a few rows against a fitted
matrix), so with more than one BLAS thread the cores are still busy when the next request's host
forward pass (torch, on its own OpenMP threads) starts, and that pass runs slower: `guard bench`'s
`check` of a 40-token prompt took 177 ms without this and 95 ms with it (two runs, 2 cores). On
one thread those small products cost the same, and nothing spins.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

__all__ = ["one_blas_thread"]


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # inspects the loaded libraries once, not at every request


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Inside the block, numpy's and scipy's BLAS run on one thread (torch is left as it is).

    Example:
        >>> import numpy as np
        >>> with one_blas_thread():
        ...     float(np.ones((2, 3)) .sum())
        6.0
    """
    with _controller().limit(limits=1, user_api="blas"):
        yield
