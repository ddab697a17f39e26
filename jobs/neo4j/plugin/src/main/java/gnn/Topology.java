package gnn;

/**
 * The in-neighbour lists one sampling call reads: from the store ({@link StoreTopology}) or from an
 * in-heap projection ({@link TopologyProjection}). Both give the same neighbours in the same order,
 * so {@link Floyd} draws the same sample from either.
 */
interface Topology {
    /** Opaque reference of the node with this id (a node reference or a projection slot), -1 if none. */
    long nodeRef(long id);

    /** Makes {@code ref}'s in-neighbours current for {@link #neighbourId}; returns their number. */
    int loadNeighbours(long ref);

    /** Id of the current node's neighbour at position {@code p}. */
    long neighbourId(int p);

    /** An empty node set for one gnn.sampleHops batch that expects about {@code expected} nodes. */
    default BatchNodes batchNodes(int expected) {
        return new BatchNodes.ById(expected);
    }
}
