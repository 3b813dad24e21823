/* cli/junit.c — JUnit XML for CI servers (GitLab, Jenkins, GitHub test reporters): one
 * <testsuites> holding one <testsuite> of test cases, each passed, failed (<failure> with
 * the measured value and the limit) or in error (<error>: the check could not run).  The
 * layout follows the JUnit schema the Jenkins/Ant reporters use (testsuite: name, tests,
 * failures, errors, skipped, time, timestamp, hostname, properties, testcase*, system-out;
 * testcase: name, classname, time).  Written to FILE.part, renamed when complete. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Writes s with XML's five entities escaped; control bytes other than tab/newline become '?'
 * (XML 1.0 cannot carry them). */
static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if (c < 0x20 && c != '\t' && c != '\n') fputc('?', f);
            else fputc((int)c, f);
        }
    }
}

int cli_junit_write(const char *path, const char *suite, const char *classname, double seconds,
                    const char *const *props, size_t n_props, const cli_junit_case *cases, size_t n,
                    const char *system_out) {
    char part[4200];
    if (snprintf(part, sizeof part, "%s.part", path) >= (int)sizeof part) {
        fprintf(stderr, "qforge: error: %s: path too long\n", path);
        return 1;
    }
    FILE *f = fopen(part, "w");
    if (!f) { fprintf(stderr, "qforge: error: cannot write %s: %s\n", part, strerror(errno)); return 1; }
    size_t fails = 0, errors = 0;
    for (size_t i = 0; i < n; i++) { fails += cases[i].outcome == CLI_JUNIT_FAIL; errors += cases[i].outcome == CLI_JUNIT_ERROR; }
    char ts[32] = "1970-01-01T00:00:00", host[256] = "localhost";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tmv);
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"");
    xml_text(f, suite);
    fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" time=\"%.3f\">\n", n, fails, errors, seconds);
    fprintf(f, "  <testsuite name=\"");
    xml_text(f, suite);
    fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"0\" time=\"%.3f\" timestamp=\"%s\" hostname=\"",
            n, fails, errors, seconds, ts);
    xml_text(f, host);
    fprintf(f, "\">\n");
    if (n_props) {
        fprintf(f, "    <properties>\n");
        for (size_t i = 0; i < n_props; i++) {
            fprintf(f, "      <property name=\"");
            xml_text(f, props[2 * i]);
            fprintf(f, "\" value=\"");
            xml_text(f, props[2 * i + 1]);
            fprintf(f, "\"/>\n");
        }
        fprintf(f, "    </properties>\n");
    }
    for (size_t i = 0; i < n; i++) {
        const cli_junit_case *c = &cases[i];
        fprintf(f, "    <testcase name=\"");
        xml_text(f, c->name);
        fprintf(f, "\" classname=\"");
        xml_text(f, classname);
        fprintf(f, "\" time=\"0\"");
        if (c->outcome == CLI_JUNIT_PASS) { fprintf(f, "/>\n"); continue; }
        const char *el = c->outcome == CLI_JUNIT_FAIL ? "failure" : "error";
        fprintf(f, ">\n      <%s message=\"", el);
        xml_text(f, c->message);
        fprintf(f, "\" type=\"%s\">", c->outcome == CLI_JUNIT_FAIL ? "threshold" : "error");
        xml_text(f, c->detail[0] ? c->detail : c->message);
        fprintf(f, "</%s>\n    </testcase>\n", el);
    }
    if (system_out) {
        fprintf(f, "    <system-out>");
        xml_text(f, system_out);
        fprintf(f, "</system-out>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) { fprintf(stderr, "qforge: error: writing %s failed\n", part); unlink(part); return 1; }
    if (rename(part, path) != 0) { fprintf(stderr, "qforge: error: rename %s -> %s: %s\n", part, path, strerror(errno)); return 1; }
    return 0;
}
