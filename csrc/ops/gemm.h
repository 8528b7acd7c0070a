// The gemm family's core, shared by the mm / addmm driver (gemm.cpp) and the bmm / baddbmm one
// (bmm.cpp): a problem is described by its operands' geometry, planned (every decision that can
// send it to ATen: layouts, limits, the kernel and its configuration, the tuning table's routing)
// before its output exists, then launched once the output is allocated or resized.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "runtime/fallback.h"
#include "runtime/kernels.h"

namespace gems::gemm {

// One matrix of an operand (of every batch: batch_stride apart, 0 for an operand expanded over
// the batch). C^T = B^T A^T is computed by transposing these views, without new tensors.
struct Matrix {
  const void* data;
  int64_t rows, cols, row_stride, col_stride;
  int64_t batch_stride = 0;
  Matrix t() const { return {data, cols, rows, col_stride, row_stride, batch_stride}; }
};

// A 2-D tensor, or the matrices of a 3-D one.
Matrix matrix(const at::Tensor& t);

// C = alpha * A @ B + beta * S: S a row broadcast over M (addmm's bias, kBiasRow), or a tensor
// read through its strides as broadcast to [batch, M, N] (baddbmm's self, kFull; batched only).
// beta == 0 ignores S, NaN included.
struct Epilogue {
  enum Kind : uint8_t { kNone, kBiasRow, kFull } kind = kNone;
  const void* data = nullptr;
  int64_t stride_n = 0, stride_m = 0, stride_batch = 0;
  float alpha = 1.0f, beta = 0.0f;
};

struct Problem {
  Matrix a, b;
  Matrix c;  // data set once the output exists
  bool c_aligned = true;  // the output's address will be 16-byte aligned
  int64_t batch = 1;
  bool batched = false;  // the bmm variants (bmm, baddbmm), for a batch of one as well
  Epilogue epilogue;
};

// What a launch needs besides the output's address.
struct Plan {
  const LoadedKernel* kernel = nullptr;
  bool tma = false;
  bool a_row = true, b_row = true;  // the operands' layouts (C is row-major)
  int64_t lead_a = 0, lead_b = 0, lead_c = 0;
  int64_t tiles = 0;  // output tiles of one matrix
  int64_t split_k = 1;
  bool skinny = false;  // mm_skinny_kernel: a (tiles, split_k) grid instead of a persistent one
  int64_t block_m = 0, block_n = 0;
};

// Plans a non-empty problem (M, N and K > 0): kNone and the plan, or the reason no gems kernel
// serves it. A col-major C turns p into the transposed problem. aten_override: the tuning table's
// routing to ATen applies (a gems:: call runs gems' kernel on every bucket).
Fallback plan(Problem& p, c10::ScalarType dtype, bool aten_override, c10::DeviceIndex device, Plan& planned);
// Launches a planned problem whose p.c.data is set, on the current stream of `device`.
void launch_plan(const Plan& planned, const Problem& p, c10::DeviceIndex device);

// The output's strides ([batch,] rows, cols) and alignment as they will be once allocated
// (undefined out: contiguous) or resized (at::native::resize_output), known before either.
struct PlannedOutput {
  std::array<int64_t, 3> strides{};  // batch, rows, cols (batch 0 for a 2-D output)
  bool aligned = true;
};
PlannedOutput planned_output(const at::Tensor& out, at::IntArrayRef shape);

// Whether an out= shares memory with an input or with itself: ATen's semantics then apply.
bool overlaps(const at::Tensor& out, std::initializer_list<const at::Tensor*> inputs);

// The common tail of both drivers, for a checked problem (operands, epilogue, batch set) whose
// output has `shape` ([batch,] M, N): plans it against the output's planned strides, and only
// then allocates (out undefined) or resizes out as torch does, and launches (an empty output
// launches nothing; K == 0 zeroes it). Returns the reason when it goes to ATen, untouched.
Fallback plan_and_launch(Problem& p, at::IntArrayRef shape, const at::Tensor& a, bool aten_override, bool given_out,
                         at::Tensor& out);

extern std::atomic<bool> g_route_to_aten;

}  // namespace gems::gemm
