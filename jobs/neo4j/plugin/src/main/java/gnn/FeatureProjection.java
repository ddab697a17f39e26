package gnn;

import org.neo4j.values.storable.ByteArray;
import org.neo4j.values.storable.IntegralValue;
import org.neo4j.values.storable.Value;

/** The stored feature row (bytes as stored: dense or sparse) and integer label of every (:label) node. */
final class FeatureProjection implements Projection {
    /** Per-row array overhead on a 64-bit JVM with compressed oops: header + length + the reference. */
    private static final long ROW_OVERHEAD = 16 + 4;
    private final ProjectedNodes nodes;
    private final byte[][] rows;
    private final long[] ys;
    private final long rowBytes;

    private FeatureProjection(ProjectedNodes nodes, byte[][] rows, long[] ys, long rowBytes) {
        this.nodes = nodes;
        this.rows = rows;
        this.ys = ys;
        this.rowBytes = rowBytes;
    }

    @Override
    public long bytes() {
        return nodes.bytes() + rowBytes + 8L * ys.length;
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
                out.add(rows[slot], ys[slot]);
            }
        }
    }

    /** Rows the store path would reject (no bytes x, a non-integer y) leave the dataset unprojected. */
    static FeatureProjection build(KernelGraph g, int xKey, int yKey, Budget budget) throws NotProjectable {
        ProjectedNodes.Scan scan = ProjectedNodes.scan(g, budget);
        int n = scan.nodes().size();
        budget.charge(8L * n + 4L * n, "labels and row references");
        byte[][] rows = new byte[n][];
        long[] ys = new long[n];
        int[] keys = {xKey, yKey};
        Value[] values = new Value[2];
        long rowBytes = 0;
        for (int k = 0; k < n; k++) {
            try {
                g.properties(g.node(scan.refs()[k]), keys, values);
            } catch (IllegalStateException e) {  // deleted during the scan
                throw new NotProjectable(e.getMessage());
            }
            if (!(values[0] instanceof ByteArray) || (values[1] != null && !(values[1] instanceof IntegralValue))) {
                throw new NotProjectable("node " + scan.nodes().ids[k] + " has no bytes feature row or a non-integer label");
            }
            rows[k] = ((ByteArray) values[0]).asObjectCopy();  // kept for long: never share the store's array
            ys[k] = values[1] == null ? -1L : ((IntegralValue) values[1]).longValue();
            rowBytes += rows[k].length + ROW_OVERHEAD;
            budget.charge(rows[k].length + ROW_OVERHEAD - 4, "feature rows");
        }
        return new FeatureProjection(scan.nodes(), rows, ys, rowBytes);
    }
}
