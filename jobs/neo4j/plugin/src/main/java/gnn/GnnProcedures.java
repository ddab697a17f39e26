package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.IntToLongFunction;
import java.util.stream.Stream;

import org.neo4j.exceptions.KernelException;
import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Transaction;
import org.neo4j.graphdb.schema.IndexDefinition;
import org.neo4j.internal.kernel.api.CursorFactory;
import org.neo4j.internal.kernel.api.IndexQueryConstraints;
import org.neo4j.internal.kernel.api.IndexReadSession;
import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.internal.kernel.api.NodeValueIndexCursor;
import org.neo4j.internal.kernel.api.PropertyCursor;
import org.neo4j.internal.kernel.api.PropertyIndexQuery;
import org.neo4j.internal.kernel.api.QueryContext;
import org.neo4j.internal.kernel.api.Read;
import org.neo4j.internal.kernel.api.RelationshipTraversalCursor;
import org.neo4j.internal.kernel.api.TokenRead;
import org.neo4j.internal.kernel.api.exceptions.schema.IndexNotFoundKernelException;
import org.neo4j.internal.schema.IndexDescriptor;
import org.neo4j.internal.schema.IndexType;
import org.neo4j.internal.schema.SchemaDescriptors;
import org.neo4j.io.pagecache.context.CursorContext;
import org.neo4j.kernel.api.KernelTransaction;
import org.neo4j.kernel.impl.coreapi.InternalTransaction;
import org.neo4j.memory.MemoryTracker;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;
import org.neo4j.storageengine.api.PropertySelection;
import org.neo4j.storageengine.api.RelationshipSelection;
import org.neo4j.values.storable.ByteArray;
import org.neo4j.values.storable.IntegralValue;
import org.neo4j.values.storable.Value;
import org.neo4j.values.storable.Values;

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
    /** TokenRead returns this for a name no node, relationship or property has ever used. */
    static final int NO_TOKEN = org.neo4j.token.api.TokenConstants.NO_TOKEN;

    @Context
    public Transaction tx;

    @Context
    public GraphDatabaseService db;

    /**
     * Node reference + 1 of each id (0 = unknown), per database/label/id property, shared by all calls:
     * an id seen once skips its index seek afterwards. Never trusted blindly: every cached reference is
     * checked (the node exists, has the label and this id) before use, and re-sought otherwise, so a
     * deleted or reloaded dataset only costs a miss. Racy updates are harmless for the same reason.
     */
    static final ConcurrentHashMap<String, long[]> REF_CACHE = new ConcurrentHashMap<>();
    /** Ids at or above this are not cached (bounds the server heap spent: 8 bytes per id, 64 MiB max). */
    static final int REF_CACHE_MAX_IDS = 1 << 23;

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

    /** Result of {@link #sampleHops}: per hop, the same two columns as {@link HopResult}. */
    public static final class HopsResult {
        /** Per hop: little-endian int64 per frontier node (-1 = unknown seed id). */
        public List<byte[]> counts;
        /** Per hop: concatenated little-endian int64 neighbour ids. */
        public List<byte[]> neighbours;

        HopsResult(List<byte[]> counts, List<byte[]> neighbours) {
            this.counts = counts;
            this.neighbours = neighbours;
        }
    }

    @Procedure(name = "gnn.sampleHop", mode = Mode.READ)
    @Description("gnn.sampleHop(label, relType, idProp, ids, states, fanout, adjProp = '') :: (counts :: BYTES, neighbours :: BYTES)"
            + " - for every node (:label {idProp: ids[i]}) a uniform sample without replacement of min(fanout, degree)"
            + " in-neighbours drawn with Floyd's algorithm from the minstd state states[i] (fanout < 0: all)."
            + " Neighbours: the packed int64 LE ids of the node's bytes property adjProp when given, else the"
            + " sources of its incoming relType relationships. counts: int64 LE per id (-1 = unknown id);"
            + " neighbours: int64 LE idProp values.")
    public Stream<HopResult> sampleHop(
            @Name("label") String label,
            @Name("relType") String relType,
            @Name("idProp") String idProp,
            @Name("ids") List<Long> ids,
            @Name("states") List<Long> states,
            @Name("fanout") long fanout,
            @Name(value = "adjProp", defaultValue = "") String adjProp) {
        if (ids.size() != states.size()) {
            throw new IllegalArgumentException(
                    "gnn.sampleHop: ids has " + ids.size() + " entries but states has " + states.size());
        }
        try (KernelGraph g = new KernelGraph(tx, db.databaseName(), label, relType, idProp, adjProp)) {
            int n = ids.size();
            long[] frontier = new long[n];
            long[] stateArr = new long[n];
            for (int i = 0; i < n; i++) {
                frontier[i] = ids.get(i);
                stateArr[i] = checkState(states.get(i), "gnn.sampleHop: states[" + i + "]");
            }
            long[] refs = new long[n];
            for (int i = 0; i < n; i++) {
                refs[i] = g.nodeRef(frontier[i]);
            }
            LongList out = new LongList(Math.max(16, n));
            byte[] counts = new Floyd().sampleFrontier(g, refs, i -> stateArr[i], fanout, out);
            return Stream.of(new HopResult(counts, out.toLittleEndianBytes()));
        }
    }

    @Procedure(name = "gnn.sampleHops", mode = Mode.READ)
    @Description("gnn.sampleHops(label, relType, idProp, adjProp, seeds, fanouts, hopStates)"
            + " :: (counts :: LIST<BYTES>, neighbours :: LIST<BYTES>) - all hops of one mini-batch in one call,"
            + " PyG NeighborSampler semantics: hop k samples (as gnn.sampleHop) every node that was new in hop k-1"
            + " (hop 0: the seeds, duplicates included), new nodes in order of first appearance. The minstd state"
            + " of frontier position i in hop k is derived from hopStates[k] (see hopState). adjProp '' walks"
            + " relType relationships. counts[k]: int64 LE per frontier node (-1 = unknown seed id).")
    public Stream<HopsResult> sampleHops(
            @Name("label") String label,
            @Name("relType") String relType,
            @Name("idProp") String idProp,
            @Name("adjProp") String adjProp,
            @Name("seeds") List<Long> seeds,
            @Name("fanouts") List<Long> fanouts,
            @Name("hopStates") List<Long> hopStates) {
        if (fanouts.size() != hopStates.size()) {
            throw new IllegalArgumentException("gnn.sampleHops: fanouts has " + fanouts.size()
                    + " entries but hopStates has " + hopStates.size());
        }
        try (KernelGraph g = new KernelGraph(tx, db.databaseName(), label, relType, idProp, adjProp)) {
            int n = seeds.size();
            // Node references of every node of the batch so far, by id: seeds are looked up in the
            // index once, later nodes once when they first appear (they are the next frontier).
            HashMap<Long, Long> refs = new HashMap<>(Math.max(16, n * 4));
            long[] frontier = new long[n];
            long[] frontierRefs = new long[n];
            for (int i = 0; i < n; i++) {
                frontier[i] = seeds.get(i);
                Long known = refs.get(frontier[i]);
                frontierRefs[i] = known != null ? known : g.nodeRef(frontier[i]);
                refs.put(frontier[i], frontierRefs[i]);
            }
            List<byte[]> countsOut = new ArrayList<>();
            List<byte[]> neighboursOut = new ArrayList<>();
            Floyd floyd = new Floyd();
            for (int hop = 0; hop < fanouts.size(); hop++) {
                long base = checkState(hopStates.get(hop), "gnn.sampleHops: hopStates[" + hop + "]");
                long fanout = fanouts.get(hop);
                int m = frontier.length;
                LongList out = new LongList(Math.max(16, m * (int) Math.max(1, Math.min(fanout, 64))));
                byte[] counts = floyd.sampleFrontier(g, frontierRefs, i -> hopState(base, i), fanout, out);
                LongList next = new LongList(16);
                LongList nextRefs = new LongList(16);
                for (int q = 0; q < out.size; q++) {
                    long id = out.values[q];
                    if (!refs.containsKey(id)) {
                        long ref = g.nodeRef(id);
                        if (ref < 0) {
                            throw new IllegalArgumentException("gnn.sampleHops: neighbour id " + id + " of a :" + label
                                    + " node is not a node; the adjacency is stale, reload the dataset");
                        }
                        refs.put(id, ref);
                        next.add(id);
                        nextRefs.add(ref);
                    }
                }
                countsOut.add(counts);
                neighboursOut.add(out.toLittleEndianBytes());
                frontier = next.toArray();
                frontierRefs = nextRefs.toArray();
            }
            return Stream.of(new HopsResult(countsOut, neighboursOut));
        }
    }

    /**
     * The minstd state (1..2^31-2) of frontier position {@code i} in a hop whose client state is {@code base}:
     * SplitMix64 of {@code base + (i + 1) * golden}, reduced. Mirrored by src/procedures.py (hop_states).
     */
    static long hopState(long base, int i) {
        long z = base + (i + 1L) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z = z ^ (z >>> 31);
        return 1 + Long.remainderUnsigned(z, MINSTD_MODULUS - 1);
    }

    private static long checkState(long state, String what) {
        if (state <= 0 || state >= MINSTD_MODULUS) {
            throw new IllegalArgumentException(what + " = " + state + " is outside the minstd range 1.."
                    + (MINSTD_MODULUS - 1));
        }
        return state;
    }

    /** Floyd's subset sampling with the minstd generator, shared by both procedures (one per call). */
    private static final class Floyd {
        private final BitSet picked = new BitSet();
        private int[] picks = new int[0];
        private final LongList all = new LongList(64);

        /**
         * Samples every node of a frontier (node references, -1 = unknown id) into {@code out}; returns
         * the little-endian int64 count per node (-1 for unknown ids).
         */
        byte[] sampleFrontier(KernelGraph g, long[] refs, IntToLongFunction state, long fanout, LongList out) {
            ByteBuffer counts = ByteBuffer.allocate(refs.length * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < refs.length; i++) {
                counts.putLong(refs[i] < 0 ? -1L : sample(g, refs[i], state.applyAsLong(i), fanout, out));
            }
            return counts.array();
        }

        /** Appends min(fanout, degree) sampled neighbour ids of {@code ref} to {@code out}; returns the count. */
        long sample(KernelGraph g, long ref, long state, long fanout, LongList out) {
            int d = g.loadNeighbours(ref, all);
            if (fanout < 0 || d <= fanout) {
                for (int p = 0; p < d; p++) {
                    out.add(g.neighbourId(all, p));
                }
                return d;
            }
            int k = (int) fanout;
            if (picks.length < k) {
                picks = new int[k];
            }
            // Floyd's algorithm: for j = d-k .. d-1 draw t in [0, j]; take t unless taken, else j.
            // Same arithmetic as the Cypher reduce() in src/graph_sampler.py: the state advances first.
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
                out.add(g.neighbourId(all, picks[q]));
            }
            return k;
        }
    }

    /**
     * Kernel-level reads for one procedure call: token ids resolved once, one index read session and
     * reused cursors. The Core API's findNode/getRelationships allocate cursors and resolve tokens on
     * every call, which was a third of the server time of sampling (JFR profile).
     */
    private static final class KernelGraph implements AutoCloseable {
        private final Read read;
        private final IndexReadSession idIndex;
        private final QueryContext queryContext;
        private final int labelId;
        private final int idKey;
        private final int adjKey;  // -1: walk relationships
        private final String cacheKey;
        private long[] refCache;
        private final RelationshipSelection incoming;
        private final NodeValueIndexCursor indexCursor;
        private final NodeCursor nodeCursor;
        private final NodeCursor otherCursor;
        private final PropertyCursor propCursor;
        private final RelationshipTraversalCursor relCursor;
        private final String label;
        private final String idProp;
        private final String adjProp;
        /** adjacency mode: the current node's packed neighbour ids. */
        private ByteBuffer adjacency;

        KernelGraph(Transaction tx, String database, String label, String relType, String idProp, String adjProp) {
            KernelTransaction ktx = ((InternalTransaction) tx).kernelTransaction();
            this.read = ktx.dataRead();
            this.queryContext = ktx.queryContext();
            this.label = label;
            this.idProp = idProp;
            this.adjProp = adjProp;
            TokenRead tokens = ktx.tokenRead();
            this.labelId = tokens.nodeLabel(label);
            this.idKey = tokens.propertyKey(idProp);
            this.cacheKey = database + "\u0000" + label + "\u0000" + idProp;
            this.refCache = REF_CACHE.getOrDefault(cacheKey, new long[0]);
            this.idIndex = idIndexSession(ktx, labelId, label, idProp);
            boolean useAdj = adjProp != null && !adjProp.isEmpty();
            int key = useAdj ? tokens.propertyKey(adjProp) : NO_TOKEN;
            if (useAdj && key == NO_TOKEN) {
                throw new IllegalArgumentException("gnn: no node has the adjacency property " + adjProp
                        + "; add it with loaders/load_into_neo4j.py (re-running it on a loaded dataset adds it)");
            }
            this.adjKey = useAdj ? key : -1;
            int typeId = tokens.relationshipType(relType);
            // an unknown type matches no relationship: every node then has degree 0, as in Cypher
            this.incoming = RelationshipSelection.selection(typeId, Direction.INCOMING);
            CursorFactory cursors = ktx.cursors();
            CursorContext ctx = ktx.cursorContext();
            MemoryTracker mem = ktx.memoryTracker();
            this.indexCursor = cursors.allocateNodeValueIndexCursor(ctx, mem);
            this.nodeCursor = cursors.allocateNodeCursor(ctx, mem);
            this.otherCursor = cursors.allocateNodeCursor(ctx, mem);
            this.propCursor = cursors.allocatePropertyCursor(ctx, mem);
            this.relCursor = cursors.allocateRelationshipTraversalCursor(ctx, mem);
        }

        /** Node reference of (:label {idProp: id}), or -1: the checked cache, else the index. */
        long nodeRef(long id) {
            if (idKey == NO_TOKEN) {
                return -1;
            }
            if (id >= 0 && id < refCache.length && refCache[(int) id] > 0 && isNode(refCache[(int) id] - 1, id)) {
                return refCache[(int) id] - 1;
            }
            long ref = seek(id);
            if (ref >= 0 && id >= 0 && id < REF_CACHE_MAX_IDS) {
                if (id >= refCache.length) {
                    refCache = Arrays.copyOf(refCache, (int) Math.min(REF_CACHE_MAX_IDS, Math.max(id + 1, 2L * refCache.length)));
                }
                refCache[(int) id] = ref + 1;
            }
            return ref;
        }

        /** Whether {@code ref} is a live node with the label and {@code idProp = id}. */
        private boolean isNode(long ref, long id) {
            read.singleNode(ref, otherCursor);
            if (!otherCursor.next() || !otherCursor.hasLabel(labelId)) {
                return false;
            }
            otherCursor.properties(propCursor, PropertySelection.selection(idKey));
            if (!propCursor.next()) {
                return false;
            }
            Value v = propCursor.propertyValue();
            return v instanceof IntegralValue && ((IntegralValue) v).longValue() == id;
        }

        private long seek(long id) {
            try {
                read.nodeIndexSeek(queryContext, idIndex, indexCursor, IndexQueryConstraints.unconstrained(),
                        PropertyIndexQuery.exact(idKey, Values.longValue(id)));
            } catch (KernelException e) {
                throw new IllegalStateException("gnn: index seek on :" + label + "(" + idProp + ") failed: "
                        + e.getMessage(), e);
            }
            return indexCursor.next() ? indexCursor.nodeReference() : -1;
        }

        /**
         * Loads the in-neighbours of node {@code ref} (adjacency bytes, or source node references in
         * relationship-iteration order into {@code refs}); returns the degree.
         */
        int loadNeighbours(long ref, LongList refs) {
            read.singleNode(ref, nodeCursor);
            if (!nodeCursor.next()) {
                throw new IllegalStateException("gnn: node " + ref + " vanished during the call");
            }
            if (adjKey >= 0) {
                nodeCursor.properties(propCursor, PropertySelection.selection(adjKey));
                Value v = propCursor.next() ? propCursor.propertyValue() : null;
                if (!(v instanceof ByteArray)) {
                    throw new IllegalArgumentException("gnn: a :" + label + " node has no bytes property " + adjProp
                            + " (found " + (v == null ? "nothing" : v.getTypeName()) + "); add the adjacency with"
                            + " loaders/load_into_neo4j.py");
                }
                byte[] raw = ((ByteArray) v).asObjectCopy();
                if (raw.length % Long.BYTES != 0) {
                    throw new IllegalArgumentException("gnn: adjacency property " + adjProp + " of a :" + label
                            + " node has " + raw.length + " bytes, not a multiple of 8; reload the dataset");
                }
                adjacency = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
                return raw.length / Long.BYTES;
            }
            // Relationship-iteration order (the node's chain, or its type group when dense): the order
            // of the Cypher pattern comprehension [(n)<-[:T]-(m) | m] too (tests/test_procedures.py).
            refs.clear();
            nodeCursor.relationships(relCursor, incoming);
            while (relCursor.next()) {
                refs.add(relCursor.sourceNodeReference());
            }
            return refs.size;
        }

        /** Id of the neighbour at position {@code p} of the last {@link #loadNeighbours} call. */
        long neighbourId(LongList refs, int p) {
            if (adjKey >= 0) {
                return adjacency.getLong(p * Long.BYTES);
            }
            read.singleNode(refs.values[p], otherCursor);
            Value v = null;
            if (otherCursor.next()) {
                otherCursor.properties(propCursor, PropertySelection.selection(idKey));
                v = propCursor.next() ? propCursor.propertyValue() : null;
            }
            if (!(v instanceof IntegralValue)) {
                throw new IllegalArgumentException("gnn: a neighbour of a :" + label + " node has no integer "
                        + idProp + " property (found " + (v == null ? "nothing" : v.getTypeName()) + ")");
            }
            return ((IntegralValue) v).longValue();
        }

        @Override
        public void close() {
            REF_CACHE.merge(cacheKey, refCache, (old, mine) -> mine.length >= old.length ? mine : old);
            indexCursor.close();
            nodeCursor.close();
            otherCursor.close();
            propCursor.close();
            relCursor.close();
        }

        /** The range index behind the id uniqueness constraint; fail fast instead of a label scan per id. */
        private static IndexReadSession idIndexSession(KernelTransaction ktx, int labelId, String label, String idProp) {
            int key = ktx.tokenRead().propertyKey(idProp);
            if (labelId != NO_TOKEN && key != NO_TOKEN) {
                Iterator<IndexDescriptor> it = ktx.schemaRead().index(SchemaDescriptors.forLabel(labelId, key));
                while (it.hasNext()) {
                    IndexDescriptor index = it.next();
                    if (index.getIndexType() == IndexType.RANGE) {
                        try {
                            return ktx.dataRead().indexReadSession(index);
                        } catch (IndexNotFoundKernelException e) {
                            break;
                        }
                    }
                }
            }
            throw new IllegalArgumentException("gnn: no index on :" + label + "(" + idProp + "); create the"
                    + " uniqueness constraint (CREATE CONSTRAINT FOR (n:" + label + ") REQUIRE n." + idProp
                    + " IS UNIQUE) or load the dataset with loaders/load_into_neo4j.py");
        }
    }

    @Procedure(name = "gnn.fetchRows", mode = Mode.READ)
    @Description("gnn.fetchRows(label, idProp, xProp, yProp, ids) :: (x :: BYTES, lengths :: BYTES, y :: BYTES,"
            + " missing :: LIST<INTEGER>) - for every found node (:label {idProp: ids[i]}), in ids order (repeats"
            + " allowed): its xProp bytes concatenated into x, their length as int32 LE in lengths, and its yProp as"
            + " int64 LE in y (-1 when absent); ids without a node in missing.")
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
        long total = 0;
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
            total += row.length;
            if (total > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("gnn.fetchRows: the rows of " + ids.size() + " ids exceed 2 GiB;"
                        + " ask for fewer ids per call");
            }
            rows.add(row);
            Object y = node.getProperty(yProp, null);
            if (y != null && !(y instanceof Long || y instanceof Integer)) {
                throw new IllegalArgumentException("gnn.fetchRows: node (:" + label + " {" + idProp + ": " + id
                        + "}) has a non-integer " + yProp + " (found " + describe(y) + ")");
            }
            ys.add(y == null ? -1L : ((Number) y).longValue());
        }
        byte[] xs = new byte[(int) total];
        ByteBuffer lengths = ByteBuffer.allocate(rows.size() * Integer.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        int off = 0;
        for (byte[] row : rows) {
            System.arraycopy(row, 0, xs, off, row.length);
            off += row.length;
            lengths.putInt(row.length);
        }
        return Stream.of(new RowsResult(xs, lengths.array(), ys.toLittleEndianBytes(), missing));
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

    private static String describe(Object v) {
        return v == null ? "nothing" : v.getClass().getSimpleName();
    }

    /** Growable primitive long array: no boxing for the hundreds of thousands of ids per call. */
    private static final class LongList {
        long[] values;
        int size;

        LongList(int capacity) {
            values = new long[capacity];
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

        int size() {
            return size;
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
}
