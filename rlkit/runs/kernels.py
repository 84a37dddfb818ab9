"""Jupyter kernels for papermill runs: the kit's kernel name and a kernel manager on IPC sockets.

Parallel kernels on TCP ports race for free ports and collide ("Address already in use") once many
start at once; kernels on IPC transport use socket files with a path of their own and do not (docs/notebooks.md).
"""
from __future__ import annotations

import uuid
from pathlib import Path

from jupyter_client import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import default

KERNEL_NAME = "rlkit"  # `make install` registers it in the venv, display name "Python (rlkit)"
KERNEL_DISPLAY_NAME = "Python (rlkit)"


class IPCKernelManager(AsyncKernelManager):
    """Kernel sockets are files in the Jupyter runtime dir, not TCP ports that parallel kernels race for."""

    sockets: str | None = None  # path prefix of the socket files; a worker sets it so its parent can clean up

    @default("transport")
    def _default_transport(self):
        return "ipc"

    @default("ip")
    def _default_ip(self):
        # jupyter_client's default prefix, "kernel-ipc" in the cwd, is the same for every kernel started
        # from one directory: parallel kernels then pick the same socket files ("Invalid Signature").
        return self.sockets or new_socket_prefix()


def new_socket_prefix() -> str:
    """A fresh path prefix for one kernel's socket files."""
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True)
    return str(runtime / f"rlkit-{uuid.uuid4().hex[:12]}-ipc")


def remove_sockets(prefix: str) -> None:
    """Delete the socket files a killed kernel left behind."""
    for leftover in Path(prefix).parent.glob(Path(prefix).name + "-*"):
        leftover.unlink(missing_ok=True)


def default_kernel_name() -> str:
    """The kit's own kernelspec if registered, else python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"
