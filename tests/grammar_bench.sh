#!/bin/sh
# Decoding speed with a grammar against without, in quill and in llama.cpp, side by side
# (`make bench-grammar`; docs/grammars.md#speed has the figures):
#
#   tests/grammar_bench.sh MODEL QUILL [LLAMA_CLI]
#
# Three cases on the same model and threads: no grammar, any JSON value (quill's --json,
# llama.cpp's --json-schema '{}': each program's own JSON grammar, as a user asks for it)
# and tests/grammars/json-story.gbnf ({"story": "..."}, almost every token inside a string,
# the same file in both). Each run generates N tokens (--ignore-eos, so that every run decodes as many)
# from the prompt "x" with seed 1 and the default chain. The runs take turns, every case of
# both programs in each round, so that a slower minute on a shared machine falls on all of
# them; each figure is the median over the rounds. quill's tokens/s is its --verbose
# "generated" line (the model and the sampler); llama.cpp's is its tokens over its eval
# time plus its sampling time (llama_perf's lines), the same work. LLAMA_CLI missing or not
# given: quill alone. N (128), ROUNDS (5) and THREADS (2) come from the environment. Each
# round's figures follow the table, and the load average ends it: on a shared machine a
# round with a busy neighbour shows.
set -eu
model=$1
quill=$2
llama=${3:-}
n=${N:-128}
rounds=${ROUNDS:-5}
threads=${THREADS:-2}
here=$(dirname "$0")
out=$(mktemp -d /tmp/quill-grammar-bench-XXXXXX)
trap 'rm -rf "$out"' EXIT
if [ -n "$llama" ] && [ ! -x "$llama" ]; then
    echo "($llama not found: quill alone)"
    llama=
fi

# The grammar option of a case for a program (quill or llama).
grammar_args() {
    case $2 in
    none) ;;
    json) if [ "$1" = quill ]; then echo "--json"; else echo "--json-schema {}"; fi ;;
    story) echo "--grammar-file $here/grammars/json-story.gbnf" ;;
    esac
}

quill_rate() {
    # shellcheck disable=SC2046
    "$quill" generate "$model" --prompt x -n "$n" --ignore-eos -t "$threads" --seed 1 \
        --verbose $(grammar_args quill "$1") 2>&1 >/dev/null |
        sed -n 's/^\[generated: \([0-9]*\) tokens in \([0-9.]*\) s.*/\1 \2/p' |
        awk '{ printf "%.2f\n", $1 / $2 }'
}

llama_rate() {
    # shellcheck disable=SC2046
    "$llama" -m "$model" -p x -n "$n" --ignore-eos -t "$threads" -s 1 -no-cnv \
        $(grammar_args llama "$1") </dev/null 2>&1 >/dev/null |
        sed -n 's/.* \(sampling\|[^t] eval\) time = *\([0-9.]*\) ms \/ *\([0-9]*\) runs.*/\1 \2 \3/p' |
        awk '$1 == "sampling" { sampling = $2 } $1 == "eval" { eval = $2; runs = $3 }
             END { printf "%.2f\n", runs / ((eval + sampling) / 1000) }'
}

for round in $(seq "$rounds"); do
    for case in none json story; do
        quill_rate $case >>"$out/quill-$case"
        if [ -n "$llama" ]; then llama_rate $case >>"$out/llama-$case"; fi
    done
    echo "round $round of $rounds done" >&2
done

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "$(basename "$model"): $n tokens generated, $threads threads, median of $rounds rounds (tokens/s)"
printf '%-10s %12s %12s %8s %12s %8s\n' program "no grammar" "json" "ratio" "json-story" "ratio"
for prog in quill llama; do
    [ -f "$out/$prog-none" ] || continue
    none=$(median "$out/$prog-none")
    json=$(median "$out/$prog-json")
    story=$(median "$out/$prog-story")
    printf '%-10s %12.1f %12.1f %7.0f%% %12.1f %7.0f%%\n' "$([ $prog = llama ] && echo llama.cpp || echo quill)" \
        "$none" "$json" "$(echo "$json $none" | awk '{ print 100 * $1 / $2 }')" \
        "$story" "$(echo "$story $none" | awk '{ print 100 * $1 / $2 }')"
done
for f in "$out"/*; do echo "$(basename "$f"), each round: $(tr '\n' ' ' <"$f")"; done
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); load: $(cut -d' ' -f1-3 /proc/loadavg)"
