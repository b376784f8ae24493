#!/usr/bin/env bash
# Build a bootable arm64 Raspberry Pi SD-card image of maskgate entirely from Debian packages and the
# pinned wheels, on an x86_64 (or arm64) Debian host, without mounting anything:
#   1. base:   mmdebstrap of bookworm arm64 (minbase + systemd, linux-image-arm64, raspi-firmware,
#              python3-venv) under qemu-user-static; the initramfs hook is diverted during the package
#              installs and the initramfs built once at the end (under emulation it costs ~10x per build).
#   2. rootfs: a copy of the base with maskgate in /opt/maskgate/venv (wheels downloaded on the host for
#              aarch64/cp311, installed offline in the chroot), the units and scripts/firstboot, enabled.
#   3. image:  FAT boot partition (mtools), ext4 root (mkfs.ext4 -d), MBR table (sfdisk), labels
#              RASPIFIRM / RASPIROOT as in Debian's own raspi images.
# The base is cached (re-run with --rebuild-base to redo it); steps 2-3 take minutes.
#   sudo scripts/build-image.sh [--out DIR] [--rebuild-base]
# Needs root and: mmdebstrap arch-test qemu-user-static binfmt-support mtools dosfstools fdisk e2fsprogs.
# Output: DIR/maskgate-arm64.img, DIR/vmlinuz, DIR/initrd.img (for booting it under qemu), DIR/times.txt.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${TMPDIR:-/var/tmp}/maskgate-image
rebuild_base=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --rebuild-base) rebuild_base=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build-image.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (mmdebstrap, chroot)" >&2; exit 2; }
for tool in mmdebstrap arch-test mcopy mkfs.vfat mkfs.ext4 sfdisk chroot; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool is missing: apt-get install mmdebstrap arch-test qemu-user-static binfmt-support mtools dosfstools fdisk e2fsprogs" >&2; exit 2; }
done
if [ "$(uname -m)" != aarch64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "build-image.sh: no binfmt handler for aarch64: apt-get install qemu-user-static binfmt-support" \
       "(in a container: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)" >&2
  exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
case "$out/" in "$repo"/*) echo "build-image.sh: --out must be outside the repository" >&2; exit 2 ;; esac
times="$out/times.txt"
stamp() { echo "$(date +%s) $1" >> "$times"; echo "[$(date +%T)] $1" >&2; }
: > "$times"
stamp "start"

suite=bookworm
mirror=${MIRROR:-http://deb.debian.org/debian}
gpiod=gpiod==2.5.0   # not in requirements.txt (an optional extra there); as scripts/install.sh
packages=systemd-sysv,udev,kmod,initramfs-tools,zstd,linux-image-arm64,raspi-firmware,dosfstools,python3,python3-venv
# as scripts/install.sh: the screen's Chinese font, aplay; useradd (firstboot) and mount (maskgate-usb)
packages+=,fonts-wqy-microhei,alsa-utils,passwd,mount
# python-evdev (claim mode's USB card readers) has no wheel: built in the chroot, then these are purged
build_deps="gcc python3-dev linux-libc-dev"
packages+=,${build_deps// /,}
base="$out/base"
base_version=1   # bump when the mmdebstrap hooks below change
base_key=$(printf '%s %s %s\n' "$suite" "$packages" "$base_version" | sha256sum | cut -c1-16)

# ---- 1. base root filesystem -------------------------------------------------------------------
if [ "$rebuild_base" = 1 ] || [ "$(cat "$base.key" 2>/dev/null)" != "$base_key" ]; then
  rm -rf "$base" "$base.key"
  # The boot partition's kernel command line (written by raspi-firmware's hook) mounts the root by
  # label, so the same image boots on any SD card reader, and under qemu as /dev/vda2.
  mmdebstrap --mode=root --variant=minbase --architectures=arm64 \
    --components=main,non-free-firmware --include="$packages" \
    --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
    --essential-hook='printf "#!/bin/sh\necho update-initramfs: deferred by build-image.sh >&2\n" > "$1/usr/sbin/update-initramfs"; chmod 755 "$1/usr/sbin/update-initramfs"' \
    --customize-hook='rm "$1/usr/sbin/update-initramfs"; chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
    --customize-hook='sed -i -e "s|^#ROOTPART=.*|ROOTPART=LABEL=RASPIROOT|" -e "s|^#CONSOLES=.*|CONSOLES=\"tty0 ttyS1,115200\"|" "$1/etc/default/raspi-firmware"' \
    --customize-hook='chroot "$1" update-initramfs -c -k all' \
    --customize-hook='chroot "$1" apt-get clean; rm -rf "$1"/var/lib/apt/lists/*' \
    "$suite" "$base" "$mirror"
  echo "$base_key" > "$base.key"
  stamp "base rootfs (mmdebstrap + initramfs) done"
else
  stamp "base rootfs reused ($base)"
fi

# ---- 2. maskgate into a copy of the base -------------------------------------------------------
wheels="$out/wheels"
rm -rf "$wheels" && mkdir -p "$wheels"
pyhost=${PYTHON:-python3}
[ -x "$repo/.venv/bin/python" ] && pyhost="$repo/.venv/bin/python"
# pip does not widen an explicit --platform to older manylinux tags: list every glibc up to Debian
# bookworm's 2.36 (ai-edge-litert 2.x is tagged manylinux_2_27).
plat=(--only-binary=:all: --python-version 3.11 --implementation cp --platform manylinux2014_aarch64)
for glibc in $(seq 17 36); do plat+=(--platform "manylinux_2_${glibc}_aarch64"); done
grep -v '^evdev==' "$repo/requirements.txt" > "$out/requirements-wheels.txt"
"$pyhost" -m pip download -q --disable-pip-version-check "${plat[@]}" -d "$wheels" -r "$out/requirements-wheels.txt"
"$pyhost" -m pip download -q --disable-pip-version-check "${plat[@]}" -d "$wheels" --no-deps mediapipe==0.10.18
# door.backend = "gpiod": Debian's kernel has no /dev/gpiomem, so the Pi's pins go through libgpiod v2
"$pyhost" -m pip download -q --disable-pip-version-check "${plat[@]}" -d "$wheels" --no-deps "$gpiod"
# sdists (python-evdev has no wheel): built in the chroot, offline, with these build backends
"$pyhost" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$wheels" \
  "$(grep -o '^evdev==[^ ;]*' "$repo/requirements.txt")"
"$pyhost" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$wheels" "setuptools>=61" wheel
"$pyhost" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$wheels" "$repo" 2>/dev/null ||
  "$pyhost" -m pip wheel -q --disable-pip-version-check --no-deps -w "$wheels" "$repo"
stamp "wheels downloaded ($(du -sm "$wheels" | cut -f1) MB)"

root="$out/rootfs"
rm -rf "$root"
cp -a "$base" "$root"
install -d -m 755 "$root/opt/maskgate"
cp -a "$wheels" "$root/tmp/wheels"
cp "$repo/requirements.txt" "$root/tmp/requirements.txt"
chroot_run() {
  # A private mount namespace: /proc and /dev for pip and Python vanish with it.
  unshare --mount --propagation private -- sh -c '
    mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$@"' "$root" "$root" "$@"
}
chroot_run /bin/sh -euc '
  python3 -m venv /opt/maskgate/venv
  pip="/opt/maskgate/venv/bin/python -m pip --disable-pip-version-check -q"
  $pip install --no-index --find-links /tmp/wheels -r /tmp/requirements.txt
  $pip install --no-index --find-links /tmp/wheels --no-deps mediapipe==0.10.18 "$0"
  $pip install --no-index --find-links /tmp/wheels --no-deps maskgate
  /opt/maskgate/venv/bin/python -c "import edge.cli, mediapipe, cv2, nacl, gpiozero, gpiod, evdev; print(\"maskgate imports ok\")"
  apt-get purge -y -q --autoremove $1 >/dev/null
' "$gpiod" "$build_deps"
rm -rf "$root/tmp/wheels" "$root/tmp/requirements.txt"
stamp "maskgate installed in rootfs"
if [ -d "$repo/models" ] && ls "$repo"/models/* >/dev/null 2>&1; then
  cp -a "$repo/models" "$root/opt/maskgate/models"
  rm -rf "$root/opt/maskgate/models/training"   # the recipe stays in the repository: a gate carries what it runs
fi
# The spoken prompts (sound.spoken), rendered on the host (espeak-ng under emulation is slow and would
# be one more package in the image) into the image's $MASKGATE_MODELS/sounds; tones need nothing.
rm -rf "$root/opt/maskgate/models/sounds"
if command -v espeak-ng >/dev/null && PYTHONPATH="$repo" "$pyhost" -m edge.sound render "$root/opt/maskgate/models/sounds"; then
  stamp "spoken prompts rendered"
else
  echo "build-image.sh: spoken prompts not rendered (apt-get install espeak-ng on the host); the gate plays tones only" >&2
fi
install -m 755 "$repo/scripts/firstboot" "$root/usr/local/sbin/maskgate-firstboot"
install -m 755 "$repo/scripts/maskgate-admin" "$root/usr/local/bin/maskgate"   # runs as the service user
# administration by USB stick (the image's only way in): udev rule -> maskgate-usb@DEVICE.service
install -m 755 "$repo/scripts/maskgate-usb" "$root/usr/local/sbin/maskgate-usb"
install -m 644 "$repo/systemd/maskgate-usb@.service" "$root/etc/systemd/system/"
install -d -m 755 "$root/etc/udev/rules.d"
install -m 644 "$repo/systemd/80-maskgate-usb.rules" "$root/etc/udev/rules.d/"
install -m 644 "$repo/systemd/maskgate.service" "$repo/systemd/maskgate-keeper.service" "$repo/systemd/maskgate-firstboot.service" \
    "$repo/systemd/maskgate-purge.service" "$repo/systemd/maskgate-purge.timer" "$root/etc/systemd/system/"
systemctl --root="$root" enable maskgate-firstboot.service maskgate-keeper.service maskgate.service maskgate-purge.timer >/dev/null 2>&1
# No console login, no network service: the image is an appliance; a technician flashes a new card.
echo maskgate > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmaskgate\n' > "$root/etc/hosts"
printf '%s\n' 'LABEL=RASPIROOT / ext4 rw,noatime 0 1' \
  'LABEL=RASPIFIRM /boot/firmware vfat rw,noatime,umask=0077 0 2' > "$root/etc/fstab"
: > "$root/etc/machine-id"   # regenerated on first boot
rm -f "$root/var/lib/dbus/machine-id"

# ---- 3. the image, assembled without mounting -------------------------------------------------
fw="$out/firmware"
rm -rf "$fw" && mkdir -p "$fw"
cp -a "$root/boot/firmware/." "$fw/"
rm -rf "$root/boot/firmware" && install -d -m 700 "$root/boot/firmware"
if [ ! -f "$fw/config.txt" ] || [ ! -f "$fw/cmdline.txt" ]; then
  echo "build-image.sh: raspi-firmware did not write config.txt/cmdline.txt" >&2; exit 1
fi
# raspi-firmware's hook leaves cma= out only when it runs on a Pi 4 (cma=64M can stop a Pi 4 from
# booting); built in a chroot it cannot tell, so leave it out for every board (the kernel's default).
sed -i 's/ cma=[^ ]*//' "$fw/cmdline.txt"
kver=$(basename "$(ls -1 "$root"/boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"

boot_mb=256
root_mb=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 256 ))
img="$out/maskgate-arm64.img"
rm -f "$img" "$out/boot.vfat" "$out/root.ext4"
mkfs.vfat -F 32 -n RASPIFIRM -C "$out/boot.vfat" $((boot_mb * 1024)) >/dev/null
mcopy -s -i "$out/boot.vfat" "$fw"/* ::/
mkfs.ext4 -q -L RASPIROOT -d "$root" -E root_owner=0:0 "$out/root.ext4" "${root_mb}M"
start1=2048; size1=$((boot_mb * 2048)); start2=$((start1 + size1)); size2=$((root_mb * 2048))
truncate -s $(( (start2 + size2) * 512 )) "$img"
printf 'label: dos\n%s,%s,c,*\n%s,%s,83\n' "$start1" "$size1" "$start2" "$size2" | sfdisk -q "$img"
dd if="$out/boot.vfat" of="$img" bs=512 seek="$start1" conv=notrunc,sparse status=none
dd if="$out/root.ext4" of="$img" bs=512 seek="$start2" conv=notrunc,sparse status=none
rm -f "$out/boot.vfat" "$out/root.ext4"
stamp "image assembled: $img ($(( $(stat -c %s "$img") / 1048576 )) MiB, kernel $kver)"
