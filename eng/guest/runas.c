/*
 * vmsrunas - start a program with a chosen uid/gid and argv[0].
 *
 *   vmsrunas [--uid N] [--gid N] [--argv0 NAME] PATH [ARGS...]
 *
 * The kernel names the new process (comm, /proc/PID/status "Name:") after
 * the basename of PATH, while busybox picks its applet from argv[0]; so
 * `vmsrunas --argv0 sleep /bin/vmsd-alpha 999999` runs busybox's sleep
 * under the distinctive name "vmsd-alpha".
 * --uid N drops supplementary groups, then sets gid (default: N) and uid.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long parse_id(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "vmsrunas: bad value for %s: '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long uid = -1, gid = -1;
    const char *argv0 = NULL;
    int i = 1;

    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--uid") && i + 1 < argc)
            uid = parse_id(argv[++i], "--uid");
        else if (!strcmp(argv[i], "--gid") && i + 1 < argc)
            gid = parse_id(argv[++i], "--gid");
        else if (!strcmp(argv[i], "--argv0") && i + 1 < argc)
            argv0 = argv[++i];
        else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else
            break;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: vmsrunas [--uid N] [--gid N] [--argv0 NAME] PATH [ARGS...]\n");
        return 2;
    }

    if (uid >= 0) {
        if (gid < 0)
            gid = uid;
        if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0) {
            fprintf(stderr, "vmsrunas: cannot switch to uid %ld gid %ld: %s\n", uid, gid, strerror(errno));
            return 1;
        }
    }

    const char *path = argv[i];
    char **args = &argv[i];
    if (argv0)
        args[0] = (char *)argv0;
    execv(path, args);
    fprintf(stderr, "vmsrunas: exec %s: %s\n", path, strerror(errno));
    return 127;
}
