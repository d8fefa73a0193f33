#!/bin/sh
# gpu-check.sh - on a machine with an NVIDIA GPU: does GET /health report
# the GPU memory of the supervised services (checks.resources.gpu_memory_mb,
# read through NVML, src/cli/resources.c)?
#
# Starts `tend up` with one service and prints /health's resources:
#   - when python3 can allocate GPU memory (PyTorch with CUDA, or else the
#     driver's own libcuda.so.1 through ctypes), the service allocates
#     256 MiB on GPU 0 and keeps it; the check passes when gpu_memory_mb
#     reaches at least 200 (NVML counts the context's own memory too, so
#     it is usually more than 256);
#   - otherwise the service only sleeps, and the check passes when
#     gpu_memory_mb is a number (0 or more) instead of null.
# nvidia-smi's view of the compute processes is printed for comparison.
#
# Usage: scripts/gpu-check.sh [path/to/tend]   (default: $TEND_BIN, build/tend)
# Exit: 0 pass, 1 fail, 77 no NVIDIA GPU / NVML here (nothing checked).
set -u
cd "$(dirname "$0")/.."
TEND=${1:-${TEND_BIN:-build/tend}}
[ -x "$TEND" ] || { echo "gpu-check: $TEND is not built (ninja -C build)"; exit 1; }
TEND=$(cd "$(dirname "$TEND")" && pwd)/$(basename "$TEND")

if ! command -v nvidia-smi >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1'; then
    echo "gpu-check: no nvidia-smi and no libnvidia-ml.so.1: not a GPU machine, nothing to check"
    exit 77
fi
command -v python3 >/dev/null 2>&1 || { echo "gpu-check: python3 is needed to read /health"; exit 1; }

dir=$(mktemp -d /tmp/tend-gpu-check.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The allocating service: PyTorch if it sees a GPU, else the CUDA driver
# API (libcuda.so.1, installed with the driver) through ctypes.
cat > "$dir/alloc.py" <<'EOF'
import ctypes, sys, time
MB = 256
try:
    import torch
    if not torch.cuda.is_available():
        raise ImportError("no CUDA device for torch")
    x = torch.empty(MB << 20, dtype=torch.uint8, device="cuda:0")
    x.fill_(1)
    torch.cuda.synchronize()
    how = "torch %s" % torch.__version__
except Exception as e:
    cuda = ctypes.CDLL("libcuda.so.1")
    dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    for what, r in (("cuInit", cuda.cuInit(0)),
                    ("cuDeviceGet", cuda.cuDeviceGet(ctypes.byref(dev), 0)),
                    ("cuCtxCreate", cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev)),
                    ("cuMemAlloc", cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(MB << 20)))):
        if r != 0:
            sys.exit("alloc: %s failed with CUDA error %d" % (what, r))
    how = "libcuda ctypes (torch: %s)" % e
print("allocated %d MiB on GPU 0 with %s" % (MB, how), flush=True)
time.sleep(3600)
EOF

if python3 - >/dev/null 2>&1 <<'EOF'
import ctypes
try:
    import torch
    assert torch.cuda.is_available()
except Exception:
    cuda = ctypes.CDLL("libcuda.so.1")
    n = ctypes.c_int()
    assert cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(n)) == 0 and n.value > 0
EOF
then
    mode=alloc
    svc="[\"python3\", \"$dir/alloc.py\"]"
else
    mode=presence
    svc='["sleep", "3600"]'
    echo "gpu-check: python3 cannot allocate GPU memory here (no torch with CUDA, no usable libcuda.so.1):"
    echo "gpu-check: only checking that gpu_memory_mb is a number when NVML is present"
fi

cat > "$dir/tend.yaml" <<EOF
name: gpu-check
api: {listen: "127.0.0.1:$port"}
services:
  gpu:
    command: $svc
EOF

"$TEND" up -f "$dir/tend.yaml" > "$dir/tend.out" 2>&1 &
tend_pid=$!
cleanup() {
    kill -TERM "$tend_pid" 2>/dev/null
    wait "$tend_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

python3 - "$port" "$mode" "$dir/tend.out" <<'EOF'
import json, sys, time, urllib.request
port, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
want = 200.0 if mode == "alloc" else 0.0
deadline = time.monotonic() + 90
last = None
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=5) as r:
            h = json.load(r)
    except urllib.error.HTTPError as e:   # 503 while starting: still a body
        h = json.load(e)
    except OSError:
        time.sleep(0.5)
        continue
    last = h
    gpu = h["checks"]["resources"]["gpu_memory_mb"]
    dep = h["checks"]["dependencies"].get("gpu", {})
    if dep.get("state") in ("exited", "failed", "backoff"):
        break
    if isinstance(gpu, (int, float)) and gpu >= want:
        break
    time.sleep(1)     # NVML is sampled at most once a second
if last is None:
    print("gpu-check: FAIL: /health never answered; tend's output:")
    print(open(out).read()[-3000:])
    sys.exit(1)
print("GET /health checks.resources:", json.dumps(last["checks"]["resources"]))
print("service gpu:", json.dumps(last["checks"]["dependencies"].get("gpu")))
gpu = last["checks"]["resources"]["gpu_memory_mb"]
if gpu is None:
    print("gpu-check: FAIL: gpu_memory_mb is null although NVML should be present")
    sys.exit(1)
if mode == "alloc" and gpu < want:
    print("gpu-check: FAIL: gpu_memory_mb %.1f < %.0f with a 256 MiB allocation.  If nvidia-smi below lists"
          " the process with its memory under another pid, tend runs in another pid namespace than the"
          " driver reports; if it shows no memory, NVML withholds it (permissions, MIG).  tend's output:" % (gpu, want))
    print(open(out).read()[-3000:])
    sys.exit(1)
print("gpu-check: PASS (%s): gpu_memory_mb = %.1f" % (mode, gpu))
EOF
rc=$?
if command -v nvidia-smi >/dev/null 2>&1; then
    echo "nvidia-smi --query-compute-apps=pid,used_memory:"
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>&1 | sed 's/^/  /'
fi
exit $rc
