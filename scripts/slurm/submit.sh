#!/bin/sh
# Submits a sharded qforge pass and its merge: `scripts/slurm/submit.sh KIND` with KIND
# imatrix, ppl or sensitivity and the QF_* variables of KIND.sbatch exported.  Prints the two
# job ids ("ARRAY MERGE").  QF_ARRAY_OPTS / QF_MERGE_OPTS add sbatch options to each job (e.g.
# QF_ARRAY_OPTS="--array=0-31 --partition=gpu"); the environment is passed to both jobs.
set -eu
kind=${1:?usage: submit.sh imatrix|ppl|sensitivity}
dir=$(cd "$(dirname "$0")" && pwd)
[ -f "$dir/$kind.sbatch" ] || { echo "submit.sh: no $dir/$kind.sbatch" >&2; exit 2; }
# shellcheck disable=SC2086
array=$(sbatch --parsable --export=ALL ${QF_ARRAY_OPTS:-} "$dir/$kind.sbatch")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(QF_KIND=$kind sbatch --parsable --export=ALL --dependency="afterok:$array" --kill-on-invalid-dep=yes \
        ${QF_MERGE_OPTS:-} "$dir/merge.sbatch")
echo "$array ${merge%%;*}"
