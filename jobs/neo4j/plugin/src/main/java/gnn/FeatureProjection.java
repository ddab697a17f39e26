package gnn;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.neo4j.values.storable.ByteArray;
import org.neo4j.values.storable.IntegralValue;
import org.neo4j.values.storable.Value;

/**
 * The stored feature row (bytes as stored: dense or sparse) and integer label of every (:label) node.
 *
 * <p>Rows are packed back to back, in slot order, into pages of up to {@link #PAGE} bytes (a row
 * never straddles two pages), not kept as one array per node: a fetch of ids in increasing order
 * then reads memory forward, and there is no per-row object to reach first (measured: about half
 * the gather time of an array per row) nor its 20 bytes of header and reference.
 */
final class FeatureProjection implements Projection {
    private static final int PAGE_BITS = 26;
    static final int PAGE = 1 << PAGE_BITS;  // 64 MiB
    private final ProjectedNodes nodes;
    private final byte[][] pages;
    /** Per slot: page index << PAGE_BITS | position in the page. */
    private final long[] offsets;
    private final int[] lengths;
    private final long[] ys;

    private FeatureProjection(ProjectedNodes nodes, byte[][] pages, long[] offsets, int[] lengths, long[] ys) {
        this.nodes = nodes;
        this.pages = pages;
        this.offsets = offsets;
        this.lengths = lengths;
        this.ys = ys;
    }

    @Override
    public long bytes() {
        long rowBytes = 0;
        for (byte[] page : pages) {
            rowBytes += page.length;
        }
        return nodes.bytes() + rowBytes + 20L * ys.length;
    }

    @Override
    public int nodes() {
        return nodes.size();
    }

    /** Appends the rows of {@code ids} in order (unknown ids go to missing), as the store path does. */
    void fetch(long[] ids, RowsBuilder out) {
        for (long id : ids) {
            int slot = nodes.slot(id);
            if (slot < 0) {
                out.missing(id);
            } else {
                long at = offsets[slot];
                out.add(pages[(int) (at >>> PAGE_BITS)], (int) (at & (PAGE - 1)), lengths[slot], ys[slot]);
            }
        }
    }

    /** Rows the store path would reject (no bytes x, a non-integer y) leave the dataset unprojected. */
    static FeatureProjection build(KernelGraph g, int xKey, int yKey, Budget budget) throws NotProjectable {
        ProjectedNodes.Scan scan = ProjectedNodes.scan(g, budget);
        int n = scan.nodes().size();
        budget.charge(20L * n, "labels and row offsets");
        long[] offsets = new long[n];
        int[] lengths = new int[n];
        long[] ys = new long[n];
        Pages pages = new Pages();
        int[] keys = {xKey, yKey};
        Value[] values = new Value[2];
        for (int k = 0; k < n; k++) {
            try {
                g.properties(g.node(scan.refs()[k]), keys, values);
            } catch (IllegalStateException e) {  // deleted during the scan
                throw new NotProjectable(e.getMessage());
            }
            if (!(values[0] instanceof ByteArray row) || (values[1] != null && !(values[1] instanceof IntegralValue))) {
                throw new NotProjectable("node " + scan.nodes().ids[k] + " has no bytes feature row or a non-integer label");
            }
            byte[] bytes = row.asObject();
            budget.charge(bytes.length, "feature rows");
            offsets[k] = pages.append(bytes);  // copied into the page: never keeps the store's array
            lengths[k] = bytes.length;
            ys[k] = values[1] == null ? -1L : ((IntegralValue) values[1]).longValue();
        }
        return new FeatureProjection(scan.nodes(), pages.finish(), offsets, lengths, ys);
    }

    /** Growing pages of packed rows: the current page doubles up to PAGE, then a new one starts. */
    private static final class Pages {
        private final List<byte[]> full = new ArrayList<>();
        private byte[] current = new byte[1 << 16];
        private int used;

        /** Copies {@code row} in; returns its offset (page index << PAGE_BITS | position). */
        long append(byte[] row) throws NotProjectable {
            if (row.length > PAGE) {
                throw new NotProjectable("a feature row of " + row.length + " bytes exceeds the page of " + PAGE);
            }
            if (used + row.length > current.length) {
                if (current.length < PAGE) {
                    int size = current.length;
                    while (size < used + row.length) {
                        size *= 2;
                    }
                    current = Arrays.copyOf(current, Math.min(PAGE, size));
                }
                if (used + row.length > current.length) {  // the page is full: start the next one
                    full.add(used == current.length ? current : Arrays.copyOf(current, used));
                    current = new byte[Math.min(PAGE, Math.max(1 << 16, row.length))];
                    used = 0;
                }
            }
            long at = ((long) full.size() << PAGE_BITS) | used;
            System.arraycopy(row, 0, current, used, row.length);
            used += row.length;
            return at;
        }

        byte[][] finish() {
            full.add(used == current.length ? current : Arrays.copyOf(current, used));
            return full.toArray(new byte[0][]);
        }
    }
}
