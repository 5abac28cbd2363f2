#!/usr/bin/env python3
"""The plugin ABI stamp compiled into sdtrain is the digest of the public headers as they are now:
SHA-256 over include/sdtrain/*.h (each as its name, a newline and its text, in name order), first
16 hex digits. Computed here independently of CMake; also shows that editing any public header
changes the stamp.

    plugin_abi_stamp_test.py SOURCE_DIR BUILD_DIR"""
import hashlib
import pathlib
import re
import sys

source, build = map(pathlib.Path, sys.argv[1:3])


def digest(texts):
    hasher = hashlib.sha256()
    for name in sorted(texts):
        hasher.update(name.encode() + b"\n" + texts[name])
    return hasher.hexdigest()[:16]


headers = {p.name: p.read_bytes() for p in (source / "include" / "sdtrain").glob("*.h")}
assert "plugin.h" in headers and "model.h" in headers, sorted(headers)
version_h = (build / "include" / "sdtrain" / "version.h").read_text()
stamp = re.search(r'#define SDTRAIN_PLUGIN_ABI "([0-9a-f]{16})"', version_h)
assert stamp, "no SDTRAIN_PLUGIN_ABI in " + str(build / "include" / "sdtrain" / "version.h")
expected = digest(headers)
assert stamp.group(1) == expected, f"stamp {stamp.group(1)} != digest of the public headers {expected} (reconfigure?)"

# One added space in any public header is another ABI.
for name in headers:
    edited = dict(headers, **{name: headers[name] + b" "})
    assert digest(edited) != expected, name
print("plugin ABI stamp", expected, "is the digest of", len(headers), "public headers")
