#!/usr/bin/env bash
# Idempotent set-up: system libraries for Qt (apt-get), a virtual environment in .venv with the
# pinned packages, and deqstudio installed in editable mode. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

QT_LIBS="libgl1 libegl1 libxkbcommon0 libfontconfig1 libglib2.0-0 libdbus-1-3 fonts-dejavu-core"
# Qt's xcb plugin, for a real window (make run) on an X11 desktop or under Xvfb
QT_LIBS="$QT_LIBS libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xkb1"

missing=()
for pkg in $QT_LIBS; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system libraries: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv

stamp=".venv/.setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch first and pinned: the CPU wheel on local disk; anything unpinned pulls a CUDA build.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[gui,dev,cluster]"
  # The benchmark's reference solver; --no-deps so it cannot replace our torch.
  .venv/bin/pip install -q --no-deps "torchdeq==0.1.0"
  echo "$want" > "$stamp"
fi

# The package's bytecode, compiled once here: an editable install leaves it to each start, and where
# PYTHONDONTWRITEBYTECODE is set every start compiles the modules it imports again (~0.1 s of the studio's start).
.venv/bin/python -m compileall -q deqstudio
