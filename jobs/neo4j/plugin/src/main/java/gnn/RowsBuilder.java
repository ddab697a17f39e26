package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The answer of one gnn.fetchRows call, appended row by row into ONE byte array (not a list of
 * per-row arrays copied again at the end): sized from the first row, so dense rows never regrow.
 */
final class RowsBuilder {
    private final int expectedRows;
    private byte[] x = new byte[0];
    private int size;
    private final ByteBuffer lengths;
    private final LongList ys;
    private final List<Long> missing = new ArrayList<>();

    RowsBuilder(int expectedRows) {
        this.expectedRows = expectedRows;
        this.lengths = ByteBuffer.allocate(expectedRows * Integer.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        this.ys = new LongList(Math.max(16, expectedRows));
    }

    /** Appends {@code src[from, from + length)} as the next row, with its label {@code y}. */
    void add(byte[] src, int from, int length, long y) {
        if (size + (long) length > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("gnn.fetchRows: the rows of " + expectedRows + " ids exceed 2 GiB;"
                    + " ask for fewer ids per call");
        }
        if (size + length > x.length) {
            long guess = Math.max((long) length * expectedRows, 2L * x.length);
            x = Arrays.copyOf(x, (int) Math.min(Integer.MAX_VALUE - 8, Math.max(guess, size + (long) length)));
        }
        System.arraycopy(src, from, x, size, length);
        size += length;
        lengths.putInt(length);
        ys.add(y);
    }

    void missing(long id) {
        missing.add(id);
    }

    GnnProcedures.RowsResult result() {
        byte[] xs = size == x.length ? x : Arrays.copyOf(x, size);
        byte[] lens = Arrays.copyOf(lengths.array(), lengths.position());
        return new GnnProcedures.RowsResult(xs, lens, ys.toLittleEndianBytes(), missing);
    }
}
