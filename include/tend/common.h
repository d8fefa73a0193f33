/*
 * tend/common.h - what every libtend header shares: the export macro, the
 * library version, and the rules that hold for the whole API.
 *
 * Rules (docs/libtend.md says more):
 *  - Types are opaque; a program holds pointers and calls functions.
 *  - Functions return 0 (or a count) on success and a negative errno value
 *    on failure; output parameters are last, named ret_*, and written only
 *    on success.  Nothing prints, nothing aborts on bad input: a NULL
 *    argument is -EINVAL, a call after shutdown is -ESHUTDOWN.
 *  - No global state: everything hangs off a tend_runtime, and two
 *    runtimes in one process do not see each other.
 *  - Every function may be called from any thread unless its comment says
 *    otherwise.  Callbacks say on which thread they run.
 *  - _free functions are NULL-safe and return NULL.
 */
#ifndef TEND_COMMON_H
#define TEND_COMMON_H

#ifdef __cplusplus
extern "C" {
#endif

/* libtend is built with -fvisibility=hidden; only what carries this is
 * exported from libtend.so. */
#if defined(__GNUC__) || defined(__clang__)
#define TEND_EXPORT __attribute__((visibility("default")))
#else
#define TEND_EXPORT
#endif

/* The version of the headers; tend_version() is the library's. */
#define TEND_VERSION_MAJOR 0
#define TEND_VERSION_MINOR 1
#define TEND_VERSION_PATCH 0
#define TEND_VERSION_TEXT "0.1.0"

/* The library's version as "MAJOR.MINOR.PATCH" (a static string). */
TEND_EXPORT const char *tend_version(void);

/* A short English description of a negative errno value returned by
 * libtend (strerror(-error), thread-safe); never NULL. */
TEND_EXPORT const char *tend_strerror(int error);

#ifdef __cplusplus
}
#endif
#endif
