/*
 * The walk of the vocabulary trie through a DFA, for a batch of origin states.
 *
 * Loaded by regexlm/index/native_walk.py (built with the system C compiler on first use);
 * regexlm/index/rows.py holds the numpy walk that is its reference.
 *
 * The trie's nodes are stored in depth-first preorder, so a node's subtree is the `size` nodes
 * starting at it and the walk is one forward scan: a node is entered with the state its parent
 * was entered with, stepped on the node's byte class; when the DFA dies (state 0) the scan
 * jumps over the node's whole subtree. Every node where a token ends, entered alive, is written
 * out as (origin position, token, state).
 *
 * The transition table may be incomplete (a lazy DFA): an entry of -1 is not computed yet.
 * Then fill_row(state) computes that state's row and returns the table's new base address (the
 * table may have been reallocated), or NULL when it failed. Results go to a caller's buffer of
 * `capacity` triples; flush(count) is called whenever it is full, and at the end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t *(*fill_row_fn)(int32_t state);
typedef int32_t (*flush_fn)(int64_t count);
typedef int32_t (*need_state_fn)(int32_t nfa_state);

/* How a walk gets a missing row: returns the table's (new) base address, or NULL with *code
 * set to what the walk returns. */
typedef int32_t *(*fill_fn)(void *ctx, int32_t state, int64_t *code);

/* A token's class: class_of is uint16 (wide = 0, while there are at most 65,536 classes) or
 * int32 (wide = 1). */
static inline int32_t class_at(const void *class_of, int32_t wide, int64_t t) {
    return wide ? ((const int32_t *)class_of)[t] : (int32_t)((const uint16_t *)class_of)[t];
}

/* A class trie's nodes (regexlm/index/class_trie.py): each reads the bytes of one unit, up to
 * four, lowest byte first; a node's token is a group of strings, `weight` of them. `found`
 * adds up the weights of the groups the walk finds alive. */
typedef struct {
    const uint32_t *bytes;
    const uint8_t *length;
    const int64_t *weight;
    int64_t found;
} NodeUnits;

/* The class check of a walk (see regexlm_walk_rows_lazy) over the triples j in [0, count) of a buffer. */
static void check_classes(const int32_t *out_origin, const int32_t *out_token,
                          const int32_t *out_state, int64_t count, const int32_t *first_token,
                          const void *class_of, int32_t wide, int64_t num_origins,
                          int64_t num_classes, int32_t *class_row, int64_t *named, int8_t *keeps,
                          const NodeUnits *units) {
    for (int64_t j = 0; j < count; j++) {
        int32_t o = num_origins == 1 ? 0 : out_origin[j]; /* (one origin: a stream less to read) */
        if (!keeps[o]) continue;
        int32_t t = out_token[j];
        int64_t k = (int64_t)o * num_classes + class_at(class_of, wide, first_token[t]);
        if (named[k] == 0) class_row[k] = out_state[j];
        else if (class_row[k] != out_state[j]) keeps[o] = 0;
        named[k] += units == NULL ? 1 : units->weight[t];
    }
}

/* The state `from` goes to on byte class `cls`, its row computed first where it is missing
 * (which may move the table); -1, with *code set, when that fails. */
static inline __attribute__((always_inline)) int32_t step_state(int32_t **table, int64_t width,
                                                                fill_fn fill, void *ctx,
                                                                int32_t from, int32_t cls,
                                                                int64_t *code) {
    int32_t next = (*table)[(int64_t)from * width + cls];
    if (__builtin_expect(next >= 0, 1)) return next;
    int32_t *filled = fill(ctx, from, code);
    if (filled == NULL) return -1;
    *table = filled;
    next = filled[(int64_t)from * width + cls];
    if (next < 0) *code = -1;
    return next;
}

/* The walk both entry points share (see the file's comment); class_row NULL: no class check.
 * Inlined twice by walk(), once with units NULL (the byte trie: one byte a node, no inner loop
 * left) and once for a class trie: the generic loop costs a byte-trie walk about twice. */
static inline __attribute__((always_inline)) int64_t walk_nodes(const int32_t *depth, const int32_t *size, const uint8_t *node_byte,
                    const int32_t *node_token, int64_t num_nodes, int32_t max_depth,
                    const uint8_t *byte_class, int32_t *table, int64_t width, fill_fn fill,
                    void *ctx, const int32_t *origins, int64_t num_origins, int32_t *out_origin,
                    int32_t *out_token, int32_t *out_state, int64_t capacity, flush_fn flush,
                    const int32_t *first_token, const void *class_of, int32_t wide,
                    const int64_t *class_size, int64_t num_classes, int32_t *class_row,
                    int64_t *named, int8_t *keeps, NodeUnits *units) {
    /* state_at[d]: the state the current path's node at depth d was entered with (d = 0: the
     * origin); depths are 1-based */
    int32_t *state_at = (int32_t *)malloc(sizeof(int32_t) * ((size_t)max_depth + 1));
    if (state_at == NULL) return -2;
    if (class_row != NULL) {
        for (int64_t k = 0; k < num_origins * num_classes; k++) {
            class_row[k] = -1;
            named[k] = 0;
        }
        for (int64_t o = 0; o < num_origins; o++) keeps[o] = 1;
    }
    int64_t written = 0, total = 0, code = -1;
    for (int64_t o = 0; o < num_origins; o++) {
        state_at[0] = origins[o];
        int64_t i = 0;
        while (i < num_nodes) {
            int32_t d = depth[i];
            int32_t next = state_at[d - 1];
            /* a node reads one byte, or in a class trie a unit of up to four */
            if (units == NULL) {
                next = step_state(&table, width, fill, ctx, next, byte_class[node_byte[i]], &code);
                if (next < 0) goto failed;
            } else {
                uint32_t bytes = units->bytes[i];
                for (int32_t b = 0; b < units->length[i] && next != 0; b++, bytes >>= 8) {
                    next = step_state(&table, width, fill, ctx, next, byte_class[bytes & 0xFF],
                                      &code);
                    if (next < 0) goto failed;
                }
            }
            if (next == 0) {
                i += size[i];
                continue;
            }
            state_at[d] = next;
            /* written out unconditionally and kept where a token ends: no branch to mispredict
             * on the half of the nodes where one does */
            int32_t t = node_token[i];
            out_origin[written] = (int32_t)o;
            out_token[written] = t;
            out_state[written] = next;
            written += t >= 0;
            if (units != NULL && t >= 0) units->found += units->weight[t];
            if (written == capacity) {
                if (class_row != NULL)
                    check_classes(out_origin, out_token, out_state, written, first_token,
                                  class_of, wide, num_origins, num_classes, class_row, named,
                                  keeps, units);
                if (flush(written) != 0) goto flush_failed;
                total += written;
                written = 0;
            }
            i++;
        }
    }
    if (class_row != NULL) {
        check_classes(out_origin, out_token, out_state, written, first_token, class_of, wide,
                      num_origins, num_classes, class_row, named, keeps, units);
        for (int64_t o = 0; o < num_origins; o++) {
            for (int64_t c = 0; c < num_classes && keeps[o]; c++) {
                int64_t k = o * num_classes + c;
                if (named[k] != 0 && named[k] != class_size[c]) keeps[o] = 0;
            }
        }
    }
    int all_kept = class_row != NULL && total == 0;
    for (int64_t o = 0; o < num_origins && all_kept; o++) all_kept = keeps[o];
    if (written > 0 && !all_kept) { /* the caller needs the triples */
        if (flush(written) != 0) goto flush_failed;
    }
    total += written;
    free(state_at);
    return total;
flush_failed:
    code = -1;
failed:
    free(state_at);
    return code;
}

static int64_t walk(const int32_t *depth, const int32_t *size, const uint8_t *node_byte,
                    const int32_t *node_token, int64_t num_nodes, int32_t max_depth,
                    const uint8_t *byte_class, int32_t *table, int64_t width, fill_fn fill,
                    void *ctx, const int32_t *origins, int64_t num_origins, int32_t *out_origin,
                    int32_t *out_token, int32_t *out_state, int64_t capacity, flush_fn flush,
                    const int32_t *first_token, const void *class_of, int32_t wide,
                    const int64_t *class_size, int64_t num_classes, int32_t *class_row,
                    int64_t *named, int8_t *keeps, NodeUnits *units) {
    if (units == NULL)
        return walk_nodes(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class,
                          table, width, fill, ctx, origins, num_origins, out_origin, out_token,
                          out_state, capacity, flush, first_token, class_of, wide, class_size,
                          num_classes, class_row, named, keeps, NULL);
    return walk_nodes(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class, table,
                      width, fill, ctx, origins, num_origins, out_origin, out_token, out_state,
                      capacity, flush, first_token, class_of, wide, class_size, num_classes,
                      class_row, named, keeps, units);
}

static int32_t *fill_by_callback(void *ctx, int32_t state, int64_t *code) {
    int32_t *table = ((fill_row_fn)ctx)(state);
    if (table == NULL) *code = -1;
    return table;
}

/* Through any automaton with a table (the fill_row callback computes a missing row). Returns
 * the number of triples written in all, -1 when fill_row or flush failed or a filled row is
 * still incomplete, -2 when out of memory. */
int64_t regexlm_walk_rows(const int32_t *depth, const int32_t *size, const uint8_t *node_byte,
                          const int32_t *node_token, int64_t num_nodes, int32_t max_depth,
                          const uint8_t *byte_class, int32_t *table, int64_t width,
                          const int32_t *origins, int64_t num_origins, int32_t *out_origin,
                          int32_t *out_token, int32_t *out_state, int64_t capacity,
                          fill_row_fn fill_row, flush_fn flush) {
    return walk(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class, table,
                width, fill_by_callback, (void *)fill_row, origins, num_origins, out_origin,
                out_token, out_state, capacity, flush, NULL, NULL, 0, NULL, 0, NULL, NULL, NULL,
                NULL);
}

/*
 * The same walk through the C lazy DFA (regexlm/automata/lazy_dfa.c): a row not computed yet
 * is filled in C, and need_state(nfa state) is called back only for an NFA state the automaton
 * has not been handed yet. Returns the triples written, -1 when a callback failed, or the
 * fill's code: -2 out of memory, -3 over the bytes limit, -4 over the time limit.
 *
 * With class_row not NULL it also checks, per origin, whether its row splits a token class
 * (what regexlm_refine_classes in token_classes.c checks first, on the triples): each string's
 * first token
 * (first_token) falls in class class_of[token] (uint16, or int32 where class_wide); keeps[o] is
 * set to 1 when, for origin o, every
 * class's named tokens go to one DFA state and are none or all of its class_size tokens, and
 * then class_row[o * num_classes + c] holds that state (-1: none named). `named` is scratch of
 * num_origins * num_classes counts. The caller can then skip the triples of such an origin;
 * when every origin keeps its classes and the buffer never filled, the triples are not even
 * flushed (the count is still returned).
 *
 * With unit_bytes not NULL the trie is a class trie (regexlm/index/class_trie.py): node i reads
 * unit_length[i] bytes of unit_bytes[i] instead of node_byte[i], node_token names a group of
 * strings (first_token[group] and weight[group] of them), and *found receives the number of
 * strings found alive rather than of groups; otherwise *found (when not NULL) is the count
 * returned.
 */
int32_t regexlm_lazy_fill(void *engine, int32_t state);
int32_t *regexlm_lazy_table(const void *engine);
int32_t regexlm_lazy_need_position(const void *engine);

typedef struct {
    void *engine;
    need_state_fn need_state;
} LazyFill;

static int32_t *fill_lazy(void *ctx, int32_t state, int64_t *code) {
    LazyFill *f = (LazyFill *)ctx;
    int32_t rc;
    while ((rc = regexlm_lazy_fill(f->engine, state)) == 1)
        if (f->need_state(regexlm_lazy_need_position(f->engine)) != 0) {
            *code = -1;
            return NULL;
        }
    if (rc != 0) {
        *code = rc;
        return NULL;
    }
    return regexlm_lazy_table(f->engine);
}

int64_t regexlm_walk_rows_lazy(const int32_t *depth, const int32_t *size, const uint8_t *node_byte,
                               const int32_t *node_token, int64_t num_nodes, int32_t max_depth,
                               const uint8_t *byte_class, void *engine, int64_t width,
                               const int32_t *origins, int64_t num_origins, int32_t *out_origin,
                               int32_t *out_token, int32_t *out_state, int64_t capacity,
                               need_state_fn need_state, flush_fn flush,
                               const int32_t *first_token, const void *class_of,
                               int32_t class_wide, const int64_t *class_size, int64_t num_classes,
                               int32_t *class_row, int64_t *named, int8_t *keeps,
                               const uint32_t *unit_bytes, const uint8_t *unit_length,
                               const int64_t *weight, int64_t *found) {
    LazyFill ctx = {engine, need_state};
    NodeUnits units = {unit_bytes, unit_length, weight, 0};
    int64_t total = walk(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class,
                         regexlm_lazy_table(engine), width, fill_lazy, &ctx, origins,
                         num_origins, out_origin, out_token, out_state, capacity, flush,
                         first_token, class_of, class_wide, class_size, num_classes, class_row,
                         named, keeps,
                         unit_bytes == NULL ? NULL : &units);
    if (found != NULL) *found = unit_bytes == NULL ? total : units.found;
    return total;
}

/*
 * Allowed-token bitmasks of `n` rows over classes (regexlm/index/token_index.py packs the same
 * with numpy, the reference): bit j of word w of row r is set when token 32 w + j exists and
 * rows[r, class_of[token]] >= 0 (class_of uint16, or int32 where class_wide). `out` holds
 * n * num_words words. Returns 0, or -2 when out of
 * memory.
 *
 * With member_start not NULL (see regexlm_small_class_members), a row that allows only small
 * classes sets the bits of their tokens in a zeroed row instead of reading every token's class:
 * a narrow row (digits, hex, an enum) then costs its own tokens, not the vocabulary. A row that
 * forbids only small classes does the opposite: it clears their tokens' bits in a row of ones
 * (free text that forbids a newline or a quote).
 */
/*
 * One row's bits, reading every token's class: bit t of the row is allowed[class_of[t]]
 * (allowed32 holds the same flags as 0 / -1). Where the CPU has AVX2, eight tokens' flags are
 * gathered at once and their sign bits taken as eight bits; elsewhere, 32 flags are gathered
 * to bytes and each 8 folded to one byte by a multiplication.
 */
static void pack_dense_bytes(uint32_t *words, const void *class_of, int32_t wide,
                             int64_t vocab_size, const uint8_t *allowed, int64_t first_word) {
    const uint64_t fold = 0x0102040810204080ULL; /* byte i -> bit i of the top byte */
    const int32_t *c32 = (const int32_t *)class_of;
    const uint16_t *c16 = (const uint16_t *)class_of;
    for (int64_t w = first_word; w * 32 < vocab_size; w++) {
        int64_t lo = w * 32;
        if (lo + 32 > vocab_size) {
            uint32_t word = 0;
            for (int64_t t = lo; t < vocab_size; t++)
                word |= (uint32_t)allowed[class_at(class_of, wide, t)] << (t - lo);
            words[w] = word;
            continue;
        }
        uint8_t flags[32];
        if (wide)
            for (int j = 0; j < 32; j++) flags[j] = allowed[c32[lo + j]];
        else
            for (int j = 0; j < 32; j++) flags[j] = allowed[c16[lo + j]];
        uint32_t word = 0;
        for (int k = 0; k < 4; k++) {
            uint64_t eight;
            memcpy(&eight, flags + 8 * k, 8);
            word |= (uint32_t)((eight * fold) >> 56) << (8 * k);
        }
        words[w] = word;
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
__attribute__((target("avx2"))) static int64_t pack_dense_avx2(uint32_t *words,
                                                               const void *class_of,
                                                               int32_t wide,
                                                               int64_t vocab_size,
                                                               const int32_t *allowed32) {
    int64_t full = vocab_size / 32;
    const int32_t *c32 = (const int32_t *)class_of;
    const uint16_t *c16 = (const uint16_t *)class_of;
    for (int64_t w = 0; w < full; w++) {
        uint32_t word = 0;
        for (int k = 0; k < 4; k++) {
            int64_t at = w * 32 + 8 * k;
            __m256i classes =
                wide ? _mm256_loadu_si256((const __m256i *)(c32 + at))
                     : _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(c16 + at)));
            __m256i flags = _mm256_i32gather_epi32((const int *)allowed32, classes, 4);
            word |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(flags)) << (8 * k);
        }
        words[w] = word;
    }
    return full;
}
#endif

static int use_simd = 1; /* regexlm_pack_simd turns it off, so tests check both ways */

int32_t regexlm_pack_simd(int32_t enabled) {
    use_simd = enabled != 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return use_simd && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static void pack_dense(uint32_t *words, const void *class_of, int32_t wide, int64_t vocab_size,
                       const uint8_t *allowed, const int32_t *allowed32) {
    int64_t done = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (use_simd && __builtin_cpu_supports("avx2"))
        done = pack_dense_avx2(words, class_of, wide, vocab_size, allowed32);
#else
    (void)allowed32;
#endif
    pack_dense_bytes(words, class_of, wide, vocab_size, allowed, done);
}

static void set_members(uint32_t *words, const uint8_t *chosen, int64_t num_classes,
                        const int64_t *member_start, const int32_t *members, int value) {
    for (int64_t c = 0; c < num_classes; c++) {
        if (!chosen[c]) continue;
        for (int64_t k = member_start[c]; k < member_start[c + 1]; k++) {
            int32_t t = members[k];
            if (value)
                words[t >> 5] |= 1u << (t & 31);
            else
                words[t >> 5] &= ~(1u << (t & 31));
        }
    }
}

int32_t regexlm_pack_rows(const int32_t *rows, int64_t n, int64_t num_classes,
                          const void *class_of, int32_t class_wide, int64_t vocab_size,
                          int64_t num_words,
                          uint32_t *out, const int64_t *member_start, const int32_t *members,
                          const int8_t *small) {
    /* one block: allowed32 (4 bytes a class, aligned first), then allowed and forbidden */
    int32_t *allowed32 = (int32_t *)malloc((size_t)num_classes * 6 + 1);
    if (allowed32 == NULL) return -2;
    uint8_t *allowed = (uint8_t *)(allowed32 + num_classes);
    uint8_t *forbidden = allowed + num_classes;
    for (int64_t r = 0; r < n; r++) {
        const int32_t *row = rows + r * num_classes;
        int narrow = member_start != NULL, broad = member_start != NULL;
        for (int64_t c = 0; c < num_classes; c++) {
            allowed[c] = row[c] >= 0;
            allowed32[c] = -(int32_t)allowed[c];
            forbidden[c] = !allowed[c];
            if (member_start != NULL && !small[c]) {
                if (allowed[c]) narrow = 0;
                else broad = 0;
            }
        }
        uint32_t *words = out + r * num_words;
        if (narrow) {
            memset(words, 0, sizeof(uint32_t) * (size_t)num_words);
            set_members(words, allowed, num_classes, member_start, members, 1);
            continue;
        }
        if (broad) {
            memset(words, 0xFF, sizeof(uint32_t) * (size_t)num_words);
            if (vocab_size % 32 && num_words > 0) words[num_words - 1] = (1u << (vocab_size % 32)) - 1u;
            set_members(words, forbidden, num_classes, member_start, members, 0);
            continue;
        }
        pack_dense(words, class_of, class_wide, vocab_size, allowed, allowed32);
    }
    free(allowed32);
    return 0;
}

static int ascending(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * The tokens of the small classes, for regexlm_pack_rows: classes are chosen smallest first
 * while their tokens add up to at most `cap`, and small[c] marks them; member_start
 * (num_classes + 1 entries) is a CSR over `members` (at most `cap` entries), an empty range for
 * a class not chosen. `counts` (num_classes entries), when not NULL, is each class's number of
 * tokens, which spares a pass over class_of. Returns the number of tokens stored, or -2 when
 * out of memory.
 */
int64_t regexlm_small_class_members(const void *class_of, int32_t class_wide,
                                    int64_t vocab_size, int64_t num_classes, int64_t cap,
                                    const int64_t *counts, int64_t *member_start,
                                    int32_t *members, int8_t *small) {
    int64_t *size = (int64_t *)calloc((size_t)num_classes + 1, sizeof(int64_t));
    int64_t *order = (int64_t *)malloc(sizeof(int64_t) * ((size_t)num_classes + 1));
    if (size == NULL || order == NULL) {
        free(size);
        free(order);
        return -2;
    }
    if (counts != NULL)
        memcpy(size, counts, sizeof(int64_t) * (size_t)num_classes);
    else
        for (int64_t t = 0; t < vocab_size; t++) size[class_at(class_of, class_wide, t)]++;
    for (int64_t c = 0; c < num_classes; c++) order[c] = (size[c] << 32) | c; /* by size */
    qsort(order, (size_t)num_classes, sizeof(int64_t), ascending);
    int64_t total = 0;
    for (int64_t c = 0; c < num_classes; c++) small[c] = 0;
    for (int64_t i = 0; i < num_classes; i++) {
        int32_t c = (int32_t)(order[i] & 0xFFFFFFFF);
        if (total + size[c] > cap) break;
        small[c] = 1;
        total += size[c];
    }
    member_start[0] = 0;
    for (int64_t c = 0; c < num_classes; c++)
        member_start[c + 1] = member_start[c] + (small[c] ? size[c] : 0);
    for (int64_t c = 0; c < num_classes; c++) size[c] = member_start[c]; /* now: next slot */
    for (int64_t t = 0; t < vocab_size; t++) {
        int32_t c = class_at(class_of, class_wide, t);
        if (small[c]) members[size[c]++] = (int32_t)t;
    }
    free(size);
    free(order);
    return total;
}
