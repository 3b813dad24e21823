/* kernels/cuda/backend_stub.c — linked instead of the .cu files of kernels/cuda when nvcc is absent at
 * build time: the CUDA backend then only reports that it is missing. */
#include "../kernels.h"

qx_status kn_cuda_backend_open(kn_backend **out, qx_err *e);
void kn_cuda_backend_close(kn_backend *b);

qx_status kn_cuda_backend_open(kn_backend **out, qx_err *e) {
    *out = NULL;
    return qx_fail(e, QX_EUNSUPPORTED, "--device cuda: this build has no CUDA support (nvcc was absent at build time)");
}

void kn_cuda_backend_close(kn_backend *b) { (void)b; }
