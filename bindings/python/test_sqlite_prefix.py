"""Tests of the Python package (make test-bindings runs them with Debian's python3)."""
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sqlite_prefix  # noqa: E402

MODEL = os.path.join(os.environ.get("PREFIX_MODEL_DIR", "../shared/models"), "stories260K.gguf")
failed = 0


def check(ok, name, why=""):
    global failed
    print(("PASS python: %s" % name) if ok else ("FAIL python: %s: %s" % (name, why)))
    failed += 0 if ok else 1


# load, train from rows, generate
db = sqlite3.connect(":memory:")
sqlite_prefix.load(db)
check(db.execute("SELECT prefix_version()").fetchone()[0] == sqlite_prefix.__version__, "load(conn) and prefix_version()")
db.execute("SELECT prefix_model_load('m', ?)", (MODEL,))
db.execute("CREATE TABLE pairs(prompt TEXT, completion TEXT)")
db.executemany("INSERT INTO pairs VALUES (?, ?)", [("The day was", " bright and sunny.\n"), ("The dog was", " happy in the sun.\n")])
blob = db.execute("""SELECT prefix_train('m', 'SELECT prompt, completion FROM pairs', '{"max_steps": 200, "add_eos": false}')""").fetchone()[0]
out = db.execute("""SELECT prefix_generate('m', ?, 'The dog was', '{"stop": "\\n"}')""", (blob,)).fetchone()[0]
check(isinstance(blob, bytes) and out == " happy in the sun.", "train from rows and generate with the prefix", repr(out))

# the BLOB's checksum, computed as docs/prefix-format.md writes it out (no project code)
import struct
M = (1 << 64) - 1


def pf_hash64(b, seed):
    n = len(b)
    h = (seed ^ (0x9E3779B97F4A7C15 * (n + 1))) & M
    i = 0
    while i + 8 <= n:
        w = (struct.unpack("<Q", b[i:i + 8])[0] * 0xBF58476D1CE4E5B9) & M
        w ^= w >> 31
        h = ((h ^ w) * 0x94D049BB133111EB) & M
        h ^= h >> 29
        i += 8
    t = (int.from_bytes(b[i:] + b"\0" * (8 - (n - i)), "little") * 0xBF58476D1CE4E5B9) & M
    h = ((h ^ t ^ (n - i)) * 0x94D049BB133111EB) & M
    h ^= h >> 32
    h = (h * 0xD6E8FEB86659FD93) & M
    return h ^ (h >> 32)


check(struct.unpack("<Q", blob[-8:])[0] == pf_hash64(blob[:-8], 0x53515046),
      "a BLOB's checksum verifies with the algorithm docs/prefix-format.md spells out")

# prefix_jobs from a second connection on another thread, while the first trains. Whatever the machine's
# speed: until the poller has seen the job, the training's progress handler (which the extension calls
# while it computes) holds each of its calls a little, so the training cannot end first.
seen = []
seen_evt = threading.Event()
training_done = threading.Event()


def poll():
    c2 = sqlite3.connect(":memory:")
    sqlite_prefix.load(c2)
    while not training_done.is_set():
        seen.extend(r[0] for r in c2.execute("SELECT status FROM prefix_jobs WHERE status = 'running'"))
        if seen:
            seen_evt.set()
            break
        time.sleep(0.005)


def hold_until_seen():
    if not seen_evt.is_set():
        seen_evt.wait(0.05)
    return 0


db.set_progress_handler(hold_until_seen, 100)
t = threading.Thread(target=poll)
t.start()
db.execute("""SELECT prefix_train('m', 'SELECT prompt, completion FROM pairs', '{"max_steps": 1500, "add_eos": false}')""")
training_done.set()
t.join()
db.set_progress_handler(None, 0)
check(bool(seen), "another connection of the process sees the training in prefix_jobs")

# errors: a SQL error is sqlite3.OperationalError with the extension's text
try:
    db.execute("SELECT prefix_generate('nope', NULL, 'x')")
    check(False, "errors reach Python", "no error")
except sqlite3.OperationalError as e:
    check(str(e).startswith("prefix_generate: no model named 'nope' is loaded"), "errors reach Python as sqlite3.OperationalError", str(e))


class NoExt:   # a connection of a Python built without loadable extensions
    pass


try:
    sqlite_prefix.load(NoExt())
    check(False, "a clear error without extension support", "no error")
except RuntimeError as e:
    check("--enable-loadable-sqlite-extensions" in str(e) and "pyenv" in str(e), "a clear error when the interpreter cannot load extensions", str(e))

old = os.environ.get("SQLITE_PREFIX_PATH")
os.environ["SQLITE_PREFIX_PATH"] = "/nonexistent/prefix.so"
try:
    sqlite_prefix.load(sqlite3.connect(":memory:"))
    check(False, "a missing SQLITE_PREFIX_PATH is named", "no error")
except FileNotFoundError as e:
    check("/nonexistent/prefix.so" in str(e), "a missing SQLITE_PREFIX_PATH is named", str(e))
if old is None:
    del os.environ["SQLITE_PREFIX_PATH"]
else:
    os.environ["SQLITE_PREFIX_PATH"] = old

# the bundled .so (the package with prefix.so inside, as a wheel has it)
if old:
    with tempfile.TemporaryDirectory() as d:
        shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sqlite_prefix"), os.path.join(d, "sqlite_prefix"))
        shutil.copy(old, os.path.join(d, "sqlite_prefix", "prefix.so"))
        saved = os.environ.pop("SQLITE_PREFIX_PATH")
        code = ("import sqlite3, sqlite_prefix; c = sqlite3.connect(':memory:'); sqlite_prefix.load(c); "
                "print(sqlite_prefix.loadable_path(), c.execute('SELECT prefix_version()').fetchone()[0])")
        env = dict(os.environ, PYTHONPATH=d)
        import subprocess
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        os.environ["SQLITE_PREFIX_PATH"] = saved
        check(r.returncode == 0 and r.stdout.startswith(os.path.join(d, "sqlite_prefix", "prefix.so")),
              "load(conn) finds the prefix.so bundled in the package", r.stdout + r.stderr)
sys.exit(1 if failed else 0)
