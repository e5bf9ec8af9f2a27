// Fast replay of an elimination trace: the kernels over a Plan (replay_plan.hpp).
//
// One parameter vector (plan_moments_one): the normalisation groups are summed, inverted
// and scaled four groups at a time, the remaining tape ops run in level order, then the k
// passes of the reward program run as one level-ordered list of uniform updates.
// A block of 4, 8 or 16 parameter vectors (plan_moments_theta): the same with every value
// a vector over the block (val[s * nb + j]), weights computed in place from theta.
// The entry points are compiled for AVX2 and for the baseline ISA (x86-64 with GCC and
// glibc; elsewhere once), and the loader picks one; both give the same bits since no
// operation is fused or reordered (the build disables FMA contraction).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "replay_plan.hpp"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define PHASIC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PHASIC_CLONES
#endif
#if defined(__GNUC__)
// kernels are inlined into each entry point, so every clone gets its own copy
#define PHASIC_KERNEL __attribute__((always_inline)) inline
#else
#define PHASIC_KERNEL inline
#endif

namespace phasic {

// ------------------------------------------------------------------------------- lanes
// The kernels are written once for a lane type T: a double (one weight vector) or a
// Pack of 4 * W doubles (a block of weight vectors; value s of the block at val[s * 4W]).
// Packs use the compiler's vector types, so the AVX2 clone works on whole registers.
#if defined(__GNUC__)
typedef double vd4 __attribute__((vector_size(32)));
typedef double vd4u __attribute__((vector_size(32), aligned(8), may_alias));
typedef long long vl4 __attribute__((vector_size(32)));
PHASIC_KERNEL vd4 vd4_load(const double* p) { return *reinterpret_cast<const vd4u*>(p); }
PHASIC_KERNEL void vd4_store(double* p, vd4 v) { *reinterpret_cast<vd4u*>(p) = v; }
PHASIC_KERNEL vd4 vd4_splat(double x) { return vd4{x, x, x, x}; }
PHASIC_KERNEL vl4 vd4_nonneg(vd4 v) { return v >= vd4_splat(0.0); }
#else
struct vd4 {
  double d[4];
  friend vd4 operator+(vd4 a, vd4 b) { for (int i = 0; i < 4; ++i) a.d[i] += b.d[i]; return a; }
  friend vd4 operator-(vd4 a, vd4 b) { for (int i = 0; i < 4; ++i) a.d[i] -= b.d[i]; return a; }
  friend vd4 operator*(vd4 a, vd4 b) { for (int i = 0; i < 4; ++i) a.d[i] *= b.d[i]; return a; }
  friend vd4 operator/(vd4 a, vd4 b) { for (int i = 0; i < 4; ++i) a.d[i] /= b.d[i]; return a; }
};
struct vl4 {
  long long d[4];
  friend vl4 operator&(vl4 a, vl4 b) { for (int i = 0; i < 4; ++i) a.d[i] &= b.d[i]; return a; }
};
inline vd4 vd4_load(const double* p) { vd4 v; for (int i = 0; i < 4; ++i) v.d[i] = p[i]; return v; }
inline void vd4_store(double* p, vd4 v) { for (int i = 0; i < 4; ++i) p[i] = v.d[i]; }
inline vd4 vd4_splat(double x) { return vd4{{x, x, x, x}}; }
inline vl4 vd4_nonneg(vd4 v) { vl4 m; for (int i = 0; i < 4; ++i) m.d[i] = v.d[i] >= 0.0 ? -1 : 0; return m; }
#endif

template <int W>
struct Pack {
  vd4 v[W];
};
#define PHASIC_PACK_OP(OP)                                                 \
  template <int W>                                                         \
  PHASIC_KERNEL Pack<W> operator OP(Pack<W> a, const Pack<W>& b) {         \
    for (int i = 0; i < W; ++i) a.v[i] = a.v[i] OP b.v[i];                 \
    return a;                                                              \
  }
PHASIC_PACK_OP(+)
PHASIC_PACK_OP(-)
PHASIC_PACK_OP(*)
PHASIC_PACK_OP(/)
#undef PHASIC_PACK_OP

template <class T> struct LaneOps;
template <> struct LaneOps<double> {
  static constexpr int64_t n = 1;
  PHASIC_KERNEL static double load(const double* p) { return *p; }
  PHASIC_KERNEL static void store(double* p, double v) { *p = v; }
  PHASIC_KERNEL static double splat(double x) { return x; }
};
template <int W> struct LaneOps<Pack<W>> {
  static constexpr int64_t n = 4 * W;
  PHASIC_KERNEL static Pack<W> load(const double* p) {
    Pack<W> r;
    for (int i = 0; i < W; ++i) r.v[i] = vd4_load(p + 4 * i);
    return r;
  }
  PHASIC_KERNEL static void store(double* p, const Pack<W>& x) {
    for (int i = 0; i < W; ++i) vd4_store(p + 4 * i, x.v[i]);
  }
  PHASIC_KERNEL static Pack<W> splat(double x) {
    Pack<W> r;
    for (int i = 0; i < W; ++i) r.v[i] = vd4_splat(x);
    return r;
  }
};

// ------------------------------------------------------------------------------- kernels
// The tape for a block (T a Pack): normalisation groups, then the remaining ops in runs.
// The weight slots must be filled.
template <class T>
PHASIC_KERNEL void plan_tape_block(const Plan& P, double* val) {
  using O = LaneOps<T>;
  constexpr int64_t L = O::n;
  const T one = O::splat(1.0);
  for (const GroupClass& gc : P.cls) {
    const int64_t c = gc.c, ng = gc.ng;
    for (int64_t h = 0; h < ng; ++h) {
      double* v0 = val + (gc.slot0 + h) * L;
      T s = O::load(v0);
      for (int64_t i = 1; i < c; ++i) s = s + O::load(v0 + i * ng * L);
      O::store(val + (P.lam0 + gc.g0 + h) * L, s);
      const T is = one / s;
      O::store(val + (P.inv0 + gc.g0 + h) * L, is);
      for (int64_t i = 0; i < c; ++i) O::store(v0 + i * ng * L, O::load(v0 + i * ng * L) * is);
    }
  }
  O::store(val + P.zero * L, O::splat(0.0));
  O::store(val + P.one * L, one);
  const int32_t *A = P.a.data(), *B = P.b.data(), *C = P.c.data();
  double* out = val + P.gen0 * L;
  for (size_t r = 0; r + 1 < P.rptr.size(); ++r) {
    int32_t t0 = P.rptr[r], t1 = P.rptr[r + 1];
    switch (P.rcode[r]) {
#define PHASIC_RUN(EXPR)                                                  \
  for (int32_t t = t0; t < t1; ++t) {                                     \
    T x = O::load(val + A[t] * L);                                        \
    O::store(out + t * L, EXPR);                                          \
  }                                                                       \
  break;
#define Y O::load(val + B[t] * L)
      case OP_ADD: PHASIC_RUN(x + Y)
      case OP_DIV: PHASIC_RUN(x / Y)
      case OP_INV: PHASIC_RUN(one / x)
      case OP_MUL: PHASIC_RUN(x * Y)
      case OP_FMA: PHASIC_RUN(x + Y * O::load(val + C[t] * L))
      case OP_INV1M: PHASIC_RUN(one / (one - x))
#undef Y
#undef PHASIC_RUN
      default: break;
    }
  }
}

// The k passes of the program (XSched); x holds k * V + 1 entries (times the lanes).
template <class T>
PHASIC_KERNEL void plan_program(const Plan& P, const XSched& S, const double* val, double* x) {
  using O = LaneOps<T>;
  constexpr int64_t L = O::n;
  const int64_t V = P.V;
  const T zero = O::splat(0.0), one = O::splat(1.0);
  for (int64_t v = 0; v < V; ++v)
    O::store(x + v * L, (zero + O::load(val + (P.rew0 + v) * L) * one) * O::load(val + P.xinit[v] * L));
  for (int64_t e = V; e < S.k * V; ++e) O::store(x + e * L, zero);
  O::store(x + S.k * V * L, one);
  const uint64_t *IJ = S.ij.data(), *MS = S.ms.data();
  const int64_t n = (int64_t)S.ij.size();
  for (int64_t t = 0; t < n; ++t) {
    const uint64_t ij = IJ[t], ms = MS[t];
    double* xi = x + (uint32_t)ij * L;
    O::store(xi, (O::load(xi) + O::load(val + (uint32_t)ms * L) * O::load(x + (ij >> 32) * L)) *
                     O::load(val + (ms >> 32) * L));
  }
}

// The tape for one weight vector w (edge order; gathered into the slots here). The
// groups of a class are summed, inverted and scaled four at a time (divisions are the
// bulk of the cost), as are runs of inverting ops. val: nslot doubles.
PHASIC_KERNEL void plan_tape_one(const Plan& P, const double* w, double* val) {
  const int32_t* se = P.slot_edge.data();
  double* lam = val + P.lam0;
  double* inv = val + P.inv0;
  const vd4 one4 = vd4_splat(1.0);
  for (const GroupClass& gc : P.cls) {
    const int64_t c = gc.c, ng = gc.ng;
    double* v0 = val + gc.slot0;
    const int32_t* e0 = se + gc.slot0;
    int64_t h = 0;
    if (c <= 8) {  // small groups: leaves stay in registers
      for (; h + 4 <= ng; h += 4) {
        vd4 u[8];
        vd4 s = u[0] = vd4{w[e0[h]], w[e0[h + 1]], w[e0[h + 2]], w[e0[h + 3]]};
        for (int64_t i = 1; i < c; ++i) {
          const int32_t* ei = e0 + i * ng + h;
          u[i] = vd4{w[ei[0]], w[ei[1]], w[ei[2]], w[ei[3]]};
          s = s + u[i];
        }
        vd4_store(lam + gc.g0 + h, s);
        const vd4 is = one4 / s;
        vd4_store(inv + gc.g0 + h, is);
        for (int64_t i = 0; i < c; ++i) vd4_store(v0 + i * ng + h, u[i] * is);
      }
    }
    for (; h < ng; ++h) {
      double s = w[e0[h]];
      v0[h] = s;
      for (int64_t i = 1; i < c; ++i) { double u = w[e0[i * ng + h]]; v0[i * ng + h] = u; s += u; }
      lam[gc.g0 + h] = s;
      const double is = inv[gc.g0 + h] = 1.0 / s;
      for (int64_t i = 0; i < c; ++i) v0[i * ng + h] = v0[i * ng + h] * is;
    }
  }
  for (int64_t e = P.NL; e < P.E; ++e) val[e] = w[se[e]];
  val[P.zero] = 0.0;
  val[P.one] = 1.0;
  const int32_t *A = P.a.data(), *B = P.b.data(), *C = P.c.data();
  double* out = val + P.gen0;
  for (size_t r = 0; r + 1 < P.rptr.size(); ++r) {
    int32_t t = P.rptr[r], t1 = P.rptr[r + 1];
#define PHASIC_GATHER(I) vd4{val[I[t]], val[I[t + 1]], val[I[t + 2]], val[I[t + 3]]}
    switch (P.rcode[r]) {
      case OP_ADD: for (; t < t1; ++t) out[t] = val[A[t]] + val[B[t]]; break;
      case OP_MUL: for (; t < t1; ++t) out[t] = val[A[t]] * val[B[t]]; break;
      case OP_FMA: for (; t < t1; ++t) out[t] = val[A[t]] + val[B[t]] * val[C[t]]; break;
      case OP_DIV: for (; t < t1; ++t) out[t] = val[A[t]] / val[B[t]]; break;  // not recorded since format 3
      case OP_INV:
        for (; t + 4 <= t1; t += 4) vd4_store(out + t, one4 / PHASIC_GATHER(A));
        for (; t < t1; ++t) out[t] = 1.0 / val[A[t]];
        break;
      case OP_INV1M:
        for (; t + 4 <= t1; t += 4) vd4_store(out + t, one4 / (one4 - PHASIC_GATHER(A)));
        for (; t < t1; ++t) out[t] = 1.0 / (1.0 - val[A[t]]);
        break;
      default: break;
    }
#undef PHASIC_GATHER
  }
}

// ------------------------------------------------------------------------ entry points
// First k moments (out[0..k)) for one weight vector w (E entries), S = plan_sched(P, k).
// Work space: val (nslot), x (k * V + 1). r: rewards per vertex.
PHASIC_CLONES
inline void plan_moments_one(const Plan& P, const XSched& S, const double* w, int64_t na,
                             const int64_t* a_edge, const int64_t* a_target, const double* r,
                             double* out, double* val, double* x) {
  for (int64_t v = 0; v < P.V; ++v) val[P.rew0 + v] = r[v];
  plan_tape_one(P, w, val);
  plan_program<double>(P, S, val, x);
  double fact = 1.0;
  for (int64_t q = 0; q < S.k; ++q) {
    fact *= (q + 1);
    double acc = 0.0;
    for (int64_t e = 0; e < na; ++e) acc += w[a_edge[e]] * x[q * P.V + a_target[e]];
    out[q] = fact * acc;
  }
}

// Reverse mode of plan_moments_one: dw = d(sum_q cot[q] m_q) / dw, the adjoint method.
// With y_q = x's pass q (U applied to (r y_(q-1)) / lambda) and a = the start weights by
// target, moment j contributes through mu = (U^T lambda_j) / lambda, lambda_j collecting
// c_j a (c_j = cot[j-1] j!) and r mu of the moment above it: edge u -> z (u not the start)
// gets mu[u] (y[z] - y[u]), a start edge c_j y[z]. val and x must hold plan_moments_one's
// values for the same w, k and r. Edges in CSR order by source (indptr, V + 1 entries); the
// start vertex's edges are [indptr[0], indptr[1]) with indptr[0] = 0. dw: E entries,
// overwritten. work: 3 V doubles.
inline void plan_moments_vjp(const Plan& P, int64_t k, const double* w, const int64_t* indptr,
                             const int32_t* target, const double* r, const double* val,
                             const double* x, const double* cot, double* dw, double* work) {
  const int64_t V = P.V, E = P.E, hi = indptr[1];
  double *a = work, *lam = work + V, *mu = work + 2 * V;
  std::fill(work, work + 3 * V, 0.0);
  std::fill(dw, dw + E, 0.0);
  for (int64_t e = 0; e < hi; ++e) a[target[e]] += w[e];
  const int64_t nx = (int64_t)P.xi.size();
  for (int64_t j = k; j >= 1; --j) {
    double fact = 1.0;
    for (int64_t i = 2; i <= j; ++i) fact *= (double)i;
    const double c = cot[j - 1] * fact;
    for (int64_t v = 0; v < V; ++v) lam[v] = lam[v] + c * a[v];
    std::copy(lam, lam + V, mu);
    if (P.adj_ready) {  // the level-sorted transposed program (plan_adjoint): same bits
      const int32_t *dst = P.adj_dst.data(), *src = P.adj_src.data(), *mm = P.adj_m.data();
      for (int64_t t = 0; t < nx; ++t) {
        if (src[t] >= 0) mu[dst[t]] += val[mm[t]] * mu[src[t]];
        else mu[dst[t]] *= val[mm[t]];
      }
    } else if (nx) {
      replay_adjoint(nx, P.xi.data(), P.xj.data(), P.xm.data(), val, mu);
    }
    for (int64_t v = 0; v < V; ++v) mu[v] *= val[P.xinit[v]];
    const double* y = x + (j - 1) * V;
    for (int64_t u = 1; u < V; ++u)
      for (int64_t e = indptr[u]; e < indptr[u + 1]; ++e) dw[e] += mu[u] * (y[target[e]] - y[u]);
    for (int64_t e = 0; e < hi; ++e) dw[e] += c * y[target[e]];
    for (int64_t v = 0; v < V; ++v) lam[v] = r[v] * mu[v];
  }
}

// One block of m <= 4W parameter vectors (rows of theta, p columns): weights
// base + coef . theta into the weight slots (base and coef in slot order), tape, program,
// moments (out: m x k). Lanes past m repeat the last row. neg[row] = 1 if a weight of
// that row is not >= 0.
// Work space: val (nslot * 4W), x ((k * V + 1) * 4W), wa ((na + p) * 4W).
template <int W>
PHASIC_KERNEL void plan_block(const Plan& P, const XSched& S, int64_t m, const double* theta,
                              int64_t p, const double* base, const double* coef, int64_t na,
                              const int64_t* a_edge, const int64_t* a_target, const double* r,
                              double* out, uint8_t* neg, double* val, double* x, double* wa) {
  using T = Pack<W>;
  using O = LaneOps<T>;
  constexpr int64_t L = O::n;
  // weights, slot by slot: base + c_0 theta_0 + c_1 theta_1 + ... (left to right)
  double* th = wa + na * L;  // theta transposed: th[q * L + j]
  for (int64_t q = 0; q < p; ++q)
    for (int64_t j = 0; j < L; ++j) th[q * L + j] = theta[std::min(j, m - 1) * p + q];
  vl4 ok[W];
  for (int i = 0; i < W; ++i) ok[i] = vd4_nonneg(vd4_splat(0.0));
  for (int64_t s = 0; s < P.E; ++s) {
    const double* ce = coef + s * p;
    T v = O::splat(base[s]);
    for (int64_t q = 0; q < p; ++q) v = v + O::splat(ce[q]) * O::load(th + q * L);
    O::store(val + s * L, v);
    for (int i = 0; i < W; ++i) ok[i] = ok[i] & vd4_nonneg(v.v[i]);
  }
  for (int64_t j = 0; j < m; ++j) {
    const long long* okj = reinterpret_cast<const long long*>(&ok[j / 4]);
    neg[j] = okj[j % 4] == 0;
  }
  // start weights, read before the tape overwrites any slot
  for (int64_t e = 0; e < na; ++e) O::store(wa + e * L, O::load(val + P.edge_slot[a_edge[e]] * L));
  for (int64_t v = 0; v < P.V; ++v) O::store(val + (P.rew0 + v) * L, O::splat(r[v]));
  plan_tape_block<T>(P, val);
  plan_program<T>(P, S, val, x);
  double fact = 1.0;
  for (int64_t q = 0; q < S.k; ++q) {
    fact *= (q + 1);
    T acc = O::splat(0.0);
    for (int64_t e = 0; e < na; ++e) acc = acc + O::load(wa + e * L) * O::load(x + (q * P.V + a_target[e]) * L);
    double a[L];
    O::store(a, acc);
    for (int64_t j = 0; j < m; ++j) out[j * S.k + q] = fact * a[j];
  }
}

// Edge weights w = base + coef . theta for one theta (coef: E x p, row-major), each
// computed as ((base + c_0 theta_0) + c_1 theta_1) + ... like the block weights above.
// Returns the first edge whose weight is not >= 0 (NaN included), or -1.
template <int PP>
PHASIC_KERNEL void edge_weights_p(int64_t E, int64_t p, const double* __restrict__ base,
                                  const double* __restrict__ coef, const double* __restrict__ th,
                                  double* __restrict__ w) {
  const int64_t np = PP > 0 ? PP : p;
  for (int64_t e = 0; e < E; ++e) {
    double v = base[e];
    for (int64_t q = 0; q < np; ++q) v = v + coef[e * np + q] * th[q];
    w[e] = v;
  }
}

PHASIC_CLONES
inline int64_t edge_weights(int64_t E, int64_t p, const double* base, const double* coef,
                            const double* th, double* w) {
  switch (p) {
    case 1: edge_weights_p<1>(E, p, base, coef, th, w); break;
    case 2: edge_weights_p<2>(E, p, base, coef, th, w); break;
    case 3: edge_weights_p<3>(E, p, base, coef, th, w); break;
    default: edge_weights_p<0>(E, p, base, coef, th, w); break;
  }
  double worst = 0.0;  // any weight that is not >= 0 makes it -1
  for (int64_t e = 0; e < E; ++e) worst = w[e] >= 0.0 ? worst : -1.0;
  if (worst == 0.0) return -1;
  for (int64_t e = 0; e < E; ++e)
    if (!(w[e] >= 0.0)) return e;
  return -1;
}

#define PHASIC_BLOCK_ENTRY(NAME, W)                                                              \
  PHASIC_CLONES inline void NAME(const Plan& P, const XSched& S, int64_t m, const double* theta, \
                                 int64_t p, const double* base, const double* coef, int64_t na,  \
                                 const int64_t* a_edge, const int64_t* a_target,                 \
                                 const double* r, double* out, uint8_t* neg, double* val,        \
                                 double* x, double* wa) {                                        \
    plan_block<W>(P, S, m, theta, p, base, coef, na, a_edge, a_target, r, out, neg, val, x, wa); \
  }
PHASIC_BLOCK_ENTRY(plan_block4, 1)
PHASIC_BLOCK_ENTRY(plan_block8, 2)
PHASIC_BLOCK_ENTRY(plan_block16, 4)
#undef PHASIC_BLOCK_ENTRY

// Moments and their gradients for B parameter vectors (rows of theta, B x p; weights
// base + coef . theta as edge_weights computes them): out (B, k) the moments, dth (B, p)
// the gradients of sum_q cot[row, q] m_q (plan_moments_one then plan_moments_vjp per row,
// dth = dw . coef summed over edges in order). A row with a weight that is not >= 0 gets
// neg[row] = 1 and NaN results.
inline void plan_moments_vjp_theta(const Plan& P, const XSched& S, int64_t B, const double* theta,
                                   int64_t p, const double* base, const double* coef, int64_t na,
                                   const int64_t* a_edge, const int64_t* a_target,
                                   const int64_t* indptr, const int32_t* target, const double* r,
                                   const double* cot, double* out, double* dth, uint8_t* neg) {
  const int64_t k = S.k, E = P.E;
  std::vector<double> w(E), val(P.nslot), x(k * P.V + 1), work(3 * P.V), dw(E), acc(p);
  for (int64_t b = 0; b < B; ++b) {
    if (E && edge_weights(E, p, base, coef, theta + b * p, w.data()) >= 0) {
      neg[b] = 1;
      std::fill(out + b * k, out + (b + 1) * k, NAN);
      std::fill(dth + b * p, dth + (b + 1) * p, NAN);
      continue;
    }
    neg[b] = 0;
    plan_moments_one(P, S, w.data(), na, a_edge, a_target, r, out + b * k, val.data(), x.data());
    plan_moments_vjp(P, k, w.data(), indptr, target, r, val.data(), x.data(), cot + b * k, dw.data(),
                     work.data());
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t q = 0; q < p; ++q) acc[q] += dw[e] * coef[e * p + q];
    std::copy(acc.begin(), acc.end(), dth + b * p);
  }
}

// First k moments for B parameter vectors (rows of theta, B x p); out (B, k), neg (B).
inline void plan_moments_theta(const Plan& P, const XSched& S, int64_t B, const double* theta,
                               int64_t p, const double* base, const double* coef, int64_t na,
                               const int64_t* a_edge, const int64_t* a_target, const double* r,
                               double* out, uint8_t* neg, int64_t nb = 8) {
  std::vector<double> val(P.nslot * nb), x((S.k * P.V + 1) * nb), wa((na + p) * nb);
  std::vector<double> bs(P.E), cs(P.E * p);  // base and coef in slot order
  for (int64_t s = 0; s < P.E; ++s) {
    int64_t e = P.slot_edge[s];
    bs[s] = base[e];
    for (int64_t q = 0; q < p; ++q) cs[s * p + q] = coef[e * p + q];
  }
  for (int64_t s0 = 0; s0 < B; s0 += nb) {
    int64_t m = std::min(nb, B - s0);
    auto f = nb == 4 ? plan_block4 : nb == 16 ? plan_block16 : plan_block8;
    f(P, S, m, theta + s0 * p, p, bs.data(), cs.data(), na, a_edge, a_target, r, out + s0 * S.k,
      neg + s0, val.data(), x.data(), wa.data());
  }
}

}  // namespace phasic
