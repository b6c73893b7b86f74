/* The CPU core of the Lovász extension: errors, drop, sort and sweep of every row, fused.
 *
 * The PyTorch path (lovasz.py) spends most of a call in some thirty ATen passes over the kept
 * pixels (gathers, compaction, key packing, two sorts, prefix counts, increments, a scatter back
 * to position order). Here each row is done in three reads of its planes and one radix sort of
 * its kept pixels, in cache, in parallel (OpenMP, sharing PyTorch's libgomp) over rows — or over
 * parts of rows when there are fewer rows than threads:
 *
 *   lovasz_count:  per row, the foreground count and the keep threshold (smallest foreground
 *                  error, or the largest error when there is no foreground); per part, how many
 *                  pixels pass it;
 *   lovasz_rows:   per part, the kept pixels as (int key, index) pairs and their positions, and
 *                  an LSD radix sort of the pairs; per row, one sweep that merges its parts'
 *                  sorted runs, sums the loss (float64) and writes each kept pixel's gradient.
 *
 * The semantics, the key encoding and the keep rule are lovasz.py's; its docstrings say why they
 * are exact. Built on first use by native.py; every caller falls back to PyTorch without it.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *x;       /* [B, C, S] float32: probabilities, or logits for the hinge */
    const void *labels;   /* [B, S] labels (dense = 0), or [B, C, S] 0/1/void targets (dense = 1) */
    int64_t label_bytes;  /* 1 (uint8) or 4 (int32) */
    int64_t dense;
    int64_t B, C, S, R;
    const int64_t *image;   /* [R] image of each row, or NULL: batch-level rows span every image */
    const int64_t *channel; /* [R] channel of x that each row reads */
    const int64_t *target;  /* [R] foreground label of each row (labels mode) */
    const float *sign;      /* [R] +1 / -1, or NULL */
    double offset;          /* errors: (1 + offset) - t on the foreground, t elsewhere, t = s x + offset */
    int64_t void_label;     /* label of pixels that take no part, or -1 */
    int64_t in_x;           /* positions in x [B, C, S] (1) or in the rows' [G, R, S] layout (0) */
} Spec;

typedef struct {
    const float *x;
    const uint8_t *l8;
    const int32_t *l32;
    int64_t n;         /* pixels in the block */
    int64_t position;  /* position of the block's first pixel in the output layout */
    int64_t target, void_label;
    float sign, offset, fg_offset;
} Block;

static int64_t blocks_of(const Spec *sp) { return sp->image ? 1 : sp->B; }

static Block block(const Spec *sp, int64_t r, int64_t g) {
    Block bl;
    int64_t b = sp->image ? sp->image[r] : g;
    int64_t plane = (b * sp->C + sp->channel[r]) * sp->S;
    int64_t at = sp->dense ? plane : b * sp->S;
    bl.x = sp->x + plane;
    bl.l8 = sp->label_bytes == 1 ? (const uint8_t *)sp->labels + at : NULL;
    bl.l32 = sp->label_bytes == 4 ? (const int32_t *)sp->labels + at : NULL;
    bl.n = sp->S;
    bl.position = sp->in_x ? plane : (g * sp->R + r) * sp->S;
    bl.target = sp->dense ? 1 : sp->target[r];
    bl.void_label = sp->void_label;
    bl.sign = sp->sign ? sp->sign[r] : 1.0f;
    bl.offset = (float)sp->offset;
    bl.fg_offset = (float)(1.0 + sp->offset);
    return bl;
}

/* The pixel's label, its error and whether it is foreground; returns 0 for a void pixel. */
static inline int pixel(const Block *bl, int64_t i, float *error, int *fg) {
    int64_t label = bl->l8 ? (int64_t)bl->l8[i] : (int64_t)bl->l32[i];
    if (label == bl->void_label) return 0;
    float t = bl->sign * bl->x[i] + bl->offset;
    *fg = label == bl->target;
    *error = *fg ? bl->fg_offset - t : t;
    return 1;
}

/* Every row's pixels (its blocks one after another, G * S of them) are split into ``parts`` equal
 * ranges: task t covers part t % parts of row t / parts, so that a call with fewer rows than
 * threads still keeps every thread busy. */
typedef struct {
    int64_t row, lo, hi;
} Task;

static Task task(const Spec *sp, int64_t parts, int64_t t) {
    Task tk;
    int64_t length = blocks_of(sp) * sp->S, part = t % parts;
    tk.row = t / parts;
    tk.lo = length * part / parts;
    tk.hi = length * (part + 1) / parts;
    return tk;
}

/* Runs BODY for every non-void pixel of the task, with ``e``, ``fg`` and ``at`` (its position in
 * the output layout) defined. */
#define FOR_PIXELS(sp, tk, BODY)                                                   \
    for (int64_t g_ = (tk).lo / (sp)->S; g_ * (sp)->S < (tk).hi; g_++) {           \
        Block bl_ = block((sp), (tk).row, g_);                                     \
        int64_t first_ = (tk).lo - g_ * (sp)->S, last_ = (tk).hi - g_ * (sp)->S;   \
        if (first_ < 0) first_ = 0;                                                \
        if (last_ > bl_.n) last_ = bl_.n;                                          \
        for (int64_t i_ = first_; i_ < last_; i_++) {                              \
            float e;                                                               \
            int fg;                                                                \
            if (!pixel(&bl_, i_, &e, &fg)) continue;                               \
            int64_t at = bl_.position + i_;                                        \
            (void)at;                                                              \
            BODY                                                                   \
        }                                                                          \
    }

/* Per row: the foreground count and the keep threshold — the smallest foreground error, or the
 * largest error when there is no foreground, and never below FLT_MIN (zero errors add nothing);
 * per task: how many pixels pass it. */
int lovasz_count(const Spec *sp, int64_t parts, int64_t *gts, float *threshold, int64_t *kept,
                 int threads) {
    int64_t n_tasks = sp->R * parts;
    int64_t *fg_count = (int64_t *)malloc(sizeof(int64_t) * (size_t)n_tasks);
    float *min_fg = (float *)malloc(sizeof(float) * (size_t)n_tasks);
    float *max_error = (float *)malloc(sizeof(float) * (size_t)n_tasks);
    if (!fg_count || !min_fg || !max_error) {
        free(fg_count), free(min_fg), free(max_error);
        return 1;
    }
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tasks; t++) {
            Task tk = task(sp, parts, t);
            int64_t n_fg = 0;
            float lo = FLT_MAX * 2.0f, hi = -FLT_MAX * 2.0f; /* +inf, -inf */
            FOR_PIXELS(sp, tk, {
                if (fg) {
                    n_fg++;
                    if (e < lo) lo = e;
                }
                if (e > hi) hi = e;
            })
            fg_count[t] = n_fg, min_fg[t] = lo, max_error[t] = hi;
        }
#pragma omp single
        for (int64_t r = 0; r < sp->R; r++) {
            int64_t n_fg = 0;
            float lo = FLT_MAX * 2.0f, hi = -FLT_MAX * 2.0f;
            for (int64_t t = r * parts; t < (r + 1) * parts; t++) {
                n_fg += fg_count[t];
                if (min_fg[t] < lo) lo = min_fg[t];
                if (max_error[t] > hi) hi = max_error[t];
            }
            float th = n_fg > 0 ? lo : hi;
            gts[r] = n_fg;
            threshold[r] = th > FLT_MIN ? th : FLT_MIN;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tasks; t++) {
            Task tk = task(sp, parts, t);
            float th = threshold[tk.row];
            int64_t n = 0;
            FOR_PIXELS(sp, tk, { n += e >= th; })
            kept[t] = n;
        }
    }
    free(fg_count), free(min_fg), free(max_error);
    return 0;
}

/* Ascending uint32 keys = decreasing error, foreground first at ties; the low bit is 1 for
 * background. A non-negative float's bits keep its order. */
static inline uint32_t error_key(float e, int fg) {
    uint32_t bits;
    memcpy(&bits, &e, 4);
    return ((0x7FFFFFFFu - bits) << 1) | (uint32_t)(!fg);
}

static inline float key_error(uint32_t key) {
    uint32_t bits = 0x7FFFFFFFu - (key >> 1);
    float e;
    memcpy(&e, &bits, 4);
    return e;
}

#define DIGIT 11
#define BUCKETS (1 << DIGIT)

/* LSD radix sort of (key, value) pairs; returns which buffer pair holds the result (0: k, v). */
static int radix_sort(uint32_t *k, uint32_t *v, uint32_t *k2, uint32_t *v2, int64_t n) {
    static const int passes = (32 + DIGIT - 1) / DIGIT;
    uint32_t hist[3][BUCKETS];
    memset(hist, 0, sizeof(hist));
    for (int64_t i = 0; i < n; i++) {
        uint32_t key = k[i];
        hist[0][key & (BUCKETS - 1)]++;
        hist[1][(key >> DIGIT) & (BUCKETS - 1)]++;
        hist[2][key >> (2 * DIGIT)]++;
    }
    int which = 0;
    for (int p = 0; p < passes; p++) {
        uint32_t *h = hist[p];
        int shift = p * DIGIT;
        if (n == 0 || h[(k[0] >> shift) & (BUCKETS - 1)] == (uint32_t)n) continue;  /* one digit */
        uint32_t sum = 0;
        for (int d = 0; d < BUCKETS; d++) {
            uint32_t c = h[d];
            h[d] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) {
            uint32_t key = k[i];
            uint32_t at = h[(key >> shift) & (BUCKETS - 1)]++;
            k2[at] = key;
            v2[at] = v[i];
        }
        uint32_t *t = k; k = k2; k2 = t;
        t = v; v = v2; v2 = t;
        which ^= 1;
    }
    return which;
}

/* A task's kept pixels as sorted (key, index) pairs in k, v (n of them; index: the pixel's place
 * among its row's kept pixels, which are laid out task after task), and their positions. */
static void sort_task(const Spec *sp, Task tk, float th, int64_t n, int64_t first, uint32_t *k,
                      uint32_t *v, void *position, int position_bytes, uint32_t *scratch) {
    int64_t j = 0;
    FOR_PIXELS(sp, tk, {
        if (e >= th && j < n) {
            k[j] = error_key(e, fg);
            v[j] = (uint32_t)(first + j);
            if (position_bytes == 4)
                ((int32_t *)position)[j] = (int32_t)at;
            else
                ((int64_t *)position)[j] = at;
            j++;
        }
    })
    if (radix_sort(k, v, scratch, scratch + n, n)) {
        memcpy(k, scratch, sizeof(uint32_t) * (size_t)n);
        memcpy(v, scratch + n, sizeof(uint32_t) * (size_t)n);
    }
}

/* One row: its tasks' sorted runs merged in one sweep that sums the loss (float64) and writes
 * each kept pixel's gradient (with respect to its error) at its index. After the j-th pixel in
 * sorted order, inter = |F| - foreground so far and union = |F| + background so far; the prefix
 * Jaccard loss is 1 - inter / union, and the pixel's increment the change it makes. */
static double sweep_row(int64_t gts, int64_t parts, const int64_t *kept, const int64_t *offsets,
                        const uint32_t *keys, const uint32_t *vals, float *grad) {
    int64_t cursor[64], end[64];
    int64_t n = 0;
    for (int64_t p = 0; p < parts; p++) {
        cursor[p] = offsets[p];
        end[p] = offsets[p] + kept[p];
        n += kept[p];
    }
    double loss = 0.0;
    int64_t fg_seen = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t best = -1;
        uint32_t key = 0xFFFFFFFFu;
        for (int64_t p = 0; p < parts; p++)
            if (cursor[p] < end[p] && (best < 0 || keys[cursor[p]] < key)) {
                best = p;
                key = keys[cursor[p]];
            }
        uint32_t index = vals[cursor[best]++];
        int background = key & 1u;
        fg_seen += !background;
        double inter = (double)(gts - fg_seen);
        double uni = (double)(gts + (j + 1 - fg_seen));
        double inc;
        if (!background)
            inc = 1.0 / uni;
        else
            inc = uni <= 1.0 ? 1.0 : inter / (uni * (uni - 1.0));
        loss += (double)key_error(key) * inc;
        grad[index] = (float)(background ? inc : -inc);
    }
    return loss;
}

/* kept, offsets [R * parts]: each task's kept pixels and where they start in position / grad
 * (rows contiguous, tasks in order). Returns 1 when out of memory. */
int lovasz_rows(const Spec *sp, int64_t parts, const int64_t *gts, const float *threshold,
                const int64_t *kept, const int64_t *offsets, void *position,
                int64_t position_bytes, float *grad, double *losses, int threads) {
    int64_t n_tasks = sp->R * parts, total = 0, largest = 0;
    if (parts > 64) return 2;
    for (int64_t t = 0; t < n_tasks; t++) {
        total += kept[t];
        if (kept[t] > largest) largest = kept[t];
    }
    uint32_t *keys = (uint32_t *)malloc(sizeof(uint32_t) * 2 * (size_t)(total + 1));
    if (!keys) return 1;
    uint32_t *vals = keys + total;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        uint32_t *scratch = (uint32_t *)malloc(sizeof(uint32_t) * 2 * (size_t)(largest + 1));
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < n_tasks; t++) {
                Task tk = task(sp, parts, t);
                int64_t at = offsets[t], first = at - offsets[tk.row * parts];
                sort_task(sp, tk, threshold[tk.row], kept[t], first, keys + at, vals + at,
                          (char *)position + at * position_bytes, (int)position_bytes, scratch);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t r = 0; r < sp->R; r++) {
                int64_t t = r * parts;
                losses[r] = sweep_row(gts[r], parts, kept + t, offsets + t, keys, vals,
                                      grad + offsets[t]);
            }
        }
        free(scratch);
    }
    free(keys);
    return failed;
}

/* First index in [lo, hi) of an increasing position array whose value is >= value. */
static int64_t lower_bound(const void *position, int position_bytes, int64_t lo, int64_t hi,
                           int64_t value) {
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int64_t at = position_bytes == 4 ? ((const int32_t *)position)[mid]
                                         : ((const int64_t *)position)[mid];
        if (at < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

#define CHUNK 4096

/* The logits' gradient of a weighted sum of row losses read from softmax probabilities p.
 *
 * With g the rows' gradient on the probabilities (nonzero only at the kept pixels: grad[k] times
 * the row's weight, at position[k] in p [B, C, S]), the softmax gives p * (g - sum_c g_c p_c).
 * Each task (an image's range of CHUNK pixels) finds its kept pixels in every row by binary
 * search (each row's positions increase), accumulates the dot products, writes -p * dot over
 * all channels and adds g * p at the kept pixels: one read of p and one write of the gradient,
 * in place of a dense g and a generic softmax backward. */
int lovasz_softmax_backward(const float *p, int64_t B, int64_t C, int64_t S, int64_t R,
                            const int64_t *image, const int64_t *channel, const int64_t *row_start,
                            const void *position, int64_t position_bytes, const float *grad,
                            const float *weight, float *out, int threads) {
    int64_t chunks = (S + CHUNK - 1) / CHUNK, n_tasks = B * chunks;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        float *dot = (float *)malloc(sizeof(float) * CHUNK);
        if (!dot) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < n_tasks; t++) {
                int64_t b = t / chunks, s0 = (t % chunks) * CHUNK;
                int64_t n = S - s0 < CHUNK ? S - s0 : CHUNK;
                memset(dot, 0, sizeof(float) * (size_t)n);
                for (int pass = 0; pass < 2; pass++) {
                    for (int64_t r = 0; r < R; r++) {
                        if (image && image[r] != b) continue;
                        int64_t first = (b * C + channel[r]) * S + s0;
                        int64_t lo = lower_bound(position, (int)position_bytes, row_start[r],
                                                 row_start[r + 1], first);
                        int64_t hi = lower_bound(position, (int)position_bytes, lo,
                                                 row_start[r + 1], first + n);
                        float w = weight[r];
                        for (int64_t k = lo; k < hi; k++) {
                            int64_t at = position_bytes == 4 ? ((const int32_t *)position)[k]
                                                             : ((const int64_t *)position)[k];
                            float gp = w * grad[k] * p[at];
                            if (pass == 0)
                                dot[at - first] += gp;
                            else
                                out[at] += gp;
                        }
                    }
                    if (pass == 0)
                        for (int64_t c = 0; c < C; c++) {
                            const float *pc = p + (b * C + c) * S + s0;
                            float *oc = out + (b * C + c) * S + s0;
                            for (int64_t i = 0; i < n; i++) oc[i] = -pc[i] * dot[i];
                        }
                }
            }
        }
        free(dot);
    }
    return failed;
}
