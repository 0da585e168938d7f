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
 * out as (origin position, token, state). With a trie summary (TrieSummary, below), a subtree
 * that the origin's chain reads alike is written out without stepping through it.
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

/*
 * Whole subtrees. A row of a state that reads most characters alike (inside a JSON string, free
 * text: `[^"\\]{0,40}`, `.*`) keeps nearly every token alive, yet the walk steps through every
 * node of the trie for it. Such an origin has a chain: state[0] is the origin, and every
 * character of a wide set leads state[m] to the same state[m + 1] (a repeat's counter; a star
 * loop, where state[m + 1] is state[m]). A subtree whose characters every state of the chain
 * it passes reads that way is handed over whole instead: a string of it that reads j
 * characters below the node's parent goes to the state j further along the chain than the
 * parent's, and its strings are one run of ids (the trie is numbered in preorder). What that
 * needs per node is made once per vocabulary (regexlm_trie_summary); the chain, per origin, as
 * far as the walk asks for it (chain_extend).
 */

/* A summary, for each "big" node (a subtree of at least min_size nodes; numbered by rank:
 * big_rank[w] big nodes before word w of big_bits, which marks them): the ASCII bytes read
 * anywhere in its subtree (ascii[2 b], bits 0-63, and ascii[2 b + 1], bits 64-127); flags[b]
 * SUBTREE_WHOLE when the path to its parent ends between characters, every byte sequence in the
 * subtree continues it as well-formed UTF-8 (as the Unicode standard's table 3-7 bounds it),
 * every token of the subtree ends between characters, and its strings are the ids [first[b],
 * first[b] + count[b]); SUBTREE_NONASCII when a byte >= 0x80 is read in it; before[b] the
 * characters of the path to its parent, span[b] the most characters a string of the subtree
 * reads below it. string_chars[s]: the characters of string s. */
typedef struct {
    int64_t min_size;
    const uint64_t *big_bits;
    const int32_t *big_rank;
    const uint64_t *ascii;
    const uint8_t *flags;
    const int32_t *first;
    const int32_t *count;
    const uint16_t *before;
    const uint16_t *span;
    const uint16_t *string_chars;
} TrieSummary;

#define SUBTREE_WHOLE 1
#define SUBTREE_NONASCII 2

/* Well-formed UTF-8, a byte at a time: `pending` continuation bytes still to come, the next in
 * [lo, hi]; bad once a byte breaks it. */
typedef struct {
    int8_t pending, bad;
    uint8_t lo, hi;
} Utf8Path;

static Utf8Path utf8_next(Utf8Path at, uint8_t b) {
    Utf8Path out = {0, at.bad, 0x80, 0xBF};
    if (at.bad) return out;
    if (at.pending > 0) {
        if (b < at.lo || b > at.hi) out.bad = 1;
        else out.pending = (int8_t)(at.pending - 1);
        return out;
    }
    if (b < 0x80) return out;
    if (b >= 0xC2 && b <= 0xDF) out.pending = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        out.pending = 2;
        if (b == 0xE0) out.lo = 0xA0;
        if (b == 0xED) out.hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        out.pending = 3;
        if (b == 0xF0) out.lo = 0x90;
        if (b == 0xF4) out.hi = 0x8F;
    } else
        out.bad = 1;
    return out;
}

/*
 * The summary of a trie (see TrieSummary) for its nodes of at least min_size nodes, into
 * arrays the caller sized: big_bits and big_rank ((num_nodes + 63) / 64 words), ascii (2 a big
 * node), flags, first, count, before and span (one a big node), string_chars (one a string).
 * Returns the number of big nodes, or -2 when out of memory.
 */
int64_t regexlm_trie_summary(const int32_t *depth, const int32_t *size, const uint8_t *node_byte,
                             const int32_t *node_string, int64_t num_nodes, int32_t max_depth,
                             int64_t min_size, uint64_t *big_bits, int32_t *big_rank,
                             uint64_t *ascii, uint8_t *flags, int32_t *first, int32_t *count,
                             uint16_t *before, uint16_t *span, uint16_t *string_chars) {
    int64_t n = num_nodes;
    size_t m = (size_t)(n > 0 ? n : 1);
    int32_t *parent = (int32_t *)malloc(sizeof(int32_t) * m);
    uint64_t *lo = (uint64_t *)malloc(sizeof(uint64_t) * 2 * m);
    int32_t *smin = (int32_t *)malloc(sizeof(int32_t) * 5 * m);
    uint8_t *bits = (uint8_t *)malloc(m);
    Utf8Path *path = (Utf8Path *)malloc(sizeof(Utf8Path) * ((size_t)max_depth + 1));
    int32_t *chars = (int32_t *)malloc(sizeof(int32_t) * ((size_t)max_depth + 1));
    int32_t *last = (int32_t *)malloc(sizeof(int32_t) * ((size_t)max_depth + 1));
    if (!parent || !lo || !smin || !bits || !path || !chars || !last) {
        free(parent), free(lo), free(smin), free(bits), free(path), free(chars), free(last);
        return -2;
    }
    /* per node: its strings' least and greatest id and their number, the characters of the
     * path to its parent, the most characters a string of its subtree reads in all */
    int32_t *smax = smin + n, *scount = smin + 2 * n, *cbefore = smin + 3 * n, *cmax = smin + 4 * n;
    chars[0] = 0;
    /* per node, itself: bits 1 its subtree breaks UTF-8 or ends a token inside a character,
     * 2 it reads a byte >= 0x80, 4 the path to its parent ends inside a character */
    Utf8Path root = {0, 0, 0x80, 0xBF};
    path[0] = root;
    for (int64_t i = 0; i < n; i++) {
        int32_t d = depth[i];
        parent[i] = d > 1 ? last[d - 1] : -1;
        last[d] = (int32_t)i;
        Utf8Path before = path[d - 1];
        Utf8Path after = path[d] = utf8_next(before, node_byte[i]);
        chars[d] = chars[d - 1] + (!after.bad && after.pending == 0);
        cbefore[i] = chars[d - 1];
        uint8_t b = node_byte[i];
        int32_t t = node_string[i];
        cmax[i] = t >= 0 ? chars[d] : -1;
        if (t >= 0) string_chars[t] = (uint16_t)(chars[d] < 0xFFFF ? chars[d] : 0xFFFF);
        bits[i] = (uint8_t)((after.bad || (t >= 0 && after.pending > 0) ? 1 : 0) |
                            (b >= 0x80 ? 2 : 0) | (before.pending > 0 || before.bad ? 4 : 0));
        lo[2 * i] = b < 64 ? 1ULL << b : 0;
        lo[2 * i + 1] = b >= 64 && b < 128 ? 1ULL << (b - 64) : 0;
        smin[i] = t >= 0 ? t : INT32_MAX;
        smax[i] = t >= 0 ? t : -1;
        scount[i] = t >= 0;
    }
    for (int64_t i = n - 1; i >= 0; i--) { /* children before parents: fold upwards */
        int32_t p = parent[i];
        if (p < 0) continue;
        lo[2 * p] |= lo[2 * i];
        lo[2 * p + 1] |= lo[2 * i + 1];
        bits[p] |= (uint8_t)(bits[i] & 3);
        if (smin[i] < smin[p]) smin[p] = smin[i];
        if (smax[i] > smax[p]) smax[p] = smax[i];
        if (cmax[i] > cmax[p]) cmax[p] = cmax[i];
        scount[p] += scount[i];
    }
    int64_t big = 0, words = (n + 63) / 64;
    for (int64_t w = 0; w < words; w++) {
        big_bits[w] = 0;
        big_rank[w] = (int32_t)big;
        for (int64_t i = 64 * w; i < n && i < 64 * (w + 1); i++) {
            if (size[i] < min_size) continue;
            big_bits[w] |= 1ULL << (i & 63);
            ascii[2 * big] = lo[2 * i];
            ascii[2 * big + 1] = lo[2 * i + 1];
            int runs = scount[i] == 0 || (int64_t)smax[i] - smin[i] + 1 == scount[i];
            int32_t reads = cmax[i] >= 0 ? cmax[i] - cbefore[i] : 0;
            int whole = !(bits[i] & (1 | 4)) && runs && cbefore[i] < 0xFFFF && reads < 0xFFFF;
            flags[big] = (uint8_t)((whole ? SUBTREE_WHOLE : 0) | (bits[i] & 2 ? SUBTREE_NONASCII : 0));
            first[big] = scount[i] > 0 ? smin[i] : 0;
            count[big] = scount[i];
            before[big] = (uint16_t)(whole ? cbefore[i] : 0);
            span[big] = (uint16_t)(whole ? reads : 0);
            big++;
        }
    }
    free(parent), free(lo), free(smin), free(bits), free(path), free(chars), free(last);
    return big;
}

/* One string's share of the class check: the first string named in class slot k notes its
 * state, a later one going elsewhere splits the class. 0 where it splits. */
static inline int class_agrees(int32_t *class_row, int64_t *named, int64_t k, int32_t state,
                               int64_t weight) {
    int agrees = named[k] == 0 || class_row[k] == state;
    if (named[k] == 0) class_row[k] = state;
    named[k] += weight;
    return agrees;
}

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
        if (!class_agrees(class_row, named, k, out_state[j], units == NULL ? 1 : units->weight[t]))
            keeps[o] = 0;
    }
}

/* A full buffer of `count` triples: checked (where class_row is given), then handed over.
 * 0, or -1 when the flush failed. */
static int flush_checked(const int32_t *out_origin, const int32_t *out_token,
                         const int32_t *out_state, int64_t count, flush_fn flush,
                         const int32_t *first_token, const void *class_of, int32_t wide,
                         int64_t num_origins, int64_t num_classes, int32_t *class_row,
                         int64_t *named, int8_t *keeps, const NodeUnits *units) {
    if (class_row != NULL)
        check_classes(out_origin, out_token, out_state, count, first_token, class_of, wide,
                      num_origins, num_classes, class_row, named, keeps, units);
    return flush(count) != 0 ? -1 : 0;
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

static inline int64_t popcount64(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int64_t)((x * 0x0101010101010101ULL) >> 56);
}

/* The well-formed UTF-8 sequences of two to four bytes: the range of each byte. */
static const uint8_t UTF8_FORMS[8][4][2] = {
    {{0xC2, 0xDF}, {0x80, 0xBF}},
    {{0xE0, 0xE0}, {0xA0, 0xBF}, {0x80, 0xBF}},
    {{0xE1, 0xEC}, {0x80, 0xBF}, {0x80, 0xBF}},
    {{0xED, 0xED}, {0x80, 0x9F}, {0x80, 0xBF}},
    {{0xEE, 0xEF}, {0x80, 0xBF}, {0x80, 0xBF}},
    {{0xF0, 0xF0}, {0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
    {{0xF1, 0xF3}, {0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}},
    {{0xF4, 0xF4}, {0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}},
};
#define CHAIN_FRONTIER 32 /* states between the bytes of a character followed at most */
#define CHAIN_MAX 128     /* states of an origin's chain */
#define CHAIN_SLOT_BITS 8
#define CHAIN_SLOTS (1 << CHAIN_SLOT_BITS) /* at least twice CHAIN_MAX + 1 */
#define CHAIN_MAX_TARGETS 128
#define CHAIN_MIN_BYTES 16 /* ASCII bytes a step of the chain reads alike, at least */
#define CHARS_UNKNOWN 2    /* Chain.chars[m] not found yet */

/* An origin's chain (see the whole-subtree comment): state[m] for m < len; for m < len - 1,
 * ascii[m] the ASCII bytes and chars[m] whether every other character (each of its byte
 * sequences) lead state[m] to state[m + 1] (CHARS_UNKNOWN until asked). done: state[len - 1]
 * has no such successor. */
typedef struct {
    int32_t state[CHAIN_MAX + 1];
    uint64_t ascii[CHAIN_MAX][2];
    uint8_t chars[CHAIN_MAX];
    int32_t len, done;
    /* once done (and not for its length): the ASCII bytes state[len - 1] dies on, and whether
     * it dies on every first byte of a longer character */
    int32_t has_dead;
    uint64_t dead[2];
    uint8_t dead_chars;
    /* open addressing: each state's first place on the chain (the chain from a state is the
     * same wherever it comes, so its first place has the most of it known) */
    int32_t slot_state[CHAIN_SLOTS];
    int32_t slot_place[CHAIN_SLOTS];
    int32_t used[CHAIN_MAX + 1]; /* the slots taken, to free them for the next origin */
    int32_t num_used;
    /* per byte class, its ASCII bytes (made once a walk); the classes that have some */
    uint64_t class_ascii[256][2];
    int32_t ascii_classes[128];
    int32_t num_ascii_classes;
} Chain;

/* A chain for a walk through byte classes `byte_class`: no origin yet. */
static void chain_init(Chain *ch, const uint8_t *byte_class) {
    for (int x = 0; x < CHAIN_SLOTS; x++) ch->slot_state[x] = -1;
    ch->num_used = 0;
    memset(ch->class_ascii, 0, sizeof(ch->class_ascii));
    ch->num_ascii_classes = 0;
    for (int b = 0; b < 128; b++) {
        int c = byte_class[b];
        if (!ch->class_ascii[c][0] && !ch->class_ascii[c][1])
            ch->ascii_classes[ch->num_ascii_classes++] = c;
        ch->class_ascii[c][b >> 6] |= 1ULL << (b & 63);
    }
}

static void chain_start(Chain *ch, int32_t origin) {
    for (int u = 0; u < ch->num_used; u++) ch->slot_state[ch->used[u]] = -1;
    ch->num_used = 0;
    ch->len = 0;
    ch->done = 0;
    ch->has_dead = 0;
    ch->state[0] = origin;
}

static void chain_push(Chain *ch, int32_t state) {
    int32_t place = ch->len;
    ch->state[ch->len++] = state;
    uint32_t x = ((uint32_t)state * 2654435761u) >> (32 - CHAIN_SLOT_BITS);
    while (ch->slot_state[x] >= 0) {
        if (ch->slot_state[x] == state) return; /* known earlier on the chain */
        x = (x + 1) & (CHAIN_SLOTS - 1);
    }
    ch->slot_state[x] = state;
    ch->slot_place[x] = place;
    ch->used[ch->num_used++] = (int32_t)x;
}

/* The first place of `state` on the chain as known so far, or -1. */
static inline int32_t chain_place(const Chain *ch, int32_t state) {
    uint32_t x = ((uint32_t)state * 2654435761u) >> (32 - CHAIN_SLOT_BITS);
    while (ch->slot_state[x] >= 0) {
        if (ch->slot_state[x] == state) return ch->slot_place[x];
        x = (x + 1) & (CHAIN_SLOTS - 1);
    }
    return -1;
}

/* Whether every well-formed character of two to four bytes leads `from` to `to` (checked on
 * one byte of each byte class in each range of UTF8_FORMS, which is exact: the bytes of a
 * class step alike); to < 0: to the state the first one leads to, set into *to. 1 yes, 0 no,
 * -1 with *code set when a row could not be filled. */
static int chars_lead_to(int32_t **table, int64_t width, fill_fn fill, void *ctx,
                         const uint8_t *byte_class, int32_t from, int32_t *to, int64_t *code) {
    int32_t frontier[CHAIN_FRONTIER], following[CHAIN_FRONTIER];
    for (int f = 0; f < 8; f++) {
        int len = UTF8_FORMS[f][2][0] == 0 ? 2 : UTF8_FORMS[f][3][0] == 0 ? 3 : 4;
        int n = 1;
        frontier[0] = from;
        for (int k = 0; k < len; k++) {
            int m = 0;
            for (int j = 0; j < n; j++) {
                int last_class = -1;
                for (int b = UTF8_FORMS[f][k][0]; b <= UTF8_FORMS[f][k][1]; b++) {
                    int c = byte_class[b];
                    if (c == last_class) continue; /* (classes are runs of bytes, mostly) */
                    last_class = c;
                    int32_t next = step_state(table, width, fill, ctx, frontier[j], c, code);
                    if (next < 0) return -1;
                    if (next == 0) return 0;
                    if (k == len - 1) {
                        if (*to < 0) *to = next;
                        if (next != *to) return 0;
                        continue;
                    }
                    int seen = 0;
                    for (int x = 0; x < m && !seen; x++) seen = following[x] == next;
                    if (seen) continue;
                    if (m == CHAIN_FRONTIER) return 0; /* too many to follow: say no */
                    following[m++] = next;
                }
            }
            memcpy(frontier, following, sizeof(int32_t) * (size_t)m);
            n = m;
        }
    }
    return 1;
}

/* Extend the chain until state[upto] is known or it is done. 0, or -1 with *code set. */
static int chain_extend(Chain *ch, int64_t upto, int32_t **table, int64_t width, fill_fn fill,
                        void *ctx, const uint8_t *byte_class, int64_t *code) {
    while (!ch->done && ch->len <= upto) {
        int m = ch->len - 1;
        int32_t p = ch->state[m];
        if (m == CHAIN_MAX - 1) {
            ch->done = 1;
            break;
        }
        if (m > 0 && ch->state[m - 1] == p) { /* a loop: the same state, read the same way */
            ch->ascii[m][0] = ch->ascii[m - 1][0];
            ch->ascii[m][1] = ch->ascii[m - 1][1];
            ch->chars[m] = ch->chars[m - 1];
            chain_push(ch, p);
            continue;
        }
        /* the successor most ASCII bytes lead to (else the one characters lead to), read a
         * byte class at a time */
        int32_t target[128], seen_t[CHAIN_MAX_TARGETS], votes[CHAIN_MAX_TARGETS];
        int kinds = 0;
        for (int j = 0; j < ch->num_ascii_classes; j++) {
            int c = ch->ascii_classes[j];
            int32_t next = step_state(table, width, fill, ctx, p, c, code);
            if (next < 0) return -1;
            target[j] = next;
            if (next == 0) continue;
            int x = 0;
            while (x < kinds && seen_t[x] != next) x++;
            if (x == kinds) seen_t[kinds] = next, votes[kinds++] = 0;
            votes[x] += (int32_t)(popcount64(ch->class_ascii[c][0]) + popcount64(ch->class_ascii[c][1]));
        }
        int32_t succ = -1;
        int best = 0;
        for (int x = 0; x < kinds; x++)
            if (votes[x] > best) best = votes[x], succ = seen_t[x];
        uint64_t lo = 0, hi = 0, dead_lo = 0, dead_hi = 0;
        for (int j = 0; j < ch->num_ascii_classes; j++) {
            int c = ch->ascii_classes[j];
            if (succ > 0 && target[j] == succ) lo |= ch->class_ascii[c][0], hi |= ch->class_ascii[c][1];
            if (target[j] == 0) dead_lo |= ch->class_ascii[c][0], dead_hi |= ch->class_ascii[c][1];
        }
        /* whether the other characters step alike: asked for later by a subtree that reads
         * some (CHARS_UNKNOWN), unless it decides whether the chain goes on */
        int chars = CHARS_UNKNOWN;
        if (succ < 0 || popcount64(lo) + popcount64(hi) < CHAIN_MIN_BYTES) {
            int32_t to = succ;
            chars = chars_lead_to(table, width, fill, ctx, byte_class, p, &to, code);
            if (chars < 0) return -1;
            if (succ < 0) succ = chars ? to : 0;
        }
        /* a narrow step (a literal's byte, a digit) ends the chain: few subtrees of the trie
         * read nothing else, and following it would make states no walk may need */
        if (succ <= 0 || (chars == 0 && popcount64(lo) + popcount64(hi) < CHAIN_MIN_BYTES)) {
            /* what the last state dies on: a string that reads past it dies there if its
             * subtree reads nothing else */
            ch->dead[0] = dead_lo;
            ch->dead[1] = dead_hi;
            ch->dead_chars = 1;
            for (int b = 0xC2; b <= 0xF4 && ch->dead_chars; b++) {
                int32_t next = step_state(table, width, fill, ctx, p, byte_class[b], code);
                if (next < 0) return -1;
                ch->dead_chars = next == 0;
            }
            ch->has_dead = 1;
            ch->done = 1;
            break;
        }
        ch->ascii[m][0] = lo;
        ch->ascii[m][1] = hi;
        ch->chars[m] = (uint8_t)chars;
        chain_push(ch, succ);
    }
    return 0;
}

/* What handing over a whole subtree works with: the walk's output and where it is. */
typedef struct {
    const TrieSummary *summary;
    Chain *chain;
    const uint8_t *byte_class;
    int64_t width;
    fill_fn fill;
    void *ctx;
    int32_t *out_origin, *out_token, *out_state;
    int64_t capacity;
    flush_fn flush;
    const int32_t *first_token;
    const void *class_of;
    int32_t wide;
    int64_t num_origins, num_classes;
    int32_t *class_row;
    int64_t *named;
    int8_t *keeps;
    int32_t *table;                /* the transition table (a fill may move it) */
    int64_t written, total, wholes; /* triples in the buffer, flushed, subtrees handed over */
    int64_t code;                  /* a failure's code */
    int lean;                      /* check the strings only, write no triples (see below) */
    int64_t lean_found;            /* strings found alive and checked only */
    int64_t *lean_at;              /* per subtree checked only: (b, shift, last, reach) */
    int64_t lean_count, lean_cap;
} Whole;

/* Write the triples of big subtree b's strings: string s goes to the chain's place
 * shift + string_chars[s], or dies past `last` (`reach`: where the longest would go). 0, or -3
 * when a flush failed (w->code set). */
static int emit_subtree(Whole *w, int64_t b, int64_t shift, int64_t last, int64_t reach,
                        int32_t o) {
    const TrieSummary *sm = w->summary;
    const Chain *ch = w->chain;
    int64_t from = sm->first[b], end = from + sm->count[b];
    while (from < end) {
        int64_t take = end - from;
        if (take > w->capacity - w->written) take = w->capacity - w->written;
        int64_t at = w->written;
        if (last == reach) {
            for (int64_t x = 0; x < take; x++) {
                w->out_origin[at + x] = o;
                w->out_token[at + x] = (int32_t)(from + x);
                w->out_state[at + x] = ch->state[shift + sm->string_chars[from + x]];
            }
            w->written += take;
        } else {
            for (int64_t x = 0; x < take; x++) {
                int64_t place = shift + sm->string_chars[from + x];
                w->out_origin[at] = o;
                w->out_token[at] = (int32_t)(from + x);
                w->out_state[at] = ch->state[place <= last ? place : 0];
                at += place <= last;
            }
            w->written = at;
        }
        from += take;
        if (w->written == w->capacity) {
            if (flush_checked(w->out_origin, w->out_token, w->out_state, w->written, w->flush,
                              w->first_token, w->class_of, w->wide, w->num_origins,
                              w->num_classes, w->class_row, w->named, w->keeps, NULL) != 0) {
                w->code = -1;
                return -3;
            }
            w->total += w->written;
            w->written = 0;
        }
    }
    return 0;
}

/* Node i of at least min_size nodes, its parent entered with state `parent`: when the parent
 * is on the origin's chain and every state of the chain the subtree's strings pass reads its
 * bytes alike, its strings are written out (each to its place on the chain) and 1 returned;
 * else 0. -1 when a row could not be filled, -3 when a flush failed (w->code set). */
static __attribute__((noinline)) int whole_subtree(Whole *w, int64_t i, int32_t parent,
                                                   int32_t o) {
    const TrieSummary *sm = w->summary;
    Chain *ch = w->chain;
    int64_t b = sm->big_rank[i >> 6] + popcount64(sm->big_bits[i >> 6] & ((1ULL << (i & 63)) - 1));
    uint8_t f = sm->flags[b];
    if (!(f & SUBTREE_WHOLE)) return 0;
    int32_t k = chain_place(ch, parent);
    if (k < 0) return 0;
    int64_t reach = (int64_t)k + sm->span[b]; /* the place of the chain's state read last */
    if (reach > CHAIN_MAX) reach = CHAIN_MAX;
    uint64_t lo = sm->ascii[2 * b], hi = sm->ascii[2 * b + 1];
    int nonascii = (f & SUBTREE_NONASCII) != 0;
    /* the first step first: most subtrees that fail, fail there */
    if (ch->len <= k + 1 && chain_extend(ch, k + 1, &w->table, w->width, w->fill, w->ctx,
                                         w->byte_class, &w->code) != 0)
        return -1;
    if (ch->len > k + 1 && ((lo & ~ch->ascii[k][0]) || (hi & ~ch->ascii[k][1])))
        return 0;
    if (ch->len > k + 1 && nonascii && ch->chars[k] == 0) return 0; /* (`\w`: known by now) */
    if (ch->len <= reach && chain_extend(ch, reach, &w->table, w->width, w->fill, w->ctx,
                                         w->byte_class, &w->code) != 0)
        return -1;
    /* the chain's last place a string may end at: every string fits, or the chain ends
     * before some and its last state dies on every byte of the subtree, which ends those */
    int64_t last = reach;
    if (ch->len <= reach) {
        last = ch->len - 1;
        if (!ch->has_dead || (lo & ~ch->dead[0]) || (hi & ~ch->dead[1]) ||
            (nonascii && !ch->dead_chars))
            return 0;
    }
    for (int64_t m = k; m < last; m++) {
        if ((lo & ~ch->ascii[m][0]) || (hi & ~ch->ascii[m][1])) return 0;
        if (nonascii && ch->chars[m] == CHARS_UNKNOWN) {
            int32_t to = ch->state[m + 1];
            int chars = chars_lead_to(&w->table, w->width, w->fill, w->ctx, w->byte_class,
                                      ch->state[m], &to, &w->code);
            if (chars < 0) return -1;
            for (int64_t j = 0; j + 1 < ch->len; j++) /* (a loop's places are one step) */
                if (ch->state[j] == ch->state[m]) /* (so is the next: a state has one) */
                    ch->chars[j] = (uint8_t)chars;
        }
        if (nonascii && !ch->chars[m]) return 0;
    }
    /* string s reads string_chars[s] - before[b] characters below the parent: it goes that
     * much further along the chain, or dies past its last place */
    int64_t shift = (int64_t)k - sm->before[b];
    if (w->lean) { /* the class check of check_classes (one origin), no triple written yet */
        int64_t from = sm->first[b], end = from + sm->count[b];
        int64_t alive = 0;
        int split = 0;
        for (int64_t s = from; s < end && !split; s++) {
            int64_t place = shift + sm->string_chars[s];
            if (place > last) continue;
            int64_t c = class_at(w->class_of, w->wide, w->first_token[s]);
            split = !class_agrees(w->class_row, w->named, c, ch->state[place], 1);
            alive++;
        }
        if (!split) { /* noted, to be written at the end should the row split after all */
            if (w->lean_count == w->lean_cap) {
                int64_t cap = w->lean_cap ? 2 * w->lean_cap : 64;
                int64_t *grown = (int64_t *)realloc(w->lean_at, sizeof(int64_t) * 4 * cap);
                if (grown == NULL) {
                    w->code = -2;
                    return -1;
                }
                w->lean_at = grown, w->lean_cap = cap;
            }
            int64_t *e = w->lean_at + 4 * w->lean_count++;
            e[0] = b, e[1] = shift, e[2] = last, e[3] = reach;
            w->lean_found += alive;
            w->wholes++;
            return 1;
        }
        /* the row splits a class: the rest of the walk writes its triples as it goes */
        w->keeps[0] = 0;
        w->lean = 0;
    }
    if (emit_subtree(w, b, shift, last, reach, o) != 0) return -3;
    w->wholes++;
    return 1;
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
                    int64_t *named, int8_t *keeps, NodeUnits *units,
                    const TrieSummary *summary, int64_t *whole_out) {
    /* state_at[d]: the state the current path's node at depth d was entered with (d = 0: the
     * origin); depths are 1-based */
    int32_t *state_at = (int32_t *)malloc(sizeof(int32_t) * ((size_t)max_depth + 1));
    Chain *chain = summary != NULL && units == NULL ? (Chain *)malloc(sizeof(Chain)) : NULL;
    if (state_at == NULL || (summary != NULL && units == NULL && chain == NULL)) {
        free(state_at);
        free(chain);
        return -2;
    }
    /* Lean: one origin, with the class check and whole subtrees: a whole subtree's
     * strings are checked and counted, not written (what writing them and reading them back
     * for the check costs is most of a broad row's walk), and the subtree is noted. Where the
     * row splits no class (most rows, once the first have refined the classes) its triples are
     * never needed; where it splits one, the noted subtrees are written at the end. */
    int64_t written = 0, total = 0, code = -1;
    Whole wh = {summary, chain, byte_class, width, fill, ctx, out_origin, out_token, out_state,
                capacity, flush, first_token, class_of, wide, num_origins, num_classes, class_row,
                named, keeps, table, 0, 0, 0, -1, 0, 0, NULL, 0, 0};
    wh.lean = class_row != NULL && units == NULL && summary != NULL && num_origins == 1;
    int64_t whole_nodes = summary != NULL ? summary->min_size : INT64_MAX;
    if (class_row != NULL) {
        for (int64_t k = 0; k < num_origins * num_classes; k++) {
            class_row[k] = -1;
            named[k] = 0;
        }
        for (int64_t o = 0; o < num_origins; o++) keeps[o] = 1;
    }
    for (int64_t o = 0; o < num_origins; o++) {
        state_at[0] = origins[o];
        /* whole subtrees (see TrieSummary): the origin's chain, made as far as checks ask; none
         * where the origin reads no wide set of bytes alike */
        int whole = summary != NULL && units == NULL;
        if (whole) {
            if (o == 0) chain_init(chain, byte_class);
            chain_start(chain, origins[o]);
            chain_push(chain, origins[o]);
            if (chain_extend(chain, 1, &table, width, fill, ctx, byte_class, &code) != 0)
                goto failed;
            whole = chain->len > 1;
        }
        int64_t i = 0;
        while (i < num_nodes) {
            int32_t d = depth[i];
            int32_t next = state_at[d - 1];
            if (whole && size[i] >= whole_nodes) { /* rare: out of the loop's way */
                wh.table = table, wh.written = written, wh.total = total;
                int handed = whole_subtree(&wh, i, next, (int32_t)o);
                table = wh.table, written = wh.written, total = wh.total;
                if (handed < 0) {
                    code = wh.code;
                    if (handed == -3) goto flush_failed;
                    goto failed;
                }
                if (handed) {
                    i += size[i];
                    continue;
                }
            }
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
                if (flush_checked(out_origin, out_token, out_state, written, flush, first_token,
                                  class_of, wide, num_origins, num_classes, class_row, named,
                                  keeps, units) != 0)
                    goto flush_failed;
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
    if (all_kept) {
        total += wh.lean_found;
    } else { /* the caller needs the triples, those of the subtrees only checked too */
        for (int64_t j = 0; j < wh.lean_count; j++) {
            const int64_t *e = wh.lean_at + 4 * j;
            wh.written = written, wh.total = total;
            if (emit_subtree(&wh, e[0], e[1], e[2], e[3], 0) != 0) goto flush_failed;
            written = wh.written, total = wh.total;
        }
    }
    if (written > 0 && !all_kept) { /* the caller needs the triples */
        if (flush(written) != 0) goto flush_failed;
    }
    total += written;
    if (whole_out != NULL) *whole_out = wh.wholes;
    free(state_at);
    free(chain);
    free(wh.lean_at);
    return total;
flush_failed:
    code = -1;
failed:
    free(state_at);
    free(chain);
    free(wh.lean_at);
    return code;
}

static int64_t walk(const int32_t *depth, const int32_t *size, const uint8_t *node_byte,
                    const int32_t *node_token, int64_t num_nodes, int32_t max_depth,
                    const uint8_t *byte_class, int32_t *table, int64_t width, fill_fn fill,
                    void *ctx, const int32_t *origins, int64_t num_origins, int32_t *out_origin,
                    int32_t *out_token, int32_t *out_state, int64_t capacity, flush_fn flush,
                    const int32_t *first_token, const void *class_of, int32_t wide,
                    const int64_t *class_size, int64_t num_classes, int32_t *class_row,
                    int64_t *named, int8_t *keeps, NodeUnits *units,
                    const TrieSummary *summary, int64_t *whole_out) {
    if (whole_out != NULL) *whole_out = 0;
    if (units == NULL)
        return walk_nodes(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class,
                          table, width, fill, ctx, origins, num_origins, out_origin, out_token,
                          out_state, capacity, flush, first_token, class_of, wide, class_size,
                          num_classes, class_row, named, keeps, NULL, summary, whole_out);
    return walk_nodes(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class, table,
                      width, fill, ctx, origins, num_origins, out_origin, out_token, out_state,
                      capacity, flush, first_token, class_of, wide, class_size, num_classes,
                      class_row, named, keeps, units, NULL, NULL);
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
                          fill_row_fn fill_row, flush_fn flush, const TrieSummary *summary,
                          int64_t *whole) {
    return walk(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class, table,
                width, fill_by_callback, (void *)fill_row, origins, num_origins, out_origin,
                out_token, out_state, capacity, flush, NULL, NULL, 0, NULL, 0, NULL, NULL, NULL,
                NULL, summary, whole);
}

/*
 * The same walk through the C lazy DFA (regexlm/automata/lazy_dfa.c): a row not computed yet
 * is filled in C. Returns the triples written, -1 when the flush failed, or the fill's code:
 * -2 out of memory, -3 over the bytes limit, -4 over the time limit.
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
 * flushed (the count is still returned). With one origin and a summary, the strings of whole
 * subtrees are checked without being written, and written at the end only where the row turns
 * out to split a class (see walk_nodes).
 *
 * With unit_bytes not NULL the trie is a class trie (regexlm/index/class_trie.py): node i reads
 * unit_length[i] bytes of unit_bytes[i] instead of node_byte[i], node_token names a group of
 * strings (first_token[group] and weight[group] of them), and *found receives the number of
 * strings found alive rather than of groups; otherwise *found (when not NULL) is the count
 * returned.
 *
 * With summary not NULL (a byte trie's, from regexlm_trie_summary) subtrees are handed over
 * whole where they can be; *whole (when not NULL) receives how many were. Both entry points.
 */
int32_t regexlm_lazy_fill(void *engine, int32_t state);
int32_t *regexlm_lazy_table(const void *engine);

static int32_t *fill_lazy(void *engine, int32_t state, int64_t *code) {
    int32_t rc = regexlm_lazy_fill(engine, state);
    if (rc != 0) {
        *code = rc;
        return NULL;
    }
    return regexlm_lazy_table(engine);
}

int64_t regexlm_walk_rows_lazy(const int32_t *depth, const int32_t *size, const uint8_t *node_byte,
                               const int32_t *node_token, int64_t num_nodes, int32_t max_depth,
                               const uint8_t *byte_class, void *engine, int64_t width,
                               const int32_t *origins, int64_t num_origins, int32_t *out_origin,
                               int32_t *out_token, int32_t *out_state, int64_t capacity,
                               flush_fn flush,
                               const int32_t *first_token, const void *class_of,
                               int32_t class_wide, const int64_t *class_size, int64_t num_classes,
                               int32_t *class_row, int64_t *named, int8_t *keeps,
                               const uint32_t *unit_bytes, const uint8_t *unit_length,
                               const int64_t *weight, int64_t *found,
                               const TrieSummary *summary, int64_t *whole) {
    NodeUnits units = {unit_bytes, unit_length, weight, 0};
    int64_t total = walk(depth, size, node_byte, node_token, num_nodes, max_depth, byte_class,
                         regexlm_lazy_table(engine), width, fill_lazy, engine, origins,
                         num_origins, out_origin, out_token, out_state, capacity, flush,
                         first_token, class_of, class_wide, class_size, num_classes, class_row,
                         named, keeps, unit_bytes == NULL ? NULL : &units, summary, whole);
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
