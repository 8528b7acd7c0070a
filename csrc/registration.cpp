// The control ops the Python package calls: the override switch, fallback counts, build info,
// and the kernel packs' use and contents (for info() and the tests).
// The op schemas and kernels themselves are registered by the generated gems_registration.cpp.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "gems_kernels.h"
#include "runtime/fallback.h"
#include "runtime/kernels.h"
#include "runtime/overrides.h"

namespace gems {
namespace {

std::vector<std::string> available_overrides() {
  std::vector<std::string> names;
  for (int i = 0; i < kNumAtenOverrides; ++i) {
    names.push_back(std::string(kAtenOverrides[i].name) + "\t" + kAtenOverrides[i].family + "\t" +
                    (kAtenOverrides[i].opt_in ? "opt_in" : "default"));
  }
  return names;
}

std::string build_info() {
  std::ostringstream s;
  s << "triton_version\t" << gen::kTritonVersion << "\n";
  s << "kernels\t" << kernel_count() << "\n";
  s << "cubin_bytes\t" << gen::kCubinBytes << "\n";
  s << "pack_bytes\t" << gen::kPackBytes << "\n";
  // Per target: id, name, vendor, images, and why this runtime does not load them ("" when it does).
  for (const BuildTarget& t : gen::kTargets) {
    const char* why = vendor_unsupported(t.vendor);
    s << "target\t" << t.id << "\t" << t.name << "\t" << t.vendor << "\t" << image_count_for_arch(t.id) << "\t"
      << (why ? why : "") << "\n";
  }
  return s.str();
}

// Per target: arch, images decompressed from its pack so far, bytes of chunks decoded for them.
std::vector<int64_t> pack_use_list() {
  std::vector<int64_t> flat;
  for (const PackUse& u : gems::pack_use()) flat.insert(flat.end(), {u.arch, u.images, u.decoded_bytes});
  return flat;
}

// The cubin of image `index` (the manifest's order), decompressed, as a CPU uint8 tensor.
at::Tensor image_tensor(int64_t index) {
  const std::vector<unsigned char> cubin = gems::unpack_image(static_cast<int>(index));
  at::Tensor out = at::empty({static_cast<int64_t>(cubin.size())}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(out.data_ptr(), cubin.data(), cubin.size());
  return out;
}

std::vector<int64_t> device_info(int64_t device) {
  return {device_capability(static_cast<c10::DeviceIndex>(device)), device_target(static_cast<c10::DeviceIndex>(device))};
}

}  // namespace
}  // namespace gems

TORCH_LIBRARY_FRAGMENT(gems, m) {
  m.def("_set_overrides(str[] names) -> str[]", &gems::set_overrides);
  m.def("_installed_overrides() -> str[]", &gems::installed_overrides);
  m.def("_available_overrides() -> str[]", &gems::available_overrides);
  m.def("_fallback_report() -> str", &gems::fallback_report);
  m.def("_reset_fallback_counts() -> ()", &gems::reset_fallback_counts);
  m.def("_set_recording(bool on) -> bool", &gems::set_recording);
  m.def("_set_fallback_warnings(bool on) -> bool", &gems::set_fallback_warnings);
  m.def("_recorded_totals() -> int[]", &gems::recorded_totals);
  m.def("_build_info() -> str", &gems::build_info);
  m.def("_device_info(int device) -> int[]", &gems::device_info);
  m.def("_pack_use() -> int[]", &gems::pack_use_list);
  m.def("_unpack_image(int index) -> Tensor", &gems::image_tensor);
}
