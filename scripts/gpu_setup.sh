# Sourced by the GPU scripts (gpu_check.sh, gpu_niso.sh) after they set OUT, PY and log():
# checks for an NVIDIA GPU (exit 3 with a clear message when there is none), installs the
# default (CUDA) torch wheel and the toolkit, and records the GPU and versions in $OUT.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    log "no NVIDIA GPU visible (nvidia-smi missing or failing): nothing to measure on this machine"
    exit 3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv"
log "GPU: $(tail -1 "$OUT/gpu.csv")"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    log "installing torch (CUDA wheel)"
    "$PY" -m pip install -q torch || { log "pip install torch failed"; exit 1; }
fi
"$PY" -m pip install -q -e . || { log "pip install -e . failed"; exit 1; }
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "torch is installed but sees no CUDA device"
    exit 3
fi
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" > "$OUT/versions.txt"
