/* Unit tests of the accumulator's pure parts: the Postgres array encoding the
 * batched writes rely on (redaction has its own file, test_redact.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "ingest/accumulate.h"
#include "store/db.h"

static void test_array_encoding(void **state)
{
    (void)state;
    struct buf b = BUF_INIT;
    buf_putc(&b, '{');
    db_array_elem(&b, "plain");
    buf_putc(&b, ',');
    db_array_elem(&b, "q\"uo\\te,{x}");
    buf_putc(&b, ',');
    db_array_elem(&b, NULL);
    buf_putc(&b, '}');
    assert_string_equal(buf_cstr(&b), "{\"plain\",\"q\\\"uo\\\\te,{x}\",NULL}");
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
