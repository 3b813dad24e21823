/* tests/test_kn_stream.c — the layer streaming plan (kernels/stream.c) that the CUDA executor
 * runs with two streams and events.  An independent model of an asynchronous device (a
 * copy queue and a compute queue, events set when recorded work completes, every copy and
 * compute split into start and end so they can interleave) executes the plan under many
 * random interleavings and checks that every compute reads exactly its own layer, no copy
 * overwrites a slot whose layer is still to be read or being read, nothing deadlocks, and
 * copies really overlap computes (a greedy schedule keeps a copy in flight during layer
 * L's compute for all but the last layer).  The CPU executor is checked on real bytes. */
#include "tests/util/tu.h"
#include "kernels/kernels.h"

#include <stdint.h>

enum { MAXL = 16, MAXOPS = 8 * MAXL };

typedef enum { Q_COPY_START, Q_COPY_END, Q_WAIT, Q_COMP_START, Q_COMP_END, Q_RECORD } qop;
typedef struct { qop op; int layer, slot; int ev; } qitem;   /* ev: event index for Q_WAIT */

/* events: copied[L] = L, done[L] = MAXL + L */
typedef struct {
    qitem q[2][MAXOPS];
    int n[2], head[2];
    bool ev[2 * MAXL];
    int content[8];        /* slot -> layer, -1 empty, -2 being written */
    int reading[8];        /* slot -> layer being computed, -1 none */
    int copying;           /* copies in flight (0/1) */
    int computing;
    int computed_upto;     /* layers computed so far, in order */
    int errors;
    bool comp_ended[MAXL];
    bool early[MAXL];      /* copy of layer L started before compute L-1 ended */
} sim;

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)rs; }

static void push(sim *s, int qi, qop op, int layer, int slot, int ev) {
    qitem it = { op, layer, slot, ev };
    s->q[qi][s->n[qi]++] = it;
}

static void build(sim *s, const kn_stream_step *st, int64_t n, int n_slots) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 8; i++) { s->content[i] = -1; s->reading[i] = -1; }
    (void)n_slots;
    for (int64_t i = 0; i < n; i++) {
        int L = st[i].layer, sl = st[i].slot;
        switch (st[i].op) {
        case KN_STEP_COPY: push(s, 0, Q_COPY_START, L, sl, 0); push(s, 0, Q_COPY_END, L, sl, 0); break;
        case KN_STEP_WAIT_COPY: push(s, 1, Q_WAIT, L, sl, L); break;
        case KN_STEP_COMPUTE: push(s, 1, Q_COMP_START, L, sl, 0); push(s, 1, Q_COMP_END, L, sl, 0); break;
        case KN_STEP_RECORD_DONE: push(s, 1, Q_RECORD, L, sl, 0); break;
        case KN_STEP_WAIT_DONE: push(s, 0, Q_WAIT, L, sl, MAXL + L); break;
        }
    }
}

static bool ready(const sim *s, int qi) {
    if (s->head[qi] >= s->n[qi]) return false;
    const qitem *it = &s->q[qi][s->head[qi]];
    return it->op != Q_WAIT || s->ev[it->ev];
}

static void advance(sim *s, int qi) {
    const qitem *it = &s->q[qi][s->head[qi]++];
    switch (it->op) {
    case Q_COPY_START:
        if (s->reading[it->slot] >= 0) s->errors++;                       /* overwrite while read */
        if (s->content[it->slot] >= 0 && !s->ev[MAXL + s->content[it->slot]]) s->errors++;   /* not yet read */
        s->content[it->slot] = -2;
        s->copying++;
        if (it->layer >= 1 && !s->comp_ended[it->layer - 1]) s->early[it->layer] = true;
        break;
    case Q_COPY_END:
        s->content[it->slot] = it->layer;
        s->ev[it->layer] = true;
        s->copying--;
        break;
    case Q_WAIT: break;
    case Q_COMP_START:
        if (s->content[it->slot] != it->layer) s->errors++;              /* wrong or torn bytes */
        if (it->layer != s->computed_upto) s->errors++;                  /* out of order */
        s->reading[it->slot] = it->layer;
        s->computing++;
        break;
    case Q_COMP_END:
        if (s->content[it->slot] != it->layer) s->errors++;
        s->reading[it->slot] = -1;
        s->computing--;
        s->computed_upto++;
        s->comp_ended[it->layer] = true;
        break;
    case Q_RECORD: s->ev[MAXL + it->layer] = true; break;
    }
}

/* Runs to the end; greedy: the copy queue whenever it is ready (copies as early as the plan
 * allows), else random. */
static int run(sim *s, bool greedy) {
    for (;;) {
        bool r0 = ready(s, 0), r1 = ready(s, 1);
        if (!r0 && !r1) break;
        if (greedy) {
            advance(s, r0 ? 0 : 1);
        } else if (r0 && r1) {
            advance(s, (int)(rnd() & 1));
        } else {
            advance(s, r0 ? 0 : 1);
        }
    }
    return s->head[0] == s->n[0] && s->head[1] == s->n[1];   /* false: deadlock */
}

static void test_plan_shape(void) {
    kn_stream_step st[5 * MAXL];
    for (int slots = 1; slots <= 3; slots++)
        for (int L = 0; L <= 9; L++) {
            int64_t n = kn_stream_plan(L, slots, st, 5 * MAXL);
            TU_CHECK(n >= 0 && n <= 5 * L, "plan(%d layers, %d slots) = %lld steps", L, slots, (long long)n);
            int copies[MAXL] = {0}, comps = 0, last = -1;
            bool order = true;
            for (int64_t i = 0; i < n; i++) {
                if (st[i].slot != st[i].layer % slots) order = false;
                if (st[i].op == KN_STEP_COPY) copies[st[i].layer]++;
                if (st[i].op == KN_STEP_COMPUTE) { comps++; if (st[i].layer != last + 1) order = false; last = st[i].layer; }
            }
            for (int l = 0; l < L; l++) TU_CHECK(copies[l] == 1, "layer %d copied %d times (%d slots)", l, copies[l], slots);
            TU_CHECK(comps == L && order, "computes in order, slot = layer %% slots (%d layers, %d slots)", L, slots);
        }
    TU_CHECK(kn_stream_plan(-1, 2, st, 10) == -1, "negative layer count refused");
    TU_CHECK(kn_stream_plan(3, 0, st, 10) == -1, "zero slots refused");
    TU_CHECK(kn_stream_plan(9, 2, st, 10) == -1, "too small capacity refused");
}

static void test_interleavings(void) {
    kn_stream_step st[5 * MAXL];
    sim s;
    for (int slots = 1; slots <= 3; slots++)
        for (int L = 1; L <= 12; L++) {
            int64_t n = kn_stream_plan(L, slots, st, 5 * MAXL);
            int bad = 0, dead = 0;
            for (int rep = 0; rep < 300; rep++) {
                build(&s, st, n, slots);
                dead += !run(&s, false);
                bad += s.errors != 0 || s.computed_upto != L;
            }
            TU_CHECK(bad == 0 && dead == 0, "%d layers / %d slots: %d bad and %d deadlocked of 300 random schedules",
                     L, slots, bad, dead);
            build(&s, st, n, slots);
            TU_CHECK(run(&s, true) && s.errors == 0, "greedy schedule completes cleanly (%d layers, %d slots)", L, slots);
            int ov = 0;
            for (int l = 1; l < L; l++) ov += s.early[l];
            if (slots >= 2) TU_CHECK(ov == L - 1, "%d layers, %d slots: %d copies start before the previous compute ends, want %d", L, slots, ov, L - 1);
            else TU_CHECK(ov == 0, "one slot cannot overlap (got %d)", ov);
        }
}

/* A deliberately broken plan (copy of layer 2 into slot 0 without waiting for layer 0's
 * compute) must be caught by the model: the check can fail. */
static void test_model_catches_race(void) {
    kn_stream_step st[] = {
        { KN_STEP_COPY, 0, 0 }, { KN_STEP_COPY, 1, 1 },
        { KN_STEP_WAIT_COPY, 0, 0 }, { KN_STEP_COMPUTE, 0, 0 }, { KN_STEP_RECORD_DONE, 0, 0 },
        { KN_STEP_COPY, 2, 0 },
        { KN_STEP_WAIT_COPY, 1, 1 }, { KN_STEP_COMPUTE, 1, 1 }, { KN_STEP_RECORD_DONE, 1, 1 },
        { KN_STEP_WAIT_COPY, 2, 0 }, { KN_STEP_COMPUTE, 2, 0 }, { KN_STEP_RECORD_DONE, 2, 0 },
    };
    sim s;
    int caught = 0;
    for (int rep = 0; rep < 200; rep++) {
        build(&s, st, (int64_t)(sizeof st / sizeof st[0]), 2);
        run(&s, false);
        caught += s.errors > 0;
    }
    TU_CHECK(caught > 0, "the model never caught the missing WAIT_DONE in 200 schedules");
}

typedef struct { const uint8_t *const *src; const size_t *bytes; int calls, bad; } chk;

static qx_status on_layer(void *ud, int layer, const void *slot, qx_err *e) {
    chk *c = ud;
    (void)e;
    if (layer != c->calls || memcmp(slot, c->src[layer], c->bytes[layer])) c->bad++;
    c->calls++;
    return QX_OK;
}

static void test_host_executor(void) {
    enum { NL = 7 };
    uint8_t *src[NL];
    size_t bytes[NL];
    for (int l = 0; l < NL; l++) {
        bytes[l] = 1000 + (size_t)(rnd() % 5000);
        src[l] = malloc(bytes[l]);
        for (size_t i = 0; i < bytes[l]; i++) src[l][i] = (uint8_t)rnd();
    }
    for (int slots = 1; slots <= 3; slots++) {
        chk c = { (const uint8_t *const *)src, bytes, 0, 0 };
        qx_err e = {0};
        TU_OK(kn_stream_layers_host(NL, slots, (const void *const *)src, bytes, on_layer, &c, &e), &e);
        TU_CHECK(c.calls == NL && c.bad == 0, "host executor, %d slots: %d calls, %d wrong slots", slots, c.calls, c.bad);
    }
    qx_err e = {0};
    TU_FAILS(kn_stream_layers_host(NL, 0, (const void *const *)src, bytes, on_layer, NULL, &e), &e, QX_EINVAL, "slots");
    for (int l = 0; l < NL; l++) free(src[l]);
}

int main(void) {
    test_plan_shape();
    test_interleavings();
    test_model_catches_race();
    test_host_executor();
    return tu_done("test_kn_stream");
}
