#!/usr/bin/env python3
"""Sizes of every preset from `qforge convert --dry-run` next to `llama-quantize --dry-run` on the
same tensor list, tensor by tensor.

    python scripts/dryrun_vs_llama.py CHECKPOINT WORKDIR --llama-quantize LLAMA/bin/llama-quantize \
           [--qforge ./qforge] [--presets Q4_K_M,IQ2_XXS,...] [--no-imatrix] [-- QFORGE-CONVERT-ARGS...]

1. `qforge convert CHECKPOINT --type BF16 --dry-run --skeleton -o WORKDIR/model.bf16.gguf ARGS`:
   the BF16 file qforge would write, header only, tensor data a hole (a sparse file);
2. scripts/ones_imatrix.py: WORKDIR/ones.imatrix.gguf, an all-ones entry for every matrix
   llama-imatrix collects on that model (unless --no-imatrix);
3. for each preset: `llama-quantize --dry-run [--imatrix I] model.bf16.gguf PRESET 1` and
   `qforge convert CHECKPOINT --type PRESET --dry-run [--imatrix I] ARGS`; the per-tensor target
   types of both are compared, and the tensor-data totals (llama.cpp's "quant size", MiB with
   2 decimals; qforge's tensor_bytes from --json).

ARGS (after --) go to every qforge convert, e.g. --no-mtp or --keep-mtp; the skeleton carries
their tensor list to llama-quantize.  Presets without a llama.cpp equivalent (the DS-* mixes)
get a qforge size only.  Prints a markdown table; exit 1 when a tensor's type or a total differs.
Needs gguf-py (PYTHONPATH=LLAMA_CPP/gguf-py or pip install gguf) and numpy for step 2.
"""
import argparse
import json
import os
import re
import subprocess
import sys

LLAMA_PRESETS = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q3_K_M", "Q2_K", "Q2_K_S",
                 "IQ3_M", "IQ3_S", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "MXFP4_MOE"]
QFORGE_ONLY = ["DS-Q3_K_XL", "DS-Q2_K_XL", "DS-2.5", "DS-2.2", "DS-1.73", "DS-1.58"]

LQ_TENSOR = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[.*\], type =\s*(\S+), size =\s*([\d.]+) MiB(?: ->\s*([\d.]+) MiB \((\S+)\))?")
QF_TENSOR = re.compile(r"^(\S+)\s+([A-Z0-9_]+)\s+[\d x]+?\s+([\d.]+)(?:\s+\(fallback from \S+\))?$")


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stdout[-3000:]))
    return p.stdout


def llama_dry(lq, model, preset, imatrix):
    cmd = [lq, "--dry-run"] + (["--imatrix", imatrix] if imatrix else []) + [model, preset, "1"]
    out = run(cmd)
    types, total = {}, None
    for line in out.splitlines():
        m = LQ_TENSOR.match(line)
        if m:
            types[m.group(1)] = (m.group(5) or m.group(2)).upper()
        m = re.search(r"quant size\s*=\s*([\d.]+) MiB", line)
        if m:
            total = float(m.group(1))
    return types, total


def qforge_dry(qf, ckpt, preset, imatrix, extra, workdir):
    js = os.path.join(workdir, "qf.json")
    cmd = [qf, "convert", ckpt, "--type", preset, "--dry-run", "-t", "1", "--json", js] + \
          (["--imatrix", imatrix] if imatrix else []) + extra
    out = run(cmd)
    types = {}
    for line in out.splitlines():
        m = QF_TENSOR.match(line.strip())
        if m and m.group(1) != "tensor":
            types[m.group(1)] = m.group(2).upper()
    with open(js) as f:
        j = json.load(f)
    return types, j["tensor_bytes"], j["bpw"], j["bytes"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("workdir")
    ap.add_argument("--llama-quantize", required=True)
    ap.add_argument("--qforge", default="./qforge")
    ap.add_argument("--presets", default=",".join(LLAMA_PRESETS + QFORGE_ONLY))
    ap.add_argument("--no-imatrix", action="store_true", help="both tools without an imatrix")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    a = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    a.extra = extra
    os.makedirs(a.workdir, exist_ok=True)
    skel = os.path.join(a.workdir, "model.bf16.gguf")
    run([a.qforge, "convert", a.checkpoint, "--type", "BF16", "--dry-run", "--quiet", "--skeleton", "-o", skel] + a.extra)
    imatrix = None
    if not a.no_imatrix:
        imatrix = os.path.join(a.workdir, "ones.imatrix.gguf")
        here = os.path.dirname(os.path.abspath(__file__))
        run([sys.executable, os.path.join(here, "ones_imatrix.py"), skel, imatrix])
    bad = 0
    n_tensors = None
    print("| preset | llama-quantize MiB | qforge MiB | difference | tensors of another type | qforge file GB | bpw |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for preset in a.presets.split(","):
        qt, qbytes, bpw, fbytes = qforge_dry(a.qforge, a.checkpoint, preset, imatrix, a.extra, a.workdir)
        qmib = qbytes / 1048576.0
        if preset not in LLAMA_PRESETS:
            print("| %s | (no llama.cpp preset) | %.2f | | | %.2f | %.3f |" % (preset, qmib, fbytes / 1e9, bpw))
            continue
        lt, lmib = llama_dry(a.llama_quantize, skel, preset, imatrix)
        if not lt or not qt or lmib is None:
            sys.exit("%s: could not read the per-tensor types (llama.cpp %d, qforge %d tensors)" % (preset, len(lt), len(qt)))
        ndiff = sum(1 for n in lt if qt.get(n) != lt[n]) + sum(1 for n in qt if n not in lt)
        diff = (round(qmib, 2) - lmib) / lmib * 100.0
        if ndiff or abs(round(qmib, 2) - lmib) > 0.005:
            bad += 1
            for n in sorted(set(lt) | set(qt)):
                if lt.get(n) != qt.get(n):
                    print("  %s %s: llama.cpp %s, qforge %s" % (preset, n, lt.get(n), qt.get(n)), file=sys.stderr)
        print("| %s | %.2f | %.2f | %+.4f%% | %d | %.2f | %.3f |" % (preset, lmib, qmib, diff, ndiff, fbytes / 1e9, bpw))
        n_tensors = len(lt)
        sys.stdout.flush()
    if n_tensors is not None:
        print("\n%d tensors compared per preset%s" % (n_tensors, "" if imatrix else " (no imatrix)"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
