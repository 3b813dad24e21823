/* formats/limits.h — every hard limit of the file parsers, with its reason. */
#ifndef FORMATS_LIMITS_H
#define FORMATS_LIMITS_H

/* safetensors: the reference implementation refuses headers above 100 MB; the 671B
 * checkpoint's largest header is ~90 KB. */
#define ST_MAX_HEADER_BYTES (100ull * 1024 * 1024)
/* index.json: 91,991 entries for V3 take ~9 MB. */
#define ST_MAX_INDEX_BYTES (256ull * 1024 * 1024)
/* Shards per checkpoint (V3 has 163). */
#define ST_MAX_SHARDS 100000
/* Tensor name length (HF names are < 100 chars; GGUF allows < 64). */
#define ST_MAX_NAME 512
/* FP8 scale tile edge (DeepSeek weight_block_size). */
#define ST_FP8_BLOCK 128
/* DeepSeek-V4 FP4 (E2M1) weights: columns per E8M0 scale (OCP MX block). */
#define ST_FP4_GROUP 32

/* GGUF: longest string (key, value, array element), as llama.cpp's GGUF_MAX_STRING_LENGTH
 * (1 GiB); anything longer is refused there, so we refuse it too. */
#define GF_MAX_STRING_LEN (1ull << 30)
/* GGUF: largest general.alignment we accept.  llama.cpp only demands a power of two; 1 GiB
 * keeps PAD() far from overflow and is 2^25 times the default. */
#define GF_MAX_ALIGNMENT (1u << 30)
/* imatrix: longest weight name in a legacy .dat (names are GGUF tensor names, < 64 bytes;
 * the margin admits third-party names). */
#define IM_MAX_NAME 4096

#endif
