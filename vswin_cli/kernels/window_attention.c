/* Window attention for x86-64 CPUs, head dim 32: float32 (AVX-512, or AVX2 + FMA), and bfloat16
 * with AVX-512 BF16.
 *
 * Why: PyTorch's fused CPU attention reaches ~90 GFLOP/s in float32 and in bf16 on Swin's shapes
 * (392-token windows, 32-dim heads) on CPUs without AMX, half of the float32 matmul rate and a
 * fifth of the bf16 one, and oneDNN's batched matmuls do no better with Q K^T's 32-wide inner
 * dimension; attention took a third of a float32 forward and over half of a bf16 one. Here one
 * (window, head) is done whole while its K, V and scores stay in L1/L2:
 *   scores = Q K^T (FMA in float32; vdpbf16ps with float32 accumulation in bf16),
 *   then scale + position bias + shift mask and exp(score - row max) in float32,
 *   then out = (P V) / row sum, P the unnormalised exponentials (rounded to bf16 in bf16).
 *
 * Layouts (all contiguous; T = float or bfloat16):
 *   qkv          (windows, n, 3, heads, 32) T: the qkv linear's output as it comes
 *   out          (windows, n, heads, 32)    T: what the output projection reads
 *   bias         (heads, n, n)              float32: relative position bias, or NULL
 *   region_bits  (masks, n, ceil(n / 16))   uint16: bit j % 16 of word j / 16 set where the
 *                                           shift mask adds region_value to key j; or NULL
 *   region_index (windows,)                 int32: each window's row of region_bits
 *
 * Built by vswin_cli/attention_kernel.py for the CPU at hand and loaded with ctypes: with
 * AVX-512 F/BW/VL/BF16 enabled (float32 alone where the compiler does not know BF16; the
 * float32 entry point uses no BF16 instruction, so it also runs on AVX-512 CPUs without BF16),
 * or with AVX2 + FMA on CPUs without AVX-512 (8-lane float32 code, no bf16 entry point).
 *
 * Threads: the (head, window) tasks, head-major so that neighbouring tasks share one head's bias
 * in cache, are handed out one at a time from an atomic counter to `threads` workers. Where the
 * caller passes `parallel`, the OpenMP runtime's GOMP_parallel (the one PyTorch's own threads
 * belong to), the workers are PyTorch's threads: after each of PyTorch's parallel regions those
 * threads spin for a few ms waiting for more work, and threads of our own started then would
 * share the cores with them (a quarter of the kernel's time lost, measured). Without it, the
 * workers are the caller and threads - 1 POSIX threads.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_DIM 32
#define PAIRS (HEAD_DIM / 2)
#define NO_KEY (-3.0e38f) /* the score of a key past n */

typedef struct {
    const void *qkv; /* float or bfloat16 (uint16_t) */
    void *out;
    const float *bias;
    const uint16_t *region_bits;
    const int32_t *region_index;
    float region_value;
    int64_t windows, heads, n;
    float scale;
    int bf16;
    atomic_llong next_task; /* the next (head, window) task to hand out */
    atomic_int status;      /* nonzero once a worker could not allocate its buffers */
} job_t;

/* GOMP_parallel's signature (libgomp, and the GOMP compatibility layer of LLVM's and Intel's
 * OpenMP runtimes): run fn(data) on a team of num_threads threads, the caller among them. */
typedef void (*parallel_fn)(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);

#if defined(__AVX512F__)
/* Query rows per block and 16-key groups per Q K^T register tile (8 x 3 = 24 accumulators):
 * the fastest of 4x4, 4x5, 6x4, 8x2, 8x3, 12x2 and 16x1 measured on a Zen 4 core. */
#define LANES 16
#define ROWS 8
#define GROUP_TILE 3
typedef __m512 vec_t;
static inline vec_t vec_set1(float x) { return _mm512_set1_ps(x); }
static inline vec_t vec_zero(void) { return _mm512_setzero_ps(); }
static inline vec_t vec_load(const float *p) { return _mm512_load_ps(p); }
static inline vec_t vec_fmadd(vec_t a, vec_t b, vec_t c) { return _mm512_fmadd_ps(a, b, c); }
static inline void vec_store_scaled(float *p, vec_t v, float factor) { _mm512_storeu_ps(p, _mm512_mul_ps(v, _mm512_set1_ps(factor))); }
static inline float vec_reduce_max(vec_t v) { return _mm512_reduce_max_ps(v); }

#ifdef __AVX512BF16__ /* defined by -mavx512bf16; a compiler without it builds the float32 code alone */
static inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }
#endif

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

/* acc (Q K^T of ROWS rows and `tile` 16-key groups from `group`) -> scores * scale + bias +
 * shift mask in float32 into scores (row stride `stride`), keys past n set to NO_KEY; each
 * row's running maximum kept in row_max. */
static inline __attribute__((always_inline)) void store_scores(__m512 acc[ROWS][GROUP_TILE],
                                                               const float *const bias_rows[ROWS],
                                                               const uint16_t *const bit_rows[ROWS], float region_value,
                                                               float *scores, int64_t stride, __m512 *row_max,
                                                               int64_t group, int64_t n, float scale, const int tile) {
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

#ifdef __AVX512BF16__
/* bf16: k_packed holds pairs of channels of 16 keys side by side (the vdpbf16ps B operand). */
static inline __attribute__((always_inline)) void score_tile_bf16(const char *const q_rows[ROWS],
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
            __m512i query = _mm512_set1_epi32((int)((const uint32_t *)q_rows[r])[p]);
#pragma GCC unroll 4
            for (int g = 0; g < tile; g++) acc[r][g] = _mm512_dpbf16_ps(acc[r][g], as_bh(query), as_bh(keys[g]));
        }
    }
    store_scores(acc, bias_rows, bit_rows, region_value, scores, stride, row_max, group, n, scale, tile);
}

#endif

#ifdef __AVX512BF16__
/* One row of scores -> exp(score - max) as bfloat16 (zero past n); returns their float32 sum. */
static inline float exp_row_bf16(const float *row, float top, uint16_t *probs, int64_t n, int64_t groups) {
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

#endif

/* One row of scores -> exp(score - max) in place (zero past n); returns their sum. */
static inline float exp_row_f32(float *row, float top, int64_t n, int64_t groups) {
    const __m512 top_v = _mm512_set1_ps(top);
    __m512 total = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_load_ps(row + g * 16), top_v));
        e = _mm512_maskz_mov_ps(lanes_below(n - g * 16), e);
        total = _mm512_add_ps(total, e);
        _mm512_store_ps(row + g * 16, e);
    }
    return _mm512_reduce_add_ps(total);
}

#elif defined(__AVX2__) && defined(__FMA__) /* CPUs without AVX-512: float32 only, 8 lanes */
/* 6 x 2 Q K^T tile: 12 accumulators, 2 key vectors and a broadcast query fit the 16 registers
 * (4 x 3 measured slower on a Zen 4 core running this code). */
#define LANES 8
#define ROWS 6
#define GROUP_TILE 2
typedef __m256 vec_t;
static inline vec_t vec_set1(float x) { return _mm256_set1_ps(x); }
static inline vec_t vec_zero(void) { return _mm256_setzero_ps(); }
static inline vec_t vec_load(const float *p) { return _mm256_load_ps(p); }
static inline vec_t vec_fmadd(vec_t a, vec_t b, vec_t c) { return _mm256_fmadd_ps(a, b, c); }
static inline void vec_store_scaled(float *p, vec_t v, float factor) { _mm256_storeu_ps(p, _mm256_mul_ps(v, _mm256_set1_ps(factor))); }

/* exp(x) for x <= 0 as in the AVX-512 code, with 2^integer put into the exponent bits; below
 * 2^-126 it returns about 2^-126 instead of (nearly) zero, 1e-38 next to a row maximum of 1. */
static inline __m256 exp_nonpositive(__m256 x) {
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    t = _mm256_max_ps(t, _mm256_set1_ps(-126.0f));
    const __m256 k = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(t, k);
    __m256 p = _mm256_set1_ps(1.5403530393381606e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3333558146428443e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6181291076284772e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5504108664821580e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022650695910071e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314718055994531e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i power = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(power));
}

/* All-ones lanes for the first `left` of 8. */
static inline __m256i lanes_below(int64_t left) {
    const int32_t count = left >= 8 ? 8 : left <= 0 ? 0 : (int32_t)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* All-ones lanes where the 8 bits of `byte` are set (bit 0: lane 0). */
static inline __m256 lanes_of_bits(unsigned byte) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)byte), bit), bit));
}

static inline float vec_reduce_max(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

static inline float reduce_add(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* As the AVX-512 store_scores, 8 keys per group; a group's shift-mask bits are one byte of a
 * 16-bit word. */
static inline __attribute__((always_inline)) void store_scores(__m256 acc[ROWS][GROUP_TILE],
                                                               const float *const bias_rows[ROWS],
                                                               const uint16_t *const bit_rows[ROWS], float region_value,
                                                               float *scores, int64_t stride, __m256 *row_max,
                                                               int64_t group, int64_t n, float scale, const int tile) {
    const __m256 scale_v = _mm256_set1_ps(scale), region_v = _mm256_set1_ps(region_value);
#pragma GCC unroll 4
    for (int g = 0; g < tile; g++) {
        const int64_t col = (group + g) * 8;
        const __m256i valid = lanes_below(n - col);
        const int whole = n - col >= 8;
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; r++) {
            __m256 s;
            if (bias_rows[r]) {
                const __m256 b = whole ? _mm256_loadu_ps(bias_rows[r] + col) : _mm256_maskload_ps(bias_rows[r] + col, valid);
                s = _mm256_fmadd_ps(acc[r][g], scale_v, b);
            } else {
                s = _mm256_mul_ps(acc[r][g], scale_v);
            }
            if (bit_rows[r]) {
                const unsigned byte = (bit_rows[r][(group + g) / 2] >> (8 * ((group + g) % 2))) & 0xFFu;
                s = _mm256_add_ps(s, _mm256_and_ps(lanes_of_bits(byte), region_v));
            }
            if (!whole) s = _mm256_blendv_ps(_mm256_set1_ps(NO_KEY), s, _mm256_castsi256_ps(valid));
            _mm256_store_ps(scores + r * stride + col, s);
            row_max[r] = _mm256_max_ps(row_max[r], s);
        }
    }
}

/* One row of scores -> exp(score - max) in place (zero past n); returns their sum. */
static inline float exp_row_f32(float *row, float top, int64_t n, int64_t groups) {
    const __m256 top_v = _mm256_set1_ps(top);
    __m256 total = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(row + g * 8), top_v));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(lanes_below(n - g * 8)));
        total = _mm256_add_ps(total, e);
        _mm256_store_ps(row + g * 8, e);
    }
    return reduce_add(total);
}

#else
#error "the attention kernel needs AVX-512 (F, BW, VL) or AVX2 with FMA"
#endif

/* float32 Q K^T of ROWS rows and `tile` groups of LANES keys from `group` (k_packed: each channel
 * of LANES keys side by side), then store_scores. */
static inline __attribute__((always_inline)) void score_tile_f32(const char *const q_rows[ROWS],
                                                                 const float *const bias_rows[ROWS],
                                                                 const uint16_t *const bit_rows[ROWS], float region_value,
                                                                 const float *k_packed, float *scores, int64_t stride,
                                                                 vec_t *row_max, int64_t group, int64_t n, float scale,
                                                                 const int tile) {
    vec_t acc[ROWS][GROUP_TILE];
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 4
        for (int g = 0; g < tile; g++) acc[r][g] = vec_zero();
    for (int c = 0; c < HEAD_DIM; c++) {
        vec_t keys[GROUP_TILE];
#pragma GCC unroll 4
        for (int g = 0; g < tile; g++) keys[g] = vec_load(k_packed + ((group + g) * HEAD_DIM + c) * LANES);
#pragma GCC unroll 16
        for (int r = 0; r < ROWS; r++) {
            const vec_t query = vec_set1(((const float *)q_rows[r])[c]);
#pragma GCC unroll 4
            for (int g = 0; g < tile; g++) acc[r][g] = vec_fmadd(query, keys[g], acc[r][g]);
        }
    }
    store_scores(acc, bias_rows, bit_rows, region_value, scores, stride, row_max, group, n, scale, tile);
}

/* The block of up to ROWS queries from i0 of (window, head): each row's query (as bytes), bias
 * row and shift-mask bits (rows past n repeat the last: computed, not kept), and its running
 * maximum reset. Returns how many rows are real. */
static inline __attribute__((always_inline)) int start_block(const job_t *job, int64_t window, int64_t head,
                                                              int64_t i0, const char *q, int64_t token_bytes,
                                                              const char *q_rows[ROWS], const float *bias_rows[ROWS],
                                                              const uint16_t *bit_rows[ROWS], vec_t row_max[ROWS]) {
    const int64_t n = job->n, words = (n + 15) / 16; /* region_bits words per row */
    const float *bias = job->bias ? job->bias + head * n * n : NULL;
    const uint16_t *bits = job->region_bits ? job->region_bits + (int64_t)job->region_index[window] * n * words : NULL;
    const int rows = n - i0 < ROWS ? (int)(n - i0) : ROWS;
    for (int r = 0; r < ROWS; r++) {
        const int64_t i = r < rows ? i0 + r : n - 1;
        q_rows[r] = q + i * token_bytes;
        bias_rows[r] = bias ? bias + i * n : NULL;
        bit_rows[r] = bits ? bits + i * words : NULL;
        row_max[r] = vec_set1(NO_KEY);
    }
    return rows;
}

#ifdef __AVX512BF16__
static void attend_one_bf16(const job_t *job, int64_t window, int64_t head, uint32_t *k_packed, uint32_t *v_packed,
                            float *scores, uint16_t *probs) {
    const int64_t n = job->n, heads = job->heads;
    const int64_t groups = (n + 15) / 16, row_len = groups * 16, pairs_n = (n + 1) / 2;
    const int64_t token_stride = 3 * heads * HEAD_DIM; /* bf16 elements between tokens in qkv */
    const uint16_t *base = (const uint16_t *)job->qkv + window * n * token_stride + head * HEAD_DIM;
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

    for (int64_t i0 = 0; i0 < n; i0 += ROWS) {
        const char *q_rows[ROWS];
        const float *bias_rows[ROWS];
        const uint16_t *bit_rows[ROWS];
        __m512 row_max[ROWS];
        const int rows = start_block(job, window, head, i0, (const char *)q, token_stride * 2, q_rows, bias_rows,
                                     bit_rows, row_max);
        int64_t g = 0;
        for (; g + GROUP_TILE <= groups; g += GROUP_TILE)
            score_tile_bf16(q_rows, bias_rows, bit_rows, job->region_value, k_packed, scores, row_len, row_max, g, n,
                            job->scale, GROUP_TILE);
        for (; g < groups; g++)
            score_tile_bf16(q_rows, bias_rows, bit_rows, job->region_value, k_packed, scores, row_len, row_max, g, n,
                            job->scale, 1);

        float inv_total[ROWS];
        for (int r = 0; r < rows; r++)
            inv_total[r] = 1.0f / exp_row_bf16(scores + r * row_len, _mm512_reduce_max_ps(row_max[r]), probs + r * row_len, n, groups);
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
            uint16_t *dst = (uint16_t *)job->out + ((window * n + i0 + r) * heads + head) * HEAD_DIM;
            _mm256_storeu_si256((__m256i *)dst, (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[r][0], inv)));
            _mm256_storeu_si256((__m256i *)(dst + 16), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[r][1], inv)));
        }
    }
}

#endif

/* float32, either instruction set: vectors of LANES keys or channels. */
static void attend_one_f32(const job_t *job, int64_t window, int64_t head, float *k_packed, float *v_packed,
                           float *scores) {
    const int64_t n = job->n, heads = job->heads;
    const int64_t groups = (n + LANES - 1) / LANES, row_len = groups * LANES;
    const int64_t token_stride = 3 * heads * HEAD_DIM; /* floats between tokens in qkv */
    const float *base = (const float *)job->qkv + window * n * token_stride + head * HEAD_DIM;
    const float *q = base, *k = base + heads * HEAD_DIM, *v = base + 2 * heads * HEAD_DIM;

    /* K: each channel of LANES keys side by side; zero keys past n. V: rows packed together. */
    for (int64_t j = 0; j < row_len; j++) {
        float *dst = k_packed + (j / LANES) * HEAD_DIM * LANES + (j % LANES);
        if (j < n) {
            const float *key = k + j * token_stride;
            for (int c = 0; c < HEAD_DIM; c++) dst[c * LANES] = key[c];
        } else {
            for (int c = 0; c < HEAD_DIM; c++) dst[c * LANES] = 0.0f;
        }
    }
    for (int64_t j = 0; j < n; j++) memcpy(v_packed + j * HEAD_DIM, v + j * token_stride, HEAD_DIM * sizeof(float));

    for (int64_t i0 = 0; i0 < n; i0 += ROWS) {
        const char *q_rows[ROWS];
        const float *bias_rows[ROWS];
        const uint16_t *bit_rows[ROWS];
        vec_t row_max[ROWS];
        const int rows = start_block(job, window, head, i0, (const char *)q, token_stride * 4, q_rows, bias_rows,
                                     bit_rows, row_max);
        int64_t g = 0;
        for (; g + GROUP_TILE <= groups; g += GROUP_TILE)
            score_tile_f32(q_rows, bias_rows, bit_rows, job->region_value, k_packed, scores, row_len, row_max, g, n,
                           job->scale, GROUP_TILE);
        for (; g < groups; g++)
            score_tile_f32(q_rows, bias_rows, bit_rows, job->region_value, k_packed, scores, row_len, row_max, g, n,
                           job->scale, 1);

        float inv_total[ROWS];
        for (int r = 0; r < rows; r++)
            inv_total[r] = 1.0f / exp_row_f32(scores + r * row_len, vec_reduce_max(row_max[r]), n, groups);
        for (int r = rows; r < ROWS; r++) memset(scores + r * row_len, 0, row_len * sizeof(float));

        /* Unnormalised probabilities times V, divided by the row's sum at the end; two vectors
         * of channels at a time (all 32 with AVX-512, 16 per pass with AVX2: 12 accumulators). */
        for (int part = 0; part < HEAD_DIM; part += 2 * LANES) {
            vec_t acc[ROWS][2];
            for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = vec_zero();
            for (int64_t j = 0; j < n; j++) {
                const vec_t v_lo = vec_load(v_packed + j * HEAD_DIM + part);
                const vec_t v_hi = vec_load(v_packed + j * HEAD_DIM + part + LANES);
#pragma GCC unroll 16
                for (int r = 0; r < ROWS; r++) {
                    const vec_t p = vec_set1(scores[r * row_len + j]);
                    acc[r][0] = vec_fmadd(p, v_lo, acc[r][0]);
                    acc[r][1] = vec_fmadd(p, v_hi, acc[r][1]);
                }
            }
            for (int r = 0; r < rows; r++) {
                float *dst = (float *)job->out + ((window * n + i0 + r) * heads + head) * HEAD_DIM + part;
                vec_store_scaled(dst, acc[r][0], inv_total[r]);
                vec_store_scaled(dst + LANES, acc[r][1], inv_total[r]);
            }
        }
    }
}

static size_t rounded(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* One worker: takes tasks until none is left. Any thread may do any task; each task's result
 * depends only on its inputs, so the output is the same whichever threads run. */
static void work(void *arg) {
    job_t *job = (job_t *)arg;
    const int64_t n = job->n, row_len = (n + LANES - 1) / LANES * LANES, tasks = job->windows * job->heads;
    /* Sized for either precision: float32 needs the larger K and V buffers. */
    void *k_packed = aligned_alloc(64, rounded((size_t)(row_len * HEAD_DIM * 4)));
    void *v_packed = aligned_alloc(64, rounded((size_t)((n + 1) * HEAD_DIM * 4)));
    float *scores = aligned_alloc(64, rounded((size_t)(ROWS * row_len * 4)));
    uint16_t *probs = aligned_alloc(64, rounded((size_t)(ROWS * row_len * 2)));
    if (!k_packed || !v_packed || !scores || !probs) {
        atomic_store(&job->status, 1);
    } else {
        for (;;) {
            const int64_t task = atomic_fetch_add_explicit(&job->next_task, 1, memory_order_relaxed);
            if (task >= tasks) break;
#ifdef __AVX512BF16__
            if (job->bf16) {
                attend_one_bf16(job, task % job->windows, task / job->windows, k_packed, v_packed, scores, probs);
                continue;
            }
#endif
            attend_one_f32(job, task % job->windows, task / job->windows, k_packed, v_packed, scores);
        }
    }
    free(k_packed);
    free(v_packed);
    free(scores);
    free(probs);
}

static void *work_thread(void *arg) {
    work(arg);
    return NULL;
}

/* Runs every task of `job` on `threads` workers (see the top of the file); 0 on success, nonzero
 * when memory ran out (the caller raises). */
static int run_tasks(job_t *job, int threads, parallel_fn parallel) {
    const int64_t tasks = job->windows * job->heads;
    if (tasks <= 0 || job->n <= 0) return 0;
    if (threads < 1) threads = 1;
    if (threads > tasks) threads = (int)tasks;
    if (threads > 256) threads = 256;
    atomic_init(&job->next_task, 0);
    atomic_init(&job->status, 0);
    if (parallel != NULL && threads > 1) {
        parallel(work, job, (unsigned)threads, 0u);
    } else {
        pthread_t ids[256];
        int started[256];
        for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, work_thread, job) == 0;
        work(job); /* threads that could not be started leave their tasks to the others */
        for (int t = 1; t < threads; t++)
            if (started[t]) pthread_join(ids[t], NULL);
    }
    /* A worker without buffers left its tasks to the others; fail only if some task was not done. */
    return atomic_load(&job->status) && atomic_load(&job->next_task) < tasks;
}

#ifdef __AVX512BF16__
int vswin_window_attention_bf16(const uint16_t *qkv, uint16_t *out, const float *bias, const uint16_t *region_bits,
                                const int32_t *region_index, float region_value, int64_t windows, int64_t heads,
                                int64_t n, float scale, int threads, parallel_fn parallel) {
    job_t job = {qkv, out, bias, region_bits, region_index, region_value, windows, heads, n, scale, 1};
    return run_tasks(&job, threads, parallel);
}
#endif

int vswin_window_attention_f32(const float *qkv, float *out, const float *bias, const uint16_t *region_bits,
                               const int32_t *region_index, float region_value, int64_t windows, int64_t heads,
                               int64_t n, float scale, int threads, parallel_fn parallel) {
    job_t job = {qkv, out, bias, region_bits, region_index, region_value, windows, heads, n, scale, 0};
    return run_tasks(&job, threads, parallel);
}
