/*
 * output.h - a service's stdout/stderr: read from a pipe on the loop,
 * split into lines, appended to <state_dir>/logs/<name>.log with size
 * rotation (name.log.1 ... name.log.<max_files>), and handed to a line
 * callback (tend prints them as "name | line").
 *
 * Lines longer than OUTPUT_MAX_LINE are split.  The pipe's read end lives
 * in tend (close-on-exec); the write end goes to the child and is closed
 * here right after spawning, so EOF means every holder exited.
 */
#ifndef TEND_LIB_OUTPUT_H
#define TEND_LIB_OUTPUT_H

#include <stdint.h>
#include <uv.h>

#define OUTPUT_MAX_LINE 8192

typedef struct logfile {
    char *path;
    int fd;                 /* -1 until the first line, or after an error */
    int open_error;         /* errno of the last failed open, 0 if none */
    uint64_t size, max_size;
    int max_files;
} logfile;

/* Prepares appending to path; the file is opened (created if missing) by
 * the first line written.  0 or -ENOMEM.  max_size 0 disables rotation. */
int logfile_open(logfile *lf, const char *path, uint64_t max_size, int max_files);
/* Appends len bytes and a newline, opening the file first when needed and
 * rotating first when the file would exceed max_size.  0 or -errno. */
int logfile_write_line(logfile *lf, const char *line, size_t len);
void logfile_close(logfile *lf);

/*
 * Creating a file is slow on some file systems (0.06-0.2 ms on the
 * reference VM's ext4, 0.01 ms on tmpfs): done at a service's first line,
 * it cost the loop ~1.5 ms per wave of ten services, exactly while they
 * start and compete for the CPU.  So the supervisor has the files created
 * ahead, empty, by a thread at SCHED_IDLE priority, which runs only when
 * nothing else wants a CPU; a line that comes first creates its file
 * itself, as it would without.
 */
typedef struct logfile_precreator logfile_precreator;
/* Starts creating each missing file of paths[0..n) in order (the paths
 * are copied).  NULL if nothing was started (nothing to do, no memory, no
 * thread): then every file is created by its first line. */
logfile_precreator *logfile_precreate(char *const *paths, size_t n);
/* Stops (no file is created after it returns) and frees; NULL is fine. */
void logfile_precreate_stop(logfile_precreator *p);

typedef void (*output_line_cb)(void *data, const char *line, size_t len);

typedef struct output_stream output_stream;

/*
 * Starts reading fd (takes ownership) on loop.  Each complete line goes to
 * lf (may be NULL) and cb.  At end of stream cb gets (NULL, 0) once; the
 * stream then frees itself.  output_stream_detach() frees it early.  0 or -errno.
 */
int output_stream_start(uv_loop_t *loop, int fd, logfile *lf, output_line_cb cb, void *data,
                        output_stream **ret);
/* Stops delivering to cb/lf (the owner is going away); the stream closes
 * its pipe and frees itself. */
void output_stream_detach(output_stream *s);

#endif
