"""Numba for minivae: where the compiled kernels are cached, so that caching
never fails, and a parallel kernel's twin for one core.

The kernels are compiled once and cached on disk (``cache=True``), by
default in ``__pycache__`` beside ``kernels.py``.  When the package directory
is not writable (installed by root and run by a user, a read-only container
image), Numba would refuse to cache and even ``minivae --help`` would fail.
`configure` then points Numba at a per-user directory instead, and says so
once per directory.  It must run before Numba is imported.

`one_core` compiles a `prange` kernel again without threads (see `threads`).
"""
import os
import sys
import tempfile
import types
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
NOTICE = ".minivae-notice-shown"


def _writable(directory):
    return directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)


def _user_cache_dirs():
    """Per-user places to try, best first; the last one always works."""
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache" if Path.home() else None)
    if base:
        yield Path(base) / "minivae" / "numba"
    yield Path(tempfile.gettempdir()) / f"minivae-{os.getuid()}" / "numba"


def configure():
    """Set NUMBA_CACHE_DIR to a per-user directory when the package's own cache
    directory cannot be written; leave a user's NUMBA_CACHE_DIR alone."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    pycache = PACKAGE / "__pycache__"
    if _writable(pycache) or (not pycache.exists() and _writable(PACKAGE)):
        return
    for directory in _user_cache_dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if _writable(directory):
            break
    else:
        directory = Path(tempfile.mkdtemp(prefix="minivae-numba-"))
    os.environ["NUMBA_CACHE_DIR"] = str(directory)
    notice = directory / NOTICE
    if not notice.exists():
        print(f"minivae: {PACKAGE} is not writable; compiled kernels are cached in "
              f"{directory} instead", file=sys.stderr)
        try:
            notice.touch()
        except OSError:
            pass


def one_core(kernel):
    """The parallel Numba function `kernel` compiled again without threads,
    cached under its own name (NAME_one_core): its `prange` runs as a plain
    `range` on the calling thread, the same arithmetic in the same order.
    For where Numba's threads must not run: one core by the thread policy,
    or a forked child (GNU OpenMP does not survive a fork; Numba ends such a
    child the moment it enters a parallel loop)."""
    from numba import njit
    f = kernel.py_func
    twin = types.FunctionType(f.__code__, f.__globals__, f"{f.__name__}_one_core",
                              f.__defaults__, f.__closure__)
    twin.__qualname__, twin.__doc__ = twin.__name__, f.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}  # njit's own
    return njit(cache=True, **{**options, "parallel": False})(twin)
