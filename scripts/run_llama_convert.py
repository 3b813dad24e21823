#!/usr/bin/env python3
"""Run llama.cpp's convert_hf_to_gguf.py on a synthetic or fixture checkpoint.

A developer check (not part of `make test`): the GGUF it writes is what
scripts/cmp_llama_convert.py compares against `qforge convert --type F32`.

The converter needs two things our small checkpoints cannot give it, and this
wrapper supplies exactly those two, changing nothing else:

1. The BPE pre-tokenizer name.  llama.cpp identifies it by hashing the token ids
   of a fixed text (`get_vocab_base_pre`), and only the real vocabularies hash to
   a known name; a reduced or synthetic vocabulary stops the converter with
   "BPE pre-tokenizer was not recognized".  With `--pre NAME` an unrecognized hash
   yields NAME instead (a warning says so).  A recognized hash is kept as is.
   tokenizer.ggml.pre is therefore not compared independently.

2. Kimi-K2's tokenizer class.  Moonshot ships `tokenization_kimi.py`
   (`TikTokenTokenizer`, loaded with trust_remote_code); the synthetic tiny-k2*
   checkpoints carry `tiktoken.model` and `tokenizer_config.json` but not that
   file.  When a directory names TikTokenTokenizer and has no such file, the
   stand-in below is returned for trust_remote_code=True loads: a tiktoken
   Encoding over the same ranks, and the special-token table Kimi-K2's class
   builds (ids n_ranks .. n_ranks+255, named from `added_tokens_decoder`, else
   `<|reserved_token_{id}|>`).  Loads without trust_remote_code fail as they do
   for the real checkpoint.  Only the attributes the converter reads exist.

usage: run_llama_convert.py --llama LLAMA_CPP_DIR [--pre NAME] -- CONVERTER ARGS...
  e.g. run_llama_convert.py --llama ../llama.cpp --pre deepseek-v3 -- \
           ckpt/ --outtype f32 --outfile ckpt.llama.gguf
"""

import argparse
import json
import logging
import os
import runpy
import sys

log = logging.getLogger("run_llama_convert")

KIMI_N_RESERVED = 256

# Kimi-K2's pre-tokenizer expression (tokenization_kimi.py, `pat_str`): Han runs,
# cased words with English contractions, 1-3 digits, punctuation, whitespace.
KIMI_PAT = "|".join([
    r"[\p{Han}]+",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+"
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
])


class KimiTokenizerStandIn:
    """What the converter reads from Kimi-K2's TikTokenTokenizer: .model (a
    tiktoken Encoding, whose _mergeable_ranks it walks), .special_tokens
    (str -> id) and encode() (for the pre-tokenizer hash)."""

    def __init__(self, directory):
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        with open(os.path.join(directory, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        names = {int(k): v["content"] for k, v in cfg.get("added_tokens_decoder", {}).items()}
        ranks = load_tiktoken_bpe(os.path.join(directory, "tiktoken.model"))
        first = len(ranks)
        self.special_tokens = {
            names.get(i, f"<|reserved_token_{i}|>"): i
            for i in range(first, first + KIMI_N_RESERVED)
        }
        self.model = tiktoken.Encoding(name="tiktoken.model", pat_str=KIMI_PAT,
                                       mergeable_ranks=ranks,
                                       special_tokens=self.special_tokens)

    def encode(self, text, **_kwargs):
        return self.model.encode(text, allowed_special="all")


def needs_kimi_stand_in(directory):
    cfg_path = os.path.join(str(directory), "tokenizer_config.json")
    if not os.path.isfile(os.path.join(str(directory), "tiktoken.model")) or not os.path.isfile(cfg_path):
        return False
    if os.path.isfile(os.path.join(str(directory), "tokenization_kimi.py")):
        return False
    with open(cfg_path, encoding="utf-8") as f:
        return json.load(f).get("tokenizer_class") == "TikTokenTokenizer"


def install_patches(forced_pre):
    import transformers
    from conversion.base import TextModel

    original_pre = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original_pre(self, tokenizer)
        except NotImplementedError:
            if forced_pre is None:
                raise
            log.warning("pre-tokenizer hash not recognized: using --pre %r", forced_pre)
            return forced_pre

    TextModel.get_vocab_base_pre = get_vocab_base_pre

    original_from_pretrained = transformers.AutoTokenizer.from_pretrained

    def from_pretrained(path, *args, **kwargs):
        if needs_kimi_stand_in(path):
            if not kwargs.get("trust_remote_code"):
                raise ValueError("TikTokenTokenizer needs trust_remote_code (as for the real checkpoint)")
            log.warning("%s: Kimi-K2 tokenizer stand-in (no tokenization_kimi.py)", path)
            return KimiTokenizerStandIn(str(path))
        return original_from_pretrained(path, *args, **kwargs)

    transformers.AutoTokenizer.from_pretrained = from_pretrained


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama", required=True, help="llama.cpp source directory")
    ap.add_argument("--pre", help="tokenizer.ggml.pre to use when the vocabulary hash is not recognized")
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="-- then convert_hf_to_gguf.py's arguments")
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    logging.basicConfig(level=logging.INFO)

    script = os.path.join(args.llama, "convert_hf_to_gguf.py")
    sys.path.insert(0, args.llama)
    sys.path.insert(1, os.path.join(args.llama, "gguf-py"))
    install_patches(args.pre)
    sys.argv = [script] + rest
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
