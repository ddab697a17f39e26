package gnn;

/**
 * An in-heap CSR of neighbour ids by node slot ({@link ProjectedNodes}), held by {@link Projections}: the
 * homogeneous {@link TopologyProjection} and the per-relationship-type {@link TypedTopology.Projected}.
 * Neighbour ids are ints: projected ids are below 2^31.
 */
class CsrProjection implements Projection {
    final ProjectedNodes nodes;
    final long[] offsets;
    final int[] neighbours;

    CsrProjection(ProjectedNodes nodes, long[] offsets, int[] neighbours) {
        this.nodes = nodes;
        this.offsets = offsets;
        this.neighbours = neighbours;
    }

    @Override
    public long bytes() {
        return nodes.bytes() + 8L * offsets.length + 4L * neighbours.length;
    }

    @Override
    public int nodes() {
        return nodes.size();
    }

    /** A reader for one call: references are slots. */
    Topology view() {
        return new Reader();
    }

    /** Reads the lists of one call (its position is per reader: one per call). */
    class Reader implements Topology {
        private long base;

        @Override
        public long nodeRef(long id) {
            return nodes.slot(id);
        }

        @Override
        public int loadNeighbours(long slot) {
            base = offsets[(int) slot];
            return (int) (offsets[(int) slot + 1] - base);
        }

        @Override
        public long neighbourId(int p) {
            return neighbours[(int) (base + p)];
        }
    }
}
