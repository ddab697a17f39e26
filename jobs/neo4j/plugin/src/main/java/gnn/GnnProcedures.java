package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Transaction;
import org.neo4j.logging.Log;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;
import org.neo4j.values.storable.ByteArray;
import org.neo4j.values.storable.IntegralValue;
import org.neo4j.values.storable.Value;

/**
 * Read-only procedures behind src/neo4jdb/procedures.py: neighbour sampling and feature rows, each call
 * answered as a single row of packed little-endian bytes.
 *
 * <p>Why a procedure: Cypher's slotted runtime (Community) and per-record decoding in Python are the
 * bottleneck of the Cypher sampler; here the per-node work is a few kernel cursor steps (or array
 * reads, from a {@link Projections projection}) and the result crosses Bolt as a few byte arrays
 * that Python decodes with one {@code np.frombuffer} each.
 *
 * <p>{@code projectionMb > 0} lets a call build and use an in-heap projection of the dataset of at
 * most that many MiB; the answers are the same as from the store, bit for bit.
 *
 * <p>Only the public procedure API is used ({@code @Context Transaction}), so the procedures need no
 * {@code dbms.security.procedures.unrestricted} entry.
 */
public final class GnnProcedures {
    @Context
    public Transaction tx;

    @Context
    public GraphDatabaseService db;

    @Context
    public Log log;

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
        /** Little-endian int32 byte length of each found node's {@code xProp} (rows may differ: sparse rows). */
        public byte[] lengths;
        /** Little-endian int64 {@code yProp} per found node (-1 when the property is absent). */
        public byte[] y;
        /** Ids without a node; their rows are left out of {@code x}, {@code lengths} and {@code y}. */
        public List<Long> missing;

        RowsResult(byte[] x, byte[] lengths, byte[] y, List<Long> missing) {
            this.x = x;
            this.lengths = lengths;
            this.y = y;
            this.missing = missing;
        }
    }

    /**
     * Result of {@link #sampleHops} and {@link HeteroProcedures#sampleHeteroHops}: the sample relabelled to local
     * indices, PyG style, one entry per hop (heterogeneous: per (hop, relationship type) for counts and locals,
     * per (hop, node type) for nodes, hop-major).
     */
    public static final class HopsResult {
        /** Little-endian int64 per frontier node (of the destination type): its number of sampled neighbours (-1 = unknown seed id). */
        public List<byte[]> counts;
        /** Little-endian int32 local index (position in the batch's node list, of the source type) of each sampled neighbour. */
        public List<byte[]> locals;
        /** Little-endian int64 ids of the nodes new in that hop (of that type), in order of first appearance. */
        public List<byte[]> nodes;

        HopsResult(List<byte[]> counts, List<byte[]> locals, List<byte[]> nodes) {
            this.counts = counts;
            this.locals = locals;
            this.nodes = nodes;
        }
    }

    @Procedure(name = "gnn.sampleHop", mode = Mode.READ)
    @Description("gnn.sampleHop(label, relType, idProp, ids, states, fanout, adjProp = '', projectionMb = 0)"
            + " :: (counts :: BYTES, neighbours :: BYTES)"
            + " - ids and states: packed int64 LE bytes. For every node (:label {idProp: ids[i]}) a uniform sample without replacement of min(fanout, degree)"
            + " in-neighbours drawn with Floyd's algorithm from the minstd state states[i] (fanout < 0: all)."
            + " Neighbours: the packed int64 LE ids of the node's bytes property adjProp when given, else the"
            + " sources of its incoming relType relationships. counts: int64 LE per id (-1 = unknown id);"
            + " neighbours: int64 LE idProp values. projectionMb > 0: may build/use an in-heap projection.")
    public Stream<HopResult> sampleHop(
            @Name("label") String label,
            @Name("relType") String relType,
            @Name("idProp") String idProp,
            @Name("ids") Object idBytes,
            @Name("states") Object stateBytes,
            @Name("fanout") long fanout,
            @Name(value = "adjProp", defaultValue = "") String adjProp,
            @Name(value = "projectionMb", defaultValue = "0") double projectionMb) {
        long[] ids = LongList.fromLittleEndianBytes(idBytes, "gnn.sampleHop: ids");
        long[] stateArr = LongList.fromLittleEndianBytes(stateBytes, "gnn.sampleHop: states");
        if (ids.length != stateArr.length) {
            throw new IllegalArgumentException(
                    "gnn.sampleHop: ids has " + ids.length + " entries but states has " + stateArr.length);
        }
        try (KernelGraph g = new KernelGraph(tx, db.databaseName(), label, idProp)) {
            Topology topology = topology(g, relType, adjProp, projectionMb);
            int n = ids.length;
            long[] refs = new long[n];
            for (int i = 0; i < n; i++) {
                checkState(stateArr[i], "gnn.sampleHop: states[" + i + "]");
                refs[i] = topology.nodeRef(ids[i]);
            }
            LongList out = new LongList(Math.max(16, n));
            byte[] counts = new Floyd().sampleFrontier(topology, refs, i -> stateArr[i], fanout, out);
            return Stream.of(new HopResult(counts, out.toLittleEndianBytes()));
        }
    }

    @Procedure(name = "gnn.sampleHops", mode = Mode.READ)
    @Description("gnn.sampleHops(label, relType, idProp, adjProp, seeds, fanouts, hopStates, projectionMb = 0)"
            + " seeds: packed int64 LE bytes"
            + " :: (counts :: LIST<BYTES>, locals :: LIST<BYTES>, nodes :: LIST<BYTES>) - all hops of one mini-batch"
            + " in one call, relabelled:"
            + " PyG NeighborSampler semantics: hop k samples (as gnn.sampleHop) every node that was new in hop k-1"
            + " (hop 0: the seeds, duplicates included), new nodes in order of first appearance. The minstd state"
            + " of frontier position i in hop k is derived from hopStates[k] (see hopState). adjProp '' walks"
            + " relType relationships. counts[k]: int64 LE per frontier node (-1 = unknown seed id); locals[k]: int32 LE"
            + " position in the batch's node list (seeds, then nodes[0], nodes[1], ...) of each sampled neighbour;"
            + " nodes[k]: int64 LE ids new in hop k.")
    public Stream<HopsResult> sampleHops(
            @Name("label") String label,
            @Name("relType") String relType,
            @Name("idProp") String idProp,
            @Name("adjProp") String adjProp,
            @Name("seeds") Object seedBytes,
            @Name("fanouts") List<Long> fanouts,
            @Name("hopStates") List<Long> hopStates,
            @Name(value = "projectionMb", defaultValue = "0") double projectionMb) {
        if (fanouts.size() != hopStates.size()) {
            throw new IllegalArgumentException("gnn.sampleHops: fanouts has " + fanouts.size()
                    + " entries but hopStates has " + hopStates.size());
        }
        long[] seeds = LongList.fromLittleEndianBytes(seedBytes, "gnn.sampleHops: seeds");
        try (KernelGraph g = new KernelGraph(tx, db.databaseName(), label, idProp)) {
            Topology topology = topology(g, relType, adjProp, projectionMb);
            int n = seeds.length;
            long[] frontierRefs = new long[n];
            List<byte[]> countsOut = new ArrayList<>();
            List<byte[]> localsOut = new ArrayList<>();
            List<byte[]> nodesOut = new ArrayList<>();
            Floyd floyd = new Floyd();
            try (BatchNodes batch = topology.batchNodes(n * 16)) {
                // The node list starts with the seeds, repeats kept at their positions (as pyg-lib);
                // a repeated id's local index is its first position.
                for (int i = 0; i < n; i++) {
                    long ref = topology.nodeRef(seeds[i]);
                    frontierRefs[i] = ref;
                    if (ref >= 0 && batch.local(seeds[i]) < 0) {
                        batch.add(seeds[i], ref, i);
                    }
                }
                int size = n;
                for (int hop = 0; hop < fanouts.size(); hop++) {
                    long base = checkState(hopStates.get(hop), "gnn.sampleHops: hopStates[" + hop + "]");
                    long fanout = fanouts.get(hop);
                    int m = frontierRefs.length;
                    LongList out = new LongList(Math.max(16, m * (int) Math.max(1, Math.min(fanout, 64))));
                    byte[] counts = floyd.sampleFrontier(topology, frontierRefs, i -> hopState(base, i), fanout, out);
                    ByteBuffer locals = ByteBuffer.allocate(out.size * Integer.BYTES).order(ByteOrder.LITTLE_ENDIAN);
                    LongList nextRefs = new LongList(16);
                    LongList nextIds = new LongList(16);
                    for (int q = 0; q < out.size; q++) {
                        long id = out.values[q];
                        int local = batch.local(id);
                        if (local < 0) {
                            long ref = topology.nodeRef(id);
                            if (ref < 0) {
                                throw new IllegalArgumentException("gnn.sampleHops: neighbour id " + id + " of a :"
                                        + label + " node is not a node; the adjacency is stale, reload the dataset");
                            }
                            local = size++;
                            batch.add(id, ref, local);
                            nextRefs.add(ref);
                            nextIds.add(id);
                        }
                        locals.putInt(local);
                    }
                    countsOut.add(counts);
                    localsOut.add(locals.array());
                    nodesOut.add(nextIds.toLittleEndianBytes());
                    frontierRefs = nextRefs.toArray();
                }
            }
            return Stream.of(new HopsResult(countsOut, localsOut, nodesOut));
        }
    }

    /** The projection of the dataset's topology when allowed and possible, else the store. */
    private Topology topology(KernelGraph g, String relType, String adjProp, double projectionMb) {
        StoreTopology store = new StoreTopology(g, relType, adjProp);
        TopologyProjection p = TopologyProjection.get(g, store, relType, adjProp, Budget.mebibytes(projectionMb), log);
        return p != null ? p.view() : store;
    }

    /**
     * The minstd state (1..2^31-2) of frontier position {@code i} in a hop whose client state is {@code base}:
     * SplitMix64 of {@code base + (i + 1) * golden}, reduced. Mirrored by src/neo4jdb/procedures.py (hop_states).
     */
    static long hopState(long base, int i) {
        long z = base + (i + 1L) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z = z ^ (z >>> 31);
        return 1 + Long.remainderUnsigned(z, Floyd.MINSTD_MODULUS - 1);
    }

    private static long checkState(long state, String what) {
        if (state <= 0 || state >= Floyd.MINSTD_MODULUS) {
            throw new IllegalArgumentException(what + " = " + state + " is outside the minstd range 1.."
                    + (Floyd.MINSTD_MODULUS - 1));
        }
        return state;
    }

    @Procedure(name = "gnn.fetchRows", mode = Mode.READ)
    @Description("gnn.fetchRows(label, idProp, xProp, yProp, ids, projectionMb = 0) :: (x :: BYTES, lengths :: BYTES,"
            + " y :: BYTES, missing :: LIST<INTEGER>) - ids: packed int64 LE bytes. For every found node (:label {idProp: ids[i]}), in ids order"
            + " (repeats allowed): its xProp bytes concatenated into x, their length as int32 LE in lengths, and its"
            + " yProp as int64 LE in y (-1 when absent); ids without a node in missing. projectionMb > 0: may"
            + " build/use an in-heap projection of the rows.")
    public Stream<RowsResult> fetchRows(
            @Name("label") String label,
            @Name("idProp") String idProp,
            @Name("xProp") String xProp,
            @Name("yProp") String yProp,
            @Name("ids") Object idBytes,
            @Name(value = "projectionMb", defaultValue = "0") double projectionMb) {
        long budget = Budget.mebibytes(projectionMb);  // a request above the server's cap is refused first
        long[] ids = LongList.fromLittleEndianBytes(idBytes, "gnn.fetchRows: ids");
        try (KernelGraph g = new KernelGraph(tx, db.databaseName(), label, idProp)) {
            int xKey = g.tokens.propertyKey(xProp);
            int yKey = g.tokens.propertyKey(yProp);
            RowsBuilder out = new RowsBuilder(ids.length);
            FeatureProjection p = Projections.get(Projections.key(g, "rows:" + xProp, yProp), g,
                    budget, log, b -> FeatureProjection.build(g, xKey, yKey, b));
            if (p != null) {
                p.fetch(ids, out);
                return Stream.of(out.result());
            }
            int[] keys = {xKey, yKey};
            Value[] values = new Value[2];
            for (long id : ids) {
                long ref = g.nodeRef(id);
                if (ref < 0) {
                    out.missing(id);
                    continue;
                }
                g.properties(g.node(ref), keys, values);
                if (!(values[0] instanceof ByteArray)) {
                    throw new IllegalArgumentException("gnn.fetchRows: node (:" + label + " {" + idProp + ": " + id
                            + "}) has no byte[] property " + xProp + " (found " + describe(values[0]) + ")");
                }
                if (values[1] != null && !(values[1] instanceof IntegralValue)) {
                    throw new IllegalArgumentException("gnn.fetchRows: node (:" + label + " {" + idProp + ": " + id
                            + "}) has a non-integer " + yProp + " (found " + describe(values[1]) + ")");
                }
                byte[] row = ((ByteArray) values[0]).asObject();
                out.add(row, 0, row.length, values[1] == null ? -1L : ((IntegralValue) values[1]).longValue());
            }
            return Stream.of(out.result());
        }
    }

    @Procedure(name = "gnn.rowChanges", mode = Mode.READ)
    @Description("gnn.rowChanges(label, idProp, epoch, since) :: (watched :: BOOLEAN, epoch :: INTEGER, version :: INTEGER,"
            + " ids :: BYTES, complete :: BOOLEAN) - dense ids (int64 LE) of the (:label) nodes whose properties changed or"
            + " that were deleted in transactions committed after version since of this epoch (pass 0, -1 to learn the"
            + " current ones). complete false: changes were forgotten or the epoch is another: drop every copy."
            + " watched false: this server does not watch writes (no commit-time upkeep of adjacency copies either).")
    public Stream<RowChanges.Result> rowChanges(
            @Name("label") String label,
            @Name("idProp") String idProp,
            @Name("epoch") long epoch,
            @Name("since") long since) {
        return Stream.of(RowChanges.since(db.databaseName(), label, idProp, epoch, since));
    }

    @Procedure(name = "gnn.projections", mode = Mode.READ)
    @Description("gnn.projections() :: (key :: STRING, nodes :: INTEGER, bytes :: INTEGER, state :: STRING) - the"
            + " dataset projections the server holds now (key: database/label/idProp/what), for monitoring and tests.")
    public Stream<Projections.Info> projections() {
        return Projections.list();
    }

    private static String describe(Value v) {
        return v == null ? "nothing" : v.getTypeName();
    }
}
