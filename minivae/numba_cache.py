"""Where Numba keeps the compiled kernels, so that caching never fails.

The kernels are compiled once and cached on disk (``cache=True``), by
default in ``__pycache__`` beside ``kernels.py``.  When the package directory
is not writable (installed by root and run by a user, a read-only container
image), Numba would refuse to cache and even ``minivae --help`` would fail.
`configure` then points Numba at a per-user directory instead, and says so
once per directory.  It must run before Numba is imported.
"""
import os
import sys
import tempfile
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
