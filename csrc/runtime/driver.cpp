#include "runtime/driver.h"

#include <c10/util/Exception.h>
#include <dlfcn.h>

#include <string>

namespace gems {
namespace {

struct LoadedDriver {
  DriverApi api{};
  std::string error;  // empty when every entry point resolved
};

template <typename Fn>
void resolve(void* lib, const char* name, Fn& fn, std::string& error) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (!fn && error.empty()) {
    error = std::string("libcuda.so.1 has no ") + name + " (the NVIDIA driver is older than CUDA 12.0)";
  }
}

LoadedDriver load() {
  LoadedDriver d;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    d.error = std::string("cannot load the CUDA driver libcuda.so.1: ") + (why ? why : "unknown error");
    return d;
  }
  auto& a = d.api;
  resolve(lib, "cuInit", a.cuInit, d.error);
  resolve(lib, "cuGetErrorName", a.cuGetErrorName, d.error);
  resolve(lib, "cuGetErrorString", a.cuGetErrorString, d.error);
  resolve(lib, "cuDeviceGetAttribute", a.cuDeviceGetAttribute, d.error);
  resolve(lib, "cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain, d.error);
  resolve(lib, "cuCtxGetCurrent", a.cuCtxGetCurrent, d.error);
  resolve(lib, "cuCtxSetCurrent", a.cuCtxSetCurrent, d.error);
  resolve(lib, "cuLibraryLoadData", a.cuLibraryLoadData, d.error);
  resolve(lib, "cuLibraryGetKernel", a.cuLibraryGetKernel, d.error);
  resolve(lib, "cuKernelGetFunction", a.cuKernelGetFunction, d.error);
  resolve(lib, "cuFuncSetAttribute", a.cuFuncSetAttribute, d.error);
  resolve(lib, "cuLaunchKernel", a.cuLaunchKernel, d.error);
  resolve(lib, "cuLaunchKernelEx", a.cuLaunchKernelEx, d.error);
  resolve(lib, "cuOccupancyMaxActiveBlocksPerMultiprocessor", a.cuOccupancyMaxActiveBlocksPerMultiprocessor, d.error);
  resolve(lib, "cuMemsetD32Async", a.cuMemsetD32Async, d.error);
  resolve(lib, "cuMemcpyHtoDAsync_v2", a.cuMemcpyHtoDAsync, d.error);
  resolve(lib, "cuStreamIsCapturing", a.cuStreamIsCapturing, d.error);
  // Idempotent; lets device queries work before PyTorch has initialised CUDA.
  if (d.error.empty() && a.cuInit(0) != CUDA_SUCCESS) d.error = "cuInit failed: no usable CUDA device or driver";
  return d;
}

}  // namespace

const DriverApi& driver() {
  static const LoadedDriver loaded = load();
  TORCH_CHECK(loaded.error.empty(), "gems: ", loaded.error);
  return loaded.api;
}

void check(CUresult result, const char* call, const char* kernel, int device) {
  if (result == CUDA_SUCCESS) return;
  const char* name = nullptr;
  const char* text = nullptr;
  driver().cuGetErrorName(result, &name);
  driver().cuGetErrorString(result, &text);
  TORCH_CHECK(false, "gems: ", call, " failed for kernel ", kernel, " on cuda:", device, ": ",
              name ? name : "unknown error", " (", text ? text : "no description", ")");
}

}  // namespace gems
