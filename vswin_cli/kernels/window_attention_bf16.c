/* Window attention in bfloat16 for CPUs with AVX-512 BF16 (vdpbf16ps), head dim 32.
 *
 * Why: PyTorch's fused CPU attention and oneDNN's bf16 batched matmuls reach only ~70-90
 * GFLOP/s on Swin's shapes (392-token windows, 32-dim heads) on CPUs without AMX, a fifth of the
 * bf16 matmul rate, so attention took over half of a bf16 forward. Here one (window, head) is
 * done whole while its K, V and scores stay in L1/L2: Q K^T with vdpbf16ps, then scale + position
 * bias + shift mask and softmax in float32, then P V with vdpbf16ps on the unnormalised bf16
 * probabilities, divided by the row sum at the end; float32 accumulation throughout.
 *
 * Layouts (all contiguous):
 *   qkv          (windows, n, 3, heads, 32) bfloat16: the qkv linear's output as it comes
 *   out          (windows, n, heads, 32)    bfloat16: what the output projection reads
 *   bias         (heads, n, n)              float32: relative position bias, or NULL
 *   region_bits  (masks, n, ceil(n / 16))   uint16: bit j % 16 of word j / 16 set where the
 *                                           shift mask adds region_value to key j; or NULL
 *   region_index (windows,)                 int32: each window's row of region_bits
 *
 * Built by vswin_cli/attention_kernel.py with the compiler at hand and loaded with ctypes. The
 * (head, window) tasks are split over `threads` POSIX threads, head-major so that a thread's
 * consecutive tasks share one head's bias in cache.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_DIM 32
#define PAIRS (HEAD_DIM / 2)
/* Query rows per block and 16-key groups per Q K^T register tile (8 x 3 = 24 accumulators):
 * the fastest of 4x4, 4x5, 6x4, 8x2, 8x3, 12x2 and 16x1 measured on a Zen 4 core. */
#define ROWS 8
#define GROUP_TILE 3

typedef struct {
    const uint16_t *qkv;
    uint16_t *out;
    const float *bias;
    const uint16_t *region_bits;
    const int32_t *region_index;
    float region_value;
    int64_t windows, heads, n;
    float scale;
    int64_t first_task, end_task;
    int status;
} job_t;

static inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

/* exp(x) for x <= 0 as 2^(x log2 e): 2^fraction by its Taylor polynomial to degree 6 (relative
 * error below 2e-7 on [-1/2, 1/2]), times 2^integer by vscalefps. Lanes of -3e38 (no key) may
 * come out NaN; the caller zeroes them. */
static inline __m512 exp_nonpositive(__m512 x) {
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    const __m512 k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, k);
    __m512 p = _mm512_set1_ps(1.5403530393381606e-4f); /* ln2^6 / 6! */
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

static inline __mmask16 lanes_below(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1u);
}

/* Scores of ROWS query rows against `tile` groups of 16 keys from `group`: Q K^T * scale + mask
 * in float32 into scores (row stride `stride`), keys past n set to NO_KEY; each row's running
 * maximum kept in row_max. */
#define NO_KEY (-3.0e38f)
static inline __attribute__((always_inline)) void score_tile(const uint32_t *const q_rows[ROWS],
                                                             const float *const bias_rows[ROWS],
                                                             const uint16_t *const bit_rows[ROWS], float region_value,
                                                             const uint32_t *k_packed, float *scores, int64_t stride,
                                                             __m512 *row_max, int64_t group, int64_t n, float scale,
                                                             const int tile) {
    __m512 acc[ROWS][GROUP_TILE];
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 4
        for (int g = 0; g < tile; g++) acc[r][g] = _mm512_setzero_ps();
    for (int p = 0; p < PAIRS; p++) {
        __m512i keys[GROUP_TILE];
#pragma GCC unroll 4
        for (int g = 0; g < tile; g++) keys[g] = _mm512_load_si512(k_packed + ((group + g) * PAIRS + p) * 16);
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; r++) {
            __m512i query = _mm512_set1_epi32((int)q_rows[r][p]);
#pragma GCC unroll 4
            for (int g = 0; g < tile; g++) acc[r][g] = _mm512_dpbf16_ps(acc[r][g], as_bh(query), as_bh(keys[g]));
        }
    }
    const __m512 scale_v = _mm512_set1_ps(scale), region_v = _mm512_set1_ps(region_value);
#pragma GCC unroll 4
    for (int g = 0; g < tile; g++) {
        const int64_t col = (group + g) * 16;
        const __mmask16 valid = lanes_below(n - col);
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; r++) {
            __m512 s;
            if (valid == (__mmask16)0xFFFF) {
                s = bias_rows[r] ? _mm512_fmadd_ps(acc[r][g], scale_v, _mm512_loadu_ps(bias_rows[r] + col))
                                 : _mm512_mul_ps(acc[r][g], scale_v);
            } else {
                s = bias_rows[r] ? _mm512_fmadd_ps(acc[r][g], scale_v, _mm512_maskz_loadu_ps(valid, bias_rows[r] + col))
                                 : _mm512_mul_ps(acc[r][g], scale_v);
            }
            if (bit_rows[r]) s = _mm512_mask_add_ps(s, (__mmask16)bit_rows[r][group + g], s, region_v);
            if (valid != (__mmask16)0xFFFF) s = _mm512_mask_blend_ps(valid, _mm512_set1_ps(NO_KEY), s);
            _mm512_store_ps(scores + r * stride + col, s);
            row_max[r] = _mm512_max_ps(row_max[r], s);
        }
    }
}

/* One row of scores -> exp(score - max) as bfloat16 (zero past n); returns their float32 sum. */
static inline float exp_row(const float *row, float top, uint16_t *probs, int64_t n, int64_t groups) {
    const __m512 top_v = _mm512_set1_ps(top);
    __m512 total = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_load_ps(row + g * 16), top_v));
        e = _mm512_maskz_mov_ps(lanes_below(n - g * 16), e);
        total = _mm512_add_ps(total, e);
        _mm256_store_si256((__m256i *)(probs + g * 16), (__m256i)_mm512_cvtneps_pbh(e));
    }
    return _mm512_reduce_add_ps(total);
}

static void attend_one(const job_t *job, int64_t window, int64_t head, uint32_t *k_packed, uint32_t *v_packed,
                       float *scores, uint16_t *probs) {
    const int64_t n = job->n, heads = job->heads;
    const int64_t groups = (n + 15) / 16, row_len = groups * 16, pairs_n = (n + 1) / 2;
    const int64_t token_stride = 3 * heads * HEAD_DIM; /* bf16 elements between tokens in qkv */
    const uint16_t *base = job->qkv + window * n * token_stride + head * HEAD_DIM;
    const uint16_t *q = base, *k = base + heads * HEAD_DIM, *v = base + 2 * heads * HEAD_DIM;

    /* K: pairs of channels of 16 keys side by side, the vdpbf16ps B operand; zero keys past n. */
    for (int64_t j = 0; j < row_len; j++) {
        uint32_t *dst = k_packed + (j / 16) * PAIRS * 16 + (j % 16);
        if (j < n) {
            const uint32_t *key = (const uint32_t *)(k + j * token_stride);
            for (int p = 0; p < PAIRS; p++) dst[p * 16] = key[p];
        } else {
            for (int p = 0; p < PAIRS; p++) dst[p * 16] = 0u;
        }
    }
    /* V: for each pair of keys, every channel's two values side by side; a zero key past n. */
    for (int64_t jp = 0; jp < pairs_n; jp++) {
        const uint16_t *v0 = v + 2 * jp * token_stride;
        if (2 * jp + 1 < n) {
            const uint16_t *v1 = v0 + token_stride;
            for (int c = 0; c < HEAD_DIM; c++) v_packed[jp * HEAD_DIM + c] = (uint32_t)v0[c] | ((uint32_t)v1[c] << 16);
        } else {
            for (int c = 0; c < HEAD_DIM; c++) v_packed[jp * HEAD_DIM + c] = (uint32_t)v0[c];
        }
    }
    const float *bias = job->bias ? job->bias + head * n * n : NULL;
    const uint16_t *bits = job->region_bits ? job->region_bits + (int64_t)job->region_index[window] * n * groups : NULL;

    for (int64_t i0 = 0; i0 < n; i0 += ROWS) {
        const int rows = n - i0 < ROWS ? (int)(n - i0) : ROWS;
        const uint32_t *q_rows[ROWS];
        const float *bias_rows[ROWS];
        const uint16_t *bit_rows[ROWS];
        __m512 row_max[ROWS];
        for (int r = 0; r < ROWS; r++) {
            int64_t i = r < rows ? i0 + r : n - 1; /* rows past n repeat the last: computed, not kept */
            q_rows[r] = (const uint32_t *)(q + i * token_stride);
            bias_rows[r] = bias ? bias + i * n : NULL;
            bit_rows[r] = bits ? bits + i * groups : NULL;
            row_max[r] = _mm512_set1_ps(NO_KEY);
        }
        int64_t g = 0;
        for (; g + GROUP_TILE <= groups; g += GROUP_TILE)
            score_tile(q_rows, bias_rows, bit_rows, job->region_value, k_packed, scores, row_len, row_max, g, n, job->scale, GROUP_TILE);
        for (; g < groups; g++) score_tile(q_rows, bias_rows, bit_rows, job->region_value, k_packed, scores, row_len, row_max, g, n, job->scale, 1);

        float inv_total[ROWS];
        for (int r = 0; r < rows; r++)
            inv_total[r] = 1.0f / exp_row(scores + r * row_len, _mm512_reduce_max_ps(row_max[r]), probs + r * row_len, n, groups);
        for (int r = rows; r < ROWS; r++) memset(probs + r * row_len, 0, row_len * sizeof(uint16_t));

        /* Unnormalised probabilities times V, divided by the row's sum at the end. */
        __m512 acc[ROWS][2];
        for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        const uint32_t *p32 = (const uint32_t *)probs;
        for (int64_t jp = 0; jp < pairs_n; jp++) {
            __m512i v_lo = _mm512_load_si512(v_packed + jp * HEAD_DIM), v_hi = _mm512_load_si512(v_packed + jp * HEAD_DIM + 16);
#pragma GCC unroll 16
            for (int r = 0; r < ROWS; r++) {
                __m512i p = _mm512_set1_epi32((int)p32[r * (row_len / 2) + jp]);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], as_bh(p), as_bh(v_lo));
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], as_bh(p), as_bh(v_hi));
            }
        }
        for (int r = 0; r < rows; r++) {
            const __m512 inv = _mm512_set1_ps(inv_total[r]);
            uint16_t *dst = job->out + ((window * n + i0 + r) * heads + head) * HEAD_DIM;
            _mm256_storeu_si256((__m256i *)dst, (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[r][0], inv)));
            _mm256_storeu_si256((__m256i *)(dst + 16), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[r][1], inv)));
        }
    }
}

static void *run_job(void *arg) {
    job_t *job = (job_t *)arg;
    const int64_t n = job->n, groups = (n + 15) / 16, row_len = groups * 16, pairs_n = (n + 1) / 2;
    uint32_t *k_packed = aligned_alloc(64, (size_t)(groups * PAIRS * 16 * 4));
    uint32_t *v_packed = aligned_alloc(64, (size_t)(((pairs_n * HEAD_DIM * 4) + 63) / 64 * 64));
    float *scores = aligned_alloc(64, (size_t)(ROWS * row_len * 4));
    uint16_t *probs = aligned_alloc(64, (size_t)((ROWS * row_len * 2 + 63) / 64 * 64));
    if (!k_packed || !v_packed || !scores || !probs) {
        job->status = 1;
    } else {
        for (int64_t task = job->first_task; task < job->end_task; task++)
            attend_one(job, task % job->windows, task / job->windows, k_packed, v_packed, scores, probs);
        job->status = 0;
    }
    free(k_packed);
    free(v_packed);
    free(scores);
    free(probs);
    return NULL;
}

/* Returns 0 on success, nonzero when memory or threads ran out (the caller falls back). */
int vswin_window_attention_bf16(const uint16_t *qkv, uint16_t *out, const float *bias, const uint16_t *region_bits,
                                const int32_t *region_index, float region_value, int64_t windows, int64_t heads,
                                int64_t n, float scale, int threads) {
    const int64_t tasks = windows * heads;
    if (tasks <= 0 || n <= 0) return 0;
    if (threads < 1) threads = 1;
    if (threads > tasks) threads = (int)tasks;
    if (threads > 256) threads = 256;
    job_t jobs[256];
    pthread_t ids[256];
    int started[256];
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job_t){qkv, out, bias, region_bits, region_index, region_value, windows, heads, n, scale, tasks * t / threads, tasks * (t + 1) / threads, 1};
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    int status = jobs[0].status;
    for (int t = 1; t < threads; t++) {
        if (started[t]) {
            pthread_join(ids[t], NULL);
            status |= jobs[t].status;
        } else {
            run_job(&jobs[t]); /* no thread to be had: do its share here */
            status |= jobs[t].status;
        }
    }
    return status;
}
