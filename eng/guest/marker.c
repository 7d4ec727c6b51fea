/*
 * vmsmarker - user-space ground-truth process for the VmState guest fixture.
 *
 * Built by eng/fixture.sh with `gcc -static -no-pie -O0 -g`, so the
 * addresses of its globals in the unstripped ELF (MARKER_BIN in the fixture
 * env file) are the addresses they have in the running guest process.
 *
 * It
 *   1. allocates a heap buffer (malloc, MARKER_BUF_LEN bytes, brk heap),
 *      writes "VMSTATE-MARKER-<16 random hex digits>" plus a NUL at its start
 *      and fills byte i (i > marker length) with (uint8_t)(i % 251) so a
 *      reader can check reads that cross page boundaries;
 *   2. prints one line
 *        VMSMARKER pid=<pid> value=<marker> addr=0x<buffer vaddr> len=<len>
 *                  g_value_addr=0x<&g_value> paddr=0x<phys of buffer>
 *                  g_value_paddr=0x<phys of g_value>
 *      (one line; physical addresses from /proc/self/pagemap, 0x0 when
 *      unavailable, e.g. without CAP_SYS_ADMIN)
 *      and, with --info FILE, writes the same key=value fields (without the
 *      "VMSMARKER " prefix) atomically into FILE;
 *   3. reserves 64 GiB of address space with PROT_NONE and never touches it (as language runtimes do), so
 *      tools that walk or dump a process's memory must not go page by page;
 *   4. with --info FILE, also maps FILE.page (4 KiB of 'M', on the /run tmpfs) read-only and keeps it, so its
 *      maps line names a file on a second filesystem;
 *   5. loops forever, once per second printing
 *        VMSMARKER tick=<n> value=0x<g_value as 16 hex digits>
 *      so a tool that rewrites g_value in guest memory sees the change.
 *
 * Options:
 *   --uid N      drop to uid N (and gid N unless --gid is given) first
 *   --gid N      group id to use with --uid
 *   --info FILE  also write the identification line into FILE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#define MARKER_BUF_LEN 65536u
#define MARKER_PREFIX "VMSTATE-MARKER-"

/* The value a tool may change in guest memory; volatile so every tick re-reads it. */
volatile uint64_t g_value = 0x1122334455667788ULL;
/* Pointer to the heap buffer, so the buffer can also be found via the symbol table. */
char *volatile g_marker_buf;
/* The untouched 64 GiB PROT_NONE reservation. */
void *volatile g_reserve;
/* INFO.page (on /run, a tmpfs), mapped read-only; with --info only. */
void *volatile g_page_map;
/* Tick counter, also a global so it can be inspected. */
volatile uint64_t g_tick;

static void die(const char *what)
{
    fprintf(stderr, "vmsmarker: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32];
    if (nbytes > sizeof raw)
        nbytes = sizeof raw;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, raw, nbytes) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)nbytes) {
        /* Fall back to something time/pid based; still distinctive enough. */
        uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < nbytes; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            raw[i] = (unsigned char)(seed >> 56);
        }
    }
    for (size_t i = 0; i < nbytes; i++)
        sprintf(out + 2 * i, "%02x", raw[i]);
    out[2 * nbytes] = '\0';
}

/* Physical address backing vaddr, from /proc/self/pagemap (needs
 * CAP_SYS_ADMIN for the PFN); 0 when unknown. */
static uint64_t phys_of(const volatile void *vaddr)
{
    uint64_t entry = 0, va = (uint64_t)(uintptr_t)vaddr;
    long page = sysconf(_SC_PAGESIZE);
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got = pread(fd, &entry, sizeof entry, (off_t)(va / (uint64_t)page * sizeof entry));
    close(fd);
    if (got != (ssize_t)sizeof entry || !(entry & (1ULL << 63)))
        return 0;                     /* not present */
    uint64_t pfn = entry & ((1ULL << 55) - 1);
    if (pfn == 0)
        return 0;                     /* PFN hidden (no CAP_SYS_ADMIN) */
    return pfn * (uint64_t)page + va % (uint64_t)page;
}

static long parse_id(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "vmsmarker: bad value for %s: '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long uid = -1, gid = -1;
    const char *info = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--uid") && i + 1 < argc)
            uid = parse_id(argv[++i], "--uid");
        else if (!strcmp(argv[i], "--gid") && i + 1 < argc)
            gid = parse_id(argv[++i], "--gid");
        else if (!strcmp(argv[i], "--info") && i + 1 < argc)
            info = argv[++i];
        else {
            fprintf(stderr, "usage: vmsmarker [--uid N] [--gid N] [--info FILE]\n");
            return 2;
        }
    }

    if (uid >= 0) {
        if (gid < 0)
            gid = uid;
        if (setgroups(0, NULL) != 0)
            die("setgroups");
        if (setgid((gid_t)gid) != 0)
            die("setgid");
        if (setuid((uid_t)uid) != 0)
            die("setuid");
    }

    setvbuf(stdout, NULL, _IOLBF, 0);

    char *buf = malloc(MARKER_BUF_LEN);
    if (!buf)
        die("malloc");
    char hex[17];
    random_hex(hex, 8);
    int mlen = snprintf(buf, MARKER_BUF_LEN, "%s%s", MARKER_PREFIX, hex);
    for (size_t i = (size_t)mlen + 1; i < MARKER_BUF_LEN; i++)
        buf[i] = (char)(uint8_t)(i % 251);
    g_marker_buf = buf;
    /* Write g_value's page now so its private copy (and so its physical
     * address) exists before we report it. */
    g_value = g_value;

    g_reserve = mmap(NULL, 64ULL << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g_reserve == MAP_FAILED)
        die("mmap of the 64 GiB reservation");

    char line[256];
    snprintf(line, sizeof line,
             "pid=%d value=%s addr=0x%" PRIxPTR " len=%u g_value_addr=0x%" PRIxPTR
             " paddr=0x%" PRIx64 " g_value_paddr=0x%" PRIx64,
             (int)getpid(), buf, (uintptr_t)buf, MARKER_BUF_LEN, (uintptr_t)&g_value,
             phys_of(buf), phys_of(&g_value));
    printf("VMSMARKER %s\n", line);

    if (info) {
        /* A file on another filesystem (the tmpfs on /run), mapped and kept: its /proc/PID/maps line tests path
         * names across mount points and the device numbers of a second filesystem. */
        char page[4096];
        snprintf(page, sizeof page, "%s.page", info);
        int pfd = open(page, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (pfd < 0)
            die(page);
        char fill[4096];
        memset(fill, 'M', sizeof fill);
        if (write(pfd, fill, sizeof fill) != (ssize_t)sizeof fill)
            die(page);
        g_page_map = mmap(NULL, sizeof fill, PROT_READ, MAP_PRIVATE, pfd, 0);
        if (g_page_map == MAP_FAILED)
            die("mmap of the page file");
        close(pfd);
        (void)*(volatile const char *)g_page_map;

        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", info);
        FILE *f = fopen(tmp, "w");
        if (!f)
            die(tmp);
        fprintf(f, "%s\n", line);
        if (fclose(f) != 0)
            die(tmp);
        if (rename(tmp, info) != 0)
            die(info);
    }

    for (;;) {
        struct timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        g_tick++;
        printf("VMSMARKER tick=%" PRIu64 " value=0x%016" PRIx64 "\n", (uint64_t)g_tick, (uint64_t)g_value);
    }
}
