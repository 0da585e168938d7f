/*
 * The state cache of the lazy DFA in C: position sets, their interning, and their rows.
 *
 * Loaded by regexlm/automata/native_lazy.py; regexlm/automata/lazy.py is the Python version
 * and the reference the tests hold this one to.
 *
 * A DFA state is a sorted set of positions. Positions 0 .. n-1 are the NFA's states (at a
 * character boundary); the others are points inside a character. Python gives, once, the UTF-8
 * automaton of each NFA state's character transitions (as byte-class ranges; shared automata
 * are sent once), the NFA states each transition leads to and the epsilon transitions, as flat
 * arrays. The first time a row needs NFA state q, q is *prepared*: the epsilon closures of its
 * targets are found (each NFA state's once, kept) and, where its automaton has U states, it gets
 * a block of U ids from a counter that starts at n: the point at automaton state u while q's
 * character is read is id mid_base[q] + u. Blocks are given in increasing order, so an id
 * decodes back to (q, u) by a binary search over the blocks' bases.
 *
 * Nothing is stored per position: the *moves* of a position (first class, last class, target
 * position set, as in Python's SubsetConstruction.moves) are its automaton state's transitions,
 * read on the fly (an NFA state reads from its automaton's state 0). The end of a character
 * leads to the closure of its NFA target (kept as handed over), a byte inside one to the single
 * point mid_base[q] + the next automaton state.
 *
 * The row of a state is, per class, the union of the target sets of its positions' moves that
 * cover the class, interned through a hash table; rows are kept in a table of int32[capacity, K]
 * where -1 marks a row not computed yet.
 *
 * Byte distances to a match: Python gives each NFA state's (the fewest usable bytes, over its
 * epsilons and whole characters) and which classes hold a usable byte; a point inside a
 * character adds the fewest usable bytes that finish the character with each of its results,
 * from a table per automaton made on first need after the distances are given.
 *
 * What persists: the NFA (its targets, epsilons and the closures found), the automata, and the
 * id blocks, so ids, and the keys Python makes of them, stay valid across clears. What
 * regexlm_lazy_clear drops: the states (sets, table, hash) and what names them (the closures'
 * state memo). Calls under a limit stop with OVER_BYTES or OVER_TIME (the state being made is
 * kept, the row being filled is not written), so the cache stays consistent after a refusal.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OK 0
#define NO_MEMORY (-2)
#define OVER_BYTES (-3)
#define OVER_TIME (-4)
#define UNKNOWN (-5)
#define UNREACHABLE INT32_MAX

typedef struct {
    int32_t K;
    int64_t n; /* NFA states */
    /* NFA states: what Python gave (regexlm_lazy_set_nfa) */
    int32_t *nfa_match;   /* [n] lowest pattern index matched there, -1 for none */
    int32_t *given_auto;  /* [n] UTF-8 automaton of its characters, -1 none; NULL: not given */
    int32_t *nfa_auto;    /* [n] the same once the state is prepared, -2 before */
    int64_t *nfa_tgt_off; /* [n + 1] its transitions' NFA targets, in tgt_nfa */
    int64_t *mid_base;    /* [n] its block of ids of points inside a character, -1 none */
    int64_t *eps_off;     /* [n + 1] its epsilon transitions' targets, in eps_to */
    int32_t *eps_to;
    int64_t num_eps;
    int64_t *cl_off;   /* [n] its epsilon closure in `closures`, -1 not found yet */
    int32_t *cl_len;   /* [n] */
    int32_t *cl_stack; /* [n] scratch of the closure search */
    int32_t *tgt_nfa;
    int64_t tgt_nfa_len, tgt_nfa_cap;
    int64_t *tgt_cl_off; /* per entry of tgt_nfa: its closure in `closures` (once prepared) */
    int32_t *tgt_cl_len;
    int32_t *tgt_state; /* per entry: the state of its closure, -1 unknown (states change) */
    int64_t tgt_cl_cap;
    int32_t *closures;
    int64_t closures_len, closures_cap;
    int32_t *nfa_dist;     /* [n] bytes to a match, or NULL while no usable bytes are given */
    uint8_t *usable_class; /* [K] */
    /* UTF-8 automata: states' transitions as class ranges; next < 0: character -1-next done */
    int64_t num_autos, auto_cap;
    int64_t *auto_off;    /* first state of each automaton in au_tr */
    int64_t *auto_states; /* its number of states */
    int64_t *auto_ends;   /* 1 + the largest character index its transitions finish */
    int64_t *auto_finish; /* its table in `finish`, -1 until needed after set_distances */
    int64_t num_au, au_cap, *au_tr; /* per automaton state: first transition; +1 end */
    int64_t num_tr, tr_cap;
    int32_t *tr_lo, *tr_hi, *tr_next;
    /* per automaton [states, ends]: fewest usable bytes from a state to finishing character j */
    int32_t *finish;
    int64_t finish_len, finish_cap;
    /* ids of points inside a character: blocks, in the order given (increasing base) */
    int64_t num_positions; /* n + the blocks' sizes: where the next block starts */
    int64_t num_owners, owner_cap;
    int64_t *owner_base;
    int32_t *owner_q;
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
    /* scratch: per position of the set being filled, its transitions [cursor, cursor_end),
     * where its NFA state's targets start in tgt_nfa and its block of ids */
    int64_t *cursor, *cursor_end, *set_tgt, *set_mid;
    int32_t *list_a, *list_b, *union_buf, *row_buf;
    int32_t *stamp; /* [n] per NFA state: the union that saw it last */
    int32_t stamp_now;
    int64_t set_cap, union_cap;
    /* limits of the call in progress */
    double deadline;     /* thread CPU seconds; <= 0: none */
    int64_t bytes_limit; /* <= 0: none */
    int64_t fills;
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

/* Grow several parallel arrays that share one capacity; each argument is ARRAY(pointer). */
typedef struct {
    void **p;
    size_t item;
} Array;
#define ARRAY(x) ((Array){(void **)&(x), sizeof(*(x))})
#define GROW_SAME(cap, need, ...)                                                              \
    do {                                                                                       \
        if ((need) > (cap)) {                                                                  \
            int64_t c_ = (cap) < 16 ? 16 : (cap);                                              \
            while (c_ < (need)) c_ *= 2;                                                       \
            Array arrays_[] = {__VA_ARGS__};                                                   \
            size_t n_ = sizeof(arrays_) / sizeof(arrays_[0]);                                  \
            for (size_t i_ = 0; i_ < n_; i_++) {                                               \
                void *q_ = realloc(*arrays_[i_].p, (size_t)c_ * arrays_[i_].item);             \
                if (q_ == NULL) return NO_MEMORY;                                              \
                *arrays_[i_].p = q_;                                                           \
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
    /* per state: its row, st_off and st_hash (8 bytes each), st_len, st_accept, st_dist */
    return e->state_cap * (int64_t)(e->K * 4 + 2 * 8 + 3 * 4) + e->elems_cap * 4 +
           e->slot_cap * 4;
}

/* Bytes of what a clear keeps, as allocated: the NFA states handed over, the UTF-8 automata and
 * their distance tables, the id blocks and the scratch buffers. */
int64_t regexlm_lazy_kept_nbytes(const Engine *e) {
    int64_t m = e->n > 0 ? e->n : 1;
    /* per NFA state: match, given and prepared automaton, targets' and epsilons' offsets,
     * block, closure offset and length, search stack */
    int64_t per_state = 4 + 4 + 4 + 8 + 8 + 8 + 8 + 4 + 4;
    int64_t nfa = m * per_state + 16 + e->num_eps * 4 + (e->nfa_dist != NULL ? m * 4 : 0) + e->K +
                  e->tgt_nfa_cap * 4 + e->tgt_cl_cap * (8 + 4 + 4) + e->closures_cap * 4;
    int64_t automata = e->auto_cap * 4 * 8 + e->au_cap * 8 + e->tr_cap * 3 * 4 + e->finish_cap * 4;
    int64_t ids = e->owner_cap * (8 + 4);
    int64_t scratch = e->set_cap * (4 * 8 + 2 * 4) + e->union_cap * 4 + m * 4 + (int64_t)e->K * 4;
    return (int64_t)sizeof(Engine) + nfa + automata + ids + scratch;
}

static int reset_states(Engine *e) {
    e->num_states = 0;
    e->elems_len = 0;
    for (int64_t i = 0; i < e->slot_cap; i++) e->slots[i] = -1;
    for (int64_t k = 0; k < e->tgt_nfa_len; k++) e->tgt_state[k] = -1;
    return 0;
}

void regexlm_lazy_free(Engine *e) {
    if (e == NULL) return;
    void *all[] = {e->nfa_match, e->given_auto, e->nfa_auto, e->nfa_tgt_off, e->mid_base,
                   e->eps_off, e->eps_to, e->cl_off, e->cl_len, e->cl_stack, e->tgt_nfa,
                   e->tgt_cl_off, e->tgt_cl_len, e->tgt_state, e->closures, e->nfa_dist,
                   e->usable_class, e->auto_off, e->auto_states, e->auto_ends, e->auto_finish,
                   e->au_tr, e->tr_lo, e->tr_hi, e->tr_next, e->finish, e->owner_base,
                   e->owner_q, e->st_off, e->st_len, e->st_accept, e->st_dist, e->st_hash,
                   e->elems, e->table, e->slots, e->cursor, e->cursor_end, e->set_tgt,
                   e->set_mid, e->list_a, e->list_b, e->union_buf, e->row_buf, e->stamp};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) free(all[i]);
    free(e);
}

static int add_state(Engine *e, const int32_t *set, int64_t n, uint64_t h);
static void sort_ids(int32_t *a, int64_t n);

/* An automaton over K byte classes for an NFA of n states with the given match indexes. */
Engine *regexlm_lazy_new(int32_t K, int64_t n, const int32_t *match) {
    Engine *e = (Engine *)calloc(1, sizeof(Engine));
    if (e == NULL) return NULL;
    e->K = K;
    e->n = n;
    int64_t m = n > 0 ? n : 1;
    e->nfa_match = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    e->nfa_auto = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    e->nfa_tgt_off = (int64_t *)calloc((size_t)m + 1, sizeof(int64_t));
    e->mid_base = (int64_t *)malloc(sizeof(int64_t) * (size_t)m);
    e->stamp = (int32_t *)calloc((size_t)m, sizeof(int32_t));
    e->usable_class = (uint8_t *)calloc((size_t)K, 1);
    e->slot_cap = 64;
    e->slots = (int32_t *)malloc(sizeof(int32_t) * (size_t)e->slot_cap);
    e->row_buf = (int32_t *)malloc(sizeof(int32_t) * (size_t)K);
    if (!e->nfa_match || !e->nfa_auto || !e->nfa_tgt_off || !e->mid_base || !e->stamp ||
        !e->usable_class || !e->slots || !e->row_buf)
        goto failed;
    for (int64_t q = 0; q < n; q++) {
        e->nfa_match[q] = match[q];
        e->nfa_auto[q] = -2;
        e->mid_base[q] = -1;
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
 * lo/hi (byte ranges, inclusive, sorted, disjoint) and next; byte_class maps each byte to this
 * engine's byte class, so the ranges are kept as class ranges. Returns its index, NO_MEMORY,
 * or -1 for a range outside the bytes. */
int32_t regexlm_lazy_add_automaton(Engine *e, int64_t num_states, const int64_t *off,
                                   const int32_t *lo, const int32_t *hi, const int32_t *next,
                                   const uint8_t *byte_class) {
    int64_t cap = e->auto_cap;
    GROW_SAME(cap, e->num_autos + 1, ARRAY(e->auto_off), ARRAY(e->auto_states),
              ARRAY(e->auto_ends), ARRAY(e->auto_finish));
    e->auto_cap = cap;
    cap = e->au_cap;
    GROW_SAME(cap, e->num_au + num_states + 1, ARRAY(e->au_tr));
    e->au_cap = cap;
    int64_t count = off[num_states];
    cap = e->tr_cap;
    GROW_SAME(cap, e->num_tr + count, ARRAY(e->tr_lo), ARRAY(e->tr_hi),
              ARRAY(e->tr_next));
    e->tr_cap = cap;
    int64_t a = e->num_autos, ends = 0;
    e->auto_off[a] = e->num_au;
    e->auto_states[a] = num_states;
    e->auto_finish[a] = -1;
    for (int64_t u = 0; u <= num_states; u++) e->au_tr[e->num_au + u] = e->num_tr + off[u];
    for (int64_t t = 0; t < count; t++) {
        if (lo[t] < 0 || hi[t] > 255 || lo[t] > hi[t]) return -1;
        e->tr_lo[e->num_tr + t] = byte_class[lo[t]];
        e->tr_hi[e->num_tr + t] = byte_class[hi[t]];
        e->tr_next[e->num_tr + t] = next[t];
        if (next[t] < 0 && -(int64_t)next[t] > ends) ends = -(int64_t)next[t];
    }
    e->auto_ends[a] = ends;
    e->num_au += num_states + 1;
    e->num_tr += count;
    e->num_autos = a + 1;
    return (int32_t)a;
}

/* The NFA, given once after its automata: NFA state q reads characters with automata[q] (-1:
 * none, else an index regexlm_lazy_add_automaton returned), its character transitions lead to
 * NFA states targets[tgt_off[q] .. tgt_off[q + 1]) (in its automaton's character order) and its
 * epsilon transitions to eps_to[eps_off[q] .. eps_off[q + 1]). Returns OK, NO_MEMORY, or -1 for
 * arrays that do not describe this engine's NFA or an NFA given again. */
int32_t regexlm_lazy_set_nfa(Engine *e, const int32_t *automata, const int64_t *tgt_off,
                             const int32_t *targets, const int64_t *eps_off,
                             const int32_t *eps_to) {
    int64_t n = e->n, m = n > 0 ? n : 1;
    if (e->given_auto != NULL || tgt_off[0] != 0 || eps_off[0] != 0) return -1;
    for (int64_t q = 0; q < n; q++) {
        if (automata[q] < -1 || automata[q] >= e->num_autos) return -1;
        if (tgt_off[q + 1] < tgt_off[q] || eps_off[q + 1] < eps_off[q]) return -1;
    }
    int64_t num_targets = tgt_off[n], num_eps = eps_off[n];
    for (int64_t k = 0; k < num_targets; k++)
        if (targets[k] < 0 || targets[k] >= n) return -1;
    for (int64_t k = 0; k < num_eps; k++)
        if (eps_to[k] < 0 || eps_to[k] >= n) return -1;
    /* moves name a target entry by an int32 (see regexlm_lazy_fill) */
    if (num_targets > INT32_MAX) return NO_MEMORY;
    if (grow((void **)&e->tgt_nfa, &e->tgt_nfa_cap, num_targets, 4) < 0) return NO_MEMORY;
    int64_t cap = e->tgt_cl_cap;
    GROW_SAME(cap, num_targets, ARRAY(e->tgt_cl_off), ARRAY(e->tgt_cl_len), ARRAY(e->tgt_state));
    e->tgt_cl_cap = cap;
    e->eps_off = (int64_t *)malloc(sizeof(int64_t) * (size_t)(m + 1));
    e->eps_to = (int32_t *)malloc(sizeof(int32_t) * (size_t)(num_eps > 0 ? num_eps : 1));
    e->cl_off = (int64_t *)malloc(sizeof(int64_t) * (size_t)m);
    e->cl_len = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    e->cl_stack = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    int32_t *given = (int32_t *)malloc(sizeof(int32_t) * (size_t)m);
    if (!e->eps_off || !e->eps_to || !e->cl_off || !e->cl_len || !e->cl_stack || !given) {
        free(given);
        return NO_MEMORY;
    }
    memcpy(e->eps_off, eps_off, sizeof(int64_t) * (size_t)(n + 1));
    if (num_eps) memcpy(e->eps_to, eps_to, sizeof(int32_t) * (size_t)num_eps);
    e->num_eps = num_eps;
    if (num_targets) memcpy(e->tgt_nfa, targets, sizeof(int32_t) * (size_t)num_targets);
    for (int64_t k = 0; k < num_targets; k++) e->tgt_state[k] = -1;
    e->tgt_nfa_len = num_targets;
    for (int64_t q = 0; q < n; q++) {
        given[q] = automata[q];
        e->cl_off[q] = -1;
    }
    memcpy(e->nfa_tgt_off, tgt_off, sizeof(int64_t) * (size_t)(n + 1));
    e->given_auto = given; /* (last: the NFA counts as given once all of it is) */
    return OK;
}

/* A fresh stamp for the marks of one search or union (see `stamp`). */
static int32_t next_stamp(Engine *e) {
    if (++e->stamp_now == INT32_MAX) { /* wrap around: forget every stamp */
        memset(e->stamp, 0, sizeof(int32_t) * (size_t)e->n);
        e->stamp_now = 1;
    }
    return e->stamp_now;
}

/* Find, once, the epsilon closure of NFA state t: the NFA states its epsilon transitions reach
 * (t included) that read characters or match, sorted, kept in `closures` at cl_off[t]. OK or
 * NO_MEMORY. */
static int32_t find_closure(Engine *e, int32_t t) {
    if (e->cl_off[t] >= 0) return OK;
    int32_t now = next_stamp(e);
    int64_t first = e->closures_len, top = 0;
    e->cl_stack[top++] = t; /* each NFA state is stacked once at most (marked when stacked) */
    e->stamp[t] = now;
    while (top > 0) {
        int32_t s = e->cl_stack[--top];
        if (e->given_auto[s] >= 0 || e->nfa_match[s] >= 0) {
            if (grow((void **)&e->closures, &e->closures_cap, e->closures_len + 1, 4) < 0) {
                e->closures_len = first;
                return NO_MEMORY;
            }
            e->closures[e->closures_len++] = s;
        }
        for (int64_t k = e->eps_off[s]; k < e->eps_off[s + 1]; k++) {
            int32_t u = e->eps_to[k];
            if (e->stamp[u] == now) continue;
            e->stamp[u] = now;
            e->cl_stack[top++] = u;
        }
    }
    sort_ids(e->closures + first, e->closures_len - first);
    e->cl_off[t] = first;
    e->cl_len[t] = (int32_t)(e->closures_len - first);
    return OK;
}

/* Prepare NFA state q for rows, once: its targets' closures and its block of ids. OK,
 * NO_MEMORY, or -1 where no NFA was given. */
static int32_t prepare_state(Engine *e, int64_t q) {
    if (e->nfa_auto[q] != -2) return OK;
    if (e->given_auto == NULL) return -1;
    int32_t automaton = e->given_auto[q];
    int64_t block = automaton >= 0 ? e->auto_states[automaton] : 0;
    /* moves name a point by an int32 (see regexlm_lazy_fill) */
    if (e->num_positions + block > INT32_MAX) return NO_MEMORY;
    if (block) {
        int64_t cap = e->owner_cap;
        GROW_SAME(cap, e->num_owners + 1, ARRAY(e->owner_base), ARRAY(e->owner_q));
        e->owner_cap = cap;
    }
    for (int64_t k = e->nfa_tgt_off[q]; k < e->nfa_tgt_off[q + 1]; k++) {
        int32_t t = e->tgt_nfa[k];
        if (find_closure(e, t) != OK) return NO_MEMORY;
        e->tgt_cl_off[k] = e->cl_off[t];
        e->tgt_cl_len[k] = e->cl_len[t];
    }
    e->nfa_auto[q] = automaton;
    if (block) {
        e->mid_base[q] = e->num_positions;
        e->owner_base[e->num_owners] = e->num_positions;
        e->owner_q[e->num_owners++] = (int32_t)q;
        e->num_positions += block;
    }
    return OK;
}

/* The NFA state whose character point p (>= n) is inside: the last block starting at or
 * before p. */
static int32_t owner_of(const Engine *e, int64_t p) {
    int64_t lo = 0, hi = e->num_owners - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (e->owner_base[mid] <= p) lo = mid;
        else hi = mid - 1;
    }
    return e->owner_q[lo];
}

/* Distances: per NFA state (dist[n]) and the classes holding a usable byte (usable[K]); the
 * states and the automata's tables forget theirs. */
int32_t regexlm_lazy_set_distances(Engine *e, const int32_t *dist, const uint8_t *usable) {
    if (e->nfa_dist == NULL) {
        e->nfa_dist = (int32_t *)malloc(sizeof(int32_t) * (size_t)(e->n > 0 ? e->n : 1));
        if (e->nfa_dist == NULL) return NO_MEMORY;
    }
    memcpy(e->nfa_dist, dist, sizeof(int32_t) * (size_t)e->n);
    memcpy(e->usable_class, usable, (size_t)e->K);
    e->finish_len = 0;
    for (int64_t a = 0; a < e->num_autos; a++) e->auto_finish[a] = -1;
    for (int64_t s = 1; s < e->num_states; s++) e->st_dist[s] = UNKNOWN;
    return OK;
}

/* Whether transition t reads a usable byte. */
static int usable_transition(const Engine *e, int64_t t) {
    for (int32_t c = e->tr_lo[t]; c <= e->tr_hi[t]; c++)
        if (e->usable_class[c]) return 1;
    return 0;
}

/* Where automaton a's table lies in `finish`, made if needed: f[u * ends + j] is the fewest
 * usable bytes from state u through a transition that finishes character j (UNREACHABLE if
 * none); -1 when out of memory. UTF-8 automata have no cycles, so relaxing every transition
 * until nothing changes takes a round per byte of a character at most, and one more. */
static int64_t finish_table(Engine *e, int64_t a) {
    if (e->auto_finish[a] >= 0) return e->auto_finish[a];
    int64_t states = e->auto_states[a], ends = e->auto_ends[a], at = e->finish_len;
    int64_t size = states * ends;
    if (size == 0) return e->auto_finish[a] = at; /* it finishes no character */
    if (grow((void **)&e->finish, &e->finish_cap, at + size, 4) < 0) return -1;
    int32_t *f = e->finish + at;
    for (int64_t i = 0; i < size; i++) f[i] = UNREACHABLE;
    const int64_t *tr = e->au_tr + e->auto_off[a];
    for (int changed = 1; changed;) {
        changed = 0;
        for (int64_t u = 0; u < states; u++) {
            int32_t *fu = f + u * ends;
            for (int64_t t = tr[u]; t < tr[u + 1]; t++) {
                if (!usable_transition(e, t)) continue;
                int32_t next = e->tr_next[t];
                if (next < 0) {
                    if (fu[-1 - next] > 1) fu[-1 - next] = 1, changed = 1;
                    continue;
                }
                const int32_t *fn = f + (int64_t)next * ends;
                for (int64_t j = 0; j < ends; j++)
                    if (fn[j] != UNREACHABLE && fn[j] + 1 < fu[j]) fu[j] = fn[j] + 1, changed = 1;
            }
        }
    }
    e->auto_finish[a] = at;
    e->finish_len = at + size;
    return at;
}

/* Fewest usable bytes from position p to a match; UNKNOWN without distances, NO_MEMORY. A point
 * inside a character: the best, over the characters it can finish, of the bytes to finish one
 * and its target's distance. */
static int32_t position_distance(Engine *e, int64_t p) {
    if (e->nfa_dist == NULL) return UNKNOWN;
    if (p < e->n) return e->nfa_dist[p];
    int32_t q = owner_of(e, p);
    int64_t a = e->nfa_auto[q], ends = e->auto_ends[a];
    int64_t at = finish_table(e, a);
    if (at < 0) return NO_MEMORY;
    at += (p - e->mid_base[q]) * ends;
    int64_t best = UNREACHABLE;
    for (int64_t j = 0; j < ends; j++) {
        int32_t bytes = e->finish[at + j];
        if (bytes == UNREACHABLE) continue;
        int32_t rest = e->nfa_dist[e->tgt_nfa[e->nfa_tgt_off[q] + j]];
        if (rest != UNREACHABLE && (int64_t)bytes + rest < best) best = (int64_t)bytes + rest;
    }
    return (int32_t)best;
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
        GROW_SAME(cap, s + 1, ARRAY(e->st_off), ARRAY(e->st_len), ARRAY(e->st_accept),
                  ARRAY(e->st_dist), ARRAY(e->st_hash));
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

/* Sort a[0 .. n): by insertion when few, else qsort. */
static void sort_ids(int32_t *a, int64_t n) {
    if (n > 32) {
        qsort(a, (size_t)n, sizeof(int32_t), cmp_int32);
        return;
    }
    for (int64_t i = 1; i < n; i++) {
        int32_t x = a[i];
        int64_t j = i - 1;
        while (j >= 0 && a[j] > x) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = x;
    }
}

/* A move, as the lists of regexlm_lazy_fill hold it: k >= 0, the closure of entry k of tgt_nfa
 * (a character finished), or -1 - id, the single point inside a character `id`. Transition t
 * of a position whose NFA state's targets start at tgt_off and whose block starts at mid. */
static inline int32_t move_of(const Engine *e, int64_t t, int64_t tgt_off, int64_t mid) {
    int32_t next = e->tr_next[t];
    return next < 0 ? (int32_t)(tgt_off - 1 - next) : (int32_t)(-1 - (mid + next));
}

/* The state of a move's target: a closure's is memoized per entry, a single point is looked up
 * (a hash and a probe). */
static int32_t move_state(Engine *e, int32_t move, int32_t *status) {
    if (move < 0) {
        int32_t p = -1 - move;
        return intern(e, &p, 1, status);
    }
    int32_t s = e->tgt_state[move];
    if (s < 0) {
        s = intern(e, e->closures + e->tgt_cl_off[move], e->tgt_cl_len[move], status);
        if (s >= 0) e->tgt_state[move] = s;
    }
    return s;
}

/* The state of the union of the targets of moves list[0 .. n). Closures hold NFA states
 * (ids < n): the distinct ones are found with a stamp per NFA state and, when they lie in a
 * narrow range, come out sorted by a scan of it, else they are sorted. Points inside a
 * character (ids >= n, above every NFA state) are gathered at the buffer's end, sorted,
 * deduplicated and put after them. */
static int32_t union_state(Engine *e, const int32_t *list, int64_t n, int32_t *status) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) total += list[i] >= 0 ? e->tgt_cl_len[list[i]] : 1;
    if (grow((void **)&e->union_buf, &e->union_cap, total, 4) < 0) {
        *status = NO_MEMORY;
        return -1;
    }
    int32_t now = next_stamp(e), lo = INT32_MAX, hi = -1;
    int32_t *buf = e->union_buf;
    int64_t u = 0, m = total; /* NFA states in buf[0 .. u), points in buf[m .. total) */
    for (int64_t i = 0; i < n; i++) {
        if (list[i] < 0) {
            buf[--m] = -1 - list[i];
            continue;
        }
        const int32_t *t = e->closures + e->tgt_cl_off[list[i]];
        for (int32_t j = 0; j < e->tgt_cl_len[list[i]]; j++) {
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
        } else {
            sort_ids(buf, u);
        }
    }
    if (m < total) {
        sort_ids(buf + m, total - m);
        buf[u++] = buf[m];
        for (int64_t i = m + 1; i < total; i++)
            if (buf[i] != buf[u - 1]) buf[u++] = buf[i];
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
    const int32_t *set = e->elems + e->st_off[s];
    for (int64_t i = 0; i < n && set[i] < e->n; i++) { /* points inside a character come last */
        int32_t rc = prepare_state(e, set[i]);
        if (rc != OK) return rc;
    }
    GROW_SAME(e->set_cap, n, ARRAY(e->cursor), ARRAY(e->cursor_end), ARRAY(e->set_tgt),
              ARRAY(e->set_mid), ARRAY(e->list_a), ARRAY(e->list_b));
    int64_t *cursor = e->cursor, *cursor_end = e->cursor_end, *set_tgt = e->set_tgt,
            *set_mid = e->set_mid;
    /* each position's transitions, read before any interning moves `elems` */
    for (int64_t i = 0; i < n; i++) {
        int64_t p = set[i], q = p < e->n ? p : owner_of(e, p);
        int32_t automaton = e->nfa_auto[q];
        if (automaton < 0) { /* reads no character */
            cursor[i] = cursor_end[i] = 0;
            continue;
        }
        int64_t at = e->auto_off[automaton] + (p < e->n ? 0 : p - e->mid_base[q]);
        cursor[i] = e->au_tr[at];
        cursor_end[i] = e->au_tr[at + 1];
        set_tgt[i] = e->nfa_tgt_off[q];
        set_mid[i] = e->mid_base[q];
    }
    int32_t *row = e->row_buf;
    int32_t status = OK;
    int32_t K = e->K;
    if (n == 1) {
        for (int32_t c = 0; c < K; c++) row[c] = 0;
        for (int64_t t = cursor[0]; t < cursor_end[0]; t++) {
            int32_t target = move_state(e, move_of(e, t, set_tgt[0], set_mid[0]), &status);
            if (status < 0) return status;
            for (int32_t c = e->tr_lo[t]; c <= e->tr_hi[t]; c++) row[c] = target;
        }
    } else {
        /* sweep the classes with a cursor per position; classes covered by the same moves as
         * the class before share its state */
        int32_t *prev = e->list_a, *cur = e->list_b;
        int64_t prev_n = -1;
        for (int32_t c = 0; c < K; c++) {
            int64_t cur_n = 0;
            for (int64_t i = 0; i < n; i++) {
                int64_t k = cursor[i], end = cursor_end[i];
                while (k < end && e->tr_hi[k] < c) k++;
                cursor[i] = k;
                if (k < end && e->tr_lo[k] <= c)
                    cur[cur_n++] = move_of(e, k, set_tgt[i], set_mid[i]);
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

/* The states after classes[i] from states[i] into out; the codes of fill. */
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

/* Run bytes data[0 .. n) from *state through byte classes; *state and *done say where it
 * stopped when a fill fails (its code is returned). */
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
