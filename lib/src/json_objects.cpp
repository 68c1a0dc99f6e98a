#include "mw/json_objects.hpp"

#include <optional>
#include <vector>

namespace mw {

using Json = nlohmann::ordered_json;

ObjectWriter::ObjectWriter(Json& object) : entries_(object.get_ref<Json::object_t&>()) {
  if (entries_.size() > kScanLimit) index_all();
}

void ObjectWriter::index_all() {
  indexed_ = true;
  // A key that appears twice (only possible if the object was built by
  // other means) resolves to its first position, as a scan would.
  for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entry(i).first, i);
}

std::ptrdiff_t ObjectWriter::position(std::string_view key) {
  if (indexed_) {
    const auto it = index_.find(key);
    return it == index_.end() ? -1 : static_cast<std::ptrdiff_t>(it->second);
  }
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (entry(i).first == key) return static_cast<std::ptrdiff_t>(i);
  return -1;
}

Json& ObjectWriter::slot(std::string key) {
  if (const auto at = position(key); at >= 0) return entry(static_cast<std::size_t>(at)).second;
  if (indexed_) index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), nullptr);
  if (!indexed_ && entries_.size() > kScanLimit) index_all();
  return entries_.back().second;
}

bool ObjectWriter::contains(std::string_view key) { return position(key) >= 0; }

namespace {

// nlohmann's SAX events into an ordered_json, filling objects through
// ObjectWriter. Containers are built in place: a child is complete before
// its parent gets another element, so pointers to the open ones stay valid.
class Builder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  bool null() { return put(nullptr) != nullptr; }
  bool boolean(bool value) { return put(value) != nullptr; }
  bool number_integer(number_integer_t value) { return put(value) != nullptr; }
  bool number_unsigned(number_unsigned_t value) { return put(value) != nullptr; }
  bool number_float(number_float_t value, const string_t&) { return put(value) != nullptr; }
  bool string(string_t& value) { return put(std::move(value)) != nullptr; }
  bool binary(binary_t& value) { return put(Json::binary(std::move(value))) != nullptr; }

  bool start_object(std::size_t) {
    Json* object = put(Json::object());
    open_.push_back({object, std::nullopt});
    open_.back().writer.emplace(*object);
    return true;
  }
  bool key(string_t& name) {
    next_ = &open_.back().writer->slot(std::move(name));
    return true;
  }
  bool end_object() {
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    open_.push_back({put(Json::array()), std::nullopt});
    return true;
  }
  bool end_array() {
    open_.pop_back();
    return true;
  }
  [[noreturn]] bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& error) {
    throw error;
  }

  Json take() { return std::move(root_); }

 private:
  struct Open {
    Json* value;
    std::optional<ObjectWriter> writer;  // for objects
  };

  // Places a new value where the parser is: the root, the end of the open
  // array, or the slot of the key just read.
  Json* put(Json value) {
    if (open_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    Json* container = open_.back().value;
    if (container->is_array()) {
      container->push_back(std::move(value));
      return &container->back();
    }
    *next_ = std::move(value);
    return next_;
  }

  Json root_;
  std::vector<Open> open_;
  Json* next_ = nullptr;
};

}  // namespace

Json parse_ordered_json(std::string_view text) {
  Builder builder;
  Json::sax_parse(text, &builder);
  return builder.take();
}

std::string json_error_text(const nlohmann::json::exception& error) {
  std::string_view text = error.what();
  if (text.starts_with("[json.exception.")) {
    const auto end = text.find("] ");
    if (end != std::string_view::npos) text.remove_prefix(end + 2);
  }
  return std::string(text);
}

}  // namespace mw
