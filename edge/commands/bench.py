"""``maskgate bench``: the per-stage timings of edge.bench as a table, or one JSON line per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge import bench
from edge.config import Config


def table(rows: list[tuple[str, float, float, int]]) -> list[str]:
    """The stage figures as aligned text lines (stage, median, p95, samples)."""
    width = max([len("stage")] + [len(r[0]) for r in rows])
    lines = [f"{'stage':<{width}}  {'median ms':>9}  {'p95 ms':>9}  {'frames':>6}"]
    lines += [f"{name:<{width}}  {med:>9.2f}  {p95:>9.2f}  {n:>6}" for name, med, p95, n in rows]
    return lines



def run(cfg: Config, out: Any, video: Path | None = None, frames: int = 150,
        templates: int = bench.MATCH_TEMPLATES) -> int:
    """One line per stage (``frame``: the whole loop turn), then fps and the peak RSS."""
    b = bench.measure(cfg, video, frames, templates)
    out.text(f"maskgate bench: {b.frames} frames of {b.clip} ({b.size[0]}x{b.size[1]}), "
             f"match over {b.templates} templates")
    if b.why_not:
        out.text(f"embed stage left out: {b.why_not}")
    lines = table(b.rows)
    out.text(lines[0])
    for line, (stage, med, p95, n) in zip(lines[1:], b.rows):
        out.event({"stage": stage, "ms_median": round(med, 3), "ms_p95": round(p95, 3), "frames": n}, line)
    out.event({"frames": b.frames, "fps": round(b.fps, 1), "rss_mb": round(b.rss_mb, 1)},
              f"\n{b.fps:.1f} frames per second (median frame), peak RSS {b.rss_mb:.0f} MB")
    return 0
