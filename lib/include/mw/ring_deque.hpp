// mw/ring_deque.hpp — a double-ended queue kept in one ring of slots.
//
// For queues that fill and empty over and over on a hot path: the jobs a
// broker's worker holds and the first jobs waiting for a type, a worker's
// jobs waiting to run and answers waiting to go, a client's events not yet
// read. std::deque allocates in 512-byte nodes, so a queue of elements
// over 256 bytes (a broker's Job) made a malloc on every push and a free on
// every pop, and one of elements over 170 bytes (a ClientEvent) every other
// time. A RingDeque keeps its slots when it empties: once a queue has been
// as long as it gets, pushes and pops allocate nothing. It grows by
// doubling and keeps its memory until destroyed, swapped away or given
// back with release_if_empty(): a queue that may have a burst calls that
// when it drains, so that the burst's slots do not stay.
//
// Iterators are positions: any push, pop, erase or clear invalidates them.
// References to elements are invalidated by pushes and by erase.
//
// Elements must move without throwing (as std::string, zmq::message_t and
// the structs made of them do).
//
// Thread safety: none.
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace mw {

template <class T>
class RingDeque {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>,
                "RingDeque moves elements when it grows and erases; a move that throws would lose them");
  template <bool Const>
  class Iter;

 public:
  using value_type = T;
  using size_type = std::size_t;
  using iterator = Iter<false>;
  using const_iterator = Iter<true>;
  using reverse_iterator = std::reverse_iterator<iterator>;
  using const_reverse_iterator = std::reverse_iterator<const_iterator>;

  RingDeque() noexcept = default;
  RingDeque(const RingDeque&) = delete;
  RingDeque& operator=(const RingDeque&) = delete;
  RingDeque(RingDeque&& o) noexcept
      : slots_(std::exchange(o.slots_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)),
        head_(std::exchange(o.head_, 0)),
        size_(std::exchange(o.size_, 0)) {}
  // Move and swap: the old elements go with the temporary (and a ring
  // moved into itself comes back whole).
  RingDeque& operator=(RingDeque&& o) noexcept {
    RingDeque(std::move(o)).swap(*this);
    return *this;
  }
  ~RingDeque() { release(); }
  void swap(RingDeque& o) noexcept {
    std::swap(slots_, o.slots_);
    std::swap(capacity_, o.capacity_);
    std::swap(head_, o.head_);
    std::swap(size_, o.size_);
  }

  bool empty() const noexcept { return size_ == 0; }
  size_type size() const noexcept { return size_; }
  size_type capacity() const noexcept { return capacity_; }

  T& operator[](size_type i) noexcept { return slots_[slot(i)]; }
  const T& operator[](size_type i) const noexcept { return slots_[slot(i)]; }
  T& front() noexcept { return (*this)[0]; }
  const T& front() const noexcept { return (*this)[0]; }
  T& back() noexcept { return (*this)[size_ - 1]; }
  const T& back() const noexcept { return (*this)[size_ - 1]; }

  // `value` may be an element of this ring (moved from before the ring
  // grows).
  void push_back(T&& value) {
    if (size_ == capacity_) {
      grow_with(std::move(value), /*at_front=*/false);
      return;
    }
    ::new (static_cast<void*>(slots_ + slot(size_))) T(std::move(value));
    ++size_;
  }
  void push_front(T&& value) {
    if (size_ == capacity_) {
      grow_with(std::move(value), /*at_front=*/true);
      return;
    }
    const size_type at = (head_ + capacity_ - 1) & (capacity_ - 1);
    ::new (static_cast<void*>(slots_ + at)) T(std::move(value));
    head_ = at;
    ++size_;
  }
  // REQUIRES: !empty().
  void pop_front() noexcept {
    slots_[head_].~T();
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
  }
  // REQUIRES: !empty().
  void pop_back() noexcept {
    slots_[slot(size_ - 1)].~T();
    --size_;
  }
  void clear() noexcept {
    while (!empty()) pop_back();
    head_ = 0;
  }
  // When empty and holding more than `keep` slots, gives them all back.
  void release_if_empty(size_type keep) noexcept {
    if (empty() && capacity_ > keep) release();
  }

  // Removes the element at `at` and returns the iterator to the one that
  // followed it. Moves the shorter side of the ring by one slot, so taking
  // from near either end is cheap.
  iterator erase(const_iterator at) noexcept {
    size_type i = at.index_;
    if (i < size_ / 2) {
      for (; i > 0; --i) (*this)[i] = std::move((*this)[i - 1]);
      pop_front();  // the follower keeps its slot; its index drops by one, to at's
      return iterator(this, at.index_);
    }
    for (; i + 1 < size_; ++i) (*this)[i] = std::move((*this)[i + 1]);
    pop_back();  // the follower moved into at's place
    return iterator(this, at.index_);
  }

  // Removes every element `pred` holds for, keeping the order of the rest
  // (as std::erase_if does for std::deque); returns how many went.
  template <class Pred>
  friend size_type erase_if(RingDeque& ring, Pred pred) {
    size_type kept = 0;
    for (size_type i = 0; i < ring.size_; ++i) {
      if (pred(std::as_const(ring[i]))) continue;
      if (kept != i) ring[kept] = std::move(ring[i]);
      ++kept;
    }
    const size_type removed = ring.size_ - kept;
    while (ring.size_ > kept) ring.pop_back();
    return removed;
  }

  iterator begin() noexcept { return iterator(this, 0); }
  iterator end() noexcept { return iterator(this, size_); }
  const_iterator begin() const noexcept { return const_iterator(this, 0); }
  const_iterator end() const noexcept { return const_iterator(this, size_); }
  reverse_iterator rbegin() noexcept { return reverse_iterator(end()); }
  reverse_iterator rend() noexcept { return reverse_iterator(begin()); }
  const_reverse_iterator rbegin() const noexcept { return const_reverse_iterator(end()); }
  const_reverse_iterator rend() const noexcept { return const_reverse_iterator(begin()); }

 private:
  static constexpr size_type kFirstCapacity = 8;

  // The slot of the i-th element; capacity_ is a power of two.
  size_type slot(size_type i) const noexcept { return (head_ + i) & (capacity_ - 1); }

  // A full ring moves to twice the slots, with `value` added at one end.
  // The new element is made first: `value` may live in the old slots.
  void grow_with(T&& value, bool at_front) {
    const size_type bigger = capacity_ ? capacity_ * 2 : kFirstCapacity;
    T* fresh = std::allocator<T>{}.allocate(bigger);  // the only step that may throw
    const size_type first = at_front ? 1 : 0;
    ::new (static_cast<void*>(fresh + (at_front ? 0 : size_))) T(std::move(value));
    for (size_type i = 0; i < size_; ++i) {
      ::new (static_cast<void*>(fresh + first + i)) T(std::move((*this)[i]));
      (*this)[i].~T();
    }
    if (slots_) std::allocator<T>{}.deallocate(slots_, capacity_);
    slots_ = fresh;
    capacity_ = bigger;
    head_ = 0;
    ++size_;
  }

  void release() noexcept {
    clear();
    if (slots_) std::allocator<T>{}.deallocate(slots_, capacity_);
    slots_ = nullptr;
    capacity_ = 0;
  }

  template <bool Const>
  class Iter {
    using Owner = std::conditional_t<Const, const RingDeque, RingDeque>;

   public:
    using iterator_category = std::bidirectional_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = std::conditional_t<Const, const T*, T*>;
    using reference = std::conditional_t<Const, const T&, T&>;

    Iter() noexcept = default;
    // A const_iterator from an iterator.
    template <bool C = Const, class = std::enable_if_t<C>>
    Iter(const Iter<false>& o) noexcept : owner_(o.owner_), index_(o.index_) {}

    reference operator*() const noexcept { return (*owner_)[index_]; }
    pointer operator->() const noexcept { return &(*owner_)[index_]; }
    Iter& operator++() noexcept { ++index_; return *this; }
    Iter operator++(int) noexcept { Iter was = *this; ++index_; return was; }
    Iter& operator--() noexcept { --index_; return *this; }
    Iter operator--(int) noexcept { Iter was = *this; --index_; return was; }
    friend bool operator==(const Iter& a, const Iter& b) noexcept { return a.index_ == b.index_; }

   private:
    friend class RingDeque;
    template <bool>
    friend class Iter;
    Iter(Owner* owner, size_type index) noexcept : owner_(owner), index_(index) {}
    Owner* owner_ = nullptr;
    size_type index_ = 0;
  };

  T* slots_ = nullptr;     // capacity_ slots, size_ of them live from head_ on
  size_type capacity_ = 0;  // 0 or a power of two
  size_type head_ = 0;
  size_type size_ = 0;
};

}  // namespace mw
