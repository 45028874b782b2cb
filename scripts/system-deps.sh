#!/usr/bin/env bash
# Install the Debian packages the tests use, when any is missing.
# As root: apt-get. Otherwise: say exactly what to install, and fail.
set -euo pipefail

# command → Debian package that provides it
declare -A NEED=(
  [storescu]=dcmtk
  [dciodvfy]=dicom3tools
  [Xvfb]=xvfb
  [xauth]=xauth
  [initdb]=postgresql
  [chromium]=chromium
  [npm]=npm
  [node]=nodejs
  [sqlite3]=sqlite3
  [systemd-analyze]=systemd
  [Orthanc]=orthanc
)
# shared libraries napari's Qt needs on a bare machine → package
declare -A NEED_LIB=(
  [libGL.so.1]=libgl1
  [libEGL.so.1]=libegl1
  [libxkbcommon-x11.so.0]=libxkbcommon-x11-0
  [libxcb-cursor.so.0]=libxcb-cursor0
  [libxcb-icccm.so.4]=libxcb-icccm4
  [libxcb-keysyms.so.1]=libxcb-keysyms1
  [libxcb-image.so.0]=libxcb-image0
  [libxcb-render-util.so.0]=libxcb-render-util0
  [libxcb-xinerama.so.0]=libxcb-xinerama0
  [libxcb-shape.so.0]=libxcb-shape0
  [libdbus-1.so.3]=libdbus-1-3
  [libfontconfig.so.1]=libfontconfig1
)

has_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  # Orthanc is in /usr/sbin, outside a normal user's PATH
  [ -x "/usr/sbin/$1" ] && return 0
  # PostgreSQL's server binaries live outside PATH on Debian
  compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null 2>&1
}

missing=()
for cmd in "${!NEED[@]}"; do
  has_cmd "$cmd" || missing+=("${NEED[$cmd]}")
done
for lib in "${!NEED_LIB[@]}"; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || missing+=("${NEED_LIB[$lib]}")
done
# plugin files (not commands) → package
declare -A NEED_FILE=(
  [/usr/share/orthanc/plugins/libOrthancDicomWeb.so]=orthanc-dicomweb
  # a CJK font for headless Chromium: OHIF and the landing page show Japanese and Chinese names and
  # descriptions (the samples have one), as boxes ("tofu") without it
  [/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc]=fonts-noto-cjk
)
for file in "${!NEED_FILE[@]}"; do
  [ -e "$file" ] || missing+=("${NEED_FILE[$file]}")
done
# Mesa's software GL driver for napari under Xvfb
compgen -G "/usr/lib/*/dri/swrast_dri.so" >/dev/null 2>&1 || compgen -G "/usr/lib/*/dri/*_dri.so" >/dev/null 2>&1 \
  || missing+=(libgl1-mesa-dri)

# Orthanc's DICOMweb plugin: the peer of the DICOMweb differential tests and benchmarks
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages for the tests: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages for the tests: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
