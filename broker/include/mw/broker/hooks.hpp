// mw/broker/hooks.hpp — before/after/error hooks on entity endpoints.
//
// The seed's `new Server config, sampleHooks` becomes a custom broker that
// registers hooks before it runs (see examples/custom_broker.cpp):
//
//   mw::broker::Hooks hooks;
//   hooks.before("sampleendpoint", {Method::Create}, [](HookContext& h) {
//     h.data["created_at"] = h.now_ms;                      // change the data
//   });
//   hooks.before("*", {Method::Remove}, [](HookContext& h) {
//     throw mw::Error("removal is disabled", mw::ErrorCode::BadRequest);  // reject
//   });
//   hooks.after("sampleendpoint", {Method::Find}, [](HookContext& h) { … h.result … });
//
// Order: before hooks run in registration order, then the method (unless a
// before hook set `result`, which skips it), then after hooks in
// registration order. If anything throws, the error hooks run with `error`
// set; one that clears `error` (and sets `result`) turns the call into a
// success. An endpoint of "*" matches every endpoint; an empty method list
// matches every method.
//
// Thread safety: hooks run on the broker thread, one call at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mw/broker/query.hpp"
#include "mw/error.hpp"

namespace mw::broker {

enum class Method : std::uint8_t { Create, Get, Find, Update, Patch, Remove };

std::string_view method_name(Method method) noexcept;
// Parses "create" … "remove"; nullopt for anything else.
[[nodiscard]] std::optional<Method> parse_method(std::string_view name) noexcept;

struct HookContext {
  std::string endpoint;
  Method method = Method::Get;
  std::optional<std::string> id;  // get, update, patch, remove by id
  Json data;                      // create, update, patch
  Json query;                     // find, and update/patch/remove by query
  Json result;                    // set by the method; after hooks may change it
  std::optional<Error> error;     // set for error hooks
  std::int64_t now_ms = 0;        // wall clock, ms since the epoch
};

using Hook = std::function<void(HookContext&)>;

class Hooks {
 public:
  Hooks& before(std::string endpoint, std::initializer_list<Method> methods, Hook hook);
  Hooks& after(std::string endpoint, std::initializer_list<Method> methods, Hook hook);
  Hooks& error(std::string endpoint, std::initializer_list<Method> methods, Hook hook);

  void run_before(HookContext& context) const;
  void run_after(HookContext& context) const;
  void run_error(HookContext& context) const;

  bool empty() const noexcept { return before_.empty() && after_.empty() && error_.empty(); }
  // True when an after or error hook matches the call: one that may reject
  // what the method already wrote, or turn a failure into a success.
  bool acts_after_method(const HookContext& context) const;
  // True when any hook matches `method` on `endpoint`.
  bool any_for(std::string_view endpoint, Method method) const;

 private:
  struct Entry {
    std::string endpoint;
    std::vector<Method> methods;
    Hook hook;
    bool matches(std::string_view endpoint, Method method) const;
    bool matches(const HookContext& c) const { return matches(c.endpoint, c.method); }
  };
  static void run(const std::vector<Entry>& entries, HookContext& context);
  std::vector<Entry> before_, after_, error_;
};

}  // namespace mw::broker
