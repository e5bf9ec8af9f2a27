// Compiling an elimination trace (elim.hpp) into a replay plan: the data side of
// replay.hpp.
//
// The recorded tape is plain SSA in recording order. Most of it is the normalisation of
// every vertex: lambda = w_0 + w_1 + ... (an ADD chain over its out-weights), 1 / lambda
// (INV) and p_l = w_l * (1 / lambda) (one MUL per edge). compile_plan finds these
// "groups" and lays their weights out so that one kernel sums, inverts and scales many
// groups side by side.
// The other ops (the elimination proper) and the reward program are sorted by dependency
// level: the recorded order is one long dependency chain per strongly connected
// component, which keeps the CPU waiting on latencies, while ops of one level (from
// different components, or different passes of the program) are independent.
//
// Every value keeps the operations, operands and operand order of the recorded tape and
// program (eval_tape / replay in elim.hpp), so replayed results are bitwise the same.
//
// Values live in "slots" (val[s] for one weight vector, val[s * nb + j] for a block):
//   [0, NL)             weights of the grouped edges, then p = w * (1 / lambda) in place
//   [NL, E)             weights of the other edges (start edges, ungrouped ones)
//   [lam0, lam0 + G)    lambda of each group;  [inv0, inv0 + G) its inverse
//   zero, one           the constants 0 and 1
//   [rew0, rew0 + V)    rewards (the program starts from r / lambda)
//   [gen0, nslot)       the remaining tape ops, in schedule order
#pragma once
#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <vector>

#include "elim.hpp"

namespace phasic {

// k passes of the reward program as one list of uniform updates over an array x of
// k * V + 1 entries (pass q's vector at q * V, then the constant 1):
//     x[i] = (x[i] + val[m] * x[j]) * val[s]
// A program update x[i] += val[m] x[j] has s = the slot of 1.0, a scaling x[i] *= val[m]
// right after it is folded in as s, a lone scaling has m = the slot of 0.0 and j = the
// constant 1, and pass q >= 1 starts with x_q[v] = (0 + r_v x_(q-1)[v]) * (1/lambda_v)
// (x is zeroed first; r sits in val). Pass 0 starts the same way (with x_(-1) = 1), in a
// plain loop before the list. The arithmetic of each value is that of the plain program. The updates are sorted
// by dependency level (see plan_sched); each is stored as two words (i | j << 32 and
// m | s << 32), which the CPU loads faster than four.
struct XSched {
  int64_t k = 0;
  std::vector<uint64_t> ij, ms;
};

// The normalisation groups with c leaves: groups g0 .. g0 + ng - 1, leaf i of group g0 + h
// in weight slot slot0 + i * ng + h (leaf-major, so that a class is summed and divided
// with plain vector loops over its groups).
struct GroupClass {
  int64_t c, ng, slot0, g0;
};

struct Plan {
  int64_t V = 0, E = 0, NL = 0, G = 0, lam0 = 0, inv0 = 0, zero = 0, one = 0, rew0 = 0, gen0 = 0,
          nslot = 0;
  std::vector<int32_t> slot_edge, edge_slot;  // weight slot <-> edge
  std::vector<GroupClass> cls;                // normalisation groups, by number of leaves
  std::vector<uint8_t> rcode;                 // remaining ops, in runs of one opcode:
  std::vector<int32_t> rptr;                  //   run r covers ops [rptr[r], rptr[r + 1])
  std::vector<int32_t> a, b, c;               // operand slots; op t writes gen0 + t
  std::vector<int32_t> xinit;                 // slot of 1/lambda_v (or `zero`)
  std::vector<int32_t> xi, xj, xm;            // reward program, multipliers as slots
  std::map<int64_t, XSched> sched;            // by number of passes k (built on demand)
  // the transposed program (replay_adjoint's updates x[dst] += val[m] x[src], or
  // x[dst] *= val[m] where src < 0), sorted by dependency level (plan_adjoint, on demand)
  std::vector<int32_t> adj_dst, adj_src, adj_m;
  bool adj_ready = false;
};

// Cuts ops (already sorted so that equal keys are adjacent) into runs of equal key.
inline void make_runs(const std::vector<uint8_t>& key, std::vector<uint8_t>& kind,
                      std::vector<int32_t>& run) {
  kind.clear(); run.assign(1, 0);
  for (size_t t = 0; t < key.size(); ++t) {
    if (t > 0 && key[t] == key[t - 1]) continue;
    if (t > 0) run.push_back((int32_t)t);
    kind.push_back(key[t]);
  }
  if (!key.empty()) run.push_back((int32_t)key.size());
}

// Builds the plan of a trace over E edges. Edges below n_start (the start vertex's, used
// for the initial distribution) keep their raw weights.
inline void compile_plan(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                         const int32_t* c, int64_t nx, const int32_t* xi, const int32_t* xj,
                         const int32_t* xs, int64_t V, const int32_t* xinit, int64_t E,
                         int64_t n_start, Plan& P) {
  P = Plan();
  P.V = V; P.E = E;
  if (n >= INT32_MAX / 2 || E >= INT32_MAX / 4 || V >= INT32_MAX / 8)
    throw std::length_error("trace too large for a replay plan");
  for (int64_t i = 0; i < n; ++i) {
    bool bad = code[i] > OP_INV1M || (code[i] == OP_WEIGHT ? a[i] < 0 || a[i] >= E : a[i] < 0 || a[i] >= i)
        || b[i] >= i || c[i] >= i || ((code[i] == OP_ADD || code[i] == OP_DIV || code[i] == OP_MUL ||
                                        code[i] == OP_FMA) && b[i] < 0) || (code[i] == OP_FMA && c[i] < 0);
    if (bad) throw std::invalid_argument("malformed trace tape");
  }
  for (int64_t k = 0; k < nx; ++k)
    if (xi[k] < 0 || xi[k] >= V || xj[k] >= V || xs[k] < 0 || xs[k] >= n)
      throw std::invalid_argument("malformed trace program");
  for (int64_t v = 0; v < V; ++v)
    if (xinit[v] >= n) throw std::invalid_argument("malformed trace xinit");

  std::vector<int32_t> nuse(n, 0), wcount(E, 0);
  auto use = [&](int64_t i) { if (i >= 0) nuse[i]++; };
  for (int64_t i = 0; i < n; ++i) {
    if (code[i] == OP_WEIGHT) { wcount[a[i]]++; continue; }
    use(a[i]); use(b[i]); use(c[i]);
  }
  for (int64_t k = 0; k < nx; ++k) use(xs[k]);
  for (int64_t v = 0; v < V; ++v) use(xinit[v]);

  // A group is lambda = w_0 + w_1 + ... (a left-to-right ADD chain over WEIGHT ops, or a
  // single WEIGHT op), its inverse INV(lambda) and one MUL w_l * INV(lambda) per leaf, where
  // each leaf weight is used by nothing else: the leaves can be overwritten by the
  // products.
  std::vector<char> chain(n, 0);
  std::vector<int64_t> inv(n, -1), dptr(n + 1, 0), dlist;  // MULs by 1/op L: dlist[dptr[L]..]
  for (int64_t i = 0; i < n; ++i) {
    if (code[i] == OP_ADD && (code[a[i]] == OP_WEIGHT || chain[a[i]]) && code[b[i]] == OP_WEIGHT) chain[i] = 1;
    if (code[i] == OP_INV && inv[a[i]] < 0) inv[a[i]] = i;
  }
  // the op L whose first inverse op i multiplies (as its second operand), or -1
  auto scaled_by = [&](int64_t i) -> int64_t {
    if (code[i] != OP_MUL || code[b[i]] != OP_INV) return -1;
    int64_t L = a[b[i]];
    return inv[L] == b[i] ? L : -1;
  };
  for (int64_t i = 0; i < n; ++i) { int64_t L = scaled_by(i); if (L >= 0) dptr[L + 1]++; }
  for (int64_t i = 0; i < n; ++i) dptr[i + 1] += dptr[i];
  dlist.resize(dptr[n]);
  {
    std::vector<int64_t> fill(dptr.begin(), dptr.end() - 1);
    for (int64_t i = 0; i < n; ++i) { int64_t L = scaled_by(i); if (L >= 0) dlist[fill[L]++] = i; }
  }
  const int64_t DEAD = -2;
  std::vector<int64_t> map(n, -1);  // op -> slot
  std::vector<char> absorbed(n, 0);
  std::vector<int64_t> lam_of, lptr(1, 0), lflat, inner;  // group leaves: lflat[lptr[g]..]
  std::vector<int32_t> numer(n, 0);
  for (int64_t L = 0; L < n; ++L) {
    int64_t d0 = dptr[L], d1 = dptr[L + 1];
    if (d0 == d1 || !(code[L] == OP_WEIGHT || chain[L])) continue;
    size_t l0 = lflat.size();
    inner.clear();
    int64_t t = L;
    while (code[t] != OP_WEIGHT) { inner.push_back(t); lflat.push_back(b[t]); t = a[t]; }
    lflat.push_back(t);
    std::reverse(lflat.begin() + l0, lflat.end());
    bool ok = d1 - d0 == (int64_t)(lflat.size() - l0);
    for (size_t q = 1; q < inner.size(); ++q) ok = ok && nuse[inner[q]] == 1;
    for (int64_t d = d0; d < d1; ++d) numer[a[dlist[d]]]++;
    for (int64_t d = d0; d < d1; ++d) ok = ok && code[a[dlist[d]]] == OP_WEIGHT && numer[a[dlist[d]]] == 1;
    for (size_t q = l0; q < lflat.size(); ++q) {
      int64_t l = lflat[q];
      ok = ok && numer[l] == 1 && wcount[a[l]] == 1 && a[l] >= n_start && (l == L || nuse[l] == 2);
    }
    for (int64_t d = d0; d < d1; ++d) numer[a[dlist[d]]] = 0;
    if (!ok) { lflat.resize(l0); continue; }
    lam_of.push_back(L);
    lptr.push_back((int64_t)lflat.size());
    for (int64_t q : inner) { absorbed[q] = 1; map[q] = DEAD; }
    for (size_t q = l0; q < lflat.size(); ++q) { absorbed[lflat[q]] = 1; map[lflat[q]] = DEAD; }
    absorbed[L] = 1;
    absorbed[inv[L]] = 1;
    for (int64_t d = d0; d < d1; ++d) absorbed[dlist[d]] = 1;
  }
  P.G = (int64_t)lam_of.size();
  // weight slots: grouped edges first, group by group (groups ordered by size, so that
  // loops over a group's leaves run the same length many times), then the other edges
  std::vector<int64_t> gorder(P.G);
  for (int64_t g = 0; g < P.G; ++g) gorder[g] = g;
  std::stable_sort(gorder.begin(), gorder.end(), [&](int64_t x, int64_t y) {
    return lptr[x + 1] - lptr[x] < lptr[y + 1] - lptr[y];
  });
  P.edge_slot.assign(E, -1);
  P.slot_edge.assign(lflat.size(), -1);
  for (int64_t h0 = 0, slot0 = 0; h0 < P.G;) {
    int64_t c = lptr[gorder[h0] + 1] - lptr[gorder[h0]], h1 = h0;
    while (h1 < P.G && lptr[gorder[h1] + 1] - lptr[gorder[h1]] == c) ++h1;
    GroupClass gc{c, h1 - h0, slot0, h0};
    slot0 += c * (h1 - h0);
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t i = 0; i < c; ++i) {
        int64_t e = a[lflat[lptr[gorder[h]] + i]], sl = gc.slot0 + i * gc.ng + (h - h0);
        P.edge_slot[e] = (int32_t)sl;
        P.slot_edge[sl] = (int32_t)e;
      }
    P.cls.push_back(gc);
    h0 = h1;
  }
  P.NL = (int64_t)P.slot_edge.size();
  for (int64_t e = 0; e < E; ++e)
    if (P.edge_slot[e] < 0) { P.edge_slot[e] = (int32_t)P.slot_edge.size(); P.slot_edge.push_back((int32_t)e); }
  P.lam0 = E; P.inv0 = E + P.G; P.zero = E + 2 * P.G; P.one = P.zero + 1; P.rew0 = P.one + 1;
  P.gen0 = P.rew0 + V;
  for (int64_t g = 0; g < P.G; ++g) {
    int64_t L = lam_of[gorder[g]];
    map[L] = P.lam0 + g;
    map[inv[L]] = P.inv0 + g;
    for (int64_t d = dptr[L]; d < dptr[L + 1]; ++d) map[dlist[d]] = P.edge_slot[a[a[dlist[d]]]];
  }
  // remaining ops: level = 1 + the deepest operand (group outputs and weights: 0),
  // and sorted by (level, opcode), so that one level's ops of one kind form a run
  std::vector<int64_t> level(n, 0), rest;
  int64_t depth = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (absorbed[i]) continue;
    if (code[i] == OP_WEIGHT) { map[i] = P.edge_slot[a[i]]; continue; }
    int64_t l = level[a[i]];
    if (b[i] >= 0) l = std::max(l, level[b[i]]);
    if (c[i] >= 0) l = std::max(l, level[c[i]]);
    level[i] = l + 1;
    depth = std::max(depth, l + 1);
    rest.push_back(i);
  }
  {
    std::vector<int64_t> start((depth + 1) * 8 + 1, 0), sorted(rest.size());
    for (int64_t i : rest) start[level[i] * 8 + code[i] + 1]++;
    for (size_t q = 1; q < start.size(); ++q) start[q] += start[q - 1];
    for (int64_t i : rest) sorted[start[level[i] * 8 + code[i]]++] = i;
    rest.swap(sorted);
  }
  for (size_t t = 0; t < rest.size(); ++t) map[rest[t]] = P.gen0 + (int64_t)t;
  auto slot = [&](int64_t i) -> int32_t {
    if (map[i] < 0) throw std::logic_error("replay plan: operand without a slot");
    return (int32_t)map[i];
  };
  std::vector<uint8_t> rc;
  for (int64_t i : rest) {
    rc.push_back(code[i]);
    P.a.push_back(slot(a[i]));
    P.b.push_back(b[i] >= 0 ? slot(b[i]) : -1);
    P.c.push_back(c[i] >= 0 ? slot(c[i]) : -1);
  }
  make_runs(rc, P.rcode, P.rptr);
  P.nslot = P.gen0 + (int64_t)rest.size();
  for (int64_t k = 0; k < nx; ++k) {
    P.xi.push_back((int32_t)xi[k]); P.xj.push_back((int32_t)xj[k]); P.xm.push_back(slot(xs[k]));
  }
  for (int64_t v = 0; v < V; ++v) P.xinit.push_back(xinit[v] < 0 ? (int32_t)P.zero : slot(xinit[v]));
}

// The level schedule of k program passes (see XSched). An update's level is one more than
// the last write of both entries it reads, and no lower than the level of earlier reads of
// the entry it writes; sorting by level (stable) keeps, for every entry, the order of its
// writes and of the reads around them, so each value sees the same inputs as in program
// order, while updates of one level are independent of each other.
// Schedules live in a map, so building one does not move the others.
inline const XSched* plan_sched(Plan& P, int64_t k) {
  auto found = P.sched.find(k);
  if (found != P.sched.end()) return &found->second;
  int64_t V = P.V, nx = (int64_t)P.xi.size();
  if (k < 1 || k * V + 1 >= INT32_MAX || P.nslot >= INT32_MAX)
    throw std::length_error("too many moments for a replay plan");
  struct Op { uint64_t ij, ms; int64_t lev; };
  std::vector<Op> ops;
  ops.reserve(k * (nx + V));
  std::vector<int64_t> lw(k * V + 1, 0), lr(k * V + 1, 0);
  auto add = [&](int64_t i, int64_t j, int64_t m, int64_t s) {
    int64_t l = std::max({lw[i] + 1, lw[j] + 1, lr[i]});
    lr[j] = std::max(lr[j], l);
    lw[i] = l;
    ops.push_back({(uint64_t)i | ((uint64_t)j << 32), (uint64_t)m | ((uint64_t)s << 32), l});
  };
  const int64_t one = k * V;
  for (int64_t q = 0; q < k; ++q) {
    if (q > 0)
      for (int64_t v = 0; v < V; ++v) add(q * V + v, (q - 1) * V + v, P.rew0 + v, P.xinit[v]);
    for (int64_t t = 0; t < nx; ++t) {
      int64_t i = q * V + P.xi[t];
      if (P.xj[t] < 0) { add(i, one, P.zero, P.xm[t]); continue; }
      bool scaled = t + 1 < nx && P.xj[t + 1] < 0 && P.xi[t + 1] == P.xi[t];
      add(i, q * V + P.xj[t], P.xm[t], scaled ? P.xm[t + 1] : P.one);
      t += scaled;
    }
  }
  // counting sort by level (stable)
  int64_t depth = 0;
  for (const Op& o : ops) depth = std::max(depth, o.lev);
  std::vector<int64_t> start(depth + 2, 0);
  for (const Op& o : ops) start[o.lev + 1]++;
  for (int64_t l = 0; l <= depth; ++l) start[l + 1] += start[l];
  XSched S;
  S.k = k;
  S.ij.resize(ops.size());
  S.ms.resize(ops.size());
  for (const Op& o : ops) { int64_t t = start[o.lev]++; S.ij[t] = o.ij; S.ms[t] = o.ms; }
  return &(P.sched[k] = std::move(S));
}

// Builds P's level-sorted transposed program. replay_adjoint runs the program's updates in
// reverse with the roles of i and j swapped; each is placed one level after the last write
// of what it reads and after the last write and read of what it writes, then the list is
// sorted by level (stably). Every x value thus sees the same operations, in the same order,
// as in replay_adjoint: the results are bitwise the same, while updates of one level (on
// different vertices) no longer wait for each other.
inline void plan_adjoint(Plan& P) {
  if (P.adj_ready) return;
  const int64_t n = (int64_t)P.xi.size(), V = P.V;
  std::vector<int64_t> lw(V, 0), lr(V, 0), lev(n);
  int64_t depth = 0;
  for (int64_t t = n - 1; t >= 0; --t) {
    const int64_t scale = P.xj[t] < 0, dst = scale ? P.xi[t] : P.xj[t], src = scale ? -1 : P.xi[t];
    int64_t l = std::max(lw[dst], lr[dst]) + 1;
    if (src >= 0) l = std::max(l, lw[src] + 1);
    lw[dst] = l;
    if (src >= 0) lr[src] = std::max(lr[src], l);
    lev[t] = l;
    depth = std::max(depth, l);
  }
  std::vector<int64_t> start(depth + 2, 0);
  for (int64_t t = 0; t < n; ++t) start[lev[t] + 1]++;
  for (int64_t l = 0; l <= depth; ++l) start[l + 1] += start[l];
  P.adj_dst.resize(n); P.adj_src.resize(n); P.adj_m.resize(n);
  for (int64_t t = n - 1; t >= 0; --t) {  // in replay_adjoint's order within a level
    const int64_t u = start[lev[t]]++;
    const bool scale = P.xj[t] < 0;
    P.adj_dst[u] = scale ? P.xi[t] : P.xj[t];
    P.adj_src[u] = scale ? -1 : P.xi[t];
    P.adj_m[u] = P.xm[t];
  }
  P.adj_ready = true;
}

}  // namespace phasic
