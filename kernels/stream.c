/* kernels/stream.c — the backend-agnostic layer streaming plan (kernels.h) and its CPU
 * executor.  The CUDA executor (kernels/cuda/backend.cu) runs the same plan with a copy
 * stream, the compute stream, events and pinned staging buffers. */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

static bool put(kn_stream_step *s, int64_t cap, int64_t *n, kn_step_op op, int layer, int slot) {
    if (*n >= cap) return false;
    s[*n].op = op; s[*n].layer = layer; s[*n].slot = slot;
    (*n)++;
    return true;
}

/* All slots are filled first.  After layer L's compute is queued, the slot of layer
 * q = L + 1 - n_slots (done before L's compute started, for n_slots >= 2) is refilled with
 * layer q + n_slots: the host's (possibly blocking) staging of that copy then runs while
 * the GPU already has layer L queued, and the copy itself waits only for layer q. */
int64_t kn_stream_plan(int n_layers, int n_slots, kn_stream_step *steps, int64_t cap) {
    if (n_layers < 0 || n_slots < 1 || cap < 0) return -1;
    int64_t n = 0;
    for (int L = 0; L < n_layers && L < n_slots; L++)
        if (!put(steps, cap, &n, KN_STEP_COPY, L, L % n_slots)) return -1;
    for (int L = 0; L < n_layers; L++) {
        int s = L % n_slots;
        if (!put(steps, cap, &n, KN_STEP_WAIT_COPY, L, s) || !put(steps, cap, &n, KN_STEP_COMPUTE, L, s) ||
            !put(steps, cap, &n, KN_STEP_RECORD_DONE, L, s)) return -1;
        int q = L + 1 - n_slots;
        if (q >= 0 && q + n_slots < n_layers) {
            int qs = q % n_slots;
            if (!put(steps, cap, &n, KN_STEP_WAIT_DONE, q, qs) || !put(steps, cap, &n, KN_STEP_COPY, q + n_slots, qs))
                return -1;
        }
    }
    return n;
}

qx_status kn_stream_run(const kn_stream_step *steps, int64_t n, const kn_stream_ops *ops, qx_err *e) {
    for (int64_t i = 0; i < n; i++) {
        unsigned op = (unsigned)steps[i].op;
        if (op >= 5) return qx_fail(e, QX_EINVAL, "stream plan: step %lld has op %u", (long long)i, op);
        if (ops->step[op]) QX_TRY(ops->step[op](ops->ud, steps[i].layer, steps[i].slot, e));
    }
    return QX_OK;
}

typedef struct {
    const void *const *src;
    const size_t *bytes;
    void **slot;
    kn_layer_fn compute;
    void *ud;
} host_exec;

static qx_status host_copy(void *ud, int layer, int slot, qx_err *e) {
    host_exec *h = ud;
    (void)e;
    if (h->bytes[layer]) memcpy(h->slot[slot], h->src[layer], h->bytes[layer]);
    return QX_OK;
}

static qx_status host_compute(void *ud, int layer, int slot, qx_err *e) {
    host_exec *h = ud;
    return h->compute(h->ud, layer, h->slot[slot], e);
}

qx_status kn_stream_layers_host(int n_layers, int n_slots, const void *const *layer_src,
                                const size_t *layer_bytes, kn_layer_fn compute, void *ud, qx_err *e) {
    if (n_layers < 0 || n_slots < 1)
        return qx_fail(e, QX_EINVAL, "stream: %d layers through %d slots", n_layers, n_slots);
    size_t maxb = 1;
    for (int L = 0; L < n_layers; L++) if (layer_bytes[L] > maxb) maxb = layer_bytes[L];
    int64_t cap = 5 * (int64_t)n_layers + 1;
    kn_stream_step *steps = malloc((size_t)cap * sizeof *steps);
    void **slot = calloc((size_t)n_slots, sizeof *slot);
    qx_status s = QX_OK;
    if (!steps || !slot) { s = qx_fail(e, QX_ENOMEM, "stream: out of memory"); goto done; }
    for (int i = 0; i < n_slots; i++)
        if (!(slot[i] = malloc(maxb))) { s = qx_fail(e, QX_ENOMEM, "stream: out of memory for a %zu-byte slot", maxb); goto done; }
    int64_t n = kn_stream_plan(n_layers, n_slots, steps, cap);
    if (n < 0) { s = qx_fail(e, QX_EINVAL, "stream: plan does not fit"); goto done; }
    host_exec h = { layer_src, layer_bytes, slot, compute, ud };
    kn_stream_ops ops = { &h, { host_copy, NULL, host_compute, NULL, NULL } };
    s = kn_stream_run(steps, n, &ops, e);
done:
    if (slot) for (int i = 0; i < n_slots; i++) free(slot[i]);
    free(slot); free(steps);
    return s;
}
