// Host emulation of the small part of CUDA that csrc/*.cu uses, for tests without a GPU.
//
// Compiling a kernel file with `g++ -x c++ -I tests/ops/cuda_emu` makes these headers stand in
// for the CUDA ones: every block runs its threads as std::threads, __syncthreads is a barrier
// over the block, warp shuffles exchange through per-warp slots between two warp barriers, and
// __shared__ variables are function statics (blocks run one after another). Semantics, not
// speed: it checks a kernel's logic (reductions, searches, tie-breaking) on the CPU.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3_emu { unsigned x = 0, y = 0, z = 0; };

inline thread_local uint3_emu threadIdx;
inline thread_local uint3_emu blockIdx;
inline thread_local uint3_emu blockDim;

typedef void* cudaStream_t;
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t e) { return e ? "invalid value" : "no error"; }

namespace emu {

struct Block {
  std::unique_ptr<std::barrier<>> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  std::vector<uint64_t> slots;  // one 8-byte slot per thread for shuffles
};
inline Block* g_block = nullptr;

}  // namespace emu

inline void __syncthreads() { emu::g_block->all->arrive_and_wait(); }

template <typename T>
inline T __shfl_xor_sync(unsigned, T x, int lane_mask) {
  static_assert(sizeof(T) <= 8, "shuffle of a wide type");
  const unsigned t = threadIdx.x, w = t / 32, lane = t % 32;
  auto& bar = *emu::g_block->warps[w];
  uint64_t bits = 0;
  std::memcpy(&bits, &x, sizeof(T));
  emu::g_block->slots[t] = bits;
  bar.arrive_and_wait();
  uint64_t other = emu::g_block->slots[w * 32 + (lane ^ static_cast<unsigned>(lane_mask))];
  bar.arrive_and_wait();
  T out;
  std::memcpy(&out, &other, sizeof(T));
  return out;
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
using std::min;
using std::max;
using std::isfinite;

inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __fdiv_rn(float a, float b) { return a / b; }

namespace emu {

// Run kernel(args...) over grid x block, blocks one after another.
template <typename... P, typename... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, A&&... args) {
  const unsigned n = block.x;
  for (unsigned b = 0; b < grid.x * grid.y; ++b) {
    Block blk;
    blk.all = std::make_unique<std::barrier<>>(n);
    for (unsigned w = 0; w < (n + 31) / 32; ++w) blk.warps.push_back(std::make_unique<std::barrier<>>(32));
    blk.slots.assign(n, 0);
    g_block = &blk;
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned t = 0; t < n; ++t) {
      threads.emplace_back([&, t, b] {
        threadIdx.x = t;
        blockIdx.x = b % grid.x;
        blockIdx.y = b / grid.x;
        blockDim.x = n;
        kernel(args...);
      });
    }
    for (auto& th : threads) th.join();
    g_block = nullptr;
  }
}

}  // namespace emu

#define REGEXLM_LAUNCH(kernel, grid, block, stream, ...) emu::launch(kernel, grid, block, __VA_ARGS__)
