#!/bin/sh
# LoRA fine-tuning speed and memory, quill beside PyTorch (`make bench-finetune`;
# docs/training.md#speed-and-memory has the figures):
#
#   tests/finetune_bench.sh QUILL DATA F32.gguf [OTHER.gguf...]
#
# quill finetune on each model (the F32 bench model and its quantizations), rank 8 on all
# seven projections, batch 4 x 256, THREADS (2) threads, STEPS (3) steps; and, when Debian's
# python3-torch is installed (apt-get install -y python3-torch), the same step in plain
# PyTorch on the F32 file (tests/finetune_bench_torch.py, at 1 and at THREADS threads, or
# at the TORCH_THREADS given).
# The runs take turns (quill, torch, quill, torch ...), ROUNDS (2) rounds, so that a busy
# minute on a shared machine falls on both; each figure is the median over the rounds.
# quill's tokens/s is the median of its log.jsonl's steps after the first (which pages the
# base in); its peak is /usr/bin/time -v's maximum resident set size (VmHWM), set against
# the model file's size. The data is DATA's first 64 KB, so that the whole-split
# evaluation at the end of each run stays short.
#
# GFLOP/s counts, per token, the frozen matrices' forward product W x and backward product
# dy W (4 Pw, Pw the weights of the 84 projections and the output layer), the adapter's
# forward (A x, B u) and backward (dB, dy B, dA, (dy B) A) products (6 Pl, Pl = r (in + out)
# summed over the adapted projections) and causal attention's QK^T and PV with their four
# backward products (6 L dim (T + 1) on average): the same count for both programs.
#
# Both programs spend most of a step in sgemm (PyTorch through the same OpenBLAS), so the
# machine's sgemm peak on THREADS threads, measured before the rounds and after them (quill
# bench --machine), bounds what either can reach: peak / FLOP per token is the "ceiling"
# line. PyTorch's thread count is ATen's (torch.set_num_threads); OpenBLAS keeps its own
# threads, one per core, whatever it is.
#
# BUSY=1 runs every round beside a busy neighbour: a process that keeps one core busy
# (yes > /dev/null), as a compile or a browser would.
set -eu
quill=$1
data=$2
shift 2
rounds=${ROUNDS:-2}
threads=${THREADS:-2}
steps=${STEPS:-3}
here=$(dirname "$0")
python=/usr/bin/python3
out=$(mktemp -d /tmp/quill-finetune-bench-XXXXXX)
busy=
trap 'rm -rf "$out"; [ -z "$busy" ] || kill "$busy"' EXIT
if [ "${BUSY:-0}" = 1 ]; then
    yes >/dev/null &
    busy=$!
fi
head -c 65536 "$data" >"$out/data.txt"
f32=$1
torch_threads=
if $python -c "import torch" 2>/dev/null; then
    torch_threads=${TORCH_THREADS:-$(printf '%s\n' 1 "$threads" | sort -un)}
else
    echo "(python3-torch not installed: quill alone; apt-get install -y python3-torch)"
fi

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
flops_per_token() {
    # Pw, Pl, L, dim from the model's shapes: 12 layers, dim 768, ffn 2048, vocab 32000.
    "$quill" info "$1" | awk -v T=256 -v r=8 '
        /^model:/ { for (i = 1; i <= NF; i++) { if ($i == "layers,") L = $(i - 1); if ($i == "dim") d = $(i + 1) + 0;
                    if ($i == "ffn") f = $(i + 1) + 0; if ($i == "vocab") V = $(i + 1) + 0 } }
        END { pw = L * (4 * d * d + 3 * d * f) + d * V; pl = L * r * (4 * 2 * d + 3 * (d + f))
              print 4 * pw + 6 * pl + 6 * L * d * (T + 1) }'
}

quill_run() {
    name=$(basename "$1" .gguf)
    env -u OPENBLAS_CORETYPE -u OPENBLAS_LOADED -u OPENBLAS_L2_SIZE /usr/bin/time -v \
        "$quill" finetune "$1" --data "$out/data.txt" --out "$out/run" --force --steps "$steps" \
        --batch-size 4 --seq-len 256 --lora-rank 8 --threads "$threads" --eval-every 0 \
        --log-every 1 >/dev/null 2>"$out/time"
    sed -n 's/.*"step":\([0-9]*\),.*"tokens_per_s":\([0-9.]*\).*/\1 \2/p' "$out/run/log.jsonl" |
        awk '$1 > 1 { print $2 }' >"$out/steps"
    median "$out/steps" >>"$out/quill-$name-rate"
    sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time" |
        awk '{ print $1 / 1000 }' >>"$out/quill-$name-peak"
}

torch_run() {
    $python "$here/finetune_bench_torch.py" "$f32" --threads "$1" --steps "$steps" >"$out/torch"
    sed -n 's/.*: \([0-9.]*\) tokens\/s.*peak RSS \([0-9.]*\) MB/\1 \2/p' "$out/torch" >"$out/torch-fields"
    cut -d' ' -f1 "$out/torch-fields" >>"$out/torch-$1-rate"
    cut -d' ' -f2 "$out/torch-fields" >>"$out/torch-$1-peak"
}

machine_peak() {
    env -u OPENBLAS_CORETYPE -u OPENBLAS_LOADED -u OPENBLAS_L2_SIZE "$quill" bench --machine \
        --threads "$threads" | sed -n 's/^ *sgemm peak *\([0-9.]*\).*/\1/p' >>"$out/peak"
}

machine_peak
for round in $(seq "$rounds"); do
    for model in "$@"; do quill_run "$model"; done
    for t in $torch_threads; do torch_run "$t"; done
    echo "round $round of $rounds done" >&2
done
machine_peak

fpt=$(flops_per_token "$f32")
echo "LoRA rank 8 on all 7 projections, batch 4 x 256, $steps steps, median of $rounds rounds" \
    "${busy:+beside a busy neighbour (yes > /dev/null) }with" \
    "$(echo "$fpt" | awk '{ printf "%.1f", $1 / 1e6 }') MFLOP per token"
printf '%-22s %10s %10s %12s %12s\n' run "tokens/s" "GFLOP/s" "peak MB" "file MB"
for model in "$@"; do
    name=$(basename "$model" .gguf)
    rate=$(median "$out/quill-$name-rate")
    printf '%-22s %10.1f %10.1f %12.1f %12.1f\n' "quill $name, $threads thr" "$rate" \
        "$(echo "$rate $fpt" | awk '{ print $1 * $2 / 1e9 }')" "$(median "$out/quill-$name-peak")" \
        "$(stat -c %s "$model" | awk '{ print $1 / 1e6 }')"
done
for t in $torch_threads; do
    rate=$(median "$out/torch-$t-rate")
    printf '%-22s %10.1f %10.1f %12.1f %12.1f\n' "torch F32, $t ATen thr" "$rate" \
        "$(echo "$rate $fpt" | awk '{ print $1 * $2 / 1e9 }')" "$(median "$out/torch-$t-peak")" \
        "$(stat -c %s "$f32" | awk '{ print $1 / 1e6 }')"
done
peak=$(median "$out/peak")
best_torch=$(for t in $torch_threads; do median "$out/torch-$t-rate"; done | sort -n | tail -1)
printf '%-22s %10.1f %10.1f   (the sgemm peak on %s threads, before and after: %s GFLOP/s)\n' \
    ceiling "$(echo "$peak $fpt" | awk '{ print $1 * 1e9 / $2 }')" "$peak" "$threads" \
    "$(tr '\n' ' ' <"$out/peak" | sed 's/ $//; s/ / and /')"
[ -z "$best_torch" ] || for model in "$@"; do
    name=$(basename "$model" .gguf)
    echo "quill $name / best torch: $(echo "$(median "$out/quill-$name-rate") $best_torch" |
        awk '{ printf "%.2fx", $1 / $2 }')"
done
for f in "$out"/*-rate "$out"/*-peak; do echo "$(basename "$f"), each round: $(tr '\n' ' ' <"$f")"; done
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); load: $(cut -d' ' -f1-3 /proc/loadavg)"
