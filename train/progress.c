#include "progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"

/* Keeps the lines of log.jsonl whose step is at most keep_until. */
static int log_truncate(const char *path, int keep_until, Error *err)
{
    char *text;
    size_t len;
    if (access(path, F_OK) != 0)
        return 0;
    if (file_read_all(path, &text, &len, err) != 0)
        return -1;
    char *kept = malloc(len + 1);
    size_t n = 0;
    for (char *line = text; kept && line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t line_len = end ? (size_t)(end - line) + 1 : (size_t)(text + len - line);
        int step;
        if (sscanf(line, "{\"step\":%d", &step) == 1 && step <= keep_until) {
            memcpy(kept + n, line, line_len);
            n += line_len;
        }
        line += line_len;
    }
    int status = kept ? file_write_atomic(path, kept, n, err) : error_set(err, "out of memory");
    free(kept);
    free(text);
    return status;
}

int progress_open(Progress *p, const char *dir, int resume_step, int total_steps, int log_every,
                  Error *err)
{
    memset(p, 0, sizeof *p);
    char path[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    if (log_truncate(path, resume_step, err) != 0)
        return -1;
    p->log = fopen(path, "a");
    if (!p->log)
        return error_set(err, "%s: cannot open for writing", path);
    p->tty = isatty(STDOUT_FILENO);
    p->total_steps = total_steps;
    p->log_every = log_every;
    return 0;
}

void progress_close(Progress *p)
{
    if (!p)
        return;
    if (p->line_open)
        fputc('\n', stdout);
    if (p->log)
        fclose(p->log);
    memset(p, 0, sizeof *p);
}

static void format_duration(char *out, size_t cap, double seconds)
{
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(out, cap, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(out, cap, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(out, cap, "%lds", s);
}

static void draw_live_line(Progress *p, int step, float loss, float lr, float grad_norm,
                           double tokens_per_s)
{
    enum { BAR = 20 };
    char bar[BAR + 1], eta[32];
    int filled = p->total_steps > 0 ? (int)((long)BAR * step / p->total_steps) : BAR;
    for (int i = 0; i < BAR; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR] = '\0';
    format_duration(eta, sizeof eta, p->step_seconds * (p->total_steps - step));
    printf("\rstep %5d/%d [%s] loss %.4f  lr %.2e  gnorm %.3f  %.1fk tok/s  ETA %s\033[K", step,
           p->total_steps, bar, loss, lr, grad_norm, tokens_per_s / 1000.0, eta);
    fflush(stdout);
    p->line_open = true;
}

void progress_step(Progress *p, int step, float loss, float lr, float grad_norm,
                   double tokens_per_s, double seconds)
{
    /* exponential moving average: the ETA follows speed changes without jumping */
    p->step_seconds = p->step_seconds == 0.0 ? seconds : 0.9 * p->step_seconds + 0.1 * seconds;
    fprintf(p->log, "{\"step\":%d,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,"
                    "\"tokens_per_s\":%.1f}\n",
            step, loss, lr, grad_norm, tokens_per_s);
    fflush(p->log);
    if (p->tty)
        draw_live_line(p, step, loss, lr, grad_norm, tokens_per_s);
    else if (step % p->log_every == 0 || step == p->total_steps) {
        printf("step %d/%d: loss %.4f, lr %.2e, grad norm %.3f, %.0f tokens/s\n", step,
               p->total_steps, loss, lr, grad_norm, tokens_per_s);
        fflush(stdout);
    }
}

void progress_message(Progress *p, const char *fmt, ...)
{
    if (p->line_open) {
        printf("\r\033[K");
        p->line_open = false;
    }
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void progress_eval(Progress *p, int step, float val_loss, const char *what)
{
    fprintf(p->log, "{\"step\":%d,\"val_loss\":%.6f}\n", step, val_loss);
    fflush(p->log);
    progress_message(p, "step %d: %s loss %.4f", step, what, val_loss);
}
