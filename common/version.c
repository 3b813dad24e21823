/* common/version.c — the build's version string (qx.h).  The Makefile compiles this one file
 * with -DQF_VERSION="..." and rebuilds it when the version changes; a build without the
 * define (another build system, the fuzz build) says "unknown". */
#include "qx.h"

#ifndef QF_VERSION
#define QF_VERSION "unknown"
#endif

const char *qx_version(void) { return QF_VERSION; }
