/*
 * api-sessions.h - the daemon's session store (SPEC §2 sessions:, §5
 * Sessions): the in-memory TTL store (src/lib/session-store.h) behind the
 * /api/v1/sessions routes, its sweeper timer and, with sessions.persist,
 * its mirror in the durable store (STORE_OP_SESSION_*).  Loop thread only.
 */
#ifndef TEND_CLI_API_SESSIONS_H
#define TEND_CLI_API_SESSIONS_H

#include <tend/spec.h>
#include <uv.h>

#include "session-store.h"
#include "store.h"

typedef struct api_sessions api_sessions;

/*
 * Creates the session store from spec and arms the sweeper (every
 * cleanup_interval).  st: the durable store when sessions.persist is on
 * (writes are mirrored into it and the API answers once they are
 * durable), else NULL.  0 or -errno (-ENOMEM, -EINVAL).
 */
int api_sessions_new(uv_loop_t *loop, const tend_sessions_spec *spec, store *st,
                     api_sessions **ret);
/*
 * With a durable store: loads the unexpired sessions from it, running the
 * loop until the read completed (start-up, before the API serves).
 * Returns the number loaded or -errno (the store's error).
 */
int api_sessions_load(api_sessions *a);
/* Stops the sweeper and stops mirroring (close the durable store after
 * this).  The loop must run on to close the timer. */
void api_sessions_close(api_sessions *a);
/* After the loop has finished (every store op completed); NULL-safe;
 * returns NULL. */
api_sessions *api_sessions_free(api_sessions *a);
/* Counters for /metrics and GET /api/v1/sessions; NULL-safe (zeroes). */
void api_sessions_stats(api_sessions *a, session_store_stats *ret);

#endif
