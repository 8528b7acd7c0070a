#include "runtime/kernels.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>

#include "gems_kernels.h"
#include "runtime/driver.h"

namespace gems {
namespace {

constexpr int kMaxDevices = 64;

// Whether this runtime loads images of target `arch` (its vendor is the one it serves).
bool runtime_loads(int arch) {
  for (const BuildTarget& t : gen::kTargets) {
    if (t.id == arch) return vendor_unsupported(t.vendor) == nullptr;
  }
  return false;
}

// Whether an image built for target `arch` runs on a CUDA device of compute capability `cc`
// (major*10+minor): an NVIDIA target's; sm_80 cubins run on every 8.x, the sm_90a and sm_100a
// ones only on exactly 9.0 and 10.0.
bool runs_on(int arch, int cc) { return runtime_loads(arch) && (arch == cc || (arch == 80 && cc / 10 == 8)); }

struct DeviceState {
  std::once_flag init;
  int cc = 0;
  int target = 0;  // the build target whose images run here (device_target), 0 for none
  int shared_optin = 0;
  int sm_count = 0;
  std::unique_ptr<std::atomic<const LoadedKernel*>[]> kernels;
};

// The "no image for this device" marker, so a miss is cached like a hit.
const LoadedKernel kUnavailable{nullptr, nullptr, -1, 0};

DeviceState g_devices[kMaxDevices];
std::mutex g_load_mutex;
std::deque<LoadedKernel> g_loaded;  // stable addresses; guarded by g_load_mutex
CUlibrary g_libraries[gen::kNumImages > 0 ? gen::kNumImages : 1];  // guarded by g_load_mutex
// Per pack (in the order of gen::kArchs): images decompressed, bytes of chunks decoded for them.
std::atomic<int64_t> g_unpacked_images[gen::kNumArchs];
std::atomic<int64_t> g_decoded_bytes[gen::kNumArchs];

// The cubin of image `index` of kernel `name`, decompressed from its target's pack.
std::vector<unsigned char> unpack(int index, const char* name) {
  const KernelImage& im = gen::kImages[index];
  int pack = 0;
  while (pack < gen::kNumArchs && gen::kPacks[pack].arch != im.arch) ++pack;
  TORCH_CHECK(pack < gen::kNumArchs, "gems: kernel ", name, " has an image for target ", im.arch, " but no pack for it");
  std::vector<unsigned char> cubin;
  const std::string error = packs::unpack(gen::kPacks[pack], gen::kChunks, im.placement, cubin);
  TORCH_CHECK(error.empty(), "gems: cannot load kernel ", name, ": ", error, " (rebuild the extension)");
  g_unpacked_images[pack].fetch_add(1, std::memory_order_relaxed);
  g_decoded_bytes[pack].fetch_add(im.placement.offset + im.placement.size, std::memory_order_relaxed);
  return cubin;
}

// Driver calls need a current context; a thread that never touched the CUDA runtime has
// none, so bind the device's primary context (the one PyTorch uses) when it is missing.
void ensure_context(int device, const char* kernel) {
  const auto& d = driver();
  CUcontext ctx = nullptr;
  check(d.cuCtxGetCurrent(&ctx), "cuCtxGetCurrent", kernel, device);
  if (ctx) return;
  check(d.cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain", kernel, device);
  check(d.cuCtxSetCurrent(ctx), "cuCtxSetCurrent", kernel, device);
}

DeviceState& device_state(int device) {
  TORCH_CHECK(device >= 0 && device < kMaxDevices, "gems: device index ", device, " out of range");
  DeviceState& s = g_devices[device];
  std::call_once(s.init, [&] {
    const auto& d = driver();
    int major = 0, minor = 0;
    check(d.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
          "cuDeviceGetAttribute", "-", device);
    check(d.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
          "cuDeviceGetAttribute", "-", device);
    check(d.cuDeviceGetAttribute(&s.shared_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device),
          "cuDeviceGetAttribute", "-", device);
    check(d.cuDeviceGetAttribute(&s.sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device),
          "cuDeviceGetAttribute", "-", device);
    s.cc = major * 10 + minor;
    for (int arch : gen::kArchs) {
      if (runs_on(arch, s.cc) && (s.target == 0 || arch == s.cc)) s.target = arch;
    }
    s.kernels = std::make_unique<std::atomic<const LoadedKernel*>[]>(gen::kNumKernels > 0 ? gen::kNumKernels : 1);
  });
  return s;
}

const LoadedKernel* load(int id, int device, DeviceState& s) {
  const KernelSpec& spec = gen::kKernels[id];
  const KernelImage* image = nullptr;
  for (int i = 0; i < spec.num_images; ++i) {
    const KernelImage& im = gen::kImages[spec.first_image + i];
    // An exact match beats a same-major one (there is at most one of each per kernel).
    if (runs_on(im.arch, s.cc) && (!image || im.arch == s.cc)) image = &im;
  }
  if (!image || image->shared > s.shared_optin) return &kUnavailable;

  const auto& d = driver();
  const int image_index = static_cast<int>(image - gen::kImages);
  CUlibrary& lib = g_libraries[image_index];
  if (!lib) {
    // cuLibrary* is context-independent: one load serves every device. The driver keeps a copy
    // of the cubin (no CU_LIBRARY_BINARY_IS_PRESERVED), so the decompressed bytes can go.
    const std::vector<unsigned char> cubin = unpack(image_index, spec.name);
    check(d.cuLibraryLoadData(&lib, cubin.data(), nullptr, nullptr, 0, nullptr, nullptr, 0), "cuLibraryLoadData",
          spec.name, device);
  }
  CUkernel kernel = nullptr;
  check(d.cuLibraryGetKernel(&kernel, lib, image->entry), "cuLibraryGetKernel", spec.name, device);
  ensure_context(device, spec.name);
  CUfunction fn = nullptr;
  check(d.cuKernelGetFunction(&fn, kernel), "cuKernelGetFunction", spec.name, device);
  if (image->shared > 48 * 1024) {
    check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, image->shared),
          "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)", spec.name, device);
  }
  if (image->num_ctas == 16) {
    check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1),
          "cuFuncSetAttribute(NON_PORTABLE_CLUSTER_SIZE_ALLOWED)", spec.name, device);
  }
  int resident = 0;
  check(d.cuOccupancyMaxActiveBlocksPerMultiprocessor(&resident, fn, 32 * image->num_warps, image->shared),
        "cuOccupancyMaxActiveBlocksPerMultiprocessor", spec.name, device);
  g_loaded.push_back(LoadedKernel{fn, image, id, resident > 0 ? resident : 1});
  return &g_loaded.back();
}

c10::DataPtr scratch(int per_program, int align, uint64_t programs, const KernelSpec& spec, int device) {
  if (per_program <= 0) return {};
  // The caching allocator hands out 512-byte aligned blocks.
  TORCH_CHECK(align <= 512, "gems: kernel ", spec.name, " needs ", align, "-byte aligned scratch");
  // Freed blocks are reused only by later work on the same stream, after this kernel.
  return c10::cuda::CUDACachingAllocator::get()->allocate(programs * static_cast<uint64_t>(per_program));
}

}  // namespace

const LoadedKernel* kernel_for(int id, c10::DeviceIndex device) {
  TORCH_CHECK(id >= 0 && id < gen::kNumKernels, "gems: kernel id ", id, " out of range");
  DeviceState& s = device_state(device);
  const LoadedKernel* k = s.kernels[id].load(std::memory_order_acquire);
  if (!k) {
    std::lock_guard<std::mutex> lock(g_load_mutex);
    k = s.kernels[id].load(std::memory_order_relaxed);
    if (!k) {
      k = load(id, device, s);
      s.kernels[id].store(k, std::memory_order_release);
    }
  }
  return k == &kUnavailable ? nullptr : k;
}

void launch(const LoadedKernel& k, c10::DeviceIndex device, uint32_t gx, uint32_t gy, uint32_t gz,
            KernelArgs& args) {
  const KernelSpec& spec = gen::kKernels[k.id];
  const KernelImage& im = *k.image;
  TORCH_CHECK(args.size() == spec.num_args, "gems: kernel ", spec.name, " takes ", spec.num_args,
              " arguments (", spec.signature, "), the driver passed ", args.size());
  if (static_cast<uint64_t>(gx) * gy * gz == 0) return;
  const uint64_t programs = static_cast<uint64_t>(gx) * gy * gz * im.num_ctas;
  c10::DataPtr global_scratch = scratch(im.global_scratch_size, im.global_scratch_align, programs, spec, device);
  c10::DataPtr profile_scratch = scratch(im.profile_scratch_size, im.profile_scratch_align, programs, spec, device);
  args.ptr(global_scratch.get());
  args.ptr(profile_scratch.get());

  const auto& d = driver();
  ensure_context(device, spec.name);
  CUstream stream = c10::cuda::getCurrentCUDAStream(device).stream();
  auto fn = static_cast<CUfunction>(k.function);
  const unsigned block = 32u * static_cast<unsigned>(im.num_warps);
  if (im.num_ctas == 1 && !im.launch_pdl && !im.launch_cooperative_grid) {
    check(d.cuLaunchKernel(fn, gx, gy, gz, block, 1, 1, im.shared, stream, args.slots(), nullptr),
          "cuLaunchKernel", spec.name, device);
    return;
  }
  CUlaunchAttribute attrs[4];
  int n = 0;
  if (im.launch_pdl) {
    attrs[n].id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attrs[n++].value.programmaticStreamSerializationAllowed = 1;
  }
  if (im.launch_cooperative_grid) {
    attrs[n].id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    attrs[n++].value.cooperative = 1;
  }
  if (im.num_ctas != 1) {
    attrs[n].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attrs[n].value.clusterDim.x = im.num_ctas;
    attrs[n].value.clusterDim.y = 1;
    attrs[n++].value.clusterDim.z = 1;
    attrs[n].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE;
    attrs[n++].value.clusterSchedulingPolicyPreference = CU_CLUSTER_SCHEDULING_POLICY_SPREAD;
  }
  CUlaunchConfig config{};
  config.gridDimX = gx * im.num_ctas;  // Triton's grid counts clusters along x
  config.gridDimY = gy;
  config.gridDimZ = gz;
  config.blockDimX = block;
  config.blockDimY = 1;
  config.blockDimZ = 1;
  config.sharedMemBytes = im.shared;
  config.hStream = stream;
  config.attrs = attrs;
  config.numAttrs = n;
  check(d.cuLaunchKernelEx(&config, fn, args.slots(), nullptr), "cuLaunchKernelEx", spec.name, device);
}

void zero_words_async(void* ptr, size_t words, c10::DeviceIndex device) {
  if (words == 0) return;
  ensure_context(device, "memset");
  CUstream stream = c10::cuda::getCurrentCUDAStream(device).stream();
  check(driver().cuMemsetD32Async(reinterpret_cast<CUdeviceptr>(ptr), 0, words, stream), "cuMemsetD32Async", "memset",
        device);
}

void copy_to_device_async(void* dst, const void* src, size_t bytes, c10::DeviceIndex device) {
  if (bytes == 0) return;
  ensure_context(device, "memcpy");
  CUstream stream = c10::cuda::getCurrentCUDAStream(device).stream();
  check(driver().cuMemcpyHtoDAsync(reinterpret_cast<CUdeviceptr>(dst), src, bytes, stream), "cuMemcpyHtoDAsync",
        "memcpy", device);
}

bool stream_is_capturing(c10::DeviceIndex device) {
  ensure_context(device, "capture status");
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  check(driver().cuStreamIsCapturing(c10::cuda::getCurrentCUDAStream(device).stream(), &status),
        "cuStreamIsCapturing", "capture status", device);
  return status != CU_STREAM_CAPTURE_STATUS_NONE;
}

const char* vendor_unsupported(const char* vendor) {
  if (std::strcmp(vendor, "nvidia") == 0) return nullptr;
  return "this build's runtime is NVIDIA's (the CUDA driver API); its images for this vendor are packed but "
         "not loaded: a runtime over the vendor's module API and a build of torch for it are needed";
}

int kernel_count() { return gen::kNumKernels; }

int image_count_for_arch(int arch) {
  int n = 0;
  for (int i = 0; i < gen::kNumImages; ++i) n += gen::kImages[i].arch == arch;
  return n;
}

std::vector<unsigned char> unpack_image(int index) {
  TORCH_CHECK(index >= 0 && index < gen::kNumImages, "gems: image index ", index, " out of range");
  int kernel = 0;
  while (gen::kKernels[kernel].first_image + gen::kKernels[kernel].num_images <= index) ++kernel;
  return unpack(index, gen::kKernels[kernel].name);
}

std::vector<PackUse> pack_use() {
  std::vector<PackUse> use;
  for (int i = 0; i < gen::kNumArchs; ++i) {
    use.push_back({gen::kArchs[i], g_unpacked_images[i].load(), g_decoded_bytes[i].load()});
  }
  return use;
}

int device_capability(c10::DeviceIndex device) { return device_state(device).cc; }

int sm_count(c10::DeviceIndex device) { return device_state(device).sm_count; }

int device_target(c10::DeviceIndex device) { return device_state(device).target; }

}  // namespace gems
