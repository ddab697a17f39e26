package gnn;

import java.util.Arrays;

/**
 * Open-addressing map from node id to node reference (or projection slot) without boxing: the
 * node set of one gnn.sampleHops batch reaches ~10^6 entries on big graphs, where a
 * {@code HashMap<Long, Long>} spent more time allocating than the sampling itself.
 */
final class LongLongMap {
    private static final long FREE = Long.MIN_VALUE;  // marks an empty key slot
    private long[] keys;
    private long[] values;
    private int size;
    private boolean hasFreeKey;  // the key FREE itself, stored aside
    private long freeKeyValue;

    LongLongMap(int expected) {
        int capacity = Integer.highestOneBit(Math.max(16, expected * 2 - 1)) << 1;
        keys = new long[capacity];
        values = new long[capacity];
        Arrays.fill(keys, FREE);
    }

    /** The value of {@code key}, or {@code missing}. */
    long get(long key, long missing) {
        if (key == FREE) {
            return hasFreeKey ? freeKeyValue : missing;
        }
        int mask = keys.length - 1;
        for (int i = index(key, mask); ; i = (i + 1) & mask) {
            if (keys[i] == key) {
                return values[i];
            }
            if (keys[i] == FREE) {
                return missing;
            }
        }
    }

    boolean containsKey(long key) {
        return key == FREE ? hasFreeKey : holds(key);
    }

    void put(long key, long value) {
        if (key == FREE) {
            hasFreeKey = true;
            freeKeyValue = value;
            return;
        }
        if (2 * (size + 1) > keys.length) {
            grow();
        }
        int mask = keys.length - 1;
        int i = index(key, mask);
        while (keys[i] != FREE && keys[i] != key) {
            i = (i + 1) & mask;
        }
        if (keys[i] == FREE) {
            size++;
        }
        keys[i] = key;
        values[i] = value;
    }

    private boolean holds(long key) {
        int mask = keys.length - 1;
        for (int i = index(key, mask); keys[i] != FREE; i = (i + 1) & mask) {
            if (keys[i] == key) {
                return true;
            }
        }
        return false;
    }

    private void grow() {
        long[] oldKeys = keys;
        long[] oldValues = values;
        keys = new long[oldKeys.length * 2];
        values = new long[oldKeys.length * 2];
        Arrays.fill(keys, FREE);
        size = 0;
        for (int i = 0; i < oldKeys.length; i++) {
            if (oldKeys[i] != FREE) {
                put(oldKeys[i], oldValues[i]);
            }
        }
    }

    private static int index(long key, int mask) {
        long h = key * 0x9E3779B97F4A7C15L;  // Fibonacci hashing: sequential ids spread out
        return (int) (h ^ (h >>> 32)) & mask;
    }
}
