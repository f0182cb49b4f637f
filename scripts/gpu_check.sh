#!/usr/bin/env bash
# The GPU check, in two halves: one where Rust is, one where the GPU is.
#
#   scripts/gpu_check.sh build         # here: build examples/gpu_check.rs with CUDA, strip it
#                                      # into gpu/ (gitignored), check its size, show ldd
#   scripts/gpu_check.sh run [--quick] # there, from the repository root: the binary, then
#                                      # scripts/gpu_check_torch.py, then one table of both
#
# `run` needs only the NVIDIA driver (libcuda, NVRTC) and python3 with torch and timm; it takes
# under 8 minutes (each half runs under `timeout`). Results and logs go to $GPU_CHECK_OUT
# (default gpu/results). CARGO_TARGET_DIR is honoured by `build`.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

readonly BIN=gpu/gpu_check
# What can travel with the working tree to the GPU machine.
readonly MAX_BYTES=$((64 * 1024 * 1024))
# Wall-clock budgets of the two halves, in seconds: 8 minutes in all with the table.
readonly AIA_TIMEOUT=${AIA_TIMEOUT:-300}
readonly TORCH_TIMEOUT=${TORCH_TIMEOUT:-140}

build() {
    set -e
    local target=${CARGO_TARGET_DIR:-target}
    cargo build --release --features cuda --example gpu_check
    mkdir -p gpu
    strip -o "$BIN" "$target/release/examples/gpu_check"
    local bytes
    bytes=$(stat -c %s "$BIN")
    awk -v b="$bytes" -v f="$BIN" 'BEGIN { printf "%s: %d bytes (%.1f MiB)\n", f, b, b / 1048576 }'
    if [ "$bytes" -ge "$MAX_BYTES" ]; then
        echo "error: $BIN is not below 64 MiB, too big to travel to the GPU machine" >&2
        exit 1
    fi
    echo "ldd $BIN:"
    ldd "$BIN"
    # The GPU machine's C library must be at least this recent.
    echo "newest glibc symbol version needed: $(objdump -T "$BIN" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -n 1)"
    echo "now carry gpu/ to the GPU machine and run: scripts/gpu_check.sh run"
}

run() {
    local out=${GPU_CHECK_OUT:-gpu/results}
    local torch_args=()
    for arg in "$@"; do
        [ "$arg" = "--quick" ] && torch_args+=(--quick)
    done
    if [ ! -x "$BIN" ]; then
        echo "error: no $BIN; run 'scripts/gpu_check.sh build' where Rust is, and bring gpu/ along" >&2
        exit 1
    fi
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$out/nvidia-smi.txt"

    echo "== aia (timeout ${AIA_TIMEOUT} s)"
    timeout -k 10 "$AIA_TIMEOUT" "$BIN" --json "$out/aia.json" "$@" 2>&1 | tee "$out/aia.log"
    local aia_rc=${PIPESTATUS[0]}
    echo "aia gpu_check exit status: $aia_rc"

    echo "== PyTorch (timeout ${TORCH_TIMEOUT} s)"
    timeout -k 10 "$TORCH_TIMEOUT" python3 scripts/gpu_check_torch.py --json "$out/torch.json" \
        "${torch_args[@]}" 2>&1 | tee "$out/torch.log"
    local torch_rc=${PIPESTATUS[0]}
    echo "PyTorch exit status: $torch_rc"

    python3 - "$out/aia.json" "$out/torch.json" <<'EOF' | tee "$out/table.txt"
import json
import sys

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"({path}: {e})")
        return {}

aia, torch = load(sys.argv[1]), load(sys.argv[2])
# timm's published AMP figures for tresnet_m (results/*.csv in pytorch-image-models).
anchors = {
    ("train", 224): "792.8 (RTX 3090)",
    ("train", 448): "209.6 (RTX 3090)",
    ("inference", 224): "7024 (RTX 5090)",
    ("inference", 448): "1757 (RTX 5090)",
}

def figure(rows, mode, size, precision=None):
    for r in rows:
        if r.get("mode") == mode and r.get("size") == size and (
                precision is None or r.get("precision") == precision):
            return r.get("img_per_s")
    return None

def fmt(v):
    return "-" if v is None else f"{v:.1f}"

def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"

print()
print(f"TResNet-M img/s on {torch.get('device', 'the GPU')} "
      f"(PyTorch {torch.get('torch', '?')}, timm {torch.get('timm', '?')}; "
      f"amp = autocast {torch.get('amp_dtype', '?')} + channels_last)")
header = ["mode", "size", "batch", "aia", "torch f32", "torch amp", "aia/f32", "aia/amp",
          "timm published amp"]
rows = []
measured = aia.get("throughput", []) + torch.get("throughput", [])
keys = sorted({(r["mode"], r["size"]) for r in measured} | set(anchors),
              key=lambda k: (k[0] != "inference", k[1]))
for mode, size in keys:
    batch = next((r["batch"] for r in measured if (r["mode"], r["size"]) == (mode, size)), "-")
    a = figure(aia.get("throughput", []), mode, size)
    f32 = figure(torch.get("throughput", []), mode, size, "f32")
    amp = figure(torch.get("throughput", []), mode, size, "amp")
    rows.append([mode, str(size), str(batch), fmt(a), fmt(f32), fmt(amp), ratio(a, f32),
                 ratio(a, amp), anchors.get((mode, size), "-")])
widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
for line in [header, ["-" * w for w in widths]] + rows:
    print("  ".join(str(c).rjust(w) for c, w in zip(line, widths)))

if aia.get("loss_bench"):
    print("\nloss fwd+bwd (aia, median ms): fused vs composed")
    for r in aia["loss_bench"]:
        print(f"  {r['backend']:<10} {r['rows']}x{r['cols']:<6} fused {r['fused_ms']:8.3f}  "
              f"composed {r['composed_ms']:8.3f}  ({r['composed_ms'] / r['fused_ms']:.1f}x)")
checks = aia.get("checks", [])
failed = [c for c in checks if not c["pass"]]
print(f"\naia correctness checks: {len(checks) - len(failed)}/{len(checks)} passed")
for c in failed:
    print(f"  FAILED {c['name']}: {c['max_rel_diff']:.2e} > {c['tolerance']:.0e}")
for e in aia.get("errors", []) + torch.get("errors", []):
    print(f"  error: {e}")
EOF
    echo "results in $out/ (aia.json, torch.json, logs, table.txt)"
    if [ "$aia_rc" -ne 0 ]; then
        exit "$aia_rc"
    fi
    exit "$torch_rc"
}

case "${1:-}" in
    build)
        shift
        build "$@"
        ;;
    run)
        shift
        run "$@"
        ;;
    *)
        echo "usage: $0 build | run [gpu_check flags, e.g. --quick]" >&2
        exit 2
        ;;
esac
