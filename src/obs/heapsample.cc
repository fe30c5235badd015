#include "obs/heapsample.h"

#include <gperftools/malloc_extension.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

/* tcmalloc reads its sampling period once from TCMALLOC_SAMPLE_PARAMETER,
 * before main, into this flag, and re-reads the flag whenever a thread picks
 * its next sampling point (it is documented to support changing at run
 * time); there is no public setter. */
namespace FLAG__namespace_do_not_use_directly_use_DECLARE_int64_instead {
extern int64_t FLAGS_tcmalloc_sample_parameter;
}

extern "C" void heapsample_enable(long bytes)
{
    if (std::getenv("TCMALLOC_SAMPLE_PARAMETER")) return;
    FLAG__namespace_do_not_use_directly_use_DECLARE_int64_instead::FLAGS_tcmalloc_sample_parameter = bytes;
}

extern "C" char *heapsample_take(size_t *len)
{
    std::string s;
    MallocExtension::instance()->GetHeapSample(&s);
    char *out = static_cast<char *>(std::malloc(s.size() + 1));
    if (!out) std::abort();
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
    *len = s.size();
    return out;
}
