package gnn;

import java.util.Arrays;

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

    /** Neighbour lists appended node by node (slot order), the arrays charged to the build's budget. */
    static final class Builder {
        final long[] offsets;
        int[] nbrs;
        int size;
        private final Budget budget;

        Builder(int nodes, Budget budget) throws NotProjectable {
            this.budget = budget;
            budget.charge(8L * (nodes + 1), "neighbour offsets");
            offsets = new long[nodes + 1];
            nbrs = new int[Math.max(16, nodes)];
            budget.charge(4L * nbrs.length, "neighbour ids");
        }

        /** Room for {@code more} ids after the current ones. */
        void reserve(long more) throws NotProjectable {
            if (size + more > Integer.MAX_VALUE - 8) {
                throw new NotProjectable("more than 2^31 neighbour ids");
            }
            if (size + more > nbrs.length) {
                int grown = (int) Math.min(Integer.MAX_VALUE - 8, Math.max(size + more, 2L * nbrs.length));
                budget.charge(4L * (grown - nbrs.length), "neighbour ids");
                nbrs = Arrays.copyOf(nbrs, grown);
            }
        }

        /** Ends the list of slot {@code k}. */
        void end(int k) {
            offsets[k + 1] = size;
        }

        int[] neighbours() {
            return Arrays.copyOf(nbrs, size);
        }
    }
}
