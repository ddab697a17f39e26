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

/**
 * gnn.sampleHeteroHops: every hop and relationship type of one heterogeneous mini-batch in ONE call,
 * relabelled per node type on the server (src/core/hetero_sampling.py defines the semantics and is the
 * reference; src/neo4jdb/hetero/sampler.py the Cypher fallback that draws the same sample).
 *
 * <p>A node's neighbours through a relationship type are the sources of its incoming relationships of
 * that type that carry the source type's label and an integer id, sorted by id; the draw is {@link Floyd}
 * with the minstd state {@code hopState(hopStates[hop][type], position)}, as gnn.sampleHops. The lists come
 * from {@link TypedTopology}: an in-heap CSR per relationship type when {@code projectionMb} allows (shared
 * with every later call and rank, dropped by any write), else kernel-cursor walks of the store.
 */
public final class HeteroProcedures {
    @Context
    public Transaction tx;

    @Context
    public GraphDatabaseService db;

    @Context
    public Log log;

    @Procedure(name = "gnn.sampleHeteroHops", mode = Mode.READ)
    @Description("gnn.sampleHeteroHops(labels, idProp, relTypes, srcTypes, dstTypes, seedType, seeds, fanouts, hopStates,"
            + " projectionMb = 0, reversed = [])"
            + " :: (counts :: LIST<BYTES>, locals :: LIST<BYTES>, nodes :: LIST<BYTES>) - labels[t]: the label of node"
            + " type t; relationship type i goes from node type srcTypes[i] to dstTypes[i]; seeds: packed int64 LE ids"
            + " of node type seedType; fanouts[i][hop] (0: none, -1: all); hopStates[hop][i]: minstd client states."
            + " Hop k samples, for every relationship type in order, the nodes of its destination type new in hop k-1"
            + " (hop 0: the seeds); new nodes are numbered per node type in order of first appearance. projectionMb > 0:"
            + " may build/use an in-heap projection per relationship type. reversed[i] true: type i is the reverse of"
            + " relTypes[i] (relationships from dstTypes[i] to srcTypes[i], walked backwards).")
    public Stream<GnnProcedures.HopsResult> sampleHeteroHops(
            @Name("labels") List<String> labels,
            @Name("idProp") String idProp,
            @Name("relTypes") List<String> relTypes,
            @Name("srcTypes") List<Long> srcTypes,
            @Name("dstTypes") List<Long> dstTypes,
            @Name("seedType") long seedType,
            @Name("seeds") Object seedBytes,
            @Name("fanouts") List<List<Long>> fanouts,
            @Name("hopStates") List<List<Long>> hopStates,
            @Name(value = "projectionMb", defaultValue = "0") double projectionMb,
            @Name(value = "reversed", defaultValue = "[]") List<Boolean> reversed) {
        int types = labels.size();
        int rels = relTypes.size();
        if (srcTypes.size() != rels || dstTypes.size() != rels || fanouts.size() != rels) {
            throw new IllegalArgumentException("gnn.sampleHeteroHops: relTypes, srcTypes, dstTypes and fanouts must have "
                    + "one entry per relationship type");
        }
        int hops = hopStates.size();
        long budget = Budget.mebibytes(projectionMb);  // a request above the server's cap is refused first
        long[] seeds = LongList.fromLittleEndianBytes(seedBytes, "gnn.sampleHeteroHops: seeds");
        List<KernelGraph> graphs = new ArrayList<>();
        try {
            for (String label : labels) {
                graphs.add(new KernelGraph(tx, db.databaseName(), label, idProp));
            }
            List<Topology> topologies = new ArrayList<>();
            for (int i = 0; i < rels; i++) {
                topologies.add(TypedTopology.of(graphs.get(dstTypes.get(i).intValue()),
                        graphs.get(srcTypes.get(i).intValue()), relTypes.get(i),
                        i < reversed.size() && Boolean.TRUE.equals(reversed.get(i)), budget, log));
            }
            return Stream.of(sample(labels, idProp, srcTypes, dstTypes, (int) seedType, seeds, fanouts, hopStates,
                    topologies, types, rels, hops));
        } finally {
            graphs.forEach(KernelGraph::close);
        }
    }

    private static GnnProcedures.HopsResult sample(List<String> labels, String idProp, List<Long> srcTypes, List<Long> dstTypes,
                                           int st, long[] seeds, List<List<Long>> fanouts, List<List<Long>> hopStates,
                                           List<Topology> topologies, int types, int rels, int hops) {
        List<LongLongMap> local = new ArrayList<>();
        List<LongList> frontier = new ArrayList<>();
        int[] size = new int[types];
        for (int t = 0; t < types; t++) {
            local.add(new LongLongMap(t == st ? Math.max(16, seeds.length * 8) : 256));
            frontier.add(new LongList(16));
        }
        for (int i = 0; i < seeds.length; i++) {
            if (!local.get(st).containsKey(seeds[i])) {
                local.get(st).put(seeds[i], i);
            }
            frontier.get(st).add(seeds[i]);
        }
        size[st] = seeds.length;
        Floyd floyd = new Floyd();
        List<byte[]> counts = new ArrayList<>();
        List<byte[]> locals = new ArrayList<>();
        List<byte[]> nodes = new ArrayList<>();
        for (int hop = 0; hop < hops; hop++) {
            List<LongList> added = new ArrayList<>();
            for (int t = 0; t < types; t++) {
                added.add(new LongList(16));
            }
            for (int i = 0; i < rels; i++) {
                int src = srcTypes.get(i).intValue();
                int dst = dstTypes.get(i).intValue();
                long fanout = fanouts.get(i).get(hop);
                LongList front = frontier.get(dst);
                if (fanout == 0 || front.size == 0) {
                    counts.add(new byte[0]);
                    locals.add(new byte[0]);
                    continue;
                }
                long base = hopStates.get(hop).get(i);
                Topology topology = topologies.get(i);
                long[] refs = new long[front.size];
                for (int p = 0; p < front.size; p++) {
                    refs[p] = topology.nodeRef(front.values[p]);
                    if (refs[p] < 0) {
                        throw new IllegalArgumentException("gnn.sampleHeteroHops: no (:" + labels.get(dst) + " {"
                                + idProp + ": " + front.values[p] + "}) node");
                    }
                }
                LongList out = new LongList(Math.max(16, front.size));
                counts.add(floyd.sampleFrontier(topology, refs, p -> GnnProcedures.hopState(base, p), fanout, out));
                ByteBuffer loc = ByteBuffer.allocate(out.size * Integer.BYTES).order(ByteOrder.LITTLE_ENDIAN);
                LongLongMap map = local.get(src);
                for (int p = 0; p < out.size; p++) {
                    long id = out.values[p];
                    long at = map.get(id, -1);
                    if (at < 0) {
                        at = size[src]++;
                        map.put(id, at);
                        added.get(src).add(id);
                    }
                    loc.putInt((int) at);
                }
                locals.add(loc.array());
            }
            for (int t = 0; t < types; t++) {
                nodes.add(added.get(t).toLittleEndianBytes());
                frontier.set(t, added.get(t));
            }
        }
        return new GnnProcedures.HopsResult(counts, locals, nodes);
    }
}
