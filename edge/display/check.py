"""``maskgate diag display`` and ``diag sound``: can what residents see and hear actually work here?

Each returns (status, detail, hint) as edge.diag's checks do. ``display`` covers the challenge
prompt (``liveness.prompt``: a "window" prompt needs an OpenCV with GUI, which the headless build
the project installs has not), the screen backend, the catalogue and a font with the language's
glyphs, by rendering one real screen into the backend (a framebuffer is written, then restored).
"""

from __future__ import annotations

from typing import Any

from edge.errors import MaskgateError


def check_display(cfg: Any) -> tuple[str, str, str]:
    from edge.display.i18n import translator
    from edge.display.messages import Screen
    from edge.display.render import Renderer

    d = cfg.display
    problems: list[tuple[str, str]] = []
    if cfg.liveness.prompt == "window":
        from edge.liveness import gui_available

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
    from edge.display.backends import FramebufferDisplay, open_display

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
    import shutil

    from edge.sound import Player, sound_card

    s = cfg.sound
    if not s.enabled or s.volume <= 0:
        return "warn", "sound off (sound.enabled false or volume 0)", "set [sound] enabled = true, volume = 0.6"
    if not shutil.which("aplay"):
        return "warn", "no aplay: the gate is silent", "apt install alsa-utils"
    if not sound_card():
        return "warn", "no ALSA sound card (/proc/asound/cards): the gate is silent", \
            "attach a speaker (USB or HDMI audio) or enable the board's audio (dtparam=audio=on on a Pi)"
    player = Player(s, cfg.display.language)
    if s.spoken and shutil.which("espeak-ng") is None:
        return "warn", f"ALSA device {s.device}: tones play, but spoken prompts need espeak-ng", \
            "apt install espeak-ng, or set sound.spoken = false"
    player.play("tick")
    player.close()
    return "ok", f"ALSA device {s.device}, volume {s.volume:.0%}{', spoken prompts' if s.spoken else ''}", ""
