// The kernel registry and launcher: what every op driver uses to run an AOT-compiled kernel.
//
// The build generates the kernel table (gems_kernels.h in the build folder): every compiled
// variant with its cubin per target (in that target's compressed pack, runtime/packs.h) and the
// metadata of Triton's launch ABI. A driver looks up a kernel id in its grid's table, asks
// `kernel_for` for the function on the tensor's device (decompressed and loaded on first use,
// once, thread-safe) and launches it on the current stream.
#pragma once

#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <vector>

#include "runtime/packs.h"

namespace gems {

// A target of this build (aot/targets.py): its id (80, 90, 100 for sm_80, sm_90a, sm_100a; 942,
// 950 for gfx942, gfx950), name and vendor ("nvidia", "amd").
struct BuildTarget {
  int id;
  const char* name;
  const char* vendor;
};

// The vendor seam. This runtime loads and launches images through NVIDIA's CUDA driver API
// (runtime/driver.h): images of another vendor's targets are built and packed, never loaded. A
// vendor's runtime must provide what kernels.cpp asks of the driver: load an image from memory and
// find its entry point (cuLibraryLoadData / cuLibraryGetKernel; HIP: hipModuleLoadData /
// hipModuleGetFunction), raise a function's dynamic shared memory limit, the occupancy of a
// function (resident programs per multiprocessor), launch on the framework's current stream with
// Triton's argument layout (HIP: hipModuleLaunchKernel, num_warps x 64 threads a block), an async
// 32-bit memset, device attributes (capability or gfx name, shared memory, multiprocessors), and
// error strings. nullptr when this build's runtime serves `vendor`, else why not.
const char* vendor_unsupported(const char* vendor);

// One compiled image of a kernel for one target; fields mirror Triton's KernelMetadata.
struct KernelImage {
  int arch;  // the BuildTarget id it was compiled for
  const char* entry;  // the cubin's entry point (the @triton.jit function's name)
  packs::Placement placement;  // the cubin's place in the pack of `arch`
  int num_warps;
  int num_ctas;
  int shared;
  int global_scratch_size;
  int global_scratch_align;
  int profile_scratch_size;
  int profile_scratch_align;
  bool launch_pdl;
  bool launch_cooperative_grid;
  int params[4];  // the variant's launch_params (constexprs the driver needs), in order
};

struct KernelSpec {
  const char* name;  // the variant's symbol, e.g. binary_add_fp32_tt_contig_i32
  const char* signature;  // runtime argument types, e.g. "*fp32,*fp32,*fp32,i32,fp32"
  int num_args;  // runtime arguments, not counting Triton's hidden scratch pointers
  const char* triton_version;
  int first_image;  // into kImages
  int num_images;
};

// A kernel ready to launch on one device.
struct LoadedKernel {
  void* function;  // CUfunction
  const KernelImage* image;
  int id;
  int resident_per_sm;  // programs of it one SM holds at once (the driver's occupancy calculator)
};

// The kernel `id` on `device`, loading its module the first time; nullptr when this build has
// no image that runs on the device's architecture (or it needs more shared memory than the
// device has): the caller then falls back to ATen. Driver errors raise c10::Error.
const LoadedKernel* kernel_for(int id, c10::DeviceIndex device);

// Whether a pointer meets the divisibility-16 hint aligned variants are compiled with.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Argument storage for one launch: runtime arguments in signature order, each in its own
// 8-byte slot, followed by the two hidden scratch pointers the launcher appends.
class KernelArgs {
 public:
  static constexpr int kMaxArgs = 64;

  void ptr(const void* p) { push(reinterpret_cast<uint64_t>(p)); }
  void i32(int32_t v) { push(static_cast<uint64_t>(static_cast<uint32_t>(v))); }
  void i64(int64_t v) { push(static_cast<uint64_t>(v)); }
  void f32(float v) {
    uint32_t bits;
    static_assert(sizeof(bits) == sizeof(v));
    __builtin_memcpy(&bits, &v, sizeof(bits));
    push(bits);
  }
  void f64(double v) {
    uint64_t bits;
    static_assert(sizeof(bits) == sizeof(v));
    __builtin_memcpy(&bits, &v, sizeof(bits));
    push(bits);
  }
  // 8- and 16-bit integers (and i1) occupy the low bytes of their slot.
  void small_int(int64_t v) { push(static_cast<uint64_t>(v)); }
  int size() const { return n_; }
  void** slots() {
    for (int i = 0; i < n_; ++i) pointers_[i] = &storage_[i];
    return pointers_;
  }
  void push(uint64_t bits) {
    TORCH_CHECK(n_ < kMaxArgs, "gems: too many kernel arguments");
    storage_[n_++] = bits;
  }

 private:
  uint64_t storage_[kMaxArgs];
  void* pointers_[kMaxArgs];
  int n_ = 0;
};

// Launches `k` with a grid of (gx, gy, gz) programs on the current CUDA stream of `device`.
// Appends the hidden scratch pointers, allocates global scratch from the caching allocator
// when the kernel needs it, and uses cuLaunchKernelEx for clusters, PDL and cooperative grids.
void launch(const LoadedKernel& k, c10::DeviceIndex device, uint32_t gx, uint32_t gy, uint32_t gz,
            KernelArgs& args);

// Zeroes `words` 32-bit words at `ptr` on the current CUDA stream of `device` (a driver memset:
// no kernel of ours, no dispatcher call).
void zero_words_async(void* ptr, size_t words, c10::DeviceIndex device);

// Copies `bytes` from host memory at `src` to `dst` on the current CUDA stream of `device` (a
// driver copy: asynchronous for pinned `src`, which must then stay untouched until it ran).
void copy_to_device_async(void* dst, const void* src, size_t bytes, c10::DeviceIndex device);

// Whether the current CUDA stream of `device` is capturing a CUDA graph.
bool stream_is_capturing(c10::DeviceIndex device);

// Number of kernels and targets in this build, for info().
int kernel_count();
int image_count_for_arch(int arch);

// The cubin of image `index` (into the generated kImages), decompressed from its pack; what the
// loader passes to the driver. Raises c10::Error naming the kernel when the pack is corrupt.
std::vector<unsigned char> unpack_image(int index);

// Per target: how many images have been decompressed from its pack in this process, and how
// many bytes of chunks that took (a target never used reads nothing: both stay 0).
struct PackUse {
  int arch;
  int64_t images;
  int64_t decoded_bytes;
};
std::vector<PackUse> pack_use();

// The device's compute capability as major*10+minor, and the build target whose cubins run on
// it (0 when none does: every op then falls back to ATen).
int device_capability(c10::DeviceIndex device);
int device_target(c10::DeviceIndex device);
int sm_count(c10::DeviceIndex device);

// The grid of a persistent kernel over `tiles` work items: as many programs as the device holds
// at once, never more than there are tiles.
inline uint32_t persistent_grid(const LoadedKernel& k, c10::DeviceIndex device, int64_t tiles) {
  const int64_t slots = static_cast<int64_t>(sm_count(device)) * k.resident_per_sm;
  return static_cast<uint32_t>(tiles < slots ? tiles : slots);
}

}  // namespace gems
