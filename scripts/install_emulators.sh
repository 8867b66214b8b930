#!/usr/bin/env bash
# Install the emulators and cross compilers edgekd's `--emulator qemu` checks use (Debian bookworm packages),
# and build edgekd's QEMU instruction-counting plugin. Idempotent; run as root (CI) or with sudo.
#   qemu-user          qemu-aarch64 (dynamic build: loads TCG plugins) for Raspberry Pi / phone targets
#   qemu-system-arm    Cortex-M boards (mps2-an385/an386/an500, mps3-an547) for microcontroller targets
#   gcc-arm-none-eabi  bare-metal Cortex-M builds of the generated C
#   mmdebstrap         the arm64 Debian root the aarch64 runs use (extract only: no chroot, no binfmt)
#   g++-aarch64-linux-gnu  cross-builds the torch-free ExecuTorch runner for the aarch64 root
#   curl, xz-utils     fetch QEMU's plugin header (qemu-plugin.h) from Debian's qemu source archive
#   cmake              builds a bundle's library/ and example/ the way a user's firmware would (tests)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
pkgs=(qemu-user qemu-system-arm gcc-arm-none-eabi mmdebstrap arch-test gcc g++-aarch64-linux-gnu curl xz-utils
      ca-certificates cmake)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install_emulators: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian ships no header for QEMU's TCG plugin API; take it from the same release's source tarball (23 MB).
HEADER_DIR="${EDGEKD_QEMU_PLUGIN_INCLUDE:-/usr/local/include}"
if [ ! -f "$HEADER_DIR/qemu-plugin.h" ]; then
  upstream="$(dpkg-query -W -f='${Version}' qemu-user | sed -E 's/^[0-9]+://; s/-[^-]*$//')"
  url="http://deb.debian.org/debian/pool/main/q/qemu/qemu_${upstream}.orig.tar.xz"
  echo "install_emulators: fetching qemu-plugin.h from $url" >&2
  tmp="$(mktemp -d)"
  curl -fsSL "$url" -o "$tmp/qemu.tar.xz"
  tar -xJf "$tmp/qemu.tar.xz" -C "$tmp" --wildcards '*/include/qemu/qemu-plugin.h'
  $SUDO mkdir -p "$HEADER_DIR"
  $SUDO cp "$tmp"/*/include/qemu/qemu-plugin.h "$HEADER_DIR/qemu-plugin.h"
  rm -rf "$tmp"
fi
qemu-aarch64 --version | head -1
qemu-system-arm --version | head -1
arm-none-eabi-gcc --version | head -1
