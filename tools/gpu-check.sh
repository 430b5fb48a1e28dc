#!/usr/bin/env bash
# tools/gpu-check.sh — every GPU check of the CUDA backend in one run, for a machine with an
# NVIDIA GPU, nvcc and CMake (no Node needed for the core checks). Development machines and CI have
# no GPU, so these checks run only where one is lent; this script is what to run there.
#
#   tools/gpu-check.sh [OUT_DIR]            (default: $OUT, else ./gpu-check-out)
#   GPU_CHECK_SECONDS=540 (the whole run's budget), ZEROTH_CUDA_ARCHS (default: this GPU's), BUILD_DIR
#
# Stages (a line each in OUT_DIR/summary.txt; their logs in OUT_DIR/logs.tar.gz, JSON figures in
# OUT_DIR/bench_*.json: few files, as the device tool brings back at most eight):
#   build       CMake + Ninja/Make, Release, CUDA for this GPU's architecture only (fast)
#   test_*      every C++ GPU test program (test_cuda_*): z bits CPU = CUDA, perturbation kernels,
#               GEMM and the forward ops, int4 kernels, the update rules, whole-model parity
#   bench_*     `test_cuda_{gemm,int4,zo_update} --bench` JSON (GEMM TFLOP/s, perturbation and int4
#               GEMV bytes/s against a device-to-device copy, update rules per weight)
#   memcheck_*  the test programs under compute-sanitizer --tool memcheck (leak check on)
#   node        when `node` and node_modules are present: the addon (cmake-js), the vitest CUDA
#               suites and bench/cuda.mjs (which adds torch.matmul and the PyTorch MeZO anchor)
# Exit status: 0 when every stage that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-$PWD/gpu-check-out}}
logs="$out/logs"
mkdir -p "$logs"
summary="$out/summary.txt"
: >"$summary"
status=0
note() { echo "$*" | tee -a "$summary"; }
# stage NAME SECONDS CMD...: runs CMD with a time limit, logs it, records PASS/FAIL.
# The whole run stays inside GPU_CHECK_SECONDS (default 540: one device-tool call is at most 600):
# each stage gets at most what is left, and none starts with under 20 s left.
budget=${GPU_CHECK_SECONDS:-540}
stage() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS left=$((budget - SECONDS))
  if [ "$left" -lt 20 ]; then
    note "SKIP $name: the time budget is spent"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  if timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then
    note "PASS $name ($((SECONDS - t0)) s)"
  else
    note "FAIL $name (exit $?, $((SECONDS - t0)) s): $(tail -n 3 "$logs/$name.log" | tr '\n' ' ')"
    status=1
  fi
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap \
  --format=csv,noheader | tee "$out/gpu.txt"
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '.')
archs=${ZEROTH_CUDA_ARCHS:-${cap:+${cap}-real}}
archs=${archs:-90-real}
# The reference fixtures: ../shared/fixtures beside the checkout, or a copy inside it (shared/ travels
# to a lent GPU machine; ../shared does not).
if [ -z "${ZEROTH_FIXTURES:-}" ]; then
  for f in ../shared/fixtures shared/fixtures; do [ -d "$f" ] && export ZEROTH_FIXTURES="$PWD/$f" && break; done
fi
build=${BUILD_DIR:-build-gpu}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

stage build 900 bash -c "cmake -S . -B '$build' ${generator[*]} -DCMAKE_BUILD_TYPE=Release -DZEROTH_CUDA=ON \
  -DZEROTH_CUDA_ARCHS='$archs' && cmake --build '$build' -j \"\$(nproc)\""
bin="$build/Release"
programs=()
for f in "$bin"/test_cuda_*; do  # every GPU test program the build made
  [ -x "$f" ] && programs+=("$(basename "$f")")
done
[ ${#programs[@]} -gt 0 ] || note "no GPU test program was built (see logs/build.log)"

for p in "${programs[@]}"; do stage "$p" 600 "$bin/$p"; done
for p in test_cuda_gemm test_cuda_int4 test_cuda_zo_update; do
  [ -x "$bin/$p" ] && stage "bench_$p" 600 bash -c "'$bin/$p' --bench | tail -n 1 > '$out/bench_$p.json'"
done
if command -v compute-sanitizer >/dev/null; then
  for p in "${programs[@]}"; do
    stage "memcheck_$p" 900 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 1 "$bin/$p"
  done
else
  note "SKIP memcheck: compute-sanitizer not found"
fi

if command -v node >/dev/null && [ -d node_modules ]; then
  stage node_build 900 node node_modules/cmake-js/bin/cmake-js compile --out build-gpu-node \
    --CDZEROTH_CUDA_ARCHS="$archs"
  addon="$PWD/build-gpu-node/Release/zeroth.node"
  stage node_tests 900 env ZEROTH_ADDON_PATH="$addon" npx vitest run test/cuda*.test.ts
  stage node_bench_cuda 900 bash -c "npx tsc -p tsconfig.json && ZEROTH_ADDON_PATH='$addon' node bench/cuda.mjs \
    > '$out/bench_cuda.json'"
else
  note "SKIP node stages: no node or node_modules (carry them to run the vitest suites and bench/cuda.mjs)"
fi
tar -czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"
exit $status
