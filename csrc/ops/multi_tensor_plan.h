// The chunk columns and the programs' plan of a multi-tensor table (kernels/multi_tensor.py),
// without torch: the CPU tests compile this header and compare it with plan() of
// aot/family_multi_tensor.py.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gems_multi_tensor_table.h"

namespace gems::multi_tensor_table {

// `table` holds n rows and the sentinel row of kRow entries, the element counts filled in. Fills
// every row's first chunk (the sentinel's: the total), appends per program its first chunk and
// that chunk's tensor, then the total; returns the grid: program p of min(programs, total)
// updates chunks [p * total / grid, (p + 1) * total / grid).
inline int64_t plan(std::vector<int64_t>& table, size_t n, int64_t programs) {
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    table[i * kRow + kFirstChunk] = total;
    total += (table[i * kRow + kNumel] + kChunk - 1) / kChunk;
  }
  table[n * kRow + kFirstChunk] = total;
  const int64_t grid = std::min(programs, total);
  size_t t = 0;
  for (int64_t p = 0; p < grid; ++p) {
    const int64_t start = p * total / grid;
    while (table[(t + 1) * kRow + kFirstChunk] <= start) ++t;
    table.push_back(start);
    table.push_back(static_cast<int64_t>(t));
  }
  table.push_back(total);
  return grid;
}

}  // namespace gems::multi_tensor_table
