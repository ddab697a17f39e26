package gnn;

import java.util.Arrays;

/**
 * The (:label) nodes of a projection: their ids in scan order (slot = position) and the slot of
 * each id, an int per id up to the largest one (the loaders number nodes 0..N-1). When every
 * slot equals its id (the offline import writes nodes in id order) there is no slot array: a
 * lookup is then a range check instead of a random read, on the sampler's inner loop.
 */
final class ProjectedNodes {
    final long[] ids;
    private final int[] slotOfId;  // null: slot == id

    private ProjectedNodes(long[] ids, int[] slotOfId) {
        this.ids = ids;
        this.slotOfId = slotOfId;
    }

    /** Slot of the node with {@code id}, or -1 when there is none. */
    int slot(long id) {
        if (slotOfId == null) {
            return id >= 0 && id < ids.length ? (int) id : -1;
        }
        return id >= 0 && id < slotOfId.length ? slotOfId[(int) id] : -1;
    }

    int size() {
        return ids.length;
    }

    long bytes() {
        return 8L * ids.length + (slotOfId == null ? 0 : 4L * slotOfId.length);
    }

    /** One scan's result: node references (increasing: allNodesScan order) parallel to {@code nodes.ids}. */
    record Scan(long[] refs, ProjectedNodes nodes) {
        /** Slot of the node with reference {@code ref}, or -1 when it is not a projected node. */
        int slotOfRef(long ref) {
            int k = Arrays.binarySearch(refs, ref);
            return k >= 0 ? k : -1;
        }
    }

    /** Reads the id of every (:label) node, in reference order. */
    static Scan scan(KernelGraph g, Budget budget) throws NotProjectable {
        long[] labelled = g.labelledNodes();
        budget.charge(16L * labelled.length, "node ids");
        long[] ids = new long[labelled.length];
        long[] refs = new long[labelled.length];
        int n = 0;
        long maxId = -1;
        for (int k = 0; k < labelled.length; k++) {
            if (k > 0 && labelled[k] <= labelled[k - 1]) {
                throw new NotProjectable("the label scan is not in reference order");  // Scan.slotOfRef needs it
            }
            Long id;
            try {
                id = g.id(g.node(labelled[k]));
            } catch (IllegalStateException e) {  // deleted during the scan
                throw new NotProjectable(e.getMessage());
            }
            if (id == null) {
                continue;  // no dense id: not (yet) a dataset node, never sampled (see StoreTopology)
            }
            if (id < 0 || id > Integer.MAX_VALUE - 8) {
                throw new NotProjectable("a :" + g.label + " node has " + g.idProp + " " + id
                        + " (projections need integer ids in 0..2^31-9)");
            }
            refs[n] = labelled[k];
            ids[n++] = id;
            maxId = Math.max(maxId, id);
        }
        if (n < labelled.length) {
            refs = Arrays.copyOf(refs, n);
            ids = Arrays.copyOf(ids, n);
        }
        boolean identity = maxId == ids.length - 1;  // then ids[k] == k for all k, or not identity
        for (int k = 0; identity && k < ids.length; k++) {
            identity = ids[k] == k;
        }
        if (identity) {
            return new Scan(refs, new ProjectedNodes(ids, null));
        }
        budget.charge(4L * (maxId + 1), "the id index");
        int[] slotOfId = new int[(int) (maxId + 1)];
        Arrays.fill(slotOfId, -1);
        for (int k = 0; k < ids.length; k++) {
            int id = (int) ids[k];
            if (slotOfId[id] >= 0) {
                throw new NotProjectable("two :" + g.label + " nodes have " + g.idProp + " " + id);
            }
            slotOfId[id] = k;
        }
        return new Scan(refs, new ProjectedNodes(ids, slotOfId));
    }
}
