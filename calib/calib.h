/* calib/calib.h — the one public header of calib/: the tokenizer (cal_tok_), the
 * layer-major forward engine over weight views of any type (cal_model_, cal_engine_), and its
 * observers: importance matrix, perplexity and KL drift (cal_ppl_, cal_imatrix_). */
#ifndef CALIB_H
#define CALIB_H

#include "../common/qx.h"
#include "../quant/qt.h"
#include "../formats/formats.h"

/* ======================= tokenizer (cal_tok_) — calib/tokenizer.c ======================= */

/* ======================= engine (cal_) — calib/engine*.c ======================= */

#endif
