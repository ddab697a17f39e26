package gnn;

import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.logging.Log;

/**
 * CSR of the in-neighbour ids of every (:label) node, in exactly the order {@link StoreTopology}
 * reads them (adjacency property, or relationship-iteration order), so sampling from it draws the
 * same neighbours. A neighbour id is an int: node ids of projected datasets are below 2^31.
 */
final class TopologyProjection extends CsrProjection {
    private final BatchNodes.BySlot.Pool marks;

    private TopologyProjection(ProjectedNodes nodes, long[] offsets, int[] neighbours) {
        super(nodes, offsets, neighbours);
        this.marks = new BatchNodes.BySlot.Pool(nodes.size());
    }

    /**
     * The projection of {@code store}'s neighbour lists for {@code g} within {@code budget} bytes, or null
     * (the store serves). The key is the one gnn.sampleHop(s) use, so all procedures share one projection.
     */
    static TopologyProjection get(KernelGraph g, StoreTopology store, String relType, String adjProp, long budget,
                                  Log log) {
        String source = store.usesAdjacency() ? "adjacency:" + adjProp : "relationships:" + relType;
        return Projections.get(Projections.key(g, source), g, budget, log, b -> build(g, store, b));
    }

    /** Node ids by slot (slot = scan position). */
    long[] ids() {
        return nodes.ids;
    }

    /** How often each slot's node occurs in the neighbour lists (its out-degree in the sampling direction). */
    int[] occurrences() {
        int[] count = new int[nodes.size()];
        for (int id : neighbours) {
            int slot = nodes.slot(id);
            if (slot >= 0) {
                count[slot]++;
            }
        }
        return count;
    }

    @Override
    Topology view() {
        return new Reader() {
            @Override
            public BatchNodes batchNodes(int expected) {
                return new BatchNodes.BySlot(this, marks);
            }
        };
    }

    /** Reads every node's neighbours through {@code store}; data the store path would reject is not projected. */
    static TopologyProjection build(KernelGraph g, StoreTopology store, Budget budget) throws NotProjectable {
        ProjectedNodes.Scan scan = ProjectedNodes.scan(g, budget);
        int n = scan.nodes().size();
        CsrProjection.Builder csr = new CsrProjection.Builder(n, budget);
        for (int k = 0; k < n; k++) {
            int d;
            try {
                d = store.loadNeighbours(g.node(scan.refs()[k]));
            } catch (IllegalArgumentException | IllegalStateException e) {  // a node without adjacency, a delete
                throw new NotProjectable(e.getMessage());
            }
            csr.reserve(d);
            for (int p = 0; p < d; p++) {
                long id = store.usesAdjacency() ? store.neighbourId(p) : sourceId(scan, store.sourceRef(p), g);
                if ((int) id != id) {
                    throw new NotProjectable("neighbour id " + id + " does not fit an int");
                }
                csr.nbrs[csr.size++] = (int) id;
            }
            csr.end(k);
        }
        return new TopologyProjection(scan.nodes(), csr.offsets, csr.neighbours());
    }

    private static long sourceId(ProjectedNodes.Scan scan, long ref, KernelGraph g) throws NotProjectable {
        int slot = scan.slotOfRef(ref);
        if (slot < 0) {
            throw new NotProjectable("a relationship source is not a :" + g.label + " node");
        }
        return scan.nodes().ids[slot];
    }
}
