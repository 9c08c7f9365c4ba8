#!/usr/bin/env bash
# The GPU run, prepared here and spent there in one command.
#
#   DeviceCheck/gpu-run.sh prepare   (here) publish ResNetGen.DeviceCheck trimmed and self-contained with no libtorch
#                                    (-p:TorchBackend=external), write the twins, take TorchSharp's native source as a
#                                    build input where ../shared/reference/torchsharp has it, and a manifest; all under
#                                    .gpu-run/ (ignored by git; carried to the GPU machine), checked to fit in 64 MiB
#   DeviceCheck/gpu-run.sh dry-run   (here) the same steps as `device` on the CPU, on the libtorch-cpu package's folder
#   DeviceCheck/gpu-run.sh device    (on the GPU machine, from the repository root, .gpu-run carried): the binding check
#                                    (does TorchSharp 0.107's binding bind to this PyTorch's libtorch? if not, rebuild it
#                                    from the carried source), info, the convolution probes on the GPU, the correctness
#                                    check of every model on CUDA against the CPU, the speed run against PyTorch eager and
#                                    torch.compile; tables and the log under $OUT (default .gpu-run/out)
#
# On the device tool: run(command="bash DeviceCheck/gpu-run.sh device", carry=[".gpu-run"], timeout_s=540).
# A binding rebuilt there comes back as $OUT/libLibTorchSharp.so: copy it to .gpu-run/ and the next run uses it as is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
stage="$root/.gpu-run"
step="${1:-}"
budget_mib=64

say() { echo "gpu-run: $*"; }
python_with_torch() {
    for p in "${PYTHON:-}" python3 /usr/bin/python3; do
        if [ -n "$p" ] && "$p" -c 'import torch' >/dev/null 2>&1; then echo "$p"; return 0; fi
    done
    return 1
}

prepare() {
    rm -rf "$stage/publish" "$stage/twins" "$stage/devicecheck.tar.xz" "$stage/sample.tar.xz"
    mkdir -p "$stage"
    say "publishing ResNetGen.DeviceCheck (linux-x64, self-contained, trimmed, TorchBackend=external)"
    dotnet publish "$root/DeviceCheck/ResNetGen.DeviceCheck.csproj" -c Release -r linux-x64 -p:ResNetGenTravel=true \
        -p:TorchBackend=external -o "$stage/publish" -nologo -v q
    if ls "$stage/publish" | grep -Eq '^libtorch|^libc10'; then say "error: the publish holds a libtorch; it must run on the machine's own"; exit 1; fi
    "$stage/publish/ResNetGen.DeviceCheck" twins --out "$stage/twins" --models resnet50,resnet18,resnet50d >/dev/null
    tar -C "$stage/publish" -cJf "$stage/devicecheck.tar.xz" .
    rm -rf "$stage/publish"
    say "publishing the sample likewise (its finetune runs on the device)"
    dotnet publish "$root/Sample/ResNetGen.Sample.csproj" -c Release -r linux-x64 -p:ResNetGenTravel=true \
        -p:TorchBackend=external -o "$stage/publish" -nologo -v q
    # ONNX Runtime's native library is not needed for finetune and predict on TorchSharp.
    rm -f "$stage/publish/libonnxruntime"*.so*
    tar -C "$stage/publish" -cJf "$stage/sample.tar.xz" .
    rm -rf "$stage/publish"
    local reference="$root/../shared/reference/torchsharp"
    if [ -f "$reference/torchsharp-0.107.0-native-src.tgz" ]; then
        cp "$reference/torchsharp-0.107.0-native-src.tgz" "$reference/libLibTorchSharp-0.107.0.imports.txt" "$stage/"
    else
        say "note: no $reference: the binding cannot be rebuilt there if the packaged one does not bind"
    fi
    local tree=$(cd "$root" && git ls-files -co --exclude-standard -z | du -c --files0-from=- -b 2>/dev/null | tail -1 | cut -f1)
    local carried=$(du -sb "$stage" | cut -f1)
    local total=$(( (tree + carried) / 1048576 ))
    (cd "$stage" && find . -maxdepth 2 -type f ! -path './out/*' -printf '%P\t%s\n' | sort) > "$stage/manifest.tsv"
    printf 'working tree\t%s\ncarried (.gpu-run)\t%s\ntotal MiB\t%s (limit %s)\n' "$tree" "$carried" "$total" "$budget_mib" >> "$stage/manifest.tsv"
    cat "$stage/manifest.tsv"
    if [ "$total" -ge "$budget_mib" ]; then say "error: ${total} MiB would travel, over the ${budget_mib} MiB limit"; exit 1; fi
    say "prepared: ${total} MiB travel"
}

# The run itself, on whatever libtorch LD_LIBRARY_PATH names: $1 = cuda or cpu, $2 = where the tables go.
run_all() {
    local device="$1" out="$2" quick="${3:-}"
    local bin=/tmp/resnetgen-devicecheck
    local log="$out/log.txt"
    mkdir -p "$out"
    : > "$log"
    rm -rf "$bin" && mkdir -p "$bin" && tar -C "$bin" -xJf "$stage/devicecheck.tar.xz"
    [ -f "$stage/libLibTorchSharp.so" ] && cp "$stage/libLibTorchSharp.so" "$bin/libLibTorchSharp.so" && echo "binding: the one rebuilt by an earlier run" | tee -a "$log"
    local dc="$bin/ResNetGen.DeviceCheck"
    local start=$(date +%s)
    elapsed() { echo "$(( $(date +%s) - start )) s"; }

    # 1. Does the binding bind? Every C++ symbol it imports must be defined by this libtorch, and a first call must work.
    if [ -f "$stage/libLibTorchSharp-0.107.0.imports.txt" ]; then
        local libs=()
        for l in libtorch.so libtorch_cpu.so libc10.so libtorch_cuda.so libc10_cuda.so; do
            for d in ${LD_LIBRARY_PATH//:/ }; do [ -f "$d/$l" ] && libs+=("$d/$l") && break; done
        done
        nm -D --defined-only "${libs[@]}" 2>/dev/null | awk '{print $NF}' | sed 's/@.*//' | sort -u > /tmp/resnetgen-defined.txt
        # Not counted: the toolchain's weak references (_ITM_*, __gmon_start__) and thread-local init wrappers (_ZTH*), which
        # are undefined against 2.10 too.
        comm -23 <(sed 's/@.*//' "$stage/libLibTorchSharp-0.107.0.imports.txt" | grep -Ev '^(_ITM_|__gmon_start__|_ZTH)' | sort -u) /tmp/resnetgen-defined.txt > "$out/missing-symbols.txt" || true
        echo "binding: $(wc -l < "$out/missing-symbols.txt") of $(grep -Evc '^(_ITM_|__gmon_start__|_ZTH)' "$stage/libLibTorchSharp-0.107.0.imports.txt") imported C++ symbols undefined in ${libs[*]}" | tee -a "$log"
        [ -s "$out/missing-symbols.txt" ] || rm -f "$out/missing-symbols.txt"
    fi
    if ! "$dc" info --device "$device" >> "$log" 2>&1; then
        echo "binding: the packaged binding does not run here ($(tail -1 "$log")); rebuilding it from TorchSharp's source" | tee -a "$log"
        rebuild_binding "$bin" "$out" >> "$log" 2>&1 || { echo "binding: the rebuild failed (see above)" | tee -a "$log"; return 1; }
        "$dc" info --device "$device" >> "$log" 2>&1
    fi
    tail -4 "$log"
    echo "== probes ($(elapsed))" | tee -a "$log"
    timeout 150 "$dc" probes --device "$device" --dtype "${PROBE_DTYPE:-float32}" --report "$out/probes.md" >> "$log" 2>&1 && tail -1 "$out/probes.md" || echo "probes: FAILED or timed out" | tee -a "$log"
    echo "== check ($(elapsed))" | tee -a "$log"
    local models=""
    [ -n "$quick" ] && models="--models resnet18,resnet10t,seresnext26d_32x4d,ecaresnet26t,resnetv2_18,resnetv2_50x1_bit,resnet18d_drop_path"
    timeout 240 "$dc" check --device "$device" $models --report "$out/check.md" >> "$log" 2>&1 && tail -1 "$out/check.md" || { echo "check: FAILED or timed out" | tee -a "$log"; tail -3 "$out/check.md" 2>/dev/null || true; }
    echo "== speed ($(elapsed))" | tee -a "$log"
    local py
    py=$(python_with_torch) || { echo "speed: no python with torch" | tee -a "$log"; return 1; }
    local speed_args=()
    if [ -n "$quick" ]; then speed_args=(--models resnet18 --batches 2 --size 64 --rounds 1 --iterations 1 --warmup 1 --precisions fp32,bf16 --memory "")
    else speed_args=(--rounds "${SPEED_ROUNDS:-3}" --iterations "${SPEED_ITERATIONS:-3}" --warmup 2); fi
    PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE timeout 300 "$py" "$root/DeviceCheck/gpu_speed.py" --server "$dc speed-server" --twins "$stage/twins" \
        --device "$device" --out "$out" "${speed_args[@]}" >> "$log" 2>&1 || echo "speed: FAILED or timed out" | tee -a "$log"
    [ -f "$out/speed.md" ] && head -3 "$out/speed.md" | tail -1
    if [ -f "$stage/sample.tar.xz" ]; then
        echo "== the sample's finetune --device $device, scored on the CPU ($(elapsed))" | tee -a "$log"
        export stage PYTHON="${PYTHON:-}"; export -f python_with_torch sample_finetune
        timeout 240 bash -c 'set -euo pipefail; sample_finetune "$@"' _ "$device" "$out" "$quick" >> "$log" 2>&1 \
            && tail -1 "$log" || echo "sample: FAILED or timed out" | tee -a "$log"
    fi
    echo "== done in $(elapsed)" | tee -a "$log"
}

# One epoch of the sample's finetune on the device from a Fashion-MNIST picture folder, then its checkpoint's predictions
# on the validation pictures on the device and on the CPU: the same top-1 class for every picture, probabilities within
# 0.2 points.
sample_finetune() {
    local device="$1" out="$2" quick="$3"
    local bin=/tmp/resnetgen-sample
    rm -rf "$bin" /tmp/resnetgen-ff /tmp/resnetgen-ft && mkdir -p "$bin" && tar -C "$bin" -xJf "$stage/sample.tar.xz"
    [ -f "$stage/libLibTorchSharp.so" ] && cp "$stage/libLibTorchSharp.so" "$bin/libLibTorchSharp.so"
    [ -f /tmp/resnetgen-devicecheck/libLibTorchSharp.so ] && cp /tmp/resnetgen-devicecheck/libLibTorchSharp.so "$bin/libLibTorchSharp.so"
    local sample="$bin/ResNetGen.Sample" size=224 per=40
    [ -n "$quick" ] && size=64 && per=6
    "$sample" fashion-folder --to /tmp/resnetgen-ff --classes 0-9 --train-per-class "$per" --val-per-class 10
    "$sample" finetune --images /tmp/resnetgen-ff --arch resnet18 --epochs 1 --size "$size" --trainable-stages 5 --device "$device" --output /tmp/resnetgen-ft
    local checkpoint; checkpoint=$(ls /tmp/resnetgen-ft/*.safetensors | head -1)
    COLUMNS=200 "$sample" predict /tmp/resnetgen-ff/val/* --checkpoint "$checkpoint" --top 3 --engine torchsharp --device "$device" > /tmp/resnetgen-on-device.txt
    COLUMNS=200 "$sample" predict /tmp/resnetgen-ff/val/* --checkpoint "$checkpoint" --top 3 --engine torchsharp --device cpu > /tmp/resnetgen-on-cpu.txt
    "$(python_with_torch)" - /tmp/resnetgen-on-device.txt /tmp/resnetgen-on-cpu.txt "$device" <<'PY'
import re, sys
def rows(path):
    found = {}
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in re.split("[│|]", line) if c.strip()]
        if len(cells) == 2 and "%" in cells[1]:
            found[cells[0]] = [(m.group(1), float(m.group(2))) for m in re.finditer(r"([^,]+?) ([\d.]+)%", cells[1])]
    return found
device, cpu = rows(sys.argv[1]), rows(sys.argv[2])
assert device and device.keys() == cpu.keys(), f"the two runs classified different pictures: {len(device)} and {len(cpu)}"
top1 = sum(device[f][0][0].strip() == cpu[f][0][0].strip() for f in device)
worst = max(abs(a[1] - b[1]) for f in device for a, b in zip(device[f], cpu[f]))
ok = top1 == len(device) and worst <= 0.2
print(f"sample: the finetune checkpoint on {sys.argv[3]} and on the CPU: top-1 equal for {top1} of {len(device)} validation pictures, "
      f"probabilities within {worst:.1f} points: {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
}

rebuild_binding() {
    local bin="$1" out="$2"
    [ -f "$stage/torchsharp-0.107.0-native-src.tgz" ] || { echo "no TorchSharp native source carried"; return 1; }
    local py; py=$(python_with_torch)
    local prefix; prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
    local src=/tmp/resnetgen-torchsharp-native
    rm -rf "$src" && mkdir -p "$src" && tar -C "$src" -xzf "$stage/torchsharp-0.107.0-native-src.tgz"
    # A build input, built as it is but for -Werror (newer libtorch headers warn where 2.10's did not).
    sed -i 's/add_definitions(-Werror)/# &/' "$src/src/Native/CMakeLists.txt"
    cmake -S "$src/src/Native" -B "$src/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
        -DLIBTORCH_PATH="$prefix/Torch" -DCMAKE_INSTALL_PREFIX="$src/install"
    cmake --build "$src/build" -j "$(nproc)"
    local built; built=$(find "$src/build" -name libLibTorchSharp.so | head -1)
    [ -n "$built" ] || { echo "no libLibTorchSharp.so built"; return 1; }
    cp "$built" "$bin/libLibTorchSharp.so"
    cp "$built" "$out/libLibTorchSharp.so"
    echo "binding: rebuilt against $prefix ($(du -h "$built" | cut -f1)); it comes back as \$OUT/libLibTorchSharp.so"
}

case "$step" in
    prepare) prepare ;;
    dry-run)
        [ -f "$stage/devicecheck.tar.xz" ] || prepare
        export LD_LIBRARY_PATH="${NUGET_PACKAGES:-$HOME/.nuget/packages}/libtorch-cpu-linux-x64/2.10.0/runtimes/linux-x64/native"
        run_all cpu "${OUT:-/tmp/resnetgen-gpu-dry-run}" "${QUICK-quick}"
        ;;
    device)
        [ -f "$stage/devicecheck.tar.xz" ] || { say "error: no .gpu-run/devicecheck.tar.xz: run 'DeviceCheck/gpu-run.sh prepare' here and carry .gpu-run"; exit 1; }
        py=$(python_with_torch) || { say "error: no python3 with torch"; exit 1; }
        torch_lib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
        export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
        run_all cuda "${OUT:-$stage/out}" ""
        ;;
    *) sed -n '2,16p' "$0"; [ "$step" = "--help" ] || [ "$step" = "-h" ]; exit $? ;;
esac
