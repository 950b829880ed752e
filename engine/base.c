/*
** base.c — small helpers every part of the engine uses, with no dependency of their own.
*/
#include "internal.h"

#include <time.h>

/* seconds on a monotonic clock */
double pf_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
