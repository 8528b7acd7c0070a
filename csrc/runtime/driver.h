// The CUDA driver API, resolved once from libcuda.so.1 with dlopen: the extension links no
// CUDA library of its own, and imports on machines without a GPU.
#pragma once

#include <cuda.h>

namespace gems {

struct DriverApi {
  decltype(&::cuInit) cuInit;
  decltype(&::cuGetErrorName) cuGetErrorName;
  decltype(&::cuGetErrorString) cuGetErrorString;
  decltype(&::cuDeviceGetAttribute) cuDeviceGetAttribute;
  decltype(&::cuDevicePrimaryCtxRetain) cuDevicePrimaryCtxRetain;
  decltype(&::cuCtxGetCurrent) cuCtxGetCurrent;
  decltype(&::cuCtxSetCurrent) cuCtxSetCurrent;
  decltype(&::cuLibraryLoadData) cuLibraryLoadData;
  decltype(&::cuLibraryGetKernel) cuLibraryGetKernel;
  decltype(&::cuKernelGetFunction) cuKernelGetFunction;
  decltype(&::cuFuncSetAttribute) cuFuncSetAttribute;
  decltype(&::cuLaunchKernel) cuLaunchKernel;
  decltype(&::cuLaunchKernelEx) cuLaunchKernelEx;
  decltype(&::cuOccupancyMaxActiveBlocksPerMultiprocessor) cuOccupancyMaxActiveBlocksPerMultiprocessor;
  decltype(&::cuMemsetD32Async) cuMemsetD32Async;
  decltype(&::cuMemcpyHtoDAsync) cuMemcpyHtoDAsync;
  decltype(&::cuStreamIsCapturing) cuStreamIsCapturing;
};

// The driver's entry points; raises c10::Error (once per call, cached failure) when libcuda
// cannot be loaded or is older than the API needs (CUDA 12.0: cuLibrary*).
const DriverApi& driver();

// Raises a c10::Error naming the call, the kernel and the device when `result` is an error.
void check(CUresult result, const char* call, const char* kernel, int device);

}  // namespace gems
