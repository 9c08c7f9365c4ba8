#!/usr/bin/env bash
# Measures the README's recipe table: `train` once per row and seed, each run in its own folder, then a table of the
# final test accuracies (the checkpoint's: the last epoch's, the moving average's where --ema is on), their mean, the
# difference from the first row's mean and the median seconds per epoch (epochs 2 on; epoch 1 includes warm-up), and
# below it the precision the runs computed in.
#
#   Sample/recipe-table.sh [--epochs N] [--seeds "1 2"] [--precision auto|fp32|bf16|fp16] [--rows FILE] [--out DIR]
#                          [--summary] [-- options for every run, e.g. --limit 6000]
#
# Rows: one per line, "name|options" ('#' starts a comment); the first row is the baseline. Without --rows, the README's
# rows (the original recipe, each component alone, `--recipe fashion`). A run whose folder holds `done` is not run
# again, so an interrupted table resumes where it stopped; delete the folder to measure it again. --summary prints the
# table from the logs already there and runs nothing. --precision auto (the default) is bf16 where the CPU has bfloat16
# arithmetic as oneDNN runs there, else fp32 (train says which). Each run's folder also gets run.txt: the command, when,
# the commit, the CPU and the oneDNN settings it ran with; under the table the summary names the precisions, machines
# and oneDNN settings of its runs. A full-data run takes about 11 min at 10 epochs in bf16 on 2 AVX512-BF16 cores (Zen 4,
# ResNetGen's defaults; about 18 min on the Zen 5 VM with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 RESNETGEN_ONEDNN=on), about
# 50 min in fp32 on 2 cores where oneDNN is limited to AVX kernels.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
epochs=10 seeds="1 2" precision=auto rows="" out="recipe-table" summary_only=0 extra=()

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) epochs="$2"; shift 2 ;;
        --seeds) seeds="$2"; shift 2 ;;
        --precision) precision="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --summary) summary_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "recipe-table: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$epochs" in ''|*[!0-9]*|0) echo "recipe-table: --epochs takes a whole number of at least 1, not '$epochs'" >&2; exit 2 ;; esac
case "$precision" in auto|fp32|bf16|fp16) ;; *) echo "recipe-table: --precision is auto, fp32, bf16 or fp16, not '$precision'" >&2; exit 2 ;; esac
[ -n "${seeds// /}" ] || { echo "recipe-table: --seeds names at least one seed" >&2; exit 2; }
for s in $seeds; do case "$s" in *[!0-9]*) echo "recipe-table: a seed is a whole number, not '$s'" >&2; exit 2 ;; esac; done

default_rows() {
    cat <<'ROWS'
original|
label-smoothing|--label-smoothing 0.1
clip|--clip-grad 1
lamb|--optimizer lamb
ema|--ema 0.999
adamw|--optimizer adamw
mixup|--mixup 0.2
cutmix|--cutmix 1.0
trivialaugment|--augment trivialaugment
fashion|--recipe fashion
ROWS
}
if [ -n "$rows" ]; then
    [ -f "$rows" ] || { echo "recipe-table: no rows file '$rows' (lines \"name|options\")" >&2; exit 2; }
    table=$(grep -v '^[[:space:]]*\(#\|$\)' "$rows")
else
    table=$(default_rows)
fi
while IFS='|' read -r name _; do
    case "$name" in ''|*[!A-Za-z0-9._-]*) echo "recipe-table: row name '$name' must be letters, digits, '.', '_' or '-'" >&2; exit 2 ;; esac
done <<<"$table"

# What a run ran on: the CPU as /proc/cpuinfo names it, with the features low precision depends on, and the oneDNN
# settings from the environment (unset: ResNetGen's check decides, and train's log says what it did).
machine() {
    awk -F': ' '
        /^model name/ && !name { name = $2 } /^cpu family/ && !fam { fam = $2 } /^model[ \t]*:/ && !model { model = $2 }
        /^flags/ && !flags { flags = " " $2 " " }
        END {
            f = ""
            if (index(flags, " avx512f ")) f = f ", AVX-512"
            if (index(flags, " avx512_vnni ")) f = f ", AVX512-VNNI"
            if (index(flags, " avx512_bf16 ")) f = f ", AVX512-BF16"
            if (index(flags, " avx512_fp16 ")) f = f ", AVX512-FP16"
            if (index(flags, " amx_tile ")) f = f ", AMX"
            printf "%s (family %s, model %s%s)", (name ? name : "unknown CPU"), fam, model, f
        }' /proc/cpuinfo 2>/dev/null || echo "unknown CPU"
}
onednn_settings() {
    local s="${ONEDNN_MAX_CPU_ISA:+ONEDNN_MAX_CPU_ISA=$ONEDNN_MAX_CPU_ISA }${RESNETGEN_ONEDNN:+RESNETGEN_ONEDNN=$RESNETGEN_ONEDNN}"
    [ -n "$s" ] || s="ResNetGen's defaults"
    echo "${s% }"
}

mkdir -p "$out"
if [ "$summary_only" = 0 ]; then
    dll="$root/Sample/bin/Release/net10.0/ResNetGen.Sample.dll"
    echo "recipe-table: building the sample (Release)"
    dotnet build "$root/Sample" -c Release -nologo -v q >/dev/null
    total=$(( $(wc -l <<<"$table") * $(wc -w <<<"$seeds") )); n=0
    while IFS='|' read -r name opts; do
        for seed in $seeds; do
            n=$((n + 1)); run="$out/$name-e$epochs-s$seed"
            if [ -f "$run/done" ]; then echo "recipe-table: [$n/$total] $run: done before, kept"; continue; fi
            echo "recipe-table: [$n/$total] $run: train --epochs $epochs --precision $precision --seed $seed $opts ${extra[*]:-} ($(date +%T))"
            mkdir -p "$run"
            {
                echo "command: train --epochs $epochs --precision $precision --seed $seed --output $run${opts:+ $opts}${extra[*]:+ ${extra[*]}}"
                echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
                echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
                echo "machine: $(machine)"
                echo "oneDNN: $(onednn_settings)"
            } > "$run/run.txt"
            # shellcheck disable=SC2086 # the row's options are words
            if dotnet "$dll" train --epochs "$epochs" --precision "$precision" --seed "$seed" --output "$run" $opts "${extra[@]}" \
                > "$run/train.log" 2>&1; then
                touch "$run/done"; grep -o 'Checkpoint (epoch [^)]*)' "$run/train.log" | tail -1 | sed 's/^/    /'
            else
                echo "recipe-table: $run failed (exit $?); its log: $run/train.log" >&2
            fi
        done
    done <<<"$table"
fi

# Counts equal lines of standard input: "a (2 runs)<separator>b (1 run)".
count() {
    sort | uniq -c | sed 's/^ *\([0-9]*\) /\1\t/' |
        awk -F'\t' -v sep="$1" '{ printf "%s%s (%d run%s)", (NR > 1 ? sep : ""), $2, $1, ($1 > 1 ? "s" : "") }'
}

# The table: final accuracy per seed from the checkpoint line, s/epoch from the epoch table's time column.
{
    printf '| options | %s | mean | vs %s | s/epoch |\n' "$(for s in $seeds; do printf 'seed %s | ' "$s"; done | sed 's/ | $//')" \
        "$(head -1 <<<"$table" | cut -d'|' -f1)"
    printf '| --- |%s ---: | ---: | ---: |\n' "$(for _ in $seeds; do printf ' ---: |'; done)"
    base="" row=0 precs=() machines=() settings=()
    while IFS='|' read -r name opts; do
        accs=() secs=()
        for seed in $seeds; do
            log="$out/$name-e$epochs-s$seed/train.log"
            acc=""; [ -f "$log" ] && acc=$(grep -o 'Checkpoint (epoch [0-9]*,.*test accuracy [0-9.]*%' "$log" | tail -1 | grep -o '[0-9.]*%$' | tr -d '%' || true)
            accs+=("${acc:-}")
            info="$out/$name-e$epochs-s$seed/run.txt"
            [ -f "$info" ] && machines+=("$(sed -n 's/^machine: //p' "$info")") && settings+=("$(sed -n 's/^oneDNN: //p' "$info")")
            [ -f "$log" ] && precs+=("$(grep -o '^Precision: [a-z0-9]*' "$log" | head -1 | cut -d' ' -f2 || true)")
            [ -f "$log" ] && secs+=($(awk -F'│' '$2 ~ /^ [0-9]+ +$/ && $2+0 >= 2 { gsub(/[ s]/, "", $7); print $7 }' "$log"))
        done
        mean=$(printf '%s\n' "${accs[@]}" | awk 'NF { s += $1; n++ } END { if (n) printf "%.2f", s / n }')
        row=$((row + 1)); vs=""
        if [ "$row" = 1 ]; then base="$mean"
        elif [ -n "$mean" ] && [ -n "$base" ]; then vs=$(awk -v a="$mean" -v b="$base" 'BEGIN { printf "%+.2f", a - b }'); fi
        med=$(printf '%s\n' "${secs[@]}" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
        label=${opts:-(the original recipe)}; [ -n "$opts" ] && label="\`$opts\`"
        printf '| %s | %s | %s | %s | %s |\n' "$label" \
            "$(for a in "${accs[@]}"; do printf '%s | ' "${a:+$a%}"; done | sed 's/ | $//')" "${mean:+$mean%}" "$vs" "$med"
    done <<<"$table"
    # Which precision the runs computed in, from each log's "Precision: …" line (auto resolves per machine).
    ran=$(for p in "${precs[@]}"; do echo "${p:-unknown}"; done | count ", ")
    printf '\nPrecision: %s\n' "${ran:-no runs yet}"
    # Runs that recorded where they ran (run.txt; older runs did not): the machines and oneDNN settings.
    if [ ${#machines[@]} -gt 0 ]; then
        printf 'Machine: %s\n' "$(printf '%s\n' "${machines[@]}" | count "; ")"
        printf 'oneDNN: %s\n' "$(printf '%s\n' "${settings[@]}" | count "; ")"
    fi
} | tee "$out/table-e$epochs.md"
