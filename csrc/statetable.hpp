// Open-addressing hash table of fixed-length int32 state vectors -> vertex index.
// States live in one flat growable array; the table stores indices into it.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace phasic {

class StateTable {
 public:
  explicit StateTable(int d) : d_(d), mask_(1023), slots_(1024, -1) {}

  int state_length() const { return d_; }
  int64_t size() const { return n_; }
  const int32_t* row(int64_t i) const { return states_.data() + i * d_; }
  const std::vector<int32_t>& data() const { return states_; }

  // Appends a state without hashing it (used for the starting vertex).
  int64_t append_unindexed(const int32_t* s) {
    states_.insert(states_.end(), s, s + d_);
    return n_++;
  }

  int64_t find(const int32_t* s) const {
    uint64_t h = hash(s);
    for (uint64_t k = h & mask_;; k = (k + 1) & mask_) {
      int64_t v = slots_[k];
      if (v < 0) return -1;
      if (std::memcmp(row(v), s, sizeof(int32_t) * d_) == 0) return v;
    }
  }

  // Returns the index of s, creating it if needed; *created tells which.
  int64_t find_or_create(const int32_t* s, bool* created) {
    if ((n_ + 1) * 2 > (int64_t)slots_.size()) grow();
    uint64_t h = hash(s);
    for (uint64_t k = h & mask_;; k = (k + 1) & mask_) {
      int64_t v = slots_[k];
      if (v < 0) {
        slots_[k] = append_unindexed(s);
        *created = true;
        return slots_[k];
      }
      if (std::memcmp(row(v), s, sizeof(int32_t) * d_) == 0) {
        *created = false;
        return v;
      }
    }
  }

  // Rebuilds the index from the flat array; rows [0, skip) are not indexed.
  void reindex(int64_t skip) {
    std::fill(slots_.begin(), slots_.end(), -1);
    while ((int64_t)slots_.size() < n_ * 2 + 2) grow_empty();
    for (int64_t i = skip; i < n_; ++i) insert_index(i);
  }

  void load(const int32_t* data, int64_t n) {
    states_.assign(data, data + n * d_);
    n_ = n;
  }

 private:
  uint64_t hash(const int32_t* s) const {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < d_; ++i) {
      h ^= (uint64_t)(uint32_t)s[i];
      h *= 1099511628211ULL;
      h ^= h >> 29;
    }
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
  }
  void insert_index(int64_t v) {
    for (uint64_t k = hash(row(v)) & mask_;; k = (k + 1) & mask_) {
      if (slots_[k] < 0) { slots_[k] = v; return; }
    }
  }
  void grow_empty() {
    slots_.assign(slots_.size() * 2, -1);
    mask_ = slots_.size() - 1;
  }
  void grow() {
    std::vector<int64_t> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, -1);
    mask_ = slots_.size() - 1;
    for (int64_t v : old)
      if (v >= 0) insert_index(v);
  }

  int d_;
  int64_t n_ = 0;
  uint64_t mask_;
  std::vector<int64_t> slots_;
  std::vector<int32_t> states_;
};

}  // namespace phasic
