"""The privacy guard: this process sends nothing off the device and writes no image to disk.

Installed first thing by ``maskgate run``, ``replay`` and ``demo``. It is a Python audit hook
(``sys.addaudithook``): once added it cannot be removed, and no config key switches it off. Every
refusal raises ``PrivacyError`` (logged at ERROR), which the gate treats as a denial, so the door
stays locked.

What it covers, and how:

* Sockets: any socket that is not ``AF_UNIX`` (systemd notify and journald use AF_UNIX), and any
  connect / bind / sendto / sendmsg to a non-path address, and every name lookup (a DNS query is
  itself traffic). Python's socket events; native code that opens sockets is not seen here.
* Files, by name: opening for writing, renaming, copying or linking to a name whose extension is
  an image or video format (``x.jpg``, ``clip.mp4``, ``frame.jpg.tmp``, raw ``.yuv`` dumps).
* Files, by content: ``open()`` is replaced by one that returns the usual file objects, whose raw
  layer sniffs the first bytes written at offset 0: an image or video magic number, or a NumPy
  ``.npy`` header of an image-shaped array, is refused before it reaches the disk.
* Native writers that call C directly and so bypass the audit hook: ``cv2.imwrite``,
  ``cv2.imwritemulti``, ``cv2.VideoWriter`` and writing ``cv2.FileStorage`` are replaced by
  refusing stand-ins (``cv2.imencode`` stays: it encodes to memory, and writing its result to a
  file is caught by the content check).
* Logs, exceptions and crash dumps: log record arguments that are arrays or byte strings of more
  than 64 elements are replaced by a short description; NumPy prints at most 64 elements of any
  array (so an exception that carries a frame shows a few corner values, never the image); and
  core dumps are switched off (``RLIMIT_CORE`` 0 and not dumpable), because a core file is the
  whole memory of the process, frames included.

Not covered in-process, by design of Python: ``os.write`` on a raw descriptor, other native code
(MediaPipe, FFmpeg, the TFLite runtime), and child processes (spawning one is logged, not
refused). These are covered from outside: ``tests/test_privacy.py`` runs the gate under
``strace -f`` and ``evaluation/measure_privacy.py`` counts every byte written (see PRIVACY.md).
"""

from __future__ import annotations

import ast
import builtins
import io
import logging
import os
import re
import socket
import sys
import threading
from pathlib import PurePath
from typing import Any, Callable

from edge.errors import PrivacyError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .jfif .png .apng .gif .bmp .dib .tif .tiff .webp .heic .heif .avif .jp2 .j2k "
    ".jpx .pgm .ppm .pbm .pnm .pam .pfm .hdr .exr .ico .tga .dng .cr2 .nef .psd .svg .qoi".split())
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .ts .mts .m2ts .3gp .flv .wmv .ogv .h264 .264 .h265 "
    ".265 .hevc .mjpeg .mjpg .y4m .yuv .rgb .bgr .nv12 .raw".split())
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES

SNIFF_BYTES = 256  # enough for every magic number below and a .npy header
MAX_LOGGED_ELEMENTS = 64  # arrays and byte strings longer than this never reach a log line

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
            "socket.gethostbyaddr", "socket.getnameinfo", "urllib.Request")
_SPAWNS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "pty.spawn")

_lock = threading.Lock()
_installed = False
_inside = threading.local()  # set while a refusal is being logged, so logging cannot recurse


# ---- what counts as an image ----

def media_name(path: Any) -> bool:
    """True when a file name says image or video (any of its extensions, ``a.jpg.tmp`` too)."""
    try:
        name = os.fsdecode(os.fspath(path))
    except TypeError:  # a file descriptor: no name to judge
        return False
    return any(s.lower() in MEDIA_SUFFIXES for s in PurePath(name).suffixes)


def media_kind(head: bytes) -> str | None:
    """The image/video format whose magic number ``head`` (a file's first bytes) starts with."""
    h = bytes(head[:SNIFF_BYTES])
    if h.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if h.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if h.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    if h[:4] == b"RIFF" and h[8:12] in (b"WEBP", b"AVI "):
        return "WebP" if h[8:12] == b"WEBP" else "AVI"
    if h[4:8] == b"ftyp":
        return "MP4/MOV/HEIF"
    if h.startswith(b"\x1aE\xdf\xa3"):
        return "Matroska/WebM"
    if h.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "MPEG"
    if h.startswith((b"\x00\x00\x00\x01\x67", b"\x00\x00\x00\x01\x09", b"\x00\x00\x00\x01\x40\x01")):
        return "H.264/H.265 stream"
    if h.startswith(b"FLV\x01"):
        return "FLV"
    if h.startswith(b"0&\xb2u\x8ef\xcf\x11"):
        return "ASF/WMV"
    if h.startswith((b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ")):
        return "JPEG 2000"
    if h.startswith(b"YUV4MPEG2 "):
        return "Y4M"
    if h.startswith(b"v/1\x01"):
        return "OpenEXR"
    if h[:2] == b"BM" and len(h) >= 18 and int.from_bytes(h[14:18], "little") in (12, 40, 52, 56, 64, 108, 124):
        return "BMP"
    if len(h) >= 4 and h[0:1] == b"P" and h[1:2] in b"1234567" and h[2:3] in b" \t\r\n" and (
            h[3:4].isdigit() or h[3:4] == b"#"):
        return "PNM"
    if h.startswith(b"\x93NUMPY") and _npy_image_shaped(h):
        return "NumPy image array"
    return None


def _npy_image_shaped(head: bytes) -> bool:
    """A ``.npy`` header describing an image: 8/16-bit with two sides of 16+, or H x W x 1/3/4."""
    try:
        start = 10 if head[6] == 1 else 12
        header = ast.literal_eval(head[start:].split(b"\n")[0].decode("latin-1").strip())
        shape, descr = tuple(header["shape"]), str(header["descr"])
    except (IndexError, ValueError, SyntaxError, KeyError, TypeError):
        return True  # a NumPy array we cannot read the shape of: refuse rather than guess
    big = [d for d in shape if d >= 16]
    if descr[1:] in ("u1", "b1", "u2", "i2") and len(shape) >= 2 and len(big) >= 2:
        return True
    return len(shape) >= 3 and shape[-1] in (1, 3, 4) and all(d >= 16 for d in shape[-3:-1])


# Signatures an auditor looks for anywhere in what the gate wrote (logs, audit trail, state files):
# long enough that random bytes (a sealed vault is ciphertext) match them about never.
_ANYWHERE = (b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"\xff\xd8\xff\xdb", b"JFIF\x00", b"Exif\x00\x00",
             b"\x89PNG\r\n\x1a\n", b"IHDR\x00", b"GIF87a", b"GIF89a", b"WEBPVP8", b"ftypisom", b"ftypmp4",
             b"ftypqt", b"ftypheic", b"\x1aE\xdf\xa3\x01", b"YUV4MPEG2", b"\x93NUMPY",
             # the same, as Python prints bytes, and as base64
             rb"\xff\xd8\xff", rb"\x89PNG", rb"\x93NUMPY", b"/9j/4AAQSkZJRg", b"/9j/4QA", b"/9j/2wBD",
             b"iVBORw0KGgo", b"R0lGODlh", b"R0lGODdh", b"k05VTVBZ")
# A run of numbers (an image or an embedding printed as text) or of escaped bytes, longer than any
# log line has a reason to hold. Tokens are scanned once, left to right: linear in the data.
_TOKEN = re.compile(rb"[^\s,;\[\]()]+")
_NUMBER = re.compile(rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_ESCAPES = re.compile(rb"(?:\\x[0-9a-fA-F]{2})+")


def _number_run(data: bytes) -> int | None:
    """Where the first run of MAX_LOGGED_ELEMENTS+ numbers starts, or None."""
    run, start = 0, 0
    for m in _TOKEN.finditer(data):
        if _NUMBER.fullmatch(m.group()):
            if run == 0:
                start = m.start()
            run += 1
            if run >= MAX_LOGGED_ELEMENTS:
                return start
        else:
            run = 0
    return None


def image_traces(data: bytes) -> list[str]:
    """What in ``data`` (a whole file or stream) looks like image or video data; empty when none.

    Used by the tests and ``evaluation/measure_privacy.py`` on everything the gate wrote.
    """
    found = []
    kind = media_kind(data[:SNIFF_BYTES])
    if kind:
        found.append(f"{kind} magic number at the start")
    found += [f"{sig!r} at byte {data.find(sig)}" for sig in _ANYWHERE if sig in data]
    at = _number_run(data)
    if at is not None:
        found.append(f"a run of {MAX_LOGGED_ELEMENTS}+ numbers at byte {at}: {data[at:at + 60]!r}...")
    for m in _ESCAPES.finditer(data):
        if len(m.group()) >= 4 * MAX_LOGGED_ELEMENTS:
            found.append(f"a run of {MAX_LOGGED_ELEMENTS}+ escaped bytes at byte {m.start()}: {m.group()[:60]!r}...")
            break
    return found


# ---- refusing ----

def _refuse(what: str) -> None:
    """Log and raise: the one way every refusal leaves the guard."""
    msg = f"privacy guard refused {what}: maskgate never sends data off the device or writes images"
    if not getattr(_inside, "busy", False):
        _inside.busy = True
        try:
            log.error("%s", msg)
        finally:
            _inside.busy = False
    raise PrivacyError(msg)


def _make_hook() -> Callable[[str, tuple], None]:
    """The audit hook, closed over its own constants so rebinding module names cannot weaken it."""
    af_unix = socket.AF_UNIX
    write_flags = _WRITE_FLAGS
    lookups = frozenset(_LOOKUPS)
    spawns = _SPAWNS
    is_media = media_name
    refuse = _refuse

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags)
            if writing and is_media(path):
                refuse(f"writing the image/video file {path!r}")
        elif event == "socket.__new__":
            if args[1] != af_unix:
                refuse(f"a network socket (family {args[1]})")
        elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
            address = args[1]
            if address is not None and not isinstance(address, (str, bytes)):
                refuse(f"{event.split('.')[1]} to the network address {address!r}")
        elif event in lookups:
            refuse(f"a network name lookup ({event}: {args[0]!r})")
        elif event in ("os.rename", "shutil.copyfile", "shutil.copytree", "os.link", "os.symlink"):
            if is_media(args[1]):
                refuse(f"{event} to the image/video name {args[1]!r}")
        elif event.startswith(spawns):
            # A child process is beyond this hook; the strace test follows children instead.
            if not getattr(_inside, "busy", False):
                _inside.busy = True
                try:
                    log.warning("privacy guard: %s %r starts a process this guard does not cover",
                                event, args[0])
                finally:
                    _inside.busy = False

    return hook


# ---- content check on Python file writes ----

class _SniffingFileIO(io.FileIO):
    """A FileIO that refuses when the bytes written at the start of the file are an image."""

    _head: bytearray | None = None
    _refused = ""  # once refused, every later write is too (a buffered writer retries on close)

    def write(self, b: Any) -> int:  # type: ignore[override]
        if self._refused:
            _refuse(self._refused)
        head = self._head
        if head is None:
            try:
                at_start = self.tell() == 0
            except OSError:  # a pipe or a terminal: not a file on disk
                at_start = False
            head = self._head = bytearray() if at_start else bytearray(b"-" * SNIFF_BYTES)
        if len(head) < SNIFF_BYTES:
            head += bytes(memoryview(b).cast("B")[: SNIFF_BYTES - len(head)])
            kind = media_kind(head)
            if kind:
                self._refused = f"writing {kind} data to {self.name!r}"
                _refuse(self._refused)
        return super().write(b)


def _sniffing_open(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
                   errors: str | None = None, newline: str | None = None, closefd: bool = True,
                   opener: Callable[[str, int], int] | None = None) -> Any:
    """``open()`` as the io module does it, with the raw layer of written files sniffed."""
    if not isinstance(mode, str) or not any(c in mode for c in "wax+") or set(mode) - set("rwxabt+"):
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    binary = "b" in mode
    if binary and "t" in mode:
        raise ValueError("can't have text and binary mode at once")
    if binary and (encoding is not None or errors is not None or newline is not None):
        raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
    raw = _SniffingFileIO(file, mode.replace("b", "").replace("t", ""), closefd, opener=opener)
    result: Any = raw
    try:
        line_buffering = buffering == 1 or (buffering < 0 and raw.isatty())
        if buffering == 1 or buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
            try:
                size = os.fstat(raw.fileno()).st_blksize
                if size > 1:
                    buffering = size
            except (OSError, AttributeError):
                pass
        if buffering == 0:
            if binary:
                return raw
            raise ValueError("can't have unbuffered text I/O")
        result = io.BufferedRandom(raw, buffering) if "+" in mode else io.BufferedWriter(raw, buffering)
        if binary:
            return result
        result = io.TextIOWrapper(result, encoding, errors, newline, line_buffering)
        result.mode = mode
        return result
    except BaseException:
        result.close()
        raise


_real_open = io.open


# ---- native writers in OpenCV ----

def _refusing(name: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        _refuse(f"cv2.{name} (it writes images to disk)")
    refuse.__name__ = name
    refuse.__doc__ = f"Refused by edge.privacy: cv2.{name} writes images to disk."
    return refuse


class _RefusedVideoWriter:
    """Stand-in for ``cv2.VideoWriter``: constructing one is refused."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        _refuse("cv2.VideoWriter (it writes video to disk)")


def _guard_opencv() -> None:
    try:
        import cv2
    except ImportError:  # no OpenCV, no native image writer to replace
        return
    real_storage = cv2.FileStorage

    def file_storage(*args: Any, **kwargs: Any) -> Any:
        flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
        if not args or (flags & (cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_APPEND)
                        and not flags & cv2.FILE_STORAGE_MEMORY):
            _refuse("cv2.FileStorage for writing (it can dump frames to disk)")
        return real_storage(*args, **kwargs)

    cv2.imwrite = _refusing("imwrite")
    cv2.imwritemulti = _refusing("imwritemulti")
    cv2.VideoWriter = _RefusedVideoWriter
    cv2.FileStorage = file_storage


# ---- logs, exceptions, crash dumps ----

def _withhold(value: Any) -> Any:
    """A short description instead of an array or byte string too long to be anything but data."""
    size = getattr(value, "size", None)
    if isinstance(size, int) and hasattr(value, "shape") and size > MAX_LOGGED_ELEMENTS:
        return f"<{'x'.join(map(str, value.shape))} {getattr(value, 'dtype', '')} array withheld>"
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) > MAX_LOGGED_ELEMENTS:
        return f"<{len(value)} bytes withheld>"
    if isinstance(value, (list, tuple)) and len(value) > MAX_LOGGED_ELEMENTS:
        return f"<{len(value)}-item {type(value).__name__} withheld>"
    return value


def _guard_logging() -> None:
    make_record = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = make_record(*args, **kwargs)
        rec.msg = _withhold(rec.msg)
        if isinstance(rec.args, tuple):
            rec.args = tuple(_withhold(a) for a in rec.args)
        elif isinstance(rec.args, dict):
            rec.args = {k: _withhold(v) for k, v in rec.args.items()}
        return rec

    logging.setLogRecordFactory(record)
    try:
        import numpy as np

        np.set_printoptions(threshold=MAX_LOGGED_ELEMENTS, edgeitems=2)
    except ImportError:
        pass


def _no_core_dumps() -> None:
    """A core file holds the process's whole memory, frames included: never write one."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError) as e:
        log.warning("privacy guard: cannot limit core dumps: %s", e)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_DUMPABLE = 4
            if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")
        except (OSError, AttributeError) as e:
            log.warning("privacy guard: cannot mark the process non-dumpable: %s", e)


# ---- the one public entry point ----

def install() -> None:
    """Install the guard for the rest of this process's life; calling again does nothing."""
    global _installed
    with _lock:
        if _installed:
            return
        _guard_logging()
        _no_core_dumps()
        _guard_opencv()
        builtins.open = io.open = _sniffing_open  # type: ignore[assignment]
        sys.addaudithook(_make_hook())
        _installed = True
    log.debug("privacy guard installed: no network sockets, no image or video files")


def installed() -> bool:
    """Whether this process runs under the guard."""
    return _installed
