#include "obs/crash.h"

#include <dirent.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"

#define MAX_FRAMES 64
#define ALT_STACK_SIZE (64 * 1024)
#define PREFIX "syncv3-crash-"
#define SUFFIX ".txt"

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGABRT};
#define N_SIGNALS (sizeof crash_signals / sizeof crash_signals[0])

/* Everything the handler needs, prepared at install time: it must not
 * allocate or format with stdio. */
static struct {
    bool installed;                  /* handlers are ours */
    char dir[PATH_MAX];              /* report directory */
    char release[128];               /* release name */
    struct sigaction old[N_SIGNALS]; /* what was there before */
    void *alt_stack;                 /* the main thread's alternate stack */
} cs;

/* ---------------------------------------------------------------- in the handler */

/* A fixed buffer that async-signal-safe code appends to. */
struct sbuf {
    char p[PATH_MAX + 256]; /* contents */
    size_t n;               /* bytes used (always < sizeof p) */
};

static void sb_str(struct sbuf *b, const char *s)
{
    while (*s && b->n + 1 < sizeof b->p) b->p[b->n++] = *s++;
    b->p[b->n] = '\0';
}

static void sb_num(struct sbuf *b, unsigned long long v, unsigned base)
{
    char tmp[24];
    size_t i = sizeof tmp;
    tmp[--i] = '\0';
    do {
        tmp[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && i > 0);
    sb_str(b, tmp + i);
}

static void sb_line(struct sbuf *b, const char *key, unsigned long long v, unsigned base)
{
    sb_str(b, key);
    sb_str(b, base == 16 ? "=0x" : "=");
    sb_num(b, v, base);
    sb_str(b, "\n");
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void on_crash(int sig, siginfo_t *si, void *uctx)
{
    int saved_errno = errno;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long pid = (unsigned long long)getpid();

    struct sbuf tmp = {.n = 0}, final = {.n = 0}, body = {.n = 0};
    sb_str(&tmp, cs.dir);
    sb_str(&tmp, "/." PREFIX);
    sb_num(&tmp, pid, 10);
    sb_str(&tmp, ".tmp");
    sb_str(&final, cs.dir);
    sb_str(&final, "/" PREFIX);
    sb_num(&final, (unsigned long long)now.tv_sec, 10);
    sb_str(&final, "-");
    sb_num(&final, pid, 10);
    sb_str(&final, SUFFIX);

    sb_str(&body, "syncv3-crash 1\nrelease=");
    sb_str(&body, cs.release);
    sb_str(&body, "\n");
    sb_line(&body, "signal", (unsigned long long)sig, 10);
    sb_str(&body, si->si_code < 0 ? "code=-" : "code=");
    sb_num(&body, (unsigned long long)(si->si_code < 0 ? -(long long)si->si_code : si->si_code), 10);
    sb_str(&body, "\n");
    sb_line(&body, "addr", (unsigned long long)(uintptr_t)si->si_addr, 16);
    sb_line(&body, "time", (unsigned long long)now.tv_sec, 10);
    sb_line(&body, "pid", pid, 10);
    sb_line(&body, "tid", (unsigned long long)syscall(SYS_gettid), 10);
    sb_str(&body, "frames:\n");

    struct sbuf msg = {.n = 0};
    sb_str(&msg, "syncv3: fatal signal ");
    sb_num(&msg, (unsigned long long)sig, 10);
    int fd = open(tmp.p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        write_all(fd, body.p, body.n);
        void *frames[MAX_FRAMES];
        int n = backtrace(frames, MAX_FRAMES); /* loaded at install time, so it does not allocate */
        backtrace_symbols_fd(frames, n, fd);
        close(fd);
        if (rename(tmp.p, final.p) == 0) {
            sb_str(&msg, "; crash report written to ");
            sb_str(&msg, final.p);
        }
    }
    sb_str(&msg, "\n");
    write_all(2, msg.p, msg.n);
    /* SA_RESETHAND put the default action back: the signal, raised again,
     * ends the process once this handler returns (also when it was sent
     * with kill(), where returning alone would carry on). */
    raise(sig);
    errno = saved_errno;
}

/* ---------------------------------------------------------------- install */

int crash_install(const char *dir, const char *release)
{
    if (cs.installed) return 0;
    if (strlen(dir) + sizeof PREFIX + 48 >= sizeof cs.dir) return -1;
    snprintf(cs.dir, sizeof cs.dir, "%s", dir);
    snprintf(cs.release, sizeof cs.release, "%s", release);
    /* backtrace() loads libgcc's unwinder on its first call; do that now. */
    void *warm[2];
    backtrace(warm, 2);
    cs.alt_stack = xmalloc(ALT_STACK_SIZE);
    stack_t ss = {.ss_sp = cs.alt_stack, .ss_size = ALT_STACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) < 0) LOG_WARN("crash", "no alternate signal stack: %s", strerror(errno));
    struct sigaction sa = {.sa_sigaction = on_crash, .sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_SIGNALS; i++) sigaction(crash_signals[i], &sa, &cs.old[i]);
    cs.installed = true;
    return 0;
}

void crash_uninstall(void)
{
    if (!cs.installed) return;
    for (size_t i = 0; i < N_SIGNALS; i++) sigaction(crash_signals[i], &cs.old[i], NULL);
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(cs.alt_stack);
    cs.alt_stack = NULL;
    cs.installed = false;
}

/* ---------------------------------------------------------------- reading reports */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **crash_pending(const char *dir)
{
    size_t n = 0, cap = 4;
    char **out = xcalloc(cap, sizeof *out);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (len <= strlen(PREFIX) + strlen(SUFFIX) || strncmp(e->d_name, PREFIX, strlen(PREFIX)) != 0 ||
                strcmp(e->d_name + len - strlen(SUFFIX), SUFFIX) != 0)
                continue;
            if (n + 1 >= cap) out = xrealloc(out, (cap *= 2) * sizeof *out);
            out[n++] = xasprintf("%s/%s", dir, e->d_name);
        }
        closedir(d);
    }
    out[n] = NULL;
    /* Names start with the unix time (same width for centuries), so this is oldest first. */
    qsort(out, n, sizeof *out, cmp_str);
    return out;
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    default: return "signal";
    }
}

/* One backtrace_symbols_fd line, "file(function+0x1f) [0x55d0c0ffee]" or
 * "file(+0x1f) [0x...]", as a Sentry frame. */
static json_t *frame_json(const char *line)
{
    const char *open = strchr(line, '(');
    const char *close = open ? strchr(open, ')') : NULL;
    const char *lb = strrchr(line, '[');
    const char *rb = lb ? strchr(lb, ']') : NULL;
    if (!lb || !rb || rb - lb < 2) return NULL;
    json_t *f = json_object();
    json_object_set_new(f, "instruction_addr", json_stringn(lb + 1, (size_t)(rb - lb - 1)));
    size_t plen = open ? (size_t)(open - line) : (size_t)(lb - line);
    while (plen && line[plen - 1] == ' ') plen--;
    if (plen) json_object_set_new(f, "package", json_stringn(line, plen));
    if (open && close && open + 1 < close) {
        /* "function+0x1f", or "+0x4e516" (an offset in package: addr2line -f -e <package> 0x4e516). */
        json_object_set_new(f, "symbol", json_stringn(open + 1, (size_t)(close - open - 1)));
        const char *plus = memchr(open + 1, '+', (size_t)(close - open - 1));
        const char *fend = plus ? plus : close;
        if (fend > open + 1) json_object_set_new(f, "function", json_stringn(open + 1, (size_t)(fend - open - 1)));
    }
    return f;
}

json_t *crash_read_event(const char *path)
{
    FILE *fp = fopen(path, "re");
    if (!fp) return NULL;
    char line[1024];
    long long sig = 0, code = 0, when = 0, pid = 0;
    char release[128] = "", addr[32] = "";
    bool ok = false, in_frames = false;
    json_t *frames = json_array();
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = '\0';
        if (!ok) {
            ok = strcmp(line, "syncv3-crash 1") == 0;
            if (!ok) break;
            continue;
        }
        if (in_frames) {
            json_t *f = frame_json(line);
            if (f) json_array_insert_new(frames, 0, f); /* Sentry lists the outermost frame first */
            continue;
        }
        char *eq = strchr(line, '=');
        if (strcmp(line, "frames:") == 0) in_frames = true;
        if (!eq) continue;
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(line, "release") == 0) snprintf(release, sizeof release, "%s", v);
        if (strcmp(line, "addr") == 0) snprintf(addr, sizeof addr, "%s", v);
        long long *num = strcmp(line, "signal") == 0 ? &sig
                         : strcmp(line, "code") == 0 ? &code
                         : strcmp(line, "time") == 0 ? &when
                         : strcmp(line, "pid") == 0  ? &pid
                                                     : NULL;
        if (num) {
            char *end;
            long long x = strtoll(v, &end, 10);
            if (end != v && !*end) *num = x;
        }
    }
    fclose(fp);
    if (!ok || sig <= 0) {
        json_decref(frames);
        return NULL;
    }
    const char *name = signal_name((int)sig);
    char *msg = xasprintf("syncv3 crashed: %s (%s)", name, strsignal((int)sig));
    char *value = xasprintf("%s at address %s (code %lld)", strsignal((int)sig), addr[0] ? addr : "?", code);
    json_t *ev = json_pack("{s:s, s:I, s:s, s:{s:s}, s:{s:s}}", "level", "fatal", "timestamp", (json_int_t)when,
                           "logger", "syncv3.crash", "message", "formatted", msg, "tags", "signal", name);
    if (release[0]) json_object_set_new(ev, "release", json_string(release));
    json_t *mech = json_pack("{s:s, s:b, s:{s:{s:I, s:I, s:s}}}", "type", "signalhandler", "handled", 0, "meta",
                             "signal", "number", (json_int_t)sig, "code", (json_int_t)code, "name", name);
    json_t *exc = json_pack("{s:s, s:s, s:o, s:{s:o}}", "type", name, "value", value, "mechanism", mech,
                            "stacktrace", "frames", frames);
    json_object_set_new(ev, "exception", json_pack("{s:[o]}", "values", exc));
    json_object_set_new(ev, "extra", json_pack("{s:I}", "pid", (json_int_t)pid));
    free(msg);
    free(value);
    return ev;
}
