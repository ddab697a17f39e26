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

    /**
     * The int64 little-endian values packed in {@code packed} (a {@code byte[]}): how callers pass
     * id lists. Why not LIST&lt;INTEGER&gt;: Bolt and Cypher box a list one value at a time. Why the
     * procedures declare such parameters as {@code Object} (ANY) and not {@code byte[]}: Cypher
     * coerces a BYTES argument for a {@code byte[]} parameter into a list of boxed bytes and back
     * (measured: a quarter of the server's CPU per feature fetch); ANY passes the array through.
     */
    static long[] fromLittleEndianBytes(Object packed, String what) {
        if (!(packed instanceof byte[] bytes)) {
            throw new IllegalArgumentException(what + " must be packed int64 little-endian bytes, not "
                    + (packed == null ? "null" : packed.getClass().getSimpleName()));
        }
        if (bytes.length % Long.BYTES != 0) {
            throw new IllegalArgumentException(what + " must be packed int64 little-endian bytes; got "
                    + bytes.length + " bytes, not a multiple of 8");
        }
        long[] out = new long[bytes.length / Long.BYTES];
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(out);
        return out;
    }

    byte[] toLittleEndianBytes() {
        ByteBuffer buf = ByteBuffer.allocate(size * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        buf.asLongBuffer().put(values, 0, size);
        return buf.array();
    }
}
