/* tests/test_lock.c — one writer per output (common/lock.c, issue 21 item 6).
 * Library level: a held lock refuses a second taker with QX_EBUSY naming the path and the
 * holder; release removes the sidecar; a sidecar left by a dead run is taken over; a process
 * killed with -9 frees its lock; a missing directory is QX_ENOTFOUND.
 * Command level on a synthetic tiny-v3: for every writing command (convert, convert --resume,
 * convert --dry-run --skeleton, a split set, quantize, imatrix, sensitivity, card, report) the
 * test holds the output's lock itself, runs the command on that output and checks exit 1, a
 * message naming the output and this process as holder, the existing output byte for byte
 * unchanged (and `verify` ok) and no .part left; `convert --dry-run` without --skeleton writes
 * nothing and is not refused.  Then one real two-process race: a first convert (Q4_K_M) is held
 * mid-run by a FIFO tokenizer.json, a second (Q2_K) to the same OUT is refused, and the first
 * completes with a Q4_K_M file that verifies.  Needs no ../shared. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[1024];

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* True when file at path contains needle. */
static bool file_has(const char *path, const char *needle) {
    size_t n;
    char *t = tu_read_file(path, &n);
    if (!t) return false;
    char *z = realloc(t, n + 1);
    if (!z) { free(t); return false; }
    z[n] = 0;
    bool ok = strstr(z, needle) != NULL;
    free(z);
    return ok;
}

static void test_library(void) {
    char p[1200], lp[1300], pid[32], bad[1300];
    qx_err e;
    qx_lock a, b;
    snprintf(p, sizeof p, "%s/lib.gguf", tmp);
    snprintf(lp, sizeof lp, "%s.lock", p);
    snprintf(pid, sizeof pid, "pid %ld ", (long)getpid());

    TU_OK(qx_lock_acquire(&a, p, "holder-one --type Q4_K_M", &e), &e);
    TU_CHECK(file_has(lp, pid) && file_has(lp, "holder-one --type Q4_K_M"), "sidecar %s lacks '%s' and the holder text", lp, pid);
    TU_FAILS(qx_lock_acquire(&b, p, "holder-two", &e), &e, QX_EBUSY, p);
    TU_CHECK(strstr(e.msg, lp) && strstr(e.msg, pid) && strstr(e.msg, "holder-one"), "refusal does not name lock and holder: %s", e.msg);
    TU_CHECK(b.fd == -1 && b.path == NULL, "a refused lock holds something");
    qx_lock_release(&b);   /* no-op after a refusal */
    qx_lock_release(&a);
    TU_CHECK(!exists(lp), "release left %s", lp);
    qx_lock_release(&a);   /* twice: no-op */

    /* a sidecar left by a killed run (no flock on it) is taken over */
    TU_CHECK(tu_write_file(lp, "pid 1 on gone since 2000-01-01T00:00:00Z: dead\n", 46) == 0, "write %s", lp);
    TU_OK(qx_lock_acquire(&a, p, "taker", &e), &e);
    TU_CHECK(file_has(lp, pid) && !file_has(lp, "dead"), "stale sidecar not rewritten");
    qx_lock_release(&a);

    /* the lock dies with its holder: a child takes it and is killed with -9 */
    int go[2], ready[2];
    TU_CHECK(pipe(go) == 0 && pipe(ready) == 0, "pipe");
    pid_t c = fork();
    if (c == 0) {
        qx_lock l;
        qx_err ce;
        char r = qx_lock_acquire(&l, p, "child", &ce) == QX_OK ? 'y' : 'n';
        if (write(ready[1], &r, 1) != 1) _exit(2);
        char x;
        if (read(go[0], &x, 1) < 0) _exit(2);   /* blocks until killed */
        _exit(0);
    }
    char r = 0;
    TU_CHECK(c > 0 && read(ready[0], &r, 1) == 1 && r == 'y', "child could not take the lock");
    char cpid[32];
    snprintf(cpid, sizeof cpid, "pid %ld ", (long)c);
    TU_FAILS(qx_lock_acquire(&b, p, "parent", &e), &e, QX_EBUSY, cpid);
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    TU_CHECK(exists(lp), "the killed child's sidecar vanished (test premise)");
    TU_OK(qx_lock_acquire(&b, p, "parent", &e), &e);
    qx_lock_release(&b);
    close(go[0]); close(go[1]); close(ready[0]); close(ready[1]);

    snprintf(bad, sizeof bad, "%s/no-such-dir/x.gguf", tmp);
    TU_FAILS(qx_lock_acquire(&a, bad, NULL, &e), &e, QX_ENOTFOUND, "no-such-dir/x.gguf.lock");
}

/* Holds out's lock, runs `cmd` (a qforge command line writing out), and checks: exit status 1,
 * stderr names out and this process as holder; each of keep[] (existing outputs, NULL-ended)
 * byte for byte as before and no keep[i].part; the lock's sidecar gone after release. */
static void refused(const char *what, const char *out, const char *cmd, const char *const *keep) {
    char log[1200], pid[32], saved[1300];
    qx_err e;
    qx_lock l;
    snprintf(log, sizeof log, "%s/refused.log", tmp);
    snprintf(pid, sizeof pid, "pid %ld ", (long)getpid());
    for (int k = 0; keep[k]; k++) {
        snprintf(saved, sizeof saved, "%s/saved.%d", tmp, k);
        TU_CHECK(tu_system("cp '%s' '%s'", keep[k], saved) == 0, "%s: no first output %s to keep", what, keep[k]);
    }
    TU_OK(qx_lock_acquire(&l, out, "test_lock", &e), &e);
    int rc = tu_system("timeout 120 %s > '%s' 2>&1", cmd, log);
    qx_lock_release(&l);
    TU_CHECK(rc == 1, "%s: exit %d while the lock is held, want 1", what, rc);
    TU_CHECK(file_has(log, out) && file_has(log, pid) && file_has(log, "test_lock"), "%s: the refusal does not name %s and the holder",
             what, out);
    size_t lines = 0, n;
    char *t = tu_read_file(log, &n);
    for (size_t i = 0; t && i < n; i++) lines += t[i] == '\n';
    free(t);
    TU_CHECK(lines == 1, "%s: %zu lines on stderr, want one", what, lines);
    for (int k = 0; keep[k]; k++) {
        snprintf(saved, sizeof saved, "%s/saved.%d", tmp, k);
        TU_CHECK(tu_system("cmp -s '%s' '%s'", keep[k], saved) == 0, "%s: %s changed under the lock", what, keep[k]);
        char part[1300];
        snprintf(part, sizeof part, "%s.part", keep[k]);
        TU_CHECK(!exists(part), "%s: %s created", what, part);
    }
}

static void test_commands(const char *dir, const char *text) {
    const char *Q = tu_qforge();
    char c[1100], f16[1100], q[1100], im[1100], sens[1100], card[1100], rep[1100], sp[1100], cmd[4096];
    snprintf(c, sizeof c, "%s/c.gguf", tmp);
    snprintf(f16, sizeof f16, "%s/f16.gguf", tmp);
    snprintf(q, sizeof q, "%s/q.gguf", tmp);
    snprintf(im, sizeof im, "%s/im.gguf", tmp);
    snprintf(sens, sizeof sens, "%s/s.json", tmp);
    snprintf(card, sizeof card, "%s/card.md", tmp);
    snprintf(rep, sizeof rep, "%s/report.html", tmp);
    snprintf(sp, sizeof sp, "%s/set.gguf", tmp);

    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 > /dev/null 2>&1", Q, dir, c) == 0, "first convert");
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --type Q2_K --quiet -t 2", Q, dir, c);
    refused("convert", c, cmd, (const char *const[]){c, NULL});
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 --resume", Q, dir, c);
    refused("convert --resume", c, cmd, (const char *const[]){c, NULL});
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --type Q2_K --dry-run --skeleton --quiet", Q, dir, c);
    refused("convert --skeleton", c, cmd, (const char *const[]){c, NULL});
    TU_CHECK(tu_system("%s verify '%s' > /dev/null 2>&1", Q, c) == 0, "verify after the refusals");
    {   /* a dry run writes nothing: not refused */
        qx_err e;
        qx_lock l;
        TU_OK(qx_lock_acquire(&l, c, "test_lock", &e), &e);
        TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q2_K --dry-run --quiet > /dev/null 2>&1", Q, dir, c) == 0,
                 "convert --dry-run refused while OUT is locked");
        qx_lock_release(&l);
    }

    char s1[1200], s2[1200];
    snprintf(s1, sizeof s1, "%s/set-00001-of-00003.gguf", tmp);
    snprintf(s2, sizeof s2, "%s/set-00003-of-00003.gguf", tmp);
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q4_K_M --split-max-tensors 25 --quiet -t 2 > /dev/null 2>&1", Q, dir, sp) == 0 &&
             exists(s1) && exists(s2), "first split convert (want 3 files)");
    snprintf(cmd, sizeof cmd, "%s convert '%s' -o '%s' --type Q2_K --split-max-tensors 25 --quiet -t 2", Q, dir, sp);
    refused("split set", sp, cmd, (const char *const[]){s1, s2, NULL});
    TU_CHECK(tu_system("%s verify '%s' > /dev/null 2>&1", Q, s1) == 0, "verify of the set after the refusal");

    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type F16 --quiet -t 2 > /dev/null 2>&1 && "
                       "%s quantize '%s' '%s' Q4_K_M --quiet -t 2 > /dev/null 2>&1", Q, dir, f16, Q, f16, q) == 0, "first quantize");
    snprintf(cmd, sizeof cmd, "%s quantize '%s' '%s' Q2_K --quiet -t 2", Q, f16, q);
    refused("quantize", q, cmd, (const char *const[]){q, NULL});
    TU_CHECK(tu_system("%s verify '%s' > /dev/null 2>&1", Q, q) == 0, "verify of quantize's output after the refusal");

    TU_CHECK(tu_system("%s imatrix '%s' --text '%s' --ctx 64 --chunks 2 -t 2 -o '%s' > /dev/null 2>&1", Q, f16, text, im) == 0, "first imatrix");
    snprintf(cmd, sizeof cmd, "%s imatrix '%s' --text '%s' --ctx 32 --chunks 1 -t 2 -o '%s'", Q, f16, text, im);
    refused("imatrix", im, cmd, (const char *const[]){im, NULL});

    /* sensitivity, card and report: an existing file the refused writer must leave alone */
    TU_CHECK(tu_write_file(sens, "{\"first\": 1}\n", 13) == 0, "write %s", sens);
    snprintf(cmd, sizeof cmd, "%s sensitivity '%s' --text '%s' --ctx 32 --chunks 1 --measure 1 -t 2 -o '%s'", Q, f16, text, sens);
    refused("sensitivity", sens, cmd, (const char *const[]){sens, NULL});
    TU_CHECK(tu_system("%s card '%s' -o '%s' > /dev/null 2>&1", Q, c, card) == 0, "first card");
    snprintf(cmd, sizeof cmd, "%s card '%s' -o '%s'", Q, q, card);
    refused("card", card, cmd, (const char *const[]){card, NULL});
    TU_CHECK(tu_write_file(rep, "<html>first</html>\n", 19) == 0, "write %s", rep);
    snprintf(cmd, sizeof cmd, "%s report '%s' -o '%s'", Q, sens, rep);
    refused("report", rep, cmd, (const char *const[]){rep, NULL});
}

/* Counts of tensors of type t in a GGUF, -1 when it does not open. */
static int count_type(const char *path, qt_type t) {
    gf_file *f;
    qx_err e;
    if (gf_open(&f, path, &e) != QX_OK) return -1;
    int n = 0;
    for (size_t i = 0; i < gf_tensor_count(f); i++) n += gf_tensor_at(f, i)->type == t;
    gf_close(f);
    return n;
}

/* Two real processes: the first holds its lock while it blocks reading a FIFO tokenizer.json. */
static void test_race(const char *dir) {
    const char *Q = tu_qforge();
    char m[1100], out[1100], lock[1200], alog[1100], arc[1100], blog[1100];
    snprintf(m, sizeof m, "%s/race-model", tmp);
    snprintf(out, sizeof out, "%s/race.gguf", tmp);
    snprintf(lock, sizeof lock, "%s.lock", out);
    snprintf(alog, sizeof alog, "%s/a.log", tmp);
    snprintf(arc, sizeof arc, "%s/a.rc", tmp);
    snprintf(blog, sizeof blog, "%s/b.log", tmp);
    TU_CHECK(tu_system("mkdir '%s' && for f in '%s'/*; do ln -s \"$f\" '%s'/; done && rm '%s/tokenizer.json' && mkfifo '%s/tokenizer.json'",
                       m, dir, m, m, m) == 0, "race model dir");
    TU_CHECK(tu_system("( timeout 120 %s convert '%s' -o '%s' --type Q4_K_M --quiet -t 2 > '%s' 2>&1; echo $? > '%s' ) > /dev/null 2>&1 &",
                       Q, m, out, alog, arc) == 0,
             "start the first writer");
    bool held = false;
    for (int i = 0; i < 2000 && !held; i++) {   /* up to 20 s */
        held = file_has(lock, "--type Q4_K_M");
        if (!held) usleep(10000);
    }
    TU_CHECK(held, "the first writer never took its lock");
    int rc = tu_system("timeout 30 %s convert '%s' -o '%s' --type Q2_K --quiet -t 2 > '%s' 2>&1", Q, m, out, blog);
    TU_CHECK(rc == 1 && file_has(blog, out) && file_has(blog, "--type Q4_K_M"), "second writer: exit %d, want 1 naming %s and the first", rc, out);
    TU_CHECK(tu_system("timeout 30 sh -c \"cat '%s/tokenizer.json' > '%s/tokenizer.json'\"", dir, m) == 0, "feed the FIFO");
    bool done = false;
    for (int i = 0; i < 6000 && !done; i++) {   /* up to 60 s */
        done = exists(arc);
        if (!done) usleep(10000);
    }
    usleep(50000);   /* the rc file is written, let the shell finish it */
    TU_CHECK(done && file_has(arc, "0\n"), "first writer did not finish with exit 0 (log %s)", alog);
    TU_CHECK(tu_system("%s verify '%s' > /dev/null 2>&1", Q, out) == 0, "verify of the first writer's file");
    TU_CHECK(count_type(out, QT_Q4_K) > 0 && count_type(out, QT_Q2_K) == 0, "race.gguf: %d Q4_K and %d Q2_K tensors, want a Q4_K_M build",
             count_type(out, QT_Q4_K), count_type(out, QT_Q2_K));
    TU_CHECK(!exists(lock), "the first writer left %s", lock);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    test_library();
    char dir[1100], text[1100];
    qx_err e;
    snprintf(dir, sizeof dir, "%s/tiny", tmp);
    TU_OK(st_synth("tiny-v3", dir, 7, false, 0, &e), &e);
    snprintf(text, sizeof text, "%s/text.txt", tmp);
    FILE *f = fopen(text, "w");
    for (int i = 0; f && i < 200; i++) fprintf(f, "The quick brown fox %d jumps over the lazy dog; one writer per output. ", i);
    if (f) fclose(f);
    test_commands(dir, text);
    test_race(dir);
    return tu_done("test_lock");
}
