#!/usr/bin/env bash
# Install everything the toolkit needs on a fresh Debian/Ubuntu machine (CPU, no display).
# Idempotent: a second run only checks. Used by the README's two commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# 1. Mesa EGL: MuJoCo renders offscreen on the CPU through it (MUJOCO_GL=egl).
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa.so.0' || ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
    echo "[setup] installing Mesa EGL (Debian packages)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 >/dev/null
fi

# 2. PyTorch: pinned to the CPU wheel; an unpinned torch pulls several GB of CUDA packages.
TORCH_VERSION=${WM_TORCH_VERSION:-2.13.0}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    echo "[setup] installing torch==$TORCH_VERSION"
    "$PY" -m pip install -q "torch==$TORCH_VERSION"
fi

# 3. The toolkit itself (editable) with its test dependencies; quick when already satisfied.
"$PY" -m pip install -q -e ".[dev]" 2> >(grep -v "Running pip as the 'root' user" >&2)
echo "[setup] ready: $("$PY" -c 'import torch, mujoco, gymnasium, stable_baselines3 as sb3; print(f"torch {torch.__version__}, mujoco {mujoco.__version__}, gymnasium {gymnasium.__version__}, sb3 {sb3.__version__}")')"
