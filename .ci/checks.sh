#!/usr/bin/env bash
# Every check of the default (offline, CPU) test run. Called by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
fail() { echo "FAILED: $*" >&2; exit 1; }

echo "== nbdev_export leaves no diff"
nbdev_export
git diff --quiet -- sparse_circuits || { git --no-pager diff --stat -- sparse_circuits; fail "nbdev_export changed sparse_circuits/: export the notebooks and commit"; }
untracked=$(git ls-files --others --exclude-standard -- sparse_circuits)
[ -z "$untracked" ] || fail "nbdev_export wrote untracked files: $untracked"

echo "== notebooks are clean"
nbdev_clean
git diff --quiet -- nbs || { git --no-pager diff --stat -- nbs; fail "nbdev_clean changed notebooks: run nbdev_clean and commit"; }

echo "== notebooks keep their stored outputs"
python .ci/notebooks.py check || fail "a notebook lost its outputs or was never executed: run make notebooks and commit"

echo "== README.md matches nbs/index.ipynb"
python .ci/readme.py --check || fail "README.md is stale"

# one torch thread per worker: two workers with two threads each on two cores took 413 s instead of 148 s
echo "== nbdev_test (skips cells flagged: notest slow gpu)"
OMP_NUM_THREADS=1 nbdev_test --n_workers 2 --timing || fail "nbdev_test"

echo "== pytest"
set +e
OMP_NUM_THREADS=1 python -m pytest tests -q -p no:cacheprovider -n auto   # pytest-xdist: a process per core
rc=$?
set -e
[ $rc -eq 5 ] && fail "pytest collected no tests"
[ $rc -eq 0 ] || fail "pytest exited $rc"
echo "all checks passed in $((SECONDS - start)) s"
