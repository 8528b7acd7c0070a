#include "runtime/overrides.h"

#include <c10/util/Exception.h>

#include <map>
#include <memory>
#include <mutex>

namespace gems {
namespace {

std::mutex g_mutex;
// One Library per installed overload: destroying it removes gems' kernel, and the dispatcher
// goes back to ATen's own.
std::map<std::string, std::unique_ptr<torch::Library>> g_installed;  // guarded by g_mutex

const AtenOverride* find_override(const std::string& name) {
  for (int i = 0; i < kNumAtenOverrides; ++i) {
    if (name == kAtenOverrides[i].name) return &kAtenOverrides[i];
  }
  return nullptr;
}

// Replacing ATen's kernel is the point of an override: drop the dispatcher's warning about it.
class SilentWarnings : public c10::WarningHandler {
 public:
  void process(const c10::Warning&) override {}
};

std::vector<std::string> installed_locked() {
  std::vector<std::string> names;
  for (const auto& entry : g_installed) names.push_back(entry.first);
  return names;
}

}  // namespace

std::vector<std::string> installed_overrides() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return installed_locked();
}

std::vector<std::string> set_overrides(const std::vector<std::string>& names) {
  std::vector<const AtenOverride*> wanted;
  for (const auto& name : names) {
    const AtenOverride* o = find_override(name);
    TORCH_CHECK(o, "gems: no aten override named '", name, "'");
    wanted.push_back(o);
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<std::string> before = installed_locked();
  for (auto it = g_installed.begin(); it != g_installed.end();) {
    bool keep = false;
    for (const auto* o : wanted) keep |= it->first == o->name;
    it = keep ? std::next(it) : g_installed.erase(it);
  }
  SilentWarnings silent;
  c10::WarningUtils::WarningHandlerGuard silence(&silent);
  for (const auto* o : wanted) {
    if (g_installed.count(o->name)) continue;
    auto lib = std::make_unique<torch::Library>(torch::Library::IMPL, "aten", c10::DispatchKey::CUDA, __FILE__,
                                                __LINE__);
    o->install(*lib);
    g_installed.emplace(o->name, std::move(lib));
  }
  return before;
}

}  // namespace gems
