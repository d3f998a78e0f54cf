#!/usr/bin/env bash
# Idempotent set-up: Debian packages (Cortex-M toolchain, QEMU, clang for fuzzing, espeak-ng for the
# benchmark zoo's synthesized speech) and the .venv with fxpq installed from setup.py. Safe to run
# again: it skips what is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_apt=()
for cmd_pkg in arm-none-eabi-gcc:gcc-arm-none-eabi qemu-system-arm:qemu-system-arm \
               clang:clang make:make espeak-ng:espeak-ng; do
  command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || need_apt+=("${cmd_pkg##*:}")
done
[ -f /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/librdimon.a ] \
  || [ -d /usr/lib/arm-none-eabi/newlib ] || need_apt+=(libnewlib-arm-none-eabi)
if ! dpkg -s libclang-rt-14-dev >/dev/null 2>&1 && ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  need_apt+=(libclang-rt-14-dev)
fi
# C++ headers and libstdc++ for arm-none-eabi-g++ (the TFLM firmware; docs/tflm.md section 6)
for pkg in libstdc++-arm-none-eabi-dev libstdc++-arm-none-eabi-newlib; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" libnewlib-arm-none-eabi >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.fxpq-installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  echo "[setup] installing fxpq and its dependencies into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
echo "[setup] ready"
