package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import org.neo4j.graphdb.Direction;
import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.storageengine.api.RelationshipSelection;
import org.neo4j.values.storable.ByteArray;
import org.neo4j.values.storable.IntegralValue;
import org.neo4j.values.storable.Value;

/**
 * In-neighbours read from the store for one call: the packed int64 LE ids of the bytes property
 * {@code adjProp}, or (no adjProp) the sources of the incoming {@code relType} relationships in
 * relationship-iteration order. {@link TopologyProjection#build} reads through the same methods,
 * so a projection holds exactly these lists.
 */
final class StoreTopology implements Topology {
    private final KernelGraph g;
    private final int adjKey;  // -1: walk relationships
    private final RelationshipSelection incoming;
    private final String adjProp;
    private final LongList sources = new LongList(64);
    /** Whether relationship walks must skip sources that are not dataset nodes (some exist). */
    private final boolean checkSources;
    /** adjacency mode: the current node's packed neighbour ids. */
    private ByteBuffer adjacency;

    StoreTopology(KernelGraph g, String relType, String adjProp) {
        this.g = g;
        this.adjProp = adjProp;
        boolean useAdj = adjProp != null && !adjProp.isEmpty();
        int key = useAdj ? g.tokens.propertyKey(adjProp) : KernelGraph.NO_TOKEN;
        if (useAdj && key == KernelGraph.NO_TOKEN) {
            throw new IllegalArgumentException("gnn: no node has the adjacency property " + adjProp
                    + "; add it with loaders/load_into_neo4j.py (re-running it on a loaded dataset adds it)");
        }
        this.adjKey = useAdj ? key : -1;
        // an unknown type matches no relationship: every node then has degree 0, as in Cypher
        int typeId = g.tokens.relationshipType(relType);
        this.incoming = RelationshipSelection.selection(typeId, Direction.INCOMING);
        this.checkSources = !useAdj && !g.onlyDatasetNodesOn(typeId);
    }

    /** Whether neighbours come from the adjacency property (else from relationships). */
    boolean usesAdjacency() {
        return adjKey >= 0;
    }

    @Override
    public long nodeRef(long id) {
        return g.nodeRef(id);
    }

    @Override
    public int loadNeighbours(long ref) {
        return loadNeighbours(g.node(ref));
    }

    /** {@link #loadNeighbours(long)} for the node under {@code node}. */
    int loadNeighbours(NodeCursor node) {
        if (adjKey >= 0) {
            Value v = g.property(node, adjKey);
            if (!(v instanceof ByteArray)) {
                throw new IllegalArgumentException("gnn: a :" + g.label + " node has no bytes property " + adjProp
                        + " (found " + (v == null ? "nothing" : v.getTypeName()) + "); add the adjacency with"
                        + " loaders/load_into_neo4j.py");
            }
            byte[] raw = ((ByteArray) v).asObject();
            if (raw.length % Long.BYTES != 0) {
                throw new IllegalArgumentException("gnn: adjacency property " + adjProp + " of a :" + g.label
                        + " node has " + raw.length + " bytes, not a multiple of 8; reload the dataset");
            }
            adjacency = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            return raw.length / Long.BYTES;
        }
        // Relationship-iteration order (the node's chain, or its type group when dense): the order
        // of the Cypher [m IN [(n)<-[:T]-(m) | m] WHERE m:label AND m.id IS NOT NULL] too
        // (tests/test_procedures.py). A source that is not a dataset node (no label, no integer id: a
        // node created since the load) is not a neighbour, as in the maintained adjacency copy.
        sources.clear();
        node.relationships(g.relCursor, incoming);
        while (g.relCursor.next()) {
            sources.add(g.relCursor.sourceNodeReference());
        }
        if (!checkSources) {
            return sources.size;
        }
        int kept = 0;
        for (int p = 0; p < sources.size; p++) {
            long ref = sources.values[p];
            if (g.isDatasetNode(ref)) {
                sources.values[kept++] = ref;
            }
        }
        sources.size = kept;
        return sources.size;
    }

    @Override
    public long neighbourId(int p) {
        if (adjKey >= 0) {
            return adjacency.getLong(p * Long.BYTES);
        }
        return sourceId(p);
    }

    /** Node reference of the current node's relationship source at {@code p} (relationship mode). */
    long sourceRef(int p) {
        return sources.values[p];
    }

    private long sourceId(int p) {
        Long id = g.id(g.node(sources.values[p]));
        if (id == null) {
            throw new IllegalArgumentException("gnn: a neighbour of a :" + g.label + " node has no integer "
                    + g.idProp + " property");
        }
        return id;
    }
}
