/* Small file helpers: atomic replacement of a file, whole-file reads, a content hash. */
#ifndef QUILL_FILEIO_H
#define QUILL_FILEIO_H

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

/* Reads a whole file into a NUL-terminated malloc'd buffer (the NUL is not counted in *len). */
int file_read_all(const char *path, char **data, size_t *len, Error *err);

/* 64-bit FNV-1a hash: chain calls by passing the previous result as `h`
 * (start with FNV1A64_INIT). Used to detect stale caches, not for security. */
#define FNV1A64_INIT 0xcbf29ce484222325ULL
uint64_t fnv1a64(uint64_t h, const void *data, size_t len);

#endif
