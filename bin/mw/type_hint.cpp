#include "type_hint.hpp"

#include <algorithm>
#include <cctype>
#include <cstddef>

namespace mw::cli {

namespace {

constexpr std::size_t kMaxTypesNamed = 8;

// Optimal string alignment distance: Levenshtein plus a swap of two
// neighbours as one edit ("sqaure" is one edit from "square").
std::size_t typo_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i)
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t change = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + change});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

}  // namespace

std::optional<std::string> nearest_type(std::string_view type, const std::vector<std::string>& served) {
  // Type names are short (at most 128 bytes): the quadratic table is small.
  // A name under three bytes is too short to tell a typo from another name.
  const std::size_t allowed = type.size() < 3 ? 0 : std::min<std::size_t>(3, std::max<std::size_t>(1, type.size() / 3));
  if (allowed == 0) return std::nullopt;
  std::optional<std::string> nearest;
  std::size_t best = allowed + 1;
  for (const auto& candidate : served) {
    if (candidate == type) continue;
    const std::size_t distance = typo_distance(type, candidate);
    if (distance < best) {
      best = distance;
      nearest = candidate;
    }
  }
  return nearest;
}

std::string served_types_hint(std::string_view type, const std::vector<std::string>& served, bool ran_before) {
  if (served.empty()) return {};
  std::string hint = " (";
  if (const auto nearest = ran_before ? std::nullopt : nearest_type(type, served))
    hint += "did you mean '" + *nearest + "'? ";
  hint += "workers serve: ";
  for (std::size_t i = 0; i < served.size() && i < kMaxTypesNamed; ++i) hint += (i ? ", " : "") + served[i];
  if (served.size() > kMaxTypesNamed) hint += ", and " + std::to_string(served.size() - kMaxTypesNamed) + " more";
  return hint + ")";
}

std::string shell_word(std::string_view word) {
  const auto plain = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) >= 0x80 ||
           std::string_view("_.:/@%+=-").find(c) != std::string_view::npos;
  };
  if (!word.empty() && word.front() != '=' && std::all_of(word.begin(), word.end(), plain)) return std::string(word);
  std::string quoted = "'";
  for (const char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string type_option(std::string_view type) {
  return (type.starts_with("-") ? "--type=" : "--type ") + shell_word(type);
}

}  // namespace mw::cli
