"""setup.py — the C extension memkit._memkit for setuptools (metadata is in pyproject.toml).

Offline with Debian's python3-setuptools and python3-dev:
    /usr/bin/python3 setup.py build            # -> build/lib.*/memkit/
    /usr/bin/python3 setup.py install --root=/tmp/stage   (or: pip install . where pip exists)
libmemkit's sources are compiled into the extension (no libmemkit.so needed at run time).
"""
import glob

from setuptools import Extension, setup

sources = sorted(glob.glob("python/memkit/*.c") + glob.glob("src/client/*.c") +
                 glob.glob("src/proto/*.c") + glob.glob("src/util/*.c"))

setup(
    ext_modules=[Extension(
        "memkit._memkit",
        sources=sources,
        include_dirs=["include", "src", "python/memkit"],
        define_macros=[("_GNU_SOURCE", None)],
        extra_compile_args=["-std=c11", "-pthread", "-Wall", "-Wextra"],
        extra_link_args=["-pthread"],
        libraries=["nettle", "z", "ssl", "crypto"],
    )],
)
