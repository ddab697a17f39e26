package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/** Growable primitive long array: no boxing for the hundreds of thousands of ids per call. */
final class LongList {
    long[] values;
    int size;

    LongList(int capacity) {
        values = new long[Math.max(1, capacity)];
    }

    void add(long v) {
        if (size == values.length) {
            values = Arrays.copyOf(values, size * 2);
        }
        values[size++] = v;
    }

    void clear() {
        size = 0;
    }

    long[] toArray() {
        return Arrays.copyOf(values, size);
    }

    byte[] toLittleEndianBytes() {
        ByteBuffer buf = ByteBuffer.allocate(size * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        buf.asLongBuffer().put(values, 0, size);
        return buf.array();
    }
}
