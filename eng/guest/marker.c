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
 *      so a tool that rewrites g_value in guest memory sees the change;
 *   6. after each tick, serves a request a host tool wrote into g_request (guest-physical address
 *      g_request_paddr in the identification line; low byte the request, the bits above an argument), clears
 *      it and prints what it did, as ground truth for event tracers:
 *        1 watch     g_watch changes three times (+0x1111 each):
 *                      VMSMARKER watch n=<i> old=0x<16 hex> new=0x<16 hex>
 *        2 exec      runs three known programs (fork, execv, wait), each printed before it is waited for:
 *                      VMSMARKER exec pid=<pid> argv=<argv joined by spaces>
 *        3 syscalls  getppid five times and getuid three times (raw syscall(2), no libc caching):
 *                      VMSMARKER syscalls getppid=5 getuid=3
 *        4 loop      getppid in a tight loop for ARG milliseconds or until the next request arrives (a breakpoint
 *                    hit as fast as a tracer allows):
 *                      VMSMARKER loop ms=<ARG> calls=<n>
 *        5 spin      a pure CPU loop for ARG milliseconds (the guest's own work rate, for slowdown measurements):
 *                      VMSMARKER spin ms=<ARG> iterations=<n>
 *        6 spawn     starts a child named vmsd-epsilon (busybox sleep through the symlink /run/vmsd-epsilon) that
 *                    sleeps until it is killed, printed once it exists (a process that starts at a known moment):
 *                      VMSMARKER spawn pid=<pid> comm=vmsd-epsilon
 *        7 kill      kills child ARG (a pid request 6 printed) and reaps it:
 *                      VMSMARKER killed pid=<ARG>
 *      The identification line also carries g_watch_addr and g_request_addr (virtual) and g_request_paddr.
 *   7. on aarch64, right before each sleep, loads known FP/SIMD state (ground truth for the NT_FPREGSET of a process
 *      core): v31 = the 16 hex digits of the marker value as ASCII (byte i of v31 = digit i), FPCR = 0x00c00000
 *      (RMode 0b11, round toward zero), FPSR = 0x08000000 (QC); nothing between there and the nanosleep system call
 *      uses them, and the kernel keeps them across it.
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
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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
/* A request from a host tool (see 6. above), 0 when none; page-aligned so its physical address is one page. */
volatile uint64_t g_request __attribute__((aligned(4096)));
/* The variable request 1 changes, for watchpoint tests. */
volatile uint64_t g_watch = 0x5741544348000000ULL;

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

#if defined(__aarch64__)
#define MARKER_FPCR 0x00c00000UL
#define MARKER_FPSR 0x08000000UL
static void load_fpsimd_truth(const char *hex16)
{
    __asm__ volatile("ldr q31, [%0]\n\tmsr fpcr, %1\n\tmsr fpsr, %2"
                     :
                     : "r"(hex16), "r"(MARKER_FPCR), "r"(MARKER_FPSR)
                     : "v31", "memory");
}
#endif

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void run_program(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid < 0) {
        printf("VMSMARKER exec failed: %s\n", strerror(errno));
        return;
    }
    char joined[256] = "";
    for (int i = 0; argv[i]; i++) {
        if (i)
            strncat(joined, " ", sizeof joined - strlen(joined) - 1);
        strncat(joined, argv[i], sizeof joined - strlen(joined) - 1);
    }
    printf("VMSMARKER exec pid=%d argv=%s\n", (int)pid, joined);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
}

/* Serves one request from g_request (see 6. above). */
static void serve_request(void)
{
    uint64_t req = g_request;
    if (req == 0)
        return;
    g_request = 0;
    uint64_t arg = req >> 8;
    switch (req & 0xff) {
    case 1:
        for (int i = 1; i <= 3; i++) {
            uint64_t old = g_watch;
            g_watch = old + 0x1111;
            printf("VMSMARKER watch n=%d old=0x%016" PRIx64 " new=0x%016" PRIx64 "\n", i, old, (uint64_t)g_watch);
        }
        break;
    case 2: {
        char *const a[] = { "/bin/true", "vmstate-exec-one", NULL };
        char *const b[] = { "/bin/echo", "vmstate-exec-two", "alpha", "beta", NULL };
        char *const c[] = { "/bin/sleep", "0", NULL };
        run_program(a);
        run_program(b);
        run_program(c);
        break;
    }
    case 3:
        for (int i = 0; i < 5; i++)
            syscall(SYS_getppid);
        for (int i = 0; i < 3; i++)
            syscall(SYS_getuid);
        printf("VMSMARKER syscalls getppid=5 getuid=3\n");
        break;
    case 4: {
        uint64_t end = now_ms() + arg, calls = 0;
        do {
            for (int i = 0; i < 64; i++)
                syscall(SYS_getppid);
            calls += 64;
        } while (now_ms() < end && g_request == 0);
        printf("VMSMARKER loop ms=%" PRIu64 " calls=%" PRIu64 "\n", arg, calls);
        break;
    }
    case 5: {
        uint64_t end = now_ms() + arg, n = 0;
        volatile uint64_t sink = 0;
        do {
            for (int i = 0; i < 4096; i++)
                sink += (uint64_t)i * 2654435761u;
            n += 4096;
        } while (now_ms() < end);
        printf("VMSMARKER spin ms=%" PRIu64 " iterations=%" PRIu64 "\n", arg, n);
        break;
    }
    case 6: {
        /* vfork + exec, not fork: a forked child would share this process's pages copy-on-write, and the next write
         * here would move g_request to a new physical page (the host writes requests at g_request_paddr). The
         * kernel names a process after the file it executes, so a symlink gives busybox's sleep the wanted comm. */
        if (symlink("/bin/busybox", "/run/vmsd-epsilon") != 0 && errno != EEXIST) {
            printf("VMSMARKER spawn failed: symlink: %s\n", strerror(errno));
            break;
        }
        char *const a[] = { "sleep", "999999", NULL };
        pid_t child = vfork();
        if (child == 0) {
            execv("/run/vmsd-epsilon", a);
            _exit(127);
        }
        if (child < 0)
            printf("VMSMARKER spawn failed: %s\n", strerror(errno));
        else
            printf("VMSMARKER spawn pid=%d comm=vmsd-epsilon\n", (int)child);
        break;
    }
    case 7: {
        int status;
        if (kill((pid_t)arg, SIGKILL) != 0) {
            printf("VMSMARKER kill failed: %s\n", strerror(errno));
            break;
        }
        while (waitpid((pid_t)arg, &status, 0) < 0 && errno == EINTR)
            ;
        printf("VMSMARKER killed pid=%d\n", (int)arg);
        break;
    }
    default:
        printf("VMSMARKER request unknown=0x%" PRIx64 "\n", req);
    }
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
    g_request = 0;

    g_reserve = mmap(NULL, 64ULL << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g_reserve == MAP_FAILED)
        die("mmap of the 64 GiB reservation");

    char line[512];
    snprintf(line, sizeof line,
             "pid=%d value=%s addr=0x%" PRIxPTR " len=%u g_value_addr=0x%" PRIxPTR
             " paddr=0x%" PRIx64 " g_value_paddr=0x%" PRIx64 " g_watch_addr=0x%" PRIxPTR
             " g_request_addr=0x%" PRIxPTR " g_request_paddr=0x%" PRIx64,
             (int)getpid(), buf, (uintptr_t)buf, MARKER_BUF_LEN, (uintptr_t)&g_value,
             phys_of(buf), phys_of(&g_value), (uintptr_t)&g_watch, (uintptr_t)&g_request,
             phys_of(&g_request));
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
#if defined(__aarch64__)
        load_fpsimd_truth(buf + strlen(MARKER_PREFIX));
#endif
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        g_tick++;
        printf("VMSMARKER tick=%" PRIu64 " value=0x%016" PRIx64 "\n", (uint64_t)g_tick, (uint64_t)g_value);
        serve_request();
    }
}
