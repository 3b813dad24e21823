/* tok/tok.h — the one public header of tok/: tokenizers (tk_), used by convert/ (the GGUF
 * vocabulary it writes) and calib/ (the engine's input).  Depends on common/ and formats/
 * (GGUF read/write) only.  Sources: tok/tokenizer.c (building, export), tok/tok_encode.c
 * (pre-tokenizer, BPE, decode), tok/tok_json.c, tok/tok_nfc.c, tok/tok_gguf.c. */
#ifndef TOK_TOK_H
#define TOK_TOK_H

#include "../common/qx.h"
#include "../formats/formats.h"

/* Byte-level BPE (GPT-2 family: DeepSeek-V3, Llama-3, Qwen2) built from an HF tokenizer.json
 * (+ tokenizer_config.json) or from a vocabulary description (the GGUF tokenizer.ggml.* keys).
 * A tk_tok is immutable once created: encode/decode may run from many threads at once.
 * Handled: normalizer NFC (and Sequence), pre-tokenizer Split (every behaviour, invert),
 * ByteLevel without prefix space, Digits; BPE merges as "a b" or [a, b], ignore_merges;
 * added tokens (leftmost-longest, lstrip/rstrip), and the special tokens HF adds when it builds
 * the tokenizer (tokenizer_config.json's or its class's defaults, e.g. LlamaTokenizerFast's
 * "<unk>" unless "unk_token": null).  Other components are QX_EUNSUPPORTED.
 * Not modelled: added-token single_word, and "normalized" added tokens are matched in the
 * raw text rather than the normalized one (same result without a normalizer). */
typedef struct tk_tok tk_tok;

/* GGUF token types (tokenizer.ggml.token_type). */
enum { TK_NORMAL = 1, TK_UNKNOWN = 2, TK_CONTROL = 3, TK_USER_DEFINED = 4,
       TK_UNUSED = 5, TK_BYTE = 6 };

/* Vocabulary in GGUF form, as the converter writes it and the GGUF loader reads it.  Normal
 * tokens and merges are in the byte-to-unicode mapped form; added tokens are their text. */
typedef struct {
    int64_t n_tokens;      /* after padding to the requested vocab size */
    char **tokens;         /* [n_tokens] NUL-terminated UTF-8 */
    int32_t *types;        /* [n_tokens] TK_* */
    int64_t n_merges;
    char **merges;         /* [n_merges] "a b", by rank */
    int32_t bos_id, eos_id, pad_id;   /* -1 when absent */
    bool add_bos, add_eos;
    bool has_add_sep, add_sep;   /* tokenizer.ggml.add_sep_token, written only when has_add_sep */
    char *chat_template;   /* NULL when absent */
    char model[16];        /* "gpt2" */
    char pre[32];          /* tokenizer.ggml.pre: "deepseek-v3", "deepseek-r1-qwen", "llama-bpe", "qwen2", "kimi-k2" */
} tk_vocab;

/* Loads from PATH: an HF model dir (tokenizer.json, or tiktoken.model when there is no
 * tokenizer.json, sized by config.json's vocab_size; optional tokenizer_config.json), a
 * tokenizer.json file (its sibling tokenizer_config.json is read when present) or a .gguf. */
qx_status tk_load(const char *path, tk_tok **out, qx_err *e);
/* Builds from memory: tokenizer.json text and optional tokenizer_config.json text (NULL).
 * label names the source in error messages. */
qx_status tk_from_json(const char *tok_json, size_t tok_len, const char *cfg_json, size_t cfg_len,
                            const char *label, tk_tok **out, qx_err *e);
/* tiktoken vocabularies (Kimi-K2; tok/tok_tiktoken.c): `tiktoken.model` text (one "<base64>
 * <rank>" per line) and optional tokenizer_config.json text into the GGUF vocabulary llama.cpp's
 * converter writes (tokens byte-mapped, merges recovered by BPE-splitting each token, ids
 * [n_ranks, n_ranks+256) CONTROL specials, other gaps "[PAD{i}]" UNUSED, pre "kimi-k2").
 * vocab_size 0: n_ranks + 256.  A malformed line is QX_EFORMAT naming its number.  Free v with
 * tk_vocab_free.  tk_from_tiktoken builds the tokenizer from the same inputs. */
qx_status tk_vocab_from_tiktoken(const char *model, size_t len, const char *cfg_json, size_t cfg_len, int64_t vocab_size,
                                 const char *label, tk_vocab *v, qx_err *e);
qx_status tk_from_tiktoken(const char *model, size_t len, const char *cfg_json, size_t cfg_len, int64_t vocab_size,
                           const char *label, tk_tok **out, qx_err *e);
/* Builds from a GGUF-form vocabulary (v is only read during the call). */
qx_status tk_from_vocab(const tk_vocab *v, const char *label, tk_tok **out, qx_err *e);
/* Builds from an open GGUF file's tokenizer.ggml.* keys (g is only read during the call). */
qx_status tk_from_gguf(const gf_file *g, tk_tok **out, qx_err *e);
void tk_free(tk_tok *t);   /* accepts NULL */

/* Encodes UTF-8 text (invalid UTF-8 is QX_EINVAL).  Added/special tokens written in the text
 * are matched first; BOS is prepended when add_bos and the tokenizer has one.  *ids is
 * malloc'd (free with free()), *n_ids its length. */
qx_status tk_encode(const tk_tok *t, const char *text, size_t len, bool add_bos,
                         int32_t **ids, size_t *n_ids, qx_err *e);
/* Decodes ids to bytes (may be partial UTF-8 for partial sequences); *out is malloc'd and
 * NUL-terminated, free with free().  Ids out of range are QX_EINVAL. */
qx_status tk_decode(const tk_tok *t, const int32_t *ids, size_t n_ids, char **out,
                         size_t *out_len, qx_err *e);
/* Pre-tokenizer only (no BPE): number of pieces the text splits into (for benchmarks/tests). */
qx_status tk_count_pieces(const tk_tok *t, const char *text, size_t len, size_t *n_pieces,
                               qx_err *e);

int32_t tk_n_vocab(const tk_tok *t);          /* highest id + 1 */
/* Raw bytes of token id (not NUL-terminated), NULL for an id with no token. */
const char *tk_bytes(const tk_tok *t, int32_t id, size_t *len);
bool tk_is_special(const tk_tok *t, int32_t id);   /* added token matched before splitting */
int32_t tk_bos(const tk_tok *t);              /* -1 when none */
int32_t tk_eos(const tk_tok *t);
bool tk_adds_bos(const tk_tok *t);            /* add_bos_token of the config */
const char *tk_pre(const tk_tok *t);          /* GGUF pre name, "" when unknown */

/* Fills v for the converter.  vocab_size: pad with "[PAD{i}]" (type UNUSED) up to this size
 * (0: no padding; smaller than tk_n_vocab is QX_ESHAPE).  arch (NULL allowed, e.g.
 * "deepseek2", "llama", "qwen2") only breaks ties when the content does not name the family.
 * Free with tk_vocab_free. */
qx_status tk_export(const tk_tok *t, int64_t vocab_size, const char *arch, tk_vocab *v,
                         qx_err *e);
void tk_vocab_free(tk_vocab *v);   /* accepts a zeroed or NULL v */
/* Sets the tokenizer.ggml.* and tokenizer.chat_template keys of v on a GGUF writer. */
qx_status tk_vocab_write(const tk_vocab *v, gf_writer *w, qx_err *e);

#endif
