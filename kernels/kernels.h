/* kernels/kernels.h — the one public header of kernels/: the engine's operations (kn_),
 * each with a plain C reference, an OpenMP/SIMD CPU version (kernels/cpu) and a CUDA twin
 * (kernels/cuda) of the same signature. */
#ifndef KERNELS_H
#define KERNELS_H

#include "../common/qx.h"
#include "../quant/qt.h"

#endif
