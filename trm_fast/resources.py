"""Running out of device memory, as a failure the CLI reports in one line with what to do instead (the
model and batch that did not fit, the peak reached, the settings that need less). The disk's counterpart
is disk.DiskFullError."""

from typing import Optional, Sequence


class DeviceOutOfMemory(RuntimeError):
    """The device ran out of memory; the message says where and what to try."""


def out_of_memory(err: BaseException, where: str, tries: Sequence[str], device=None) -> DeviceOutOfMemory:
    """The DeviceOutOfMemory to raise from `err` (a torch.OutOfMemoryError): `where` it happened, the
    device's peak against its size, and `tries`, the settings that need less memory."""
    import torch  # here: the CLI imports this module before it knows it needs torch

    text = f"out of device memory {where}"
    if device is not None and torch.device(device).type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        text += f" (peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} of {total:.1f} GiB)"
    first = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
    return DeviceOutOfMemory(f"{text}: {first}. To need less: " + "; ".join(tries))


def out_of_memory_in(err: BaseException) -> Optional[BaseException]:
    """The torch.OutOfMemoryError that `err` is or was raised from or while handling (a failed CUDA-graph
    capture reports its own error, with the out-of-memory one as its context); None if there is none."""
    import torch

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, torch.OutOfMemoryError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
