#!/usr/bin/env python3
"""Screenshots of every resident screen in every language, drawn by the gate's own renderer
(edge.display.render, the same code that fills the framebuffer), for docs/residents.md. No camera, no face:
a screen holds only text and icons.

    python docs/screens/render.py                 # docs/screens/<lang>-<screen>.png, 400x240, palette PNG
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.display.demo import TOUR
from edge.display.i18n import LANGUAGES, translator
from edge.display.render import Renderer

ROOT = Path(__file__).resolve().parents[2]


def name(s) -> str:
    return "-".join(str(x) for x in (s.kind, s.step, s.reason) if x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    ap.add_argument("--size", default="400x240", help="WIDTHxHEIGHT (the panel is usually 800x480)")
    args = ap.parse_args(argv)
    from PIL import Image

    w, h = (int(x) for x in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    for lang in LANGUAGES:
        r = Renderer((w, h), lang, translator(lang))
        for s in TOUR:
            s = s if s.kind != "welcome" else s.__class__("welcome", name="李明" if lang == "zh_CN" else "Ann Lee")
            img = Image.fromarray(r.render(s)).quantize(16)
            img.save(args.out / f"{lang}-{name(s)}.png", optimize=True)
    print(f"{len(TOUR) * len(LANGUAGES)} screens in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
