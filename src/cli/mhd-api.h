/*
 * mhd-api.h - libmicrohttpd is dlopen()ed, not linked (mhd-api.c says
 * why).  The rest of the command calls MHD_* as declared by
 * <microhttpd.h>; mhd-api.c defines those functions and forwards them.
 */
#ifndef TEND_CLI_MHD_API_H
#define TEND_CLI_MHD_API_H

/* Starts loading the library on a thread of its own, so that the load
 * overlaps what the caller does next; the first MHD_* call waits for it.
 * Call it before starting other threads or processes that could fork. */
void mhd_api_preload(void);

#endif
