// Multi-tensor driver: the fused Adam and AdamW steps (aten::_fused_adam_, aten::_fused_adamw_,
// each with a float lr or a Tensor lr), every tensor of a call in one launch of
// kernels/multi_tensor.py:adam_kernel. Declarations: aot/family_multi_tensor.py.
//
// The call is described by an int64 table (the layout is in kernels/multi_tensor.py): one row per
// tensor (its data pointers, element count, first chunk), a sentinel row, then the programs'
// plan. The table lives in device memory, in a small cache keyed by its content: the optimizer
// passes the same tensors every step, so after the first step a call builds the table on the
// host (a few hundred bytes per tensor), finds it in the cache and launches; a miss uploads it
// from pinned memory on the current stream. A table used while a CUDA graph captures is kept for
// the life of the process (the graph reads it at every replay); a miss while capturing runs
// ATen's kernel instead (warm the optimizer up before capturing it, as torch's docs say).
//
// Covered: params, grads, exp_avgs, exp_avg_sqs (and max_exp_avg_sqs with amsgrad) all fp32, all
// fp16 or all bf16, on one CUDA device, each dense (any dense layout, the same sizes and strides
// in every list) with 16-byte aligned data; float32 one-element step tensors, grad_scale,
// found_inf and lr tensor on that device (a CPU lr tensor is read once, as ATen does). An empty
// list is a no-op. Fallbacks (ATen's kernel through the aten overrides, which raises its own
// error where the input is invalid; an error through torch.ops.gems.*):
//   kArgs        lists of different lengths; a table missing from the cache while capturing
//   kDevice      a tensor not on the first param's CUDA device
//   kDtype       fp64 (or another dtype without a variant); a step, grad_scale, found_inf or lr
//                tensor that is not float32 or not one element
//   kMixedDtype  tensors of different dtypes (mixed-precision AdamW's fp32 states included)
//   kLayout      a non-dense tensor, sizes or strides that differ between lists, data not
//                16-byte aligned
//   kArch        no image for this device
#include "gems_multi_tensor_ops.h"

#include <ATen/core/CachingHostAllocator.h>
#include <ATen/ops/_fused_adam_cuda_dispatch.h>
#include <ATen/ops/_fused_adamw_cuda_dispatch.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <vector>

#include "gems_kernels.h"
#include "multi_tensor_plan.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems {
namespace {

namespace g = gen::adam;
namespace tbl = multi_tensor_table;

// Tables kept in the cache besides those a CUDA graph uses: a few optimizers' param groups.
constexpr size_t kCachedTables = 16;

struct AdamCall {
  at::TensorList params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
  double lr = 0, beta1 = 0, beta2 = 0, weight_decay = 0, eps = 0;
  const at::Tensor* lr_tensor = nullptr;  // on the params' device
  bool amsgrad = false, maximize = false, adamw = false;
  const std::optional<at::Tensor>* grad_scale = nullptr;
  const std::optional<at::Tensor>* found_inf = nullptr;
};

// A device copy of a table, and what the cache needs to reuse or free it.
struct CachedTable {
  std::vector<int64_t> host;
  c10::DeviceIndex device;
  c10::DataPtr data;
  cudaStream_t stream;  // the stream it was uploaded on (the caching allocator's block's stream)
  bool captured = false;  // a CUDA graph reads it: never freed
};

std::mutex g_cache_mutex;
std::list<CachedTable> g_cache;  // most recently used first; guarded by g_cache_mutex

// The device copy of `host` on the current stream of `device`, from the cache or uploaded;
// nullptr for a table missing from the cache while the stream captures. The caller holds
// g_cache_mutex until its launch is enqueued (no other thread frees the table before).
const int64_t* device_table(std::vector<int64_t>& host, c10::DeviceIndex device) {
  const c10::cuda::CUDAStream stream = c10::cuda::getCurrentCUDAStream(device);
  const bool capturing = stream_is_capturing(device);
  const size_t bytes = host.size() * sizeof(int64_t);
  for (auto it = g_cache.begin(); it != g_cache.end(); ++it) {
    if (it->device != device || it->host.size() != host.size() || std::memcmp(it->host.data(), host.data(), bytes)) {
      continue;
    }
    // A table a graph reads is never freed; any other is freed only after the streams that read it
    // reached the point of the free.
    it->captured |= capturing;
    if (it->stream != stream.stream() && !it->captured) {
      c10::cuda::CUDACachingAllocator::recordStream(it->data, stream);
    }
    g_cache.splice(g_cache.begin(), g_cache, it);
    return static_cast<const int64_t*>(g_cache.front().data.get());
  }
  if (capturing) return nullptr;
  c10::DataPtr data = c10::cuda::CUDACachingAllocator::get()->allocate(bytes);
  at::HostAllocator* pinned_allocator = at::getHostAllocator(at::kCUDA);
  c10::DataPtr pinned = pinned_allocator->allocate(bytes);
  std::memcpy(pinned.get(), host.data(), bytes);
  copy_to_device_async(data.get(), pinned.get(), bytes, device);
  // The pinned block goes back to torch's host allocator, which reuses it after the copy ran.
  pinned_allocator->record_event(pinned.get(), pinned.get_context(), stream.unwrap());
  g_cache.push_front(CachedTable{std::move(host), device, std::move(data), stream.stream()});
  size_t kept = 0;
  for (auto it = g_cache.begin(); it != g_cache.end();) {
    // A freed block is reused by later work on its stream only (and on the streams recorded).
    it = !it->captured && ++kept > kCachedTables ? g_cache.erase(it) : std::next(it);
  }
  return static_cast<const int64_t*>(g_cache.front().data.get());
}

bool on_device(const at::Tensor& t, const at::Device& device) { return t.is_cuda() && t.device() == device; }

// A float32 one-element tensor on the params' device (steps, grad_scale, found_inf, lr).
Fallback check_scalar(const at::Tensor& t, const at::Device& device) {
  if (!on_device(t, device)) return Fallback::kDevice;
  return t.scalar_type() == at::kFloat && t.numel() == 1 ? Fallback::kNone : Fallback::kDtype;
}

// Whether the tensors of one list can be updated as the params' flat elements.
Fallback check_list(at::TensorList list, at::TensorList params, const at::Device& device) {
  for (size_t i = 0; i < list.size(); ++i) {
    const at::Tensor& t = list[i];
    if (!on_device(t, device)) return Fallback::kDevice;
    if (t.scalar_type() != params[0].scalar_type()) return Fallback::kMixedDtype;
    if (t.layout() != at::kStrided || !t.is_non_overlapping_and_dense() || t.sizes() != params[i].sizes() ||
        t.strides() != params[i].strides() || (t.numel() > 0 && !aligned16(t.const_data_ptr()))) {
      return Fallback::kLayout;
    }
  }
  return Fallback::kNone;
}

Fallback check(const AdamCall& c, const at::Device& device) {
  const size_t n = c.params.size();
  if (c.grads.size() != n || c.exp_avgs.size() != n || c.exp_avg_sqs.size() != n || c.steps.size() != n ||
      (c.amsgrad && c.max_exp_avg_sqs.size() != n)) {
    return Fallback::kArgs;
  }
  if (!c.params[0].is_cuda()) return Fallback::kDevice;
  if (g::dtype_of(c.params[0].scalar_type()) < 0) return Fallback::kDtype;
  for (at::TensorList list : {c.params, c.grads, c.exp_avgs, c.exp_avg_sqs}) {
    if (Fallback r = check_list(list, c.params, device); r != Fallback::kNone) return r;
  }
  if (c.amsgrad) {
    if (Fallback r = check_list(c.max_exp_avg_sqs, c.params, device); r != Fallback::kNone) return r;
  }
  for (const at::Tensor& step : c.steps) {
    if (Fallback r = check_scalar(step, device); r != Fallback::kNone) return r;
  }
  for (const std::optional<at::Tensor>* t : {c.grad_scale, c.found_inf}) {
    if (t->has_value()) {
      if (Fallback r = check_scalar(**t, device); r != Fallback::kNone) return r;
    }
  }
  return c.lr_tensor ? check_scalar(*c.lr_tensor, device) : Fallback::kNone;
}

// The table of kernels/multi_tensor.py for these lists and a grid of at most `programs`
// programs; returns the grid.
int64_t build_table(const AdamCall& c, int64_t programs, std::vector<int64_t>& host) {
  const size_t n = c.params.size();
  host.assign((n + 1) * tbl::kRow, 0);
  const auto address = [](const at::Tensor& t) { return reinterpret_cast<int64_t>(t.const_data_ptr()); };
  for (size_t i = 0; i < n; ++i) {
    int64_t* row = host.data() + i * tbl::kRow;
    row[tbl::kParam] = address(c.params[i]);
    row[tbl::kGrad] = address(c.grads[i]);
    row[tbl::kExpAvg] = address(c.exp_avgs[i]);
    row[tbl::kExpAvgSq] = address(c.exp_avg_sqs[i]);
    row[tbl::kMaxExpAvgSq] = c.amsgrad ? address(c.max_exp_avg_sqs[i]) : 0;
    row[tbl::kStep] = address(c.steps[i]);
    row[tbl::kNumel] = c.params[i].numel();
  }
  return tbl::plan(host, n, programs);
}

Fallback run_adam(const AdamCall& c) {
  if (c.params.empty()) return Fallback::kNone;
  const at::Device device = c.params[0].device();
  if (Fallback r = check(c, device); r != Fallback::kNone) return r;
  const bool grad_scale = c.grad_scale->has_value();
  const int id = g::find(g::dtype_of(c.params[0].scalar_type()), c.adamw ? g::mode_adamw : g::mode_adam,
                         c.amsgrad ? g::amsgrad_yes : g::amsgrad_no, grad_scale ? g::grad_scale_yes : g::grad_scale_no);
  if (id < 0) return Fallback::kDtype;
  const LoadedKernel* kernel = kernel_for(id, device.index());
  if (!kernel) return Fallback::kArch;
  std::vector<int64_t> host;
  const int64_t grid = build_table(c, persistent_grid(*kernel, device.index(), INT64_MAX), host);
  if (grid == 0) return Fallback::kNone;  // every tensor is empty

  c10::cuda::CUDAGuard guard(device);
  const size_t sentinel = c.params.size() * tbl::kRow;
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  const int64_t* table = device_table(host, device.index());
  if (!table) return Fallback::kArgs;
  const int64_t* stand_in = table + sentinel;  // 0.0f: found_inf and lr when absent
  const auto pointer = [&](const std::optional<at::Tensor>& t) -> const void* {
    return t.has_value() ? t->const_data_ptr() : stand_in;
  };
  KernelArgs args;
  args.ptr(table);
  args.ptr(table + sentinel + tbl::kRow);
  args.ptr(pointer(*c.found_inf));
  args.ptr(pointer(*c.grad_scale));
  args.ptr(c.lr_tensor ? c.lr_tensor->const_data_ptr() : stand_in);
  args.f64(c.lr);
  args.i32(c.lr_tensor ? 1 : 0);
  args.f64(c.beta1);
  args.f64(c.beta2);
  args.f64(c.weight_decay);
  args.f64(c.eps);
  args.i32(c.maximize ? 1 : 0);
  launch(*kernel, device.index(), static_cast<uint32_t>(grid), 1, 1, args);
  return Fallback::kNone;
}

AdamCall make_call(at::TensorList self, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                   at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double beta1, double beta2,
                   double weight_decay, double eps, bool amsgrad, bool maximize,
                   const std::optional<at::Tensor>& grad_scale, const std::optional<at::Tensor>& found_inf,
                   bool adamw) {
  AdamCall c;
  c.params = self;
  c.grads = grads;
  c.exp_avgs = exp_avgs;
  c.exp_avg_sqs = exp_avg_sqs;
  c.max_exp_avg_sqs = max_exp_avg_sqs;
  c.steps = state_steps;
  c.beta1 = beta1;
  c.beta2 = beta2;
  c.weight_decay = weight_decay;
  c.eps = eps;
  c.amsgrad = amsgrad;
  c.maximize = maximize;
  c.grad_scale = &grad_scale;
  c.found_inf = &found_inf;
  c.adamw = adamw;
  return c;
}

// A Tensor lr: read on the host when it is a CPU tensor (ATen calls item()), else by the kernel.
void set_lr(AdamCall& c, const at::Tensor& lr) {
  if (lr.is_cpu()) {
    c.lr = lr.item<double>();
  } else {
    c.lr_tensor = &lr;
  }
}

// Raises the error of a direct torch.ops.gems call that no kernel covers.
void require(const char* op, Fallback r, const AdamCall& c) {
  if (r != Fallback::kNone) unsupported(op, r, {&c.params[0]});  // run_adam serves an empty list
}

}  // namespace

#define GEMS_ADAM_LISTS                                                                                          \
  at::TensorList self, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,              \
      at::TensorList max_exp_avg_sqs, at::TensorList state_steps
#define GEMS_ADAM_SCALARS                                                                                        \
  double beta1, double beta2, double weight_decay, double eps, bool amsgrad, bool maximize,                    \
      const std::optional<at::Tensor>&grad_scale, const std::optional<at::Tensor>&found_inf
#define GEMS_ADAM_CALL(adamw)                                                                                    \
  make_call(self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, beta1, beta2, weight_decay, eps, \
            amsgrad, maximize, grad_scale, found_inf, adamw)
#define GEMS_ADAM_ARGS(lr)                                                                                       \
  self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr, beta1, beta2, weight_decay, eps,       \
      amsgrad, maximize, grad_scale, found_inf

namespace cuda {
void _fused_adam_(GEMS_ADAM_LISTS, double lr, GEMS_ADAM_SCALARS) {
  AdamCall c = GEMS_ADAM_CALL(false);
  c.lr = lr;
  require("gems::_fused_adam_", run_adam(c), c);
}

void _fused_adam__tensor_lr(GEMS_ADAM_LISTS, const at::Tensor& lr, GEMS_ADAM_SCALARS) {
  AdamCall c = GEMS_ADAM_CALL(false);
  set_lr(c, lr);
  require("gems::_fused_adam_.tensor_lr", run_adam(c), c);
}

void _fused_adamw_(GEMS_ADAM_LISTS, double lr, GEMS_ADAM_SCALARS) {
  AdamCall c = GEMS_ADAM_CALL(true);
  c.lr = lr;
  require("gems::_fused_adamw_", run_adam(c), c);
}

void _fused_adamw__tensor_lr(GEMS_ADAM_LISTS, const at::Tensor& lr, GEMS_ADAM_SCALARS) {
  AdamCall c = GEMS_ADAM_CALL(true);
  set_lr(c, lr);
  require("gems::_fused_adamw_.tensor_lr", run_adam(c), c);
}
}  // namespace cuda

// Nothing to compute on meta tensors: the ops write their arguments in place. (The other forms'
// fake implementation is aten's.)
namespace meta {
void _fused_adam__tensor_lr(GEMS_ADAM_LISTS, const at::Tensor& lr, GEMS_ADAM_SCALARS) {}
void _fused_adamw__tensor_lr(GEMS_ADAM_LISTS, const at::Tensor& lr, GEMS_ADAM_SCALARS) {}
}  // namespace meta

namespace aten_impl {
void _fused_adam_(GEMS_ADAM_LISTS, double lr, GEMS_ADAM_SCALARS) {
  static FallbackCounter& counter = fallback_counter("_fused_adam_");
  AdamCall c = GEMS_ADAM_CALL(false);
  c.lr = lr;
  const Fallback r = run_adam(c);
  counter.hit(r);
  if (r != Fallback::kNone) at::cuda::_fused_adam_(GEMS_ADAM_ARGS(lr));
}

void _fused_adam__tensor_lr(GEMS_ADAM_LISTS, const at::Tensor& lr, GEMS_ADAM_SCALARS) {
  static FallbackCounter& counter = fallback_counter("_fused_adam_.tensor_lr");
  AdamCall c = GEMS_ADAM_CALL(false);
  set_lr(c, lr);
  const Fallback r = run_adam(c);
  counter.hit(r);
  if (r != Fallback::kNone) at::cuda::_fused_adam_(GEMS_ADAM_ARGS(lr));
}

void _fused_adamw_(GEMS_ADAM_LISTS, double lr, GEMS_ADAM_SCALARS) {
  static FallbackCounter& counter = fallback_counter("_fused_adamw_");
  AdamCall c = GEMS_ADAM_CALL(true);
  c.lr = lr;
  const Fallback r = run_adam(c);
  counter.hit(r);
  if (r != Fallback::kNone) at::cuda::_fused_adamw_(GEMS_ADAM_ARGS(lr));
}

void _fused_adamw__tensor_lr(GEMS_ADAM_LISTS, const at::Tensor& lr, GEMS_ADAM_SCALARS) {
  static FallbackCounter& counter = fallback_counter("_fused_adamw_.tensor_lr");
  AdamCall c = GEMS_ADAM_CALL(true);
  set_lr(c, lr);
  const Fallback r = run_adam(c);
  counter.hit(r);
  if (r != Fallback::kNone) at::cuda::_fused_adamw_(GEMS_ADAM_ARGS(lr));
}
}  // namespace aten_impl

}  // namespace gems
