package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.stream.Stream;

import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.RelationshipType;
import org.neo4j.graphdb.ResourceIterable;
import org.neo4j.graphdb.Transaction;
import org.neo4j.graphdb.schema.IndexDefinition;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;

/**
 * Read-only procedures behind src/procedures.py: one hop of neighbour sampling and one batch of
 * feature rows per call, each answered as a single row of packed little-endian bytes.
 *
 * <p>Why a procedure: Cypher's slotted runtime (Community) and per-record decoding in Python are the
 * bottleneck of the Cypher sampler; here the per-node work is a few kernel cursor steps and the
 * result crosses Bolt as two byte arrays that Python decodes with one {@code np.frombuffer} each.
 *
 * <p>Only the public procedure API is used ({@code @Context Transaction}), so the procedures need no
 * {@code dbms.security.procedures.unrestricted} entry.
 */
public final class GnnProcedures {
    /** Park-Miller "minimal standard" modulus 2^31-1 and multiplier, as in src/graph_sampler.py. */
    static final long MINSTD_MODULUS = 2_147_483_647L;
    static final long MINSTD_MULTIPLIER = 48_271L;

    @Context
    public Transaction tx;

    /** Result of {@link #sampleHop}. */
    public static final class HopResult {
        /** Little-endian int64 per frontier node, in the order of {@code ids}; -1 = no such node. */
        public byte[] counts;
        /** Concatenated little-endian int64 neighbour ids ({@code idProp} values). */
        public byte[] neighbours;

        HopResult(byte[] counts, byte[] neighbours) {
            this.counts = counts;
            this.neighbours = neighbours;
        }
    }

    /** Result of {@link #fetchRows}. */
    public static final class RowsResult {
        /** Concatenated {@code xProp} byte arrays of the found nodes, in the order of {@code ids}. */
        public byte[] x;
        /** Little-endian int64 {@code yProp} per found node (-1 when the property is absent). */
        public byte[] y;
        /** Ids without a node; their rows are left out of {@code x} and {@code y}. */
        public List<Long> missing;

        RowsResult(byte[] x, byte[] y, List<Long> missing) {
            this.x = x;
            this.y = y;
            this.missing = missing;
        }
    }

    @Procedure(name = "gnn.sampleHop", mode = Mode.READ)
    @Description("gnn.sampleHop(label, relType, idProp, ids, states, fanout) :: (counts :: BYTES, neighbours :: BYTES)"
            + " - for every node (:label {idProp: ids[i]}) a uniform sample without replacement of min(fanout, degree)"
            + " in-neighbours (n)<-[:relType]-(m) drawn with Floyd's algorithm from the minstd state states[i]"
            + " (fanout < 0: all). counts: int64 LE per id (-1 = unknown id); neighbours: int64 LE idProp values.")
    public Stream<HopResult> sampleHop(
            @Name("label") String label,
            @Name("relType") String relType,
            @Name("idProp") String idProp,
            @Name("ids") List<Long> ids,
            @Name("states") List<Long> states,
            @Name("fanout") long fanout) {
        if (ids.size() != states.size()) {
            throw new IllegalArgumentException(
                    "gnn.sampleHop: ids has " + ids.size() + " entries but states has " + states.size());
        }
        Label lbl = Label.label(label);
        requireIdIndex(lbl, idProp);
        RelationshipType type = RelationshipType.withName(relType);
        int n = ids.size();
        ByteBuffer counts = ByteBuffer.allocate(n * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        LongList out = new LongList(Math.max(16, n));
        List<Relationship> rels = new ArrayList<>();
        BitSet picked = new BitSet();
        int[] picks = new int[0];
        for (int i = 0; i < n; i++) {
            long state = states.get(i);
            if (state <= 0 || state >= MINSTD_MODULUS) {
                throw new IllegalArgumentException("gnn.sampleHop: states[" + i + "] = " + state
                        + " is outside the minstd range 1.." + (MINSTD_MODULUS - 1));
            }
            Node node = tx.findNode(lbl, idProp, ids.get(i));
            if (node == null) {
                counts.putLong(-1L);
                continue;
            }
            // Neighbours in relationship-iteration order (the node's chain, or its type group when
            // dense), the order of the Cypher pattern comprehension [(n)<-[:T]-(m) | m] as well;
            // tests/test_procedures.py checks both give identical samples.
            rels.clear();
            try (ResourceIterable<Relationship> it = node.getRelationships(Direction.INCOMING, type)) {
                for (Relationship r : it) {
                    rels.add(r);
                }
            }
            int d = rels.size();
            if (fanout < 0 || d <= fanout) {
                for (Relationship r : rels) {
                    out.add(neighbourId(r, idProp, label));
                }
                counts.putLong(d);
                continue;
            }
            int k = (int) fanout;
            if (picks.length < k) {
                picks = new int[k];
            }
            // Floyd's algorithm: for j = d-k .. d-1 draw t in [0, j]; take t unless taken, else j.
            // Same arithmetic as the Cypher reduce(): the state advances before each draw.
            long r = state;
            for (int q = 0; q < k; q++) {
                long j = d - k + q;
                r = (r * MINSTD_MULTIPLIER) % MINSTD_MODULUS;
                int t = (int) (r % (j + 1));
                int p = picked.get(t) ? (int) j : t;
                picked.set(p);
                picks[q] = p;
            }
            for (int q = 0; q < k; q++) {
                picked.clear(picks[q]);
                out.add(neighbourId(rels.get(picks[q]), idProp, label));
            }
            counts.putLong(k);
        }
        return Stream.of(new HopResult(counts.array(), out.toLittleEndianBytes()));
    }

    @Procedure(name = "gnn.fetchRows", mode = Mode.READ)
    @Description("gnn.fetchRows(label, idProp, xProp, yProp, ids) :: (x :: BYTES, y :: BYTES, missing :: LIST<INTEGER>)"
            + " - for every found node (:label {idProp: ids[i]}), in ids order (repeats allowed): its xProp bytes"
            + " concatenated into x and its yProp as int64 LE in y (-1 when absent); ids without a node in missing.")
    public Stream<RowsResult> fetchRows(
            @Name("label") String label,
            @Name("idProp") String idProp,
            @Name("xProp") String xProp,
            @Name("yProp") String yProp,
            @Name("ids") List<Long> ids) {
        Label lbl = Label.label(label);
        requireIdIndex(lbl, idProp);
        List<byte[]> rows = new ArrayList<>(ids.size());
        LongList ys = new LongList(Math.max(16, ids.size()));
        List<Long> missing = new ArrayList<>();
        int width = -1;
        for (Long id : ids) {
            Node node = tx.findNode(lbl, idProp, id);
            if (node == null) {
                missing.add(id);
                continue;
            }
            Object x = node.getProperty(xProp, null);
            if (!(x instanceof byte[])) {
                throw new IllegalArgumentException("gnn.fetchRows: node (:" + label + " {" + idProp + ": " + id
                        + "}) has no byte[] property " + xProp + " (found " + describe(x) + ")");
            }
            byte[] row = (byte[]) x;
            if (width < 0) {
                width = row.length;
            } else if (row.length != width) {
                throw new IllegalArgumentException("gnn.fetchRows: node (:" + label + " {" + idProp + ": " + id
                        + "}) has " + row.length + " bytes in " + xProp + ", earlier rows have " + width);
            }
            rows.add(row);
            Object y = node.getProperty(yProp, null);
            if (y != null && !(y instanceof Long || y instanceof Integer)) {
                throw new IllegalArgumentException("gnn.fetchRows: node (:" + label + " {" + idProp + ": " + id
                        + "}) has a non-integer " + yProp + " (found " + describe(y) + ")");
            }
            ys.add(y == null ? -1L : ((Number) y).longValue());
        }
        byte[] xs = new byte[rows.size() * Math.max(width, 0)];
        int off = 0;
        for (byte[] row : rows) {
            System.arraycopy(row, 0, xs, off, row.length);
            off += row.length;
        }
        return Stream.of(new RowsResult(xs, ys.toLittleEndianBytes(), missing));
    }

    /**
     * Fail fast instead of degrading to a label scan per id (minutes on a large graph): the ids are
     * looked up through the uniqueness constraint's range index.
     */
    private void requireIdIndex(Label label, String idProp) {
        for (IndexDefinition index : tx.schema().getIndexes(label)) {
            List<String> keys = new ArrayList<>();
            index.getPropertyKeys().forEach(keys::add);
            if (keys.equals(List.of(idProp))) {
                return;
            }
        }
        throw new IllegalArgumentException("gnn: no index on :" + label.name() + "(" + idProp + "); create the"
                + " uniqueness constraint (CREATE CONSTRAINT FOR (n:" + label.name() + ") REQUIRE n." + idProp
                + " IS UNIQUE) or load the dataset with loaders/load_into_neo4j.py");
    }

    private static long neighbourId(Relationship r, String idProp, String label) {
        Object v = r.getStartNode().getProperty(idProp, null);
        if (!(v instanceof Long || v instanceof Integer)) {
            throw new IllegalArgumentException("gnn.sampleHop: a neighbour of a :" + label + " node has no integer "
                    + idProp + " property (found " + describe(v) + ")");
        }
        return ((Number) v).longValue();
    }

    private static String describe(Object v) {
        return v == null ? "nothing" : v.getClass().getSimpleName();
    }

    /** Growable primitive long array: no boxing for the hundreds of thousands of ids per call. */
    private static final class LongList {
        private long[] values;
        private int size;

        LongList(int capacity) {
            values = new long[capacity];
        }

        void add(long v) {
            if (size == values.length) {
                values = Arrays.copyOf(values, size * 2);
            }
            values[size++] = v;
        }

        byte[] toLittleEndianBytes() {
            ByteBuffer buf = ByteBuffer.allocate(size * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
            buf.asLongBuffer().put(values, 0, size);
            return buf.array();
        }
    }
}
