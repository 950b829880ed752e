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

/* GGUF files and prefix BLOBs are little-endian and read in place: a big-endian host is refused with a
** clear error instead of computing with byte-swapped numbers. pf_test_big_endian lets a test take that path. */
int pf_test_big_endian;
int pf_host_little_endian(void) {
  const uint16_t one = 1;
  return !pf_test_big_endian && *(const uint8_t *)&one == 1;
}
