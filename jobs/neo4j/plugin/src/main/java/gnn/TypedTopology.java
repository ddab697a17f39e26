package gnn;

import java.util.Arrays;

import org.neo4j.graphdb.Direction;
import org.neo4j.logging.Log;
import org.neo4j.storageengine.api.RelationshipSelection;

/**
 * The in-neighbours of one relationship type of a heterogeneous dataset, as gnn.sampleHeteroHops reads
 * them: the other ends of a (:dst) node's incoming relType relationships (outgoing ones for a reversed
 * type) that are (:src) nodes with an integer id, their ids sorted ascending (parallel relationships kept), the order
 * src/core/hetero_sampling.py's HeteroCSR and the Cypher fallback share.
 *
 * <p>Two readers, the same lists: {@link Store} walks the relationships through kernel cursors on every
 * call; {@link Projected} is an in-heap CSR per relationship type ({@link Projections}: built by the first
 * call with a budget, shared, dropped by any write, so a batch after a commit samples the edited graph).
 */
final class TypedTopology {
    private TypedTopology() {
    }

    /**
     * The projection of {@code relType} from (:src) to (:dst) when the budget allows one, else the store.
     * {@code reversed}: the relationships point from (:dst) to (:src) and are walked backwards (a {@code rev_}
     * edge type: a node's neighbours are the targets of its outgoing relationships).
     */
    static Topology of(KernelGraph dst, KernelGraph src, String relType, boolean reversed, long budget, Log log) {
        String what = (reversed ? "typed-reversed:" : "typed:") + relType;
        Projected p = Projections.get(Projections.key(dst, what, src.label, src.idProp), dst, budget,
                log, b -> Projected.build(dst, src, selection(dst, relType, reversed), b));
        return p != null ? p.view() : new Store(dst, src, selection(dst, relType, reversed));
    }

    /** The relationships whose other ends are a node's neighbours; an unknown type matches none (degree 0, as Cypher). */
    private static RelationshipSelection selection(KernelGraph g, String relType, boolean reversed) {
        return RelationshipSelection.selection(g.tokens.relationshipType(relType),
                reversed ? Direction.OUTGOING : Direction.INCOMING);
    }

    /** Reads one node's typed neighbours from the store per call (references: node references). */
    static final class Store implements Topology {
        private final KernelGraph dst;
        private final KernelGraph src;
        private final RelationshipSelection selection;
        private final LongList refs = new LongList(64);
        private final LongList ids = new LongList(64);

        Store(KernelGraph dst, KernelGraph src, RelationshipSelection selection) {
            this.dst = dst;
            this.src = src;
            this.selection = selection;
        }

        @Override
        public long nodeRef(long id) {
            return dst.nodeRef(id);
        }

        @Override
        public int loadNeighbours(long ref) {
            refs.clear();
            ids.clear();
            dst.node(ref).relationships(dst.relCursor, selection);
            while (dst.relCursor.next()) {
                refs.add(dst.relCursor.otherNodeReference());
            }
            for (int p = 0; p < refs.size; p++) {
                long id = src.datasetId(refs.values[p]);
                if (id != KernelGraph.NO_ID) {
                    ids.add(id);
                }
            }
            Arrays.sort(ids.values, 0, ids.size);
            return ids.size;
        }

        @Override
        public long neighbourId(int p) {
            return ids.values[p];
        }
    }

    /** CSR by (:dst) slot of the sorted (:src) neighbour ids. */
    static final class Projected extends CsrProjection {
        private Projected(ProjectedNodes nodes, long[] offsets, int[] neighbours) {
            super(nodes, offsets, neighbours);
        }

        /** One scan of each label and one walk of every (:dst) node's relationships of the selection. */
        static Projected build(KernelGraph dst, KernelGraph src, RelationshipSelection selection, Budget budget)
                throws NotProjectable {
            ProjectedNodes.Scan sources = ProjectedNodes.scan(src, budget);
            ProjectedNodes.Scan scan = src.label.equals(dst.label) ? sources : ProjectedNodes.scan(dst, budget);
            int n = scan.nodes().size();
            CsrProjection.Builder csr = new CsrProjection.Builder(n, budget);
            for (int k = 0; k < n; k++) {
                int start = csr.size;
                try {
                    dst.node(scan.refs()[k]).relationships(dst.relCursor, selection);
                } catch (IllegalStateException e) {  // deleted during the build
                    throw new NotProjectable(e.getMessage());
                }
                while (dst.relCursor.next()) {
                    int slot = sources.slotOfRef(dst.relCursor.otherNodeReference());
                    if (slot >= 0) {  // else not a (:src) node with an id: never a neighbour
                        csr.reserve(1);
                        csr.nbrs[csr.size++] = (int) sources.nodes().ids[slot];
                    }
                }
                Arrays.sort(csr.nbrs, start, csr.size);
                csr.end(k);
            }
            return new Projected(scan.nodes(), csr.offsets, csr.neighbours());
        }
    }
}
