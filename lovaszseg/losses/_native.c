/* The CPU core of the Lovász extension: errors, drop, sort and sweep of every row, fused.
 *
 * The PyTorch path (lovasz.py) spends most of a call in some thirty ATen passes over the kept
 * pixels (gathers, compaction, key packing, two sorts, prefix counts, increments, a scatter back
 * to position order). Here each row is done in three reads of its plane and one radix sort of
 * its kept pixels, in cache, rows in parallel (OpenMP, sharing PyTorch's libgomp):
 *
 *   lovasz_count:  per row, the foreground count, the keep threshold (smallest foreground error,
 *                  or the largest error when there is no foreground) and how many pixels pass it;
 *   lovasz_rows:   per row, the kept pixels as (int key, compact index) pairs and their positions,
 *                  an LSD radix sort of the pairs, and one sweep in sorted order that sums the
 *                  loss (float64) and writes each kept pixel's gradient at its compact index.
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

static float threshold_of(const Spec *sp, int64_t r, int64_t *gts_out) {
    int64_t gts = 0;
    float min_fg = FLT_MAX * 2.0f, max_error = -FLT_MAX * 2.0f;  /* +inf, -inf */
    for (int64_t g = 0; g < blocks_of(sp); g++) {
        Block bl = block(sp, r, g);
        for (int64_t i = 0; i < bl.n; i++) {
            float e;
            int fg;
            if (!pixel(&bl, i, &e, &fg)) continue;
            if (fg) {
                gts++;
                if (e < min_fg) min_fg = e;
            }
            if (e > max_error) max_error = e;
        }
    }
    *gts_out = gts;
    float threshold = gts > 0 ? min_fg : max_error;
    return threshold > FLT_MIN ? threshold : FLT_MIN;
}

void lovasz_count(const Spec *sp, int64_t *gts, float *threshold, int64_t *kept, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t r = 0; r < sp->R; r++) {
        float th = threshold_of(sp, r, &gts[r]);
        int64_t n = 0;
        for (int64_t g = 0; g < blocks_of(sp); g++) {
            Block bl = block(sp, r, g);
            for (int64_t i = 0; i < bl.n; i++) {
                float e;
                int fg;
                if (pixel(&bl, i, &e, &fg) && e >= th) n++;
            }
        }
        threshold[r] = th;
        kept[r] = n;
    }
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

/* One row: kept pixels → positions (compact order), sorted sweep → loss and gradients. */
static double row(const Spec *sp, int64_t r, float th, int64_t gts, int64_t n, void *position,
                  int position_bytes, float *grad, uint32_t *buf) {
    uint32_t *k = buf, *v = buf + n, *k2 = buf + 2 * n, *v2 = buf + 3 * n;
    int64_t at = 0;
    for (int64_t g = 0; g < blocks_of(sp); g++) {
        Block bl = block(sp, r, g);
        for (int64_t i = 0; i < bl.n; i++) {
            float e;
            int fg;
            if (!pixel(&bl, i, &e, &fg) || !(e >= th)) continue;
            if (at >= n) return 0.0; /* cannot happen: lovasz_count counted the same pixels */
            k[at] = error_key(e, fg);
            v[at] = (uint32_t)at;
            if (position_bytes == 4)
                ((int32_t *)position)[at] = (int32_t)(bl.position + i);
            else
                ((int64_t *)position)[at] = bl.position + i;
            at++;
        }
    }
    if (radix_sort(k, v, k2, v2, n)) {
        k = k2;
        v = v2;
    }
    /* After the j-th sorted pixel: inter = |F| - foreground so far, union = |F| + background
     * so far; the prefix Jaccard loss is 1 - inter / union. */
    double loss = 0.0;
    int64_t fg_seen = 0;
    for (int64_t j = 0; j < n; j++) {
        uint32_t key = k[j];
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
        grad[v[j]] = (float)(background ? inc : -inc);
    }
    return loss;
}

/* offsets [R]: where each row's kept pixels start in position / grad. */
int lovasz_rows(const Spec *sp, const int64_t *gts, const float *threshold, const int64_t *kept,
                const int64_t *offsets, void *position, int64_t position_bytes, float *grad,
                double *losses, int threads) {
    int failed = 0;
    int64_t largest = 0;
    for (int64_t r = 0; r < sp->R; r++)
        if (kept[r] > largest) largest = kept[r];
#pragma omp parallel num_threads(threads)
    {
        uint32_t *buf = (uint32_t *)malloc(sizeof(uint32_t) * 4 * (size_t)(largest + 1));
#pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < sp->R; r++) {
            char *pos = (char *)position + offsets[r] * position_bytes;
            if (buf)
                losses[r] = row(sp, r, threshold[r], gts[r], kept[r], pos, (int)position_bytes,
                                grad + offsets[r], buf);
            else {
#pragma omp atomic write
                failed = 1;
            }
        }
        free(buf);
    }
    return failed; /* 1: out of memory for the sort buffers */
}
