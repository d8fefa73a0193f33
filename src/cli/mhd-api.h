/*
 * mhd-api.h - libmicrohttpd is dlopen()ed, not linked (mhd-api.c says
 * why).  The rest of the command calls MHD_* as declared by
 * <microhttpd.h>; mhd-api.c defines those functions and forwards them.
 */
#ifndef TEND_CLI_MHD_API_H
#define TEND_CLI_MHD_API_H

/* Starts loading the library on a thread of its own, at nice 19, so that
 * the load overlaps what the caller does next; the first MHD_* call waits
 * for it.  A process forked meanwhile must only exec (the loader's locks
 * may be held at the fork), as tend's children do. */
void mhd_api_preload(void);

/* While the preload runs: a descriptor (an eventfd) that turns readable
 * when it has ended, so that the loop can wait for it instead of the first
 * MHD_* call.  -1 when no load is under way (none was started, or the
 * first MHD_* call has already waited for it; that call closes it). */
int mhd_api_load_fd(void);

#endif
