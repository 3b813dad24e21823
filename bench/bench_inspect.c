/* bench/bench_inspect.c — planning-scale check: synthesize the full-size sparse 671B
 * checkpoint, then time `qforge inspect` on it (wall seconds and child peak RSS).  Goal:
 * under 10 s and 200 MB.  Baseline in the same run: reading the 163 shard headers' bytes
 * alone (the I/O floor of any inspector). */
#include "common/qx.h"
#include "formats/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    char dir[] = "/tmp/qfbench.XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    qx_err e = {0};
    double t0 = qx_now();
    if (st_synth("v3-671b", dir, 1, true, 0, &e) != QX_OK) { fprintf(stderr, "%s\n", e.msg); return 1; }
    double t_synth = qx_now() - t0;
    /* baseline: read each shard's 8-byte length and header */
    t0 = qx_now();
    uint64_t hdr_bytes = 0;
    for (int i = 1; i <= 163; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/model-%05d-of-000163.safetensors", dir, i);
        FILE *f = fopen(p, "rb");
        if (!f) continue;
        unsigned char b[8];
        if (fread(b, 1, 8, f) == 8) {
            uint64_t n = 0;
            for (int k = 7; k >= 0; k--) n = (n << 8) | b[k];
            char *h = malloc(n);
            if (h && fread(h, 1, n, f) == n) hdr_bytes += n;
            free(h);
        }
        fclose(f);
    }
    double t_read = qx_now() - t0;
    const char *bin = getenv("QF_BIN") ? getenv("QF_BIN") : "./qforge";
    t0 = qx_now();
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout)) _exit(127);
        execl(bin, bin, "inspect", dir, "--json", (char *)NULL);
        _exit(127);
    }
    int st;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    double t_insp = qx_now() - t0;
    printf("v3-671b sparse: synth %.2f s; headers %.1f MB read in %.3f s (baseline)\n", t_synth, hdr_bytes / 1e6, t_read);
    printf("qforge inspect: %.2f s wall (%.1fx the header-read baseline), peak RSS %.1f MB, exit %d  [goal: < 10 s, < 200 MB]\n",
           t_insp, t_insp / (t_read > 0 ? t_read : 1e-9), ru.ru_maxrss / 1024.0, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return 0;
}
