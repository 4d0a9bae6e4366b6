#!/usr/bin/env bash
# Runs the whole test suite (unit, TorchSharp training, Orleans test clusters, Azurite, CLI) after set-up, and
# prints one closing line "N passed, N failed". Exit code: non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Large libtorch allocations on transparent huge pages (see src/Duck.Core/Runtime/MallocTuning.cs).
export GLIBC_TUNABLES=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=8589934592
# Tests make temporary folders (data, checkpoints, silo state); they all go under one scratch folder, removed at the end.
scratch=$(mktemp -d -t duck-tests-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export TMPDIR=$scratch
log=$(mktemp)
status=0
dotnet test Duck.Distributed.sln -c Release --no-build -v quiet -nologo --logger "console;verbosity=minimal" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -Eo 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
# A test host that crashes ends its assembly's run early: the tests it did not reach count neither way.
aborted=$(grep -c 'Test Run Aborted' "$log" || true)
summary="tests: $passed passed, $failed failed"
if [ "$aborted" -gt 0 ]; then summary+=", $aborted test run(s) aborted by a crashed test host"; fi
echo "$summary"
if [ "$passed" -eq 0 ]; then echo "error: no test ran" >&2; exit 1; fi
if [ "$aborted" -gt 0 ]; then echo "error: a test host crashed (see 'The active test run was aborted' above)" >&2; exit 1; fi
exit "$status"
