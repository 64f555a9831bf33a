/* What the bench's load generators share: a monotonic clock, and dying with errno's word. */
#ifndef CALLMAP_LOADCLOCK_H
#define CALLMAP_LOADCLOCK_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

#endif
