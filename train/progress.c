#include "progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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
                  bool may_draw, Error *err)
{
    memset(p, 0, sizeof *p);
    char path[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    if (log_truncate(path, resume_step, err) != 0)
        return -1;
    p->log = fopen(path, "a");
    if (!p->log)
        return error_set(err, "%s: cannot open for writing", path);
    p->out = stdout;
    p->columns = may_draw && isatty(STDOUT_FILENO) ? progress_terminal_columns(STDOUT_FILENO) : 0;
    p->total_steps = total_steps;
    p->log_every = log_every;
    return 0;
}

int progress_terminal_columns(int fd)
{
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0)
        return size.ws_col;
    const char *columns = getenv("COLUMNS");
    int n = columns ? atoi(columns) : 0;
    return n > 0 ? n : 80;
}

void progress_close(Progress *p)
{
    if (!p)
        return;
    if (p->line_open)
        fputc('\n', p->out);
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

/* One field of the live line and its rank: when the line is too wide for the terminal,
 * the fields of the lowest rank are left out first; those of rank KEPT and above (step and
 * loss) never are. */
typedef struct {
    char text[48];
    int rank;
} LineField;

enum { LIVE_FIELDS = 7, KEPT = 5 };

/* The fields, in the order they are shown. */
static void live_fields(const Progress *p, int step, float loss, float lr, float grad_norm,
                        double tokens_per_s, LineField f[LIVE_FIELDS])
{
    enum { BAR = 20 };
    char bar[BAR + 1], eta[32];
    int filled = p->total_steps > 0 ? (int)((long)BAR * step / p->total_steps) : BAR;
    for (int i = 0; i < BAR; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR] = '\0';
    format_duration(eta, sizeof eta, p->step_seconds * (p->total_steps - step));
    snprintf(f[0].text, sizeof f[0].text, "step %5d/%d", step, p->total_steps);
    snprintf(f[1].text, sizeof f[1].text, "[%s]", bar);
    snprintf(f[2].text, sizeof f[2].text, "loss %.4f", loss);
    snprintf(f[3].text, sizeof f[3].text, "lr %.2e", lr);
    snprintf(f[4].text, sizeof f[4].text, "gnorm %.3f", grad_norm);
    snprintf(f[5].text, sizeof f[5].text, "%.1fk tok/s", tokens_per_s / 1000.0);
    snprintf(f[6].text, sizeof f[6].text, "ETA %s", eta);
    static const int ranks[LIVE_FIELDS] = {6, 2, 5, 0, 1, 3, 4};
    for (int i = 0; i < LIVE_FIELDS; i++)
        f[i].rank = ranks[i];
}

/* The fields that fit in `width` characters, two spaces apart, into line: the lowest
 * ranks are dropped until the rest fit; step and loss alone are cut at the width. */
static void live_line_fit(const LineField f[LIVE_FIELDS], int width, char *line, size_t cap)
{
    bool shown[LIVE_FIELDS];
    int length = -2;
    for (int i = 0; i < LIVE_FIELDS; i++) {
        shown[i] = true;
        length += (int)strlen(f[i].text) + 2;
    }
    for (int rank = 0; length > width && rank < KEPT; rank++)
        for (int i = 0; i < LIVE_FIELDS; i++)
            if (f[i].rank == rank && shown[i]) {
                shown[i] = false;
                length -= (int)strlen(f[i].text) + 2;
            }
    size_t n = 0;
    for (int i = 0; i < LIVE_FIELDS; i++) {
        if (!shown[i])
            continue;
        const char *gap = n > 0 ? "  " : "";
        size_t gap_len = strlen(gap), text_len = strlen(f[i].text);
        if (n + gap_len + text_len >= cap)
            break;
        memcpy(line + n, gap, gap_len);
        memcpy(line + n + gap_len, f[i].text, text_len);
        n += gap_len + text_len;
    }
    line[width >= 0 && (size_t)width < n ? (size_t)width : n] = '\0';
}

/* The live line, redrawn in place: one character short of the terminal's width, since
 * some terminals wrap as soon as the last column is written. */
static void draw_live_line(Progress *p, int step, float loss, float lr, float grad_norm,
                           double tokens_per_s)
{
    LineField fields[LIVE_FIELDS];
    char line[LIVE_FIELDS * sizeof fields[0].text];
    live_fields(p, step, loss, lr, grad_norm, tokens_per_s, fields);
    live_line_fit(fields, p->columns - 1, line, sizeof line);
    fprintf(p->out, "\r%s\033[K", line);
    fflush(p->out);
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
    if (p->columns > 0)
        draw_live_line(p, step, loss, lr, grad_norm, tokens_per_s);
    else if (step % p->log_every == 0 || step == p->total_steps) {
        fprintf(p->out, "step %d/%d: loss %.4f, lr %.2e, grad norm %.3f, %.0f tokens/s\n", step,
                p->total_steps, loss, lr, grad_norm, tokens_per_s);
        fflush(p->out);
    }
}

void progress_message(Progress *p, const char *fmt, ...)
{
    if (p->line_open) {
        fprintf(p->out, "\r\033[K");
        p->line_open = false;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
}

void progress_eval(Progress *p, int step, float val_loss, const char *what, bool final)
{
    fprintf(p->log, "{\"step\":%d,\"val_loss\":%.6f%s}\n", step, val_loss,
            final ? ",\"final\":true" : "");
    fflush(p->log);
    progress_message(p, "step %d: %s loss %.4f", step, what, val_loss);
}

int progress_final_eval_logged(const char *dir, int step, bool *logged, Error *err)
{
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    *logged = false;
    if (access(path, F_OK) != 0)
        return 0;
    if (file_read_all(path, &text, &len, err) != 0)
        return -1;
    for (const char *line = text; line < text + len && !*logged;) {
        const char *end = memchr(line, '\n', (size_t)(text + len - line));
        int line_step, matched = 0; /* %n: how far the whole pattern matched, else 0 */
        sscanf(line, "{\"step\":%d,\"val_loss\":%*f,\"final\":true}%n", &line_step, &matched);
        *logged = matched > 0 && line_step == step;
        line = end ? end + 1 : text + len;
    }
    free(text);
    return 0;
}
