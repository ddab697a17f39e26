package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.stream.Stream;

import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.RelationshipType;
import org.neo4j.graphdb.Transaction;
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
 * with the minstd state {@code hopState(hopStates[hop][type], position)}, as gnn.sampleHops.
 */
public final class HeteroProcedures {
    @Context
    public Transaction tx;

    /** Result of {@link #sampleHeteroHops}; lists are hop-major (hop 0's entries first). */
    public static final class HeteroHopsResult {
        /** Per (hop, relationship type): int64 LE sampled count per frontier node of the destination type. */
        public List<byte[]> counts;
        /** Per (hop, relationship type): int32 LE local index, in the source type, of each sampled neighbour. */
        public List<byte[]> locals;
        /** Per (hop, node type): int64 LE ids of the nodes of that type new in that hop, first appearance order. */
        public List<byte[]> nodes;

        HeteroHopsResult(List<byte[]> counts, List<byte[]> locals, List<byte[]> nodes) {
            this.counts = counts;
            this.locals = locals;
            this.nodes = nodes;
        }
    }

    /** The sorted typed in-neighbours of one node, as {@link Floyd} reads them (refs: node ids of the kernel). */
    private static final class TypedNeighbours implements Topology {
        private final Transaction tx;
        private final List<String> elementIds;
        private final RelationshipType type;
        private final Label source;
        private final String idProp;
        private final LongList current = new LongList(64);

        TypedNeighbours(Transaction tx, List<String> elementIds, String relType, String sourceLabel, String idProp) {
            this.tx = tx;
            this.elementIds = elementIds;
            this.type = RelationshipType.withName(relType);
            this.source = Label.label(sourceLabel);
            this.idProp = idProp;
        }

        @Override
        public long nodeRef(long id) {
            throw new UnsupportedOperationException("frontier nodes are resolved by the caller");
        }

        @Override
        public int loadNeighbours(long ref) {
            current.clear();
            Node n = tx.getNodeByElementId(elementIds.get((int) ref));
            for (Relationship r : n.getRelationships(Direction.INCOMING, type)) {
                Node m = r.getStartNode();
                if (m.hasLabel(source) && m.getProperty(idProp, null) instanceof Number id
                        && !(id instanceof Double) && !(id instanceof Float)) {
                    current.add(id.longValue());
                }
            }
            Arrays.sort(current.values, 0, current.size);
            return current.size;
        }

        @Override
        public long neighbourId(int p) {
            return current.values[p];
        }
    }

    @Procedure(name = "gnn.sampleHeteroHops", mode = Mode.READ)
    @Description("gnn.sampleHeteroHops(labels, idProp, relTypes, srcTypes, dstTypes, seedType, seeds, fanouts, hopStates)"
            + " :: (counts :: LIST<BYTES>, locals :: LIST<BYTES>, nodes :: LIST<BYTES>) - labels[t]: the label of node"
            + " type t; relationship type i goes from node type srcTypes[i] to dstTypes[i]; seeds: packed int64 LE ids"
            + " of node type seedType; fanouts[i][hop] (0: none, -1: all); hopStates[hop][i]: minstd client states."
            + " Hop k samples, for every relationship type in order, the nodes of its destination type new in hop k-1"
            + " (hop 0: the seeds); new nodes are numbered per node type in order of first appearance.")
    public Stream<HeteroHopsResult> sampleHeteroHops(
            @Name("labels") List<String> labels,
            @Name("idProp") String idProp,
            @Name("relTypes") List<String> relTypes,
            @Name("srcTypes") List<Long> srcTypes,
            @Name("dstTypes") List<Long> dstTypes,
            @Name("seedType") long seedType,
            @Name("seeds") Object seedBytes,
            @Name("fanouts") List<List<Long>> fanouts,
            @Name("hopStates") List<List<Long>> hopStates) {
        int types = labels.size();
        int rels = relTypes.size();
        if (srcTypes.size() != rels || dstTypes.size() != rels || fanouts.size() != rels) {
            throw new IllegalArgumentException("gnn.sampleHeteroHops: relTypes, srcTypes, dstTypes and fanouts must have "
                    + "one entry per relationship type");
        }
        int hops = hopStates.size();
        long[] seeds = LongList.fromLittleEndianBytes(seedBytes, "gnn.sampleHeteroHops: seeds");
        List<HashMap<Long, Integer>> local = new ArrayList<>();
        List<LongList> frontier = new ArrayList<>();
        int[] size = new int[types];
        for (int t = 0; t < types; t++) {
            local.add(new HashMap<>());
            frontier.add(new LongList(16));
        }
        int st = (int) seedType;
        for (int i = 0; i < seeds.length; i++) {
            local.get(st).putIfAbsent(seeds[i], i);
            frontier.get(st).add(seeds[i]);
        }
        size[st] = seeds.length;
        List<String> elementIds = new ArrayList<>(); // per call: the frontier nodes' kernel refs
        List<TypedNeighbours> topologies = new ArrayList<>();
        for (int i = 0; i < rels; i++) {
            topologies.add(new TypedNeighbours(tx, elementIds, relTypes.get(i), labels.get(srcTypes.get(i).intValue()), idProp));
        }
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
                long[] refs = resolve(tx, elementIds, labels.get(dst), idProp, front);
                LongList out = new LongList(Math.max(16, front.size));
                counts.add(floyd.sampleFrontier(topologies.get(i), refs, p -> GnnProcedures.hopState(base, p), fanout, out));
                ByteBuffer loc = ByteBuffer.allocate(out.size * Integer.BYTES).order(ByteOrder.LITTLE_ENDIAN);
                HashMap<Long, Integer> map = local.get(src);
                for (int p = 0; p < out.size; p++) {
                    long id = out.values[p];
                    Integer at = map.get(id);
                    if (at == null) {
                        at = size[src]++;
                        map.put(id, at);
                        added.get(src).add(id);
                    }
                    loc.putInt(at);
                }
                locals.add(loc.array());
            }
            for (int t = 0; t < types; t++) {
                nodes.add(added.get(t).toLittleEndianBytes());
                frontier.set(t, added.get(t));
            }
        }
        return Stream.of(new HeteroHopsResult(counts, locals, nodes));
    }

    /** Refs (positions in {@code elementIds}) of the frontier's nodes; an unknown id is an error. */
    private static long[] resolve(Transaction tx, List<String> elementIds, String label, String idProp, LongList ids) {
        Label l = Label.label(label);
        long[] refs = new long[ids.size];
        for (int p = 0; p < ids.size; p++) {
            Node n = tx.findNode(l, idProp, ids.values[p]);
            if (n == null) {
                throw new IllegalArgumentException("gnn.sampleHeteroHops: no (:" + label + " {" + idProp + ": "
                        + ids.values[p] + "}) node");
            }
            refs[p] = elementIds.size();
            elementIds.add(n.getElementId());
        }
        return refs;
    }
}
