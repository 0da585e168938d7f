/*
 * One row's refinement of the token classes, in C (regexlm/index/token_classes.py holds the
 * numpy code, the reference, and the rules):
 *
 * the row sends tokens[i] (distinct text tokens) to targets[i] and allows no other token. A
 * class whose named tokens all go to one target, and which is named wholly or not at all, stays
 * whole. Any other class splits by target: the groups (class, target) are ordered by class,
 * then target; a class with untouched tokens keeps its id for them, else its first group keeps
 * it; every other group gets the next new id, in that order. Shadow tokens follow the class of
 * the token they shadow.
 *
 * The numpy code makes a dozen passes over the named tokens; this makes three, with the
 * distinct groups found by a hash table and only they sorted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t key; /* class << 32 | target, or EMPTY */
    int64_t group;
} Slot;

#define EMPTY UINT64_MAX

/* class_of is uint16 (wide = 0, while there are at most 65,536 classes) or int32 (wide = 1). */
static inline int32_t class_at(const void *class_of, int32_t wide, int64_t t) {
    return wide ? ((const int32_t *)class_of)[t] : (int32_t)((const uint16_t *)class_of)[t];
}

static inline void set_class(void *class_of, int32_t wide, int64_t t, int64_t c) {
    if (wide)
        ((int32_t *)class_of)[t] = (int32_t)c;
    else
        ((uint16_t *)class_of)[t] = (uint16_t)c;
}

static int by_key(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The slot holding `key`, or the empty slot where it would go (linear probing). */
static int64_t find_slot(const Slot *table, int64_t capacity, uint64_t key) {
    int64_t s = (int64_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & (capacity - 1);
    while (table[s].key != EMPTY && table[s].key != key) s = (s + 1) & (capacity - 1);
    return s;
}

/* The table at twice the capacity, holding keys[0..groups) as groups 0..groups-1; NULL (and
 * the old table freed) when out of memory. */
static Slot *grow_table(Slot *table, int64_t *capacity, const uint64_t *keys, int64_t groups) {
    free(table);
    *capacity *= 2;
    table = (Slot *)malloc(sizeof(Slot) * (size_t)*capacity);
    if (table == NULL) return NULL;
    for (int64_t s = 0; s < *capacity; s++) table[s].key = EMPTY;
    for (int64_t g = 0; g < groups; g++) {
        int64_t s = find_slot(table, *capacity, keys[g]);
        table[s].key = keys[g];
        table[s].group = g;
    }
    return table;
}

/*
 * class_of [V] (int32 where wide, else uint16) and size int64[C] (tokens a row can name, per
 * class) are read, never written. class_of_out has out_wide's width (int32 where set, else
 * uint16). On return:
 *   * no class splits: returns C, row (C entries) holds the row over the classes;
 *   * classes split: returns C' > C; class_of_out (V entries) holds the new classes, size_out
 *     (C' entries) their sizes, old_of_new (C' entries) the old class of each, row (C'
 *     entries) the row. size_out, old_of_new and row have room for C + count entries.
 * -2 when out of memory; -3 when the classes split past 65,536 and class_of_out is uint16
 * (nothing written: call again with an int32 class_of_out).
 */
int64_t regexlm_refine_classes(const void *class_of, int32_t wide, int64_t vocab_size,
                               const int64_t *size, int64_t num_classes, const int32_t *tokens,
                               const int64_t *targets, int64_t count, const int64_t *shadows,
                               const int64_t *shadowed, int64_t num_shadows, void *class_of_out,
                               int32_t out_wide, int64_t *size_out, int64_t *old_of_new,
                               int32_t *row) {
    int64_t *first = (int64_t *)malloc(sizeof(int64_t) * (size_t)(num_classes + 1));
    int64_t *touched = (int64_t *)calloc((size_t)num_classes + 1, sizeof(int64_t));
    uint8_t *splits = (uint8_t *)calloc((size_t)num_classes + 1, 1);
    if (first == NULL || touched == NULL || splits == NULL) {
        free(first);
        free(touched);
        free(splits);
        return -2;
    }
    for (int64_t c = 0; c < num_classes; c++) first[c] = -2;
    for (int64_t i = 0; i < count; i++) {
        int32_t c = class_at(class_of, wide, tokens[i]);
        if (first[c] == -2)
            first[c] = targets[i];
        else if (first[c] != targets[i])
            splits[c] = 1;
        touched[c]++;
    }
    int64_t splitting = 0;
    for (int64_t c = 0; c < num_classes; c++) {
        if (touched[c] > 0 && touched[c] != size[c]) splits[c] = 1;
        splitting += splits[c];
    }
    if (splitting == 0) {
        for (int64_t c = 0; c < num_classes; c++) row[c] = touched[c] > 0 ? (int32_t)first[c] : -1;
        free(first);
        free(touched);
        free(splits);
        return num_classes;
    }
    /* the distinct (class, target) groups of the splitting classes' tokens; the per-group
     * arrays grow with the table (groups are usually few: nothing sized by the tokens but
     * group_of, which a row of many tokens would otherwise pay in fresh pages) */
    int64_t capacity = 256; /* doubled while more than half full */
    Slot *table = (Slot *)malloc(sizeof(Slot) * (size_t)capacity);
    int32_t *group_of = (int32_t *)malloc(sizeof(int32_t) * (size_t)(count + 1));
    uint64_t *keys = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)capacity);
    int64_t *group_size = (int64_t *)calloc((size_t)capacity, sizeof(int64_t));
    int64_t *new_id = NULL, *rank = NULL;
    int64_t status = 0;
    if (table == NULL || group_of == NULL || keys == NULL || group_size == NULL) {
        status = -2;
        goto done;
    }
    for (int64_t s = 0; s < capacity; s++) table[s].key = EMPTY;
    int64_t groups = 0;
    for (int64_t i = 0; i < count; i++) {
        int32_t c = class_at(class_of, wide, tokens[i]);
        if (!splits[c]) {
            group_of[i] = -1;
            continue;
        }
        uint64_t key = ((uint64_t)(uint32_t)c << 32) | (uint32_t)targets[i];
        int64_t s = find_slot(table, capacity, key);
        if (table[s].key == EMPTY) {
            if (2 * (groups + 1) > capacity) {
                int64_t was = capacity;
                table = grow_table(table, &capacity, keys, groups);
                uint64_t *more_keys =
                    (uint64_t *)realloc(keys, sizeof(uint64_t) * (size_t)capacity);
                if (more_keys != NULL) keys = more_keys;
                int64_t *more_sizes =
                    (int64_t *)realloc(group_size, sizeof(int64_t) * (size_t)capacity);
                if (more_sizes != NULL) group_size = more_sizes;
                if (table == NULL || more_keys == NULL || more_sizes == NULL) {
                    status = -2;
                    goto done;
                }
                memset(group_size + was, 0, sizeof(int64_t) * (size_t)(capacity - was));
                s = find_slot(table, capacity, key);
            }
            table[s].key = key;
            table[s].group = groups;
            keys[groups++] = key;
        }
        group_of[i] = (int32_t)table[s].group;
        group_size[table[s].group]++;
    }
    new_id = (int64_t *)malloc(sizeof(int64_t) * (size_t)(groups + 1));
    rank = (int64_t *)malloc(sizeof(int64_t) * (size_t)(groups + 1));
    if (new_id == NULL || rank == NULL) {
        status = -2;
        goto done;
    }
    /* order the groups by (class, target): rank[found order] = sorted position */
    uint64_t *sorted = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(groups + 1));
    if (sorted == NULL) {
        status = -2;
        goto done;
    }
    memcpy(sorted, keys, sizeof(uint64_t) * (size_t)groups);
    qsort(sorted, (size_t)groups, sizeof(uint64_t), by_key);
    for (int64_t g = 0; g < groups; g++) {
        rank[table[find_slot(table, capacity, sorted[g])].group] = g;
    }
    /* new ids in sorted order; sizes and old classes of the new ones */
    int64_t next = num_classes;
    for (int64_t c = 0; c < num_classes; c++) {
        size_out[c] = size[c];
        old_of_new[c] = c;
    }
    int64_t *sorted_group = (int64_t *)malloc(sizeof(int64_t) * (size_t)(groups + 1));
    if (sorted_group == NULL) {
        free(sorted);
        status = -2;
        goto done;
    }
    for (int64_t g = 0; g < groups; g++) sorted_group[rank[g]] = g;
    for (int64_t r = 0; r < groups; r++) {
        int64_t g = sorted_group[r];
        int64_t c = (int64_t)(sorted[r] >> 32);
        int first_of_class = r == 0 || (int64_t)(sorted[r - 1] >> 32) != c;
        int has_rest = size[c] > touched[c];
        if (first_of_class && !has_rest) {
            new_id[g] = c;
        } else {
            new_id[g] = next;
            size_out[next] = group_size[g];
            size_out[c] -= group_size[g];
            old_of_new[next] = c;
            next++;
        }
    }
    free(sorted_group);
    free(sorted);
    if (!out_wide && next > 65536) { /* the new ids do not fit in uint16: ask for int32 */
        status = -3;
        goto done;
    }
    if (wide == out_wide)
        memcpy(class_of_out, class_of, (wide ? 4 : 2) * (size_t)vocab_size);
    else
        for (int64_t t = 0; t < vocab_size; t++)
            set_class(class_of_out, out_wide, t, class_at(class_of, wide, t));
    for (int64_t i = 0; i < count; i++)
        if (group_of[i] >= 0) set_class(class_of_out, out_wide, tokens[i], new_id[group_of[i]]);
    for (int64_t k = 0; k < num_shadows; k++)
        set_class(class_of_out, out_wide, shadows[k], class_at(class_of_out, out_wide, shadowed[k]));
    for (int64_t c = 0; c < next; c++) row[c] = -1;
    for (int64_t i = 0; i < count; i++)
        row[class_at(class_of_out, out_wide, tokens[i])] = (int32_t)targets[i];
    status = next;
done:
    free(table);
    free(group_of);
    free(keys);
    free(group_size);
    free(new_id);
    free(rank);
    free(first);
    free(touched);
    free(splits);
    return status;
}
