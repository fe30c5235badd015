/* Case-insensitive keys of UTF-8 text, for every script (libunistring).
 * Pure functions; any byte string is accepted: invalid UTF-8 is read as
 * U+FFFD, never a crash.
 *
 * The fold key of a string: compatibility-normalised (NFKC) and fully
 * case-folded, so "ΑΘΉΝΑ" and "αθήνα" (precomposed or not), "STRASSE" and
 * "straße", "ΟΔΥΣΣΕΥΣ" and "οδυσσευς" have the same key. The Turkish and
 * Azerbaijani i's (I, i, İ, ı) all fold to "i", so a search matches whichever
 * the name or the searcher's keyboard used. */
#ifndef SYNCV3_BASE_UFOLD_H
#define SYNCV3_BASE_UFOLD_H

#include <stdbool.h>

/* The fold key of s (NULL is ""). Returns a NUL-terminated heap string the
 * caller frees. */
char *ufold_key(const char *s);

/* Whether the fold key of needle occurs in the fold key of hay (NULL is "";
 * an empty needle always does). */
bool ufold_contains(const char *hay, const char *needle);

/* A sort key of s (NULL is ""): comparing two keys with strcmp orders the
 * strings alphabetically ignoring case, then accents ("Ärger" < "émile" <
 * "Zoe"; "resume" < "résumé"). It is the fold key with the accents
 * (nonspacing marks after decomposition) removed, a 0x01 byte, and the fold
 * key itself as the tie-break. Returns a heap string the caller frees. */
char *ufold_sort_key(const char *s);

#endif
