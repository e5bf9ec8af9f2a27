// The transient distribution over a finite time, for epochs of a time-inhomogeneous model.
//
// Adaptive uniformisation (after van Moorsel & Sanders 1994): the time is cut into intervals;
// on each, p(t) = sum_k Pois(k; L u) v_k with v_{k+1} = v_k (I + Q / L), where the rate L
// is the largest out-rate of the vertices that hold mass now or can receive it (the
// downstream closure of the vertices with mass), not the largest rate of the whole graph.
// Mass below `eps` times the transient mass in a vertex is dropped (and counted), so a vertex that has
// emptied stops setting L: in a coalescent the states with many lineages are left early,
// and the steps then follow the rates of the states that still hold mass. The total step
// count grows with the logarithm of (largest rate x time) for such graphs, not with the
// product, and every operation adds non-negative numbers (no cancellation).
//
// Per interval of mu = L * du Poisson units (mu <= mu_target), with N ~ Pois(mu):
//   p(du)            = sum_k P(N = k) v_k
//   int_0^du p       = (1 / L) sum_k P(N > k) v_k
//   int_0^du u^j m   = sum_k m_k (k+1)...(k+j) / L^(j+1) P(N >= k + j + 1)
// (m_k = transient mass of v_k), from int_0^du u^j e^{-Lu} (Lu)^k / k! du.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace phasic {

struct TransientStats {
  double dropped = 0.0;  // mass dropped below eps
  int64_t steps = 0;     // uniformisation steps, all intervals
  int64_t intervals = 0;
  bool exceeded = false;  // stopped at max_steps (the results are incomplete)
};

// Poisson(mu) probabilities P(N = k), k = 0..K, with K the first index whose upper tail is
// below 1e-17 (weights from the mode outwards by their ratios, then normalised).
inline void poisson_pmf(double mu, std::vector<double>& pmf) {
  pmf.clear();
  if (mu <= 0.0) {
    pmf.push_back(1.0);
    return;
  }
  const double sd = std::sqrt(mu);
  const int64_t hi = (int64_t)std::ceil(mu + 10.0 * sd + 30.0);
  const int64_t mode = (int64_t)std::floor(mu);
  pmf.assign(hi + 1, 0.0);
  pmf[mode] = 1.0;
  double wk = 1.0;
  for (int64_t k = mode + 1; k <= hi; ++k) {
    wk *= mu / (double)k;
    pmf[k] = wk;
    if (wk < 1e-300) break;
  }
  wk = 1.0;
  for (int64_t k = mode - 1; k >= 0; --k) {
    wk *= (double)(k + 1) / mu;
    pmf[k] = wk;
    if (wk < 1e-300) break;
  }
  double z = 0.0;
  for (double x : pmf) z += x;
  for (double& x : pmf) x /= z;
  // trim the upper tail below 1e-17
  double tail = 0.0;
  int64_t K = hi;
  while (K > mode && tail + pmf[K] < 1e-17) tail += pmf[K--];
  pmf.resize(K + 1);
}

// The next interval from t: at most mu_target Poisson units at rate L, ending exactly at T
// when that is near. Fills the Poisson weights P(N = k), k = 0..K, and the upper tails
// tailgt[k] = P(N > k) for k = 0..K + extra; returns the interval's length.
inline double next_interval(double t, double T, double L, double mu_target, int64_t extra,
                            std::vector<double>& pmf, std::vector<double>& tailgt) {
  double du = std::min(T - t, mu_target / L);
  if (t + du > T * (1.0 - 1e-15) || T - (t + du) < 1e-300) du = T - t;
  poisson_pmf(L * du, pmf);
  const int64_t K = (int64_t)pmf.size() - 1;
  tailgt.assign(K + extra + 2, 0.0);
  for (int64_t k = K - 1; k >= 0; --k) tailgt[k] = tailgt[k + 1] + pmf[k + 1];
  return du;
}

// The vertices with mass after dropping what is below `eps` times the transient mass (the
// dropped vertices are appended to `dropped` when it is given).
inline void drop_small(int64_t V, const std::vector<char>& absorbing, double* p, double eps,
                       std::vector<int64_t>& members, TransientStats& st, std::vector<int64_t>* dropped) {
  members.clear();
  double held = 0.0;
  for (int64_t v = 1; v < V; ++v)
    if (!absorbing[v]) held += p[v];
  const double floor_mass = std::max(eps * held, 1e-300);  // and nothing near underflow
  for (int64_t v = 1; v < V; ++v) {
    if (absorbing[v] || p[v] == 0.0) continue;
    if (p[v] < floor_mass) {
      st.dropped += p[v];
      p[v] = 0.0;
      if (dropped) dropped->push_back(v);
      continue;
    }
    members.push_back(v);
  }
}

// Extends `members` to its downstream closure along edges of positive weight (pos[v] = 0 marks
// a member; the caller resets it to -1).
inline void downstream_closure(const int64_t* indptr, const int32_t* target, const double* w,
                               std::vector<int64_t>& pos, std::vector<int64_t>& members,
                               std::vector<int64_t>& stack) {
  for (int64_t v : members) pos[v] = 0;
  stack.assign(members.begin(), members.end());
  while (!stack.empty()) {
    int64_t u = stack.back();
    stack.pop_back();
    for (int64_t e = indptr[u]; e < indptr[u + 1]; ++e) {
      int64_t z = target[e];
      if (pos[z] < 0 && w[e] > 0.0) {
        pos[z] = 0;
        members.push_back(z);
        stack.push_back(z);
      }
    }
  }
}

// The uniformised step on a closure: v_{k+1}[z] = v_k[z] stay[z] + sum_e v_k[src[e]] rate[e]
// over the edges into z (tptr groups them by target); edge[e] is the graph's edge index.
struct Closure {
  int64_t n = 0;
  std::vector<double> stay, rate;
  std::vector<int64_t> tptr, edge;
  std::vector<int32_t> src;

  // `members` sorted, pos[members[i]] = i on return
  void build(const std::vector<int64_t>& members, std::vector<int64_t>& pos, const int64_t* indptr,
             const int32_t* target, const double* w, const double* lam, double L) {
    n = (int64_t)members.size();
    for (int64_t i = 0; i < n; ++i) pos[members[i]] = i;
    stay.assign(n, 1.0);
    tptr.assign(n + 1, 0);
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = members[i];
      stay[i] = 1.0 - lam[v] / L;
      for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e)
        if (w[e] > 0.0) tptr[pos[target[e]] + 1]++;
    }
    for (int64_t i = 0; i < n; ++i) tptr[i + 1] += tptr[i];
    src.assign(tptr[n], 0);
    rate.assign(tptr[n], 0.0);
    edge.assign(tptr[n], 0);
    std::vector<int64_t> fill(tptr.begin(), tptr.end() - 1);
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = members[i];
      for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e) {
        if (!(w[e] > 0.0)) continue;
        int64_t f = fill[pos[target[e]]]++;
        src[f] = (int32_t)i;
        rate[f] = w[e] / L;
        edge[f] = e;
      }
    }
  }

  void step(const double* vk, double* vn) const {
    for (int64_t z = 0; z < n; ++z) {
      double acc = vk[z] * stay[z];
      for (int64_t e = tptr[z]; e < tptr[z + 1]; ++e) acc += vk[src[e]] * rate[e];
      vn[z] = acc;
    }
  }
};

// p (length V, in/out): mass per vertex at the start, at the end on return. The start
// vertex 0 must hold no mass. Absorbing vertices (no out-edges) keep theirs.
// times (nt, increasing, in [0, T]): trans[i] = transient mass at times[i], flow[i] =
// absorption density there (sum_v p_v * rate of v's edges into absorbing vertices), absd[i] =
// mass in absorbing vertices (summed directly, so a tiny cdf keeps its relative accuracy).
// soj (length V, may be null): += int_0^T p(u) du. mom (length J, may be null):
// += int_0^T u^j m(u) du for j < J, m(u) the transient mass.
inline void transient_propagate(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                                const double* lam, double* p, double T, int64_t nt, const double* times,
                                double* trans, double* flow, double* absd, double* soj, int64_t J, double* mom, double eps,
                                double mu_target, int64_t max_steps, TransientStats& st) {
  std::vector<char> absorbing(V, 0);
  std::vector<double> exitr(V, 0.0);
  for (int64_t v = 1; v < V; ++v) absorbing[v] = indptr[v] == indptr[v + 1];
  for (int64_t v = 1; v < V; ++v)
    for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e)
      if (absorbing[target[e]]) exitr[v] += w[e];

  std::vector<int64_t> pos(V, -1), members, stack;
  std::vector<double> pmf, tailgt, mk, xk, ak, pend, vk, vn;
  std::vector<double> ilocal(J > 0 ? J : 0);
  Closure cl;
  int64_t it = 0;
  double t = 0.0;

  auto record_constant = [&](double upto_inclusive) {
    // times with p constant (no transient mass moving): transient mass and flow as now
    while (it < nt && times[it] <= upto_inclusive) {
      double m = 0.0, f = 0.0, a = 0.0;
      for (int64_t v = 1; v < V; ++v) {
        if (absorbing[v]) a += p[v];
        else { m += p[v]; f += p[v] * exitr[v]; }
      }
      trans[it] = m;
      flow[it] = f;
      absd[it] = a;
      ++it;
    }
  };

  for (;;) {
    // drop negligible mass (relative to the transient mass now, so that far in the tail,
    // where all of it is small, the density keeps its relative accuracy); the vertices that
    // hold mass, and their downstream closure with the largest rate on it
    drop_small(V, absorbing, p, eps, members, st, nullptr);
    if (t >= T) break;
    downstream_closure(indptr, target, w, pos, members, stack);
    double L = 0.0;
    for (int64_t v : members) L = std::max(L, lam[v]);
    if (L <= 0.0) {  // nothing moves: p stays as it is to T
      double du = T - t;
      record_constant(T);
      double m = 0.0;
      for (int64_t v : members) {
        if (absorbing[v]) continue;
        m += p[v];
        if (soj) soj[v] += p[v] * du;
      }
      for (int64_t j = 0; j < J; ++j)
        mom[j] += m * (std::pow(t + du, (double)(j + 1)) - std::pow(t, (double)(j + 1))) / (double)(j + 1);
      for (int64_t v : members) pos[v] = -1;
      t = T;
      continue;
    }
    if (st.steps > max_steps) {
      st.exceeded = true;
      for (int64_t v : members) pos[v] = -1;
      return;
    }
    const double du = next_interval(t, T, L, mu_target, J, pmf, tailgt);
    const int64_t K = (int64_t)pmf.size() - 1;
    // compact the closure: stay factors, edges grouped by target (rates / L)
    std::sort(members.begin(), members.end());
    cl.build(members, pos, indptr, target, w, lam, L);
    const int64_t n = cl.n;
    vk.assign(n, 0.0);
    vn.assign(n, 0.0);
    pend.assign(n, 0.0);
    mk.assign(K + 1, 0.0);
    xk.assign(K + 1, 0.0);
    ak.assign(K + 1, 0.0);
    for (int64_t i = 0; i < n; ++i) vk[i] = p[members[i]];
    std::vector<double> sj;
    if (soj) sj.assign(n, 0.0);
    for (int64_t k = 0;; ++k) {
      double m = 0.0, x = 0.0, a = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        if (absorbing[members[i]]) { a += vk[i]; continue; }
        m += vk[i];
        x += vk[i] * exitr[members[i]];
      }
      mk[k] = m;
      xk[k] = x;
      ak[k] = a;
      const double pk = pmf[k], gk = tailgt[k] / L;
      for (int64_t i = 0; i < n; ++i) pend[i] += pk * vk[i];
      if (soj)
        for (int64_t i = 0; i < n; ++i) sj[i] += gk * vk[i];
      if (k == K) break;
      cl.step(vk.data(), vn.data());
      vk.swap(vn);
      ++st.steps;
    }
    ++st.intervals;
    // output times inside (t, t + du]
    if (it < nt && times[it] <= t) record_constant(t);
    double a_out = 0.0;  // absorbing vertices outside the closure keep their mass
    if (it < nt && times[it] <= t + du)
      for (int64_t v = 1; v < V; ++v)
        if (absorbing[v] && pos[v] < 0) a_out += p[v];
    while (it < nt && times[it] <= t + du) {
      const double mui = L * (times[it] - t);
      double m = 0.0, f = 0.0, a = 0.0;
      if (mui <= 0.0) {
        m = mk[0];
        f = xk[0];
        a = ak[0];
      } else {
        // P(N_i = k) for k <= K by ratios from the mode (mui <= mu: the window covers it)
        const int64_t mode = std::min<int64_t>(K, (int64_t)std::floor(mui));
        double z = 1.0, wk = 1.0;
        m = mk[mode];
        f = xk[mode];
        a = ak[mode];
        for (int64_t k = mode + 1; k <= K; ++k) {
          wk *= mui / (double)k;
          if (wk < 1e-300) break;
          m += wk * mk[k]; f += wk * xk[k]; a += wk * ak[k]; z += wk;
        }
        wk = 1.0;
        for (int64_t k = mode - 1; k >= 0; --k) {
          wk *= (double)(k + 1) / mui;
          if (wk < 1e-300) break;
          m += wk * mk[k]; f += wk * xk[k]; a += wk * ak[k]; z += wk;
        }
        m /= z;
        f /= z;
        a /= z;
      }
      trans[it] = m;
      flow[it] = f;
      absd[it] = a + a_out;
      ++it;
    }
    // time-power integrals of the transient mass, shifted to the call's start
    for (int64_t j = 0; j < J; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k <= K; ++k) {
        double c = 1.0;
        for (int64_t i = 1; i <= j; ++i) c *= (double)(k + i) / L;
        s += mk[k] * c * tailgt[k + j] / L;
      }
      ilocal[j] = s;
    }
    for (int64_t j = 0; j < J; ++j) {
      double s = 0.0, binom = 1.0;
      for (int64_t i = 0; i <= j; ++i) {  // (t + u)^j = sum_i C(j, i) t^(j-i) u^i
        s += binom * std::pow(t, (double)(j - i)) * ilocal[i];
        binom = binom * (double)(j - i) / (double)(i + 1);
      }
      mom[j] += s;
    }
    for (int64_t i = 0; i < n; ++i) {
      p[members[i]] = pend[i];
      if (soj) soj[members[i]] += sj[i];
      pos[members[i]] = -1;
    }
    t += du;
  }
  record_constant(T);
  for (; it < nt; ++it) { trans[it] = 0.0; flow[it] = 0.0; absd[it] = 0.0; }
}


// Reverse mode of transient_propagate for the functional
//   F = lam_T . p(T) + g . int_0^T p(u) du
// of the mass p0 at time 0 (treating the dropped mass as a fixed projection, and each
// interval's rate L as a constant: the uniformised series does not depend on L).
// On return lam_io holds dF/dp0 (in: lam_T, the adjoint of p(T)), grad_w[e] += dF/dw_e
// for every edge of positive weight, and p_end (may be null) = p(T) as the forward gives it.
// Forward pass: the intervals' start vectors are kept; backward pass, interval by interval
// from the last: the steps v_0..v_K are recomputed from the start vector, then with
//   mu_K = a_K,  mu_k = a_k + P mu_{k+1},   a_k = P(N = k) lam_end + P(N > k) / L g,
// dF/dv_0 = mu_0 and dF/dw_e = sum_k v_k[i] (mu_{k+1}[z] - mu_{k+1}[i]) / L for e: i -> z
// (w_e / L is the step's rate on e and 1 - lam_i / L the stay factor of i).
inline void transient_adjoint(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                              const double* lam, const double* p0, double T, const double* g, double* lam_io,
                              double* grad_w, double* p_end, double eps, double mu_target, int64_t max_steps,
                              TransientStats& st) {
  std::vector<char> absorbing(V, 0);
  for (int64_t v = 1; v < V; ++v) absorbing[v] = indptr[v] == indptr[v + 1];
  struct Interval {
    double t, du, L;
    std::vector<int64_t> members;  // sorted closure (empty when nothing moves)
    std::vector<double> start;     // mass on the members at the start (after the drop)
    std::vector<int64_t> dropped;  // vertices emptied by the drop before this interval
  };
  std::vector<Interval> ivs;
  std::vector<double> p(p0, p0 + V);
  std::vector<int64_t> pos(V, -1), members, stack, final_drop;
  std::vector<double> pmf, tailgt, vk, vn, pend;
  Closure cl;
  double t = 0.0;
  for (;;) {
    std::vector<int64_t> dropped;
    drop_small(V, absorbing, p.data(), eps, members, st, &dropped);
    if (t >= T) {
      final_drop.swap(dropped);
      break;
    }
    downstream_closure(indptr, target, w, pos, members, stack);
    double L = 0.0;
    for (int64_t v : members) L = std::max(L, lam[v]);
    for (int64_t v : members) pos[v] = -1;
    Interval iv{t, T - t, L, {}, {}, std::move(dropped)};
    if (L <= 0.0) {
      ivs.push_back(std::move(iv));
      t = T;
      continue;
    }
    if (st.steps > max_steps) {
      st.exceeded = true;
      return;
    }
    iv.du = next_interval(t, T, L, mu_target, 0, pmf, tailgt);
    const int64_t K = (int64_t)pmf.size() - 1;
    std::sort(members.begin(), members.end());
    cl.build(members, pos, indptr, target, w, lam, L);
    const int64_t n = cl.n;
    vk.resize(n);
    vn.resize(n);
    pend.assign(n, 0.0);
    for (int64_t i = 0; i < n; ++i) vk[i] = p[members[i]];
    iv.start = vk;
    for (int64_t k = 0;; ++k) {
      for (int64_t i = 0; i < n; ++i) pend[i] += pmf[k] * vk[i];
      if (k == K) break;
      cl.step(vk.data(), vn.data());
      vk.swap(vn);
      ++st.steps;
    }
    for (int64_t i = 0; i < n; ++i) {
      p[members[i]] = pend[i];
      pos[members[i]] = -1;
    }
    iv.members = members;
    t += iv.du;
    ++st.intervals;
    ivs.push_back(std::move(iv));
  }
  if (p_end) std::copy(p.begin(), p.end(), p_end);
  for (int64_t v : final_drop) lam_io[v] = 0.0;
  std::vector<double> V_all, mu, mn, lend, gm;
  for (int64_t r = (int64_t)ivs.size() - 1; r >= 0; --r) {
    const Interval& iv = ivs[r];
    if (iv.L <= 0.0) {  // nothing moves: the sojourn is p du (absorbed mass is not counted)
      for (int64_t v = 1; v < V; ++v)
        if (!absorbing[v]) lam_io[v] += g[v] * iv.du;
    } else {
      next_interval(iv.t, T, iv.L, mu_target, 0, pmf, tailgt);
      const int64_t K = (int64_t)pmf.size() - 1;
      cl.build(iv.members, pos, indptr, target, w, lam, iv.L);
      const int64_t n = cl.n;
      const double L = iv.L;
      V_all.resize((size_t)(K + 1) * n);
      std::copy(iv.start.begin(), iv.start.end(), V_all.begin());
      for (int64_t k = 0; k < K; ++k) cl.step(&V_all[(size_t)k * n], &V_all[(size_t)(k + 1) * n]);
      lend.resize(n);
      gm.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        lend[i] = lam_io[iv.members[i]];
        gm[i] = g[iv.members[i]] / L;
      }
      mu.resize(n);
      mn.resize(n);
      for (int64_t i = 0; i < n; ++i) mu[i] = pmf[K] * lend[i] + tailgt[K] * gm[i];
      for (int64_t k = K - 1; k >= 0; --k) {
        const double* v = &V_all[(size_t)k * n];
        // mu holds mu_{k+1}: the gradient of the step k -> k + 1, then mu_k
        for (int64_t z = 0; z < n; ++z) {
          mn[z] = pmf[k] * lend[z] + tailgt[k] * gm[z] + cl.stay[z] * mu[z];
          for (int64_t e = cl.tptr[z]; e < cl.tptr[z + 1]; ++e) {
            const int32_t i = cl.src[e];
            grad_w[cl.edge[e]] += v[i] * (mu[z] - mu[i]) / L;
          }
        }
        for (int64_t z = 0; z < n; ++z)
          for (int64_t e = cl.tptr[z]; e < cl.tptr[z + 1]; ++e) mn[cl.src[e]] += cl.rate[e] * mu[z];
        mu.swap(mn);
      }
      // outside the closure nothing moves (and only absorbing vertices, not counted, hold mass)
      for (int64_t v = 1; v < V; ++v)
        if (pos[v] < 0 && !absorbing[v]) lam_io[v] += g[v] * iv.du;
      for (int64_t i = 0; i < n; ++i) {
        lam_io[iv.members[i]] = mu[i];
        pos[iv.members[i]] = -1;
      }
    }
    for (int64_t v : iv.dropped) lam_io[v] = 0.0;
  }
}

}  // namespace phasic
