"""``maskgate diag display`` and ``diag sound``: can what residents see and hear actually work here?

Each returns (status, detail, hint) as edge.diag's checks do. ``display`` covers the challenge
prompt (``liveness.prompt``: a "window" prompt needs an OpenCV with GUI, which the headless build
the project installs has not), the screen backend, the catalogue and a font with the language's
glyphs, by rendering one real screen into the backend (a framebuffer is written, then restored).
"""

from __future__ import annotations

from typing import Any

from edge.display.backends import FramebufferDisplay, open_display
from edge.display.i18n import translator
from edge.display.messages import SPOKEN, Screen
from edge.display.render import Renderer
from edge.errors import MaskgateError
from edge.liveness import gui_available
from edge.sound import Player, prompt_path


def check_display(cfg: Any) -> tuple[str, str, str]:
    d = cfg.display
    problems: list[tuple[str, str]] = []
    if cfg.liveness.prompt == "window":
        if not gui_available():
            problems.append(("liveness.prompt = \"window\" cannot open a window: this OpenCV is "
                             "opencv-python-headless", "set liveness.prompt = \"log\" and "
                             "display.backend = \"framebuffer\" (the challenge is drawn there)"))
    try:
        tr = translator(d.language)
        size = (d.width or 800, d.height or 480)
        renderer = Renderer(size, d.language, tr, d.font)
    except MaskgateError as e:
        return "fail", str(e), "apt install fonts-wqy-microhei, or set display.font"
    if d.backend == "none":
        if problems:
            return "fail", problems[0][0], problems[0][1]
        return "warn", (f"display.backend = \"none\": residents see nothing (language {d.language}, "
                        f"font {renderer.font_path})"), \
            "set display.backend = \"framebuffer\" on a gate with a screen"

    try:
        disp = open_display(d)
    except MaskgateError as e:
        return "fail", str(e), "fix [display] in the config, or set display.backend = \"none\""
    try:
        renderer = Renderer(disp.size, d.language, tr, d.font)
        before = disp.read() if isinstance(disp, FramebufferDisplay) else None
        disp.show(renderer.render(Screen("idle")))
        if before is not None:
            disp.show(before)
    except (MaskgateError, OSError, ValueError) as e:
        return "fail", f"{d.backend}: could not draw ({e})", "check the device and its permissions"
    finally:
        disp.close()
    detail = f"{d.backend} {disp.size[0]}x{disp.size[1]}, {d.language}, font {renderer.font_path}"
    if problems:
        return "fail", f"{detail}; but {problems[0][0]}", problems[0][1]
    return "ok", detail, ""


def check_sound(cfg: Any) -> tuple[str, str, str]:
    """Tones through ``aplay -D sound.device`` (opened first with an empty WAV, then one tick), and the
    spoken prompts rendered at install time for the display's language."""
    import shutil


    s = cfg.sound
    if not s.enabled or s.volume <= 0:
        return "warn", "sound off (sound.enabled false or volume 0)", "set [sound] enabled = true, volume = 0.6"
    if not shutil.which("aplay"):
        return "warn", "no aplay: the gate is silent", "apt install alsa-utils"
    player = Player(s, cfg.display.language)
    if not player.enabled:
        return "warn", f"{player.why}: the gate is silent", \
            "attach a speaker (USB or HDMI audio), enable the board's audio (dtparam=audio=on on a Pi) " \
            "or set sound.device (aplay -L lists them)"
    detail = f"ALSA device {s.device}, volume {s.volume:.0%}"
    if s.spoken:
        missing = [k for k in SPOKEN if not prompt_path(cfg.display.language, k).is_file()]
        if missing:
            return "warn", f"{detail}: tones play, but the spoken prompts are not rendered " \
                f"({prompt_path(cfg.display.language, missing[0])} missing)", \
                "sudo scripts/install.sh renders them (python -m edge.sound render), or set sound.spoken = false"
        detail += f", spoken prompts ({cfg.display.language})"
    player.play("tick")   # heard by whoever runs the check
    player.close()
    return "ok", detail, ""
