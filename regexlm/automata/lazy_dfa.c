/*
 * The state cache of the lazy DFA in C: position sets, their interning, and their rows.
 *
 * Loaded by regexlm/automata/native_lazy.py; regexlm/automata/lazy.py is the Python version
 * and the reference the tests hold this one to.
 *
 * A DFA state is a sorted set of positions. Positions 0 .. n-1 are the NFA's states (at a
 * character boundary); the others are points inside a character, (UTF-8 automaton, its state,
 * NFA state whose character is being read), numbered here as they are first met. Python hands
 * over, once per NFA state that reads characters and the first time a row needs it, the UTF-8
 * automaton of its character transitions (as byte-class ranges; shared automata are sent once),
 * the NFA states each transition leads to and their epsilon closures. The *moves* of a position
 * (first class, last class, target position set) follow from those, as in Python's
 * SubsetConstruction.moves: the end of a character leads to the closure of its target, a byte
 * inside one to the next point inside it.
 *
 * The row of a state is, per class, the union of the target sets of its positions' moves that
 * cover the class, interned through a hash table; rows are kept in a table of int32[capacity, K]
 * where -1 marks a row not computed yet. When a row needs an NFA state not handed over yet,
 * fill returns NEED_STATE and leaves the NFA state in `need_position`; the caller registers it
 * and calls fill again.
 *
 * Byte distances to a match: Python gives each NFA state's (the fewest usable bytes, over its
 * epsilons and whole characters) and which classes hold a usable byte; a point inside a
 * character adds the bytes that finish it (at most three), computed here and memoized.
 *
 * Positions and moves persist; states (sets, table, hash) are dropped by regexlm_lazy_clear.
 * Calls under a limit stop with OVER_BYTES or OVER_TIME (the state being made is kept, the row
 * being filled is not written), so the cache stays consistent after a refusal.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OK 0
#define NEED_STATE 1
#define NO_MEMORY (-2)
#define OVER_BYTES (-3)
#define OVER_TIME (-4)
#define UNKNOWN (-5)
#define UNREACHABLE INT32_MAX

typedef struct {
    int32_t K;
    int64_t n; /* NFA states */
    /* NFA states: what Python handed over */
    int32_t *nfa_match;   /* [n] lowest pattern index matched there, -1 for none */
    int32_t *nfa_auto;    /* [n] UTF-8 automaton of its characters, -1 none, -2 not handed over */
    int64_t *nfa_tgt_off; /* [n] its transitions' NFA targets, in tgt_nfa */
    int32_t *tgt_nfa;
    int64_t tgt_nfa_len, tgt_nfa_cap;
    int64_t *tgt_cl_off; /* per entry of tgt_nfa: its closure in `closures` */
    int32_t *tgt_cl_len;
    int64_t tgt_cl_cap;
    int32_t *closures;
    int64_t closures_len, closures_cap;
    int32_t *nfa_dist;     /* [n] bytes to a match, or NULL while no usable bytes are given */
    uint8_t *usable_class; /* [K] */
    /* UTF-8 automata: states' transitions as class ranges; next < 0: character -1-next done */
    int64_t num_autos, auto_cap, *auto_off; /* first state of each automaton in au_tr */
    int64_t num_au, au_cap, *au_tr;         /* per automaton state: first transition; +1 end */
    int64_t num_tr, tr_cap;
    int32_t *tr_lo, *tr_hi, *tr_next;
    /* positions: persistent; ids >= n are points inside a character */
    int64_t num_positions, position_cap;
    int32_t *pos_auto, *pos_u, *pos_q;
    int32_t *pos_dist;  /* memo for points inside a character: UNKNOWN until computed */
    int64_t *pos_moves; /* first move of the position, -1 while not known */
    int32_t *pos_nmoves;
    int32_t *mid_slots; /* open addressing over positions >= n by (automaton, state, NFA state) */
    int64_t mid_slot_cap;
    /* moves: persistent; targets are position lists in `targets` */
    int64_t num_moves, move_cap;
    int32_t *mv_lo, *mv_hi, *mv_len, *mv_state; /* mv_state: the target's state, -1 unknown */
    int64_t *mv_off;
    int32_t *targets;
    int64_t targets_len, targets_cap;
    /* states: dropped by clear; state 0 is dead (the empty set) */
    int64_t num_states, state_cap;
    int64_t *st_off;
    int32_t *st_len, *st_accept, *st_dist;
    uint64_t *st_hash;
    int32_t *elems;
    int64_t elems_len, elems_cap;
    int32_t *table; /* [state_cap, K] */
    int32_t *slots; /* open addressing over state ids, -1 empty */
    int64_t slot_cap;
    /* scratch */
    int32_t *set_buf, *cursor, *list_a, *list_b, *union_buf, *row_buf;
    int32_t *stamp; /* per position: the union that saw it last */
    int64_t stamp_cap, stamped;
    int32_t stamp_now;
    int64_t set_cap, union_cap;
    /* limits of the call in progress */
    double deadline;     /* thread CPU seconds; <= 0: none */
    int64_t bytes_limit; /* <= 0: none */
    int64_t fills;
    int32_t need_position;
} Engine;

static double thread_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int grow(void **p, int64_t *cap, int64_t need, size_t item) {
    if (need <= *cap) return 0;
    int64_t c = *cap < 16 ? 16 : *cap;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * item);
    if (q == NULL) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Grow several parallel arrays that share one capacity. */
#define GROW_SAME(cap, need, ...)                                                              \
    do {                                                                                       \
        if ((need) > (cap)) {                                                                  \
            int64_t c_ = (cap) < 16 ? 16 : (cap);                                              \
            while (c_ < (need)) c_ *= 2;                                                       \
            void **arrays_[] = {__VA_ARGS__};                                                  \
            size_t n_ = sizeof(arrays_) / sizeof(arrays_[0]);                                  \
            for (size_t i_ = 0; i_ < n_; i_++) {                                               \
                void *q_ = realloc(*arrays_[i_], (size_t)c_ * 8);                              \
                if (q_ == NULL) return NO_MEMORY;                                              \
                *arrays_[i_] = q_;                                                             \
            }                                                                                  \
            (cap) = c_;                                                                        \
        }                                                                                      \
    } while (0)

static uint64_t hash_set(const int32_t *a, int64_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        h ^= (uint64_t)(uint32_t)a[i];
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
    }
    return h;
}

int64_t regexlm_lazy_nbytes(const Engine *e) {
    /* the per-state arrays are allocated 8 bytes an entry (GROW_SAME) */
    return e->state_cap * (int64_t)(e->K * 4 + 5 * 8) + e->elems_cap * 4 + e->slot_cap * 4;
}

static int reset_states(Engine *e) {
    e->num_states = 0;
    e->elems_len = 0;
    for (int64_t i = 0; i < e->slot_cap; i++) e->slots[i] = -1;
    for (int64_t m = 0; m < e->num_moves; m++) e->mv_state[m] = -1;
    return 0;
}

void regexlm_lazy_free(Engine *e) {
    if (e == NULL) return;
    void *all[] = {e->nfa_match, e->nfa_auto, e->nfa_tgt_off, e->tgt_nfa, e->tgt_cl_off,
                   e->tgt_cl_len, e->closures, e->nfa_dist, e->usable_class, e->auto_off,
                   e->au_tr, e->tr_lo, e->tr_hi, e->tr_next, e->pos_auto, e->pos_u, e->pos_q,
                   e->pos_dist, e->pos_moves, e->pos_nmoves, e->mid_slots, e->mv_lo, e->mv_hi,
                   e->mv_len, e->mv_state, e->mv_off, e->targets, e->st_off, e->st_len,
                   e->st_accept, e->st_dist, e->st_hash, e->elems, e->table, e->slots,
                   e->set_buf, e->cursor, e->list_a, e->list_b, e->union_buf, e->row_buf,
                   e->stamp};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) free(all[i]);
    free(e);
}

static int add_state(Engine *e, const int32_t *set, int64_t n, uint64_t h);

/* An automaton over K byte classes for an NFA of n states with the given match indexes. */
Engine *regexlm_lazy_new(int32_t K, int64_t n, const int32_t *match) {
    Engine *e = (Engine *)calloc(1, sizeof(Engine));
    if (e == NULL) return NULL;
    e->K = K;
    e->n = n;
    int64_t m = n > 0 ? n : 1;
    e->nfa_match = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    e->nfa_auto = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    e->nfa_tgt_off = (int64_t *)malloc(sizeof(int64_t) * (size_t)m);
    e->usable_class = (uint8_t *)calloc((size_t)K, 1);
    e->slot_cap = 64;
    e->slots = (int32_t *)malloc(sizeof(int32_t) * (size_t)e->slot_cap);
    e->mid_slot_cap = 64;
    e->mid_slots = (int32_t *)malloc(sizeof(int32_t) * (size_t)e->mid_slot_cap);
    e->row_buf = (int32_t *)malloc(sizeof(int32_t) * (size_t)K);
    if (!e->nfa_match || !e->nfa_auto || !e->nfa_tgt_off || !e->usable_class || !e->slots ||
        !e->mid_slots || !e->row_buf)
        goto failed;
    for (int64_t i = 0; i < e->mid_slot_cap; i++) e->mid_slots[i] = -1;
    for (int64_t q = 0; q < n; q++) {
        e->nfa_match[q] = match[q];
        e->nfa_auto[q] = -2;
    }
    void **arrays[] = {(void **)&e->pos_auto, (void **)&e->pos_u, (void **)&e->pos_q,
                       (void **)&e->pos_dist, (void **)&e->pos_moves, (void **)&e->pos_nmoves};
    for (size_t k = 0; k < 6; k++)
        if ((*arrays[k] = malloc((size_t)m * 8)) == NULL) goto failed;
    e->position_cap = m;
    for (int64_t q = 0; q < n; q++) {
        e->pos_auto[q] = -1;
        e->pos_u[q] = 0;
        e->pos_q[q] = (int32_t)q;
        e->pos_dist[q] = UNKNOWN;
        e->pos_moves[q] = -1;
        e->pos_nmoves[q] = 0;
    }
    e->num_positions = n;
    reset_states(e);
    if (add_state(e, NULL, 0, hash_set(NULL, 0)) < 0) goto failed; /* the dead state */
    for (int32_t c = 0; c < K; c++) e->table[c] = 0;
    return e;
failed:
    regexlm_lazy_free(e);
    return NULL;
}

int32_t regexlm_lazy_clear(Engine *e) {
    /* give the memory back: a cleared cache starts small again */
    void **arrays[] = {(void **)&e->st_off, (void **)&e->st_len, (void **)&e->st_accept,
                       (void **)&e->st_dist, (void **)&e->st_hash, (void **)&e->table,
                       (void **)&e->elems};
    for (size_t k = 0; k < sizeof(arrays) / sizeof(arrays[0]); k++) {
        free(*arrays[k]);
        *arrays[k] = NULL;
    }
    e->state_cap = e->elems_cap = 0;
    int32_t *slots = (int32_t *)malloc(sizeof(int32_t) * 64);
    if (slots == NULL) return NO_MEMORY;
    free(e->slots);
    e->slots = slots;
    e->slot_cap = 64;
    reset_states(e);
    if (add_state(e, NULL, 0, hash_set(NULL, 0)) < 0) return NO_MEMORY;
    for (int32_t c = 0; c < e->K; c++) e->table[c] = 0;
    return OK;
}

/* -- NFA states, automata and positions --------------------------------------------------- */

/* A UTF-8 automaton of num_states states: state u's transitions are off[u] .. off[u + 1) of
 * lo/hi (class ranges, sorted, disjoint) and next. Returns its index, or NO_MEMORY. */
int32_t regexlm_lazy_add_automaton(Engine *e, int64_t num_states, const int64_t *off,
                                   const int32_t *lo, const int32_t *hi, const int32_t *next) {
    int64_t cap = e->auto_cap;
    GROW_SAME(cap, e->num_autos + 1, (void **)&e->auto_off);
    e->auto_cap = cap;
    cap = e->au_cap;
    GROW_SAME(cap, e->num_au + num_states + 1, (void **)&e->au_tr);
    e->au_cap = cap;
    int64_t count = off[num_states];
    cap = e->tr_cap;
    GROW_SAME(cap, e->num_tr + count, (void **)&e->tr_lo, (void **)&e->tr_hi,
              (void **)&e->tr_next);
    e->tr_cap = cap;
    e->auto_off[e->num_autos] = e->num_au;
    for (int64_t u = 0; u <= num_states; u++) e->au_tr[e->num_au + u] = e->num_tr + off[u];
    for (int64_t t = 0; t < count; t++) {
        e->tr_lo[e->num_tr + t] = lo[t];
        e->tr_hi[e->num_tr + t] = hi[t];
        e->tr_next[e->num_tr + t] = next[t];
    }
    e->num_au += num_states + 1;
    e->num_tr += count;
    return (int32_t)e->num_autos++;
}

/* NFA state q reads characters with automaton `automaton` (-1: none); its transitions lead to
 * NFA states targets[0 .. num_targets), whose closures are closure_elems[off[i] .. off[i+1]). */
static int32_t set_state(Engine *e, int64_t q, int32_t automaton, int64_t num_targets,
                         const int32_t *targets, const int64_t *off,
                         const int32_t *closure_elems) {
    if (q < 0 || q >= e->n) return -1;
    int64_t base = e->tgt_nfa_len;
    if (grow((void **)&e->tgt_nfa, &e->tgt_nfa_cap, base + num_targets, 4) < 0) return NO_MEMORY;
    int64_t cap = e->tgt_cl_cap;
    GROW_SAME(cap, base + num_targets, (void **)&e->tgt_cl_off, (void **)&e->tgt_cl_len);
    e->tgt_cl_cap = cap;
    int64_t first = num_targets ? off[0] : 0, total = num_targets ? off[num_targets] - first : 0;
    if (grow((void **)&e->closures, &e->closures_cap, e->closures_len + total, 4) < 0)
        return NO_MEMORY;
    if (total)
        memcpy(e->closures + e->closures_len, closure_elems + first,
               sizeof(int32_t) * (size_t)total);
    for (int64_t i = 0; i < num_targets; i++) {
        e->tgt_nfa[base + i] = targets[i];
        e->tgt_cl_off[base + i] = e->closures_len + (off[i] - first);
        e->tgt_cl_len[base + i] = (int32_t)(off[i + 1] - off[i]);
    }
    e->tgt_nfa_len += num_targets;
    e->closures_len += total;
    e->nfa_tgt_off[q] = base;
    e->nfa_auto[q] = automaton;
    e->pos_auto[q] = automaton;
    return OK;
}

/* NFA states handed over: states[i] reads characters with automata[i] (-1: none) and has
 * counts[i] transitions; their targets are laid end to end in `targets`, target t's closure is
 * closure_elems[closure_off[t] .. closure_off[t + 1]). */
int32_t regexlm_lazy_set_states(Engine *e, int64_t num, const int64_t *states,
                                const int32_t *automata, const int64_t *counts,
                                const int32_t *targets, const int64_t *closure_off,
                                const int32_t *closure_elems) {
    int64_t t = 0;
    for (int64_t i = 0; i < num; i++) {
        int32_t rc = set_state(e, states[i], automata[i], counts[i], targets + t,
                               closure_off + t, closure_elems);
        if (rc != OK) return rc;
        t += counts[i];
    }
    return OK;
}

/* The point inside a character (automaton, state u, NFA state q), made if new; -1 when out of
 * memory. Positions may move: callers hold ids, not pointers. */
static int64_t mid_position(Engine *e, int32_t automaton, int32_t u, int32_t q) {
    uint64_t h = ((uint64_t)(uint32_t)automaton * 0x9E3779B97F4A7C15ull) ^
                 ((uint64_t)(uint32_t)u * 0xBF58476D1CE4E5B9ull) ^
                 ((uint64_t)(uint32_t)q * 0x94D049BB133111EBull);
    h ^= h >> 31;
    int64_t mask = e->mid_slot_cap - 1;
    int64_t i = (int64_t)(h & (uint64_t)mask);
    while (e->mid_slots[i] >= 0) {
        int64_t p = e->mid_slots[i];
        if (e->pos_auto[p] == automaton && e->pos_u[p] == u && e->pos_q[p] == q) return p;
        i = (i + 1) & mask;
    }
    int64_t p = e->num_positions;
    if (p >= INT32_MAX) return -1;
    int64_t cap = e->position_cap;
    if (p + 1 > cap) {
        int64_t need = p + 1;
        int64_t c_ = cap < 16 ? 16 : cap;
        while (c_ < need) c_ *= 2;
        void **arrays[] = {(void **)&e->pos_auto, (void **)&e->pos_u, (void **)&e->pos_q,
                           (void **)&e->pos_dist, (void **)&e->pos_moves,
                           (void **)&e->pos_nmoves};
        for (size_t k = 0; k < 6; k++) {
            void *r = realloc(*arrays[k], (size_t)c_ * 8);
            if (r == NULL) return -1;
            *arrays[k] = r;
        }
        e->position_cap = c_;
    }
    e->pos_auto[p] = automaton;
    e->pos_u[p] = u;
    e->pos_q[p] = q;
    e->pos_dist[p] = UNKNOWN;
    e->pos_moves[p] = -1;
    e->pos_nmoves[p] = 0;
    e->num_positions = p + 1;
    if (2 * (p - e->n + 1) > e->mid_slot_cap) { /* rehash the points inside characters */
        int64_t slots_cap = 2 * e->mid_slot_cap;
        int32_t *slots = (int32_t *)malloc(sizeof(int32_t) * (size_t)slots_cap);
        if (slots == NULL) return -1;
        for (int64_t k = 0; k < slots_cap; k++) slots[k] = -1;
        free(e->mid_slots);
        e->mid_slots = slots;
        e->mid_slot_cap = slots_cap;
        for (int64_t r = e->n; r <= p; r++) {
            uint64_t g = ((uint64_t)(uint32_t)e->pos_auto[r] * 0x9E3779B97F4A7C15ull) ^
                         ((uint64_t)(uint32_t)e->pos_u[r] * 0xBF58476D1CE4E5B9ull) ^
                         ((uint64_t)(uint32_t)e->pos_q[r] * 0x94D049BB133111EBull);
            g ^= g >> 31;
            int64_t k = (int64_t)(g & (uint64_t)(slots_cap - 1));
            while (slots[k] >= 0) k = (k + 1) & (slots_cap - 1);
            slots[k] = (int32_t)r;
        }
        return p;
    }
    e->mid_slots[i] = (int32_t)p;
    return p;
}

/* Compute the moves of position p; NEED_STATE when its NFA state is not handed over yet. */
static int32_t compute_moves(Engine *e, int64_t p) {
    int32_t q = e->pos_q[p];
    int32_t automaton = e->nfa_auto[q];
    if (automaton == -2) {
        e->need_position = q;
        return NEED_STATE;
    }
    if (automaton < 0) { /* reads no character */
        e->pos_moves[p] = e->num_moves;
        e->pos_nmoves[p] = 0;
        return OK;
    }
    int32_t u = e->pos_u[p];
    int64_t first = e->au_tr[e->auto_off[automaton] + u];
    int64_t last = e->au_tr[e->auto_off[automaton] + u + 1];
    int64_t count = last - first;
    int64_t cap = e->move_cap;
    GROW_SAME(cap, e->num_moves + count, (void **)&e->mv_lo, (void **)&e->mv_hi,
              (void **)&e->mv_len, (void **)&e->mv_state, (void **)&e->mv_off);
    e->move_cap = cap;
    int64_t m0 = e->num_moves;
    for (int64_t t = first; t < last; t++) {
        int64_t m = m0 + (t - first);
        int32_t next = e->tr_next[t];
        e->mv_lo[m] = e->tr_lo[t];
        e->mv_hi[m] = e->tr_hi[t];
        e->mv_state[m] = -1;
        if (next < 0) { /* the character is done: the closure of its target */
            int64_t k = e->nfa_tgt_off[q] + (-1 - next);
            e->mv_off[m] = -1 - k; /* the closure in `closures`, marked negative */
            e->mv_len[m] = e->tgt_cl_len[k];
        } else {
            int64_t mid = mid_position(e, automaton, next, q);
            if (mid < 0) return NO_MEMORY;
            if (grow((void **)&e->targets, &e->targets_cap, e->targets_len + 1, 4) < 0)
                return NO_MEMORY;
            e->targets[e->targets_len] = (int32_t)mid;
            e->mv_off[m] = e->targets_len++;
            e->mv_len[m] = 1;
        }
    }
    e->pos_moves[p] = m0;
    e->pos_nmoves[p] = (int32_t)count;
    e->num_moves += count;
    return OK;
}

/* The positions of move m's target. */
static const int32_t *move_targets(const Engine *e, int64_t m) {
    int64_t off = e->mv_off[m];
    return off >= 0 ? e->targets + off : e->closures + e->tgt_cl_off[-1 - off];
}

/* Distances: per NFA state (dist[n]) and the classes holding a usable byte (usable[K]); the
 * states and points inside characters forget theirs. */
int32_t regexlm_lazy_set_distances(Engine *e, const int32_t *dist, const uint8_t *usable) {
    if (e->nfa_dist == NULL) {
        e->nfa_dist = (int32_t *)malloc(sizeof(int32_t) * (size_t)(e->n > 0 ? e->n : 1));
        if (e->nfa_dist == NULL) return NO_MEMORY;
    }
    memcpy(e->nfa_dist, dist, sizeof(int32_t) * (size_t)e->n);
    memcpy(e->usable_class, usable, (size_t)e->K);
    for (int64_t p = e->n; p < e->num_positions; p++) e->pos_dist[p] = UNKNOWN;
    for (int64_t s = 1; s < e->num_states; s++) e->st_dist[s] = UNKNOWN;
    return OK;
}

/* Fewest usable bytes from position p to a match; UNKNOWN without distances, NO_MEMORY. */
static int32_t position_distance(Engine *e, int64_t p) {
    if (e->nfa_dist == NULL) return UNKNOWN;
    if (p < e->n) return e->nfa_dist[p];
    if (e->pos_dist[p] != UNKNOWN) return e->pos_dist[p];
    int32_t automaton = e->pos_auto[p], u = e->pos_u[p], q = e->pos_q[p];
    int64_t first = e->au_tr[e->auto_off[automaton] + u];
    int64_t last = e->au_tr[e->auto_off[automaton] + u + 1];
    int32_t best = UNREACHABLE;
    for (int64_t t = first; t < last; t++) {
        int usable = 0;
        for (int32_t c = e->tr_lo[t]; c <= e->tr_hi[t] && !usable; c++) usable = e->usable_class[c];
        if (!usable) continue;
        int32_t next = e->tr_next[t], rest;
        if (next < 0) {
            rest = e->nfa_dist[e->tgt_nfa[e->nfa_tgt_off[q] + (-1 - next)]];
        } else {
            int64_t mid = mid_position(e, automaton, next, q);
            if (mid < 0) return NO_MEMORY;
            rest = position_distance(e, mid);
            if (rest == NO_MEMORY) return NO_MEMORY;
        }
        if (rest != UNREACHABLE && rest + 1 < best) best = rest + 1;
    }
    e->pos_dist[p] = best;
    return best;
}

/* -- states ------------------------------------------------------------------------------- */

static int64_t find_slot(const Engine *e, const int32_t *set, int64_t n, uint64_t h) {
    int64_t mask = e->slot_cap - 1;
    int64_t i = (int64_t)(h & (uint64_t)mask);
    while (1) {
        int32_t s = e->slots[i];
        if (s < 0) return i;
        if (e->st_hash[s] == h && e->st_len[s] == n &&
            (n == 0 || memcmp(e->elems + e->st_off[s], set, sizeof(int32_t) * (size_t)n) == 0))
            return i;
        i = (i + 1) & mask;
    }
}

static int rehash(Engine *e, int64_t cap) {
    int32_t *slots = (int32_t *)malloc(sizeof(int32_t) * (size_t)cap);
    if (slots == NULL) return -1;
    for (int64_t i = 0; i < cap; i++) slots[i] = -1;
    for (int64_t s = 0; s < e->num_states; s++) {
        int64_t i = (int64_t)(e->st_hash[s] & (uint64_t)(cap - 1));
        while (slots[i] >= 0) i = (i + 1) & (cap - 1);
        slots[i] = (int32_t)s;
    }
    free(e->slots);
    e->slots = slots;
    e->slot_cap = cap;
    return 0;
}

/* Append a new state (its row unknown); returns its id or NO_MEMORY. */
static int add_state(Engine *e, const int32_t *set, int64_t n, uint64_t h) {
    int64_t s = e->num_states;
    if (s + 1 > e->state_cap) {
        int64_t old = e->state_cap, cap = old;
        GROW_SAME(cap, s + 1, (void **)&e->st_off, (void **)&e->st_len, (void **)&e->st_accept,
                  (void **)&e->st_dist, (void **)&e->st_hash);
        int32_t *table = (int32_t *)realloc(e->table, sizeof(int32_t) * (size_t)(cap * e->K));
        if (table == NULL) return NO_MEMORY;
        e->table = table;
        e->state_cap = cap;
    }
    if (grow((void **)&e->elems, &e->elems_cap, e->elems_len + n, 4) < 0) return NO_MEMORY;
    if (2 * (s + 1) > e->slot_cap && rehash(e, 2 * e->slot_cap) < 0) return NO_MEMORY;
    if (n) memcpy(e->elems + e->elems_len, set, sizeof(int32_t) * (size_t)n);
    e->st_off[s] = e->elems_len;
    e->st_len[s] = (int32_t)n;
    e->st_hash[s] = h;
    e->elems_len += n;
    int32_t accept = -1;
    for (int64_t i = 0; i < n; i++) {
        int32_t m = set[i] < e->n ? e->nfa_match[set[i]] : -1;
        if (m >= 0 && (accept < 0 || m < accept)) accept = m;
    }
    e->st_accept[s] = accept;
    e->st_dist[s] = n ? UNKNOWN : UNREACHABLE;
    int32_t *row = e->table + s * e->K;
    for (int32_t c = 0; c < e->K; c++) row[c] = -1;
    e->slots[find_slot(e, set, n, h)] = (int32_t)s;
    e->num_states = s + 1;
    return (int)s;
}

/* The id of the state of positions set[0 .. n) (sorted, distinct), made if new; a made state
 * past the bytes limit is kept and OVER_BYTES returned through *status. */
static int32_t intern(Engine *e, const int32_t *set, int64_t n, int32_t *status) {
    uint64_t h = hash_set(set, n);
    int32_t found = e->slots[find_slot(e, set, n, h)];
    if (found >= 0) return found;
    int s = add_state(e, set, n, h);
    if (s < 0) {
        *status = NO_MEMORY;
        return -1;
    }
    if (e->bytes_limit > 0 && regexlm_lazy_nbytes(e) > e->bytes_limit) *status = OVER_BYTES;
    return s;
}

int32_t regexlm_lazy_intern(Engine *e, const int32_t *set, int64_t n, int32_t *status) {
    *status = OK;
    return intern(e, set, n, status);
}

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int32_t move_state(Engine *e, int64_t m, int32_t *status) {
    int32_t s = e->mv_state[m];
    if (s < 0) {
        s = intern(e, move_targets(e, m), e->mv_len[m], status);
        if (s >= 0) e->mv_state[m] = s;
    }
    return s;
}

/* The state of the union of the targets of moves list[0 .. n). Distinct positions are found
 * with a stamp per position; when they lie in a narrow range they come out sorted by a scan of
 * it, else they are sorted. */
static int32_t union_state(Engine *e, const int32_t *list, int64_t n, int32_t *status) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += e->mv_len[list[i]];
    if (grow((void **)&e->union_buf, &e->union_cap, total, 4) < 0 ||
        grow((void **)&e->stamp, &e->stamp_cap, e->num_positions, 4) < 0) {
        *status = NO_MEMORY;
        return -1;
    }
    for (int64_t p = e->stamped; p < e->num_positions; p++) e->stamp[p] = 0;
    if (e->stamped < e->num_positions) e->stamped = e->num_positions;
    if (++e->stamp_now == INT32_MAX) { /* wrap around: forget every stamp */
        memset(e->stamp, 0, sizeof(int32_t) * (size_t)e->stamped);
        e->stamp_now = 1;
    }
    int32_t now = e->stamp_now, lo = INT32_MAX, hi = -1;
    int32_t *buf = e->union_buf;
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *t = move_targets(e, list[i]);
        for (int32_t j = 0; j < e->mv_len[list[i]]; j++) {
            int32_t p = t[j];
            if (e->stamp[p] == now) continue;
            e->stamp[p] = now;
            buf[u++] = p;
            if (p < lo) lo = p;
            if (p > hi) hi = p;
        }
    }
    if (u > 1) {
        if ((int64_t)hi - lo < 16 * u) {
            int64_t k = 0;
            for (int32_t p = lo; p <= hi; p++)
                if (e->stamp[p] == now) buf[k++] = p;
        } else if (u <= 32) {
            for (int64_t i = 1; i < u; i++) {
                int32_t x = buf[i];
                int64_t j = i - 1;
                while (j >= 0 && buf[j] > x) {
                    buf[j + 1] = buf[j];
                    j--;
                }
                buf[j + 1] = x;
            }
        } else {
            qsort(buf, (size_t)u, sizeof(int32_t), cmp_int32);
        }
    }
    return intern(e, buf, u, status);
}

/* Compute the row of state s (see the file's comment for the result codes). */
int32_t regexlm_lazy_fill(Engine *e, int32_t s) {
    if (s <= 0 || s >= e->num_states) return s == 0 ? OK : -1;
    if (e->table[(int64_t)s * e->K] >= 0) return OK;
    if (e->deadline > 0 && (e->fills++ & 7) == 0 && thread_seconds() > e->deadline)
        return OVER_TIME;
    int64_t n = e->st_len[s];
    for (int64_t i = 0; i < n; i++) {
        int32_t p = e->elems[e->st_off[s] + i];
        if (e->pos_moves[p] < 0) {
            int32_t rc = compute_moves(e, p);
            if (rc != OK) return rc;
        }
    }
    /* the set is copied: interning may move `elems` */
    GROW_SAME(e->set_cap, n, (void **)&e->set_buf, (void **)&e->cursor, (void **)&e->list_a,
              (void **)&e->list_b);
    int32_t *set = e->set_buf, *cursor = e->cursor, *row = e->row_buf;
    memcpy(set, e->elems + e->st_off[s], sizeof(int32_t) * (size_t)n);
    int32_t status = OK;
    int32_t K = e->K;
    if (n == 1) {
        int32_t p = set[0];
        for (int32_t c = 0; c < K; c++) row[c] = 0;
        for (int32_t k = 0; k < e->pos_nmoves[p]; k++) {
            int64_t m = e->pos_moves[p] + k;
            int32_t t = move_state(e, m, &status);
            if (status < 0) return status;
            for (int32_t c = e->mv_lo[m]; c <= e->mv_hi[m]; c++) row[c] = t;
        }
    } else {
        /* sweep the classes with a cursor per position; classes covered by the same moves as
         * the class before share its state */
        int32_t *prev = e->list_a, *cur = e->list_b;
        int64_t prev_n = -1;
        for (int64_t i = 0; i < n; i++) cursor[i] = 0;
        for (int32_t c = 0; c < K; c++) {
            int64_t cur_n = 0;
            for (int64_t i = 0; i < n; i++) {
                int32_t p = set[i];
                int64_t base = e->pos_moves[p];
                int32_t k = cursor[i], nm = e->pos_nmoves[p];
                while (k < nm && e->mv_hi[base + k] < c) k++;
                cursor[i] = k;
                if (k < nm && e->mv_lo[base + k] <= c) cur[cur_n++] = (int32_t)(base + k);
            }
            if (cur_n == prev_n && memcmp(cur, prev, sizeof(int32_t) * (size_t)cur_n) == 0) {
                row[c] = row[c - 1];
                continue;
            }
            int32_t t;
            if (cur_n == 0) t = 0;
            else if (cur_n == 1) t = move_state(e, cur[0], &status);
            else t = union_state(e, cur, cur_n, &status);
            if (status < 0) return status;
            row[c] = t;
            int32_t *swap = prev;
            prev = cur;
            cur = swap;
            prev_n = cur_n;
        }
    }
    memcpy(e->table + (int64_t)s * K, row, sizeof(int32_t) * (size_t)K);
    return status; /* OK, or OVER_BYTES with the row written and the state kept */
}

/* -- queries ------------------------------------------------------------------------------ */

int32_t *regexlm_lazy_table(const Engine *e) { return e->table; }
int64_t regexlm_lazy_num_states(const Engine *e) { return e->num_states; }
int32_t regexlm_lazy_need_position(const Engine *e) { return e->need_position; }
int32_t regexlm_lazy_accept(const Engine *e, int32_t s) { return e->st_accept[s]; }

void regexlm_lazy_set_limits(Engine *e, double deadline, int64_t bytes_limit) {
    e->deadline = deadline;
    e->bytes_limit = bytes_limit;
    e->fills = 0;
}

/* The positions of state s: writes at most cap of them to out, returns how many it has. */
int64_t regexlm_lazy_key(const Engine *e, int32_t s, int32_t *out, int64_t cap) {
    int64_t n = e->st_len[s];
    memcpy(out, e->elems + e->st_off[s], sizeof(int32_t) * (size_t)(n < cap ? n : cap));
    return n;
}

/* Bytes from s to a match (min over its positions): UNKNOWN before set_distances. */
int32_t regexlm_lazy_distance(Engine *e, int32_t s) {
    int32_t d = e->st_dist[s];
    if (d != UNKNOWN) return d;
    d = UNREACHABLE;
    for (int64_t i = 0; i < e->st_len[s]; i++) {
        int32_t x = position_distance(e, e->elems[e->st_off[s] + i]);
        if (x == UNKNOWN || x == NO_MEMORY) return x;
        if (x < d) d = x;
    }
    e->st_dist[s] = d;
    return d;
}

/* For states[0 .. n): match index, distance (as regexlm_lazy_distance) and the number of
 * positions; their positions laid end to end into keys (capacity cap: returns the total, and
 * writes nothing when it is over cap). */
int64_t regexlm_lazy_describe(Engine *e, int64_t n, const int64_t *states, int32_t *accept,
                              int32_t *dist, int64_t *lengths, int32_t *keys, int64_t cap) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += e->st_len[states[i]];
    if (total > cap) return total;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t s = (int32_t)states[i];
        accept[i] = e->st_accept[s];
        dist[i] = regexlm_lazy_distance(e, s);
        lengths[i] = e->st_len[s];
        memcpy(keys + k, e->elems + e->st_off[s], sizeof(int32_t) * (size_t)e->st_len[s]);
        k += e->st_len[s];
    }
    return total;
}

/* The states after classes[i] from states[i] into out; NEED_STATE etc. as fill. */
int32_t regexlm_lazy_step(Engine *e, int64_t n, const int64_t *states, const int64_t *classes,
                          int64_t *out) {
    for (int64_t i = 0; i < n; i++) {
        int32_t s = (int32_t)states[i];
        int32_t t = e->table[(int64_t)s * e->K + classes[i]];
        if (t < 0) {
            int32_t rc = regexlm_lazy_fill(e, s);
            if (rc != OK) return rc;
            t = e->table[(int64_t)s * e->K + classes[i]];
        }
        out[i] = t;
    }
    return OK;
}

/* Run bytes data[0 .. n) from *state through byte classes; *state is updated as it goes, so a
 * caller can resume after NEED_STATE. */
int32_t regexlm_lazy_run(Engine *e, int32_t *state, const uint8_t *byte_class,
                         const uint8_t *data, int64_t n, int64_t *done) {
    int32_t s = *state;
    for (int64_t i = *done; i < n; i++) {
        if (s == 0) break;
        int32_t t = e->table[(int64_t)s * e->K + byte_class[data[i]]];
        if (t < 0) {
            int32_t rc = regexlm_lazy_fill(e, s);
            if (rc != OK) {
                *state = s;
                *done = i;
                return rc;
            }
            t = e->table[(int64_t)s * e->K + byte_class[data[i]]];
        }
        s = t;
    }
    *state = s;
    *done = n;
    return OK;
}

/* -- NFA distances ------------------------------------------------------------------------- */

/* Fewest usable bytes from every NFA state to a match, into dist[n] (UNREACHABLE where none):
 * Dijkstra backwards from the matching states over m weighted edges from[i] -> to[i] of cost
 * cost[i] (0 for an epsilon, the cheapest usable encoding of a character otherwise), with a
 * binary heap of (distance, state) keys and stale entries skipped. The Python version is
 * Distances._nfa_distances (Dial's algorithm); both give the same distances. */
int32_t regexlm_lazy_nfa_distances(int64_t n, int64_t m, const int32_t *from, const int32_t *to,
                                   const int32_t *cost, const uint8_t *is_match, int32_t *dist) {
    int64_t *off = (int64_t *)calloc((size_t)n + 1, sizeof(int64_t));
    int32_t *src = (int32_t *)malloc(sizeof(int32_t) * (size_t)(m > 0 ? m : 1));
    int32_t *w = (int32_t *)malloc(sizeof(int32_t) * (size_t)(m > 0 ? m : 1));
    int64_t heap_cap = n + m + 1;
    uint64_t *heap = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)heap_cap);
    if (off == NULL || src == NULL || w == NULL || heap == NULL) {
        free(off), free(src), free(w), free(heap);
        return NO_MEMORY;
    }
    /* edges grouped by their target: the reversed graph in CSR form */
    for (int64_t i = 0; i < m; i++) off[to[i] + 1]++;
    for (int64_t q = 0; q < n; q++) off[q + 1] += off[q];
    for (int64_t i = 0; i < m; i++) {
        int64_t at = off[to[i]]++;
        src[at] = from[i];
        w[at] = cost[i];
    }
    for (int64_t q = n; q > 0; q--) off[q] = off[q - 1];
    off[0] = 0;
    int64_t size = 0;
    for (int64_t q = 0; q < n; q++) {
        dist[q] = UNREACHABLE;
        if (is_match[q]) {
            dist[q] = 0;
            heap[size++] = (uint64_t)q; /* distance 0: the key is the state; a valid heap */
        }
    }
    while (size > 0) {
        uint64_t top = heap[0];
        uint64_t last = heap[--size];
        int64_t i = 0; /* sift the last key down from the root */
        for (;;) {
            int64_t c = 2 * i + 1;
            if (c >= size) break;
            if (c + 1 < size && heap[c + 1] < heap[c]) c++;
            if (heap[c] >= last) break;
            heap[i] = heap[c];
            i = c;
        }
        if (size > 0) heap[i] = last;
        int32_t d = (int32_t)(top >> 32), t = (int32_t)(top & 0xffffffffu);
        if (d != dist[t]) continue; /* settled earlier at a smaller distance */
        for (int64_t e = off[t]; e < off[t + 1]; e++) {
            int32_t q = src[e];
            int64_t nd = (int64_t)d + w[e];
            if (nd >= dist[q]) continue;
            dist[q] = (int32_t)nd;
            uint64_t key = ((uint64_t)nd << 32) | (uint32_t)q;
            int64_t j = size++; /* sift the new key up */
            while (j > 0 && heap[(j - 1) / 2] > key) {
                heap[j] = heap[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            heap[j] = key;
        }
    }
    free(off), free(src), free(w), free(heap);
    return OK;
}
