/* The CPU core of the Lovász extension: errors, drop, sort and sweep of every row, fused.
 *
 * The PyTorch path (lovasz.py) spends most of a call in some thirty ATen passes over the kept
 * pixels (gathers, compaction, key packing, two sorts, prefix counts, increments, a scatter back
 * to position order). Here each row is done in two reads of its planes, a scatter of its kept
 * pixels into buckets of its key range and small sorts in cache, in parallel (OpenMP, sharing
 * PyTorch's libgomp) over rows — or over parts of rows when there are fewer rows than threads:
 *
 *   lovasz_count:  per row, a vectorised pass for the foreground count and the keep threshold
 *                  (smallest foreground error, or the largest error when there is none); per
 *                  part, a pass that keeps the pixels above it, as int keys (the error's bits
 *                  and the foreground flag) and positions, and counts them per bucket of the
 *                  row's key range;
 *   lovasz_rows:   per part, a scatter of its kept pixels into their buckets; per range of
 *                  buckets, small in-cache sorts and one sweep that sums the loss (float64) and
 *                  writes each kept pixel's gradient;
 *   lovasz_softmax_backward: the logits' gradient through the softmax.
 *
 * The semantics, the key encoding and the keep rule are lovasz.py's; its docstrings say why they
 * are exact. Built on first use by native.py; every caller falls back to PyTorch without it.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#else /* built without OpenMP: one thread, the pragmas are ignored */
static int omp_get_thread_num(void) { return 0; }
#endif /* without OpenMP the pragmas are ignored: one thread */
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
} Spec;

typedef struct {
    const float *x;
    const uint8_t *l8;
    const int32_t *l32;
    int64_t n;         /* pixels in the block */
    int64_t position;  /* position of the block's first pixel in x */
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
    bl.position = plane;
    bl.target = sp->dense ? 1 : sp->target[r];
    bl.void_label = sp->void_label;
    bl.sign = sp->sign ? sp->sign[r] : 1.0f;
    bl.offset = (float)sp->offset;
    bl.fg_offset = (float)(1.0 + sp->offset);
    return bl;
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

/* Runs BODY for every pixel of the task, with its error ``e``, ``fg`` and ``valid`` (0 for a void
 * pixel) and ``at`` (its position in x) defined, in a loop specialised for the
 * labels' type and written without branches, so that the compiler can vectorise it (LOOP is
 * an optional ``_Pragma``). Foreground pixels are never void. */
#define PIXEL_LOOP(LABELS, LOOP, BODY)                                             \
    LOOP for (int64_t i_ = first_; i_ < last_; i_++) {                             \
        int64_t label_ = (LABELS)[i_];                                             \
        float t_ = bl_.sign * bl_.x[i_] + bl_.offset;                              \
        int fg = label_ == bl_.target;                                             \
        int valid = label_ != bl_.void_label;                                      \
        float e = fg ? bl_.fg_offset - t_ : t_;                                    \
        int64_t at = bl_.position + i_;                                            \
        (void)at, (void)valid;                                                     \
        BODY                                                                       \
    }

#define FOR_PIXELS(sp, tk, LOOP, BODY)                                             \
    for (int64_t g_ = (tk).lo / (sp)->S; g_ * (sp)->S < (tk).hi; g_++) {           \
        Block bl_ = block((sp), (tk).row, g_);                                     \
        int64_t first_ = (tk).lo - g_ * (sp)->S, last_ = (tk).hi - g_ * (sp)->S;   \
        if (first_ < 0) first_ = 0;                                                \
        if (last_ > bl_.n) last_ = bl_.n;                                          \
        if (bl_.l8)                                                                \
            PIXEL_LOOP(bl_.l8, LOOP, BODY)                                         \
        else                                                                       \
            PIXEL_LOOP(bl_.l32, LOOP, BODY)                                        \
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

/* Spill buffers: each thread of a call appends the kept pixels of its tasks (keys, then
 * positions) to one buffer that the call owns until lovasz_free. Buffers come from a small
 * process-wide pool and go back to it, so that a training loop writes into warm pages instead of
 * paying the page faults (and glibc's trims) of fresh buffers at every step. A buffer belongs to
 * one call at a time and to no thread: a change of thread count, or two Python threads calling
 * at once, cannot mix them. */
typedef struct {
    char *data;
    int64_t capacity, used;
} Spill;

#define POOL_SIZE 64
static Spill pool[POOL_SIZE];
static int pool_count;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static Spill pool_take(void) {
    Spill s = {NULL, 0, 0};
    pthread_mutex_lock(&pool_lock);
    if (pool_count > 0) s = pool[--pool_count];
    pthread_mutex_unlock(&pool_lock);
    s.used = 0;
    return s;
}

static void pool_give(Spill s) {
    if (!s.data) return;
    pthread_mutex_lock(&pool_lock);
    if (pool_count < POOL_SIZE) pool[pool_count++] = s, s.data = NULL;
    pthread_mutex_unlock(&pool_lock);
    free(s.data);
}

/* Room for ``bytes`` more at the end of the buffer (which may move: callers keep offsets); never
 * NULL but for want of memory, even for 0 bytes (an empty part) in a buffer yet to be allocated. */
static char *spill_reserve(Spill *s, int64_t bytes) {
    if (!s->data || s->used + bytes > s->capacity) {
        int64_t capacity = 2 * (s->used + bytes) + 4096;
        char *data = (char *)realloc(s->data, (size_t)capacity);
        if (!data) return NULL;
        s->data = data, s->capacity = capacity;
    }
    return s->data + s->used;
}

/* The kept pixels of every task, as lovasz_count found them, for lovasz_rows: task t's keys,
 * then positions, in pixel order, in spill[owner[t]] from offset[t]. The caller hands the list
 * back with lovasz_free, which returns the buffers to the pool. */
typedef struct {
    int slots;
    int *owner;
    int64_t *offset;
    Spill *spill; /* [slots]: one per thread of the call's team */
} Kept;

void lovasz_free(Kept *kept) {
    if (!kept) return;
    if (kept->spill)
        for (int i = 0; i < kept->slots; i++) pool_give(kept->spill[i]);
    free(kept->owner), free(kept->offset), free(kept->spill), free(kept);
}

/* The version of the interface below (the Spec layout and every exported signature): native.py
 * refuses a library whose number differs from its own, and rebuilds it. */
#define LOVASZ_ABI 4
#ifndef LOVASZ_SOURCE_HASH
#define LOVASZ_SOURCE_HASH "unknown"
#endif

int lovasz_abi(void) { return LOVASZ_ABI; }

/* The hash of the source this library was built from (set by the build), so that a library
 * built from an older source is never taken for this one. */
const char *lovasz_source_hash(void) { return LOVASZ_SOURCE_HASH; }

/* The number of threads a parallel region of ``threads`` gets: what the tests read to check
 * that torch.set_num_threads bounds the kernel. */
int lovasz_team_size(int threads) {
    int size = 1;
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
#pragma omp single
        size = omp_get_num_threads();
#endif
    }
    return size;
}

/* The statistics pass over one task's pixels: its foreground count (returned), and in st[5]
 * the smallest foreground error, the largest valid error, the smallest valid error >= FLT_MIN
 * and, with ``range``, the smallest and largest x at valid pixels (NaN for both where one is
 * NaN; else +-inf: the range costs a sixth of the pass). Built for AVX2 too where the compiler
 * can (twice the lanes). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static int64_t task_stats(const Spec *sp, Task tk, int range, float *st) {
    int64_t n_fg = 0, n_nan = 0;
    float lo = INFINITY, hi = -INFINITY, pos = INFINITY, xlo = INFINITY, xhi = -INFINITY;
#define STATS_PASS(RANGE)                                                                   \
    FOR_PIXELS(sp, tk,                                                                      \
               _Pragma("omp simd reduction(+:n_fg,n_nan) reduction(min:lo,pos,xlo) reduction(max:hi,xhi)"), \
               {                                                                            \
                   RANGE                                                                    \
                   float if_fg = fg ? e : INFINITY;                                         \
                   float if_valid = valid ? e : -INFINITY;                                  \
                   float if_positive = valid && e >= FLT_MIN ? e : INFINITY;                \
                   n_fg += fg;                                                              \
                   lo = if_fg < lo ? if_fg : lo;                                            \
                   hi = if_valid > hi ? if_valid : hi;                                      \
                   pos = if_positive < pos ? if_positive : pos;                             \
               })
    if (range) {
        STATS_PASS(float xv = valid ? bl_.x[i_] : 0.5f; xlo = xv < xlo ? xv : xlo;
                   xhi = xv > xhi ? xv : xhi; n_nan += xv != xv;)
    } else {
        STATS_PASS()
    }
#undef STATS_PASS
    st[0] = lo, st[1] = hi, st[2] = pos, st[3] = xlo, st[4] = xhi;
    if (n_nan) st[3] = st[4] = NAN; /* min/max skip NaN: the range must show it */
    return n_fg;
}

/* Per row: the foreground count, the keep threshold — the smallest foreground error, or the
 * largest error when there is no foreground, and never below FLT_MIN (zero errors add nothing) —
 * and the bucket of each kept key: (key - key_min[r]) >> shift[r] < buckets. Buckets split the
 * row's key range into consecutive intervals, so that sorting every bucket sorts the row; a
 * float's bits grow with its exponent, so the buckets follow the errors' scale.
 * Per task: hist / fg_hist [buckets], its kept (and foreground) pixels in each bucket, and kept,
 * their sum. x_range [2] (or NULL): the smallest and largest value of x at the valid pixels
 * read (what the caller checks of probabilities, at no extra pass). */
int lovasz_count(const Spec *sp, int64_t parts, int64_t buckets, int64_t *gts, float *threshold,
                 uint32_t *key_min, int32_t *shift, int32_t *hist, int32_t *fg_hist,
                 int64_t *kept, float *x_range, Kept **found, int threads) {
    int64_t n_tasks = sp->R * parts;
    Kept *list = (Kept *)calloc(1, sizeof(Kept));
    if (list) {
        size_t tasks = (size_t)(n_tasks > 0 ? n_tasks : 1);
        list->slots = threads > 0 ? threads : 1;
        list->owner = (int *)calloc(tasks, sizeof(int));
        list->offset = (int64_t *)calloc(tasks, sizeof(int64_t));
        list->spill = (Spill *)calloc((size_t)list->slots, sizeof(Spill));
    }
    if (!list || !list->owner || !list->offset || !list->spill) {
        lovasz_free(list);
        return 1;
    }
    *found = list;
    int out_of_memory = 0;
    int64_t *fg_count = (int64_t *)malloc(sizeof(int64_t) * (size_t)n_tasks);
    float *min_fg = (float *)malloc(sizeof(float) * (size_t)n_tasks);
    float *max_error = (float *)malloc(sizeof(float) * (size_t)n_tasks);
    float *min_positive = (float *)malloc(sizeof(float) * (size_t)n_tasks);
    float *x_low = (float *)malloc(sizeof(float) * (size_t)n_tasks);
    float *x_high = (float *)malloc(sizeof(float) * (size_t)n_tasks);
    if (!fg_count || !min_fg || !max_error || !min_positive || !x_low || !x_high) {
        free(fg_count), free(min_fg), free(max_error), free(min_positive), free(x_low), free(x_high);
        lovasz_free(list);
        *found = NULL;
        return 1;
    }
#pragma omp parallel num_threads(threads)
    {
        list->spill[omp_get_thread_num()] = pool_take();
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tasks; t++) {
            Task tk = task(sp, parts, t);
            float st[5];
            fg_count[t] = task_stats(sp, tk, x_range != NULL, st);
            min_fg[t] = st[0], max_error[t] = st[1], min_positive[t] = st[2];
            x_low[t] = st[3], x_high[t] = st[4];
        }
#pragma omp single
        if (x_range) {
            x_range[0] = INFINITY, x_range[1] = -INFINITY;
            for (int64_t t = 0; t < n_tasks; t++) {
                if (x_low[t] < x_range[0] || x_low[t] != x_low[t]) x_range[0] = x_low[t];
                if (x_high[t] > x_range[1] || x_high[t] != x_high[t]) x_range[1] = x_high[t];
            }
        }
#pragma omp single
        for (int64_t r = 0; r < sp->R; r++) {
            int64_t n_fg = 0;
            float lo = INFINITY, hi = -INFINITY, pos = INFINITY;
            for (int64_t t = r * parts; t < (r + 1) * parts; t++) {
                n_fg += fg_count[t];
                if (min_fg[t] < lo) lo = min_fg[t];
                if (max_error[t] > hi) hi = max_error[t];
                if (min_positive[t] < pos) pos = min_positive[t];
            }
            float th = n_fg > 0 ? lo : hi;
            float smallest = th >= FLT_MIN ? th : pos; /* the smallest kept error */
            th = th > FLT_MIN ? th : FLT_MIN;
            gts[r] = n_fg;
            threshold[r] = th;
            /* Kept keys lie in [key(hi, foreground), key(smallest, background)]. */
            int any = hi >= th && smallest <= hi;
            uint32_t first = any ? error_key(hi, 1) : 0u;
            uint32_t range = any ? error_key(smallest, 0) - first : 0u;
            int32_t sh = 0;
            while ((range >> sh) >= (uint32_t)buckets) sh++;
            key_min[r] = first;
            shift[r] = sh;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tasks; t++) {
            Task tk = task(sp, parts, t);
            float th = threshold[tk.row];
            uint32_t first = key_min[tk.row];
            int32_t sh = shift[tk.row];
            int32_t *h = hist + t * buckets, *hf = fg_hist + t * buckets;
            memset(h, 0, sizeof(int32_t) * (size_t)buckets);
            memset(hf, 0, sizeof(int32_t) * (size_t)buckets);
            int64_t n = 0, length = tk.hi - tk.lo;
            int me = omp_get_thread_num();
            Spill *spill = &list->spill[me];
            char *room = spill_reserve(spill, length * 8);
            kept[t] = 0;
            if (!room) {
#pragma omp atomic write
                out_of_memory = 1;
                continue;
            }
            list->owner[t] = me;
            list->offset[t] = spill->used;
            uint32_t *keys = (uint32_t *)room;
            int32_t *positions = (int32_t *)(room + 4 * length);
            FOR_PIXELS(sp, tk, , {
                if (valid && e >= th) {
                    uint32_t key = error_key(e, fg) - first;
                    h[key >> sh]++;
                    hf[key >> sh] += fg;
                    keys[n] = key;
                    positions[n] = (int32_t)at;
                    n++;
                }
            })
            kept[t] = n;
            /* Keys, then positions, packed: the task's room shrinks to what it kept. */
            memmove(room + 4 * n, room + 4 * length, (size_t)(n * 4));
            spill->used += n * 8;
        }
    }
    free(fg_count), free(min_fg), free(max_error), free(min_positive), free(x_low), free(x_high);
    return out_of_memory;
}

/* Sorts items (key << 32 | index) whose keys differ only in their low ``bits`` bits (keys are
 * stored less their row's key_min, which aligns each bucket on those bits): insertion
 * sort when few, else a stable LSD radix sort on those bits (constant digits skipped). */
static void sort_bucket(uint64_t *a, int64_t n, int bits, uint64_t *scratch) {
    if (n <= 48) {
        for (int64_t i = 1; i < n; i++) {
            uint64_t item = a[i];
            int64_t j = i - 1;
            while (j >= 0 && a[j] > item) {
                a[j + 1] = a[j];
                j--;
            }
            a[j + 1] = item;
        }
        return;
    }
    uint64_t *src = a, *dst = scratch;
    for (int shift = 32; shift < 32 + bits; shift += 8) {
        int64_t count[256] = {0};
        for (int64_t i = 0; i < n; i++) count[(src[i] >> shift) & 255]++;
        if (count[(src[0] >> shift) & 255] == n) continue;
        int64_t sum = 0;
        for (int d = 0; d < 256; d++) {
            int64_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) dst[count[(src[i] >> shift) & 255]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, sizeof(uint64_t) * (size_t)n);
}

/* Inside a parallel region, after each thread's allocations: records a failed one and waits for
 * every thread; all threads then agree whether to go on. */
static int all_allocated(int ok, int *failed) {
    if (!ok) {
#pragma omp atomic write
        *failed = 1;
    }
#pragma omp barrier
    return !*failed;
}

#define BUCKETS_PER_TASK 64

/* kept, offsets [R * parts]: each task's kept pixels and where they start in position / grad
 * (rows contiguous, tasks in order); the other arrays are lovasz_count's. Each task writes its
 * kept pixels into the buckets of its row; then each range of buckets of a row is sorted and
 * swept: after the j-th pixel in sorted order, inter = |F| - foreground so far and union =
 * |F| + background so far, the prefix Jaccard loss is 1 - inter / union, and the pixel's
 * gradient (with respect to its error) is the change it makes, negated on the foreground.
 * Partial losses are summed in float64, in a fixed order. Returns 1 when out of memory. */
int lovasz_rows(const Spec *sp, int64_t parts, int64_t buckets, const int64_t *gts,
                const uint32_t *key_min, const int32_t *shift,
                const int32_t *hist, const int32_t *fg_hist, const int64_t *kept,
                const int64_t *offsets, Kept *found, int32_t *position,
                float *grad, double *losses, int threads) {
    int64_t R = sp->R, n_tasks = R * parts, total = 0;
    int64_t ranges = (buckets + BUCKETS_PER_TASK - 1) / BUCKETS_PER_TASK;
    for (int64_t t = 0; t < n_tasks; t++) total += kept[t];
    uint64_t *items = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(total + threads));
    /* start / fg_start [R, buckets + 1]: where each bucket starts in its row, and the foreground
     * pixels of the row's earlier buckets. */
    int64_t *start = (int64_t *)malloc(sizeof(int64_t) * (size_t)(R * (buckets + 1)));
    int64_t *fg_start = (int64_t *)malloc(sizeof(int64_t) * (size_t)(R * (buckets + 1)));
    double *partial = (double *)malloc(sizeof(double) * (size_t)(R * ranges));
    if (!items || !start || !fg_start || !partial) {
        free(items), free(start), free(fg_start), free(partial);
        return 1;
    }
    int64_t largest = 0;
    for (int64_t r = 0; r < R; r++) {
        int64_t *st = start + r * (buckets + 1), *fs = fg_start + r * (buckets + 1);
        st[0] = 0, fs[0] = 0;
        for (int64_t b = 0; b < buckets; b++) {
            int64_t n = 0, f = 0;
            for (int64_t t = r * parts; t < (r + 1) * parts; t++) {
                n += hist[t * buckets + b];
                f += fg_hist[t * buckets + b];
            }
            st[b + 1] = st[b] + n, fs[b + 1] = fs[b] + f;
            if (n > largest) largest = n;
        }
    }
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        int64_t *cursor = (int64_t *)malloc(sizeof(int64_t) * (size_t)buckets);
        uint64_t *scratch = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(largest + 1));
        if (all_allocated(cursor && scratch, &failed)) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < n_tasks; t++) {
                Task tk = task(sp, parts, t);
                int64_t r = tk.row, row_first = offsets[r * parts];
                const int64_t *st = start + r * (buckets + 1);
                for (int64_t b = 0; b < buckets; b++) {
                    cursor[b] = row_first + st[b];
                    for (int64_t u = r * parts; u < t; u++) cursor[b] += hist[u * buckets + b];
                }
                int32_t sh = shift[r];
                uint32_t index = (uint32_t)(offsets[t] - row_first);
                const char *room = found->spill[found->owner[t]].data + found->offset[t];
                const uint32_t *keys = (const uint32_t *)room;
                for (int64_t j = 0; j < kept[t]; j++) {
                    uint32_t key = keys[j];
                    items[cursor[key >> sh]++] = ((uint64_t)key << 32) | (index + (uint32_t)j);
                }
                if (kept[t] > 0) /* an empty call's buffers may be NULL: memcpy must not see them */
                    memcpy(position + offsets[t], room + 4 * kept[t], sizeof(int32_t) * (size_t)kept[t]);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < R * ranges; t++) {
                int64_t r = t / ranges, b0 = (t % ranges) * BUCKETS_PER_TASK;
                int64_t b1 = b0 + BUCKETS_PER_TASK < buckets ? b0 + BUCKETS_PER_TASK : buckets;
                int64_t row_first = offsets[r * parts], n_fg = gts[r];
                const int64_t *st = start + r * (buckets + 1), *fs = fg_start + r * (buckets + 1);
                uint64_t *row_items = items + row_first;
                float *row_grad = grad + row_first;
                uint32_t first = key_min[r];
                double loss = 0.0;
                int64_t j = st[b0], fg_seen = fs[b0];
                for (int64_t b = b0; b < b1; b++) {
                    int64_t n = st[b + 1] - st[b];
                    uint64_t *a = row_items + st[b];
                    sort_bucket(a, n, shift[r], scratch);
                    for (int64_t i = 0; i < n; i++, j++) {
                        if (i + 16 < n) __builtin_prefetch(row_grad + (uint32_t)a[i + 16], 1, 0);
                        uint32_t key = (uint32_t)(a[i] >> 32) + first;
                        int background = key & 1u;
                        fg_seen += !background;
                        double inter = (double)(n_fg - fg_seen);
                        double uni = (double)(n_fg + (j + 1 - fg_seen));
                        double inc;
                        if (!background)
                            inc = 1.0 / uni;
                        else
                            inc = uni <= 1.0 ? 1.0 : inter / (uni * (uni - 1.0));
                        loss += (double)key_error(key) * inc;
                        row_grad[(uint32_t)a[i]] = (float)(background ? inc : -inc);
                    }
                }
                partial[t] = loss;
            }
#pragma omp for
            for (int64_t r = 0; r < R; r++) {
                double loss = 0.0;
                for (int64_t t = r * ranges; t < (r + 1) * ranges; t++) loss += partial[t];
                losses[r] = loss;
            }
        }
        free(cursor), free(scratch);
    }
    free(items), free(start), free(fg_start), free(partial);
    return failed;
}

/* The gradient [numel] of a weighted sum of row losses with respect to x: each kept pixel's
 * gradient (lovasz_rows' grad, rows one after another from row_start[r]) times its row's weight,
 * at its position; zero elsewhere. Rows in turn (two rows may read the same plane: the
 * symmetric hinge), the pixels of a row in parallel (a row's positions are distinct). */
void lovasz_scatter(float *out, int64_t numel, int64_t R, const int64_t *row_start,
                    const int32_t *position, const float *grad, const float *weight, int threads) {
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int64_t i = 0; i < numel; i++) out[i] = 0.0f;
        for (int64_t r = 0; r < R; r++) {
            float w = weight[r];
#pragma omp for schedule(static)
            for (int64_t k = row_start[r]; k < row_start[r + 1]; k++) out[position[k]] += w * grad[k];
        }
    }
}

/* First index in [lo, hi) of an increasing position array whose value is >= value. */
static int64_t lower_bound(const int32_t *position, int64_t lo, int64_t hi, int64_t value) {
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (position[mid] < value)
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
 * search (each row's positions increase), forms g p there and the dot products, writes -p * dot
 * over all channels and adds g p back: one read of p and one write of the gradient, in place of
 * a dense g and a generic softmax backward. ``out`` may be ``p`` itself (g p is formed before
 * p is overwritten), which spares a fresh buffer the size of p. */
int lovasz_softmax_backward(const float *p, int64_t B, int64_t C, int64_t S, int64_t R,
                            const int64_t *image, const int64_t *channel, const int64_t *row_start,
                            const int32_t *position, const float *grad,
                            const float *weight, float *out, int threads) {
    int64_t chunks = (S + CHUNK - 1) / CHUNK, n_tasks = B * chunks;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        float *dot = (float *)malloc(sizeof(float) * CHUNK);
        int64_t *lo = (int64_t *)malloc(sizeof(int64_t) * (size_t)(2 * R + 1)), *hi = lo + R;
        float *gp = NULL;
        int64_t capacity = 0;
        if (all_allocated(dot && lo, &failed)) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < n_tasks; t++) {
                int64_t b = t / chunks, s0 = (t % chunks) * CHUNK;
                int64_t n = S - s0 < CHUNK ? S - s0 : CHUNK, needed = 0;
                for (int64_t r = 0; r < R; r++) {
                    lo[r] = hi[r] = 0;
                    if (image && image[r] != b) continue;
                    int64_t first = (b * C + channel[r]) * S + s0;
                    lo[r] = lower_bound(position, row_start[r], row_start[r + 1], first);
                    hi[r] = lower_bound(position, lo[r], row_start[r + 1], first + n);
                    needed += hi[r] - lo[r];
                }
                if (needed > capacity) {
                    free(gp);
                    capacity = needed * 2;
                    gp = (float *)malloc(sizeof(float) * (size_t)capacity);
                    if (!gp) {
#pragma omp atomic write
                        failed = 1;
                        capacity = 0;
                        continue;
                    }
                }
                memset(dot, 0, sizeof(float) * (size_t)n);
                int64_t j = 0;
                for (int64_t r = 0; r < R; r++) {
                    float w = weight[r];
                    int64_t first = (b * C + channel[r]) * S + s0;
                    for (int64_t k = lo[r]; k < hi[r]; k++, j++) {
                        int64_t at = position[k];
                        gp[j] = w * grad[k] * p[at];
                        dot[at - first] += gp[j];
                    }
                }
                for (int64_t c = 0; c < C; c++) {
                    const float *pc = p + (b * C + c) * S + s0;
                    float *oc = out + (b * C + c) * S + s0;
                    for (int64_t i = 0; i < n; i++) oc[i] = -pc[i] * dot[i];
                }
                j = 0;
                for (int64_t r = 0; r < R; r++)
                    for (int64_t k = lo[r]; k < hi[r]; k++, j++) {
                        int64_t at = position[k];
                        out[at] += gp[j];
                    }
            }
        }
        free(dot), free(lo), free(gp);
    }
    return failed;
}

/* exp(x) for x <= 0 (Cephes' expf: Cody-Waite reduction and a degree-6 polynomial, within a
 * few ulp), flushed to 0 below the smallest normal float, NaN for NaN (a NaN or infinite logit
 * makes its pixel's probabilities NaN, as torch.softmax does); branch-free so that it
 * vectorises. A NaN passes through every step unchanged: the power of two is read from the
 * bits of the rounding sum, never by converting a float to an integer (undefined for NaN). */
static inline float exp_nonpositive(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds */
    float tiny = x < -87.33654f;
    x = x < -87.33654f ? -87.33654f : x;
    float rounded = x * 1.44269504089f + magic; /* magic + n, n = round(x / ln 2) in [-126, 0] */
    float n = rounded - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t rounded_bits, magic_bits; /* magic + n and magic share their exponent: n = the difference */
    memcpy(&rounded_bits, &rounded, 4);
    memcpy(&magic_bits, &magic, 4);
    uint32_t bits = (rounded_bits - magic_bits + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return tiny ? 0.0f : p * scale;
}

#define SOFTMAX_CHUNK 256

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default"), optimize("no-trapping-math")))
#endif
static void softmax_chunk(const float *x, float *out, int64_t C, int64_t S, int64_t n) {
    float top[SOFTMAX_CHUNK], sum[SOFTMAX_CHUNK];
    for (int64_t i = 0; i < n; i++) top[i] = x[i], sum[i] = 0.0f;
    for (int64_t c = 1; c < C; c++) {
        const float *xc = x + c * S;
        for (int64_t i = 0; i < n; i++) top[i] = xc[i] > top[i] ? xc[i] : top[i];
    }
    for (int64_t c = 0; c < C; c++) {
        const float *xc = x + c * S;
        float *oc = out + c * S;
        for (int64_t i = 0; i < n; i++) {
            float v = exp_nonpositive(xc[i] - top[i]);
            oc[i] = v;
            sum[i] += v;
        }
    }
    for (int64_t i = 0; i < n; i++) sum[i] = 1.0f / sum[i];
    for (int64_t c = 0; c < C; c++) {
        float *oc = out + c * S;
        for (int64_t i = 0; i < n; i++) oc[i] *= sum[i];
    }
}

/* Softmax over the channels of x [B, C, S] (finite values), SOFTMAX_CHUNK pixels at a time so
 * that every channel's slice stays in cache: x read twice from cache, out written once. */
void lovasz_softmax(const float *x, float *out, int64_t B, int64_t C, int64_t S, int threads) {
    int64_t chunks = (S + SOFTMAX_CHUNK - 1) / SOFTMAX_CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < B * chunks; t++) {
        int64_t b = t / chunks, s0 = (t % chunks) * SOFTMAX_CHUNK;
        int64_t n = S - s0 < SOFTMAX_CHUNK ? S - s0 : SOFTMAX_CHUNK;
        softmax_chunk(x + b * C * S + s0, out + b * C * S + s0, C, S, n);
    }
}
