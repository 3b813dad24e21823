#!/bin/bash
# tests/test_slurm.sh — the shipped Slurm route (scripts/slurm/) on a real single-node Slurm:
# starts munged, slurmctld and slurmd from a temporary config (proctrack/linuxproc, task/none,
# select/cons_tres over this host's CPUs), submits 4-task arrays of imatrix, sensitivity and
# ppl over ../shared/models/mini-v3-moe with scripts/slurm/submit.sh (each followed by its
# afterok merge job), and checks the merged outputs against unsharded runs: the imatrix and
# the sensitivity table byte for byte, the ppl JSON figure for figure (timings aside).
# Exit 77 (SKIP) when Slurm, munge, root, the model or qforge is missing or the cluster does
# not come up; daemons and the temporary dir are removed in every case.
# Run from the repository root (tests/run.sh does); QF_BIN names qforge, QF_SHARED ../shared.
set -u
name=test_slurm
skip() { echo "SKIP: $*" >&2; exit 77; }
root=$(pwd)
shared=${QF_SHARED:-../shared}
model=$shared/models/mini-v3-moe
qf=${QF_BIN:-./qforge}
[ -n "${QF_QUICK:-}" ] && [ "${QF_QUICK}" != 0 ] && skip "QF_QUICK: the Slurm route runs in the plain make test (under the sanitizers its jobs take ~50 s)"
[ -x "$qf" ] || skip "qforge binary not built (set QF_BIN)"
qf=$(cd "$(dirname "$qf")" && pwd)/$(basename "$qf")
[ -f "$root/scripts/slurm/submit.sh" ] || skip "run from the repository root (scripts/slurm/ not found)"
[ -f "$model/config.json" ] || skip "$model is absent (../shared or QF_SHARED)"
for c in munged slurmctld slurmd sbatch squeue sinfo; do
    command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$c" >/dev/null 2>&1 ||
        skip "$c not installed (scripts/deps.sh --optional installs slurm-wlm and munge as root)"
done
PATH=$PATH:/usr/sbin
[ "$(id -u)" = 0 ] || skip "a test cluster runs slurmd as root"

T=$(mktemp -d /tmp/qf-slurm.XXXXXX)
cleanup() {
    for p in slurmd slurmctld munged; do
        [ -s "$T/$p.pid" ] && kill "$(cat "$T/$p.pid")" 2>/dev/null
    done
    for p in slurmd slurmctld munged; do   # wait for each to exit (they hold files in $T)
        for _ in $(seq 50); do
            [ -s "$T/$p.pid" ] && kill -0 "$(cat "$T/$p.pid")" 2>/dev/null || break
            sleep 0.1
        done
    done
    [ -n "${QF_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
fails=0
checks=0
check() { # description command...
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@"; then echo "FAIL: $what" >&2; fails=$((fails + 1)); fi
}

# ---- the cluster ----
host=$(hostname -s)
port=$((20000 + $$ % 20000))
mkdir -p "$T/state" "$T/spool" "$T/out" "$T/log" "$T/ref"
dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 2>/dev/null && chmod 600 "$T/munge.key"
munged --force --socket="$T/munge.sock" --key-file="$T/munge.key" --pid-file="$T/munged.pid" \
       --log-file="$T/munged.log" --seed-file="$T/munge.seed" 2>"$T/munged.err" ||
    skip "munged does not start: $(head -c 200 "$T/munged.err")"
cat > "$T/slurm.conf" <<EOF
ClusterName=qftest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ReturnToService=2
SchedulerParameters=sched_interval=1
NodeName=$host CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=qf Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$T/slurm.conf
slurmctld -f "$T/slurm.conf" -i 2>"$T/slurmctld.err" || skip "slurmctld does not start: $(head -c 200 "$T/slurmctld.err")"
slurmd -f "$T/slurm.conf" 2>"$T/slurmd.err" || skip "slurmd does not start: $(head -c 200 "$T/slurmd.err")"
up=
for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null)
    case "$state" in idle*|mixed*|alloc*) up=1; break ;; esac
    sleep 0.5
done
[ -n "$up" ] || skip "the node did not come up (state '${state:-none}'; $(tail -n 2 "$T/slurmd.log" 2>/dev/null | tr '\n' ' '))"
t0=$(date +%s)

# ---- inputs and the unsharded references (run directly) ----
text=$model/calib.txt
eval=$model/eval.txt
"$qf" convert "$model" -o "$T/f32.gguf" --type F32 >/dev/null 2>&1 || { echo "FAIL: convert F32" >&2; exit 1; }
"$qf" convert "$model" -o "$T/q4.gguf" --type Q4_K_M >/dev/null 2>&1 || { echo "FAIL: convert Q4_K_M" >&2; exit 1; }
"$qf" ppl "$model" --text "$eval" --ctx 64 --chunks 8 --save-base "$T/base.qfb" >/dev/null 2>&1 || { echo "FAIL: base" >&2; exit 1; }
"$qf" imatrix "$model" --text "$text" --ctx 64 --chunks 8 -o "$T/ref/imatrix.gguf" >/dev/null 2>&1 &&
"$qf" sensitivity "$T/f32.gguf" --text "$text" --ctx 16 --chunks 1 --measure 1 -o "$T/ref/sensitivity.json" >/dev/null 2>&1 &&
"$qf" ppl "$T/q4.gguf" --text "$eval" --ctx 64 --chunks 8 --base "$T/base.qfb" --json "$T/ref/ppl.json" > "$T/ref/ppl.txt" 2>/dev/null ||
    { echo "FAIL: an unsharded reference run failed" >&2; exit 1; }

# ---- the shipped route: 4-task arrays, each with its afterok merge ----
export QF_BIN=$qf QF_OUT=$T/out
export QF_ARRAY_OPTS="--array=0-3 --cpus-per-task=1 --mem=300M --tmp=0 --time=10 --output=$T/log/%x-%A_%a.log"
export QF_MERGE_OPTS="--mem=300M --time=10 --output=$T/log/%x-%j.log"
jobs=()
submit() { # kind, env assignments...
    local ids
    ids=$(env "${@:2}" "$root/scripts/slurm/submit.sh" "$1" 2>"$T/submit.err") ||
        { echo "FAIL: submit.sh $1: $(head -c 300 "$T/submit.err")" >&2; exit 1; }
    read -r a m <<<"$ids"
    jobs+=("$a" "$m")
}
submit imatrix QF_MODEL="$model" QF_TEXT="$text" QF_CTX=64 QF_CHUNKS=8
submit sensitivity QF_MODEL="$T/f32.gguf" QF_TEXT="$text" QF_CTX=16 QF_CHUNKS=1 QF_ARGS="--measure 1"
submit ppl QF_MODEL="$T/q4.gguf" QF_TEXT="$eval" QF_CTX=64 QF_CHUNKS=8 QF_BASE="$T/base.qfb"
list=$(IFS=,; echo "${jobs[*]}")
for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$list" 2>/dev/null)" ] && break
    sleep 0.5
done
left=$(squeue -h -j "$list" 2>/dev/null)
check "jobs finished within 300 s (left: $left)" test -z "$left"
secs=$(( $(date +%s) - t0 ))

# ---- the merged results equal the unsharded ones ----
for k in imatrix.gguf sensitivity.json ppl.json; do
    check "merge job wrote $k (logs: $(cat "$T"/log/qf-merge-*.log 2>/dev/null | tr '\n' ' ' | head -c 400))" test -s "$T/out/$k"
done
n_shards=$(ls "$T"/out/*.shard-*-of-4.* 2>/dev/null | wc -l)
check "12 shard files (4 per kind), found $n_shards" test "$n_shards" = 12
check "merged imatrix equals the unsharded one bit for bit" cmp -s "$T/ref/imatrix.gguf" "$T/out/imatrix.gguf"
check "merged sensitivity table equals the unsharded one" cmp -s "$T/ref/sensitivity.json" "$T/out/sensitivity.json"
figures() { grep -v -e '"seconds"' -e '"tokens_per_s"' "$1"; }
check "merged ppl JSON has the unsharded figures" diff <(figures "$T/ref/ppl.json") <(figures "$T/out/ppl.json")
kld=$(grep '"kld_mean"' "$T/ref/ppl.json")
check "unsharded ppl has a KLD ($kld)" test -n "$kld"
check "merged KLD equals the unsharded ($kld)" grep -qF "$kld" "$T/out/ppl.json"
pplog=$(grep -l "ppl shards" "$T"/log/qf-merge-*.log 2>/dev/null | head -n 1)
check "merge job log prints the unsharded KLD line" grep -qF "$(grep 'KLD mean' "$T/ref/ppl.txt")" "${pplog:-/dev/null}"
# a missing shard is refused by name
rm -f "$T/out/imatrix.shard-2-of-4.gguf"
check "merge refuses a missing shard" bash -c "! '$qf' merge -o '$T/x.gguf' '$T'/out/imatrix.shard-*-of-4.gguf 2>'$T/miss.err' && grep -q 'shard 2/4 is missing' '$T/miss.err'"

if [ $fails -gt 0 ]; then
    echo "$name: $fails of $checks checks FAILED (slurmctld log: $(tail -n 3 "$T/slurmctld.log" | tr '\n' ' '))" >&2
    exit 1
fi
echo "$name: $checks checks passed (3 arrays of 4 tasks + 3 merge jobs on Slurm in ${secs}s)"
exit 0
