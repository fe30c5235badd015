#include "base/jsonx.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

/* Copies buf, appending ".0" to every integer literal outside strings that
 * has more than 18 digits (those that may not fit in 64 bits). */
static char *widen_big_ints(const char *buf, size_t len, size_t *out_len)
{
    struct buf b = BUF_INIT;
    bool in_str = false;
    for (size_t i = 0; i < len;) {
        char c = buf[i];
        if (in_str) {
            size_t j = i;
            while (j < len && buf[j] != '"') j += buf[j] == '\\' ? 2 : 1;
            if (j > len) j = len;
            buf_append(&b, buf + i, j - i);
            if (j < len) buf_putc(&b, '"');
            in_str = false;
            i = j + 1;
            continue;
        }
        if (c == '"') {
            in_str = true;
            buf_putc(&b, c);
            i++;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + (c == '-');
            size_t digits_start = j;
            while (j < len && buf[j] >= '0' && buf[j] <= '9') j++;
            bool is_int = !(j < len && (buf[j] == '.' || buf[j] == 'e' || buf[j] == 'E'));
            buf_append(&b, buf + i, j - i);
            if (is_int && j - digits_start > 18) buf_puts(&b, ".0");
            i = j;
            continue;
        }
        buf_putc(&b, c);
        i++;
    }
    return buf_detach(&b, out_len);
}

json_t *jsonx_loadb(const char *buf, size_t len, size_t flags, json_error_t *err)
{
    json_t *j = json_loadb(buf, len, flags, err);
    if (j || !strstr(err->text, "too big")) return j;
    size_t wlen;
    char *wide = widen_big_ints(buf, len, &wlen);
    j = json_loadb(wide, wlen, flags, err);
    free(wide);
    return j;
}
