#include "mw/broker/hooks.hpp"

#include <algorithm>

namespace mw::broker {

std::string_view method_name(Method method) noexcept {
  switch (method) {
    case Method::Create: return "create";
    case Method::Get: return "get";
    case Method::Find: return "find";
    case Method::Update: return "update";
    case Method::Patch: return "patch";
    case Method::Remove: return "remove";
  }
  return "?";
}

std::optional<Method> parse_method(std::string_view name) noexcept {
  for (Method m : {Method::Create, Method::Get, Method::Find, Method::Update, Method::Patch, Method::Remove})
    if (method_name(m) == name) return m;
  return std::nullopt;
}

bool Hooks::Entry::matches(std::string_view on, Method method) const {
  if (endpoint != "*" && endpoint != on) return false;
  return methods.empty() || std::find(methods.begin(), methods.end(), method) != methods.end();
}

Hooks& Hooks::before(std::string endpoint, std::initializer_list<Method> methods, Hook hook) {
  before_.push_back({std::move(endpoint), methods, std::move(hook)});
  return *this;
}
Hooks& Hooks::after(std::string endpoint, std::initializer_list<Method> methods, Hook hook) {
  after_.push_back({std::move(endpoint), methods, std::move(hook)});
  return *this;
}
Hooks& Hooks::error(std::string endpoint, std::initializer_list<Method> methods, Hook hook) {
  error_.push_back({std::move(endpoint), methods, std::move(hook)});
  return *this;
}

void Hooks::run(const std::vector<Entry>& entries, HookContext& context) {
  for (const auto& e : entries)
    if (e.matches(context)) e.hook(context);
}

bool Hooks::acts_after_method(const HookContext& context) const {
  const auto matches = [&](const Entry& e) { return e.matches(context); };
  return std::any_of(after_.begin(), after_.end(), matches) || std::any_of(error_.begin(), error_.end(), matches);
}

bool Hooks::any_for(std::string_view endpoint, Method method) const {
  const auto matches = [&](const Entry& e) { return e.matches(endpoint, method); };
  return std::any_of(before_.begin(), before_.end(), matches) || std::any_of(after_.begin(), after_.end(), matches) ||
         std::any_of(error_.begin(), error_.end(), matches);
}

void Hooks::run_before(HookContext& context) const { run(before_, context); }
void Hooks::run_after(HookContext& context) const { run(after_, context); }
void Hooks::run_error(HookContext& context) const { run(error_, context); }

}  // namespace mw::broker
