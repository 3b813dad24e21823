#!/usr/bin/env python3
"""Compare a GGUF written by qforge with one written by llama.cpp's converter.

A developer check, not part of `make test` (it needs gguf-py, numpy and a GGUF
from llama.cpp's convert_hf_to_gguf.py; scripts/run_llama_convert.py runs that
on our synthetic checkpoints).  Both files are read with gguf-py's GGUFReader.

Printed, one line each:
  key-only-in-A / key-only-in-B    a metadata key present in one file only
  key-type                         the same key with a different GGUF value type
  key-value                        a different value: strings and integers exactly,
                                   floats to 1e-6 relative, arrays element by element
                                   (length, then the first differing index)
  tensor-only-in-A / -B            a tensor present in one file only
  tensor-shape / tensor-type       a different shape (ggml order) or ggml type
  tensor-values                    max |a-b| and max |a-b|/|b| over the elements
                                   (dequantized to float32 when a type is not F32);
                                   integer tensors (I8..I64) element by element, exactly;
                                   two tensors of the same quantized type byte by byte
                                   (MXFP4 experts: the repack must be bit-identical)
Tensors with equal values are listed with --verbose.

--requant-equal: where qforge wrote F32 and llama.cpp a narrower type (DeepSeek-V4: the
converter forces FP8-dequantized matrices to Q8_0 and BF16 ones to BF16 even with
--outtype f32), A's values are quantized to B's type with gguf-py's own quantizer and
must give B's bytes exactly; such a tensor is then reported as an allowed type
difference ("requantized-equal").  This shows that the values before llama.cpp's
rounding were the same, bit for bit after its quantizer.

Exit status 0 when every difference is in ALLOW below, 1 otherwise, 2 on usage
errors.  Each ALLOW entry says why the difference is acceptable.

usage: cmp_llama_convert.py QFORGE.gguf LLAMA.gguf [--verbose] [--rtol R] [--requant-equal]
"""

import argparse
import fnmatch
import sys

import numpy as np

try:
    from gguf import GGUFReader, GGMLQuantizationType, GGUFValueType
    from gguf.quants import dequantize, quantize
except ImportError as e:  # gguf-py lives in llama.cpp's tree: PYTHONPATH=.../gguf-py
    sys.exit(f"cmp_llama_convert: {e} (pip install gguf, or PYTHONPATH=llama.cpp/gguf-py)")

# (kind, key or tensor name pattern, side or None, why).  side "A" (qforge) /
# "B" (llama.cpp) limits an entry to a key present only in that file.
ALLOW = [
    ("key", "general.name", None,
     "naming metadata: llama.cpp derives it from the directory name and model card "
     "heuristics (conversion/base.py prepare_metadata); llama.cpp never reads it to load"),
    ("key", "general.basename", None, "naming metadata, as general.name"),
    ("key", "general.size_label", None,
     "naming metadata: llama.cpp's label counts parameters by its own rounding "
     "(gguf_writer size_label); informational only"),
    ("key", "general.finetune", None,
     "naming metadata, as general.name (llama.cpp parses it out of the directory name, "
     "e.g. 'Instruct')"),
    ("key", "general.version", None,
     "naming metadata, as general.name (llama.cpp parses it out of the directory name, e.g. 'v3')"),
    ("key", "qforge.*", "A",
     "qforge's own provenance and per-tensor checksums (qforge verify); "
     "llama.cpp ignores keys of other namespaces"),
]

FLOAT_TYPES = {GGUFValueType.FLOAT32, GGUFValueType.FLOAT64}
INT_TENSOR_TYPES = {GGMLQuantizationType.I8, GGMLQuantizationType.I16, GGMLQuantizationType.I32,
                    GGMLQuantizationType.I64}
PLAIN_TENSOR_TYPES = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16,
                      GGMLQuantizationType.F64} | INT_TENSOR_TYPES


def allowed(kind, name, side):
    for k, pattern, s, _why in ALLOW:
        if k == kind and fnmatch.fnmatchcase(name, pattern) and (s is None or s == side):
            return True
    return False


def field_value(field):
    """(value types, python value) of a GGUFReader field; arrays become lists."""
    return list(field.types), field.contents()


def floats_equal(a, b, rtol):
    if a == b:
        return True
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def value_diff(types, a, b, rtol):
    """None when a equals b, else a short description of the first difference."""
    elem_float = types[-1] in FLOAT_TYPES
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list)):
            return "array vs scalar"
        if len(a) != len(b):
            return f"length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            same = floats_equal(x, y, rtol) if elem_float else x == y
            if not same:
                return f"[{i}] {x!r} vs {y!r} (length {len(a)})"
        return None
    same = floats_equal(a, b, rtol) if elem_float else a == b
    return None if same else f"{a!r} vs {b!r}"


def tensor_f32(t):
    if t.tensor_type == GGMLQuantizationType.F32:
        return np.asarray(t.data, dtype=np.float32).reshape(-1)
    return dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)


class Report:
    def __init__(self):
        self.bad = 0
        self.accepted = 0

    def line(self, kind, name, side, text):
        ok = allowed(kind, name, side)
        if ok:
            self.accepted += 1
        else:
            self.bad += 1
        print(f"{'allowed ' if ok else ''}{text}")


def compare_keys(ra, rb, rep, rtol):
    fa = {k: f for k, f in ra.fields.items() if not k.startswith("GGUF.")}
    fb = {k: f for k, f in rb.fields.items() if not k.startswith("GGUF.")}
    for k in sorted(fa.keys() - fb.keys()):
        rep.line("key", k, "A", f"key-only-in-A {k} = {short(fa[k].contents())}")
    for k in sorted(fb.keys() - fa.keys()):
        rep.line("key", k, "B", f"key-only-in-B {k} = {short(fb[k].contents())}")
    for k in sorted(fa.keys() & fb.keys()):
        ta, va = field_value(fa[k])
        tb, vb = field_value(fb[k])
        if ta != tb:
            names = lambda ts: "/".join(t.name for t in ts)
            rep.line("key", k, None, f"key-type {k}: {names(ta)} vs {names(tb)}")
            if len(ta) != len(tb):
                continue
        d = value_diff(ta, va, vb, rtol)
        if d is not None:
            rep.line("key", k, None, f"key-value {k}: {d}")


def short(v):
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def compare_tensors(ra, rb, rep, rtol, verbose, requant_equal=False):
    ta = {t.name: t for t in ra.tensors}
    tb = {t.name: t for t in rb.tensors}
    for n in sorted(ta.keys() - tb.keys()):
        rep.line("tensor", n, "A", f"tensor-only-in-A {n} {list(ta[n].shape)}")
    for n in sorted(tb.keys() - ta.keys()):
        rep.line("tensor", n, "B", f"tensor-only-in-B {n} {list(tb[n].shape)}")
    for n in sorted(ta.keys() & tb.keys()):
        a, b = ta[n], tb[n]
        if list(a.shape) != list(b.shape):
            rep.line("tensor", n, None, f"tensor-shape {n}: {list(a.shape)} vs {list(b.shape)}")
            continue
        if a.tensor_type != b.tensor_type:
            if requant_equal and a.tensor_type == GGMLQuantizationType.F32 and b.tensor_type not in INT_TENSOR_TYPES:
                qa = quantize(np.asarray(a.data, dtype=np.float32).reshape(b.data.shape[:-1] + (-1,)) if b.data.ndim > 1
                              else np.asarray(a.data, dtype=np.float32), b.tensor_type)
                if qa.tobytes() == np.asarray(b.data).tobytes():
                    rep.accepted += 1
                    print(f"allowed requantized-equal {n}: F32 vs {b.tensor_type.name}, "
                          f"A quantized to {b.tensor_type.name} by gguf-py = B byte for byte")
                    continue
            rep.line("tensor", n, None, f"tensor-type {n}: {a.tensor_type.name} vs {b.tensor_type.name}")
        if a.tensor_type == b.tensor_type and (a.tensor_type in INT_TENSOR_TYPES or a.tensor_type not in PLAIN_TENSOR_TYPES):
            ba, bb = np.asarray(a.data).tobytes(), np.asarray(b.data).tobytes()
            if ba == bb:
                if verbose:
                    print(f"same {n} {list(a.shape)} {a.tensor_type.name} (bytes)")
                continue
            if a.tensor_type in INT_TENSOR_TYPES:
                nd = int(np.count_nonzero(np.asarray(a.data).reshape(-1) != np.asarray(b.data).reshape(-1)))
                rep.line("tensor", n, None, f"tensor-values {n}: {nd} of {a.data.size} integers differ")
                continue
            nd = sum(1 for p, q in zip(ba, bb) if p != q)
            rep.line("tensor", n, None, f"tensor-bytes {n}: {nd} of {len(ba)} bytes differ ({a.tensor_type.name})")
        x, y = tensor_f32(a), tensor_f32(b)
        diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
        both_nan = np.isnan(x) & np.isnan(y)
        diff[both_nan] = 0.0
        max_abs = float(np.nanmax(diff, initial=0.0)) if diff.size else 0.0
        if np.isnan(diff).any():
            max_abs = float("nan")
        den = np.abs(y.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / den)
        max_rel = float(np.max(rel, initial=0.0))
        if max_abs == 0.0 or max_rel <= rtol:
            if verbose:
                print(f"same {n} {list(a.shape)} {a.tensor_type.name}"
                      + ("" if max_abs == 0 else f" (max abs {max_abs:.3g}, rel {max_rel:.3g})"))
            continue
        rep.line("tensor", n, None,
                 f"tensor-values {n}: max abs {max_abs:.6g}, max rel {max_rel:.6g}, "
                 f"{int(np.count_nonzero(diff))} of {diff.size} elements differ")


def main():
    ap = argparse.ArgumentParser(description="Compare a qforge GGUF (A) with llama.cpp's (B).")
    ap.add_argument("a", help="GGUF written by qforge convert")
    ap.add_argument("b", help="GGUF written by llama.cpp's convert_hf_to_gguf.py")
    ap.add_argument("--verbose", action="store_true", help="also list equal tensors")
    ap.add_argument("--requant-equal", action="store_true",
                    help="F32 (A) vs a narrower type (B): A quantized to B's type must equal B byte for byte")
    ap.add_argument("--rtol", type=float, default=0.0,
                    help="tensor values: max |a-b|/|b| tolerated (default 0: bit-exact)")
    args = ap.parse_args()
    try:
        ra, rb = GGUFReader(args.a), GGUFReader(args.b)
    except (OSError, ValueError) as e:
        print(f"cmp_llama_convert: {e}", file=sys.stderr)
        return 2
    rep = Report()
    compare_keys(ra, rb, rep, 1e-6)
    compare_tensors(ra, rb, rep, args.rtol, args.verbose, args.requant_equal)
    print(f"{args.a} vs {args.b}: {len(ra.tensors)} / {len(rb.tensors)} tensors, "
          f"{rep.bad} difference(s), {rep.accepted} allowed")
    return 1 if rep.bad else 0


if __name__ == "__main__":
    sys.exit(main())
