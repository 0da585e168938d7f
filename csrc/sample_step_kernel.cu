// The fused decode step in plain CUDA: mask, budget, penalty, temperature, top-k, top-p,
// Gumbel draw and automaton advance for a batch, in one launch.
//
// This file includes no torch header: it is compiled by nvcc alone and exposes a C launcher
// that takes raw pointers and a stream (`regexlm_sample_step_launch`). The torch glue lives in
// `sample_step.cpp`. The algorithm is the one of `regexlm/ops/sample_triton.py`:
//
//   pass A   the row is streamed once: allowed count, min/max of z, greedy argmax, and the
//            Gumbel winner argmax z - log(-log u) over allowed tokens. For small batches the
//            row is split over `nsplit` blocks (grid B x nsplit): each leaves its partials, and
//            the block that takes the last ticket of the row's arrival counter combines them
//            and carries on alone (no block ever waits, so no grid barrier is needed).
//   search   top-k and top-p thresholds by a search over int32 keys that order like the floats;
//            each pass tests NP pivot keys at once, so the bracket shrinks (NP + 1)-fold a pass.
//            With top-k alone or top-p alone, one cheap pass (one comparison per token) first
//            tests whether the pass-A winner is kept, which usually settles the row. The
//            winner's key is also always among the pivots, so a search stops once it is known.
//   draw     the pass-A winner when it is kept, else one more pass for the argmax over the kept.
//
// Rounding follows the torch reference: divisions are correctly rounded (__fdiv_rn), logf/expf
// are the accurate library functions (build without --use_fast_math), so with the same noise the
// tokens equal the reference's except where a top-p boundary lies within rounding of a token.
//
// Rows and tables are read as `regexlm/ops/reference.py` states: a token is allowed when its
// class is in [0, C) and next_by_class[row_of[s], class] is in [0, S) (a state outside [0, S),
// or whose row is outside [0, R), allows nothing), so no index ever leaves its table. A NaN logit reads as -inf; a row that is greedy
// (temperature not > 0) or degenerate (no finite maximum of z = x / T) takes the greedy token,
// the argmax of the penalised logit, lowest id on ties. The noise is the counter-based generator
// of `regexlm/ops/noise.py` (32-bit integer ops), keyed by the row's seed and step.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sample_step.h"

// The launch goes through a macro so that the host emulation used by the CPU tests
// (tests/ops/cuda_emu) can run the same file.
#ifndef REGEXLM_LAUNCH
#define REGEXLM_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#endif

namespace {

#ifndef REGEXLM_THREADS
#define REGEXLM_THREADS 512  // threads per block (one block per row)
#endif
constexpr int kThreads = REGEXLM_THREADS;
constexpr int kWarps = kThreads / 32;
constexpr int kPivots = 16;
constexpr int kBig = 0x7fffffff;

struct StepArgs {
  const void* logits;
  int64_t stride_l;
  const int32_t* states;
  const int32_t* budgets;
  const float* temperature;
  const int32_t* top_k;
  const float* top_p;
  const float* penalty;
  const uint8_t* seen;  // may be null
  int64_t stride_s;
  const int32_t* next_by_class;
  int64_t stride_n;
  const int32_t* row_of;
  int32_t num_rows;
  int32_t num_states;
  int32_t num_classes;
  const int32_t* class_of;
  const int32_t* min_tokens;
  const float* noise;  // may be null: then the generator below, keyed by seeds and steps
  int64_t stride_nz;
  const int64_t* seeds;
  const int32_t* steps;
  int64_t* tokens;
  int32_t* next_states;
  bool* no_allowed;
  int32_t vocab;
  // split rows: pass A over `chunk` tokens per block, partials here, the last block goes on
  float* part_f;      // [B, nsplit, 4]: max z, min z, Gumbel best, max x
  int32_t* part_i;    // [B, nsplit, 4]: greedy token, allowed count, Gumbel winner
  int32_t* counters;  // [B], zero between launches
  int32_t nsplit;
  int32_t chunk;
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

// fp32 -> int32 with the same order (no NaNs); -0.0 and +0.0 share a key, as they compare equal.
__device__ __forceinline__ int32_t float_key(float z) {
  const int32_t b = z == 0.0f ? 0 : __float_as_int(z);
  return b ^ ((b >> 31) & 0x7fffffff);
}

// The counter-based generator of regexlm/ops/noise.py: a 32-bit mixing bijection, a row key
// from (seed, step), and u = ((h >> 8) | 1) / 2^24 for token i, an odd multiple of 2^-24.
__device__ __forceinline__ uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  return x ^ (x >> 15);
}

__device__ __forceinline__ float token_uniform(uint32_t k0, uint32_t k1, int32_t i) {
  const uint32_t h = mix32((static_cast<uint32_t>(i) ^ k0) * 0x61c88647u + k1);
  return static_cast<float>((h >> 8) | 1u) * 5.9604644775390625e-08f;
}

// Explicit noise as every backend reads it: NaN -> 0.5, clamped to [FLT_MIN, 1 - 2^-24].
__device__ __forceinline__ float clamp_noise(float u) {
  if (u != u) return 0.5f;
  if (u < 1.17549435e-38f) return 1.17549435e-38f;
  if (u > 0.99999994f) return 0.99999994f;
  return u;
}

struct Row {
  int64_t b, s;  // s is 0 when the row's state is out of range (then s_ok is false)
  int64_t row;   // s's row of next_by_class; 0 when s_ok is false
  int32_t state_in;
  bool s_ok;
  int32_t R;
  bool budget_on;
  float pen, t_eff;
  bool sampling;
  uint32_t k0, k1;
};

// Token i of the row: whether it is allowed, its penalised logit x and z = x / T (both -inf
// when it is not allowed; a NaN reads as -inf). Every table index is checked before it is used.
template <typename T>
__device__ __forceinline__ float token_z(const StepArgs& a, const Row& r, int32_t i, bool& ok,
                                         float& x) {
  ok = false;
  x = -INFINITY;
  if (!r.s_ok) return -INFINITY;
  const int32_t cls = a.class_of[i];
  if (cls < 0 || cls >= a.num_classes) return -INFINITY;
  const int32_t nxt = a.next_by_class[r.row * a.stride_n + cls];
  if (nxt < 0 || nxt >= a.num_states) return -INFINITY;
  if (r.budget_on && !(a.min_tokens[nxt] < r.R)) return -INFINITY;  // min_tokens <= R - 1
  ok = true;
  float v = to_float(static_cast<const T*>(a.logits)[r.b * a.stride_l + i]);
  if (a.seen != nullptr && a.seen[r.b * a.stride_s + i]) {
    v = v < 0.0f ? v * r.pen : __fdiv_rn(v, r.pen);
  }
  x = v != v ? -INFINITY : v;
  return __fdiv_rn(x, r.t_eff);
}

template <typename T>
__device__ __forceinline__ float token_z(const StepArgs& a, const Row& r, int32_t i, bool& ok) {
  float x;
  return token_z<T>(a, r, i, ok, x);
}

__device__ __forceinline__ float gumbel(const StepArgs& a, const Row& r, int32_t i, float z) {
  const float u = a.noise != nullptr ? clamp_noise(a.noise[r.b * a.stride_nz + i])
                                     : token_uniform(r.k0, r.k1, i);
  return z - logf(-logf(u));
}

// (value, index) argmax with the lowest index on ties; index kBig means "none".
__device__ __forceinline__ void arg_merge(float& v, int32_t& i, float v2, int32_t i2) {
  if (i2 == kBig) return;
  if (i == kBig || v2 > v || (v2 == v && i2 < i)) { v = v2; i = i2; }
}

template <typename V>
__device__ __forceinline__ V shfl(V x, int d) { return __shfl_xor_sync(0xffffffffu, x, d); }

__device__ float block_sum(float x, float* sh) {
  for (int d = 16; d > 0; d >>= 1) x += shfl(x, d);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = x;
  __syncthreads();
  float t = 0.0f;
  for (int w = 0; w < kWarps; ++w) t += sh[w];
  return t;
}

__device__ int32_t block_sum_i(int32_t x, int32_t* sh) {
  for (int d = 16; d > 0; d >>= 1) x += shfl(x, d);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = x;
  __syncthreads();
  int32_t t = 0;
  for (int w = 0; w < kWarps; ++w) t += sh[w];
  return t;
}

__device__ float block_max(float x, float* sh) {
  for (int d = 16; d > 0; d >>= 1) x = fmaxf(x, shfl(x, d));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = x;
  __syncthreads();
  float t = -INFINITY;
  for (int w = 0; w < kWarps; ++w) t = fmaxf(t, sh[w]);
  return t;
}

__device__ float block_min(float x, float* sh) { return -block_max(-x, sh); }

__device__ void block_argmax(float& v, int32_t& i, float* shv, int32_t* shi) {
  for (int d = 16; d > 0; d >>= 1) {
    float v2 = shfl(v, d);
    int32_t i2 = shfl(i, d);
    arg_merge(v, i, v2, i2);
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) { shv[threadIdx.x >> 5] = v; shi[threadIdx.x >> 5] = i; }
  __syncthreads();
  v = -INFINITY; i = kBig;
  for (int w = 0; w < kWarps; ++w) arg_merge(v, i, shv[w], shi[w]);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) sample_step_kernel(StepArgs a) {
  __shared__ float shf[kWarps];
  __shared__ int32_t shi[kWarps];
  __shared__ float shp[kWarps][kPivots];
  __shared__ int32_t shc[kWarps][kPivots];

  Row r;
  r.b = blockIdx.x;
  r.state_in = a.states[r.b];
  r.s_ok = r.state_in >= 0 && r.state_in < a.num_states;
  r.s = r.s_ok ? r.state_in : 0;
  const int32_t row = r.s_ok ? a.row_of[r.s] : -1;
  r.s_ok = r.s_ok && row >= 0 && row < a.num_rows;
  r.row = r.s_ok ? row : 0;
  r.R = a.budgets[r.b];
  r.budget_on = r.s_ok && r.R >= 0 && a.min_tokens[r.s] <= r.R;
  r.pen = a.penalty[r.b];
  const float temp = a.temperature[r.b];
  r.sampling = temp > 0.0f;  // a NaN temperature is not > 0: greedy
  r.t_eff = r.sampling ? fminf(temp, 3.40282347e+38f) : 1.0f;
  r.k0 = r.k1 = 0;
  if (a.noise == nullptr) {
    const uint64_t seed = static_cast<uint64_t>(a.seeds[r.b]);
    const uint32_t step = static_cast<uint32_t>(a.steps[r.b]);
    r.k0 = mix32(static_cast<uint32_t>(seed) ^ mix32(step ^ 0x9e3779b9u));
    r.k1 = mix32(static_cast<uint32_t>(seed >> 32) ^ mix32(r.k0 ^ 0x85ebca6bu));
  }
  const int32_t V = a.vocab;
  const int32_t k = a.top_k[r.b];
  const float p = a.top_p[r.b];

  // ---- pass A (over this block's chunk of the row) -----------------------------------------
  // amax/arg: the greedy token (argmax of x, lowest id); gbest/gidx: the Gumbel winner
  float m = -INFINITY, zmin = INFINITY, gbest = -INFINITY, amax = -INFINITY;
  int32_t arg = kBig, gidx = kBig, n = 0;
  const int32_t lo_i = static_cast<int32_t>(blockIdx.y) * a.chunk;
  const int32_t hi_i = a.nsplit > 1 ? min(V, lo_i + a.chunk) : V;
  for (int32_t i = lo_i + threadIdx.x; i < hi_i; i += kThreads) {
    bool ok;
    float x;
    float z = token_z<T>(a, r, i, ok, x);
    if (!ok) continue;
    ++n;
    m = fmaxf(m, z);
    zmin = fminf(zmin, z);
    arg_merge(amax, arg, x, i);
    if (r.sampling) arg_merge(gbest, gidx, gumbel(a, r, i, z), i);
  }
  n = block_sum_i(n, shi);
  m = block_max(m, shf);
  zmin = block_min(zmin, shf);
  block_argmax(amax, arg, shf, shi);
  block_argmax(gbest, gidx, shf, shi);

  // ---- split rows: leave the partials; the block that arrives last combines and goes on ------
  if (a.nsplit > 1) {
    __shared__ int last_flag;
    if (threadIdx.x == 0) {
      const int64_t slot = (r.b * a.nsplit + blockIdx.y) * 4;
      a.part_f[slot + 0] = m;
      a.part_f[slot + 1] = zmin;
      a.part_f[slot + 2] = gbest;
      a.part_f[slot + 3] = amax;
      a.part_i[slot + 0] = arg;
      a.part_i[slot + 1] = n;
      a.part_i[slot + 2] = gidx;
      __threadfence();  // the partials are visible before the ticket is taken
      last_flag = atomicAdd(a.counters + r.b, 1) == a.nsplit - 1;
    }
    __syncthreads();
    if (!last_flag) return;
    __threadfence();
    m = -INFINITY; zmin = INFINITY; gbest = -INFINITY; amax = -INFINITY;
    arg = kBig; gidx = kBig; n = 0;
    for (int32_t c = 0; c < a.nsplit; ++c) {  // every thread combines alike
      const int64_t slot = (r.b * a.nsplit + c) * 4;
      const volatile float* pf = a.part_f + slot;
      const volatile int32_t* pi = a.part_i + slot;
      m = fmaxf(m, pf[0]);
      arg_merge(amax, arg, pf[3], pi[0]);  // chunk greedy tokens; lowest id on ties
      zmin = fminf(zmin, pf[1]);
      n += pi[1];
      arg_merge(gbest, gidx, pf[2], pi[2]);
    }
    __syncthreads();
    if (threadIdx.x == 0) a.counters[r.b] = 0;  // ready for the next launch
  }

  // degenerate rows (no finite maximum of z) take the greedy token, as greedy rows do
  const bool draw = r.sampling && isfinite(m);
  const bool need_k = draw && k > 0 && k < n;
  const bool need_p = draw && p < 1.0f && n > 1;
  int64_t key_tau = INT64_MIN;
  if (need_k || need_p) {
    const int64_t key_lo = float_key(zmin), key_hi = static_cast<int64_t>(float_key(m)) + 1;
    // the winner's key + 1 is always one of the pivots: once tau <= key(winner) the winner is
    // kept and the search can stop (top-k alone; top-p needs tau_k exactly, so k runs on).
    int64_t wkey = INT64_MIN;
    if (gidx != kBig) {
      bool ok;
      wkey = static_cast<int64_t>(float_key(token_z<T>(a, r, gidx, ok))) + 1;
    }
    // One pass: the softmax normaliser (top-p) and, with a single criterion, the winner check:
    // top-k alone keeps it iff count(z > z_w) < k, top-p alone iff mass(z <= z_w) > (1-p) total.
    const bool single = need_k != need_p;
    float total = 0.0f, mass_le = 0.0f;
    int32_t cnt_gt = 0;
    if (need_p || single) {
      for (int32_t i = threadIdx.x; i < V; i += kThreads) {
        bool ok;
        float z = token_z<T>(a, r, i, ok);
        if (!ok) continue;
        const float e = expf(z - m);
        total += e;
        if (static_cast<int64_t>(float_key(z)) < wkey) mass_le += e;
        else ++cnt_gt;
      }
      total = block_sum(total, shf);
      mass_le = block_sum(mass_le, shf);
      cnt_gt = block_sum_i(cnt_gt, shi);
    }
    const bool decided =
        single && ((need_k && cnt_gt < k) || (need_p && mass_le > (1.0f - p) * total));
    const bool search_k = need_k && !decided, search_p = need_p && !decided;
    const int64_t stop_k = need_p ? INT64_MIN : wkey;

    // top-k: largest key K with count(key >= K) >= k, and the mass at or above it.
    int64_t lo = key_lo, hi = search_k ? key_hi : key_lo + 1;
    float lo_mass = total;
    while (hi - lo > 1 && hi > stop_k) {
      int64_t piv[kPivots];
      int32_t cnt[kPivots];
      float mass[kPivots];
#pragma unroll
      for (int j = 0; j < kPivots; ++j) {
        piv[j] = lo + ((hi - lo) * (j + 1)) / (kPivots + 1);
        cnt[j] = 0;
        mass[j] = 0.0f;
      }
      if (wkey > lo && wkey < hi) piv[kPivots - 1] = wkey;
      for (int32_t i = threadIdx.x; i < V; i += kThreads) {
        bool ok;
        float z = token_z<T>(a, r, i, ok);
        if (!ok) continue;
        int64_t key = float_key(z);
        float e = expf(z - m);
#pragma unroll
        for (int j = 0; j < kPivots; ++j) {
          if (key >= piv[j]) { ++cnt[j]; mass[j] += e; }
        }
      }
#pragma unroll
      for (int j = 0; j < kPivots; ++j) {
        for (int d = 16; d > 0; d >>= 1) { cnt[j] += shfl(cnt[j], d); mass[j] += shfl(mass[j], d); }
      }
      __syncthreads();
      if ((threadIdx.x & 31) == 0) {
        for (int j = 0; j < kPivots; ++j) { shc[threadIdx.x >> 5][j] = cnt[j]; shp[threadIdx.x >> 5][j] = mass[j]; }
      }
      __syncthreads();
      int64_t new_lo = lo, new_hi = hi;
      for (int j = 0; j < kPivots; ++j) {
        int32_t c = 0;
        float ms = 0.0f;
        for (int w = 0; w < kWarps; ++w) { c += shc[w][j]; ms += shp[w][j]; }
        if (c >= k) {
          if (piv[j] > new_lo) { new_lo = piv[j]; lo_mass = ms; }
        } else if (piv[j] < new_hi) {
          new_hi = piv[j];
        }
      }
      lo = new_lo;
      hi = new_hi;
    }
    const int64_t key_k = lo;

    // top-p: largest key K with mass(key_k <= key < K) <= (1 - p) * mass(key >= key_k).
    const float budget_mass = (1.0f - p) * lo_mass;
    lo = key_k;
    hi = search_p ? key_hi : key_k + 1;
    while (hi - lo > 1 && hi > wkey) {
      int64_t piv[kPivots];
      float below[kPivots];
#pragma unroll
      for (int j = 0; j < kPivots; ++j) {
        piv[j] = lo + ((hi - lo) * (j + 1)) / (kPivots + 1);
        below[j] = 0.0f;
      }
      if (wkey > lo && wkey < hi) piv[kPivots - 1] = wkey;
      for (int32_t i = threadIdx.x; i < V; i += kThreads) {
        bool ok;
        float z = token_z<T>(a, r, i, ok);
        if (!ok) continue;
        int64_t key = float_key(z);
        if (key < key_k) continue;
        float e = expf(z - m);
#pragma unroll
        for (int j = 0; j < kPivots; ++j) {
          if (key < piv[j]) below[j] += e;
        }
      }
#pragma unroll
      for (int j = 0; j < kPivots; ++j) {
        for (int d = 16; d > 0; d >>= 1) below[j] += shfl(below[j], d);
      }
      __syncthreads();
      if ((threadIdx.x & 31) == 0) {
        for (int j = 0; j < kPivots; ++j) shp[threadIdx.x >> 5][j] = below[j];
      }
      __syncthreads();
      int64_t new_lo = lo, new_hi = hi;
      for (int j = 0; j < kPivots; ++j) {
        float ms = 0.0f;
        for (int w = 0; w < kWarps; ++w) ms += shp[w][j];
        if (ms <= budget_mass) {
          if (piv[j] > new_lo) new_lo = piv[j];
        } else if (piv[j] < new_hi) {
          new_hi = piv[j];
        }
      }
      lo = new_lo;
      hi = new_hi;
    }
    key_tau = lo;

    // ---- draw over the kept set when the pass-A winner was cut ------------------------------
    const bool winner_kept = gidx != kBig && wkey - 1 >= key_tau;
    if (!winner_kept) {
      gbest = -INFINITY;
      gidx = kBig;
      for (int32_t i = threadIdx.x; i < V; i += kThreads) {
        bool ok;
        float z = token_z<T>(a, r, i, ok);
        if (!ok || float_key(z) < key_tau) continue;
        arg_merge(gbest, gidx, gumbel(a, r, i, z), i);
      }
      block_argmax(gbest, gidx, shf, shi);
    }
  }

  if (threadIdx.x == 0) {
    const bool empty = n == 0 || arg == kBig;  // arg is an allowed token whenever n > 0
    const int32_t token = empty ? -1 : (draw && gidx != kBig ? gidx : arg);
    a.tokens[r.b] = token;
    a.no_allowed[r.b] = empty;
    a.next_states[r.b] =
        empty ? r.state_in : a.next_by_class[r.row * a.stride_n + a.class_of[token]];
  }
}

}  // namespace

extern "C" {

// Declared in sample_step.h.
int regexlm_sample_step_launch(
    const void* logits, int dtype, int64_t stride_l, int32_t batch, int32_t vocab,
    const int32_t* states, const int32_t* budgets, const float* temperature,
    const int32_t* top_k, const float* top_p, const float* penalty,
    const uint8_t* seen, int64_t stride_s,
    const int32_t* next_by_class, int64_t stride_n, const int32_t* row_of, int32_t num_rows,
    int32_t num_states, int32_t num_classes, const int32_t* class_of, const int32_t* min_tokens,
    const float* noise, int64_t stride_nz, const int64_t* seeds, const int32_t* steps,
    int64_t* tokens, int32_t* next_states, bool* no_allowed,
    float* part_f, int32_t* part_i, int32_t* counters, int32_t nsplit, int32_t chunk,
    void* stream) {
  if (batch == 0) return 0;
  if (vocab < 0 || num_states < 0 || num_rows < 0 || num_classes < 0 || nsplit < 1 ||
      (num_states > 0 && row_of == nullptr) ||
      (nsplit > 1 && (part_f == nullptr || part_i == nullptr || counters == nullptr)) ||
      (noise == nullptr && (seeds == nullptr || steps == nullptr)))
    return static_cast<int>(cudaErrorInvalidValue);
  // empty tables or vocabulary: no token is allowed anywhere (the kernel reads no table then)
  if (vocab == 0 || num_classes == 0 || num_rows == 0) num_states = 0;
  StepArgs a{logits, stride_l, states, budgets, temperature, top_k, top_p, penalty,
             seen, stride_s, next_by_class, stride_n, row_of, num_rows, num_states, num_classes,
             class_of, min_tokens, noise, stride_nz, seeds, steps, tokens, next_states,
             no_allowed, vocab,
             part_f, part_i, counters, nsplit, chunk};
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dim3 grid(batch, nsplit), block(kThreads);
  switch (dtype) {
    case 0: REGEXLM_LAUNCH(sample_step_kernel<float>, grid, block, s, a); break;
    case 1: REGEXLM_LAUNCH(sample_step_kernel<__nv_bfloat16>, grid, block, s, a); break;
    case 2: REGEXLM_LAUNCH(sample_step_kernel<__half>, grid, block, s, a); break;
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
  return static_cast<int>(cudaGetLastError());
}

const char* regexlm_cuda_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

}  // extern "C"
