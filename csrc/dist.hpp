// Distribution functions on the sparse graph.
//  - CPH: uniformisation. P = I + Q / L with L = max exit rate; the probability vector
//    p_k = alpha P^k is stepped once up to the largest Poisson index needed for the
//    largest time; pdf(t) = sum_k Pois(k; L t) p_k . s and the survival function
//    sum_k Pois(k; L t) p_k . 1 are then summed per time over a window whose Poisson
//    tail mass is below 1e-16.
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
// steps (k = 0..K).
inline void forward_steps(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                          const double* lam, double L, int64_t K, std::vector<double>& exit,
                          std::vector<double>& mass) {
  std::vector<double> p(V, 0.0), q(V, 0.0);
  std::vector<char> absorbing(V, 0);
  for (int64_t v = 1; v < V; ++v) absorbing[v] = (lam[v] <= 0.0);
  double m0 = 0.0;
  for (int64_t e = indptr[0]; e < indptr[1]; ++e) {
    int64_t z = target[e];
    if (!absorbing[z]) { p[z] += w[e]; m0 += w[e]; }
  }
  // transient vertices in a compact list for speed
  std::vector<int64_t> tv;
  for (int64_t v = 1; v < V; ++v) if (!absorbing[v]) tv.push_back(v);
  exit.assign(K + 1, 0.0);
  mass.assign(K + 1, 0.0);
  mass[0] = m0;
  for (int64_t k = 0; k < K; ++k) {
    double out = 0.0, total = 0.0;
    for (int64_t v : tv) q[v] = p[v] * (1.0 - lam[v] / L);
    for (int64_t v : tv) {
      double pv = p[v];
      if (pv == 0.0) continue;
      double f = pv / L;
      for (int64_t e = indptr[v]; e < indptr[v + 1]; ++e) {
        int64_t z = target[e];
        if (absorbing[z]) out += f * w[e];
        else q[z] += f * w[e];
      }
    }
    for (int64_t v : tv) { p[v] = q[v]; total += q[v]; }
    exit[k] = out;
    mass[k + 1] = total;
  }
}

inline double log_poisson(int64_t k, double mu) {
  return -mu + k * std::log(mu) - std::lgamma((double)k + 1.0);
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
    double sp = 0.0, ss = 0.0;
    for (int64_t k = lo; k <= hi; ++k) {
      double wk = std::exp(log_poisson(k, mu));
      sp += wk * exit[k];
      ss += wk * mass[k];
    }
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
