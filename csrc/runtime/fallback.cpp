#include "runtime/fallback.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <sstream>

namespace gems {
namespace {
std::mutex g_mutex;
std::deque<FallbackCounter> g_counters;  // stable addresses; guarded by g_mutex
}  // namespace

RecordedTotals g_recorded;
std::atomic<bool> g_warn_fallbacks{[] {
  const char* v = std::getenv("GEMS_AOT_WARN_FALLBACK");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}()};

const char* fallback_name(Fallback reason) {
  switch (reason) {
    case Fallback::kNone: return "none";
    case Fallback::kDtype: return "dtype";
    case Fallback::kMixedDtype: return "mixed_dtype";
    case Fallback::kRank: return "rank";
    case Fallback::kIndex64: return "index64";
    case Fallback::kArch: return "arch";
    case Fallback::kDevice: return "device";
    case Fallback::kLayout: return "layout";
    case Fallback::kArgs: return "args";
    case Fallback::kTuned: return "tuned_to_aten";
    case Fallback::kTransfer: return "transfer";
    case Fallback::kCount: break;
  }
  return "unknown";
}

const char* fallback_description(Fallback reason) {
  switch (reason) {
    case Fallback::kNone: return "a gems kernel ran";
    case Fallback::kDtype: return "gems has no kernel for these dtypes (float64, complex, or a dtype the op is not built for)";
    case Fallback::kMixedDtype: return "the operands have different dtypes, which gems' kernels do not mix";
    case Fallback::kRank: return "the tensors keep more dims after collapsing than the strided kernels take";
    case Fallback::kIndex64: return "a size or stride needs 64-bit indexing, which this op's kernels do not do";
    case Fallback::kArch: return "this build has no kernel image for this GPU's architecture";
    case Fallback::kDevice: return "the operands are on different devices or not on CUDA";
    case Fallback::kLayout: return "a memory layout the kernels do not cover (an out= that overlaps an input, or strides they do not take)";
    case Fallback::kArgs: return "an argument value the kernels do not cover";
    case Fallback::kTuned: return "the tuning table measured cuBLAS faster for this shape";
    case Fallback::kTransfer: return "a copy between devices";
    case Fallback::kCount: break;
  }
  return "unknown";
}

static_assert(static_cast<int>(Fallback::kCount) <= 32, "FallbackCounter::warned_ holds a bit per reason");

void FallbackCounter::warn_once(Fallback reason) {
  const uint32_t bit = 1u << static_cast<int>(reason);
  if (warned_.fetch_or(bit, std::memory_order_relaxed) & bit) return;
  TORCH_WARN("gems: aten::", op_, " ran ATen's kernel (", fallback_name(reason), ": ", fallback_description(reason),
             "). Later fallbacks of this op for this reason are only counted: gems_aot.fallback_counts()");
}

bool set_fallback_warnings(bool on) { return g_warn_fallbacks.exchange(on); }

FallbackCounter& fallback_counter(const char* op) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& c : g_counters) {
    if (std::string(c.op()) == op) return c;
  }
  return g_counters.emplace_back(op);
}

std::string fallback_report() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::ostringstream out;
  for (const auto& c : g_counters) {
    for (int r = 0; r < static_cast<int>(Fallback::kCount); ++r) {
      const uint64_t n = c.count(static_cast<Fallback>(r));
      if (n) out << c.op() << '\t' << fallback_name(static_cast<Fallback>(r)) << '\t' << n << '\n';
    }
  }
  return out.str();
}

void reset_fallback_counts() {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (auto& c : g_counters) c.reset();
}

bool set_recording(bool on) { return g_recorded.on.exchange(on); }

std::vector<int64_t> recorded_totals() {
  std::vector<int64_t> totals;
  for (const auto& n : g_recorded.outcomes) totals.push_back(static_cast<int64_t>(n.load(std::memory_order_relaxed)));
  return totals;
}

void unsupported(const char* op, Fallback reason, const std::string& detail) {
  TORCH_CHECK(false, op, ": no gems kernel covers this input (", fallback_name(reason), ": ", detail,
              "); call the torch op instead, or use gems_aot.enable(), which falls back to ATen");
}

void unsupported(const char* op, Fallback reason, std::initializer_list<const at::Tensor*> operands) {
  std::ostringstream s;
  const char* sep = "";
  for (const at::Tensor* t : operands) {
    s << sep << t->scalar_type() << t->sizes() << " strides " << t->strides() << " on " << t->device();
    sep = ", ";
  }
  unsupported(op, reason, s.str());
}

}  // namespace gems
