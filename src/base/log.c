#include "base/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum log_level log_threshold = LOG_INFO;
enum log_format log_output_format = LOG_FORMAT_TEXT;
void (*log_fatal_hook)(const char *module, const char *message);

static const char *const names[] = {"TRC", "DBG", "INF", "WRN", "ERR", "FTL"};
static const char *const json_names[] = {"trace", "debug", "info", "warn", "error", "fatal"};

/* Bytes kept back from a line's capacity for what closes it: at most a
 * string's quote, the object's brace and the newline. */
#define LINE_RESERVE 4
/* Most trailing key=value words turned into JSON fields. */
#define MAX_FIELDS 32

int log_level_parse(const char *s, enum log_level *out)
{
    static const struct {
        const char *name;
        enum log_level level;
    } table[] = {
        {"trace", LOG_TRACE}, {"debug", LOG_DEBUG}, {"info", LOG_INFO},   {"warn", LOG_WARN},
        {"err", LOG_ERROR},   {"error", LOG_ERROR}, {"fatal", LOG_FATAL},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcasecmp(s, table[i].name) == 0) {
            *out = table[i].level;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level l)
{
    return (unsigned)l < sizeof names / sizeof names[0] ? names[l] : "???";
}

const char *log_level_word(enum log_level l)
{
    return (unsigned)l < sizeof json_names / sizeof json_names[0] ? json_names[l] : "unknown";
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (strcasecmp(s, "text") == 0) {
        *out = LOG_FORMAT_TEXT;
        return 0;
    }
    if (strcasecmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
        return 0;
    }
    return -1;
}

/* ---------------------------------------------------------------- line writer */

/* A line being written into a fixed array. Appends are all or nothing; the
 * first that does not fit marks the line full and every later one is dropped,
 * except the closing bytes written with force() into the reserve. */
struct line {
    char *p;    /* the array */
    size_t len; /* bytes written */
    size_t cap; /* bytes usable by put() (the array's size minus LINE_RESERVE) */
    bool full;  /* an append did not fit */
};

static bool put(struct line *l, const char *s, size_t n)
{
    /* Once anything went into the reserve the line is full. */
    if (l->full || l->len > l->cap) return false;
    if (n > l->cap - l->len) {
        l->full = true;
        return false;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
    return true;
}

static bool puts_(struct line *l, const char *s) { return put(l, s, strlen(s)); }

static void force(struct line *l, const char *s)
{
    size_t n = strlen(s);
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when the bytes there
 * are not one (overlong forms, surrogates and values past U+10FFFF are not). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* Appends s[0..n) as a JSON string. Invalid UTF-8 becomes U+FFFD; a string
 * that does not fit is cut between characters and still closed. When not
 * even the opening quote fits, writes "" into the reserve if after_colon (a
 * value must follow a key), else nothing. */
static void put_json_str(struct line *l, const char *s, size_t n, bool after_colon)
{
    if (!put(l, "\"", 1)) {
        if (after_colon) force(l, "\"\"");
        return;
    }
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        char tmp[8];
        const char *unit = tmp;
        size_t ulen = 2, adv = 1;
        switch (u[i]) {
        case '"': unit = "\\\""; break;
        case '\\': unit = "\\\\"; break;
        case '\n': unit = "\\n"; break;
        case '\r': unit = "\\r"; break;
        case '\t': unit = "\\t"; break;
        default:
            if (u[i] < 0x20 || u[i] == 0x7f) {
                snprintf(tmp, sizeof tmp, "\\u%04x", u[i]);
                ulen = 6;
            } else if ((adv = utf8_len(u + i, n - i)) == 0) {
                unit = "\\ufffd";
                ulen = 6;
                adv = 1;
            } else {
                unit = s + i;
                ulen = adv;
            }
        }
        if (!put(l, unit, ulen)) break;
        i += adv;
    }
    /* The reserve is only for a string that was cut. */
    if (!put(l, "\"", 1)) force(l, "\"");
}

/* Appends the message as text: newlines are written as \n so one event stays
 * one line; other control bytes become '?'. */
static void put_text(struct line *l, const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok;
        if (c == '\n')
            ok = put(l, "\\n", 2);
        else if (c == '\r')
            ok = put(l, "\\r", 2);
        else if (c < 0x20 && c != '\t')
            ok = put(l, "?", 1);
        else
            ok = put(l, p, 1);
        if (!ok) break;
    }
}

/* ---------------------------------------------------------------- fields */

/* A key=value word at the end of a message. */
struct field {
    const char *key;   /* start of the key */
    size_t key_len;    /* bytes of key */
    const char *val;   /* start of the value */
    size_t val_len;    /* bytes of value */
};

/* Whether w[0..n) is key=value: a lowercase key ([a-z][a-z0-9_-]*) that is not
 * one of the line's own fields, and a non-empty value. */
static bool split_field(const char *w, size_t n, struct field *f)
{
    static const char *const reserved[] = {"time", "level", "module", "message"};
    const char *eq = memchr(w, '=', n);
    if (!eq || eq == w || eq == w + n - 1 || w[0] < 'a' || w[0] > 'z') return false;
    for (const char *p = w; p < eq; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) return false;
    size_t klen = (size_t)(eq - w);
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == klen && memcmp(reserved[i], w, klen) == 0) return false;
    *f = (struct field){w, klen, eq + 1, n - klen - 1};
    return true;
}

/* Takes the runs of key=value words at the start and at the end of msg
 * (words split by single spaces). Fills f (in message order) and returns how
 * many; the rest of the message is msg[*text_start .. *text_end). */
static int take_fields(const char *msg, struct field *f, size_t *text_start, size_t *text_end)
{
    size_t len = strlen(msg), pos = 0;
    int n = 0;
    while (pos < len && n < MAX_FIELDS) {
        const char *sp = strchr(msg + pos, ' ');
        size_t wend = sp ? (size_t)(sp - msg) : len;
        if (!split_field(msg + pos, wend - pos, &f[n])) break;
        n++;
        pos = sp ? wend + 1 : len;
    }
    size_t end = len;
    struct field rev[MAX_FIELDS];
    int nr = 0;
    while (end > pos && n + nr < MAX_FIELDS) {
        size_t start = end;
        while (start > pos && msg[start - 1] != ' ') start--;
        if (!split_field(msg + start, end - start, &rev[nr])) break;
        nr++;
        end = start > pos ? start - 1 : pos;
    }
    for (int i = 0; i < nr; i++) f[n + i] = rev[nr - 1 - i];
    *text_start = pos;
    *text_end = end;
    return n + nr;
}

/* Keys whose values are numbers in JSON when they look like one. */
static bool numeric_key(const struct field *f)
{
    static const char *const keys[] = {"status", "size", "duration"};
    bool known = false;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strlen(keys[i]) == f->key_len && memcmp(keys[i], f->key, f->key_len) == 0) known = true;
    if (!known) return false;
    /* -?(0|[1-9][0-9]*)(\.[0-9]+)? */
    const char *p = f->val, *e = f->val + f->val_len;
    if (p < e && *p == '-') p++;
    if (p == e || *p < '0' || *p > '9') return false;
    if (*p == '0' && p + 1 < e && p[1] != '.') return false;
    while (p < e && *p >= '0' && *p <= '9') p++;
    if (p < e && *p == '.') {
        p++;
        if (p == e) return false;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    return p == e;
}

/* ---------------------------------------------------------------- lines */

size_t log_format_line(char *out, size_t cap, enum log_format fmt, const struct timespec *when,
                       enum log_level lvl, const char *module, const char *msg)
{
    struct line l = {out, 0, cap - LINE_RESERVE, false};
    struct tm tm;
    gmtime_r(&when->tv_sec, &tm);
    char ts[96]; /* 24 bytes in practice; room for any int the compiler can imagine */
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(when->tv_nsec / 1000000 % 1000));
    if (fmt == LOG_FORMAT_TEXT) {
        puts_(&l, ts);
        puts_(&l, " ");
        puts_(&l, log_level_name(lvl));
        puts_(&l, " [");
        puts_(&l, module);
        puts_(&l, "] ");
        put_text(&l, msg);
        force(&l, "\n");
        return l.len;
    }
    struct field f[MAX_FIELDS];
    size_t text_start, text_end;
    int nf = take_fields(msg, f, &text_start, &text_end);
    char head[160];
    snprintf(head, sizeof head, "{\"time\":\"%s\",\"level\":\"%s\",\"module\":", ts,
             log_level_word(lvl));
    if (puts_(&l, head)) put_json_str(&l, module, strlen(module), true);
    if (puts_(&l, ",\"message\":")) put_json_str(&l, msg + text_start, text_end - text_start, true);
    for (int i = 0; i < nf && !l.full; i++) {
        if (!puts_(&l, ",")) break;
        /* A key that does not fit whole (with its colon) goes with its comma. */
        size_t before = l.len;
        put_json_str(&l, f[i].key, f[i].key_len, false);
        if (l.full || !puts_(&l, ":")) {
            l.len = before - 1; /* drop the comma and the partial key */
            l.full = true;
            break;
        }
        if (numeric_key(&f[i])) {
            if (!put(&l, f[i].val, f[i].val_len)) force(&l, "0");
        } else {
            put_json_str(&l, f[i].val, f[i].val_len, true);
        }
    }
    force(&l, "}\n");
    return l.len;
}

void log_write(enum log_level lvl, const char *module, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[8192];
    size_t n = log_format_line(line, sizeof line, log_output_format, &ts, lvl, module, msg);
    /* One fwrite per line: stdio locks the stream, so lines never interleave. */
    fwrite(line, 1, n, stderr);
    if (lvl == LOG_FATAL && log_fatal_hook) log_fatal_hook(module, msg);
}
