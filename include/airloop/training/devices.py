"""Which device a trainer uses, from `training.gpu` and what this machine has.

`true` means the GPU is required: a machine without one fails before any compute instead
of quietly training for hours on CPU. `auto` uses a GPU when one is visible.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Literal

Device = Literal["cpu", "cuda"]


class GpuUnavailable(RuntimeError):
    """training.gpu is true but no CUDA device is visible to this process."""


def cuda_available() -> bool:
    """Whether a CUDA device is usable here (torch's view, else the NVIDIA driver's).

    Without an NVIDIA driver there is none: answered without importing torch, which alone
    takes seconds (and every continuous-training run asks, in its plan).
    """
    if not _nvidia_driver_present():
        return False
    try:
        import torch
    except ImportError:
        return _nvidia_smi_lists_a_gpu()
    return bool(torch.cuda.is_available())


def _nvidia_driver_present() -> bool:
    # The kernel driver's file; in a container the NVIDIA toolkit mounts it and nvidia-smi.
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _nvidia_smi_lists_a_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listed.returncode == 0 and "GPU" in listed.stdout


def resolve_device(gpu: bool | str, available: bool | None = None) -> Device:
    """The device to train on; raise GpuUnavailable when a required GPU is missing."""
    present = cuda_available() if available is None else available
    if gpu is True and not present:
        raise GpuUnavailable(
            "training.gpu is true but no CUDA device is visible to the trainer "
            "(torch.cuda.is_available() is False and nvidia-smi lists no GPU). "
            "Run on a GPU host, pass the GPU into the container, or set training.gpu to auto or false."
        )
    return "cuda" if gpu is not False and present else "cpu"


def device_name(device: Device) -> str:
    """A human name for the hardware a run used, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu'."""
    if device == "cpu":
        return "cpu"
    import torch

    return str(torch.cuda.get_device_name(0))
