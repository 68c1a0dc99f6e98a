// mw::RingDeque (lib/include/mw/ring_deque.hpp): the container of the
// broker's jobs in flight and of the unpacked jobs waiting for a type, of a
// worker's jobs and answers and of a client's events. Checked
// against std::deque, operation by operation, with elements that own memory
// (so that a slot destroyed twice or never shows under the sanitizers).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "mw/ring_deque.hpp"

using mw::RingDeque;

namespace {

// Long enough to live on the heap, not in the string's own bytes.
std::string value(int i) { return "element number " + std::to_string(i) + " of the ring deque test"; }

std::vector<std::string> contents(const RingDeque<std::string>& ring) { return {ring.begin(), ring.end()}; }
std::vector<std::string> contents(const std::deque<std::string>& model) { return {model.begin(), model.end()}; }

}  // namespace

TEST_CASE("ring deque: keeps the order of pushes at both ends, through growth and wrap-around") {
  RingDeque<std::string> ring;
  std::deque<std::string> model;
  CHECK(ring.empty());
  for (int i = 0; i < 100; ++i) {
    if (i % 3 == 0) {
      ring.push_front(value(i));
      model.push_front(value(i));
    } else {
      ring.push_back(value(i));
      model.push_back(value(i));
    }
    REQUIRE(ring.size() == model.size());
    CHECK(ring.front() == model.front());
    CHECK(ring.back() == model.back());
  }
  CHECK(contents(ring) == contents(model));
  while (!model.empty()) {
    CHECK(ring.front() == model.front());
    ring.pop_front();
    model.pop_front();
  }
  CHECK(ring.empty());
}

TEST_CASE("ring deque: erase returns the follower and keeps the order, at the front, middle and back") {
  for (std::size_t at = 0; at < 12; ++at) {
    RingDeque<std::string> ring;
    std::deque<std::string> model;
    // Wrapped: the first slots used are at the end of the ring.
    for (int i = 0; i < 6; ++i) {
      ring.push_front(value(i));
      model.push_front(value(i));
    }
    for (int i = 6; i < 12; ++i) {
      ring.push_back(value(i));
      model.push_back(value(i));
    }
    auto it = ring.begin();
    for (std::size_t k = 0; k < at; ++k) ++it;
    const auto next = ring.erase(it);
    const auto model_next = model.erase(model.begin() + static_cast<std::ptrdiff_t>(at));
    CAPTURE(at);
    CHECK(contents(ring) == contents(model));
    if (model_next == model.end()) {
      CHECK(next == ring.end());
    } else {
      REQUIRE(next != ring.end());
      CHECK(*next == *model_next);
    }
  }
}

TEST_CASE("ring deque: erasing while iterating, as the lease scan does, visits every element once") {
  RingDeque<int> ring;
  for (int i = 0; i < 20; ++i) ring.push_back(int(i));
  std::vector<int> visited;
  for (auto it = ring.begin(); it != ring.end();) {
    visited.push_back(*it);
    if (*it % 3 == 0)
      it = ring.erase(it);
    else
      ++it;
  }
  CHECK(visited.size() == 20);
  const std::vector<int> kept(ring.begin(), ring.end());
  CHECK(kept == std::vector<int>{1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16, 17, 19});
}

TEST_CASE("ring deque: reverse iteration walks back from the last element") {
  RingDeque<int> ring;
  for (int i = 0; i < 5; ++i) ring.push_front(int(i));  // 4 3 2 1 0
  std::vector<int> backwards;
  for (auto it = ring.rbegin(); it != ring.rend(); ++it) backwards.push_back(*it);
  CHECK(backwards == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("ring deque: once grown, pushes and pops reuse its slots") {
  RingDeque<std::string> ring;
  for (int i = 0; i < 64; ++i) ring.push_back(value(i));
  const auto grown = ring.capacity();
  CHECK(grown >= 64);
  while (!ring.empty()) ring.pop_front();
  // A worker's jobs come and go a million times at no more than its credit.
  for (int round = 0; round < 10000; ++round) {
    for (int i = 0; i < 1 + round % 63; ++i) ring.push_back(value(i));  // with the push_front, at most 64
    ring.push_front(value(-1));
    ring.pop_back();
    while (!ring.empty()) ring.pop_front();
  }
  CHECK(ring.capacity() == grown);
}

TEST_CASE("ring deque: a moved-from ring is empty and usable; the target owns the elements") {
  RingDeque<std::string> a;
  for (int i = 0; i < 10; ++i) a.push_back(value(i));
  RingDeque<std::string> b(std::move(a));
  CHECK(b.size() == 10);
  CHECK(b.front() == value(0));
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the documented state
  a.push_back(value(42));
  CHECK(a.front() == value(42));
  RingDeque<std::string> c;
  c.push_back(value(7));
  c = std::move(b);
  CHECK(c.size() == 10);
  CHECK(c.back() == value(9));
  RingDeque<std::string>& same = c;
  c = std::move(same);  // moved into itself: kept whole
  CHECK(c.size() == 10);
  CHECK(c.front() == value(0));
  CHECK(c.back() == value(9));
  c.clear();
  CHECK(c.empty());
  c.push_front(value(1));
  CHECK(contents(c) == std::vector<std::string>{value(1)});
}

TEST_CASE("ring deque: random operations agree with std::deque") {
  std::mt19937 random(20261207);
  RingDeque<std::string> ring;
  std::deque<std::string> model;
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(random() % 6);
    const int v = static_cast<int>(random() % 1000);
    if (op == 0 || (op == 1 && model.size() < 3)) {
      ring.push_back(value(v));
      model.push_back(value(v));
    } else if (op == 1) {
      ring.push_front(value(v));
      model.push_front(value(v));
    } else if (model.empty()) {
      continue;
    } else if (op == 2) {
      ring.pop_front();
      model.pop_front();
    } else if (op == 3) {
      ring.pop_back();
      model.pop_back();
    } else {
      const auto at = static_cast<std::size_t>(random() % model.size());
      auto it = ring.begin();
      for (std::size_t k = 0; k < at; ++k) ++it;
      ring.erase(it);
      model.erase(model.begin() + static_cast<std::ptrdiff_t>(at));
    }
    REQUIRE(ring.size() == model.size());
    if (!model.empty()) {
      REQUIRE(ring.front() == model.front());
      REQUIRE(ring.back() == model.back());
    }
  }
  CHECK(contents(ring) == contents(model));
}

TEST_CASE("ring deque: erase_if removes what the predicate holds for, in order, once each") {
  RingDeque<std::string> ring;
  for (int i = 0; i < 10; ++i) ring.push_front(value(i));  // wrapped: 9 8 … 0
  std::vector<std::string> asked;
  const auto removed = erase_if(ring, [&](const std::string& s) {
    asked.push_back(s);
    return s == value(8) || s == value(3) || s == value(0);
  });
  CHECK(removed == 3);
  CHECK(asked.size() == 10);
  CHECK(asked.front() == value(9));
  CHECK(contents(ring) == std::vector<std::string>{value(9), value(7), value(6), value(5), value(4), value(2), value(1)});
  CHECK(erase_if(ring, [](const std::string&) { return false; }) == 0);
  CHECK(ring.size() == 7);
}

TEST_CASE("ring deque: a full ring can take one of its own elements (moved before it grows)") {
  RingDeque<std::string> ring;
  for (int i = 0; i < 8; ++i) ring.push_back(value(i));
  REQUIRE(ring.size() == ring.capacity());  // full: the next push grows it
  ring.push_back(std::move(ring.front()));
  CHECK(ring.back() == value(0));
  CHECK(ring.size() == 9);
  while (ring.size() < ring.capacity()) ring.push_back(value(100));
  ring.push_front(std::move(ring.back()));
  CHECK(ring.front() == value(100));
  CHECK(ring[1] == "");  // the moved-from first element
  CHECK(ring[2] == value(1));
}

TEST_CASE("ring deque: release_if_empty gives a drained burst's slots back, and keeps a small ring's") {
  RingDeque<std::string> ring;
  for (int i = 0; i < 500; ++i) ring.push_back(value(i));
  ring.release_if_empty(64);
  CHECK(ring.capacity() >= 500);  // not empty: kept
  while (!ring.empty()) ring.pop_front();
  ring.release_if_empty(64);
  CHECK(ring.capacity() == 0);
  ring.push_back(value(1));
  CHECK(ring.front() == value(1));
  ring.pop_front();
  ring.release_if_empty(64);
  CHECK(ring.capacity() == 8);  // within what it may keep
}
