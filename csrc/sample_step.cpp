// Torch glue for the fused decode step: validates tensors and calls the plain-CUDA launcher in
// `sample_step_kernel.cu`. Registered as the operator `regexlm::sample_step`; the CUDA stream
// comes from Python as an integer (torch.cuda.current_stream().cuda_stream), so this file needs
// no CUDA header and compiles against any torch build.

#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "sample_step.h"

namespace {

void check_vec(const torch::Tensor& t, const char* name, torch::ScalarType dtype, int64_t n,
               const torch::Device& device) {
  TORCH_CHECK(t.device() == device, name, " must be on ", device, ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, name, " must have shape [", n, "], got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> sample_step(
    const torch::Tensor& logits, const torch::Tensor& states, const torch::Tensor& budgets,
    const torch::Tensor& temperature, const torch::Tensor& top_k, const torch::Tensor& top_p,
    const torch::Tensor& penalty, const c10::optional<torch::Tensor>& seen,
    const torch::Tensor& next_by_class, const torch::Tensor& row_of, const torch::Tensor& class_of,
    const torch::Tensor& min_tokens, const c10::optional<torch::Tensor>& noise,
    const c10::optional<torch::Tensor>& seeds, const c10::optional<torch::Tensor>& steps,
    int64_t stream, const c10::optional<torch::Tensor>& counters, int64_t split) {
  TORCH_CHECK(logits.is_cuda(), "logits must be a CUDA tensor, got ", logits.device());
  TORCH_CHECK(logits.dim() == 2, "logits must be [B, V], got ", logits.sizes());
  TORCH_CHECK(logits.stride(1) == 1 || logits.size(1) <= 1, "logits rows must be contiguous");
  const auto device = logits.device();
  const int64_t B = logits.size(0), V = logits.size(1);
  TORCH_CHECK(V >= 0 && V < (int64_t{1} << 31), "vocabulary size out of range: ", V);
  TORCH_CHECK(B < (int64_t{1} << 31), "batch size out of range: ", B);
  int dtype = -1;
  switch (logits.scalar_type()) {
    case torch::kFloat: dtype = 0; break;
    case torch::kBFloat16: dtype = 1; break;
    case torch::kHalf: dtype = 2; break;
    default: TORCH_CHECK(false, "logits must be fp32, bf16 or fp16, got ", logits.scalar_type());
  }
  check_vec(states, "states", torch::kInt, B, device);
  check_vec(budgets, "budgets", torch::kInt, B, device);
  check_vec(temperature, "temperature", torch::kFloat, B, device);
  check_vec(top_k, "top_k", torch::kInt, B, device);
  check_vec(top_p, "top_p", torch::kFloat, B, device);
  check_vec(penalty, "repetition_penalty", torch::kFloat, B, device);
  check_vec(class_of, "class_of", torch::kInt, V, device);
  TORCH_CHECK(next_by_class.device() == device && next_by_class.scalar_type() == torch::kInt &&
                  next_by_class.dim() == 2 &&
                  (next_by_class.stride(1) == 1 || next_by_class.size(1) <= 1),
              "next_by_class must be int32[R, C] on ", device, " with contiguous rows, got ",
              next_by_class.scalar_type(), next_by_class.sizes());
  const int64_t R = next_by_class.size(0), C = next_by_class.size(1);
  TORCH_CHECK(row_of.dim() == 1, "row_of must be int32[S], got ", row_of.sizes());
  const int64_t S = row_of.size(0);
  TORCH_CHECK(R < (int64_t{1} << 31) && S < (int64_t{1} << 31) && C < (int64_t{1} << 31),
              "index tables too large");
  check_vec(row_of, "row_of", torch::kInt, S, device);
  check_vec(min_tokens, "min_tokens", torch::kInt, S, device);
  const uint8_t* seen_ptr = nullptr;
  int64_t stride_s = 0;
  if (seen.has_value()) {
    const auto& t = *seen;
    TORCH_CHECK(t.device() == device && t.scalar_type() == torch::kBool && t.dim() == 2 &&
                    t.size(0) == B && t.size(1) == V && (t.stride(1) == 1 || V <= 1),
                "seen must be bool[", B, ", ", V, "] on ", device);
    seen_ptr = reinterpret_cast<const uint8_t*>(t.data_ptr<bool>());
    stride_s = t.stride(0);
  }
  const float* noise_ptr = nullptr;
  int64_t stride_nz = 0;
  const int64_t* seeds_ptr = nullptr;
  const int32_t* steps_ptr = nullptr;
  if (noise.has_value()) {
    const auto& t = *noise;
    TORCH_CHECK(t.device() == device && t.scalar_type() == torch::kFloat && t.dim() == 2 &&
                    t.size(0) == B && t.size(1) == V && (t.stride(1) == 1 || V <= 1),
                "noise must be fp32[", B, ", ", V, "] on ", device);
    noise_ptr = t.data_ptr<float>();
    stride_nz = t.stride(0);
  } else {
    TORCH_CHECK(seeds.has_value() && steps.has_value(),
                "without noise, pass per-row seeds (int64[B]) and steps (int32[B])");
    check_vec(*seeds, "seeds", torch::kLong, B, device);
    check_vec(*steps, "steps", torch::kInt, B, device);
    seeds_ptr = seeds->data_ptr<int64_t>();
    steps_ptr = steps->data_ptr<int32_t>();
  }
  // split rows: pass A over chunks of the row (a multiple of 32 tokens), one block each
  TORCH_CHECK(split >= 1, "split must be at least 1, got ", split);
  const int64_t chunk = std::max<int64_t>(32, ((V + split - 1) / split + 31) / 32 * 32);
  const int64_t nsplit = std::max<int64_t>(1, (V + chunk - 1) / chunk);
  torch::Tensor part_f, part_i;
  int32_t* counters_ptr = nullptr;
  if (nsplit > 1) {
    TORCH_CHECK(counters.has_value(), "split rows need the arrival counters tensor");
    const auto& c = *counters;
    TORCH_CHECK(c.device() == device && c.scalar_type() == torch::kInt && c.dim() == 1 &&
                    c.size(0) >= B && c.is_contiguous(),
                "counters must be a contiguous int32[>= ", B, "] on ", device);
    counters_ptr = c.data_ptr<int32_t>();
    part_f = torch::empty({B * nsplit * 4}, logits.options().dtype(torch::kFloat));
    part_i = torch::empty({B * nsplit * 4}, logits.options().dtype(torch::kInt));
  }
  auto tokens = torch::empty({B}, logits.options().dtype(torch::kLong));
  auto next_states = torch::empty({B}, logits.options().dtype(torch::kInt));
  auto no_allowed = torch::empty({B}, logits.options().dtype(torch::kBool));
  const int err = regexlm_sample_step_launch(
      logits.data_ptr(), dtype, logits.stride(0), static_cast<int32_t>(B),
      static_cast<int32_t>(V), states.data_ptr<int32_t>(), budgets.data_ptr<int32_t>(),
      temperature.data_ptr<float>(), top_k.data_ptr<int32_t>(), top_p.data_ptr<float>(),
      penalty.data_ptr<float>(), seen_ptr, stride_s, next_by_class.data_ptr<int32_t>(),
      next_by_class.stride(0), row_of.data_ptr<int32_t>(), static_cast<int32_t>(R),
      static_cast<int32_t>(S), static_cast<int32_t>(C),
      class_of.data_ptr<int32_t>(), min_tokens.data_ptr<int32_t>(), noise_ptr, stride_nz,
      seeds_ptr, steps_ptr, tokens.data_ptr<int64_t>(), next_states.data_ptr<int32_t>(),
      no_allowed.data_ptr<bool>(), nsplit > 1 ? part_f.data_ptr<float>() : nullptr,
      nsplit > 1 ? part_i.data_ptr<int32_t>() : nullptr, counters_ptr,
      static_cast<int32_t>(nsplit), static_cast<int32_t>(chunk),
      reinterpret_cast<void*>(static_cast<intptr_t>(stream)));
  TORCH_CHECK(err == 0, "regexlm sample_step launch failed: ", regexlm_cuda_error_string(err));
  return {tokens, next_states, no_allowed};
}

}  // namespace

TORCH_LIBRARY(regexlm, m) {
  m.def(
      "sample_step(Tensor logits, Tensor states, Tensor budgets, Tensor temperature, "
      "Tensor top_k, Tensor top_p, Tensor repetition_penalty, Tensor? seen, "
      "Tensor next_by_class, Tensor row_of, Tensor class_of, Tensor min_tokens, Tensor? noise, "
      "Tensor? seeds, Tensor? steps, int stream, Tensor? counters=None, int split=1) "
      "-> (Tensor, Tensor, Tensor)",
      &sample_step);
}

// Importable as a Python module too (`import regexlm._C` registers the operator).
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "regexlm CUDA kernels; the operators live under torch.ops.regexlm";
}
