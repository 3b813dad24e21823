#!/bin/sh
# Checks the -dev packages the build needs; installs them with apt-get when run as root,
# otherwise prints the exact command and fails.
# `scripts/deps.sh --test` (what `make test` runs) also installs, as root, what tests use but
# the build does not need: a single-node Slurm with munge (tests/test_slurm runs scripts/slurm/
# on it) and OpenBLAS (loaded at run time by --gptq; without it qforge's own kernels run).
# `--optional` adds chromium (tests/test_report_render renders `qforge report` headless).
# Without them those tests report SKIP; a failed install of these only prints a note.
set -e
if [ "$1" = "--test" ] || [ "$1" = "--optional" ]; then
    if command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ]; then
        :
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deps: installing slurmctld slurmd slurm-client munge (tests/test_slurm)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >&2; } ||
            echo "deps: Slurm could not be installed; tests/test_slurm will SKIP" >&2
    else
        echo "deps: for tests/test_slurm: sudo apt-get install -y slurmctld slurmd slurm-client munge  (else it will SKIP)" >&2
    fi
    if ! ls /usr/lib/*/libopenblas.so.0 >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deps: installing libopenblas0 (--gptq's products at BLAS speed; optional)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0 >&2; } ||
            echo "deps: OpenBLAS could not be installed; --gptq uses qforge's own kernels" >&2
    fi
fi
if [ "$1" = "--optional" ]; then
    if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then
        :
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deps: installing chromium (optional: headless rendering test of qforge report)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2; } ||
            echo "deps: chromium could not be installed; tests/test_report_render will SKIP" >&2
    else
        echo "deps: optional: sudo apt-get install -y chromium  (else tests/test_report_render will SKIP)" >&2
    fi
fi
need=""
check() { # header package
    if ! printf '#include <%s>\nint main(void){return 0;}\n' "$1" | ${CC:-gcc} -x c - -fsyntax-only 2>/dev/null; then
        need="$need $2"
    fi
}
check zlib.h zlib1g-dev
check xxhash.h libxxhash-dev
check jansson.h libjansson-dev
check_pcre() { printf "#define PCRE2_CODE_UNIT_WIDTH 8\n#include <pcre2.h>\nint main(void){return 0;}\n" | ${CC:-gcc} -x c - -fsyntax-only 2>/dev/null || need="$need libpcre2-dev"; }
check_pcre
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "deps: installing$need" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >&2
else
    echo "deps: missing packages:$need" >&2
    echo "deps: run:  sudo apt-get install -y$need" >&2
    exit 1
fi
