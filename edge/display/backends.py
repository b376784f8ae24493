"""Where a rendered screen goes: the Linux framebuffer, a desktop window, or nowhere.

The framebuffer needs no desktop, no X or Wayland and no extra package, and works the same on
Raspberry Pi OS Lite and a Jetson: the screen is packed to the device's pixel format with numpy
and written to ``/dev/fbN`` (geometry from ``/sys/class/graphics/fbN``), or to any file of the
same layout (a file-backed framebuffer: tests, and headless checks). KMS/DRM through SDL would also
work but adds SDL's KMSDRM build and a DRM master to hold; the framebuffer is enough for a still
screen that changes a few times a second. The window is for development, through pygame (imported
only when chosen).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.errors import ConfigError

log = logging.getLogger(__name__)

SYSFS = Path("/sys/class/graphics")


class Display(Protocol):
    size: tuple[int, int]   # (width, height)

    def show(self, rgb: np.ndarray) -> None: ...

    def close(self) -> None: ...


class NullDisplay:
    """``display.backend = "none"``: nothing is drawn (the gate still logs every event)."""

    def __init__(self, size: tuple[int, int] = (800, 480)) -> None:
        self.size = size

    def show(self, rgb: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


def sysfs_geometry(device: str) -> tuple[int, int, int, int] | None:
    """(width, height, bits per pixel, stride in bytes) of ``/dev/fbN`` from sysfs, or None."""
    base = SYSFS / Path(device).name
    try:
        w, h = (int(x) for x in (base / "virtual_size").read_text().strip().split(","))
        bpp = int((base / "bits_per_pixel").read_text().strip())
        stride = int((base / "stride").read_text().strip()) if (base / "stride").exists() else w * bpp // 8
    except (OSError, ValueError):
        return None
    return w, h, bpp, stride


def pack(rgb: np.ndarray, bpp: int) -> np.ndarray:
    """RGB pixels in the framebuffer's format: RGB565 (16), BGR (24) or BGRX (32), little-endian."""
    if bpp == 16:
        r, g, b = (rgb[..., i].astype(np.uint16) for i in range(3))
        return ((r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)).astype("<u2").view(np.uint8).reshape(rgb.shape[0], -1)
    if bpp == 24:
        return np.ascontiguousarray(rgb[..., ::-1]).reshape(rgb.shape[0], -1)
    if bpp == 32:
        out = np.full(rgb.shape[:2] + (4,), 255, np.uint8)
        out[..., :3] = rgb[..., ::-1]
        return out.reshape(rgb.shape[0], -1)
    raise ConfigError(f"framebuffer with {bpp} bits per pixel is not supported (16, 24 or 32)")


class FramebufferDisplay:
    """Screens written straight into a Linux framebuffer device or a file laid out like one."""

    def __init__(self, device: str, width: int = 0, height: int = 0, bits_per_pixel: int = 0) -> None:
        geo = sysfs_geometry(device) if device.startswith("/dev/fb") else None
        if geo is not None:
            w, h, bpp, stride = geo
            w, h, bpp = width or w, height or h, bits_per_pixel or bpp
            stride = max(stride, w * bpp // 8)
        elif width and height and bits_per_pixel:
            w, h, bpp = width, height, bits_per_pixel
            stride = w * bpp // 8
        else:
            raise ConfigError(f"cannot read the geometry of framebuffer {device} from /sys/class/graphics: "
                              "is a display attached (ls /dev/fb*)? Or set display.width, display.height "
                              "and display.bits_per_pixel")
        if bpp not in (16, 24, 32):
            raise ConfigError(f"framebuffer {device} has {bpp} bits per pixel; maskgate draws 16, 24 or 32")
        self.device, self.size, self.bpp, self.stride = device, (w, h), bpp, stride
        try:
            self._fd = os.open(device, os.O_RDWR)
        except OSError as e:
            raise ConfigError(f"cannot open framebuffer {device} ({e.strerror}); the gate's user needs "
                              "the video group, or set display.backend = \"none\"") from None

    def show(self, rgb: np.ndarray) -> None:
        w, h = self.size
        if rgb.shape[:2] != (h, w):
            raise ValueError(f"screen {rgb.shape[1]}x{rgb.shape[0]} for a {w}x{h} framebuffer")
        rows = pack(rgb, self.bpp)
        if self.stride != rows.shape[1]:
            padded = np.zeros((h, self.stride), np.uint8)
            padded[:, :rows.shape[1]] = rows
            rows = padded
        os.pwrite(self._fd, rows.tobytes(), 0)

    def read(self) -> np.ndarray:
        """The framebuffer's pixels back as RGB (tests, ``diag display``)."""
        w, h = self.size
        raw = np.frombuffer(os.pread(self._fd, self.stride * h, 0), np.uint8).reshape(h, self.stride)
        raw = raw[:, :w * self.bpp // 8]
        if self.bpp == 16:
            v = raw.copy().view("<u2").reshape(h, w).astype(np.uint16)
            r, g, b = (v >> 11) & 31, (v >> 5) & 63, v & 31
            return np.stack([r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2], -1).astype(np.uint8)
        px = raw.reshape(h, w, self.bpp // 8)
        return np.ascontiguousarray(px[..., 2::-1])

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class WindowDisplay:
    """A desktop window through pygame, for development (``maskgate demo --display window``)."""

    def __init__(self, size: tuple[int, int] = (800, 480), title: str = "maskgate") -> None:
        try:
            os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
            import pygame
        except ImportError:
            raise ConfigError("display.backend = \"window\" needs pygame (pip install pygame); on a gate "
                              "without a desktop use \"framebuffer\"") from None
        self._pg: Any = pygame
        try:
            pygame.display.init()
            self._surface = pygame.display.set_mode(size)
        except pygame.error as e:
            raise ConfigError(f"cannot open a window ({e}); is DISPLAY or WAYLAND_DISPLAY set? On a gate "
                              "without a desktop use display.backend = \"framebuffer\"") from None
        pygame.display.set_caption(title)
        self.size = size

    def show(self, rgb: np.ndarray) -> None:
        pg = self._pg
        pg.event.pump()   # keeps the window responsive; closing it is left to the process
        pg.surfarray.blit_array(self._surface, np.ascontiguousarray(rgb.transpose(1, 0, 2)))
        pg.display.flip()

    def close(self) -> None:
        self._pg.display.quit()


def open_display(cfg: Any) -> Display:
    """The backend ``[display]`` names."""
    if cfg.backend == "framebuffer":
        return FramebufferDisplay(cfg.device, cfg.width, cfg.height, cfg.bits_per_pixel)
    size = (cfg.width or 800, cfg.height or 480)
    if cfg.backend == "window":
        return WindowDisplay(size)
    return NullDisplay(size)
