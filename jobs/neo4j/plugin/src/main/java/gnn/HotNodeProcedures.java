package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.stream.Stream;

import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Transaction;
import org.neo4j.logging.Log;
import org.neo4j.procedure.Context;
import org.neo4j.procedure.Description;
import org.neo4j.procedure.Mode;
import org.neo4j.procedure.Name;
import org.neo4j.procedure.Procedure;

/**
 * gnn.hotNodes: the nodes a neighbour sampler draws most often, for the trainer's feature cache
 * (src/core/hot_nodes.py; the degree policy of PaGraph / GNNLab).
 *
 * <p>A node is sampled as an in-neighbour of the nodes it points to, so its chance grows with its
 * out-degree in the sampling direction: the number of times its id occurs in the in-neighbour lists
 * that gnn.sampleHop(s) read (the adjacency property, or the incoming relationships). Counted over
 * the dataset's topology projection when the budget allows (the one sampling builds and shares), else
 * by one scan of the store.
 */
public final class HotNodeProcedures {
    @Context
    public Transaction tx;

    @Context
    public GraphDatabaseService db;

    @Context
    public Log log;

    /** Result of {@link #hotNodes}. */
    public static final class HotResult {
        /** Little-endian int64 ids, by degree descending, ties by id ascending. */
        public byte[] ids;
        /** Little-endian int64 degree of each of {@code ids}. */
        public byte[] degrees;
        /** True when counted over the in-heap projection, false when over the store. */
        public boolean projected;

        HotResult(byte[] ids, byte[] degrees, boolean projected) {
            this.ids = ids;
            this.degrees = degrees;
            this.projected = projected;
        }
    }

    @Procedure(name = "gnn.hotNodes", mode = Mode.READ)
    @Description("gnn.hotNodes(label, relType, idProp, adjProp, k, projectionMb = 0) :: (ids :: BYTES, degrees :: BYTES,"
            + " projected :: BOOLEAN) - the k (:label) nodes that occur most often as in-neighbours (their out-degree"
            + " in the sampling direction of gnn.sampleHops: adjProp's packed ids, or incoming relType relationships"
            + " when adjProp is ''), by degree descending, ties by idProp ascending; int64 LE ids and degrees."
            + " k larger than the node count returns every node. projectionMb > 0: may build/use the topology"
            + " projection.")
    public Stream<HotResult> hotNodes(
            @Name("label") String label,
            @Name("relType") String relType,
            @Name("idProp") String idProp,
            @Name("adjProp") String adjProp,
            @Name("k") long k,
            @Name(value = "projectionMb", defaultValue = "0") double projectionMb) {
        if (k < 0) {
            throw new IllegalArgumentException("gnn.hotNodes: k = " + k + " must be >= 0");
        }
        try (KernelGraph g = new KernelGraph(tx, db.databaseName(), label, idProp)) {
            StoreTopology store = new StoreTopology(g, relType, adjProp);
            TopologyProjection p = TopologyProjection.get(g, store, relType, adjProp,
                    Budget.mebibytes(projectionMb), log);
            long[] ids;
            int[] degrees;
            if (p != null) {
                long[] bySlot = p.ids();
                int[] countBySlot = p.occurrences();
                // sort slots by id: projected ids are below 2^31, so (id, slot) packs into one long
                long[] packed = new long[bySlot.length];
                for (int s = 0; s < bySlot.length; s++) {
                    packed[s] = (bySlot[s] << 32) | s;
                }
                Arrays.sort(packed);
                ids = new long[packed.length];
                degrees = new int[packed.length];
                for (int i = 0; i < packed.length; i++) {
                    ids[i] = packed[i] >>> 32;
                    degrees[i] = countBySlot[(int) (packed[i] & 0xFFFFFFFFL)];
                }
            } else {
                long[] refs = g.labelledNodes();
                ids = new long[refs.length];
                for (int r = 0; r < refs.length; r++) {
                    Long id = g.id(g.node(refs[r]));
                    if (id == null) {
                        throw new IllegalArgumentException("gnn.hotNodes: a :" + label + " node has no integer " + idProp);
                    }
                    ids[r] = id;
                }
                Arrays.sort(ids);
                degrees = new int[ids.length];
                for (long ref : refs) {
                    int d = store.loadNeighbours(g.node(ref));
                    for (int q = 0; q < d; q++) {
                        int pos = Arrays.binarySearch(ids, store.neighbourId(q));
                        if (pos >= 0) {
                            degrees[pos]++;
                        }
                    }
                }
            }
            return Stream.of(top(ids, degrees, (int) Math.min(k, ids.length), p != null));
        }
    }

    /**
     * The first {@code k} of {@code ids} (ascending) by degree descending, ties in id order: one stable
     * counting sort over the degrees, O(nodes + max degree).
     */
    private static HotResult top(long[] ids, int[] degrees, int k, boolean projected) {
        int maxDegree = 0;
        for (int d : degrees) {
            maxDegree = Math.max(maxDegree, d);
        }
        int[] next = new int[maxDegree + 1];  // first output position of each degree
        for (int d : degrees) {
            next[d]++;
        }
        int before = 0;
        for (int d = maxDegree; d >= 0; d--) {
            int c = next[d];
            next[d] = before;
            before += c;
        }
        ByteBuffer outIds = ByteBuffer.allocate(8 * k).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer outDegrees = ByteBuffer.allocate(8 * k).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < ids.length; i++) {
            int pos = next[degrees[i]]++;
            if (pos < k) {
                outIds.putLong(8 * pos, ids[i]);
                outDegrees.putLong(8 * pos, degrees[i]);
            }
        }
        return new HotResult(outIds.array(), outDegrees.array(), projected);
    }
}
