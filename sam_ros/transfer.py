"""Host <-> GPU copies through pinned (page-locked) staging buffers, reused from frame to frame.

``non_blocking=True`` from ordinary (pageable) memory is silently synchronous: the driver first
copies into a pinned bounce buffer. Copying into a buffer that is already pinned lets the upload
overlap the host's work and the download run at full bus speed. On a CPU nothing is copied.
"""
from __future__ import annotations

import numpy as np
import torch


class PinnedStaging:
    """One pinned buffer per direction, grown (doubling) only when a frame needs more bytes.

    Pinning memory is slow (a driver call), so buffers are kept and viewed at each frame's shape. The
    upload buffer is refilled only once the previous copy out of it has finished (its event; in the
    pipeline it always has, after the frame's one synchronisation); a download waits for its own copy.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self._uploaded: torch.cuda.Event | None = None

    def upload(self, array: np.ndarray, device: torch.device) -> torch.Tensor:
        """A C-contiguous copy of ``array`` on ``device`` (the array itself, wrapped, on a CPU)."""
        host = torch.from_numpy(np.require(array, requirements=("C", "W")))
        if device.type != "cuda":
            return host
        if self._uploaded is not None:
            self._uploaded.synchronize()
        staging = self._view("up", host.shape, host.dtype)
        staging.copy_(host)
        on_device = staging.to(device, non_blocking=True)
        self._uploaded = torch.cuda.Event()
        self._uploaded.record(torch.cuda.current_stream(device))
        return on_device

    def download(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on the host; from a GPU through the pinned buffer (the result is the caller's own)."""
        if tensor.device.type != "cuda":
            return tensor
        staging = self._view("down", tensor.shape, tensor.dtype)
        staging.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(tensor.device).synchronize()
        return staging.clone()

    def _view(self, direction: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        nbytes = max(1, int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size())
        buffer = self._buffers.get(direction)
        if buffer is None or buffer.numel() < nbytes:
            capacity = max(nbytes, 2 * (buffer.numel() if buffer is not None else 0))
            buffer = self._buffers[direction] = torch.empty(capacity, dtype=torch.uint8, pin_memory=True)
        return buffer[:nbytes].view(dtype)[:int(np.prod(shape))].view(shape)
