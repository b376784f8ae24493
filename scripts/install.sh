#!/usr/bin/env bash
# Install maskgate on a running gate: Raspberry Pi OS (bookworm, arm64) or a Jetson (JetPack 6,
# Ubuntu 22.04), or any Debian-like arm64/x86_64 system with a USB camera. Run from a checkout:
#   sudo scripts/install.sh [--config FILE] [--platform auto|pi|jetson|generic] [--no-start] [--dry-run]
# It installs the OS packages (python3-picamera2 and python3-lgpio on a Pi), makes the venv
# /opt/maskgate/venv (with --system-site-packages on a Pi, so picamera2 is visible), installs the
# pinned wheels (requirements.txt), mediapipe without its unused dependencies and maskgate itself,
# the units and the first-boot script, then provisions (user, groups, key, config: scripts/firstboot)
# and starts the gate. The config is --config FILE, else /boot/firmware/maskgate.toml; without one
# everything is installed and the gate waits (door locked) until /etc/maskgate/maskgate.toml exists.
# --dry-run prints the commands instead of running them. Running it again upgrades in place.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/maskgate            # fixed: systemd/maskgate.service starts $prefix/venv/bin/maskgate
mediapipe=mediapipe==0.10.18    # as scripts/setup.sh
gpiod=gpiod==2.5.0              # as scripts/build-image.sh (aarch64 wheels for cp310 and cp311)
platform=auto config="" start=1 dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --platform) platform=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
run() { if [ "$dry" = 1 ]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi; }
say() { echo "install.sh: $*" >&2; }

if [ "$platform" = auto ]; then
  if grep -qs 'Raspberry Pi' /proc/device-tree/model; then platform=pi
  elif [ -e /etc/nv_tegra_release ] || grep -qs -i 'jetson\|nvidia' /proc/device-tree/model; then platform=jetson
  else platform=generic; fi
fi
case "$platform" in pi|jetson|generic) ;; *) say "--platform must be auto, pi, jetson or generic"; exit 2 ;; esac
[ "$dry" = 1 ] || [ "$(id -u)" = 0 ] || { say "run as root (sudo $0 $*)"; exit 2; }
if [ -n "$config" ] && [ ! -f "$config" ]; then say "--config $config: no such file"; exit 2; fi
if [ -z "$config" ]; then
  config=/boot/firmware/maskgate.toml
  [ -f "$config" ] || [ ! -f /etc/maskgate/maskgate.toml ] || config=/etc/maskgate/maskgate.toml
fi
say "platform: $platform"

# ---- OS packages
# the screen's Chinese font; aplay; espeak-ng renders the spoken prompts once, below (the gate never runs it)
apt=(python3 python3-venv fonts-wqy-microhei alsa-utils espeak-ng)
# python-evdev (claim mode's USB card readers) is built from source: a compiler, Python's and the kernel's headers
apt+=(gcc python3-dev linux-libc-dev)
[ "$platform" = pi ] && apt+=(python3-picamera2 python3-libcamera python3-lgpio)
run apt-get update -q
run apt-get install -y -q --no-install-recommends "${apt[@]}"
if [ "$dry" = 0 ] && ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  say "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); maskgate needs 3.10 or newer (bookworm: 3.11, JetPack 6: 3.10)"
  exit 2
fi

# ---- the venv and the pinned wheels
venv_opts=()
[ "$platform" = pi ] && venv_opts+=(--system-site-packages)
run install -d -m 755 "$prefix"
[ -x "$prefix/venv/bin/python" ] || run python3 -m venv "${venv_opts[@]}" "$prefix/venv"
pip=("$prefix/venv/bin/python" -m pip --disable-pip-version-check -q)
run "${pip[@]}" install -r "$repo/requirements.txt"
run "${pip[@]}" install --no-deps "$mediapipe"
# door.backend = "gpiod" (libgpiod v2) off Raspberry Pi OS, where gpiozero has no pin library
[ "$platform" = pi ] || run "${pip[@]}" install --no-deps "$gpiod"
run "${pip[@]}" install --no-deps --force-reinstall "$repo"
if [ -d "$repo/models" ]; then
  run rm -rf "$prefix/models.new"
  run cp -r "$repo/models" "$prefix/models.new"
  run rm -rf "$prefix/models.new/training"   # the recipe stays in the repository: a gate carries what it runs
  run rm -rf "$prefix/models"
  run mv "$prefix/models.new" "$prefix/models"
fi
# The spoken prompts (sound.spoken), every language, as WAVs where the gate reads them
# ($MASKGATE_MODELS/sounds); without them the gate still plays its tones.
run "$prefix/venv/bin/python" -m edge.sound render "$prefix/models/sounds" ||
  say "spoken prompts not rendered (espeak-ng failed); the gate plays tones only"

# ---- the `maskgate` command on PATH (runs as the service user) and first-boot provisioning
run install -m 755 "$repo/scripts/maskgate-admin" /usr/local/bin/maskgate
run install -m 755 "$repo/scripts/firstboot" /usr/local/sbin/maskgate-firstboot
run install -m 644 "$repo/systemd/maskgate.service" "$repo/systemd/maskgate-keeper.service" "$repo/systemd/maskgate-firstboot.service" \
    "$repo/systemd/maskgate-purge.service" "$repo/systemd/maskgate-purge.timer" /etc/systemd/system/
# administration by USB stick: the udev rule starts maskgate-usb@DEVICE.service, which runs maskgate-usb
run install -m 755 "$repo/scripts/maskgate-usb" /usr/local/sbin/maskgate-usb
run install -m 644 "$repo/systemd/maskgate-usb@.service" /etc/systemd/system/
run install -m 644 "$repo/systemd/80-maskgate-usb.rules" /etc/udev/rules.d/
# The MQTT bridge is installed but never enabled here: off, nothing leaves the device (PRIVACY.md).
run install -m 644 "$repo/systemd/maskgate-mqtt.service" /etc/systemd/system/
run systemctl daemon-reload
[ "$dry" = 1 ] || udevadm control --reload 2>/dev/null || true
run systemctl enable maskgate-firstboot.service maskgate-keeper.service maskgate.service maskgate-purge.timer
if [ "$dry" = 1 ] || [ -f "$config" ]; then
  # The same provisioning a flashed card gets at first boot (exit 2: a bad config, door stays locked).
  run /usr/local/sbin/maskgate-firstboot --boot-config "$config"
  if [ "$start" = 1 ]; then
    run systemctl restart maskgate.service
    say "started; follow it with: journalctl -u maskgate -f"
  fi
else
  say "installed; no $config yet: write /etc/maskgate/maskgate.toml (docs/installer.md), then" \
      "run /usr/local/sbin/maskgate-firstboot --boot-config /etc/maskgate/maskgate.toml && systemctl start maskgate"
fi
