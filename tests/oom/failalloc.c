/*
** failalloc.c — allocation-failure injection for make oom. The driver is
** linked with -Wl,--wrap for malloc, calloc, realloc, strdup and
** aligned_alloc, so every call from the engine's and the extension's object
** files comes here (SQLite, OpenBLAS and libc keep theirs): the hook counts
** them and fails the one numbered pf_fa_fail_at (0: none).
*/
#include <stdatomic.h>
#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t s);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t s);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
void *__wrap_aligned_alloc(size_t a, size_t n);

atomic_long pf_fa_count;   /* allocations so far */
long pf_fa_fail_at;        /* fail this one (1-based); 0: never */
atomic_long pf_fa_failed;  /* allocations failed so far */

int pf_fa_trace;           /* print where each failed allocation was made (OOM_TRACE=1) */
void __sanitizer_print_stack_trace(void);

static int fail_now(void) {
  long c = atomic_fetch_add(&pf_fa_count, 1) + 1;
  if (pf_fa_fail_at && c == pf_fa_fail_at) {
    atomic_fetch_add(&pf_fa_failed, 1);
    if (pf_fa_trace) __sanitizer_print_stack_trace();
    return 1;
  }
  return 0;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t s) { return fail_now() ? NULL : __real_calloc(n, s); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return fail_now() ? NULL : __real_aligned_alloc(a, n); }
