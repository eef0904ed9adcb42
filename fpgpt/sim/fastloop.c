/* The timing model's dispatch loop in C: fpgpt/sim/timing.py's stream_timeline, the same
 * arithmetic in the same order on IEEE doubles (built with -ffp-contract=off, no -ffast-math),
 * for the runs that record no trace, check no hazards and are not one card of a ring.
 * fpgpt/sim/fastloop.py builds and loads it (ctypes) and checks it against the Python loop
 * (tests/test_sim_fastloop.py). No Python headers: plain C called through ctypes.
 *
 * The comments name the Python they port; read that first: every rule is explained there. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NCAUSES 5
#define MAXDYN 6

typedef struct {                 /* one cost: a unit's (cycles, issue, accesses) or a DMA plan */
    int kind;                    /* -1 unit; DMA: 0 no HBM, 1 balanced, 2 per channel */
    int acc;
    double cyc;
    double hold;                 /* unit: when it takes the next instruction (an MM's issue) */
    double work1;                /* kind 1 work */
    int64_t work_off;            /* kind 2: offset of its per-channel work in the pool */
    int64_t idx_off;             /* kind 2: offset of its channel list in the pool */
    int idx_n;                   /* kind 2: channels listed, -1 when all (idx None) */
    double straggle, extra, eng, occ;
    int64_t nbytes;
} Cost;

typedef struct {                 /* a hash slot: (sid, register values) -> cost id */
    int64_t key[MAXDYN + 2];     /* the values, then INT64_MIN */
    int used;
    int cid;
} Slot;

typedef struct {
    int channels;
    Cost *costs; int64_t ncosts, capcosts;
    double *work; int64_t nwork, capwork;
    int32_t *idx; int64_t nidx, capidx;
    int64_t *dyncount;           /* dispatches of each cost as a register-dependent cost */
    Slot *slots; int64_t nslots, capslots;
    void *loop;                  /* Loop, once fl_run has started */
} Ctx;

typedef struct {                 /* the stream (StreamPlan.entries, flattened) and the state */
    int64_t n;
    const int32_t *code, *wd, *wo_off, *wo_n, *wo_u, *wo_k, *touch_off, *touch_n, *touch;
    const int32_t *cost, *dyn_sid, *dyn_n, *dyn_off, *dyn_regs;
    const int64_t *x1, *x2, *x3;
    int64_t *regs; int64_t nregs;
    int depth, pad, refresh;
    double h_iv, h_rc, h_av, h_lat;
    double h_lo, h_shift, h_mb;  /* in and out */
    double *h_base;              /* in and out, `channels` long */
    int64_t max_steps, progress_every;
    /* out */
    double t;
    double *per_busy;            /* n */
    int64_t *per_cnt;            /* n */
    double wm[4 * NCAUSES];
    int64_t hbm_bytes, steps;
    int64_t err_pc;
    int coupled;                 /* one card of a ring: pause at each NET instruction */
    int64_t pause_pc;            /* out, when paused: the NET instruction, its earliest start */
    double pause_s, pause_cost;  /* on this card and its idle-ring cost (timing.py's yield) */
} Run;

typedef int (*resolve_fn)(int64_t pc);          /* -> cost id, or < 0 on an error */
typedef int (*progress_fn)(int64_t steps);      /* nonzero on an error */

/* ---------------------------------------------------------------- the context's pools -- */

static int grow(void **p, int64_t *cap, int64_t need, size_t item) {
    if (need <= *cap) return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * item);
    if (!q) return -1;
    *p = q; *cap = c;
    return 0;
}

void *fl_new(int channels) {
    Ctx *c = calloc(1, sizeof(Ctx));
    if (c) c->channels = channels;
    return c;
}

/* The sizes fastloop.py must agree with (it checks them when it loads the library). */
int fl_ncauses(void) { return NCAUSES; }
int fl_maxdyn(void) { return MAXDYN; }

static void loop_free(void *lp);

void fl_free(void *vc) {
    Ctx *c = vc;
    if (!c) return;
    loop_free(c->loop);
    free(c->costs); free(c->work); free(c->idx); free(c->dyncount); free(c->slots);
    free(c);
}

static int64_t add_cost(Ctx *c, Cost k) {
    int64_t cap = c->capcosts;
    if (grow((void **)&c->costs, &c->capcosts, c->ncosts + 1, sizeof(Cost))) return -1;
    if (c->capcosts != cap) {
        int64_t *d = realloc(c->dyncount, (size_t)c->capcosts * sizeof(int64_t));
        if (!d) return -1;
        memset(d + cap, 0, (size_t)(c->capcosts - cap) * sizeof(int64_t));
        c->dyncount = d;
    }
    c->costs[c->ncosts] = k;
    return c->ncosts++;
}

int64_t fl_add_unit_cost(void *vc, double cyc, double hold, int acc) {
    Cost k = {0};
    k.kind = -1; k.cyc = cyc; k.hold = hold; k.acc = acc;
    return add_cost(vc, k);
}

int64_t fl_add_dma_cost(void *vc, int kind, double work1, const double *work, const int32_t *idx,
                        int idx_n, double straggle, int64_t nbytes, double extra, double eng,
                        double occ) {
    Ctx *c = vc;
    Cost k = {0};
    k.kind = kind; k.work1 = work1; k.idx_n = idx_n; k.straggle = straggle; k.nbytes = nbytes;
    k.extra = extra; k.eng = eng; k.occ = occ;
    if (kind == 2) {
        if (grow((void **)&c->work, &c->capwork, c->nwork + c->channels, sizeof(double))) return -1;
        memcpy(c->work + c->nwork, work, (size_t)c->channels * sizeof(double));
        k.work_off = c->nwork; c->nwork += c->channels;
        if (idx_n > 0) {
            if (grow((void **)&c->idx, &c->capidx, c->nidx + idx_n, sizeof(int32_t))) return -1;
            memcpy(c->idx + c->nidx, idx, (size_t)idx_n * sizeof(int32_t));
            k.idx_off = c->nidx; c->nidx += idx_n;
        }
    }
    return add_cost(c, k);
}

/* Forget every (sid, values) -> cost id entry: the Python loop's cost cache was cleared
 * (timing._dyn_cost at its size limit), so a key seen again gets a new cost object there. */
void fl_clear_slots(void *vc) {
    Ctx *c = vc;
    if (c->slots) memset(c->slots, 0, (size_t)c->capslots * sizeof(Slot));
    c->nslots = 0;
}

int64_t fl_dyncount(void *vc, int64_t cid) { return ((Ctx *)vc)->dyncount[cid]; }

static uint64_t hash_key(const int64_t *key, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) { h ^= (uint64_t)key[i]; h *= 1099511628211ull; h ^= h >> 29; }
    return h;
}

static Slot *find_slot(Slot *slots, int64_t cap, const int64_t *key, int n) {
    uint64_t i = hash_key(key, n) & (uint64_t)(cap - 1);
    for (;;) {
        Slot *s = &slots[i];
        if (!s->used) return s;
        if (memcmp(s->key, key, (size_t)n * sizeof(int64_t)) == 0 && s->key[n] == INT64_MIN)
            return s;
        i = (i + 1) & (uint64_t)(cap - 1);
    }
}

static int insert_slot(Ctx *c, const int64_t *key, int n, int cid) {
    if ((c->nslots + 1) * 2 > c->capslots) {           /* rehash at half full */
        int64_t cap = c->capslots ? c->capslots * 2 : 1024;
        Slot *ns = calloc((size_t)cap, sizeof(Slot));
        if (!ns) return -1;
        for (int64_t i = 0; i < c->capslots; i++) {
            Slot *s = &c->slots[i];
            if (!s->used) continue;
            int m = 0;
            while (s->key[m] != INT64_MIN) m++;
            *find_slot(ns, cap, s->key, m) = *s;
        }
        free(c->slots);
        c->slots = ns; c->capslots = cap;
    }
    Slot *s = find_slot(c->slots, c->capslots, key, n);
    memcpy(s->key, key, (size_t)n * sizeof(int64_t));
    s->key[n] = INT64_MIN;                             /* the key's end */
    s->used = 1; s->cid = cid;
    c->nslots++;
    return 0;
}

/* ------------------------------------------------------------------------- the loop -- */

/* Python's float floor division (CPython's float_floor_div / _float_div_mod). */
static double py_floordiv(double vx, double wx) {
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod) {
        if ((wx < 0) != (mod < 0)) { mod += wx; div -= 1.0; }
    }
    double fd;
    if (div) {
        fd = floor(div);
        if (div - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, vx / wx);
    }
    return fd;
}

typedef struct {                 /* a DMA transfer not yet booked (timing.py's inflight list) */
    int64_t k, pc;
    double ready, s, e, e_hbm, eng, steal, occ;
    int has_bl, bl_wcause, bl_tcause;
    double bl_t, bl_ready, bl_traise;
} Rec;

typedef struct { double *v; int64_t len, cap; } Ring;

typedef struct {
    Run *r;
    Ring ring[4];
    double free_[4];
    double last_[4];             /* each engine's last completion (timing.py's `last`) */
    Rec *fl; int64_t head, tail, capfl;
    int64_t frozen;
    double dma_end;
} St;

typedef struct {                 /* the loop's state between calls of fl_run (a ring pauses) */
    St st;
    double *pend; int *pend_u;
    double max_pend, traise, t, h_lo, h_shift, h_mb;
    int tcause, wcause, wc, started, paused;
    int64_t pc, steps, run0, check_at;
    int p_code; int64_t p_cid; double p_s, p_cost;  /* the paused NET instruction */
} Loop;

static int ring_push(Ring *q, double x) {
    if (q->len == q->cap && grow((void **)&q->v, &q->cap, q->len + 1, sizeof(double))) return -1;
    q->v[q->len++] = x;
    return 0;
}

static void blame(Run *r, int u, double f0, double s, double td, double ready, int wcause,
                  double tr, int tcs) {
    double *row = r->wm + u * NCAUSES;
    if (s > ready) {
        double lo = ready > f0 ? ready : f0;
        row[u] += s - lo;
        s = lo;
    }
    if (s > td) {
        double lo = td > f0 ? td : f0;
        row[wcause] += s - lo;
        s = lo;
    }
    if (s <= f0) return;
    if (tr > f0) {
        double hi = tr < s ? tr : s;
        row[tcs] += hi - f0;
        row[4] += s - hi;
    } else {
        row[4] += s - f0;
    }
}

static void book(St *st) {
    Run *r = st->r;
    while (st->head < st->tail) {
        Rec *q = &st->fl[st->head];
        if (q->k > st->frozen) break;
        r->per_busy[q->pc] += q->e - q->s;
        if (q->s > st->dma_end && q->has_bl)
            blame(r, 0, st->dma_end, q->s, q->bl_t, q->bl_ready, q->bl_wcause, q->bl_traise,
                  q->bl_tcause);
        st->dma_end = q->e;
        st->head++;
    }
    if (st->head == st->tail) st->head = st->tail = 0;
}

static void finalize(St *st, int64_t upto) {
    if (upto > st->frozen) st->frozen = upto;
    book(st);
}

static void steal(St *st, double sc, double ec, int acc, int64_t i) {
    double span = ec > sc ? ec - sc : 1.0;
    double prev_e = -1.0;
    int moving = 0, scan = 0;
    double *ring0 = st->ring[0].v;
    for (; i < st->tail; i++) {
        Rec *q = &st->fl[i];
        if (!moving) {
            double rs = q->s;
            if (rs >= ec) return;
            double re = q->e;
            if (re > sc) {
                double ov = (ec < re ? ec : re) - (sc > rs ? sc : rs);
                if (ov > 0) {
                    q->steal += (double)acc * ov / span * q->occ;
                    moving = scan = 1;
                }
            }
            if (!moving) { prev_e = re; continue; }
        } else if (scan) {
            double rs = q->s;
            if (rs >= ec) {
                scan = 0;
            } else {
                double re = q->e;
                if (re > sc) {
                    double ov = (ec < re ? ec : re) - (sc > rs ? sc : rs);
                    if (ov > 0) q->steal += (double)acc * ov / span * q->occ;
                }
            }
        }
        double x = q->ready;
        double s_new = x > prev_e ? x : prev_e;
        double s_old = q->s;
        if (s_new > s_old) {
            q->e_hbm += s_new - s_old;
            q->s = s_old = s_new;
        }
        double e_new = s_old + q->eng + q->steal;
        x = q->e_hbm;
        if (x > e_new) e_new = x;
        if (prev_e > e_new) e_new = prev_e;
        q->e = e_new;
        ring0[q->k] = e_new;
        prev_e = e_new;
    }
    if (moving) st->free_[0] = prev_e;
}

static void loop_free(void *vl) {
    Loop *lp = vl;
    if (!lp) return;
    for (int u = 0; u < 4; u++) free(lp->st.ring[u].v);
    free(lp->st.fl); free(lp->pend); free(lp->pend_u);
    free(lp);
}

/* Run the stream from its start, or, after a pause, from the paused NET instruction, which
 * completed at `resume_e`. Returns 0 at HALT, 5 paused at a NET instruction (r->coupled:
 * r->pause_*), or: 1 ran off the end (err_pc), 2 the step limit, 3 a callback's error,
 * 4 out of memory. */
int fl_run(void *vc, Run *r, resolve_fn resolve, progress_fn progress, int64_t trim_at,
           double resume_e) {
    Ctx *c = vc;
    Loop *lp = c->loop;
    int rc = 0;
    const int depth = r->depth, pad = r->pad;
    if (!lp) {
        lp = c->loop = calloc(1, sizeof(Loop));
        if (!lp) return 4;
        for (int u = 0; u < 4; u++) {
            for (int j = 0; j < pad; j++)
                if (ring_push(&lp->st.ring[u], 0.0)) return 4;
        }
        lp->st.frozen = pad - 1;
        lp->pend = calloc((size_t)r->nregs, sizeof(double));
        lp->pend_u = calloc((size_t)r->nregs, sizeof(int));
        if (!lp->pend || !lp->pend_u) return 4;
        lp->tcause = lp->wcause = lp->wc = 4;
        int64_t every = r->progress_every;
        lp->check_at = every < r->max_steps + 1 ? every : r->max_steps + 1;
        lp->h_lo = r->h_lo; lp->h_shift = r->h_shift; lp->h_mb = r->h_mb;
    }
    St *stp = &lp->st;
#define st (*stp)
    st.r = r;
    double *pend = lp->pend;
    int *pend_u = lp->pend_u;
    double max_pend = lp->max_pend, traise = lp->traise, t = lp->t;
    int tcause = lp->tcause, wcause = lp->wcause, wc = lp->wc;
    int64_t pc = lp->pc, steps = lp->steps, run0 = lp->run0, check_at = lp->check_at;
    const int64_t every = r->progress_every;
    double h_lo = lp->h_lo, h_shift = lp->h_shift, h_mb = lp->h_mb;
    double *h_base = r->h_base;
    const double h_iv = r->h_iv, h_rc = r->h_rc, h_av = r->h_av, h_lat = r->h_lat;
    const int refresh = r->refresh, nch = c->channels, coupled = r->coupled;
    int64_t key[MAXDYN + 2];
    int code;
    int64_t cid;
    double s, e, cost;
    const Cost *k;
    Ring *ru;

    if (lp->paused) {                                   /* timing.py: e = yield (pc, s, cost) */
        lp->paused = 0;
        code = lp->p_code; cid = lp->p_cid; s = lp->p_s; cost = lp->p_cost;
        k = &c->costs[cid];
        ru = &st.ring[code];
        e = resume_e;
        goto net_done;
    }
    for (;;) {
        if (pc < 0 || pc >= r->n) { r->err_pc = pc; rc = 1; break; }
        code = r->code[pc];
        if (max_pend > t) {
            const int32_t *tt = r->touch + r->touch_off[pc];
            for (int j = 0; j < r->touch_n[pc]; j++) {
                int reg = tt[j];
                if (pend[reg] > t) { t = traise = pend[reg]; tcause = pend_u[reg]; }
            }
        }
        if (code < 4) {
            ru = &st.ring[code];
            double q = ru->v[ru->len - depth];
            if (code == 0) {
                int64_t kq = ru->len - depth;
                if (kq > st.frozen) st.frozen = kq;
            }
            if (q > t) { t = traise = q; tcause = code; }
            double ready = t;
            int wd = r->wd[pc];
            if (wd) {
                Ring *r0 = &st.ring[0];
                int64_t kq = r0->len - wd;
                if (kq > st.frozen) st.frozen = kq;
                double cc = r0->v[r0->len - wd];
                if (cc > ready) { ready = cc; wcause = 0; }
            }
            for (int j = 0; j < r->wo_n[pc]; j++) {
                int wu = r->wo_u[r->wo_off[pc] + j];
                int kk = r->wo_k[r->wo_off[pc] + j];
                Ring *rw = &st.ring[wu];
                double cc = rw->v[rw->len - kk];
                if (cc > ready) { ready = cc; wcause = wu; }
            }
            double f0 = st.free_[code];
            s = f0;
            if (ready > s) s = ready;
            cid = r->cost[pc];
            if (cid < 0) {                              /* register-dependent: (sid, values) */
                int nd = r->dyn_n[pc];
                key[0] = r->dyn_sid[pc];
                for (int j = 0; j < nd; j++) key[1 + j] = r->regs[r->dyn_regs[r->dyn_off[pc] + j]];
                Slot *sl = c->capslots ? find_slot(c->slots, c->capslots, key, nd + 1) : NULL;
                if (sl && sl->used) {
                    cid = sl->cid;
                } else {
                    cid = resolve(pc);
                    if (cid < 0) { rc = 3; break; }
                    if (insert_slot(c, key, nd + 1, (int)cid)) { rc = 4; break; }
                }
                c->dyncount[cid]++;
            }
            k = &c->costs[cid];
            if (code == 0) {
                double e_hbm;
                if (k->kind == 0) {
                    e_hbm = s + 1.0 + k->extra;
                } else {
                    double w, fin;
                    if (refresh) {
                        double kq = py_floordiv(s, h_iv);
                        w = s - kq * h_iv - h_rc;
                        w = kq * h_av + (w > 0.0 ? w : 0.0);
                    } else {
                        w = s;
                    }
                    if (k->kind == 1) {
                        w = w - h_shift;
                        if (w > h_lo) h_lo = w;
                        h_shift = h_shift + k->work1;
                        fin = (h_mb > h_lo ? h_mb : h_lo) + h_shift + k->straggle;
                    } else {
                        const double *work = c->work + k->work_off;
                        if (h_shift == 0.0 && h_lo == -INFINITY) {
                            for (int i = 0; i < nch; i++) {
                                double b = h_base[i];
                                h_base[i] = (b > w ? b : w) + work[i];
                            }
                        } else {
                            for (int i = 0; i < nch; i++) {
                                double b = h_base[i];
                                double y = (b > h_lo ? b : h_lo) + h_shift;
                                h_base[i] = (y > w ? y : w) + work[i];
                            }
                        }
                        h_lo = -INFINITY; h_shift = 0.0;
                        h_mb = h_base[0];
                        for (int i = 1; i < nch; i++) if (h_base[i] > h_mb) h_mb = h_base[i];
                        if (k->idx_n < 0) {
                            fin = h_mb;
                        } else {
                            const int32_t *ix = c->idx + k->idx_off;
                            fin = h_base[ix[0]];
                            for (int i = 1; i < k->idx_n; i++)
                                if (h_base[ix[i]] > fin) fin = h_base[ix[i]];
                        }
                    }
                    if (refresh) {
                        double kq = py_floordiv(fin, h_av);
                        w = fin - kq * h_av;
                        fin = kq * h_iv + (w > 0 ? h_rc + w : 0.0);
                    }
                    e_hbm = fin + h_lat + k->extra;
                }
                e = s + k->eng > e_hbm ? s + k->eng : e_hbm;
                if (e < f0) e = f0;
                r->hbm_bytes += k->nbytes;
                if (st.tail == st.capfl &&
                    grow((void **)&st.fl, &st.capfl, st.tail + 1, sizeof(Rec))) { rc = 4; break; }
                Rec *nr = &st.fl[st.tail++];
                nr->k = ru->len; nr->pc = pc; nr->ready = ready; nr->s = s; nr->e = e;
                nr->e_hbm = e_hbm; nr->eng = k->eng; nr->steal = 0.0; nr->occ = k->occ;
                nr->has_bl = s > f0;
                if (nr->has_bl) {
                    nr->bl_t = t; nr->bl_ready = ready; nr->bl_wcause = wcause;
                    nr->bl_traise = traise; nr->bl_tcause = tcause;
                }
                if (st.tail - st.head > 64) book(&st);
            } else {
                cost = k->cyc;
                double e0 = st.last_[code];             /* busy until its last completion */
                if (e0 > f0) f0 = e0;
                /* an engine starts at max(free, ready): s > f0 means s == ready (timing.py
                 * inlines this call for speed) */
                if (s > f0) blame(r, code, f0, s, t, ready, wcause, traise, tcause);
                e = s + cost;
                if (coupled && code == 3) {             /* the ring's partners (sim/system.py) */
                    lp->paused = 1;
                    lp->p_code = code; lp->p_cid = cid; lp->p_s = s; lp->p_cost = cost;
                    r->pause_pc = pc; r->pause_s = s; r->pause_cost = cost;
                    rc = 5;
                    break;
                }
            net_done:;
                double e0n = st.last_[code];
                if (code == 1 && e <= e0n) e = e0n + 1.0;  /* in order: an empty MM behind a drain */
                if (s >= e0n) r->per_busy[pc] += cost;
                else r->per_busy[pc] += e - e0n;
                if (k->acc && st.tail > st.head && st.fl[st.tail - 1].e > s) {
                    int64_t lo = st.frozen + 1 - st.fl[st.head].k;
                    if (lo <= 0) {
                        if (st.fl[st.head].s < e) steal(&st, s, e, k->acc, st.head);
                    } else if (lo < st.tail - st.head && st.fl[st.head + lo].s < e) {
                        steal(&st, s, e, k->acc, st.head + lo);
                    }
                }
            }
            if (code) {
                st.last_[code] = e;
                st.free_[code] = k->hold < cost ? s + k->hold : e;
            } else {
                st.free_[code] = e;
            }
            if (ring_push(ru, e)) { rc = 4; break; }
            int64_t x1 = r->x1[pc];
            if (x1) {
                r->regs[x1] = 0;                        /* ARGMAX: token unknown to timing */
                pend[x1] = e;
                pend_u[x1] = code;
                if (e > max_pend) max_pend = e;
            }
            r->per_cnt[pc]++;
            t += 1.0;
            pc += 1;
            continue;
        }
        /* CTRL: executes in the dispatcher once its waits are met. */
        r->per_cnt[pc]++;
        int nw = r->wo_n[pc];
        if (nw) {
            double t0 = t;
            for (int j = 0; j < nw; j++) {
                int wu = r->wo_u[r->wo_off[pc] + j];
                int kk = r->wo_k[r->wo_off[pc] + j];
                Ring *rw = &st.ring[wu];
                if (wu == 0 && st.tail > st.head) finalize(&st, rw->len - kk);
                double cc = rw->v[rw->len - kk];
                if (cc > t0) { t0 = cc; wc = wu; }
            }
            if (t0 > t) { t = traise = t0; tcause = wc; }
        }
        int64_t x1 = r->x1[pc];
        if (code == 15) {                               /* BNZ */
            t += 1.0;
            if (r->regs[x1]) {
                steps += pc - run0 + 1;
                if (steps >= check_at) {
                    if (steps > r->max_steps) { rc = 2; break; }
                    if (progress && progress(steps)) { rc = 3; break; }
                    int64_t nx = steps + every - steps % every;
                    check_at = nx < r->max_steps + 1 ? nx : r->max_steps + 1;
                }
                pc = run0 = r->x2[pc];
            } else {
                pc += 1;
            }
            continue;
        }
        if (code == 13) {                               /* SETI */
            if (x1) r->regs[x1] = r->x2[pc] & 0xFFFFFFFFll;
        } else if (code == 14) {                        /* ADDI */
            if (x1) r->regs[x1] = (r->regs[r->x2[pc]] + r->x3[pc]) & 0xFFFFFFFFll;
        } else if (code == 12 || code == 11) {          /* SYNC, HALT */
            if (st.tail > st.head) finalize(&st, st.ring[0].len - 1);
            for (int u = 0; u < 4; u++) {
                double cu = st.last_[u] > st.free_[u] ? st.last_[u] : st.free_[u];
                if (cu > t) { t = traise = cu; tcause = u; }
            }
            int64_t mx = 0;
            for (int u = 0; u < 4; u++) if (st.ring[u].len > mx) mx = st.ring[u].len;
            if (mx > trim_at) {
                for (int u = 0; u < 4; u++) {
                    Ring *q = &st.ring[u];
                    memmove(q->v, q->v + (q->len - pad), (size_t)pad * sizeof(double));
                    q->len = pad;
                }
                st.frozen = pad - 1;
            }
            if (code == 11) {
                steps += pc - run0 + 1;
                if (steps > r->max_steps) rc = 2;
                break;
            }
        }
        t += 1.0;
        pc += 1;
    }
#undef st
    lp->max_pend = max_pend; lp->traise = traise; lp->t = t;
    lp->tcause = tcause; lp->wcause = wcause; lp->wc = wc;
    lp->pc = pc; lp->steps = steps; lp->run0 = run0; lp->check_at = check_at;
    lp->h_lo = h_lo; lp->h_shift = h_shift; lp->h_mb = h_mb;
    r->t = t;
    r->steps = steps;
    r->h_lo = h_lo; r->h_shift = h_shift; r->h_mb = h_mb;
    return rc;
}
