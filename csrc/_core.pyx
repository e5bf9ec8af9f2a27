# distutils: language = c++
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled core of phasic: state-space construction, elimination traces, replay,
distribution functions and sampling. Typed arrays in, typed arrays out."""

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy
from libc.math cimport isfinite, INFINITY
from libcpp.vector cimport vector
from libcpp.string cimport string
from libcpp cimport bool as cbool
from cpython.long cimport PyLong_AsLongLong

from phasic.exceptions import GraphConstructionError, StateSpaceTooLarge, StateTypeError, TraceError

cnp.import_array()

cdef extern from "statetable.hpp" namespace "phasic":
    cdef cppclass StateTable:
        StateTable(int d) except +
        int state_length()
        int64_t size()
        const int32_t* row(int64_t i)
        int64_t append_unindexed(const int32_t* s) except +
        int64_t find(const int32_t* s)
        int64_t find_or_create(const int32_t* s, cbool* created) except +
        void reindex(int64_t skip) except +
        void load(const int32_t* data, int64_t n) except +

cdef extern from "elim.hpp" namespace "phasic":
    cdef cppclass Trace:
        vector[uint8_t] code
        vector[int32_t] a, b, c, xi, xj, xs, xinit
        vector[int64_t] order, scc_ptr, seg_ptr, xseg_ptr
    cdef cppclass LocalTrace:
        int64_t n_ops, n_x, n_v
        const uint8_t* code
        const int32_t* a
        const int32_t* b
        const int32_t* c
        const int32_t* xi
        const int32_t* xj
        const int32_t* xs
        const int32_t* xinit
    string check_tape(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                      const int32_t* c, int64_t E) except + nogil
    string check_program(int64_t nx, const int32_t* xi, const int32_t* xj, const int32_t* xs,
                         int64_t n, int64_t V, int64_t i_lo, int64_t j_lo) except + nogil
    string check_xinit(int64_t V, const int32_t* xinit, int64_t n) except + nogil
    string check_csr(int64_t V, const int64_t* indptr, int64_t E, const int32_t* target) except + nogil
    string check_trace(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                       const int32_t* c, int64_t nx, const int32_t* xi, const int32_t* xj,
                       const int32_t* xs, int64_t V, const int32_t* xinit, int64_t E, cbool local) except + nogil
    string check_layout(int64_t V, int64_t no, const int64_t* order, int64_t nptr,
                        const int64_t* scc_ptr, const int64_t* seg_ptr, const int64_t* xseg_ptr,
                        int64_t n, int64_t nx) except + nogil
    void record(int64_t V, const int64_t* indptr, const int32_t* target, Trace& T,
                const vector[const LocalTrace*]* provided, cbool local) except + nogil
    void scc_order(int64_t V, const int64_t* indptr, const int32_t* target,
                   vector[int64_t]& order, vector[int64_t]& scc_ptr) except + nogil
    cbool eval_tape(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                    const int32_t* c, const double* w, double* val) nogil
    void replay(int64_t n, const int32_t* xi, const int32_t* xj, const int32_t* xs,
                const double* val, double* x) nogil
    void replay_adjoint(int64_t n, const int32_t* xi, const int32_t* xj, const int32_t* xs,
                        const double* val, double* x) nogil
    void cph_moments_blocked(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                             const int32_t* c, int64_t nx, const int32_t* xi, const int32_t* xj,
                             const int32_t* xs, int64_t V, const int32_t* xinit,
                             const double* W, int64_t B, int64_t E, int64_t na,
                             const int64_t* a_edge, const int64_t* a_target,
                             const double* rewards, int64_t k, double* out, int64_t block,
                             const double* theta, int64_t p, const double* base, const double* coef,
                             uint8_t* neg) except + nogil

cdef extern from "replay.hpp" namespace "phasic":
    cdef cppclass XSched:
        int64_t k
    cdef cppclass Plan:
        int64_t V, E, nslot
    void compile_plan(int64_t n, const uint8_t* code, const int32_t* a, const int32_t* b,
                      const int32_t* c, int64_t nx, const int32_t* xi, const int32_t* xj,
                      const int32_t* xs, int64_t V, const int32_t* xinit, int64_t E,
                      int64_t n_start, Plan& P) except + nogil
    const XSched* plan_sched(Plan& P, int64_t k) except +
    void plan_adjoint(Plan& P) except +
    void plan_moments_one(const Plan& P, const XSched& S, const double* w, int64_t na,
                          const int64_t* a_edge, const int64_t* a_target, const double* r,
                          double* out, double* val, double* x) nogil
    void plan_moments_vjp(const Plan& P, int64_t k, const double* w, const int64_t* indptr,
                          const int32_t* target, const double* r, const double* val,
                          const double* x, const double* cot, double* dw, double* work) nogil
    void plan_moments_vjp_theta(const Plan& P, const XSched& S, int64_t B, const double* theta,
                                int64_t p, const double* base, const double* coef, int64_t na,
                                const int64_t* a_edge, const int64_t* a_target,
                                const int64_t* indptr, const int32_t* target, const double* r,
                                const double* cot, double* out, double* dth, uint8_t* neg) except + nogil
    int64_t c_edge_weights "phasic::edge_weights"(int64_t E, int64_t p, const double* base,
                                                  const double* coef, const double* th, double* w) nogil
    void plan_moments_theta(const Plan& P, const XSched& S, int64_t B, const double* theta,
                            int64_t p, const double* base, const double* coef, int64_t na,
                            const int64_t* a_edge, const int64_t* a_target, const double* r,
                            double* out, uint8_t* neg, int64_t nb) except + nogil

cdef extern from "dist.hpp" namespace "phasic":
    void forward_steps(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                       const double* lam, double L, int64_t K, vector[double]& exit,
                       vector[double]& mass) except + nogil
    void uniformised(const vector[double]& exit, const vector[double]& mass, double L,
                     int64_t nt, const double* t, double m_total, double* pdf, double* cdf) nogil
    int64_t steps_needed(double L, double tmax) nogil
    void c_sample "phasic::sample"(int64_t V, const int64_t* indptr, const int32_t* target,
                                   const double* w, const double* lam, const double* reward,
                                   cbool discrete, uint64_t seed, int64_t n, double* outv) nogil


cdef extern from "coalescent.hpp" namespace "phasic":
    cdef cppclass CoalescentBuild:
        vector[int64_t] indptr
        vector[int32_t] target
        vector[double] coef
        int64_t overflow_vertex
    void build_coalescent(int64_t D, int64_t B, const int32_t* merged, int64_t M, const int32_t* moves,
                          const int32_t* start, int64_t max_vertices, StateTable& T,
                          CoalescentBuild& out) except + nogil

cdef extern from "transient.hpp" namespace "phasic":
    cdef cppclass TransientStats:
        double dropped
        int64_t steps, intervals
        cbool exceeded
    void transient_propagate(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                             const double* lam, double* p, double T, int64_t nt, const double* times,
                             double* trans, double* flow, double* absd, double* soj, int64_t J, double* mom, double eps,
                             double mu_target, int64_t max_steps, TransientStats& st) except + nogil
    void transient_adjoint(int64_t V, const int64_t* indptr, const int32_t* target, const double* w,
                           const double* lam, const double* p0, double T, const double* g, double* lam_io,
                           double* grad_w, double* p_end, double eps, double mu_target, int64_t max_steps,
                           TransientStats& st) except + nogil

# ---------------------------------------------------------------------------------------
# states

cdef object _plain(object x):
    """`x` for an error message (phasic.callbacks.plain; imported on the error path only)."""
    from phasic.callbacks import plain

    return plain(x)


cdef str _where(object where):
    if isinstance(where, np.ndarray):
        return f"callback result for state {where.tolist()!r}"
    return str(where)


cdef int fill_state(object s, int d, int32_t* buf, object where) except -1:
    """Copies a user state (sequence of ints) into buf, with clear errors.

    `where` names the context in messages; an ndarray there means "the callback result for
    that state" (formatted only when an error is raised)."""
    cdef Py_ssize_t i, n
    cdef object x
    cdef long long val
    cdef cnp.ndarray arr
    cdef char* base
    cdef Py_ssize_t stride
    if type(s) is np.ndarray:
        arr = <cnp.ndarray>s
        if arr.ndim == 1 and arr.shape[0] == d:
            base = <char*>cnp.PyArray_DATA(arr)
            stride = arr.strides[0]
            if arr.dtype.num == cnp.NPY_INT32:
                for i in range(d):
                    buf[i] = (<int32_t*>(base + i * stride))[0]
                return 0
            if arr.dtype.num == cnp.NPY_INT64:
                for i in range(d):
                    val = (<int64_t*>(base + i * stride))[0]
                    if val < -2147483648 or val > 2147483647:
                        raise GraphConstructionError(
                            f"{_where(where)}: state entry {val!r} does not fit in int32")
                    buf[i] = <int32_t>val
                return 0
    cdef list lst
    if type(s) is list and len(<list>s) == d:
        lst = <list>s
        for i in range(d):
            x = lst[i]
            if type(x) is not int or not -2147483648 <= x <= 2147483647:
                break
            val = PyLong_AsLongLong(x)
            if val < -2147483648 or val > 2147483647:
                break
            buf[i] = <int32_t>val
        else:
            return 0
    if type(s) is list or type(s) is tuple:
        seq = s
    elif isinstance(s, np.ndarray):
        if s.ndim != 1 or s.dtype.kind not in "iu":
            raise StateTypeError(f"{_where(where)}: state {_plain(s)!r} must be a 1-D sequence of integers")
        seq = s.tolist()
    elif isinstance(s, (list, tuple)):
        seq = s
    else:
        raise StateTypeError(f"{_where(where)}: state {_plain(s)!r} must be a list/tuple/array of integers, "
                             f"not {type(s).__name__}")
    n = len(seq)
    if n != d:
        raise GraphConstructionError(
            f"{_where(where)}: state {_plain(seq)!r} has length {n}, expected {d} "
            f"(all states of a graph have the same length)")
    for i in range(n):
        x = seq[i]
        if type(x) is not int and isinstance(x, (bool, np.bool_)):
            raise StateTypeError(f"{_where(where)}: state {_plain(seq)!r} holds the bool {_plain(x)!r} at position "
                                 f"{i}; states are integer vectors")
        if type(x) is not int and (isinstance(x, (float, np.floating, complex, str, bytes)) or x is None):
            raise StateTypeError(f"{_where(where)}: state {_plain(seq)!r} has non-integer entry {_plain(x)!r} "
                                 f"at position {i}; states are integer vectors")
        if isinstance(x, (int, np.integer)) and not -2147483648 <= x <= 2147483647:
            raise GraphConstructionError(f"{_where(where)}: state entry {_plain(x)!r} does not fit in int32")
        try:
            val = x
        except (TypeError, OverflowError):
            raise StateTypeError(f"{_where(where)}: state {_plain(seq)!r} has non-integer entry {_plain(x)!r} "
                                 f"at position {i}; states are integer vectors") from None
        if val < -2147483648 or val > 2147483647:
            raise GraphConstructionError(f"{_where(where)}: state entry {_plain(x)!r} does not fit in int32")
        buf[i] = <int32_t>val
    return 0


cdef class StateSpace:
    """Hash table of fixed-length integer states (vertex 0 is the unindexed start)."""
    cdef StateTable* t
    cdef int d
    cdef vector[int32_t] buf
    cdef bint indexed   # False after from_states: the hash index is built on first lookup

    def __cinit__(self, int d):
        if d < 1:
            raise ValueError(f"state_length must be >= 1, got {d!r}")
        self.d = d
        self.t = new StateTable(d)
        self.buf.resize(d)
        self.t.append_unindexed(self.buf.data())  # the start vertex: state of zeros
        self.indexed = True

    def __dealloc__(self):
        del self.t

    @property
    def state_length(self):
        return self.d

    def __len__(self):
        return self.t.size()

    cdef void _ensure_index(self):
        if not self.indexed:
            self.t.reindex(1)
            self.indexed = True

    def find(self, state):
        self._ensure_index()
        fill_state(state, self.d, self.buf.data(), "find_vertex")
        return self.t.find(self.buf.data())

    def find_many(self, states):
        """Vertex index of each row of `states` (``(n, d)`` integers; -1 where absent)."""
        cdef int32_t[:, ::1] s = np.ascontiguousarray(states, dtype=np.int32)
        if s.shape[1] != self.d:
            raise ValueError(f"find_many: states have length {s.shape[1]}, expected {self.d}")
        self._ensure_index()
        out = np.empty(s.shape[0], dtype=np.int64)
        cdef int64_t[::1] o = out
        cdef Py_ssize_t i
        for i in range(s.shape[0]):
            o[i] = self.t.find(&s[i, 0])
        return out

    def find_or_create(self, state):
        cdef cbool created = False
        self._ensure_index()
        fill_state(state, self.d, self.buf.data(), "find_or_create_vertex")
        idx = self.t.find_or_create(self.buf.data(), &created)
        return idx, bool(created)

    def create_unindexed(self, state):
        self._ensure_index()
        fill_state(state, self.d, self.buf.data(), "create_vertex")
        return self.t.append_unindexed(self.buf.data())

    def states(self):
        cdef int64_t n = self.t.size()
        out = np.empty((n, self.d), dtype=np.int32)
        cdef int32_t[:, ::1] o = out
        if n:
            memcpy(&o[0, 0], self.t.row(0), sizeof(int32_t) * n * self.d)
        return out

    @staticmethod
    def from_states(cnp.ndarray states):
        cdef int32_t[:, ::1] s = np.ascontiguousarray(states, dtype=np.int32)
        cdef StateSpace sp = StateSpace(s.shape[1])
        sp.t.load(&s[0, 0], s.shape[0])
        sp.indexed = False
        return sp


# ---------------------------------------------------------------------------------------
# construction from a callback (Alg. 1): visit vertices in creation order

cdef object _coef_row(object rate):
    """A list or tuple of Python floats/ints as a float64 array, or None (NumPy handles the
    rest: other element types, arrays, non-finite values are checked by the caller)."""
    cdef Py_ssize_t k, n
    cdef object x
    cdef double v
    if not (type(rate) is list or type(rate) is tuple):
        return None
    n = len(rate)
    if n == 0:
        return None
    out = cnp.PyArray_EMPTY(1, [n], cnp.NPY_FLOAT64, 0)
    cdef double* o = <double*>cnp.PyArray_DATA(<cnp.ndarray>out)
    for k in range(n):
        x = rate[k]
        if type(x) is float:
            v = <double>x
        elif type(x) is int and -9007199254740992 <= x <= 9007199254740992:
            v = <double>x
        else:
            return None
        if not isfinite(v):
            return None
        o[k] = v
    return out


cdef double _row_sum(object crow):
    cdef const double[::1] c = crow
    cdef double s = 0.0
    cdef Py_ssize_t k
    for k in range(c.shape[0]):
        s += c[k]
    return s


cdef inline bint is_number(object r):
    if type(r) is float or type(r) is int:
        return True
    return isinstance(r, (float, int, np.floating, np.integer)) and not isinstance(r, bool)


def build(callback, list ipv, int d, dict params, int64_t max_vertices, object theta_dim,
          bint discrete=False):
    """Builds the state space reachable from `ipv` with `callback`.

    Returns (StateSpace, indptr int64, target int32, weight float64, coef (E, p) or None).
    Parameterised edges have weight = coef . ones until re-weighted.

    Self-loops returned by the callback are not stored (the graph has none): a continuous
    self-transition does not change the process, a discrete one is part of the missing
    mass. A state whose only out-edges are self-loops is never left (an error, not an
    absorbing state); a discrete state's out-probabilities, self-loops included, must
    not sum over 1, and a discrete self-loop beside coefficient edges (or one with
    coefficients) is refused: that sum could not be checked.
    """
    cdef StateSpace sp = StateSpace(d)
    cdef vector[int64_t] indptr
    cdef vector[int32_t] target
    cdef vector[double] weight
    cdef vector[int64_t] coef_edge
    cdef list coef_rows = []
    cdef int64_t i, z, p = -1 if theta_dim is None else <int64_t>theta_dim
    cdef cbool created
    cdef int32_t* buf = sp.buf.data()
    cdef double r, self_mass, out_mass
    cdef int64_t n_self, n_other
    cdef bint coef_other
    cdef object state_arr, result, item, rate
    cdef cnp.npy_intp dims[1]
    dims[0] = d

    indptr.push_back(0)
    for item in ipv:
        st, prob = item
        fill_state(st, d, buf, "initial distribution (IPV)")
        z = sp.t.find_or_create(buf, &created)
        target.push_back(<int32_t>z)
        weight.push_back(<double>prob)
    indptr.push_back(target.size())

    i = 1
    while i < sp.t.size():
        state_arr = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT32, 0)
        memcpy(cnp.PyArray_DATA(<cnp.ndarray>state_arr), sp.t.row(i), sizeof(int32_t) * d)
        try:
            result = callback(state_arr, **params)
        except Exception as exc:
            exc.add_note(f"phasic: raised by the callback for state {state_arr.tolist()!r} (vertex {i})")
            raise
        if result is None:
            raise GraphConstructionError(
                f"state {state_arr.tolist()!r} (vertex {i}): the callback returned None; return [] "
                f"for an absorbing state (a missing `return` statement?)")
        elif not isinstance(result, (list, tuple)):
            raise GraphConstructionError(
                f"callback returned {_plain(result)!r} for state {state_arr.tolist()!r}; expected a list of "
                f"[next_state, rate] pairs ([] for an absorbing state)")
        n_self = n_other = 0
        self_mass = out_mass = 0.0
        coef_other = False
        for item in result:
            if not (type(item) is list or type(item) is tuple or isinstance(item, (list, tuple))) or len(item) != 2:
                raise GraphConstructionError(
                    f"callback returned a malformed edge {_plain(item)!r} for state {state_arr.tolist()!r}; "
                    f"each edge must be [next_state, rate]")
            nxt = item[0]
            rate = item[1]
            fill_state(nxt, d, buf, state_arr)
            if is_number(rate):
                try:
                    r = rate
                except OverflowError:  # an int beyond the largest double
                    r = INFINITY
                if not isfinite(r) or r < 0:
                    raise GraphConstructionError(
                        f"callback returned rate {_plain(rate)!r} for the edge {state_arr.tolist()!r} -> "
                        f"{_plain(nxt)!r}; "
                        f"rates must be finite and >= 0")
                crow = None
            elif isinstance(rate, (list, tuple, np.ndarray)):
                # a list of Python numbers is read without NumPy (one C loop; the common case
                # of library and user callbacks), anything else through np.asarray
                crow = _coef_row(rate)
                if crow is None:
                    crow = np.asarray(rate, dtype=np.float64)
                    if crow.ndim != 1 or crow.size == 0 or not np.all(np.isfinite(crow)):
                        crow = None
                if crow is None:
                    raise GraphConstructionError(
                        f"callback returned coefficients {_plain(rate)!r} for state {state_arr.tolist()!r}; "
                        f"expected a non-empty list of finite numbers")
                if p < 0:
                    p = crow.size
                elif crow.size != p:
                    raise GraphConstructionError(
                        f"callback returned {crow.size} coefficients {_plain(rate)!r} for state "
                        f"{state_arr.tolist()!r}, but theta has dimension {p}")
                r = _row_sum(crow)
            else:
                raise GraphConstructionError(
                    f"callback returned rate {_plain(rate)!r} ({type(rate).__name__}) for state "
                    f"{state_arr.tolist()!r}; expected a number or a list of coefficients")
            z = sp.t.find_or_create(buf, &created)
            if created and sp.t.size() > max_vertices:
                raise StateSpaceTooLarge(
                    f"the state space grew past max_vertices={max_vertices} (at state "
                    f"{np.asarray(<int32_t[:d]>buf).tolist()!r}); the model may be unbounded, "
                    f"or pass a larger max_vertices=")
            if z == i:  # a self-transition: not stored (see the docstring)
                n_self += 1
                if discrete and crow is not None:
                    raise GraphConstructionError(
                        f"discrete graph: the callback returned a self-loop with coefficients "
                        f"{_plain(rate)!r} for state {state_arr.tolist()!r}; a state's self-loop "
                        f"probability is its missing mass (1 - the sum of its other out-"
                        f"probabilities): leave the self-loop out")
                if crow is None:
                    self_mass += r
                continue
            n_other += 1
            if crow is None:
                out_mass += r
            else:
                coef_other = True
            if crow is not None:
                coef_edge.push_back(target.size())
                coef_rows.append(crow)
            target.push_back(<int32_t>z)
            weight.push_back(r)
        if n_self:
            if not n_other:
                raise GraphConstructionError(
                    f"state {state_arr.tolist()!r} (vertex {i}) is reached but its only out-edges are "
                    f"self-loops: it is never left (return [] for an absorbing state)")
            if discrete and coef_other and self_mass != 0:
                raise GraphConstructionError(
                    f"discrete graph: the callback returned a self-loop of probability {self_mass!r} "
                    f"beside coefficient edges for state {state_arr.tolist()!r}; the sum of its "
                    f"out-probabilities cannot be checked: leave the self-loop out (a state's "
                    f"self-loop probability is its missing mass)")
            if discrete and self_mass + out_mass > 1 + 1e-12:
                raise GraphConstructionError(
                    f"discrete graph: out-probabilities of state {state_arr.tolist()!r} sum to "
                    f"{self_mass + out_mass!r} > 1 (its self-loops included)")
        indptr.push_back(target.size())
        i += 1

    ip = np.asarray(<int64_t[:indptr.size()]>indptr.data()).copy()
    tg = np.asarray(<int32_t[:target.size()]>target.data()).copy() if target.size() else np.zeros(0, np.int32)
    wt = np.asarray(<double[:weight.size()]>weight.data()).copy() if weight.size() else np.zeros(0)
    coef = None
    if p > 0:
        coef = np.zeros((tg.size, p))
        if coef_rows:
            idx = np.asarray(<int64_t[:coef_edge.size()]>coef_edge.data()).copy()
            coef[idx] = np.vstack(coef_rows)
    return sp, ip, tg, wt, coef


# ---------------------------------------------------------------------------------------
# traces

cdef object _vec64(vector[int64_t]& v):
    if v.size() == 0:
        return np.zeros(0, np.int64)
    return np.asarray(<int64_t[:v.size()]>v.data()).copy()


cdef object _vec32(vector[int32_t]& v):
    if v.size() == 0:
        return np.zeros(0, np.int32)
    return np.asarray(<int32_t[:v.size()]>v.data()).copy()


cdef const int32_t* _ptr32(object arr, list keep) except? NULL:
    cdef const int32_t[::1] m = np.ascontiguousarray(arr, dtype=np.int32)
    keep.append(m)
    return &m[0] if m.shape[0] else NULL


# Checks of the arrays handed to the entry points below (csrc/elim.hpp check_*): one pass
# each, raising TraceError instead of letting a loop index memory out of range.
cdef int _fail(string msg, str where) except -1:
    if msg.size():
        raise TraceError(f"{where}: {(<bytes>msg).decode()}")
    return 0


cdef int _csr_ok(const int64_t[::1] indptr, const int32_t[::1] target, str where) except -1:
    cdef int64_t V = indptr.shape[0] - 1, E = target.shape[0]
    if V < 1:
        raise TraceError(f"{where}: indptr has {indptr.shape[0]} entries; it needs one per vertex and one more")
    _fail(check_csr(V, &indptr[0], E, &target[0] if E else NULL), where)
    return 0


cdef int _tape_ok(const uint8_t[::1] code, const int32_t[::1] a, const int32_t[::1] b,
                  const int32_t[::1] c, int64_t E, str where) except -1:
    cdef int64_t n = code.shape[0]
    if a.shape[0] != n or b.shape[0] != n or c.shape[0] != n:
        raise TraceError(f"{where}: tape arrays have lengths code {n}, a {a.shape[0]}, b {b.shape[0]}, "
                         f"c {c.shape[0]}; they must be equal")
    if n:
        _fail(check_tape(n, &code[0], &a[0], &b[0], &c[0], E), where)
    return 0


cdef int _program_ok(const int32_t[::1] xi, const int32_t[::1] xj, const int32_t[::1] xs, int64_t n,
                     int64_t V, int64_t i_lo, int64_t j_lo, str where) except -1:
    cdef int64_t nx = xi.shape[0]
    if xj.shape[0] != nx or xs.shape[0] != nx:
        raise TraceError(f"{where}: program arrays have lengths xi {nx}, xj {xj.shape[0]}, xs {xs.shape[0]}; "
                         f"they must be equal")
    if nx:
        _fail(check_program(nx, &xi[0], &xj[0], &xs[0], n, V, i_lo, j_lo), where)
    return 0


cdef int _trace_ok(object tr, int64_t E, str where) except -1:
    """The trace's arrays fit each other and E edges (memory safety of the plain replay)."""
    cdef const int32_t[::1] xinit = tr["xinit"]
    cdef int64_t n = len(tr["code"]), V = xinit.shape[0]
    if V < 1:
        raise TraceError(f"{where}: xinit is empty; a trace has one entry per vertex")
    _tape_ok(tr["code"], tr["a"], tr["b"], tr["c"], E, where)
    _program_ok(tr["xi"], tr["xj"], tr["xs"], n, V, 0, 0, where)
    _fail(check_xinit(V, &xinit[0], n), where)
    return 0


cdef int _start_ok(const int64_t[::1] a_target, const int64_t[::1] a_edge, int64_t V, int64_t E,
                   int64_t nr, str where) except -1:
    cdef int64_t i
    if a_edge.shape[0] != a_target.shape[0]:
        raise TraceError(f"{where}: {a_edge.shape[0]} start edges but {a_target.shape[0]} start targets")
    for i in range(a_edge.shape[0]):
        if a_edge[i] < 0 or a_edge[i] >= E:
            raise TraceError(f"{where}: start edge a_edge[{i}] = {a_edge[i]} is not an edge, in [0, {E})")
        if a_target[i] < 0 or a_target[i] >= V:
            raise TraceError(f"{where}: start edge target a_target[{i}] = {a_target[i]} is not a vertex, "
                             f"in [0, {V})")
    if nr != V:
        raise TraceError(f"{where}: rewards has {nr} entries, the trace {V} vertices")
    return 0


#: the fields the replay entry points read (what a CheckedTrace vouches for)
_REPLAY_FIELDS = ("code", "a", "b", "c", "xi", "xj", "xs", "xinit")


class CheckedTrace(dict):
    """A trace (dict of arrays) known to fit a graph of `n_vertices` vertices and `n_edges`
    edges: recorded by the core for it (record_trace), or checked once by checked_trace.
    Its arrays are made read-only, and the entry points below skip their per-call checks
    for it while each field is still the array that was checked and still read-only (so a
    replaced or re-enabled array is checked again). A copy or a pickle is a plain dict."""
    __slots__ = ("n_vertices", "n_edges", "held")

    def __reduce__(self):
        return (dict, (dict(self),))


cdef object _vouch(object tr, int64_t V, int64_t E):
    """`tr` as a CheckedTrace for V vertices and E edges (its checks already done)."""
    out = CheckedTrace(tr)
    held = []
    for f in _REPLAY_FIELDS:
        arr = out[f]
        if type(arr) is not np.ndarray:
            raise TraceError(f"trace field {f!r} is a {type(arr).__name__}, not a NumPy array")
        arr.flags.writeable = False
        held.append(arr)
    out.held = tuple(held)
    out.n_vertices, out.n_edges = V, E
    return out


cdef bint _trusted(object tr, int64_t E) except -1:
    """`tr` is a CheckedTrace for E edges (E < 0: any) whose arrays are still those checked."""
    if type(tr) is not CheckedTrace:
        return False
    if E >= 0 and tr.n_edges != E:
        return False
    cdef Py_ssize_t i
    cdef tuple held = tr.held
    for i in range(8):
        arr = held[i]
        if (<dict>tr).get(_REPLAY_FIELDS[i]) is not arr or cnp.PyArray_ISWRITEABLE(<cnp.ndarray>arr):
            return False
    return True


def is_checked(tr, int64_t n_vertices, int64_t n_edges):
    """Whether `tr` is a CheckedTrace that fits `n_vertices` vertices and `n_edges` edges
    (its per-call checks can be skipped)."""
    return _trusted(tr, n_edges) and tr.n_vertices == n_vertices


def checked_trace(object tr, int64_t n_vertices, int64_t n_edges):
    """`tr` as a CheckedTrace after the full check (trace_problem with the layout) against
    `n_vertices` vertices and `n_edges` edges; raises TraceError naming the first problem."""
    problem = trace_problem(tr, n_vertices, n_edges, False, True)
    if problem:
        raise TraceError(f"trace does not fit a graph of {n_vertices} vertices and {n_edges} edges: "
                         f"{problem}")
    return _vouch(tr, n_vertices, n_edges)


def trace_problem(object tr, int64_t n_vertices, int64_t n_edges, bint local=False, bint layout=False):
    """None if the arrays of trace `tr` fit a graph of `n_vertices` vertices and `n_edges`
    edges (lengths, opcodes, operand ranges, SSA order; csrc/elim.hpp check_trace), else a
    description of the first bad entry. `local`: `tr` is one component's own trace.
    `layout`: check the elimination order and segment pointers too (check_layout).
    The arrays must have the recorder's dtypes (uint8 code, int32 operands, int64 order
    and pointers)."""
    cdef const uint8_t[::1] code = tr["code"]
    cdef const int32_t[::1] ta = tr["a"], tb = tr["b"], tc = tr["c"]
    cdef const int32_t[::1] xi = tr["xi"], xj = tr["xj"], xs = tr["xs"], xinit = tr["xinit"]
    cdef int64_t n = code.shape[0], nx = xi.shape[0]
    if ta.shape[0] != n or tb.shape[0] != n or tc.shape[0] != n:
        return (f"tape arrays have lengths code {n}, a {ta.shape[0]}, b {tb.shape[0]}, c {tc.shape[0]}; "
                f"they must be equal")
    if xj.shape[0] != nx or xs.shape[0] != nx:
        return f"program arrays have lengths xi {nx}, xj {xj.shape[0]}, xs {xs.shape[0]}; they must be equal"
    if xinit.shape[0] != n_vertices:
        return f"xinit has {xinit.shape[0]} entries; the graph has {n_vertices} vertices"
    cdef string msg
    cdef const int64_t[::1] order, sp, gp, xp
    if layout:
        order, sp, gp, xp = tr["order"], tr["scc_ptr"], tr["seg_ptr"], tr["xseg_ptr"]
        if gp.shape[0] != sp.shape[0] or xp.shape[0] != sp.shape[0] or sp.shape[0] == 0:
            return (f"scc_ptr, seg_ptr and xseg_ptr have {sp.shape[0]}, {gp.shape[0]} and {xp.shape[0]} "
                    f"entries; they need one per component and one more each")
    with nogil:
        msg = check_trace(n, &code[0] if n else NULL, &ta[0] if n else NULL, &tb[0] if n else NULL,
                          &tc[0] if n else NULL, nx, &xi[0] if nx else NULL, &xj[0] if nx else NULL,
                          &xs[0] if nx else NULL, n_vertices, &xinit[0] if n_vertices else NULL,
                          n_edges, local)
        if layout and not msg.size():
            msg = check_layout(n_vertices, order.shape[0], &order[0] if order.shape[0] else NULL,
                               sp.shape[0], &sp[0], &gp[0], &xp[0], n, nx)
    return (<bytes>msg).decode() if msg.size() else None


def record_trace(const int64_t[::1] indptr, const int32_t[::1] target, dict provided=None,
                 bint local=False):
    """Records the elimination of a graph (CSR) as a tape + reward program (dict of arrays).

    `provided` maps SCC indices (in topological order) to traces recorded for that SCC
    alone (see phasic.traces); those SCCs are spliced in instead of being eliminated.
    `local`: the graph is one SCC's local graph (phasic.traces.local_structure), whose
    vertices 1..m are the SCC in elimination order and whose other vertices absorb.
    """
    cdef Trace T
    cdef int64_t V = indptr.shape[0] - 1
    cdef vector[LocalTrace] locals_
    cdef vector[const LocalTrace*] ptrs
    cdef const uint8_t[::1] cm
    cdef list keep = []
    cdef int64_t k, nmax = 0
    _csr_ok(indptr, target, "record_trace")
    if provided:
        if min(provided) < 0:
            raise TraceError(f"record_trace: provided component {min(provided)} is not a component index")
        nmax = max(provided) + 1
        locals_.resize(len(provided))
        ptrs.assign(nmax, NULL)
        for j, (k, lt) in enumerate(sorted(provided.items())):
            cm = np.ascontiguousarray(lt["code"], dtype=np.uint8)
            keep.append(cm)
            nl = [len(lt[f]) for f in ("a", "b", "c", "xi", "xj", "xs")]
            if nl[:3] != [cm.shape[0]] * 3 or nl[4:] != [nl[3]] * 2:
                raise TraceError(f"record_trace: trace of component {k}: arrays code/a/b/c/xi/xj/xs have "
                                 f"lengths {[cm.shape[0]] + nl}; the tape's and the program's must agree")
            locals_[j].n_ops = cm.shape[0]
            locals_[j].n_x = len(lt["xi"])
            locals_[j].n_v = len(lt["xinit"])
            locals_[j].code = &cm[0] if cm.shape[0] else NULL
            locals_[j].a = _ptr32(lt["a"], keep)
            locals_[j].b = _ptr32(lt["b"], keep)
            locals_[j].c = _ptr32(lt["c"], keep)
            locals_[j].xi = _ptr32(lt["xi"], keep)
            locals_[j].xj = _ptr32(lt["xj"], keep)
            locals_[j].xs = _ptr32(lt["xs"], keep)
            locals_[j].xinit = _ptr32(lt["xinit"], keep)
            ptrs[k] = &locals_[j]
    try:
        with nogil:
            record(V, &indptr[0], &target[0] if target.shape[0] else NULL, T,
                   &ptrs if nmax else NULL, local)
    except ValueError as exc:  # a provided trace that does not fit its component
        raise TraceError(f"record_trace: {exc}") from None
    code = np.asarray(<uint8_t[:T.code.size()]>T.code.data()).copy() if T.code.size() else np.zeros(0, np.uint8)
    tr = {
        "code": code, "a": _vec32(T.a), "b": _vec32(T.b), "c": _vec32(T.c),
        "xi": _vec32(T.xi), "xj": _vec32(T.xj), "xs": _vec32(T.xs),
        "xinit": _vec32(T.xinit), "order": _vec64(T.order), "scc_ptr": _vec64(T.scc_ptr),
        "seg_ptr": _vec64(T.seg_ptr), "xseg_ptr": _vec64(T.xseg_ptr),
    }
    if nmax or local:
        return tr  # spliced from traces given here, or a component's: phasic.traces checks it
    return _vouch(tr, V, target.shape[0])  # the core's own recording of this graph


def scc(const int64_t[::1] indptr, const int32_t[::1] target):
    """Strongly connected components in topological order: (order, scc_ptr)."""
    cdef vector[int64_t] order, ptr
    _csr_ok(indptr, target, "scc")
    with nogil:
        scc_order(indptr.shape[0] - 1, &indptr[0], &target[0] if target.shape[0] else NULL, order, ptr)
    return _vec64(order), _vec64(ptr)


def evaluate_tape(code_, a_, b_, c_, w_, trace=None):
    """Values of every tape op for one edge-weight vector. `trace`: the CheckedTrace the
    tape arrays come from (its check is then not repeated)."""
    cdef const uint8_t[::1] code = code_
    cdef const int32_t[::1] a = a_, b = b_, c = c_
    cdef const double[::1] w = w_
    cdef int64_t n = code.shape[0]
    if not (trace is not None and _trusted(trace, w.shape[0]) and trace["code"] is code_
            and trace["a"] is a_ and trace["b"] is b_ and trace["c"] is c_):
        _tape_ok(code, a, b, c, w.shape[0], "evaluate_tape")
    val = np.empty(n)
    cdef double[::1] v = val
    if n:
        with nogil:
            eval_tape(n, &code[0], &a[0], &b[0], &c[0], &w[0] if w.shape[0] else NULL, &v[0])
    return val


def run_program(xi_, xj_, xs_, const double[::1] val, double[::1] x, bint adjoint=False, trace=None):
    """Applies the reward program (or its transpose) to x in place. `trace`: the
    CheckedTrace the program arrays come from (its check is then not repeated)."""
    cdef const int32_t[::1] xi = xi_, xj = xj_, xs = xs_
    cdef int64_t n = xi.shape[0]
    if not (trace is not None and _trusted(trace, -1) and trace["xi"] is xi_ and trace["xj"] is xj_
            and trace["xs"] is xs_ and x.shape[0] >= trace.n_vertices
            and val.shape[0] >= len(trace["code"])):
        _program_ok(xi, xj, xs, val.shape[0], x.shape[0], 0, 0, "run_program")
    if n == 0:
        return
    with nogil:
        if adjoint:
            replay_adjoint(n, &xi[0], &xj[0], &xs[0], &val[0], &x[0])
        else:
            replay(n, &xi[0], &xj[0], &xs[0], &val[0], &x[0])


def cph_moments_batch(object tr, const double[:, ::1] W, const int64_t[::1] a_target,
                      const int64_t[::1] a_edge, const double[::1] rewards, int k, int64_t block=0):
    """First k reward moments of a CPH for each row of W (edge weights), by tape replay.

    a_target/a_edge: the start vertex's edges (initial distribution).
    Returns (B, k); a row with a non-finite value marks a degenerate weight vector.
    """
    cdef const uint8_t[::1] code = tr["code"]
    cdef const int32_t[::1] ta = tr["a"], tb = tr["b"], tc = tr["c"]
    cdef const int32_t[::1] xi = tr["xi"], xj = tr["xj"], xs = tr["xs"], xinit = tr["xinit"]
    cdef int64_t B = W.shape[0], E = W.shape[1], n = code.shape[0], nx = xi.shape[0], V = xinit.shape[0]
    cdef int64_t na = a_target.shape[0]
    if not _trusted(tr, E):
        _trace_ok(tr, E, "cph_moments_batch")
    _start_ok(a_target, a_edge, V, E, rewards.shape[0], "cph_moments_batch")
    out = np.empty((B, k))
    cdef double[:, ::1] o = out
    if B == 0:
        return out
    cdef const uint8_t* cp = &code[0] if n else NULL
    cdef const int32_t* ap = &ta[0] if n else NULL
    cdef const int32_t* bp = &tb[0] if n else NULL
    cdef const int32_t* ccp = &tc[0] if n else NULL
    cdef const int32_t* xip = &xi[0] if nx else NULL
    cdef const int32_t* xjp = &xj[0] if nx else NULL
    cdef const int32_t* xsp = &xs[0] if nx else NULL
    cdef const int64_t* aep = &a_edge[0] if na else NULL
    cdef const int64_t* atp = &a_target[0] if na else NULL
    with nogil:
        cph_moments_blocked(n, cp, ap, bp, ccp, nx, xip, xjp, xsp, V, &xinit[0],
                            &W[0, 0] if E else NULL, B, E, na, aep, atp, &rewards[0], k, &o[0, 0], block,
                            NULL, 0, NULL, NULL, NULL)
    return out


def cph_moments_theta(object tr, const double[:, ::1] thetas, const double[::1] base,
                      const double[:, ::1] coef, const int64_t[::1] a_target,
                      const int64_t[::1] a_edge, const double[::1] rewards, int k):
    """Like cph_moments_batch, with the weights base + coef . theta computed block by block
    inside the core (no (B, E) weight matrix). Returns (moments (B, k), negative (B,) bool)."""
    cdef const uint8_t[::1] code = tr["code"]
    cdef const int32_t[::1] ta = tr["a"], tb = tr["b"], tc = tr["c"]
    cdef const int32_t[::1] xi = tr["xi"], xj = tr["xj"], xs = tr["xs"], xinit = tr["xinit"]
    cdef int64_t B = thetas.shape[0], p = thetas.shape[1], E = base.shape[0]
    cdef int64_t n = code.shape[0], nx = xi.shape[0], V = xinit.shape[0], na = a_target.shape[0]
    if coef.shape[0] != E or coef.shape[1] != p:
        raise ValueError(f"coef has shape {(coef.shape[0], coef.shape[1])}, expected {(E, p)}")
    if not _trusted(tr, E):
        _trace_ok(tr, E, "cph_moments_theta")
    _start_ok(a_target, a_edge, V, E, rewards.shape[0], "cph_moments_theta")
    out = np.empty((B, k))
    negative = np.zeros(B, dtype=np.uint8)
    cdef double[:, ::1] o = out
    cdef uint8_t[::1] ng = negative
    if B == 0:
        return out, negative.astype(bool)
    with nogil:
        cph_moments_blocked(n, &code[0] if n else NULL, &ta[0] if n else NULL, &tb[0] if n else NULL,
                            &tc[0] if n else NULL, nx, &xi[0] if nx else NULL, &xj[0] if nx else NULL,
                            &xs[0] if nx else NULL, V, &xinit[0], NULL, B, E, na,
                            &a_edge[0] if na else NULL, &a_target[0] if na else NULL, &rewards[0], k,
                            &o[0, 0], 0, &thetas[0, 0], p, &base[0] if E else NULL,
                            &coef[0, 0] if E else NULL, &ng[0])
    return out, negative.astype(bool)


def edge_weights(base_, coef_, theta_):
    """(w, bad): the edge weights base + coef . theta (a new array, each computed as
    ((base + c_0 theta_0) + c_1 theta_1) + ..., like the batch replay) and the index of the
    first weight that is not >= 0 (NaN included), or -1."""
    cdef const double[::1] base = np.ascontiguousarray(base_, dtype=np.float64)
    cdef const double[:, ::1] coef = np.ascontiguousarray(coef_, dtype=np.float64)
    cdef const double[::1] theta = np.ascontiguousarray(theta_, dtype=np.float64)
    cdef int64_t E = base.shape[0], p = theta.shape[0], bad
    if coef.shape[0] != E or coef.shape[1] != p:
        raise ValueError(f"coef has shape {(coef.shape[0], coef.shape[1])}, expected {(E, p)}")
    w = np.empty(E)
    cdef double[::1] wv = w
    if E == 0:
        return w, -1
    bad = c_edge_weights(E, p, &base[0], &coef[0, 0] if p else NULL, &theta[0] if p else NULL, &wv[0])
    return w, bad


cdef class ReplayPlan:
    """A CPH trace compiled for fast moment replay (csrc/replay_plan.hpp, replay.hpp);
    results are bitwise those of cph_moments_batch / cph_moments_theta on the same trace.

    ReplayPlan(tr, n_edges, n_start, a_target): `tr` the trace, `n_edges` the graph's edge
    count, edges [0, n_start) the start vertex's (initial distribution) with targets
    `a_target`. Compiling costs a few plain evaluations of the trace; a single-vector
    evaluation then reuses the plan's work arrays (a concurrent one gets its own).
    """
    cdef Plan* P
    cdef cnp.ndarray a_edge, a_target, ones
    cdef cnp.ndarray val, x
    cdef bint busy
    cdef readonly int64_t n_vertices, n_edges, n_slots

    def __cinit__(self):
        self.P = new Plan()

    def __dealloc__(self):
        del self.P

    def __init__(self, object tr, int64_t n_edges, int64_t n_start, a_target):
        cdef const uint8_t[::1] code = tr["code"]
        cdef const int32_t[::1] ta = tr["a"], tb = tr["b"], tc = tr["c"]
        cdef const int32_t[::1] xi = tr["xi"], xj = tr["xj"], xs = tr["xs"], xinit = tr["xinit"]
        cdef int64_t n = code.shape[0], nx = xi.shape[0], V = xinit.shape[0]
        if ta.shape[0] != n or tb.shape[0] != n or tc.shape[0] != n or xj.shape[0] != nx or xs.shape[0] != nx:
            raise ValueError("trace arrays differ in length")
        self.a_target = np.ascontiguousarray(a_target, dtype=np.int64)
        self.a_edge = np.arange(n_start, dtype=np.int64)
        if self.a_target.shape[0] != n_start or n_start > n_edges:
            raise ValueError(f"{self.a_target.shape[0]} start targets for {n_start} start edges")
        if n_start and (self.a_target.min() < 0 or self.a_target.max() >= V):
            raise ValueError("start edge target out of range")
        with nogil:
            compile_plan(n, &code[0] if n else NULL, &ta[0] if n else NULL, &tb[0] if n else NULL,
                         &tc[0] if n else NULL, nx, &xi[0] if nx else NULL, &xj[0] if nx else NULL,
                         &xs[0] if nx else NULL, V, &xinit[0] if V else NULL, n_edges, n_start,
                         self.P[0])
        self.n_vertices, self.n_edges, self.n_slots = V, n_edges, self.P.nslot
        self.ones = np.ones(V)
        self.ones[0] = 0.0
        self.val = np.empty(self.P.nslot)
        self.x = np.empty(0)

    cdef const XSched* _sched(self, int k) except NULL:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return plan_sched(self.P[0], k)

    cdef cnp.ndarray _rewards(self, rewards):
        if rewards is None:
            return self.ones
        r = np.ascontiguousarray(rewards, dtype=np.float64)
        if r.shape != (self.n_vertices,):
            raise ValueError(f"rewards has shape {r.shape}, expected ({self.n_vertices},)")
        return r

    def moments(self, cnp.ndarray w, int k, rewards=None):
        """First k moments (list) for the edge weights w (float64, contiguous)."""
        cdef const XSched* S = self._sched(k)
        if (cnp.PyArray_TYPE(w) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(w)
                or cnp.PyArray_NDIM(w) != 1 or cnp.PyArray_DIM(w, 0) != self.n_edges):
            raise ValueError(f"w must be a contiguous float64 array of {self.n_edges} edge weights")
        cdef cnp.ndarray r = self._rewards(rewards)
        cdef cnp.ndarray val, x
        cdef bint own = not self.busy
        cdef int64_t nxv = k * self.n_vertices + 1
        if own:
            if cnp.PyArray_DIM(self.x, 0) < nxv:
                self.x = np.empty(nxv)
            val, x = self.val, self.x
            self.busy = True
        else:
            val, x = np.empty(self.P.nslot), np.empty(nxv)
        cdef double out[8]
        cdef vector[double] more
        cdef double* o = out
        if k > 8:
            more.resize(k)
            o = more.data()
        cdef const double* wp = <const double*>cnp.PyArray_DATA(w)
        cdef const double* rp = <const double*>cnp.PyArray_DATA(r)
        cdef double* vp = <double*>cnp.PyArray_DATA(val)
        cdef double* xp = <double*>cnp.PyArray_DATA(x)
        cdef const int64_t* ae = <const int64_t*>cnp.PyArray_DATA(self.a_edge)
        cdef const int64_t* at = <const int64_t*>cnp.PyArray_DATA(self.a_target)
        cdef int64_t na = cnp.PyArray_DIM(self.a_edge, 0)
        try:
            with nogil:
                plan_moments_one(self.P[0], S[0], wp, na, ae, at, rp, o, vp, xp)
        finally:
            if own:
                self.busy = False
        return [o[i] for i in range(k)]

    def moments_vjp(self, const double[::1] w, int k, rewards, const double[::1] cot,
                    const int64_t[::1] indptr, const int32_t[::1] target):
        """(moments (k,), dw): the first k moments for the edge weights w and the gradient
        of sum_q cot[q] m_q with respect to w (adjoint method; plan_moments_vjp). indptr and
        target: the graph's edges in CSR order by source, the start vertex's first."""
        cdef const XSched* S = self._sched(k)
        cdef int64_t V = self.n_vertices, E = self.n_edges
        if w.shape[0] != E or target.shape[0] != E or indptr.shape[0] != V + 1 or cot.shape[0] != k:
            raise ValueError(f"moments_vjp: w/target/indptr/cot have lengths {w.shape[0]}/"
                             f"{target.shape[0]}/{indptr.shape[0]}/{cot.shape[0]}, expected "
                             f"{E}/{E}/{V + 1}/{k}")
        if indptr[0] != 0 or indptr[V] != E or indptr[1] != self.a_edge.shape[0]:
            raise ValueError("moments_vjp: indptr does not match the plan's edges")
        _csr_ok(indptr, target, "moments_vjp")
        cdef const double[::1] r = self._rewards(rewards)
        plan_adjoint(self.P[0])
        val = np.empty(self.P.nslot)
        x = np.empty(k * V + 1)
        work = np.empty(3 * V)
        m = np.empty(k)
        dw = np.empty(E)
        cdef double[::1] vv = val, xv = x, wk = work, mv = m, dv = dw
        cdef const int64_t* ae = <const int64_t*>cnp.PyArray_DATA(self.a_edge)
        cdef const int64_t* at = <const int64_t*>cnp.PyArray_DATA(self.a_target)
        cdef int64_t na = self.a_edge.shape[0]
        with nogil:
            plan_moments_one(self.P[0], S[0], &w[0] if E else NULL, na, ae, at, &r[0], &mv[0],
                             &vv[0] if self.P.nslot else NULL, &xv[0])
            plan_moments_vjp(self.P[0], k, &w[0] if E else NULL, &indptr[0],
                             &target[0] if E else NULL, &r[0], &vv[0] if self.P.nslot else NULL,
                             &xv[0], &cot[0], &dv[0] if E else NULL, &wk[0])
        return m, dw

    def moments_vjp_theta(self, const double[:, ::1] thetas, const double[::1] base,
                          const double[:, ::1] coef, int k, rewards, const double[:, ::1] cots,
                          const int64_t[::1] indptr, const int32_t[::1] target):
        """(moments (B, k), gradients (B, p), negative (B,) bool) for the rows of `thetas`:
        the gradient of sum_q cots[row, q] m_q with respect to theta (moments_vjp per row,
        weights base + coef . theta, the GIL released)."""
        cdef const XSched* S = self._sched(k)
        cdef int64_t B = thetas.shape[0], p = thetas.shape[1], V = self.n_vertices, E = self.n_edges
        if base.shape[0] != E or coef.shape[0] != E or coef.shape[1] != p:
            raise ValueError(f"base/coef have shapes {(base.shape[0],)}/{(coef.shape[0], coef.shape[1])}, "
                             f"expected ({E},)/({E}, {p})")
        if cots.shape[0] != B or cots.shape[1] != k:
            raise ValueError(f"cots has shape {(cots.shape[0], cots.shape[1])}, expected {(B, k)}")
        if target.shape[0] != E or indptr.shape[0] != V + 1 or indptr[0] != 0 or indptr[V] != E \
                or indptr[1] != self.a_edge.shape[0]:
            raise ValueError("moments_vjp_theta: indptr/target do not match the plan's edges")
        _csr_ok(indptr, target, "moments_vjp_theta")
        if E == 0 or p == 0:
            raise ValueError("moments_vjp_theta needs edges and parameters")
        cdef const double[::1] r = self._rewards(rewards)
        plan_adjoint(self.P[0])
        out = np.empty((B, k))
        grad = np.empty((B, p))
        negative = np.zeros(B, dtype=np.uint8)
        cdef double[:, ::1] o = out, gv = grad
        cdef uint8_t[::1] ng = negative
        cdef const int64_t* ae = <const int64_t*>cnp.PyArray_DATA(self.a_edge)
        cdef const int64_t* at = <const int64_t*>cnp.PyArray_DATA(self.a_target)
        cdef int64_t na = self.a_edge.shape[0]
        if B == 0:
            return out, grad, negative.astype(bool)
        with nogil:
            plan_moments_vjp_theta(self.P[0], S[0], B, &thetas[0, 0], p, &base[0], &coef[0, 0], na,
                                   ae, at, &indptr[0], &target[0], &r[0], &cots[0, 0], &o[0, 0],
                                   &gv[0, 0], &ng[0])
        return out, grad, negative.astype(bool)

    def moments_theta(self, const double[:, ::1] thetas, const double[::1] base,
                      const double[:, ::1] coef, int k, rewards=None, int64_t block=8):
        """Like cph_moments_theta: (moments (B, k), negative (B,) bool) for the rows of
        `thetas`, weights base + coef . theta computed block by block (4, 8 or 16)."""
        cdef const XSched* S = self._sched(k)
        cdef int64_t B = thetas.shape[0], p = thetas.shape[1], E = base.shape[0]
        if E != self.n_edges or coef.shape[0] != E or coef.shape[1] != p:
            raise ValueError(f"base/coef have shapes {(E,)}/{(coef.shape[0], coef.shape[1])}, "
                             f"expected ({self.n_edges},)/({self.n_edges}, {p})")
        if block not in (4, 8, 16):
            raise ValueError(f"block must be 4, 8 or 16, got {block}")
        cdef const double[::1] r = self._rewards(rewards)
        out = np.empty((B, k))
        negative = np.zeros(B, dtype=np.uint8)
        cdef double[:, ::1] o = out
        cdef uint8_t[::1] ng = negative
        cdef int64_t na = self.a_edge.shape[0]
        cdef const int64_t[::1] ae = self.a_edge, at = self.a_target
        if B == 0:
            return out, negative.astype(bool)
        with nogil:
            plan_moments_theta(self.P[0], S[0], B, &thetas[0, 0], p, &base[0] if E else NULL,
                               &coef[0, 0] if E and p else NULL, na, &ae[0] if na else NULL,
                               &at[0] if na else NULL, &r[0], &o[0, 0], &ng[0], block)
        return out, negative.astype(bool)


# ---------------------------------------------------------------------------------------
# distributions and sampling

def uniformisation(const int64_t[::1] indptr, const int32_t[::1] target, const double[::1] w,
                   const double[::1] lam, const double[::1] t):
    """(pdf, cdf) of a CPH at times t >= 0 by uniformisation."""
    cdef int64_t V = indptr.shape[0] - 1, nt = t.shape[0], K, i
    cdef double L = 0.0, tmax = 0.0
    for i in range(1, V):
        if lam[i] > L:
            L = lam[i]
    for i in range(nt):
        if t[i] > tmax:
            tmax = t[i]
    pdf = np.zeros(nt)
    cdf = np.zeros(nt)
    cdef double[::1] pv = pdf, cv = cdf
    cdef vector[double] ex, mass
    if L <= 0.0:
        L = 1.0
    K = steps_needed(L, tmax)
    with nogil:
        forward_steps(V, &indptr[0], &target[0] if target.shape[0] else NULL, &w[0] if w.shape[0] else NULL,
                      &lam[0], L, K, ex, mass)
        if nt:
            uniformised(ex, mass, L, nt, &t[0], 0.0, &pv[0], &cv[0])
    return pdf, cdf


def dph_forward(const int64_t[::1] indptr, const int32_t[::1] target, const double[::1] w,
                const double[::1] lam, int64_t K):
    """(pmf[0..K], survival[0..K]) of a DPH by the forward algorithm."""
    cdef int64_t V = indptr.shape[0] - 1, k
    cdef vector[double] ex, mass
    with nogil:
        forward_steps(V, &indptr[0], &target[0] if target.shape[0] else NULL, &w[0] if w.shape[0] else NULL,
                      &lam[0], 1.0, K, ex, mass)
    pmf = np.zeros(K + 1)
    surv = np.zeros(K + 1)
    for k in range(K + 1):
        surv[k] = mass[k]
        if k >= 1:
            pmf[k] = ex[k - 1]
    return pmf, surv


def sample(const int64_t[::1] indptr, const int32_t[::1] target, const double[::1] w,
           const double[::1] lam, rewards, bint discrete, uint64_t seed, int64_t n):
    """n simulated absorption times (or accumulated rewards)."""
    out = np.empty(n)
    cdef double[::1] o = out
    cdef const double[::1] r
    cdef const double* rp = NULL
    if rewards is not None:
        r = rewards
        rp = &r[0]
    if n:
        with nogil:
            c_sample(indptr.shape[0] - 1, &indptr[0], &target[0] if target.shape[0] else NULL,
                     &w[0] if w.shape[0] else NULL, &lam[0], rp, discrete, seed, n, &o[0])
    return out


def transient(const int64_t[::1] indptr, const int32_t[::1] target, const double[::1] w,
              const double[::1] lam, double[::1] p, double T, const double[::1] times,
              double[::1] soj=None, int64_t moments=0, double eps=1e-20, double mu_target=200.0,
              int64_t max_steps=100_000_000):
    """Propagates the mass vector ``p`` (in place) over a time ``T`` by adaptive
    uniformisation (transient.hpp). Returns ``(trans, flow, absorbed, mom, stats)``: the
    transient mass, the absorption density and the absorbed mass at ``times`` (offsets in
    [0, T], increasing), the integrals
    of ``u^j`` times the transient mass for ``j < moments``, and a dict of counts (``exceeded``:
    it stopped after ``max_steps`` steps, the results are incomplete); ``soj`` (per vertex) gets
    the integral of ``p`` added."""
    cdef int64_t V = indptr.shape[0] - 1, nt = times.shape[0], E = target.shape[0]
    if p.shape[0] != V or lam.shape[0] != V or w.shape[0] != E or (soj is not None and soj.shape[0] != V):
        raise ValueError("transient(): array lengths do not match the graph")
    if V and p[0] != 0.0:
        raise ValueError("transient(): the start vertex must hold no mass")
    trans = np.zeros(nt)
    flow = np.zeros(nt)
    absd = np.zeros(nt)
    mom = np.zeros(max(moments, 0))
    cdef double[::1] tv = trans, fv = flow, av = absd, mv = mom
    cdef TransientStats st
    with nogil:
        transient_propagate(V, &indptr[0], &target[0] if E else NULL, &w[0] if E else NULL, &lam[0],
                            &p[0] if V else NULL, T, nt, &times[0] if nt else NULL,
                            &tv[0] if nt else NULL, &fv[0] if nt else NULL, &av[0] if nt else NULL,
                            &soj[0] if soj is not None and V else NULL, max(moments, 0),
                            &mv[0] if moments > 0 else NULL, eps, mu_target, max_steps, st)
    stats = {"dropped": st.dropped, "steps": st.steps, "intervals": st.intervals, "exceeded": bool(st.exceeded)}
    return trans, flow, absd, mom, stats


def transient_reverse(const int64_t[::1] indptr, const int32_t[::1] target, const double[::1] w,
                      const double[::1] lam, const double[::1] p0, double T, const double[::1] g,
                      double[::1] lam_io, double[::1] grad_w, double eps=1e-20, double mu_target=200.0,
                      int64_t max_steps=100_000_000):
    """Reverse mode of :func:`transient` for ``F = lam_T . p(T) + g . int_0^T p`` from mass
    ``p0`` (transient.hpp): ``lam_io`` (in: ``lam_T``) becomes ``dF/dp0``, ``grad_w`` gets
    ``dF/dw`` added (edges of positive weight). Returns ``(p(T), stats)``."""
    cdef int64_t V = indptr.shape[0] - 1, E = target.shape[0]
    if (p0.shape[0] != V or lam.shape[0] != V or g.shape[0] != V or lam_io.shape[0] != V
            or w.shape[0] != E or grad_w.shape[0] != E):
        raise ValueError("transient_reverse(): array lengths do not match the graph")
    if V and p0[0] != 0.0:
        raise ValueError("transient_reverse(): the start vertex must hold no mass")
    p_end = np.zeros(V)
    cdef double[::1] pe = p_end
    cdef TransientStats st
    with nogil:
        transient_adjoint(V, &indptr[0], &target[0] if E else NULL, &w[0] if E else NULL, &lam[0],
                          &p0[0] if V else NULL, T, &g[0] if V else NULL, &lam_io[0] if V else NULL,
                          &grad_w[0] if E else NULL, &pe[0] if V else NULL, eps, mu_target, max_steps, st)
    stats = {"dropped": st.dropped, "steps": st.steps, "intervals": st.intervals, "exceeded": bool(st.exceeded)}
    return p_end, stats


def build_coalescent_space(int64_t D, int64_t B, merged, moves, start, int64_t max_vertices):
    """The structured block-counting (lineage counting: ``B = 1``) state space from ``start``
    (coalescent.hpp): the same ``(StateSpace, indptr, target, weight, coef)`` as :func:`build`
    with ``phasic.demography.block_counting``, without a Python call per state.
    ``merged``: ``(B, B)`` int32 type of two merged types (-1: impossible); ``moves``: ``(M, 2)``."""
    cdef const int32_t[:, ::1] mg = np.ascontiguousarray(merged, dtype=np.int32).reshape(B, B)
    cdef const int32_t[:, ::1] mv = np.ascontiguousarray(moves, dtype=np.int32).reshape(-1, 2)
    cdef const int32_t[::1] st = np.ascontiguousarray(start, dtype=np.int32)
    cdef int64_t M = mv.shape[0], d = D * B, E, k, j, p = D + M
    if st.shape[0] != d:
        raise ValueError(f"build_coalescent_space: start has length {st.shape[0]}, expected {d}")
    cdef StateSpace sp = StateSpace(<int>d)
    cdef CoalescentBuild out
    with nogil:
        build_coalescent(D, B, &mg[0, 0], M, &mv[0, 0] if M else NULL, &st[0], max_vertices, sp.t[0], out)
    if out.overflow_vertex >= 0:
        raise StateSpaceTooLarge(
            f"the state space grew past max_vertices={max_vertices} (while expanding vertex "
            f"{out.overflow_vertex}); use fewer samples or pass a larger max_vertices=")
    E = out.target.size()
    ip = np.asarray(<int64_t[:out.indptr.size()]>out.indptr.data()).copy()
    tg = np.asarray(<int32_t[:E]>out.target.data()).copy()
    coef = np.asarray(<double[:E * p]>out.coef.data()).copy().reshape(E, p) if p else np.zeros((E, 0))
    wt = np.empty(E)
    cdef double[:, ::1] cv = coef
    cdef double[::1] wv = wt
    cdef double acc
    for k in range(E):  # the generic build's weight: the coefficients summed left to right
        acc = 0.0
        for j in range(p):
            acc += cv[k, j]
        wv[k] = acc
    wv[0] = 1.0  # the start vertex's edge: probability 1
    return sp, ip, tg, wt, coef
