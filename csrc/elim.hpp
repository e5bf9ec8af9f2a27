// Graph elimination (Roikjer, Hobolth & Munch 2022, Alg. 3) recorded as a trace.
//
// The elimination never looks at weight values: it records the arithmetic it would do as
// an SSA tape over the edge weights (ops WEIGHT/ADD/DIV/INV/MUL/FMA/INV1M).  Evaluating
// the tape for a weight vector gives the multipliers of the "reward compute" program
// (xprog), a list of x[i] += m * x[j] and x[i] *= m updates.  Replaying xprog on
// x = r / lambda gives U r with U = (-S)^-1 (CPH) or (I - T)^-1 (DPH), per vertex.
// Vertices are eliminated SCC by SCC in topological order, so each SCC's ops form one
// contiguous, self-contained segment of the tape (used by hierarchical trace caching).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace phasic {

enum Op : uint8_t { OP_WEIGHT = 0, OP_ADD = 1, OP_DIV = 2, OP_INV = 3, OP_MUL = 4, OP_FMA = 5, OP_INV1M = 6 };

struct Trace {
  // tape
  std::vector<uint8_t> code;
  std::vector<int32_t> a, b, c;  // operands: op indices (WEIGHT: an edge index), -1 if unused
  // reward-compute program: x[xi] += val[xs] * x[xj] (xj >= 0) or x[xi] *= val[xs] (xj < 0)
  std::vector<int32_t> xi, xj, xs;
  std::vector<int32_t> xinit;   // per vertex: op of 1/lambda, or -1 (absorbing / start)
  std::vector<int64_t> order;   // elimination order (vertex ids), start vertex excluded
  std::vector<int64_t> scc_ptr; // SCC boundaries in `order` (topological order)
  std::vector<int64_t> seg_ptr; // tape segment of each SCC: ops [seg_ptr[k], seg_ptr[k+1])
  std::vector<int64_t> xseg_ptr;// program segment of each SCC (program runs SCCs in reverse)

  // Operands and program entries are int32 (half the memory and disk of int64; a trace
  // of 2^31 ops would take ~30 GB), so a longer tape is refused.
  int64_t emit(uint8_t op, int64_t x, int64_t y = -1, int64_t z = -1) {
    if ((int64_t)code.size() >= INT32_MAX)
      throw std::length_error("elimination trace exceeds 2^31 - 1 operations");
    code.push_back(op); a.push_back((int32_t)x); b.push_back((int32_t)y); c.push_back((int32_t)z);
    return (int64_t)code.size() - 1;
  }
};

// Re-orders one SCC (members in `comp`) as the reverse preorder of a depth-first search
// started at a centre of the component instead of where Tarjan's search entered it. The
// order keeps Tarjan's property (a path or tree is eliminated from its ends inwards,
// without fill-in), and starting in the middle makes the ends meet there: a path is
// eliminated from both ends at once, which halves the dependency depth of the tape and of
// the reward program (replay time is bound by that depth on one parameter vector).
// The centre is the midpoint of a longest shortest path found by two breadth-first
// searches (exact for trees). `mark`, `dist`, `from`, `seen`: scratch of size V.
inline void recentre(const int64_t* indptr, const int32_t* target, std::vector<int64_t>& comp,
                     std::vector<int64_t>& mark, std::vector<int64_t>& dist,
                     std::vector<int64_t>& from, std::vector<int64_t>& seen) {
  const int64_t tag = comp.front();
  for (int64_t v : comp) mark[v] = tag;
  std::vector<int64_t> queue;
  auto bfs = [&](int64_t s) {  // returns the last vertex reached
    for (int64_t v : comp) dist[v] = -1;
    queue.assign(1, s);
    dist[s] = 0; from[s] = -1;
    for (size_t h = 0; h < queue.size(); ++h) {
      int64_t v = queue[h];
      for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e) {
        int64_t w = target[e];
        if (mark[w] != tag || dist[w] >= 0) continue;
        dist[w] = dist[v] + 1; from[w] = v;
        queue.push_back(w);
      }
    }
    return queue.back();
  };
  int64_t u = bfs(comp.back());  // comp.back() is where Tarjan entered
  int64_t far = bfs(u);
  int64_t c = far;
  for (int64_t s = dist[far] / 2; s > 0; --s) c = from[c];
  // iterative DFS from c over the component's edges, in edge order; preorder reversed
  for (int64_t v : comp) seen[v] = 0;
  std::vector<std::pair<int64_t, int64_t>> call(1, {c, indptr[c]});
  size_t n = 0;
  comp[n++] = c; seen[c] = 1;
  while (!call.empty()) {
    int64_t v = call.back().first;
    int64_t& e = call.back().second;
    if (e == indptr[v + 1]) { call.pop_back(); continue; }
    int64_t w = target[e++];
    if (mark[w] != tag || seen[w]) continue;
    seen[w] = 1;
    comp[n++] = w;
    call.push_back({w, indptr[w]});
  }
  if (n != comp.size()) throw std::logic_error("recentre: component is not strongly connected");
  std::reverse(comp.begin(), comp.end());
}

// Tarjan's algorithm, iterative. Returns SCCs in topological order (sources first).
// Inside an SCC the vertices are in reverse DFS discovery order (as Tarjan pops them),
// from a search restarted at the component's centre (recentre): vertices deep in the
// search come first, so a path or tree-like component is eliminated from its ends inwards
// without fill-in. Vertex 0 (the start) is excluded.
inline void scc_order(int64_t V, const int64_t* indptr, const int32_t* target,
                      std::vector<int64_t>& order, std::vector<int64_t>& scc_ptr) {
  std::vector<int64_t> index(V, -1), low(V, 0), stack, comp_of(V, -1);
  std::vector<char> on(V, 0);
  std::vector<std::pair<int64_t, int64_t>> call;  // (vertex, next edge)
  std::vector<std::vector<int64_t>> comps;
  int64_t counter = 0;
  for (int64_t root = 1; root < V; ++root) {
    if (index[root] >= 0) continue;
    call.push_back({root, indptr[root]});
    index[root] = low[root] = counter++;
    stack.push_back(root); on[root] = 1;
    while (!call.empty()) {
      int64_t v = call.back().first;
      int64_t& e = call.back().second;
      if (e < indptr[v + 1]) {
        int64_t w = target[e++];
        if (w == 0 || w == v) continue;
        if (index[w] < 0) {
          index[w] = low[w] = counter++;
          stack.push_back(w); on[w] = 1;
          call.push_back({w, indptr[w]});
        } else if (on[w]) {
          low[v] = std::min(low[v], index[w]);
        }
      } else {
        if (low[v] == index[v]) {
          std::vector<int64_t> comp;
          int64_t w;
          do { w = stack.back(); stack.pop_back(); on[w] = 0; comp.push_back(w); } while (w != v);
          comps.push_back(std::move(comp));
        }
        call.pop_back();
        if (!call.empty()) {
          int64_t u = call.back().first;
          low[u] = std::min(low[u], low[v]);
        }
      }
    }
  }
  order.clear(); scc_ptr.assign(1, 0);
  std::vector<int64_t> dist(V, -1), from(V, -1);
  for (auto it = comps.rbegin(); it != comps.rend(); ++it) {
    if (it->size() > 2) recentre(indptr, target, *it, comp_of, dist, from, index);
    for (int64_t v : *it) order.push_back(v);
    scc_ptr.push_back((int64_t)order.size());
  }
}

// ---------------------------------------------------------------------------- checks
// A trace that comes from outside the recorder (a store entry, arrays handed to an entry
// point) is checked before any loop indexes memory with it: one pass over each array, no
// allocation. Each check returns "" or names the first bad entry, its value and the range
// it must lie in. The pass only ORs 32-bit flags (no early exit, no branches on the data,
// signed 32-bit compares: the compiler vectorises it, and builds an AVX2 clone where it
// can); the first bad entry is looked for once a flag is up.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define PHASIC_CHECK_CLONES __attribute__((target_clones("avx2", "default"), noinline))
#else
#define PHASIC_CHECK_CLONES
#endif

// Nonzero if a tape op is malformed (see check_tape). n < 2^31, E clamped to 2^31 - 1.
PHASIC_CHECK_CLONES inline int32_t tape_flags(int32_t n, const uint8_t* code, const int32_t* a,
                                              const int32_t* b, const int32_t* c, int32_t E) {
  int32_t bad = 0;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t op = code[i], x = a[i], y = b[i], z = c[i];
    const int32_t lim = op == OP_WEIGHT ? E : i;
    const int32_t two = (op == OP_ADD) | (op == OP_DIV) | (op == OP_MUL) | (op == OP_FMA), three = op == OP_FMA;
    bad |= (op > OP_INV1M) | (x < 0) | (x >= lim) | (two & ((y < 0) | (y >= i))) | ((two ^ 1) & (y != -1)) |
           (three & ((z < 0) | (z >= i))) | ((three ^ 1) & (z != -1));
  }
  return bad;
}

// Nonzero if a program update is out of range (see check_program); bounds clamped to int32.
PHASIC_CHECK_CLONES inline int32_t program_flags(int64_t nx, const int32_t* xi, const int32_t* xj,
                                                 const int32_t* xs, int32_t n, int32_t V, int32_t i_lo,
                                                 int32_t j_lo) {
  int32_t bad = 0;
  for (int64_t k = 0; k < nx; ++k) {
    const int32_t i = xi[k], j = xj[k], s = xs[k];
    bad |= (i < i_lo) | (i >= V) | ((j != -1) & ((j < j_lo) | (j >= V))) | (s < 0) | (s >= n);
  }
  return bad;
}

inline std::string bad_entry(const char* field, int64_t i, int64_t v, const std::string& need) {
  return std::string(field) + "[" + std::to_string(i) + "] = " + std::to_string(v) + ": " + need;
}

inline bool below(int64_t v, int64_t hi) { return (uint64_t)v < (uint64_t)hi; }  // 0 <= v < hi

// The tape over E edges: op i is an opcode <= OP_INV1M; a WEIGHT op reads edge a[i] in
// [0, E) and has b[i] = c[i] = -1; any other op reads earlier ops only (SSA: a[i] in [0, i),
// b[i] in [0, i) for ADD/DIV/MUL/FMA, c[i] in [0, i) for FMA), -1 in the operands it does
// not use.
inline std::string check_tape(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                              const int32_t* c, int64_t E) {
  constexpr unsigned two = (1u << OP_ADD) | (1u << OP_DIV) | (1u << OP_MUL) | (1u << OP_FMA);
  if (n >= INT32_MAX) return "the tape has " + std::to_string(n) + " ops, more than 2^31 - 1";
  auto ok_a = [&](int64_t i) { return below(a[i], code[i] == OP_WEIGHT ? E : i); };
  auto ok_b = [&](int64_t i) { return code[i] < 8 && ((two >> code[i]) & 1u) ? below(b[i], i) : b[i] == -1; };
  auto ok_c = [&](int64_t i) { return code[i] == OP_FMA ? below(c[i], i) : c[i] == -1; };
  if (!tape_flags((int32_t)n, code, a, b, c, (int32_t)std::min<int64_t>(E, INT32_MAX))) return "";
  for (int64_t i = 0; i < n; ++i) {
    if (code[i] > OP_INV1M) return bad_entry("code", i, code[i], "not an opcode (0 to 6)");
    if (!ok_a(i))
      return code[i] == OP_WEIGHT
          ? bad_entry("a", i, a[i], "a WEIGHT op reads an edge index in [0, " + std::to_string(E) + ")")
          : bad_entry("a", i, a[i], "an operand must be an earlier op, in [0, " + std::to_string(i) + ")");
    if (!ok_b(i))
      return bad_entry("b", i, b[i], b[i] == -1 || !(code[i] < 8 && ((two >> code[i]) & 1u))
          ? "must be -1 for opcode " + std::to_string(code[i]) + " or an earlier op"
          : "an operand must be an earlier op, in [0, " + std::to_string(i) + ")");
    if (!ok_c(i))
      return bad_entry("c", i, c[i], code[i] == OP_FMA
          ? "an operand must be an earlier op, in [0, " + std::to_string(i) + ")"
          : "must be -1 for opcode " + std::to_string(code[i]));
  }
  return "";
}

// The reward program on V vertices with n tape values: update k writes x[xi[k]], xi[k] in
// [i_lo, V), reads x[xj[k]], xj[k] in [j_lo, V), or is a scaling (xj[k] = -1), and its
// multiplier is val[xs[k]], xs[k] in [0, n). Recorded traces have i_lo = 1 (vertex 0, the
// start, is never eliminated) and, for a component's own trace, j_lo = 1 (its vertex 0 is
// a dummy).
inline std::string check_program(int64_t nx, const int32_t* xi, const int32_t* xj, const int32_t* xs,
                                 int64_t n, int64_t V, int64_t i_lo = 0, int64_t j_lo = 0) {
  const int64_t ni = std::max<int64_t>(V - i_lo, 0), nj = std::max<int64_t>(V - j_lo, 0);
  auto ok_i = [&](int64_t k) { return below((int64_t)xi[k] - i_lo, ni); };
  auto ok_j = [&](int64_t k) { return xj[k] == -1 || below((int64_t)xj[k] - j_lo, nj); };
  auto ok_s = [&](int64_t k) { return below(xs[k], n); };
  auto i32 = [](int64_t x) { return (int32_t)std::max<int64_t>(std::min<int64_t>(x, INT32_MAX), 0); };
  if (!program_flags(nx, xi, xj, xs, i32(n), i32(V), i32(i_lo), i32(j_lo))) return "";
  const std::string vs = ", " + std::to_string(V) + ")";
  for (int64_t k = 0; k < nx; ++k) {
    if (!ok_i(k)) return bad_entry("xi", k, xi[k], "writes a vertex in [" + std::to_string(i_lo) + vs);
    if (!ok_j(k)) return bad_entry("xj", k, xj[k], "reads a vertex in [" + std::to_string(j_lo) + vs + " or is -1");
    if (!ok_s(k)) return bad_entry("xs", k, xs[k], "multiplier must be a tape op, in [0, " + std::to_string(n) + ")");
  }
  return "";
}

// Per vertex, the op of 1/lambda (in [0, n)) or -1.
inline std::string check_xinit(int64_t V, const int32_t* xinit, int64_t n) {
  const int32_t n32 = (int32_t)std::min<int64_t>(n, INT32_MAX);
  int32_t bad = 0;
  for (int64_t v = 0; v < V; ++v) bad |= (xinit[v] < -1) | (xinit[v] >= n32);
  if (!bad) return "";
  for (int64_t v = 0; v < V; ++v)
    if (!(xinit[v] == -1 || below(xinit[v], n)))
      return bad_entry("xinit", v, xinit[v], "must be a tape op, in [0, " + std::to_string(n) + "), or -1");
  return "";
}

// CSR structure: indptr[0] = 0, non-decreasing, indptr[V] = E; targets in [0, V).
inline std::string check_csr(int64_t V, const int64_t* indptr, int64_t E, const int32_t* target) {
  if (V < 1) return "indptr needs at least 2 entries (vertex 0, the start, and the end)";
  bool ok = indptr[0] == 0 && indptr[V] == E;
  for (int64_t v = 0; v < V; ++v) ok &= indptr[v] <= indptr[v + 1];
  for (int64_t e = 0; e < E; ++e) ok &= below(target[e], V);
  if (ok) return "";
  if (indptr[0] != 0) return bad_entry("indptr", 0, indptr[0], "must be 0");
  for (int64_t v = 0; v < V; ++v)
    if (indptr[v] > indptr[v + 1]) return bad_entry("indptr", v + 1, indptr[v + 1], "must not decrease");
  if (indptr[V] != E) return bad_entry("indptr", V, indptr[V], "must be the number of edges, " + std::to_string(E));
  for (int64_t e = 0; e < E; ++e)
    if (!below(target[e], V)) return bad_entry("target", e, target[e], "must be a vertex, in [0, " + std::to_string(V) + ")");
  return "";
}

// The elimination order and segments: order a permutation of the vertices 1..V-1;
// scc_ptr, seg_ptr and xseg_ptr (np entries each: one per component and one more) rising
// from 0 to V - 1, n (ops) and nx (updates).
inline std::string check_layout(int64_t V, int64_t no, const int64_t* order, int64_t np,
                                const int64_t* scc_ptr, const int64_t* seg_ptr,
                                const int64_t* xseg_ptr, int64_t n, int64_t nx) {
  const int64_t m = std::max<int64_t>(V - 1, 0);
  if (no != m) return "order has " + std::to_string(no) + " entries; expected " + std::to_string(m) + " (vertices 1..V-1)";
  std::vector<uint8_t> seen(V > 0 ? V : 1, 0);
  for (int64_t i = 0; i < no; ++i) {
    const int64_t v = order[i];
    if (v < 1 || v >= V) return bad_entry("order", i, v, "must be a vertex in [1, " + std::to_string(V) + ")");
    if (seen[v]++) return bad_entry("order", i, v, "lists a vertex a second time");
  }
  const int64_t* ptrs[3] = {scc_ptr, seg_ptr, xseg_ptr};
  const int64_t ends[3] = {m, n, nx};
  const char* names[3] = {"scc_ptr", "seg_ptr", "xseg_ptr"};
  if (np < 1) return "scc_ptr is empty; it has one entry per component and one more";
  for (int q = 0; q < 3; ++q) {
    const int64_t* p = ptrs[q];
    if (p[0] != 0) return bad_entry(names[q], 0, p[0], "must be 0");
    for (int64_t k = 1; k < np; ++k)
      if (p[k] < p[k - 1]) return bad_entry(names[q], k, p[k], "must not decrease");
    if (p[np - 1] != ends[q]) return bad_entry(names[q], np - 1, p[np - 1], "must be " + std::to_string(ends[q]));
  }
  return "";
}

// All of a trace's operands, for a graph of V vertices and E edges (local: a component's
// own trace, see LocalTrace).
inline std::string check_trace(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                               const int32_t* c, int64_t nx, const int32_t* xi, const int32_t* xj,
                               const int32_t* xs, int64_t V, const int32_t* xinit, int64_t E,
                               bool local) {
  std::string m = check_tape(n, code, a, b, c, E);
  if (m.empty()) m = check_program(nx, xi, xj, xs, n, V, 1, local ? 1 : 0);
  if (m.empty()) m = check_xinit(V, xinit, n);
  return m;
}

using EdgeList = std::vector<std::pair<int32_t, int32_t>>;  // (target, op) sorted by target

inline EdgeList::iterator find_edge(EdgeList& l, int64_t z) {
  auto it = std::lower_bound(l.begin(), l.end(), std::make_pair((int32_t)z, (int32_t)-1));
  return (it != l.end() && it->first == z) ? it : l.end();
}

// A trace recorded for one SCC on its own ("local" graph: vertex 0 a dummy start, 1..m the
// SCC's vertices in elimination order, then its external targets in id order), spliced in
// by record().
struct LocalTrace {
  int64_t n_ops = 0, n_x = 0, n_v = 0;  // n_v: entries of xinit
  const uint8_t* code = nullptr;
  const int32_t *a = nullptr, *b = nullptr, *c = nullptr;
  const int32_t *xi = nullptr, *xj = nullptr, *xs = nullptr, *xinit = nullptr;
};

// Records the elimination of the graph given in CSR form. Vertex 0 is the start vertex;
// its edges (the initial distribution) are not part of the trace.
//
// Within an SCC C only edges between C's vertices take part in the elimination (Gaussian
// elimination of I - P_CC); edges leaving C keep their normalised probabilities and enter
// the program as x_v += p_vz x_z before C's own updates. The program visits the SCCs in
// reverse topological order, so x_z of every target outside C is final by then. Fill-in
// therefore stays inside SCCs (a path-like SCC has none).
inline void record(int64_t V, const int64_t* indptr, const int32_t* target, Trace& T,
                   const std::vector<const LocalTrace*>* provided = nullptr,
                   bool local = false) {
  if (V >= INT32_MAX) throw std::length_error("too many vertices for an elimination trace");
  if (local) {
    // a local SCC graph: vertices 1..m form the SCC in elimination order, the rest absorb
    T.order.clear(); T.scc_ptr.assign(1, 0);
    int64_t m = 0;
    while (m + 1 < V && indptr[m + 2] > indptr[m + 1]) ++m;
    for (int64_t v = 1; v < V; ++v) T.order.push_back(v);
    T.scc_ptr.push_back(m);
    for (int64_t v = m + 1; v < V; ++v) T.scc_ptr.push_back(v);
  } else {
    scc_order(V, indptr, target, T.order, T.scc_ptr);
  }
  std::vector<int64_t> ord(V, -1), scc(V, -1);
  int64_t nscc = (int64_t)T.scc_ptr.size() - 1;
  for (int64_t k = 0; k < nscc; ++k)
    for (int64_t i = T.scc_ptr[k]; i < T.scc_ptr[k + 1]; ++i) { ord[T.order[i]] = i; scc[T.order[i]] = k; }
  std::vector<EdgeList> out(V);                     // edges inside the SCC
  std::vector<std::vector<int32_t>> par(V);
  // per-SCC programs, recorded in topological order into one buffer, emitted reversed
  std::vector<int32_t> X, J, S;
  std::vector<int64_t> pseg(1, 0);
  EdgeList w, m;
  T.xinit.assign(V, -1);
  T.seg_ptr.assign(1, 0);
  for (int64_t k = 0; k < nscc; ++k) {
    if (k > 0) pseg.push_back((int64_t)X.size());
    const LocalTrace* L = (provided && k < (int64_t)provided->size()) ? (*provided)[k] : nullptr;
    if (L) {
      // splice a pre-recorded SCC trace: map local vertices, edges and ops to global ones
      std::vector<int64_t> gv(1, -1), ge, ext;
      for (int64_t i = T.scc_ptr[k]; i < T.scc_ptr[k + 1]; ++i) gv.push_back(T.order[i]);
      int64_t m = (int64_t)gv.size() - 1;
      for (int64_t i = 1; i <= m; ++i)
        for (int64_t e = indptr[gv[i]]; e < indptr[gv[i] + 1]; ++e) {
          ge.push_back(e);
          if (scc[target[e]] != k) ext.push_back(target[e]);
        }
      std::sort(ext.begin(), ext.end());
      ext.erase(std::unique(ext.begin(), ext.end()), ext.end());
      gv.insert(gv.end(), ext.begin(), ext.end());
      // the splice indexes ge, gv and xinit with the component's operands: check them first
      std::string bad = L->n_v != (int64_t)gv.size()
          ? "xinit has " + std::to_string(L->n_v) + " entries, the component " + std::to_string(gv.size())
          : check_trace(L->n_ops, L->code, L->a, L->b, L->c, L->n_x, L->xi, L->xj, L->xs,
                        (int64_t)gv.size(), L->xinit, (int64_t)ge.size(), true);
      if (!bad.empty())
        throw std::invalid_argument("trace of component " + std::to_string(k) + ": " + bad);
      int64_t off = (int64_t)T.code.size();
      for (int64_t j = 0; j < L->n_ops; ++j) {
        if (L->code[j] == OP_WEIGHT) T.emit(OP_WEIGHT, ge[L->a[j]]);
        else T.emit(L->code[j], L->a[j] + off, L->b[j] < 0 ? -1 : L->b[j] + off,
                    L->c[j] < 0 ? -1 : L->c[j] + off);
      }
      for (int64_t i = 1; i <= m; ++i) T.xinit[gv[i]] = L->xinit[i] < 0 ? -1 : L->xinit[i] + off;
      for (int64_t j = 0; j < L->n_x; ++j) {
        int64_t tj = L->xj[j] < 0 ? -1 : gv[L->xj[j]];
        if (tj >= 0 && indptr[tj + 1] == indptr[tj]) continue;  // absorbing here: x = 0
        X.push_back(gv[L->xi[j]]); J.push_back(tj); S.push_back(L->xs[j] + off);
      }
      T.seg_ptr.push_back((int64_t)T.code.size());
      continue;
    }
    bool single = T.scc_ptr[k + 1] - T.scc_ptr[k] == 1;
    // normalisation of this SCC's vertices: lambda, 1/lambda, p = w * (1/lambda) (one
    // division per vertex instead of one per edge); edges that leave the SCC go straight
    // into the program
    for (int64_t i = T.scc_ptr[k]; i < T.scc_ptr[k + 1]; ++i) {
      int64_t v = T.order[i];
      w.clear(); m.clear();
      for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e) {
        int64_t z = target[e];
        if (z == v) continue;  // self-transitions do not change the chain
        w.push_back({(int32_t)z, (int32_t)T.emit(OP_WEIGHT, e)});
      }
      if (w.empty()) continue;  // absorbing
      std::stable_sort(w.begin(), w.end(), [](auto& x, auto& y) { return x.first < y.first; });
      // merge duplicate targets
      for (auto& p : w) {
        if (!m.empty() && m.back().first == p.first) m.back().second = T.emit(OP_ADD, m.back().second, p.second);
        else m.push_back(p);
      }
      int64_t lam = m[0].second;
      for (size_t j = 1; j < m.size(); ++j) lam = T.emit(OP_ADD, lam, m[j].second);
      int64_t inv = T.xinit[v] = T.emit(OP_INV, lam);
      for (auto& p : m) {
        p.second = T.emit(OP_MUL, p.second, inv);  // w / lambda as w * (1 / lambda)
        int64_t z = p.first;
        if (!single && scc[z] == k) {
          out[v].push_back(p);
          par[z].push_back(v);
        } else if (local || indptr[z + 1] > indptr[z]) {
          X.push_back(v); J.push_back(z); S.push_back(p.second);
        }
      }
    }
    // Gaussian elimination of I - P_CC in the SCC's order
    if (T.scc_ptr[k + 1] - T.scc_ptr[k] > 1) {
      for (int64_t i = T.scc_ptr[k]; i < T.scc_ptr[k + 1]; ++i) {
        int64_t v = T.order[i];
        std::vector<int32_t> parents;
        parents.swap(par[v]);
        std::sort(parents.begin(), parents.end());
        parents.erase(std::unique(parents.begin(), parents.end()), parents.end());
        for (int64_t u : parents) {
          if (ord[u] <= ord[v]) continue;
          auto it = find_edge(out[u], v);
          if (it == out[u].end()) continue;
          int64_t puv = it->second;
          out[u].erase(it);
          X.push_back(u); J.push_back(v); S.push_back(puv);
          int64_t self = -1;
          EdgeList merged;
          merged.reserve(out[u].size() + out[v].size());
          auto a = out[u].begin(), ae = out[u].end();
          auto b = out[v].begin(), be = out[v].end();
          while (a != ae || b != be) {
            if (b == be || (a != ae && a->first < b->first)) { merged.push_back(*a++); continue; }
            int64_t z = b->first, pvz = b->second;
            ++b;
            if (z == u) {
              self = self < 0 ? T.emit(OP_MUL, puv, pvz) : T.emit(OP_FMA, self, puv, pvz);
              continue;
            }
            if (a != ae && a->first == z) {
              merged.push_back({(int32_t)z, (int32_t)T.emit(OP_FMA, a->second, puv, pvz)});
              ++a;
            } else {
              merged.push_back({(int32_t)z, (int32_t)T.emit(OP_MUL, puv, pvz)});
              if (ord[u] > ord[z]) par[z].push_back(u);
            }
          }
          if (self >= 0) {
            int64_t sc = T.emit(OP_INV1M, self);
            for (auto& p : merged) p.second = T.emit(OP_MUL, p.second, sc);
            X.push_back(u); J.push_back(-1); S.push_back(sc);
          }
          out[u].swap(merged);
        }
      }
      // back-substitution inside the SCC, in reverse elimination order
      for (int64_t i = T.scc_ptr[k + 1] - 1; i >= T.scc_ptr[k]; --i) {
        int64_t v = T.order[i];
        for (auto& p : out[v]) { X.push_back(v); J.push_back(p.first); S.push_back(p.second); }
        EdgeList().swap(out[v]);
      }
    }
    T.seg_ptr.push_back((int64_t)T.code.size());
  }
  if (nscc > 0) pseg.push_back((int64_t)X.size());
  T.xseg_ptr.assign(1, 0);
  T.xi.reserve(X.size()); T.xj.reserve(X.size()); T.xs.reserve(X.size());
  for (int64_t k = nscc - 1; k >= 0; --k) {
    T.xi.insert(T.xi.end(), X.begin() + pseg[k], X.begin() + pseg[k + 1]);
    T.xj.insert(T.xj.end(), J.begin() + pseg[k], J.begin() + pseg[k + 1]);
    T.xs.insert(T.xs.end(), S.begin() + pseg[k], S.begin() + pseg[k + 1]);
    T.xseg_ptr.push_back((int64_t)T.xi.size());
  }
}

// Evaluates the tape for one weight vector. Returns false if a value is not finite.
inline bool eval_tape(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                      const int32_t* c, const double* w, double* val) {
  for (int64_t i = 0; i < n; ++i) {
    switch (code[i]) {
      case OP_WEIGHT: val[i] = w[a[i]]; break;
      case OP_ADD: val[i] = val[a[i]] + val[b[i]]; break;
      case OP_DIV: val[i] = val[a[i]] / val[b[i]]; break;
      case OP_INV: val[i] = 1.0 / val[a[i]]; break;
      case OP_MUL: val[i] = val[a[i]] * val[b[i]]; break;
      case OP_FMA: val[i] = val[a[i]] + val[b[i]] * val[c[i]]; break;
      case OP_INV1M: val[i] = 1.0 / (1.0 - val[a[i]]); break;
    }
  }
  return true;
}

// x <- program applied to x (in place).
inline void replay(int64_t n, const int32_t* xi, const int32_t* xj, const int32_t* xs,
                   const double* val, double* x) {
  for (int64_t k = 0; k < n; ++k) {
    if (xj[k] >= 0) x[xi[k]] += val[xs[k]] * x[xj[k]];
    else x[xi[k]] *= val[xs[k]];
  }
}

// Transposed program, applied in reverse order (x <- M^T x).
inline void replay_adjoint(int64_t n, const int32_t* xi, const int32_t* xj, const int32_t* xs,
                           const double* val, double* x) {
  for (int64_t k = n - 1; k >= 0; --k) {
    if (xj[k] >= 0) x[xj[k]] += val[xs[k]] * x[xi[k]];
    else x[xi[k]] *= val[xs[k]];
  }
}

// Block versions: nb weight vectors at once, values laid out op-major (val[i * nb + j]),
// so the opcode dispatch is paid once per block and the inner loops vectorise.
inline void eval_tape_block(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                            const int32_t* c, const double* W, int64_t E, int64_t nb, double* val) {
  for (int64_t i = 0; i < n; ++i) {
    double* o = val + i * nb;
    const double* x = code[i] == OP_WEIGHT ? nullptr : val + a[i] * nb;
    const double* y = b[i] >= 0 ? val + b[i] * nb : nullptr;
    const double* z = c[i] >= 0 ? val + c[i] * nb : nullptr;
    switch (code[i]) {
      case OP_WEIGHT: for (int64_t j = 0; j < nb; ++j) o[j] = W[j * E + a[i]]; break;
      case OP_ADD: for (int64_t j = 0; j < nb; ++j) o[j] = x[j] + y[j]; break;
      case OP_DIV: for (int64_t j = 0; j < nb; ++j) o[j] = x[j] / y[j]; break;
      case OP_INV: for (int64_t j = 0; j < nb; ++j) o[j] = 1.0 / x[j]; break;
      case OP_MUL: for (int64_t j = 0; j < nb; ++j) o[j] = x[j] * y[j]; break;
      case OP_FMA: for (int64_t j = 0; j < nb; ++j) o[j] = x[j] + y[j] * z[j]; break;
      case OP_INV1M: for (int64_t j = 0; j < nb; ++j) o[j] = 1.0 / (1.0 - x[j]); break;
    }
  }
}

inline void replay_block(int64_t n, const int32_t* xi, const int32_t* xj, const int32_t* xs,
                         const double* val, int64_t nb, double* x) {
  for (int64_t k = 0; k < n; ++k) {
    double* t = x + xi[k] * nb;
    const double* m = val + xs[k] * nb;
    if (xj[k] >= 0) {
      const double* u = x + xj[k] * nb;
      for (int64_t j = 0; j < nb; ++j) t[j] += m[j] * u[j];
    } else {
      for (int64_t j = 0; j < nb; ++j) t[j] *= m[j];
    }
  }
}

// First k reward moments of a CPH for B weight vectors (rows of W, length E), in blocks.
// a_edge/a_target: the start vertex's edges. out: (B, k).
// If `theta` is given (B x p, with base (E) and coef (E x p)), the weights of each block are
// computed here as base + coef . theta into one reused buffer (W is then ignored); a row
// whose weights include a negative value gets NaN moments and neg[row] = 1.
inline void cph_moments_blocked(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                                const int32_t* c, int64_t nx, const int32_t* xi, const int32_t* xj,
                                const int32_t* xs, int64_t V, const int32_t* xinit,
                                const double* W, int64_t B, int64_t E, int64_t na,
                                const int64_t* a_edge, const int64_t* a_target,
                                const double* rewards, int64_t k, double* out, int64_t block = 0,
                                const double* theta = nullptr, int64_t p = 0,
                                const double* base = nullptr, const double* coef = nullptr,
                                uint8_t* neg = nullptr) {
  // working set (n + 2V) * nb doubles: kept near 4 MB (L2/L3-sized; measured best here)
  int64_t nb = block > 0 ? block
      : std::max<int64_t>(1, std::min<int64_t>(32, (int64_t(1) << 19) / std::max<int64_t>(1, n + 2 * V)));
  nb = std::min(nb, std::max<int64_t>(B, 1));
  std::vector<double> val((n + 1) * nb), x(V * nb), y(V * nb), wbuf;
  if (theta) wbuf.resize(nb * E);
  for (int64_t s = 0; s < B; s += nb) {
    int64_t m = std::min(nb, B - s);
    const double* Wb = W + s * E;
    if (theta) {
      for (int64_t j = 0; j < m; ++j) {
        const double* th = theta + (s + j) * p;
        double* w = wbuf.data() + j * E;
        bool bad = false;
        for (int64_t e = 0; e < E; ++e) {
          double v = base[e];
          const double* ce = coef + e * p;
          for (int64_t q = 0; q < p; ++q) v += ce[q] * th[q];
          w[e] = v;
          bad |= !(v >= 0.0);
        }
        if (neg) neg[s + j] = bad;
      }
      Wb = wbuf.data();
    }
    if (m == 1) eval_tape(n, code, a, b, c, Wb, val.data());
    else eval_tape_block(n, code, a, b, c, Wb, E, m, val.data());
    std::fill(y.begin(), y.begin() + V * m, 1.0);
    double fact = 1.0;
    for (int64_t q = 0; q < k; ++q) {
      fact *= (q + 1);
      for (int64_t v = 0; v < V; ++v) {
        double* xv = x.data() + v * m;
        const double* yv = y.data() + v * m;
        if (xinit[v] < 0) { for (int64_t j = 0; j < m; ++j) xv[j] = 0.0; continue; }
        const double* iv = val.data() + xinit[v] * m;
        for (int64_t j = 0; j < m; ++j) xv[j] = rewards[v] * yv[j] * iv[j];
      }
      if (m == 1) replay(nx, xi, xj, xs, val.data(), x.data());
      else replay_block(nx, xi, xj, xs, val.data(), m, x.data());
      for (int64_t j = 0; j < m; ++j) {
        double acc = 0.0;
        for (int64_t e = 0; e < na; ++e) acc += Wb[j * E + a_edge[e]] * x[a_target[e] * m + j];
        out[(s + j) * k + q] = fact * acc;
      }
      std::swap(x, y);
    }
  }
}

}  // namespace phasic
