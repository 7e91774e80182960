/* Small file helpers: atomic replacement of a file, whole-file reads, read-only mappings. */
#ifndef QUILL_FILEIO_H
#define QUILL_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

/* A file written under a temporary name and moved over the real name only when it is
 * complete: temp file in the same directory, fflush, fsync, rename, fsync the directory.
 * A process killed at any moment leaves either the old file or the new one, never a mix. */
typedef struct {
    FILE *fp;       /* write the content here */
    char *path;     /* the final name */
    char *tmp_path; /* "<path>.tmp" */
} AtomicFile;

int atomic_file_open(AtomicFile *af, const char *path, Error *err);
/* Closes the file and renames it into place; on failure the temporary file is removed. */
int atomic_file_commit(AtomicFile *af, Error *err);
/* Closes and removes the temporary file; the real file is untouched. NULL-safe, idempotent. */
void atomic_file_abort(AtomicFile *af);

/* Writes len bytes to path atomically. */
int file_write_atomic(const char *path, const void *data, size_t len, Error *err);

/* Creates a directory and any missing parents (like mkdir -p); an existing one is fine. */
int dir_create_all(const char *path, Error *err);

/* Whether a and b name one file: the same device and inode, so that another spelling of a
 * path, a symbolic link and a hard link all count as the file itself. A path that does not
 * exist names no file (false). */
bool file_same(const char *a, const char *b);

/* Whether path names a directory (through a symbolic link too). */
bool path_is_directory(const char *path);

/* Reads a whole file into a NUL-terminated malloc'd buffer (the NUL is not counted in *len). */
int file_read_all(const char *path, char **data, size_t *len, Error *err);

/* Maps a whole file read-only (an empty file is an error). Pages are read on first touch, so
 * opening a model costs almost nothing until its weights are used, and the page cache is
 * shared between processes. One hazard remains: if another program truncates the file
 * while it is mapped, touching the lost pages raises SIGBUS. quill's own writers replace
 * files by rename (atomic_file_commit), which leaves an existing mapping intact. Unmap with
 * munmap(map, size). */
int file_map_readonly(const char *path, void **map, size_t *size, Error *err);
/* The same for a file already open (name is for messages); fd stays open. */
int file_map_fd_readonly(int fd, const char *name, void **map, size_t *size, Error *err);

#endif
