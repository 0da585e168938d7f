// The C ABI between the plain-CUDA kernel (`sample_step_kernel.cu`) and its torch glue
// (`sample_step.cpp`). Plain C types only, so either side builds without the other's headers.
#pragma once

#include <cstdint>

extern "C" {

// One fused decode step for `batch` rows over `vocab` logits; see sample_step_kernel.cu.
// dtype: 0 = fp32, 1 = bf16, 2 = fp16. Tables: next_by_class int32[num_rows, num_classes]
// (row stride stride_n), row_of int32[num_states] (each state's row), class_of int32[vocab],
// min_tokens int32[num_states]. Randomness: either
// `noise` fp32[batch, vocab] (row stride stride_nz), or, when it is null, the counter-based
// generator keyed by seeds int64[batch] and steps int32[batch]. Returns a cudaError_t value
// (0 = success).
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
    void* stream);

// A readable message for a code returned above.
const char* regexlm_cuda_error_string(int code);
}
