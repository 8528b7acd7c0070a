// Why an input was not run by a gems kernel, and the per-op counters of each call's outcome.
//
// Op drivers return a `Fallback`: kNone when a gems kernel ran, otherwise the reason. An aten
// override counts the outcome, then calls ATen's own CUDA kernel for a fallback; a
// torch.ops.gems.* call raises `unsupported(...)` instead: a direct call asks for gems' kernel.
// Fallbacks are always counted; calls served by gems and copies between devices only while a
// coverage recorder runs (gems_aot.record()), so that the common path costs one relaxed load.
// With warnings on (GEMS_AOT_WARN_FALLBACK=1 at load, or gems_aot.warn_on_fallback()), the first
// fallback of each (op, reason) in the process also raises a Python warning saying why.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace gems {

enum class Fallback : uint8_t {
  kNone = 0,  // a gems kernel ran
  kDtype,  // no variant for this dtype
  kMixedDtype,  // operands of different dtypes (casts inside the kernel are not built)
  kRank,  // more dims than the strided variants take
  kIndex64,  // needs 64-bit indexing where only 32-bit variants exist
  kArch,  // no image for this device's architecture
  kDevice,  // operands on different devices or not on CUDA
  kLayout,  // a memory layout the variants do not cover
  kArgs,  // an argument value the variants do not cover
  kTuned,  // the tuning table sends this shape to ATen (no gems configuration reached cuBLAS there)
  kTransfer,  // a copy between devices: ATen's memcpy, which no kernel replaces (not counted)
  kCount
};

const char* fallback_name(Fallback reason);
// What a reason means, in a sentence for a user.
const char* fallback_description(Fallback reason);

extern std::atomic<bool> g_warn_fallbacks;

// Calls of every op while recording, by outcome: served, fallen back, transfer.
struct RecordedTotals {
  std::atomic<bool> on{false};
  std::atomic<uint64_t> outcomes[3] = {};
};
extern RecordedTotals g_recorded;

class FallbackCounter {
 public:
  explicit FallbackCounter(const char* op) : op_(op) {}
  void hit(Fallback reason) {
    const bool fallback = reason != Fallback::kNone && reason != Fallback::kTransfer;
    if (fallback) {
      counts_[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
      if (g_warn_fallbacks.load(std::memory_order_relaxed)) warn_once(reason);
    }
    if (!g_recorded.on.load(std::memory_order_relaxed)) return;
    if (!fallback) counts_[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
    const int outcome = reason == Fallback::kNone ? 0 : fallback ? 1 : 2;
    g_recorded.outcomes[outcome].fetch_add(1, std::memory_order_relaxed);
  }
  const char* op() const { return op_; }
  uint64_t count(Fallback reason) const { return counts_[static_cast<int>(reason)].load(std::memory_order_relaxed); }
  void reset() {
    for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
  }

 private:
  void warn_once(Fallback reason);

  const char* op_;
  std::atomic<uint64_t> counts_[static_cast<int>(Fallback::kCount)] = {};
  std::atomic<uint32_t> warned_{0};  // a bit per reason already warned about
};

// The counter of an aten override, created on first use; keep the reference in a
// function-local static so the lookup happens once.
FallbackCounter& fallback_counter(const char* op);

// "op\treason\tcount\n" for every non-zero count: fallbacks, and while recording also "none"
// (served by gems) and "transfer".
std::string fallback_report();
void reset_fallback_counts();
// Turns recording on or off; returns whether it was on.
bool set_recording(bool on);
// Turns the one-time fallback warnings on or off; returns whether they were on.
bool set_fallback_warnings(bool on);
// The calls recorded so far: {served, fallen back, transfers}.
std::vector<int64_t> recorded_totals();

// Raises the error a torch.ops.gems.* call gives for input no variant covers.
[[noreturn]] void unsupported(const char* op, Fallback reason, const std::string& detail);
// The same, with the operands described (dtype, sizes, strides, device) as the detail.
[[noreturn]] void unsupported(const char* op, Fallback reason, std::initializer_list<const at::Tensor*> operands);

}  // namespace gems
