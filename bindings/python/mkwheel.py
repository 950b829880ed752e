#!/usr/bin/env python3
"""Build the sqlite-prefix wheel without any build-time download or build backend (make python-package).

    python3 bindings/python/mkwheel.py dist/prefix.so dist/    ->  dist/sqlite_prefix-0.1.0-py3-none-linux_x86_64.whl

A wheel is a zip of the package plus three metadata files (PEP 427): this writes them with the standard
library only, so it works with Debian's python3 offline, where `pip install bindings/python` is refused
(PEP 668) and a venv cannot fetch setuptools. The platform tag comes from the extension's ELF header (or
Mach-O on macOS), so a cross-compiled arm64 prefix.so gives a linux_aarch64 wheel. Install it with
`pip install --no-index dist/sqlite_prefix-*.whl` (in a venv, or with --user / --break-system-packages).
"""
import base64
import hashlib
import os
import re
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    with open(os.path.join(HERE, "pyproject.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


def platform_tag(so):
    with open(so, "rb") as f:
        head = f.read(20)
    if head[:4] == b"\x7fELF":
        machine = struct.unpack("<H", head[18:20])[0]
        arch = {0x3E: "x86_64", 0xB7: "aarch64", 0x03: "i686", 0xF3: "riscv64", 0x15: "ppc64le"}.get(machine)
        if not arch:
            sys.exit(f"mkwheel: {so}: ELF machine {machine:#x} has no wheel tag here")
        return "linux_" + arch
    if head[:4] in (b"\xcf\xfa\xed\xfe",):   # Mach-O 64-bit
        cpu = struct.unpack("<I", head[4:8])[0]
        return {0x01000007: "macosx_11_0_x86_64", 0x0100000C: "macosx_11_0_arm64"}.get(cpu) or sys.exit(f"mkwheel: {so}: CPU {cpu:#x}")
    sys.exit(f"mkwheel: {so} is not an ELF or Mach-O shared library")


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: mkwheel.py PATH/prefix.so OUTDIR")
    so, out = sys.argv[1], sys.argv[2]
    ver, tag = version(), platform_tag(so)
    lib = "prefix.dylib" if tag.startswith("macosx") else "prefix.so"
    files = {}
    pkg = os.path.join(HERE, "sqlite_prefix")
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py"):
            with open(os.path.join(pkg, name), "rb") as f:
                files["sqlite_prefix/" + name] = f.read()
    with open(so, "rb") as f:
        files["sqlite_prefix/" + lib] = f.read()
    with open(os.path.join(HERE, "README.md"), "rb") as f:
        readme = f.read().decode()
    dist = f"sqlite_prefix-{ver}.dist-info"
    files[dist + "/METADATA"] = (
        "Metadata-Version: 2.1\nName: sqlite-prefix\nVersion: " + ver + "\n"
        "Summary: Prefix-tuning inside SQLite: load the sqlite-prefix extension into a sqlite3 connection\n"
        "License: MIT\nRequires-Python: >=3.8\nDescription-Content-Type: text/markdown\n\n" + readme).encode()
    files[dist + "/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: sqlite-prefix mkwheel.py\nRoot-Is-Purelib: false\n"
                              f"Tag: py3-none-{tag}\n").encode()
    record = [record_line(n, d) for n, d in files.items()] + [dist + "/RECORD,,"]
    files[dist + "/RECORD"] = ("\n".join(record) + "\n").encode()
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"sqlite_prefix-{ver}-py3-none-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            info = zipfile.ZipInfo(n, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if n.endswith(lib) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
    print(path)


if __name__ == "__main__":
    main()
