#!/usr/bin/env python3
"""Write an all-ones importance matrix for a model GGUF, in llama.cpp's imatrix GGUF format.

    python scripts/ones_imatrix.py MODEL.gguf OUT.imatrix.gguf [--include-mtp]

MODEL.gguf is any GGUF of the model; only its header is read, so the skeleton of
`qforge convert DIR --type BF16 --dry-run --skeleton -o MODEL.gguf` (tensor data a hole)
works for a 1T model.  One entry is written for every matrix that llama-imatrix collects on
that model: every `blk.N.*.weight` with two or more dimensions, the MTP blocks excepted
(`blk.N` for N >= block_count - nextn_predict_layers: llama.cpp's graph does not run them).
Each entry is W.in_sum2 = 1 and W.counts = 1 in tools/imatrix's layout: [ne0, n_expert] and
[1, n_expert] for a merged expert tensor (`*_exps`, MUL_MAT_ID), [ne0 * ne2 * ne3, 1] and [1, 1]
for any other (attn_k_b / attn_v_b hold one matrix per head; llama-imatrix keeps one count);
general.type "imatrix", imatrix.datasets / chunk_count / chunk_size as tools/imatrix writes them.  Entry set checked
against llama-imatrix on tiny-v3 (with and without MTP), tiny-v32 and tiny-k2 (docs/family.md).

Its use: `llama-quantize --dry-run --imatrix` and `qforge convert --dry-run --imatrix` on the
same tensor list, for the presets whose per-tensor rules depend on an imatrix being given
(IQ3_XXS) and so that both tools see the configuration a real IQ build has.  An all-ones
imatrix is a valid input for a real quantization too (a uniform weighting), not a useful one.

Needs gguf-py (llama.cpp's gguf-py directory on PYTHONPATH, or `pip install gguf`) and numpy.
"""
import argparse
import re
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("ones_imatrix.py: needs gguf-py (PYTHONPATH=LLAMA_CPP/gguf-py or pip install gguf)")


def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    return f.parts[f.data[0]].tolist()[0] if f.types[0] != gguf.GGUFValueType.STRING else bytes(f.parts[f.data[0]]).decode()


def entries(reader, include_mtp):
    arch = field_value(reader, "general.architecture")
    n_block = field_value(reader, f"{arch}.block_count")
    n_nextn = field_value(reader, f"{arch}.nextn_predict_layers") or 0
    first_mtp = n_block - n_nextn if n_block is not None else None
    out = []
    for t in reader.tensors:
        m = re.match(r"blk\.(\d+)\..*\.weight$", t.name)
        ne = [int(x) for x in t.shape]   # gguf-py: ggml order, ne[0] first
        if not m or len(ne) < 2:
            continue
        if not include_mtp and first_mtp is not None and int(m.group(1)) >= first_mtp:
            continue
        nmat = 1
        for x in ne[2:]:
            nmat *= x
        if "_exps." in t.name:   # merged experts (MUL_MAT_ID): one row and one count per expert
            out.append((t.name, ne[0], nmat))
        else:                    # MUL_MAT (attn_k_b / attn_v_b: one per head): one count, rows flattened
            out.append((t.name, ne[0] * nmat, 1))
    return sorted(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model GGUF (only the header is read)")
    ap.add_argument("out", help="imatrix GGUF to write")
    ap.add_argument("--include-mtp", action="store_true", help="also the MTP blocks (llama-imatrix does not collect them)")
    ap.add_argument("--list", action="store_true", help="print the entries (name ne0 nmat), write nothing")
    a = ap.parse_args()
    r = gguf.GGUFReader(a.model)
    es = entries(r, a.include_mtp)
    if a.list:
        for n, ne0, nmat in es:
            print(n, ne0, nmat)
        return
    w = gguf.GGUFWriter(a.out, arch="")
    w.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE, None)   # tools/imatrix writes none
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["ones_imatrix.py"])
    w.add_uint32("imatrix.chunk_count", 1)
    w.add_uint32("imatrix.chunk_size", 1)
    for n, ne0, nmat in es:
        # shapes in numpy order: [nmat, ne0] is ggml's [ne0, nmat]
        w.add_tensor(n + ".in_sum2", np.ones((nmat, ne0), dtype=np.float32))
        w.add_tensor(n + ".counts", np.ones((nmat, 1), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{a.out}: {len(es)} entries")


if __name__ == "__main__":
    main()
