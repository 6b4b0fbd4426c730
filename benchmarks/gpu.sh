#!/usr/bin/env bash
# One call on a GPU machine, at most 8 minutes: the card, then benchmarks/gpu.py (decode, classify,
# filter, VITO training; see its docstring). `bash benchmarks/gpu.sh --dry-cpu` checks it on a CPU.
# Never run on a GPU yet (no device was lent to the sessions that wrote it, the loader-fed training
# section included).
set -uo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
for pkg in torchcodec torch_tensorrt; do
    python -c "import $pkg; print('$pkg', $pkg.__version__)" 2>/dev/null || echo "$pkg: not installed (its row says not measured)"
done
# 470 s for the sections, the rest of the 8 minutes for start-up and the lines above.
timeout --signal=INT --kill-after=10 470 python benchmarks/gpu.py "$@"
rc=$?
[ "$rc" -eq 124 ] && echo "gpu.sh: stopped at the 470 s limit; the sections printed above are complete"
exit "$rc"
