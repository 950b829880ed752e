/*
** kernels_avxvnni.c — the AVX-VNNI kernel table (kernels.h): the AVX2 table's kernels compiled again for
** CPUs that also have AVX-VNNI (Intel since the 12th generation and Sapphire Rapids, AMD since Zen 5), the
** integer products in one vpdpbusd on ymm registers. Same results as the AVX2 table, bit for bit.
*/
#define PF_AVXVNNI 1
#include "kernels_avx2.c"
