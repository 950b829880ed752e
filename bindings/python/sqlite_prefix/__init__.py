"""sqlite_prefix — load the sqlite-prefix SQLite extension (prefix-tuning inside SQLite) into a connection.

    import sqlite3, sqlite_prefix
    db = sqlite3.connect(":memory:")
    sqlite_prefix.load(db)
    db.execute("SELECT prefix_model_load('m', '../shared/models/stories260K.gguf')")

The extension is looked up, in order: the ``path`` argument; ``$SQLITE_PREFIX_PATH``; ``prefix.so`` bundled in
this package; ``make install``'s places (``/usr/local/lib/sqlite-prefix``, ``/usr/lib/sqlite-prefix``).
"""
import os
import sys

__version__ = "0.1.0"
__all__ = ["load", "loadable_path", "__version__"]

_NAME = "prefix.dylib" if sys.platform == "darwin" else "prefix.so"


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, _NAME)
    for prefix in ("/usr/local", "/usr"):
        yield os.path.join(prefix, "lib", "sqlite-prefix", _NAME)


def loadable_path():
    """The path of the extension that load() would use; FileNotFoundError saying where it looked."""
    env = os.environ.get("SQLITE_PREFIX_PATH")
    if env:
        if os.path.isfile(env):
            return env
        raise FileNotFoundError("sqlite_prefix: SQLITE_PREFIX_PATH is %r, which is not a file" % env)
    looked = list(_candidates())
    for c in looked:
        if os.path.isfile(c):
            return c
    raise FileNotFoundError(
        "sqlite_prefix: prefix.so not found (looked in %s). Build it (make, in the sqlite-prefix source tree) and "
        "set SQLITE_PREFIX_PATH=/path/to/dist/prefix.so, run make install, or pass load(conn, path=...)" % ", ".join(looked))


def load(conn, path=None):
    """Load the extension into a sqlite3 connection (every prefix_* function and table becomes available)."""
    if not hasattr(conn, "enable_load_extension"):
        raise RuntimeError(
            "sqlite_prefix: this Python's sqlite3 module cannot load extensions: it was built without "
            "--enable-loadable-sqlite-extensions (pyenv and the python.org macOS installer build it so by default). "
            "Use a Python that can (Debian/Ubuntu's /usr/bin/python3, Homebrew's python), rebuild with "
            "PYTHON_CONFIGURE_OPTS=\"--enable-loadable-sqlite-extensions\" pyenv install <version>, or pass a "
            "connection from the pysqlite3 package")
    p = path or loadable_path()
    conn.enable_load_extension(True)
    try:
        conn.load_extension(p)   # the entry point sqlite3_prefix_init is found from the file name
    finally:
        conn.enable_load_extension(False)
