"""Image build step: a copy of the venv's interpreter with the file capability cap_net_raw=ep.

Usage: python grant_net_raw.py VENV  ->  VENV/bin/python3-netraw

It writes the `security.capability` extended attribute the kernel reads at exec,
as `setcap cap_net_raw=ep` would, so the image needs no libcap tools. Layout
(linux/capability.h, struct vfs_cap_data, little endian, revision 2):

    magic_etc    u32   VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    permitted    u32   capabilities 0-31   (bit 13: CAP_NET_RAW)
    inheritable  u32   capabilities 0-31
    permitted    u32   capabilities 32-63
    inheritable  u32   capabilities 32-63

Only the copy carries the capability: the base image's python3 stays plain.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys

CAP_NET_RAW = 13
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
XATTR = "security.capability"


def net_raw_capability() -> bytes:
    return struct.pack("<5I", VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, 1 << CAP_NET_RAW, 0, 0, 0)


def grant(venv: str) -> str:
    interpreter = os.path.realpath(os.path.join(venv, "bin", "python3"))
    capped = os.path.join(venv, "bin", "python3-netraw")
    # In the venv's bin/, so the copy still finds pyvenv.cfg and the venv's packages.
    shutil.copy(interpreter, capped)
    os.chmod(capped, 0o755)
    os.setxattr(capped, XATTR, net_raw_capability())
    return capped


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: grant_net_raw.py VENV")
    print(f"cap_net_raw=ep on {grant(sys.argv[1])}")
