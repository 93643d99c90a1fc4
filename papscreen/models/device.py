"""Pick the device models run on: one rule for training, inference and benchmarks.

``auto`` takes the first CUDA GPU when torch sees one and the CPU otherwise, so the same settings file works on a
laptop and on a GPU worker. Asking for ``cuda`` where there is none is an error, not a silent CPU fallback: a lab
that paid for a GPU worker wants to know when it is not used.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from papscreen.errors import ConfigError

__all__ = ["DEVICE_CHOICES", "bf16_supported", "describe_machine", "resolve_device", "torch_threads"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str | torch.device = "auto") -> torch.device:
    """The torch device for a setting: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: an unknown name, or CUDA asked for on a machine where torch sees no GPU.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("auto").type in ("cpu", "cuda")
        True
    """
    if isinstance(choice, torch.device):
        choice = str(choice)
    name = choice.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {choice!r} was asked for, but torch sees no CUDA GPU here; use 'auto' or 'cpu'")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {choice!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return device
    raise ConfigError(f"unknown device {choice!r}; expected one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast is worth using here: a CUDA GPU that has it, or a CPU with native bf16 instructions.

    Examples:
        >>> isinstance(bf16_supported(torch.device("cpu")), bool)
        True
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    # Without native bf16 instructions (AVX512-BF16 or AMX) autocast emulates bf16 and is slower than fp32.
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(bool(probe()) for probe in probes if callable(probe))


def describe_machine(device: torch.device | None = None) -> str:
    """One line naming the hardware a number was measured on: CPU model, cores, torch threads, GPU, load.

    The load average says whether other work shared the machine while a benchmark ran (ratios measured in one
    run survive that; absolute speeds do not).

    Examples:
        >>> "torch threads" in describe_machine()
        True
    """
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [
        f"CPU {cpu}",
        f"{cores} cores usable",
        f"{torch.get_num_threads()} torch threads",
        f"ISA {torch.backends.cpu.get_cpu_capability()}",
        f"torch {torch.__version__}",
    ]
    if torch.cuda.is_available():
        index = (device.index or 0) if device is not None and device.type == "cuda" else 0
        parts.append(f"GPU {torch.cuda.get_device_name(index)}")
    else:
        parts.append("no GPU")
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f}")
    return ", ".join(parts)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch's CPU work on ``count`` threads inside the block, then restore the previous number.

    Small networks (stage 1, or a ResNet18 at 64 px) train faster on one thread on a shared 2-core machine: two
    OpenMP threads that wait for each other were measured many times slower.

    Examples:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
