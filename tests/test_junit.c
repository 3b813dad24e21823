/* tests/test_junit.c — `qforge ppl --junit FILE`: the CI gate as JUnit XML.  On a synthetic
 * tiny-v3 (base = the FP8 checkpoint, build = its Q2_K conversion): one test case per
 * threshold given plus `finite`; a crossed threshold gives exit 3 and a <failure> carrying the
 * measured value and the limit; the counts in <testsuites>/<testsuite> match the cases; a run
 * that cannot start leaves an <error> case; special characters in paths are escaped.  The XML
 * is parsed by python3's xml.etree when python3 exists (else checked by text).  Needs no
 * ../shared. */
#include "tests/util/tu.h"
#include "formats/formats.h"

#include <sys/stat.h>
#include <unistd.h>

static char tmp[1024];

/* Checks path: well-formed, `tests` and `failures`/`errors` on both levels, and for every
 * name in cases ("name:pass|fail|error") a testcase with that outcome. */
static void check_xml(const char *path, int tests, int failures, int errors, const char *cases, const char *what) {
    char *txt = NULL;
    size_t n = 0;
    txt = tu_read_file(path, &n);
    TU_CHECK(txt != NULL, "%s: no JUnit file %s", what, path);
    if (!txt) return;
    char want[160];
    snprintf(want, sizeof want, "tests=\"%d\" failures=\"%d\" errors=\"%d\"", tests, failures, errors);
    /* both the <testsuites> and the <testsuite> carry the counts */
    const char *a = strstr(txt, want), *b = a ? strstr(a + 1, want) : NULL;
    TU_CHECK(a && b, "%s: counts '%s' not on both levels:\n%s", what, want, txt);
    free(txt);
    if (tu_system("command -v python3 > /dev/null 2>&1") != 0) return;
    TU_CHECK(tu_system("python3 - '%s' '%d' '%d' '%d' '%s' <<'EOF'\n"
                       "import sys, xml.etree.ElementTree as ET\n"
                       "p, t, f, e, cases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]\n"
                       "root = ET.parse(p).getroot()\n"
                       "assert root.tag == 'testsuites', root.tag\n"
                       "suites = root.findall('testsuite')\n"
                       "assert len(suites) == 1\n"
                       "s = suites[0]\n"
                       "for k in ('name', 'tests', 'failures', 'errors', 'skipped', 'time', 'timestamp', 'hostname'):\n"
                       "    assert k in s.attrib, k\n"
                       "tc = s.findall('testcase')\n"
                       "assert len(tc) == t == int(s.get('tests')) == int(root.get('tests')), (len(tc), t)\n"
                       "nf = sum(1 for c in tc if c.find('failure') is not None)\n"
                       "ne = sum(1 for c in tc if c.find('error') is not None)\n"
                       "assert nf == f == int(s.get('failures')) and ne == e == int(s.get('errors')), (nf, ne)\n"
                       "for c in tc:\n"
                       "    assert c.get('name') and c.get('classname') and c.get('time') is not None\n"
                       "    for el in list(c.findall('failure')) + list(c.findall('error')):\n"
                       "        assert el.get('message') and el.get('type'), el.attrib\n"
                       "    if c.find('failure') is not None:\n"
                       "        txt = c.find('failure').text\n"
                       "        assert 'measured' in txt and 'limit' in txt, txt\n"
                       "got = {c.get('name'): ('fail' if c.find('failure') is not None else 'error' if c.find('error') is not None else 'pass') for c in tc}\n"
                       "for item in cases.split(','):\n"
                       "    name, out = item.split(':')\n"
                       "    assert got.get(name) == out, (name, got)\n"
                       "EOF",
                       path, tests, failures, errors, cases) == 0,
             "%s: %s does not parse as JUnit with the expected cases (%s)", what, path, cases);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", tu_tmpdir());
    char dir[1100], build[1100], base[1100], text[1100], kld[1100], xml[1200];
    qx_err e;
    /* a '&' in the directory name: the XML must escape it */
    snprintf(dir, sizeof dir, "%s/tiny&v3", tmp);
    TU_OK(st_synth("tiny-v3", dir, 5, false, 0, &e), &e);
    snprintf(build, sizeof build, "%s/q2.gguf", tmp);
    snprintf(base, sizeof base, "%s/base.qfb", tmp);
    snprintf(text, sizeof text, "%s/text.txt", tmp);
    snprintf(kld, sizeof kld, "%s/q2.kld", tmp);
    FILE *f = fopen(text, "w");
    for (int i = 0; f && i < 80; i++) fprintf(f, "a small cat sat on %d mats, and the dog ran after it. ", i);
    if (f) fclose(f);
    const char *Q = tu_qforge(), *common = "--ctx 64 --chunks 4 -t 1";
    TU_CHECK(tu_system("%s convert '%s' -o '%s' --type Q2_K --quiet > /dev/null 2>&1", Q, dir, build) == 0, "convert");
    TU_CHECK(tu_system("%s ppl '%s' --text '%s' %s --save-base '%s' > /dev/null 2>&1", Q, dir, text, common, base) == 0, "base");

    /* all thresholds pass: exit 0, four passed cases */
    snprintf(xml, sizeof xml, "%s/pass.xml", tmp);
    int rc = tu_system("%s ppl '%s' --text '%s' %s --base '%s' --max-kld 100 --max-ppl-ratio 100 --min-top1 0 --save-kld '%s' --junit '%s' > /dev/null 2>&1",
                       Q, build, text, common, base, kld, xml);
    TU_CHECK(rc == 0, "passing gate: exit %d", rc);
    check_xml(xml, 4, 0, 0, "finite:pass,max-kld:pass,max-ppl-ratio:pass,min-top1:pass", "passing gate");
    TU_CHECK(access(xml, F_OK) == 0 && tu_system("test ! -e '%s.part'", xml) == 0, "JUnit .part left behind");

    /* two thresholds crossed: exit 3, two failures with measured value and limit */
    snprintf(xml, sizeof xml, "%s/fail.xml", tmp);
    rc = tu_system("%s ppl '%s' --text '%s' %s --base '%s' --max-kld 0.0000001 --max-ppl-ratio 100 --min-top1 1 --junit '%s' > '%s/fail.out' 2>&1",
                   Q, build, text, common, base, xml, tmp);
    TU_CHECK(rc == 3, "failing gate: exit %d, want 3", rc);
    check_xml(xml, 4, 2, 0, "finite:pass,max-kld:fail,max-ppl-ratio:pass,min-top1:fail", "failing gate");
    TU_CHECK(tu_system("grep -q 'limit 1e-07' '%s' && grep -q 'FAIL: mean KLD' '%s/fail.out' && grep -q 'FAIL: same-top-1' '%s/fail.out'",
                       xml, tmp, tmp) == 0, "failure message lacks the limit, or stdout lacks a FAIL line");
    TU_CHECK(tu_system("grep -q 'tiny&amp;v3' '%s' || grep -q 'q2.gguf' '%s'", xml, xml) == 0, "model property missing");

    /* release-to-release gate: --vs-kld against itself, delta 0 passes a 0 limit */
    snprintf(xml, sizeof xml, "%s/delta.xml", tmp);
    rc = tu_system("%s ppl '%s' --text '%s' %s --base '%s' --vs-kld '%s' --max-kld-delta 0 --junit '%s' > /dev/null 2>&1",
                   Q, build, text, common, base, kld, xml);
    TU_CHECK(rc == 0, "delta gate against itself: exit %d", rc);
    check_xml(xml, 2, 0, 0, "finite:pass,max-kld-delta:pass", "delta gate");
    /* a negative limit cannot be met by an identical build */
    rc = tu_system("%s ppl '%s' --text '%s' %s --base '%s' --vs-kld '%s' --max-kld-delta -0.001 --junit '%s' > /dev/null 2>&1",
                   Q, build, text, common, base, kld, xml);
    TU_CHECK(rc == 3, "negative delta limit: exit %d, want 3", rc);
    check_xml(xml, 2, 1, 0, "finite:pass,max-kld-delta:fail", "delta gate crossed");

    /* the HF dir (escaped '&' in the model property) against its own base, no thresholds */
    snprintf(xml, sizeof xml, "%s/self.xml", tmp);
    rc = tu_system("%s ppl '%s' --text '%s' %s --base '%s' --junit '%s' > /dev/null 2>&1", Q, dir, text, common, base, xml);
    TU_CHECK(rc == 0, "self: exit %d", rc);
    check_xml(xml, 1, 0, 0, "finite:pass", "self");
    TU_CHECK(tu_system("grep -q 'tiny&amp;v3' '%s'", xml) == 0, "'&' not escaped in %s", xml);

    /* a run that cannot start: an <error> case, the command's own exit code */
    snprintf(xml, sizeof xml, "%s/err.xml", tmp);
    rc = tu_system("%s ppl '%s/missing.gguf' --text '%s' %s --junit '%s' > /dev/null 2>&1", Q, tmp, text, common, xml);
    TU_CHECK(rc == 1, "missing model: exit %d", rc);
    check_xml(xml, 1, 0, 1, "evaluate:error", "missing model");
    return tu_done("test_junit");
}
