// SPDX-License-Identifier: Apache-2.0
/*
 * Allocation-heavy workloads for scripts/bench, in a tight native loop so the
 * tracer's cost per event, not the loop, dominates. Built by the bench with gcc.
 *
 *   storm fault SECONDS   order-0 page faults: mmap, touch every page, munmap
 *   storm pipe SECONDS    order-4 allocations: pipe ring grown to 4 MiB and shrunk
 *   storm fail SECONDS    failed allocations: grow pipe rings to PIPE_SIZE inside a
 *                         memory cgroup at its limit (paftrace/workloads/provoke.py's method;
 *                         the bench sets the limit after this prints "ready" and
 *                         says "go" on stdin); with PAUSE, it stops failing for PAUSE
 *                         seconds, then fails for SECONDS again: two storms of one
 *                         process and call site (tests/test_coalescing.py)
 *
 * Prints "<operations> <seconds>" on stdout at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define FAULT_REGION (4UL << 20)  /* 1024 pages per round trip */
#define PIPE_BIG (4 << 20)         /* 1024 slots * 40 B: a 40 KiB ring, order 4 */
#define FAIL_PIPES 512

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Check the clock every `batch` operations only: clock_gettime is not free. */
#define RUN_FOR(seconds, batch, body)                          \
    do {                                                       \
        double end_ = now() + (seconds);                       \
        for (;;) {                                             \
            for (int b_ = 0; b_ < (batch); b_++) { body; }     \
            if (now() >= end_)                                 \
                break;                                         \
        }                                                      \
    } while (0)

static unsigned long fault_storm(double seconds)
{
    unsigned long faults = 0;
    long page = sysconf(_SC_PAGESIZE);
    RUN_FOR(seconds, 1, {
        char *p = mmap(NULL, FAULT_REGION, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            exit(1);
        }
        /* Order 0 only: no transparent huge page may back the region. */
        madvise(p, FAULT_REGION, MADV_NOHUGEPAGE);
        for (unsigned long off = 0; off < FAULT_REGION; off += page)
            p[off] = 1;
        munmap(p, FAULT_REGION);
        faults += FAULT_REGION / page;
    });
    return faults;
}

static unsigned long pipe_storm(double seconds)
{
    unsigned long cycles = 0;
    int fds[2];
    if (pipe(fds)) {
        perror("pipe");
        exit(1);
    }
    long page = sysconf(_SC_PAGESIZE);
    RUN_FOR(seconds, 64, {
        if (fcntl(fds[0], F_SETPIPE_SZ, PIPE_BIG) < 0) {
            perror("F_SETPIPE_SZ grow (root needed above fs.pipe-max-size)");
            exit(1);
        }
        fcntl(fds[0], F_SETPIPE_SZ, page);
        cycles++;
    });
    return cycles;
}

static unsigned long fail_storm(double seconds, int pipe_size, double pause)
{
    static int fds[FAIL_PIPES][2];
    for (int i = 0; i < FAIL_PIPES; i++)
        if (pipe(fds[i])) {
            perror("pipe");
            exit(1);
        }
    printf("ready\n");
    fflush(stdout);
    char word[16];
    if (!fgets(word, sizeof(word), stdin))
        exit(1);
    unsigned long failures = 0;
    int next = 0;
    for (int storm = 0; storm < (pause > 0 ? 2 : 1); storm++) {
        if (storm) {
            struct timespec quiet = {(time_t)pause,
                                     (long)((pause - (time_t)pause) * 1e9)};
            nanosleep(&quiet, NULL);
        }
        RUN_FOR(seconds, 16, {
            /* A grown pipe keeps its charge, using up the per-CPU charge stock
             * (see paftrace/workloads/provoke.py); a failed one is retried. */
            if (fcntl(fds[next][0], F_SETPIPE_SZ, pipe_size) >= 0) {
                if (next < FAIL_PIPES - 1)
                    next++;
            } else if (errno == ENOMEM) {
                failures++;
            } else {
                perror("F_SETPIPE_SZ");
                exit(1);
            }
        });
    }
    return failures;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: storm fault|pipe|fail SECONDS [PIPE_SIZE [PAUSE]]\n");
        return 2;
    }
    double seconds = atof(argv[2]);
    double t0 = now();
    unsigned long ops;
    if (!strcmp(argv[1], "fault"))
        ops = fault_storm(seconds);
    else if (!strcmp(argv[1], "pipe"))
        ops = pipe_storm(seconds);
    else if (!strcmp(argv[1], "fail") && argc > 3)
        ops = fail_storm(seconds, atoi(argv[3]), argc > 4 ? atof(argv[4]) : 0);
    else {
        fprintf(stderr, "storm: unknown workload %s\n", argv[1]);
        return 2;
    }
    printf("%lu %.6f\n", ops, now() - t0);
    return 0;
}
