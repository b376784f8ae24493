"""Draw a :class:`~edge.display.messages.Screen` into an RGB array, in memory, with a real text renderer.

Readable at 1 m on a 7-inch panel: white text on black, the title about a ninth of the screen high,
and a large icon whose *shape* says the outcome (tick, cross, arrow, eye, padlock, warning), so
colour is never the only signal. Text goes through Pillow's FreeType renderer with a font that has
the language's glyphs (for Chinese: WenQuanYi Micro Hei or Noto Sans CJK from the OS packages).
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from edge.display import messages as M
from edge.display.messages import Screen
from edge.errors import ConfigError

log = logging.getLogger(__name__)

# Fonts tried in order when display.font is empty; the first that exists is used.
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
             "/usr/share/fonts/truetype/arphic/uming.ttc")
LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
               "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")
FONT_HINT = "install a CJK font (apt install fonts-wqy-microhei) or set display.font to a .ttf/.ttc"

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
GREEN, AMBER, RED, GREY = (40, 200, 90), (255, 190, 30), (235, 60, 50), (170, 170, 170)
ACCENT = {"welcome": GREEN, "challenge": AMBER, "checking": AMBER, "too_far": AMBER, "too_close": AMBER,
          "one_person": AMBER, "denied": RED, "lockout": RED, "held_open": RED, "fault": RED, "idle": WHITE,
          "claim": WHITE, "claim_read": AMBER,
          "stick_done": GREEN}


def find_font(language: str, configured: str = "") -> str:
    """A font file with glyphs for ``language``: ``configured``, else the first installed candidate."""
    if configured:
        if not Path(configured).is_file():
            raise ConfigError(f"display.font {configured!r} does not exist; {FONT_HINT}")
        return configured
    for p in (CJK_FONTS if language.startswith("zh") else LATIN_FONTS + CJK_FONTS):
        if Path(p).is_file():
            return p
    if shutil.which("fc-match"):   # fontconfig knows fonts in other places
        lang = "zh-cn" if language.startswith("zh") else "en"
        r = subprocess.run(["fc-match", "-f", "%{file}", f":lang={lang}"], capture_output=True, text=True)
        path = r.stdout.strip()
        if r.returncode == 0 and path and Path(path).is_file() and (not language.startswith("zh")
                                                                    or _has_cjk(path)):
            return path
    raise ConfigError(f"no font for display.language = {language!r} found; {FONT_HINT}")


def _has_cjk(path: str) -> bool:
    from PIL import ImageFont

    try:
        return ImageFont.truetype(path, 20).getmask("门").getbbox() is not None
    except OSError:
        return False


@lru_cache(maxsize=64)
def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


class Renderer:
    """Screens of one size in one language; ``tr`` is the catalogue's gettext."""

    def __init__(self, size: tuple[int, int], language: str, tr: Callable[[str], str], font: str = "") -> None:
        self.w, self.h = size
        self.language = language
        self.tr = tr
        self.font_path = find_font(language, font)
        self.drawn: list[str] = []   # the text of the last render (tests check where it came from)

    def render(self, screen: Screen, preview: np.ndarray | None = None) -> np.ndarray:
        from PIL import Image, ImageDraw

        if screen.kind not in M.KINDS:
            raise ValueError(f"unknown screen {screen.kind!r}")
        img = Image.new("RGB", (self.w, self.h), BLACK)
        d = ImageDraw.Draw(img)
        self.drawn = []
        accent = ACCENT[screen.kind]
        d.rectangle((0, 0, self.w, max(6, self.h // 40)), fill=accent)      # a band in the state's colour
        title, sub, foot = self._words(screen)
        icon_box = (self.w // 2 - self.h // 5, self.h * 7 // 100, self.w // 2 + self.h // 5, self.h * 47 // 100)
        self._icon(d, screen, icon_box, accent)
        self._text(d, title, self.h * 60 // 100, self.h // 9, WHITE)
        if sub:
            self._text(d, sub, self.h * 76 // 100, self.h // 16, WHITE)
        if foot:
            self._text(d, foot, self.h * 90 // 100, self.h // 14, accent if screen.kind != "idle" else GREY)
        out = np.asarray(img, np.uint8).copy()
        if preview is not None:
            self._inset(out, preview)
        return out

    # -- words --
    def _words(self, s: Screen) -> tuple[str, str | None, str | None]:
        tr = self.tr
        if s.kind == "challenge":
            title = tr(M.STEP_TEXT[s.step or "blink"])
            sub = tr(M.STEP_OF).format(n=s.n, total=s.total) if s.total > 1 else None
            foot = tr(M.SECONDS).format(seconds=s.seconds) if s.seconds is not None else None
            return title, sub, foot
        if s.kind == "welcome":
            title = tr(M.WELCOME_NAME).format(name=s.name) if s.name else tr(M.TEXT["welcome"][0])
            return title, tr(M.TEXT["welcome"][1]), None
        if s.kind == "denied":
            reason = s.reason if s.reason in M.DENIED else "not_recognised"
            return tr(M.DENIED[reason]), tr(M.DENIED_NEXT.get(reason, M.TRY_AGAIN)), None
        if s.kind == "claim":
            return tr(M.CLAIM[0]), tr(M.CLAIM[1]), None
        if s.kind == "claim_read":
            return tr(M.CLAIM_READ.get(s.reason or "", M.CLAIM_READ["card"])), tr(M.CLAIM_READ_NEXT), None
        title, sub = (tr(x) for x in M.TEXT[s.kind])
        foot = None
        if s.kind == "lockout" and s.seconds is not None:
            m, sec = divmod(max(0, s.seconds), 60)
            foot = tr(M.LOCKOUT_LEFT).format(minutes=m, seconds=sec) if m else \
                tr(M.LOCKOUT_LEFT_S).format(seconds=sec)
        return title, sub, foot

    def _text(self, d, text: str, cy: int, size: int, fill: tuple[int, int, int]) -> None:
        """One line centred at height ``cy``, shrunk until it fits the width."""
        self.drawn.append(text)
        while True:
            font = _font(self.font_path, size)
            l, t, r, b = d.textbbox((0, 0), text, font=font)
            if r - l <= self.w * 0.94 or size <= 12:
                break
            size = int(size * 0.9)
        d.text(((self.w - (r - l)) // 2 - l, cy - (b + t) // 2), text, font=font, fill=fill)

    # -- icons: the shape carries the meaning --
    def _icon(self, d, s: Screen, box: tuple[int, int, int, int], c: tuple[int, int, int]) -> None:
        x0, y0, x1, y1 = box
        cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, (y1 - y0) // 2
        lw = max(4, r // 8)
        k = s.kind
        if k == "challenge" and s.step in ("turn-left", "turn-right"):
            # The person faces the screen: their left is the screen's left.
            sgn = -1 if s.step == "turn-left" else 1
            half = int(r * 2.2)
            tip, tail = cx + sgn * half, cx - sgn * half
            d.rectangle((min(tip, tail) + (0 if sgn < 0 else 0), cy - r // 4,
                         max(tip, tail), cy + r // 4), fill=c)
            head = int(r * 1.1)
            d.polygon([(tip + sgn * r // 3, cy), (tip - sgn * head, cy - int(r * 0.8)),
                       (tip - sgn * head, cy + int(r * 0.8))], fill=c)
        elif k == "challenge":   # an eye
            pts_top = [(cx + int(1.6 * r * math.cos(a)), cy - int(0.8 * r * math.sin(a)))
                       for a in np.linspace(0, math.pi, 24)]
            pts_bot = [(cx + int(1.6 * r * math.cos(a)), cy - int(0.8 * r * math.sin(a)))
                       for a in np.linspace(math.pi, 2 * math.pi, 24)]
            d.line(pts_top + pts_bot + pts_top[:1], fill=c, width=lw, joint="curve")
            d.ellipse((cx - r // 2, cy - r // 2, cx + r // 2, cy + r // 2), fill=c)
            for a in np.linspace(0.25 * math.pi, 0.75 * math.pi, 4):   # lashes
                xa, ya = cx + int(1.6 * r * math.cos(a)), cy - int(0.8 * r * math.sin(a))
                d.line((xa, ya, xa + int(0.35 * r * math.cos(a)), ya - int(0.35 * r * math.sin(a))),
                       fill=c, width=lw // 2 + 1)
        elif k in ("welcome", "stick_done"):     # a tick in a circle
            d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=c, width=lw)
            d.line([(cx - r // 2, cy), (cx - r // 8, cy + r // 2 - r // 10), (cx + r // 2 + r // 8, cy - r // 2)],
                   fill=c, width=lw + 2, joint="curve")
        elif k == "denied":      # a cross in a circle
            d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=c, width=lw)
            q = int(r * 0.5)
            d.line((cx - q, cy - q, cx + q, cy + q), fill=c, width=lw + 2)
            d.line((cx - q, cy + q, cx + q, cy - q), fill=c, width=lw + 2)
        elif k == "lockout":     # a padlock
            d.rounded_rectangle((cx - r * 3 // 4, cy - r // 6, cx + r * 3 // 4, cy + r), radius=r // 6, fill=c)
            d.arc((cx - r // 2, cy - r, cx + r // 2, cy + r // 6), 180, 360, fill=c, width=lw)
            d.line((cx - r // 2 + lw // 2, cy - r // 2 + r // 12, cx - r // 2 + lw // 2, cy - r // 6), fill=c, width=lw)
            d.line((cx + r // 2 - lw // 2, cy - r // 2 + r // 12, cx + r // 2 - lw // 2, cy - r // 6), fill=c, width=lw)
            d.ellipse((cx - r // 8, cy + r // 4, cx + r // 8, cy + r // 2), fill=BLACK)
        elif k == "fault":       # a warning triangle
            d.polygon([(cx, cy - r), (cx - int(r * 1.15), cy + r), (cx + int(r * 1.15), cy + r)], outline=c, width=lw)
            d.line((cx, cy - r // 3, cx, cy + r // 3), fill=c, width=lw + 2)
            d.ellipse((cx - lw, cy + r // 2, cx + lw, cy + r // 2 + 2 * lw), fill=c)
        elif k == "held_open":   # a door ajar
            d.rectangle((cx - r * 2 // 3, cy - r, cx + r * 2 // 3, cy + r), outline=c, width=lw)
            d.polygon([(cx - r * 2 // 3, cy - r), (cx + r // 6, cy - r + r // 4), (cx + r // 6, cy + r + r // 4),
                       (cx - r * 2 // 3, cy + r)], fill=c)
        elif k in ("too_far", "too_close"):   # an arrow toward the camera (step closer) or away
            up = k == "too_far"
            tip, tail = (cy - r, cy + r) if up else (cy + r, cy - r)
            d.rectangle((cx - r // 5, min(tip, tail) + r // 2 * up, cx + r // 5, max(tip, tail) - r // 2 * (not up)),
                        fill=c)
            sgn = 1 if up else -1
            d.polygon([(cx, tip), (cx - int(r * 0.7), tip + sgn * int(r * 0.8)),
                       (cx + int(r * 0.7), tip + sgn * int(r * 0.8))], fill=c)
        elif k in ("claim", "claim_read"):   # a card; once read, with a tick
            cw, ch = int(r * 1.5), int(r * 0.95)
            d.rounded_rectangle((cx - cw, cy - ch, cx + cw, cy + ch), radius=r // 6, outline=c, width=lw)
            d.rectangle((cx - cw, cy - ch // 2, cx + cw, cy - ch // 2 + lw * 2), fill=c)     # the stripe
            d.rounded_rectangle((cx - cw + r // 3, cy + ch // 6, cx - cw + r, cy + ch * 2 // 3),
                                radius=r // 12, fill=c)                                       # the chip
            if k == "claim_read":
                d.line([(cx + r // 6, cy + ch // 3), (cx + r // 2, cy + ch * 2 // 3), (cx + r * 6 // 5, cy)],
                       fill=c, width=lw + 2, joint="curve")
            else:                # keys for a PIN
                for i in range(3):
                    x = cx + r // 4 + i * r // 3
                    d.ellipse((x - lw, cy + ch // 3 - lw, x + lw, cy + ch // 3 + lw), fill=c)
        elif k == "one_person":  # one figure
            d.ellipse((cx - r // 3, cy - r, cx + r // 3, cy - r // 3), fill=c)
            d.pieslice((cx - r * 2 // 3, cy - r // 4, cx + r * 2 // 3, cy + r + r // 2), 180, 360, fill=c)
        elif k == "checking":    # three dots
            for i in (-1, 0, 1):
                d.ellipse((cx + i * r * 3 // 4 - r // 5, cy - r // 5, cx + i * r * 3 // 4 + r // 5, cy + r // 5), fill=c)
        else:                    # idle: a face outline to look at
            d.ellipse((cx - r * 3 // 4, cy - r, cx + r * 3 // 4, cy + r), outline=c, width=lw)
            for sx in (-1, 1):
                d.ellipse((cx + sx * r // 3 - r // 10, cy - r // 4 - r // 10, cx + sx * r // 3 + r // 10,
                           cy - r // 4 + r // 10), fill=c)

    def _inset(self, out: np.ndarray, frame: np.ndarray) -> None:
        """The camera view, mirrored (as people expect), small, bottom-right; only ever in memory."""
        import cv2

        h = self.h // 4
        w = max(1, int(frame.shape[1] * h / max(1, frame.shape[0])))
        small = cv2.resize(frame[:, ::-1], (w, h), interpolation=cv2.INTER_AREA)
        out[self.h - h - 4:self.h - 4, self.w - w - 4:self.w - 4] = small[..., :3]
