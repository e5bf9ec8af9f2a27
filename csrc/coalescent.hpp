// The standard coalescent state spaces built without a Python call per state: structured
// block counting (B lineage types per deme; lineage counting is B = 1). It makes exactly the
// graph that phasic.demography.block_counting / lineage_counting make through the generic
// build (same vertex order, edge order and coefficients), only faster.
//
// State: counts[d * B + t] lineages of type t in deme d. Per state, in this order:
//  - coalescence in deme d (d ascending) of types t1 <= t2 (ascending over the types present):
//    coefficient at d = c1 c2 (t1 != t2) or c1 (c1 - 1) / 2, result type merged[t1 * B + t2];
//  - moves i (ascending) of one lineage of type t (ascending) from deme a_i to b_i:
//    coefficient at D + i = count.
// Edges to the same state are merged (coefficients added) at the first one's place. A state
// with at most one lineage has no edges (absorbing).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "statetable.hpp"

namespace phasic {

struct CoalescentBuild {
  std::vector<int64_t> indptr;
  std::vector<int32_t> target;
  std::vector<double> coef;  // E x p, row-major
  int64_t overflow_vertex = -1;  // the state table grew past max_vertices at this vertex
};

inline void build_coalescent(int64_t D, int64_t B, const int32_t* merged, int64_t M, const int32_t* moves,
                             const int32_t* start, int64_t max_vertices, StateTable& T, CoalescentBuild& out) {
  const int64_t d = D * B, p = D + M;
  bool created = false;
  out.indptr.assign(1, 0);
  T.find_or_create(start, &created);
  out.target.push_back(1);
  out.coef.assign(p, 0.0);  // the start vertex's edge carries probability 1, no coefficients
  out.indptr.push_back(1);
  std::vector<int32_t> s(d), nxt;
  std::vector<std::vector<int32_t>> cand;  // this vertex's target states, in order
  std::vector<std::vector<double>> crow;
  std::vector<int32_t> present;
  auto emit = [&](const std::vector<int32_t>& st, int64_t slot, double value) {
    for (size_t k = 0; k < cand.size(); ++k)
      if (cand[k] == st) {
        crow[k][slot] += value;
        return;
      }
    cand.push_back(st);
    crow.emplace_back(p, 0.0);
    crow.back()[slot] += value;
  };
  for (int64_t i = 1; i < T.size(); ++i) {
    const int32_t* row = T.row(i);
    s.assign(row, row + d);
    int64_t total = 0;
    for (int64_t k = 0; k < d; ++k) total += s[k];
    cand.clear();
    crow.clear();
    if (total > 1) {
      for (int64_t dm = 0; dm < D; ++dm) {
        present.clear();
        for (int64_t t = 0; t < B; ++t)
          if (s[dm * B + t]) present.push_back((int32_t)t);
        for (size_t x = 0; x < present.size(); ++x) {
          const int64_t t1 = present[x];
          const double c1 = s[dm * B + t1];
          for (size_t y = x; y < present.size(); ++y) {
            const int64_t t2 = present[y];
            const double c2 = s[dm * B + t2];
            const double pairs = t1 == t2 ? c1 * (c1 - 1) / 2 : c1 * c2;
            if (pairs <= 0) continue;
            const int32_t mt = merged[t1 * B + t2];
            if (mt < 0) throw std::runtime_error("block counting: two types merge beyond the sample");
            nxt = s;
            nxt[dm * B + t1] -= 1;
            nxt[dm * B + t2] -= 1;
            nxt[dm * B + mt] += 1;
            emit(nxt, dm, pairs);
          }
        }
      }
      for (int64_t m = 0; m < M; ++m) {
        const int64_t a = moves[2 * m], b = moves[2 * m + 1];
        for (int64_t t = 0; t < B; ++t) {
          const int32_t c = s[a * B + t];
          if (!c) continue;
          nxt = s;
          nxt[a * B + t] -= 1;
          nxt[b * B + t] += 1;
          emit(nxt, D + m, (double)c);
        }
      }
    }
    for (size_t k = 0; k < cand.size(); ++k) {
      const int64_t z = T.find_or_create(cand[k].data(), &created);
      if (created && T.size() > max_vertices) {
        out.overflow_vertex = i;
        return;
      }
      out.target.push_back((int32_t)z);
      out.coef.insert(out.coef.end(), crow[k].begin(), crow[k].end());
    }
    out.indptr.push_back((int64_t)out.target.size());
  }
}

}  // namespace phasic
