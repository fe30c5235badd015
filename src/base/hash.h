/* The one hash function of the project's tables, and uthash configured to
 * use it.
 *
 * Every file includes this header instead of <uthash.h>: a table is filled
 * in one file and searched in another, and a hash computed once and kept
 * (struct user_room's room_hash, which HASH_ADD_KEYPTR_BYHASHVALUE and
 * sync_list take as given) is only valid if every file hashes alike.
 * Including <uthash.h> first is a compile error below, and the Makefile
 * refuses to build the library when another file includes it. */
#ifndef SYNCV3_BASE_HASH_H
#define SYNCV3_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef UTHASH_H
#error "include base/hash.h instead of <uthash.h>"
#endif

/* Hash of len bytes, eight at a time (the keys are mostly room and user IDs
 * of 20-60 bytes), with a final mix so that the low bits, which pick a
 * bucket or slot, depend on every byte. */
static inline uint32_t hash_bytes(const void *p, size_t len)
{
    const char *s = p;
    const uint64_t mul = 0xff51afd7ed558ccdu;
    uint64_t h = 0x9e3779b97f4a7c15u ^ len;
    for (; len >= 8; s += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * mul;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    if (len) memcpy(&w, s, len);
    h = (h ^ w) * mul;
    h ^= h >> 33;
    h *= mul;
    h ^= h >> 33;
    return (uint32_t)h;
}

#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = hash_bytes((keyptr), (size_t)(keylen)))

#include <uthash.h>

#endif
