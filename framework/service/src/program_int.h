/* What the files of the program part (program.c, runner.c, summary.c) share. */
#ifndef TL_PROGRAM_INT_H
#define TL_PROGRAM_INT_H

#include <stddef.h>
#include <taskloop/program.h>

/* One progress line: counters and the rate at which messages settle. */
void tl__progress_line(const tl_service_stats *st, double rate, int64_t elapsed_ms, char *buf,
                       size_t cap);

#endif
