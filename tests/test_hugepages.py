"""The harness's huge-page heap: applied where the kernel offers it, off on request, never fatal.

Each case runs in a fresh interpreter, since the setting is per process and only acts once.
"""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from harness.hugepages import thp_available

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
from harness.hugepages import use_huge_pages
applied = use_huge_pages()
smaps = open("/proc/self/smaps").read().split("\\n")
flags = [smaps[i + j] for i, line in enumerate(smaps) if line.endswith("[heap]")
         for j in range(1, 40) if i + j < len(smaps) and smaps[i + j].startswith("VmFlags")][:4]
print(applied, any(" hg" in f for f in flags))
"""


def _probe(**env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


GLIBC_LINUX = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC_LINUX, reason="Linux with glibc only")
def test_heap_is_marked_for_huge_pages_where_the_kernel_offers_them():
    expected = "True True" if thp_available() else "False False"
    assert _probe() == expected


@pytest.mark.skipif(not GLIBC_LINUX, reason="Linux with glibc only")
def test_huge_pages_can_be_switched_off():
    assert _probe(OMRL_HUGEPAGES="0") == "False False"
