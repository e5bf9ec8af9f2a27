// Distribution functions on the sparse graph.
//  - CPH: uniformisation. P = I + Q / L with L = max exit rate; the probability vector
//    p_k = alpha P^k is stepped once up to the largest Poisson index needed for the
//    largest time; pdf(t) = sum_k Pois(k; L t) p_k . s and the survival function
//    sum_k Pois(k; L t) p_k . 1 are then summed per time over a window whose Poisson
//    tail mass is below 1e-16 (weights by their ratios from the mode, normalised).
//  - DPH: the forward algorithm p_{k+1} = p_k T, with pmf(k) = p_{k-1} . t.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace phasic {

// Steps the probability vector K times. w: edge weights (rates or probabilities);
// lam: per-vertex total out-weight; L: uniformisation rate (1 for DPH, no scaling).
// Writes exit[k] = mass absorbed at step k+1 and mass[k] = mass still transient after k
// steps (k = 0..K). The transient vertices are renumbered compactly first, with per-vertex
// stay factors 1 - lam / L and exit rates / L, and the edges between transient vertices
// grouped by target (rate / L): a step then pulls each new value into a register,
// q[z] = p[z] stay[z] + sum p[u] r(u, z), instead of scattering into memory.
inline void forward_steps(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                          const double* lam, double L, int64_t K, std::vector<double>& exit,
                          std::vector<double>& mass) {
  std::vector<int64_t> pos(V, -1), tv;
  for (int64_t v = 1; v < V; ++v)
    if (lam[v] > 0.0) { pos[v] = (int64_t)tv.size(); tv.push_back(v); }
  const int64_t n = (int64_t)tv.size();
  std::vector<double> p(n, 0.0), q(n, 0.0), stay(n), sx(n, 0.0);
  std::vector<int64_t> tptr(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t v = tv[i];
    stay[i] = 1.0 - lam[v] / L;
    for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e) {
      int64_t z = pos[target[e]];
      if (z < 0) sx[i] += w[e] / L;
      else tptr[z + 1]++;
    }
  }
  for (int64_t z = 0; z < n; ++z) tptr[z + 1] += tptr[z];
  std::vector<int32_t> src(tptr[n]);
  std::vector<double> rate(tptr[n]);
  {
    std::vector<int64_t> fill(tptr.begin(), tptr.end() - 1);
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = tv[i];
      for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e) {
        int64_t z = pos[target[e]];
        if (z < 0) continue;
        src[fill[z]] = (int32_t)i;
        rate[fill[z]++] = w[e] / L;
      }
    }
  }
  double m0 = 0.0;
  for (int64_t e = indptr[0]; e < indptr[1]; ++e) {
    int64_t z = target[e];
    if (z > 0 && pos[z] >= 0) { p[pos[z]] += w[e]; m0 += w[e]; }
  }
  exit.assign(K + 1, 0.0);
  mass.assign(K + 1, 0.0);
  mass[0] = m0;
  const int32_t* S = src.data();
  const double* R = rate.data();
  const int64_t* T = tptr.data();
  for (int64_t k = 0; k < K; ++k) {
    double out = 0.0, total = 0.0;
    const double* P = p.data();
    double* Q = q.data();
    for (int64_t i = 0; i < n; ++i) out += P[i] * sx[i];
    for (int64_t z = 0; z < n; ++z) {
      double acc = P[z] * stay[z];
      for (int64_t e = T[z]; e < T[z + 1]; ++e) acc += P[S[e]] * R[e];
      Q[z] = acc;
      total += acc;
    }
    p.swap(q);
    exit[k] = out;
    mass[k + 1] = total;
  }
}

// Poisson window [lo, hi] holding all but ~1e-16 of the mass of Pois(mu).
inline void poisson_window(double mu, int64_t& lo, int64_t& hi) {
  double sd = std::sqrt(mu);
  lo = std::max<int64_t>(0, (int64_t)std::floor(mu - 12.0 * sd - 10.0));
  hi = (int64_t)std::ceil(mu + 12.0 * sd + 40.0);
}

// exit_rate_k = p_k . s; with uniformisation exit[k] = p_k . s / L.
inline void uniformised(const std::vector<double>& exit, const std::vector<double>& mass, double L,
                        int64_t nt, const double* t, double m_total, double* pdf, double* cdf) {
  for (int64_t i = 0; i < nt; ++i) {
    double mu = L * t[i];
    if (mu <= 0.0) {
      pdf[i] = exit.empty() ? 0.0 : exit[0] * L;
      cdf[i] = 1.0 - mass[0];
      continue;
    }
    int64_t lo, hi;
    poisson_window(mu, lo, hi);
    hi = std::min<int64_t>(hi, (int64_t)mass.size() - 1);
    // Poisson weights up to a constant, from the mode outwards by their ratios, then
    // normalised by their sum (the window spans 12 standard deviations each side): no lgamma,
    // and no error from evaluating log Pois(k; mu) ~ mu log mu in floating point
    const int64_t mode = std::min(hi, std::max(lo, (int64_t)std::floor(mu)));
    double sp = exit[mode], ss = mass[mode], z = 1.0, wk = 1.0;
    for (int64_t k = mode + 1; k <= hi; ++k) {
      wk *= mu / (double)k;
      sp += wk * exit[k]; ss += wk * mass[k]; z += wk;
    }
    wk = 1.0;
    for (int64_t k = mode - 1; k >= lo; --k) {
      wk *= (double)(k + 1) / mu;
      sp += wk * exit[k]; ss += wk * mass[k]; z += wk;
    }
    sp /= z;
    ss /= z;
    pdf[i] = sp * L;
    cdf[i] = 1.0 - ss;
    (void)m_total;
  }
}

// Number of uniformisation steps needed for times up to tmax.
inline int64_t steps_needed(double L, double tmax) {
  if (tmax <= 0.0 || L <= 0.0) return 1;
  int64_t lo, hi;
  poisson_window(L * tmax, lo, hi);
  return hi + 1;
}

// ---- sampling -------------------------------------------------------------------------
struct Rng {  // xoshiro256** seeded by splitmix64
  uint64_t s[4];
  explicit Rng(uint64_t seed) {
    for (int i = 0; i < 4; ++i) {
      seed += 0x9E3779B97F4A7C15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      s[i] = z ^ (z >> 31);
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
  }
  double uniform() { return ((next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
};

// Picks an out-edge of v with probability w_e / total; returns -1 for the missing mass.
inline int64_t pick(const int64_t* indptr, const double* w, int64_t v, double total, Rng& g) {
  double u = g.uniform() * total, acc = 0.0;
  for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e) {
    acc += w[e];
    if (u < acc) return e;
  }
  return -1;
}

// Simulates absorption; accumulates reward * time (CPH) or reward per step (DPH).
inline void sample(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                   const double* lam, const double* reward, bool discrete, uint64_t seed,
                   int64_t n, double* outv) {
  Rng g(seed);
  double a0 = 0.0;
  for (int64_t e = indptr[0]; e < indptr[1]; ++e) a0 += w[e];
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0.0;
    int64_t e = pick(indptr, w, 0, 1.0, g);  // missing mass = defect: absorbed at 0
    int64_t v = e < 0 ? -1 : target[e];
    while (v > 0 && lam[v] > 0.0) {
      double r = reward ? reward[v] : 1.0;
      if (discrete) {
        // geometric number of consecutive visits with success probability lam[v]
        double u = g.uniform();
        double visits = lam[v] >= 1.0 ? 1.0 : std::floor(std::log(u) / std::log1p(-lam[v])) + 1.0;
        acc += r * visits;
      } else {
        acc += r * (-std::log(g.uniform()) / lam[v]);
      }
      int64_t f = pick(indptr, w, v, lam[v], g);
      if (f < 0) f = indptr[v + 1] - 1;  // rounding at the end of the cumulative sum
      v = target[f];
    }
    outv[i] = acc;
  }
  (void)a0; (void)V;
}

}  // namespace phasic
