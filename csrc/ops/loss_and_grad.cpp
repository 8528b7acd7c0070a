// gems::cross_entropy_loss_and_grad_(logits, target, ignore_index, label_smoothing, softcap, scale):
// the step of the chunked fused linear + cross entropy (python/gems_aot/_linear_ce.py). Declared
// in aot/family_loss.py (grid ce_loss_and_grad), kernel kernels/loss.py:cross_entropy_loss_and_grad.
//
// logits [rows, V] (fp32, fp16, bf16; any row stride, the classes contiguous) and int64 targets
// [rows] (any stride) on one CUDA device. Returns each row's cross entropy (fp32 [rows]: with
// Gemma 2's softcap when given, torch's label smoothing, 0 for an ignored row) and writes
// d(sum(loss) * scale) / d(logits) over the logits. A target out of range gives NaN (its loss and
// gradient row), as the loss family does where ATen asserts.
//
// Errors (a gems op only, nothing to fall back to): shapes, dtypes, devices, a strided class dim,
// label_smoothing outside [0, 1], a softcap that is not positive, no image for this GPU, rows or
// V past 32-bit. The Meta function runs the same checks.
#include <ATen/cuda/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>

#include <limits>

#include "gems_kernels.h"
#include "gems_loss_ops.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace ce = gen::ce_loss_and_grad;

constexpr const char* kOp = "gems::cross_entropy_loss_and_grad_";

void check(const at::Tensor& logits, const at::Tensor& target, double label_smoothing, std::optional<double> softcap) {
  TORCH_CHECK(logits.dim() == 2, kOp, ": expected logits of 2 dims [rows, classes], got ", logits.sym_sizes());
  TORCH_CHECK(target.dim() == 1 && target.sym_size(0) == logits.sym_size(0), kOp, ": expected a target of shape [",
              logits.sym_size(0), "], got ", target.sym_sizes());
  TORCH_CHECK(ce::dtype_of(logits.scalar_type()) >= 0, kOp, ": unsupported logits dtype ", logits.scalar_type(),
              " (supported: Float, Half, BFloat16)");
  TORCH_CHECK(target.scalar_type() == at::kLong, kOp, ": expected an int64 target, got ", target.scalar_type());
  TORCH_CHECK(target.device() == logits.device(), kOp, ": expected logits and target on one device, got ",
              logits.device(), " and ", target.device());
  TORCH_CHECK(logits.sym_size(1) >= 1, kOp, ": expected at least one class");
  TORCH_CHECK(logits.sym_size(1) == 1 || logits.sym_stride(1) == 1, kOp,
              ": expected the classes contiguous (logits.stride(1) == 1), got strides ", logits.sym_strides());
  TORCH_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, kOp,
              ": label_smoothing must be between 0.0 and 1.0, got ", label_smoothing);
  TORCH_CHECK(!softcap.has_value() || *softcap > 0.0, kOp, ": softcap must be positive, got ", softcap.value_or(0));
}

}  // namespace

namespace cuda {
at::Tensor cross_entropy_loss_and_grad_(at::Tensor& logits, const at::Tensor& target, int64_t ignore_index,
                                        double label_smoothing, std::optional<double> softcap, double scale) {
  check(logits, target, label_smoothing, softcap);
  c10::cuda::CUDAGuard guard(logits.device());
  const int64_t rows = logits.size(0), classes = logits.size(1);
  at::Tensor losses = at::detail::empty_cuda({rows}, at::kFloat, logits.device(), std::nullopt);
  if (rows == 0) return losses;
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  // The kernel's column offsets are 32-bit (below V + a block).
  TORCH_CHECK(rows <= kMax && classes <= kMax / 2, kOp, ": ", rows, " rows of ", classes,
              " classes exceed the kernel's 32-bit grid and offsets");
  // One row: its stride is never multiplied by a row index other than 0.
  const int64_t row_stride = rows == 1 ? 0 : logits.stride(0);
  const bool aligned = aligned16(logits.const_data_ptr()) && classes % 16 == 0 && row_stride % 16 == 0;
  const int softcap_axis = softcap.has_value() ? ce::softcap_tanh : ce::softcap_none;
  const int dtype = ce::dtype_of(logits.scalar_type());
  const int id = ce::find(softcap_axis, dtype, aligned ? ce::align_16 : ce::align_any);
  TORCH_INTERNAL_ASSERT(id >= 0, kOp, ": no variant for a checked input");
  const c10::DeviceIndex device = logits.device().index();
  const LoadedKernel* k = kernel_for(id, device);
  if (!k) unsupported(kOp, Fallback::kArch, {&logits});
  KernelArgs args;
  args.ptr(logits.mutable_data_ptr());
  args.ptr(target.const_data_ptr());
  args.ptr(losses.mutable_data_ptr());
  args.i32(static_cast<int32_t>(classes));
  args.i64(row_stride);
  args.i64(target.stride(0));
  args.i64(ignore_index);
  args.f32(static_cast<float>(1.0 - label_smoothing));
  args.f32(static_cast<float>(label_smoothing / static_cast<double>(classes)));
  args.f32(static_cast<float>(softcap.value_or(1.0)));
  args.f32(static_cast<float>(scale));
  launch(*k, device, static_cast<uint32_t>(rows), 1, 1, args);
  return losses;
}
}  // namespace cuda

namespace meta {
at::Tensor cross_entropy_loss_and_grad_(at::Tensor& logits, const at::Tensor& target, int64_t /*ignore_index*/,
                                        double label_smoothing, std::optional<double> softcap, double /*scale*/) {
  check(logits, target, label_smoothing, softcap);
  return at::empty_symint({logits.sym_size(0)}, logits.options().dtype(at::kFloat));
}
}  // namespace meta

}  // namespace gems
