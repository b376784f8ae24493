"""The TOML configuration: defaults that run the demo, strict validation, clear messages.

Every section is a frozen dataclass; its fields are the keys allowed in ``[section]``. A key that is
not a field, a value of the wrong type or outside its range raises ``ConfigError`` naming the key,
so a typo on a gate's SD card never silently falls back to a default.

A field may carry ``metadata={"check": (predicate, "must be ...")}``; use :func:`check` to add one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge import access
from edge.errors import ConfigError
from edge.wiegand import CARD_BITS

if sys.version_info >= (3, 11):
    import tomllib
else:  # Jetson (Ubuntu 22.04) ships Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("/etc/maskgate/maskgate.toml")
DEFAULT_STATE = Path("/var/lib/maskgate")


def check(default: Any, predicate: Callable[[Any], bool], must: str) -> Any:
    """A dataclass field with a default and a validity rule (``must`` completes "must be ...")."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default),
                     metadata={"check": (predicate, must)})
    return field(default=default, metadata={"check": (predicate, must)})


def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _gpio_pin(v: int | None) -> bool:
    return v is None or 0 <= v <= 63


def _card_or_empty(v: str) -> bool:
    # lazy: the edge.claim package brings numpy and the matcher, which reading a config needs not
    from edge.claim.credentials import ClaimError, normalise_card

    try:
        return v == "" or bool(normalise_card(v))
    except ClaimError:
        return False


@dataclass(frozen=True)
class CameraConfig:
    """Where frames come from."""

    source: str = check("replay", lambda v: v in ("replay", "opencv", "picamera2"),
                        "one of replay, opencv, picamera2")
    # opencv: a device index ("0"), a path ("/dev/video0") or a GStreamer pipeline string.
    device: str = "0"
    # replay: a video file or an image folder; empty means the bundled demo clip.
    path: str = ""
    width: int = check(640, _positive, "a positive number of pixels")
    height: int = check(480, _positive, "a positive number of pixels")
    fps: float = check(30.0, _positive, "a positive frame rate")
    # replay: pace frames at the clip's own rate (True) or as fast as they decode (False).
    realtime: bool = True
    loop: bool = False
    # Rotate the sensor image by this many degrees clockwise (camera mounted sideways).
    rotate: int = check(0, lambda v: v in (0, 90, 180, 270), "0, 90, 180 or 270")


@dataclass(frozen=True)
class VisionConfig:
    """Face detection and landmarks."""

    max_faces: int = check(2, lambda v: 1 <= v <= 4, "between 1 and 4 (2 lets the gate see a second person)")
    min_detection_confidence: float = check(0.5, lambda v: 0 < v < 1, "between 0 and 1")
    min_tracking_confidence: float = check(0.5, lambda v: 0 < v < 1, "between 0 and 1")
    # Faces narrower than this (pixels between the pupils) are too far away to judge.
    min_pupil_distance_px: float = check(28.0, _positive, "a positive number of pixels")


@dataclass(frozen=True)
class LivenessConfig:
    """The randomised challenge."""

    challenges: list = check(["blink", "turn-left", "turn-right"],
                             lambda v: bool(v) and all(c in ("blink", "turn-left", "turn-right") for c in v),
                             "a non-empty list of blink, turn-left, turn-right")
    steps: int = check(2, lambda v: 1 <= v <= 4, "between 1 and 4")
    step_timeout_s: float = check(3.0, _positive, "a positive number of seconds")
    # Real people asked to turn reach 17-23 degrees of yaw (LivePortrait clips); 20 would fail many.
    turn_threshold_deg: float = check(15.0, lambda v: 5 <= v <= 60, "between 5 and 60 degrees")
    prompt: str = check("log", lambda v: v in ("log", "window", "led"), "one of log, window, led")
    # A turn step's whole time: a slow, held real turn (up 1.7 s, held 1.2 s, back by 4.4 s) needs more
    # than step_timeout_s, which still bounds a blink.
    turn_timeout_s: float = check(6.0, _positive, "a positive number of seconds")
    # Every sequence drawn holds a blink (when blink is among the challenges): a print bent round a
    # cylinder and turned by hand can show the parallax of a turn, but no print can blink.
    require_blink: bool = True


@dataclass(frozen=True)
class EmbedConfig:
    """The eye-region embedder."""

    # Empty means the default model named in models/manifest.toml.
    model: str = ""
    threads: int = check(1, lambda v: 1 <= v <= 8, "between 1 and 8")


@dataclass(frozen=True)
class MatchConfig:
    """1:N search and the decision threshold."""

    # 0 means the threshold calibrated in models/manifest.toml, raised with the number of people
    # enrolled so that a stranger is let in on at most ``stranger_rate`` of attempts; a number here
    # fixes the threshold whatever the number of people.
    threshold: float = check(0.0, lambda v: 0 <= v < 1, "between 0 and 1 (0: use the manifest's)")
    stranger_rate: float = check(1e-3, lambda v: 0 < v < 1, "between 0 and 1, e.g. 0.001")
    frames: int = check(3, lambda v: 1 <= v <= 30, "between 1 and 30")
    # identify: the face alone, 1:N. claim: a card or PIN names the person and the face is compared
    # with that person only (no claim, no entry). either: a claim when one is presented, else identify.
    mode: str = check("identify", lambda v: v in ("identify", "claim", "either"), "one of identify, claim, either")
    # A fixed threshold below the model's calibrated one lets strangers in more often than the model
    # card says; refused unless this says it is meant (edge.match.gate_threshold).
    allow_lower_threshold: bool = False


@dataclass(frozen=True)
class ClaimConfig:
    """The credential reader of ``[match] mode = "claim"`` / ``"either"`` (edge.claim, edge.wiegand)."""

    # none; keyboard: a USB card reader or keypad that types (evdev); wiegand: D0/D1 on two GPIO
    # inputs of [door] backend / gpiochip.
    reader: str = check("none", lambda v: v in ("none", "keyboard", "wiegand"), "one of none, keyboard, wiegand")
    # keyboard: /dev/input/by-id/...-event-kbd (a stable path), /dev/input/eventN, or part of the device's name.
    device: str = ""
    wiegand_d0_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    wiegand_d1_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    # Silence that ends a Wiegand frame (readers send a bit every 1-2 ms, frames at least 50 ms apart).
    wiegand_gap_ms: float = check(25.0, lambda v: 5 <= v <= 200, "between 5 and 200 milliseconds")
    # A card or PIN waits this long for its face; then it is forgotten.
    timeout_s: float = check(20.0, lambda v: 1 <= v <= 300, "between 1 and 300 seconds")


@dataclass(frozen=True)
class GateConfig:
    """The decision state machine."""

    cooldown_s: float = check(3.0, _non_negative, "zero or more seconds")
    max_failures: int = check(5, _positive, "a positive count")
    lockout_s: float = check(60.0, _non_negative, "zero or more seconds")


@dataclass(frozen=True)
class DoorConfig:
    """The door: relay, inputs, alarms. Pins are BCM numbers (gpiozero) or line offsets (gpiod)."""

    backend: str = check("mock", lambda v: v in ("gpiozero", "gpiod", "mock"),
                         "one of gpiozero, gpiod, mock")
    gpiochip: str = "/dev/gpiochip0"
    relay_pin: int = check(17, _gpio_pin, "a GPIO number from 0 to 63")
    relay_active_high: bool = True
    open_s: float = check(3.0, lambda v: 0.2 <= v <= 30, "between 0.2 and 30 seconds")
    contact_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    rex_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    alt_entry_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    led_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    buzzer_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    held_open_s: float = check(30.0, _positive, "a positive number of seconds")
    # Inputs are switches to ground with the internal pull-up (true) or to 3.3 V with a pull-down.
    # The door contact is closed while the door is shut, so a cut wire reads "open".
    pull_up: bool = True
    bounce_s: float = check(0.05, lambda v: 0 <= v <= 1, "between 0 and 1 seconds")
    # An opening this soon after the relay relocked still counts as the granted one (slow latch).
    forced_grace_s: float = check(1.0, lambda v: 0 <= v <= 10, "between 0 and 10 seconds")
    # The door keeper's socket (edge/keeper.py) when it runs as its own unit; empty: `maskgate run`
    # uses <state>/keeper.sock and starts a keeper there itself when none answers.
    keeper_socket: str = check("", lambda v: v == "" or (v.startswith("/") and "\0" not in v),
                               "an absolute path (or empty)")
    # What a grant does: pulse the relay, send the person's card to an access panel over Wiegand
    # (edge.wiegand_out, through the keeper), or both (relay first).
    mode: str = check("relay", lambda v: v in ("relay", "wiegand", "both"), "one of relay, wiegand, both")
    wiegand_d0_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    wiegand_d1_pin: int | None = check(None, _gpio_pin, "a GPIO number from 0 to 63")
    wiegand_bits: int = check(26, lambda v: v in (26, 34), "26 or 34")
    # Sent for a person without a card: a card number ("12345", or "12,3456" as facility,card);
    # empty: send nothing (logged and audited; in mode "wiegand" that person is then not let in).
    wiegand_default: str = check("", _card_or_empty, "a card number, facility,card, or empty")


@dataclass(frozen=True)
class VaultConfig:
    """The sealed template file."""

    # Records not seen for this many days are purged; 0 keeps them until removed.
    retention_days: int = check(0, _non_negative, "zero or more days")
    # Hex Ed25519 public keys of installers whose signed bundles may be imported.
    trusted_keys: list = check([], lambda v: all(isinstance(k, str) and len(k) == 64 and
                                                 all(c in "0123456789abcdefABCDEF" for c in k) for k in v),
                               "a list of 64-character hex Ed25519 public keys")
    # Enrolment keeps up to this many diverse templates per person (masked and unmasked when offered).
    max_templates: int = check(5, lambda v: 1 <= v <= 20, "between 1 and 20")


@dataclass(frozen=True)
class AuditConfig:
    """The hash-chained event log."""

    retention_days: int = check(90, _non_negative, "zero or more days")
    # fsync the log after every entry (events are a few a minute; false trades the last seconds
    # of log on a power cut for fewer SD-card writes).
    fsync: bool = True


@dataclass(frozen=True)
class ServiceConfig:
    """The daemon: how it waits for a lost camera."""

    # Camera open/read failures are retried after retry_initial_s, doubling up to retry_max_s.
    retry_initial_s: float = check(1.0, lambda v: 0.05 <= v <= 60, "between 0.05 and 60 seconds")
    retry_max_s: float = check(30.0, lambda v: 0.05 <= v <= 600, "between 0.05 and 600 seconds")


@dataclass(frozen=True)
class AccessConfig:
    """Who may enter when (edge.access): groups with weekly windows, holidays, the default group."""

    # Dates (or ranges 2027-12-24..2027-12-26) closed to every time-limited group unless it says
    # site_holidays = false.
    holidays: list = field(default_factory=list)
    # The group of people enrolled without --group (and of records from before groups existed).
    default_group: str = "always"
    # [access.groups.NAME]: windows = ["Mon-Fri 07:00-19:00", ...], holidays = [...], site_holidays = true
    groups: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            access.check_config(self.holidays, self.default_group, self.groups)
        except access.RuleError as e:
            raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class EventsConfig:
    """The local event stream (edge.events): one JSON line per decision, door change and alarm."""

    # A Unix socket, readable by the gate's group; empty: no event stream.
    socket: str = "/run/maskgate/events.sock"
    # Put the person's name in decision events (default: only the person id).
    names: bool = False
    # This gate's name in the stream and in MQTT topics; empty: the host name.
    gate: str = check("", lambda v: all(c.isalnum() or c in "_-" for c in v), "letters, digits, _ or -")


@dataclass(frozen=True)
class MqttConfig:
    """The optional MQTT bridge (``maskgate mqtt``, its own unit): events to a broker, Home Assistant."""

    host: str = ""
    port: int = check(0, lambda v: 0 <= v <= 65535, "a TCP port (0: 8883 with TLS, 1883 without)")
    tls: bool = True
    # CA bundle for the broker's certificate; empty: the system's CAs.
    ca_file: str = ""
    # A root-only file with username = "..." and password = "..." (empty: no login).
    credentials: str = "/etc/maskgate/mqtt.secret"
    topic_prefix: str = check("maskgate", lambda v: bool(v) and not any(c in v for c in "#+"),
                              "a topic without # or +")
    discovery_prefix: str = check("homeassistant", lambda v: bool(v) and not any(c in v for c in "#+"),
                                  "a topic without # or +")
    keepalive_s: int = check(60, lambda v: 5 <= v <= 3600, "between 5 and 3600 seconds")


@dataclass(frozen=True)
class DisplayConfig:
    """What residents see (edge.display): the screen, its language, what it may show."""

    backend: str = check("none", lambda v: v in ("none", "framebuffer", "window"),
                         "one of none, framebuffer, window")
    # framebuffer: the device (geometry from /sys/class/graphics) or a file laid out like one.
    device: str = "/dev/fb0"
    # 0: from the device; a file-backed framebuffer or the window needs them set.
    width: int = check(0, _non_negative, "zero (from the device) or a number of pixels")
    height: int = check(0, _non_negative, "zero (from the device) or a number of pixels")
    bits_per_pixel: int = check(0, lambda v: v in (0, 16, 24, 32), "0 (from the device), 16, 24 or 32")
    language: str = check("en", lambda v: v in ("en", "zh_CN"), "one of en, zh_CN")
    # The welcome screen names the person only when this is true (a passer-by reads the screen too).
    show_name: bool = False
    # A small mirrored camera view, drawn from memory and never kept.
    preview: bool = False
    # Seconds a welcome or denied screen stays up.
    result_s: float = check(3.0, _positive, "a positive number of seconds")
    # Empty: the first installed font with the language's glyphs.
    font: str = ""


@dataclass(frozen=True)
class SoundConfig:
    """What residents hear (edge.sound): chime, low tone, ticks, spoken prompts through ALSA."""

    enabled: bool = True
    device: str = "default"   # an ALSA device name for aplay -D
    volume: float = check(0.6, lambda v: 0 <= v <= 1, "between 0 and 1")
    spoken: bool = False      # speak each challenge step (needs espeak-ng)


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``Config()`` is the demo's."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    door: DoorConfig = field(default_factory=DoorConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    sound: SoundConfig = field(default_factory=SoundConfig)
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:  # inf and nan are no number of seconds or pixels
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (list, dict, str, bool):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    return {float: "a finite number", int: "an integer", str: "a string", bool: "true or false",
            list: "a list", dict: "a table"}.get(hint, str(hint))


def _build_section(cls: type, name: str, data: Any, origin: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{origin}: unknown key {name}.{key} (known: {', '.join(fields)})")
        hint = hints[key]
        if not _type_ok(value, hint):
            raise ConfigError(f"{origin}: {name}.{key} must be {_type_name(hint)}, not {value!r}")
        rule = fields[key].metadata.get("check")
        if rule and not rule[0](value):
            raise ConfigError(f"{origin}: {name}.{key} must be {rule[1]}, not {value!r}")
    try:
        return cls(**data)
    except ConfigError as e:  # a section's own cross-key check (__post_init__) names the key
        raise ConfigError(f"{origin}: {e}") from None


def from_dict(data: dict, origin: str = "config") -> Config:
    """Build and validate a ``Config`` from parsed TOML (``origin`` names it in messages)."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    kwargs = {}
    for name, value in data.items():
        if name not in sections:
            raise ConfigError(f"{origin}: unknown section [{name}] (known: {', '.join(sections)})")
        section_cls = sections[name].default_factory  # type: ignore[misc]
        kwargs[name] = _build_section(section_cls, name, value, origin)
    cfg = Config(**kwargs)
    cross_check(cfg, origin)
    return cfg


def cross_check(cfg: Config, origin: str = "config") -> None:
    """Rules between keys, which no single key's check can see."""
    d = cfg.door
    pins = {"door.relay_pin": d.relay_pin, "door.contact_pin": d.contact_pin, "door.rex_pin": d.rex_pin,
            "door.alt_entry_pin": d.alt_entry_pin, "door.led_pin": d.led_pin, "door.buzzer_pin": d.buzzer_pin}
    seen: dict[int, str] = {}
    for key, pin in pins.items():
        if pin is None:
            continue
        if pin in seen:
            raise ConfigError(f"{origin}: {seen[pin]} and {key} are both GPIO {pin}; give each its own pin")
        seen[pin] = key
    _check_wiegand_out(cfg, seen, origin)
    if cfg.liveness.prompt == "led" and d.led_pin is None:
        raise ConfigError(f"{origin}: liveness.prompt = \"led\" needs door.led_pin (the door keeper shows "
                          f"the prompt on the door's LED)")
    if cfg.service.retry_initial_s > cfg.service.retry_max_s:
        raise ConfigError(f"{origin}: service.retry_initial_s ({cfg.service.retry_initial_s:g}) is more than "
                          f"service.retry_max_s ({cfg.service.retry_max_s:g})")


def _check_wiegand_out(cfg: Config, seen: dict[int, str], origin: str) -> None:
    """``door.mode`` "wiegand"/"both": two output pins of their own (not a door pin, not the claim
    reader's), a default card that fits the frame, and no door contact of ours in "wiegand" mode."""
    d = cfg.door
    if d.mode == "relay":
        return
    if d.wiegand_d0_pin is None or d.wiegand_d1_pin is None:
        raise ConfigError(f"{origin}: door.mode = \"{d.mode}\" needs door.wiegand_d0_pin and door.wiegand_d1_pin "
                          f"(the D0/D1 lines to the access panel)")
    taken = dict(seen)
    if cfg.claim.reader == "wiegand":
        taken.update({p: k for k, p in (("claim.wiegand_d0_pin", cfg.claim.wiegand_d0_pin),
                                        ("claim.wiegand_d1_pin", cfg.claim.wiegand_d1_pin)) if p is not None})
    for key, pin in (("door.wiegand_d0_pin", d.wiegand_d0_pin), ("door.wiegand_d1_pin", d.wiegand_d1_pin)):
        if pin in taken:
            raise ConfigError(f"{origin}: {taken[pin]} and {key} are both GPIO {pin}; give each its own pin")
        taken[pin] = key
    if d.wiegand_default:
        from edge.claim.credentials import normalise_card  # lazy, as in _card_or_empty

        value = int(normalise_card(d.wiegand_default))
        if value >= 1 << CARD_BITS[d.wiegand_bits]:
            raise ConfigError(f"{origin}: door.wiegand_default {value} does not fit a {d.wiegand_bits}-bit frame "
                              f"(at most {(1 << CARD_BITS[d.wiegand_bits]) - 1})")
    if d.mode == "wiegand" and d.contact_pin is not None:
        raise ConfigError(f"{origin}: door.mode = \"wiegand\": the access panel drives the lock, so door.contact_pin "
                          f"would raise the forced-door alarm on every entry; wire the contact to the panel "
                          f"(or use mode = \"both\")")


def named(path: Path | str | None) -> dict[str, set[str]]:
    """The keys the config file itself sets, per section (empty when there is no file): for settings
    that must be asked for by name, not inherited from a default (the mock door, the replay camera)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return {k: set(v) for k, v in data.items() if isinstance(v, dict)}


def load(path: Path | str | None = None) -> Config:
    """Read the config file; a missing default file means the defaults, a missing named one is an error."""
    explicit = path is not None
    p = Path(path) if explicit else DEFAULT_CONFIG
    if not p.exists():
        if explicit:
            raise ConfigError(f"config file {p} does not exist (give an existing file to --config)")
        log.debug("no config at %s; using defaults", p)
        return Config()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    return from_dict(data, str(p))


def replace(cfg: Config, section: str, **changes: Any) -> Config:
    """A copy of ``cfg`` with some keys of one section changed (validated like the file)."""
    current = dataclasses.asdict(getattr(cfg, section))
    current.update(changes)
    cls = type(getattr(cfg, section))
    new = dataclasses.replace(cfg, **{section: _build_section(cls, section, current, "option")})
    cross_check(new, "option")
    return new
