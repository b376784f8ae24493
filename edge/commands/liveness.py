"""``maskgate liveness VIDEO --challenge NAME``: one challenge judged on a recording."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.camera import frames
from edge.camera.replay import ReplaySource
from edge.config import Config
from edge.liveness import ChallengeSession, LogPrompter
from edge.vision import landmarks


def judge_video(video: Path, challenge: str, cfg: Config, out: Any) -> int:
    """``maskgate liveness``: one challenge on a recording, prompted at its first face (after the
    0.4 s baseline). Exit 0 passed, 1 not passed, 2 unreadable input."""
    source = ReplaySource(video, realtime=False)
    session = ChallengeSession([challenge], cfg.liveness, LogPrompter(out.text))
    verdict = None
    last_t = 0.0
    with landmarks.for_video(cfg.vision) as lm:
        for frame in frames(source):
            last_t = frame.t
            verdict = session.update(frame, lm.detect(frame.image))
            if verdict is not None:
                break
    if verdict is None:
        verdict = session.unanswered(last_t)
    out.event({"passed": verdict.passed, "elapsed_s": verdict.elapsed_s, "reason": verdict.reason},
              f"{'PASSED' if verdict.passed else 'NOT PASSED'} {challenge} in {verdict.elapsed_s:.2f} s: "
              f"{verdict.reason}")
    return 0 if verdict.passed else 1
