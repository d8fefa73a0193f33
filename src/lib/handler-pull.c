/*
 * handler-pull.c - pull queues (SPEC 5): no process runs here.  External
 * workers lease tasks over the API (POST /api/v1/queues/{q}/reserve, which
 * the engine answers from a CLAIM), then ack, nack or touch them.  The
 * queue's timeout is the lease: a lease that expires counts as a failed
 * attempt and the task is delivered again after its backoff.  The lease
 * logic lives in the engine (task-engine.c: waiters, held leases, the
 * deadline heap); this file holds what is specific to the pull protocol.
 */
#include "handler.h"

const char *pull_lease_expired_error(void) {
    return "lease expired: the worker neither acked, nacked nor touched the task within the queue's timeout";
}
