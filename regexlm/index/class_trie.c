/*
 * The class trie of a pattern: the vocabulary's character trie with sibling characters of one
 * class merged (regexlm/index/class_trie.py explains it and holds the numpy reference).
 *
 * Input: the character trie in depth-first preorder (depth, 1 at a string's first unit; the
 * node's unit; the string ending at the node or -1) and the symbol of every unit under the
 * pattern. A node of the class trie is a path of symbols; a character-trie node maps to the
 * class-trie node of its parent's image extended by its own symbol (one hash lookup).
 *
 * Output, in the class trie's own depth-first preorder (at most max_nodes nodes): depth, size
 * of the subtree, a representative unit (the lowest unit id met there: units are numbered by
 * code point, so the shortest encoding, and the fewest automaton states inside a character, a
 * walk makes for it) and the
 * group of strings ending there (-1 for none; groups numbered 0.. in order of creation), plus
 * group_of_string for every string. Returns the number of nodes, -3 when more than max_nodes
 * would be needed, -2 when out of memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t key;
    int32_t node;
} Slot;

int64_t regexlm_class_trie(const int32_t *depth, const int32_t *unit, const int32_t *term,
                           int64_t num_nodes, int32_t max_depth, const int32_t *symbol_of_unit,
                           int64_t num_symbols, int64_t max_nodes, int32_t *out_depth,
                           int32_t *out_size, int32_t *out_unit, int32_t *out_group,
                           int32_t *group_of_string) {
    int64_t cap = 16;
    while (cap < 2 * max_nodes + 2) cap <<= 1;
    Slot *slots = (Slot *)malloc(sizeof(Slot) * (size_t)cap);
    int32_t *parent = (int32_t *)malloc(sizeof(int32_t) * (size_t)(max_nodes + 1));
    int32_t *node_depth = (int32_t *)malloc(sizeof(int32_t) * (size_t)(max_nodes + 1));
    int32_t *rep = (int32_t *)malloc(sizeof(int32_t) * (size_t)(max_nodes + 1));
    int32_t *group = (int32_t *)malloc(sizeof(int32_t) * (size_t)(max_nodes + 1));
    int32_t *at = (int32_t *)malloc(sizeof(int32_t) * ((size_t)max_depth + 1));
    int64_t *subtree = NULL, *first_child = NULL, *pos = NULL, *cursor = NULL;
    int32_t *children = NULL;
    int64_t result = -2;
    if (!slots || !parent || !node_depth || !rep || !group || !at) goto done;
    for (int64_t k = 0; k < cap; k++) slots[k].key = -1;
    int64_t count = 0, groups = 0;
    at[0] = -1; /* the root, which is not a node */
    for (int64_t i = 0; i < num_nodes; i++) {
        int32_t d = depth[i];
        int32_t p = at[d - 1];
        int64_t key = ((int64_t)p + 1) * num_symbols + symbol_of_unit[unit[i]];
        uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
        int64_t k = (int64_t)(h >> 20) & (cap - 1);
        while (slots[k].key != -1 && slots[k].key != key) k = (k + 1) & (cap - 1);
        int32_t q;
        if (slots[k].key == key) {
            q = slots[k].node;
            if (unit[i] < rep[q]) rep[q] = unit[i];
        } else {
            if (count == max_nodes) {
                result = -3;
                goto done;
            }
            q = (int32_t)count++;
            slots[k].key = key;
            slots[k].node = q;
            parent[q] = p;
            node_depth[q] = d;
            rep[q] = unit[i];
            group[q] = -1;
        }
        at[d] = q;
        if (term[i] >= 0) {
            if (group[q] < 0) group[q] = (int32_t)groups++;
            group_of_string[term[i]] = group[q];
        }
    }
    /* preorder: subtree sizes bottom-up (a parent is made before its children), children
     * listed by parent (slot 0 is the root), then positions top-down */
    subtree = (int64_t *)malloc(sizeof(int64_t) * (size_t)(count + 1));
    first_child = (int64_t *)calloc((size_t)count + 2, sizeof(int64_t));
    children = (int32_t *)malloc(sizeof(int32_t) * (size_t)(count + 1));
    pos = (int64_t *)malloc(sizeof(int64_t) * (size_t)(count + 1));
    cursor = (int64_t *)malloc(sizeof(int64_t) * (size_t)(count + 2));
    if (!subtree || !first_child || !children || !pos || !cursor) goto done;
    for (int64_t q = 0; q < count; q++) subtree[q] = 1;
    for (int64_t q = count - 1; q >= 0; q--)
        if (parent[q] >= 0) subtree[parent[q]] += subtree[q];
    for (int64_t q = 0; q < count; q++) first_child[parent[q] + 2]++;
    for (int64_t s = 1; s <= count + 1; s++) first_child[s] += first_child[s - 1];
    memcpy(cursor, first_child, sizeof(int64_t) * (size_t)(count + 2));
    for (int64_t q = 0; q < count; q++) children[cursor[parent[q] + 1]++] = (int32_t)q;
    /* first_child[s] .. first_child[s + 1]: children of slot s (slot p + 1 for node p) */
    int64_t next = 0;
    for (int64_t c = first_child[0]; c < first_child[1]; c++) {
        pos[children[c]] = next;
        next += subtree[children[c]];
    }
    for (int64_t q = 0; q < count; q++) { /* parents before children: pos[q] is set */
        int64_t slot = q + 1, place = pos[q] + 1;
        for (int64_t c = first_child[slot]; c < first_child[slot + 1]; c++) {
            pos[children[c]] = place;
            place += subtree[children[c]];
        }
    }
    for (int64_t q = 0; q < count; q++) {
        int64_t i = pos[q];
        out_depth[i] = node_depth[q];
        out_size[i] = (int32_t)subtree[q];
        out_unit[i] = rep[q];
        out_group[i] = group[q];
    }
    result = count;
done:
    free(slots);
    free(parent);
    free(node_depth);
    free(rep);
    free(group);
    free(at);
    free(subtree);
    free(first_child);
    free(children);
    free(pos);
    free(cursor);
    return result;
}
