/*
 * tend/tend.h - libtend, the whole public API in one include.
 *
 *   #include <tend/tend.h>
 *   cc prog.c $(pkg-config --cflags --libs tend)
 *
 * See docs/libtend.md for the threading rules, ownership and a
 * getting-started example.
 */
#ifndef TEND_TEND_H
#define TEND_TEND_H

#include <tend/common.h>
#include <tend/component.h>
#include <tend/health.h>
#include <tend/runtime.h>
#include <tend/sessions.h>
#include <tend/spec.h>
#include <tend/supervisor.h>
#include <tend/tasks.h>

#endif
