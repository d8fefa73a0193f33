/*
 * events.h - the live event stream behind GET /api/v1/events
 * (Server-Sent Events): service state and health changes, system phase
 * changes, task state changes.
 *
 * Events get increasing ids and are kept in a ring of the last
 * EVENTS_RING; a client that reconnects with Last-Event-ID resumes after
 * that id if it is still in the ring.  An idle stream gets a comment
 * heartbeat every EVENTS_HEARTBEAT_MS.  A stream with nothing to send is
 * a suspended MHD connection, resumed when an event is published, so
 * idle streams cost no CPU.
 */
#ifndef TEND_CLI_EVENTS_H
#define TEND_CLI_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#define EVENTS_RING 1024
#define EVENTS_HEARTBEAT_MS 15000
#define EVENTS_MAX_SUBSCRIBERS 64

struct api_server;
typedef struct events_hub events_hub;

int events_hub_new(struct api_server *srv, events_hub **ret);
/* Ends every stream (shutdown). */
void events_hub_close(events_hub *h);
void events_hub_free(events_hub *h);
/* Publishes an event of the given type whose data is the JSON text json
 * (len bytes, copied; written with jsonw.h).  Returns its id, 0 when the
 * hub is closed. */
uint64_t events_publish(events_hub *h, const char *type, const char *json, size_t len);
unsigned events_subscribers(const events_hub *h);

#endif
