// The aten overloads gems can take over, and the run-time switch that installs them.
#pragma once

#include <torch/library.h>

#include <string>
#include <vector>

namespace gems {

struct AtenOverride {
  const char* name;  // aten overload, e.g. "add.Tensor"
  const char* family;
  bool opt_in;  // slower than ATen's kernel where measured: enable() installs it only when named
  void (*install)(torch::Library&);  // registers gems' kernel at the CUDA key
};

// Generated from the declarations (gems_registration.cpp).
extern const AtenOverride kAtenOverrides[];
extern const int kNumAtenOverrides;

// Makes exactly `names` the installed overrides (each must be in kAtenOverrides); returns the
// names installed before the call, so the caller can restore them.
std::vector<std::string> set_overrides(const std::vector<std::string>& names);
std::vector<std::string> installed_overrides();

}  // namespace gems
