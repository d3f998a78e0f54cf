#!/usr/bin/env bash
# Fuzz and randomized-test runs beyond the normal suite (docs/tflm.md, "Fuzzing and long runs").
#
#   bash scripts/fuzz.sh                 short mode (what CI runs inside the test suite): each
#                                        libFuzzer target 5 s, the randomized kernel tests at their
#                                        base counts
#   bash scripts/fuzz.sh --long          long mode: each libFuzzer target FUZZ_SECONDS (default 600)
#                                        on its growing corpus (tflm_kernels/build/fuzz/work_*), then
#                                        the randomized kernel tests with FXPQ_LONG=N (default 10)
#                                        times as many fresh cases (host and QEMU Cortex-M4/M7), then
#                                        the differential reader run: FLIPS (default 10000) byte-flipped
#                                        files per kind (fxp, int8-builtin) through the Python reader
#                                        (+ the numpy reference) and the C runner, one table
#   FUZZ_SECONDS=1800 FXPQ_LONG=50 bash scripts/fuzz.sh --long      longer still
#   bash scripts/fuzz.sh --long --fuzz-only / --tests-only          one half (the differential run
#                                        belongs to the tests half)
#
# Prints one summary line per part: runs, seconds, crashes (libFuzzer artifacts are kept in
# tflm_kernels/build/fuzz/artifacts/), mismatches (failed tests). Exit status 1 if anything failed.
# Everything runs under `nice`.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
long=0 fuzz=1 tests=1
for arg in "$@"; do
    case "$arg" in
        --long) long=1 ;;
        --fuzz-only) tests=0 ;;
        --tests-only) fuzz=0 ;;
        *) echo "usage: bash scripts/fuzz.sh [--long] [--fuzz-only|--tests-only]" >&2; exit 2 ;;
    esac
done
if [ "$long" = 1 ]; then
    seconds="${FUZZ_SECONDS:-600}"; factor="${FXPQ_LONG:-10}"
else
    seconds="${FUZZ_SECONDS:-5}"; factor=1
fi
kernels="$root/tflm_kernels"
fdir="$kernels/build/fuzz"
status=0
summary=()

if [ "$fuzz" = 1 ]; then
    if ! command -v clang >/dev/null; then
        echo "fuzz.sh: error: clang (with libFuzzer) is not installed (scripts/setup.sh installs it)" >&2
        exit 2
    fi
    nice make -s -C "$kernels" fuzz BUILD=build >/dev/null || exit 1
    mkdir -p "$fdir/artifacts"
    for target in options model; do
        work="$fdir/work_$target"
        mkdir -p "$work"
        log="$fdir/$target.log"
        start=$(date +%s)
        nice "$fdir/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 \
            -print_final_stats=1 -artifact_prefix="$fdir/artifacts/${target}-" "$work" \
            "$kernels/fuzz/corpus/$target" >"$log" 2>&1
        rc=$?
        took=$(( $(date +%s) - start ))
        runs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
        crashes=$(grep -c -E "ERROR: (AddressSanitizer|libFuzzer)|runtime error:" "$log")
        [ "$rc" = 0 ] || status=1
        summary+=("fuzz_$target: ${runs:-0} runs in ${took} s, ${crashes} crashes (exit $rc, log $log)")
    done
fi

if [ "$tests" = 1 ]; then
    log="$root/tflm_kernels/build/fuzz/randomized_tests.log"
    mkdir -p "$(dirname "$log")"
    seed="${FXPQ_LONG_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
    start=$(date +%s)
    FXPQ_LONG="$factor" FXPQ_LONG_SEED="$seed" TF_CPP_MIN_LOG_LEVEL=2 nice .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 \
        tests/test_c_kernels_host.py tests/test_c_kernels_qemu.py tests/test_fakequant_vs_reference.py \
        >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    [ "$rc" = 0 ] || status=1
    passed=$(grep -oE "[0-9]+ passed" "$log" | tail -1)
    failed=$(grep -oE "[0-9]+ failed" "$log" | tail -1)
    summary+=("randomized tests (FXPQ_LONG=$factor FXPQ_LONG_SEED=$seed): ${passed:-0 passed}, ${failed:-0 failed} (a failure is a C/numpy mismatch or an error) in ${took} s (log $log)")
fi

if [ "$tests" = 1 ] && [ "$long" = 1 ]; then
    log="$root/tflm_kernels/build/fuzz/differential.log"
    start=$(date +%s)
    TF_CPP_MIN_LOG_LEVEL=2 nice .venv/bin/python -m fxpq_keras.kernels.differential --flips "${FLIPS:-10000}" \
        --seed "${FXPQ_LONG_SEED:-0}" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    crashes=$(grep -c -E "python-crash|run-crash" "$log")
    [ "$crashes" = 0 ] || status=1
    summary+=("differential readers (FLIPS=${FLIPS:-10000} per kind): ${crashes} reader/reference crashes, exit $rc (1: accept/refuse disagreements, see the table) in ${took} s (log $log)")
    summary+=("$(grep -E '^\|' "$log")")
fi

printf '%s\n' "${summary[@]}"
exit "$status"
