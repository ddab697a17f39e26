package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.RelationshipType;
import org.neo4j.graphdb.ResourceIterator;
import org.neo4j.graphdb.Transaction;
import org.neo4j.graphdb.event.LabelEntry;
import org.neo4j.graphdb.event.PropertyEntry;
import org.neo4j.graphdb.event.TransactionData;

/**
 * Keeps each dataset's packed adjacency copy equal to its relationships, inside the writing transaction.
 *
 * <p>Called from {@link ProjectionInvalidator}'s beforeCommit: for every relationship of a dataset's type
 * created or deleted between two of its nodes (label and integer dense id; any other node is not part
 * of the dataset and is never sampled), the owning node's list gains the neighbour's id at its end, or
 * loses its last occurrence. So the copy stays the list of a CSR built from the edge list with deleted
 * edges removed and new ones appended (in relationship id order within a transaction), and it commits
 * or rolls back with the edit itself: no reader ever sees one without the other. Owners are locked
 * (in node id order) before their list is read, so concurrent edits of one node do not lose updates.
 * A list that does not hold a neighbour being removed (edited while no plugin watched the database) is
 * rebuilt from the node's relationships. Datasets are the (:GnnDataset) records whose {@code adjacency}
 * names the property (set once it was written and verified), with their {@code label}, {@code rel_type},
 * {@code id_prop} (default id) and {@code direction} (in, out, undirected; default in).
 *
 * <p>It also reports the dense ids of dataset nodes whose properties changed or that were deleted
 * ({@link RowChanges}), so clients holding copies of rows (the trainer's feature cache) drop them.
 */
final class LiveAdjacency {
    static final String RECORD_LABEL = "GnnDataset";

    /** One dataset as its record names it. */
    record Dataset(String name, String label, String relType, String idProp, String adjProp, String direction) {
        Label nodeLabel() {
            return Label.label(label);
        }
    }

    private LiveAdjacency() {
    }

    /** The datasets of this database (adjProp null: no maintained copy, rows still reported). */
    static List<Dataset> datasets(Transaction tx) {
        List<Dataset> out = new ArrayList<>();
        try (ResourceIterator<Node> it = tx.findNodes(Label.label(RECORD_LABEL))) {
            while (it.hasNext()) {
                Node n = it.next();
                Object label = n.getProperty("label", null);
                Object rel = n.getProperty("rel_type", null);
                if (Boolean.TRUE.equals(n.getProperty("hetero", null))) {
                    heteroTypes(n, out);
                    continue;
                }
                if (!(label instanceof String) || !(rel instanceof String)) {
                    continue;
                }
                Object adj = n.getProperty("adjacency", null);
                out.add(new Dataset(string(n.getProperty("name", null), ""), (String) label, (String) rel, string(n.getProperty("id_prop", null), "id"),
                        adj instanceof String && !((String) adj).isEmpty() ? (String) adj : null,
                        string(n.getProperty("direction", null), "in")));
            }
        }
        return out;
    }

    /** A {@code "label": "..."} entry of a hetero record's node_types JSON (labels are validated identifiers). */
    private static final Pattern TYPE_LABEL = Pattern.compile("\"label\":\\s*\"([^\"\\\\]+)\"");

    /**
     * One row-only dataset per node type of a heterogeneous record (no adjacency copy: the samplers read
     * the relationships or a projection that any write drops), so their changed rows are reported too.
     */
    private static void heteroTypes(Node record, List<Dataset> out) {
        String name = string(record.getProperty("name", null), "");
        String idProp = string(record.getProperty("id_prop", null), "id");
        Matcher m = TYPE_LABEL.matcher(string(record.getProperty("node_types", null), ""));
        while (m.find()) {
            out.add(new Dataset(name, m.group(1), "", idProp, null, "in"));
        }
    }

    private static String string(Object v, String otherwise) {
        return v instanceof String && !((String) v).isEmpty() ? (String) v : otherwise;
    }

    /**
     * Applies the transaction's relationship edits to the copies and returns the changed rows per
     * {@link RowChanges#key} (published after the commit). Returns null when nothing concerns a dataset.
     */
    static Map<String, long[]> beforeCommit(TransactionData data, Transaction tx) {
        boolean rels = data.createdRelationships().iterator().hasNext() || data.deletedRelationships().iterator().hasNext();
        boolean props = data.assignedNodeProperties().iterator().hasNext()
                || data.removedNodeProperties().iterator().hasNext() || data.deletedNodes().iterator().hasNext();
        if (!rels && !props) {
            return null;
        }
        List<Dataset> datasets = datasets(tx);
        if (datasets.isEmpty()) {
            return null;
        }
        Deleted deleted = new Deleted(data);
        if (rels) {
            for (Dataset d : datasets) {
                if (d.adjProp() != null) {
                    maintain(d, data, tx, deleted);
                    LiveSplit.maintain(d, data, tx, deleted);  // its edge split's training copy and counts
                }
            }
        }
        if (props) {
            LiveRows.derive(data, tx);  // registered graphs: the user's feature/target/split edits into the copies
        }
        return props ? changedRows(datasets, data, deleted) : null;
    }

    /** What a deleted node was: its labels and properties as of before the transaction. */
    static final class Deleted {
        final TransactionData data;
        final Map<Long, List<String>> labels = new HashMap<>();
        final Map<Long, Map<String, Object>> properties = new HashMap<>();

        Deleted(TransactionData data) {
            this.data = data;
            for (LabelEntry e : data.removedLabels()) {
                if (data.isDeleted(e.node())) {
                    labels.computeIfAbsent(e.node().getId(), k -> new ArrayList<>()).add(e.label().name());
                }
            }
            for (PropertyEntry<Node> e : data.removedNodeProperties()) {
                if (data.isDeleted(e.entity())) {
                    properties.computeIfAbsent(e.entity().getId(), k -> new HashMap<>()).put(e.key(), e.previouslyCommittedValue());
                }
            }
        }

        /** The dense id of {@code n} in dataset {@code d} (deleted or not), or null when it is not a dataset node. */
        Long denseId(Node n, Dataset d) {
            Object id;
            if (data.isDeleted(n)) {
                List<String> ls = labels.get(n.getId());
                if (ls == null || !ls.contains(d.label())) {
                    return null;
                }
                id = properties.getOrDefault(n.getId(), Map.of()).get(d.idProp());
            } else {
                if (!n.hasLabel(d.nodeLabel())) {
                    return null;
                }
                id = n.getProperty(d.idProp(), null);
            }
            return id instanceof Long || id instanceof Integer ? ((Number) id).longValue() : null;
        }
    }

    /** Neighbour ids one owner gains and loses in this transaction. */
    static final class Edit {
        final Node owner;
        final LongList added = new LongList(4);
        final LongList removed = new LongList(4);

        Edit(Node owner) {
            this.owner = owner;
        }
    }

    private static void maintain(Dataset d, TransactionData data, Transaction tx, Deleted deleted) {
        TreeMap<Long, Edit> edits = new TreeMap<>();  // by owner node id: the lock order
        for (boolean created : new boolean[] {false, true}) {  // removals first: a re-created edge ends up last
            List<Relationship> rels = new ArrayList<>();
            for (Relationship r : created ? data.createdRelationships() : data.deletedRelationships()) {
                if (r.getType().name().equals(d.relType())) {
                    rels.add(r);
                }
            }
            rels.sort(Comparator.comparingLong(Relationship::getId));  // creation order
            for (Relationship r : rels) {
                Node s = r.getStartNode();
                Node e = r.getEndNode();
                Long sid = deleted.denseId(s, d);
                Long eid = sid == null ? null : deleted.denseId(e, d);
                if (eid == null) {
                    continue;
                }
                boolean in = !d.direction().equals("out");
                boolean out = !d.direction().equals("in");
                if (in) {
                    record(edits, e, sid, created, data);
                }
                if (out && (!in || s.getId() != e.getId())) {  // undirected self-loop: listed once, as Cypher's (n)-[:T]-(m)
                    record(edits, s, eid, created, data);
                }
            }
        }
        for (Edit edit : edits.values()) {
            apply(d, d.adjProp(), null, edit, tx);
        }
    }

    static void record(TreeMap<Long, Edit> edits, Node owner, long neighbour, boolean created, TransactionData data) {
        if (data.isDeleted(owner)) {
            return;  // its list goes with it
        }
        Edit edit = edits.computeIfAbsent(owner.getId(), k -> new Edit(owner));
        (created ? edit.added : edit.removed).add(neighbour);
    }

    /**
     * Applies one owner's edit to its list in {@code prop}; a list found inconsistent is rebuilt from the
     * relationships, without those whose {@code heldOutProp} marks them held out (null: all of them).
     */
    static void apply(Dataset d, String prop, String heldOutProp, Edit edit, Transaction tx) {
        Node owner = edit.owner;
        tx.acquireWriteLock(owner);  // then read: the latest committed list, no concurrent lost update
        Object raw = owner.getProperty(prop, null);
        LongList list = raw instanceof byte[] bytes && bytes.length % Long.BYTES == 0
                ? wrap(LongList.fromLittleEndianBytes(bytes, "adjacency")) : null;
        boolean consistent = list != null;
        for (int i = 0; consistent && i < edit.removed.size; i++) {
            consistent = removeLast(list, edit.removed.values[i]);
        }
        if (consistent) {
            for (int i = 0; i < edit.added.size; i++) {
                list.add(edit.added.values[i]);
            }
        } else {
            list = fromRelationships(d, owner, heldOutProp);  // the copy was not current: take the truth
        }
        owner.setProperty(prop, list.toLittleEndianBytes());
    }

    private static LongList wrap(long[] values) {
        LongList list = new LongList(values.length + 4);
        System.arraycopy(values, 0, list.values, 0, values.length);
        list.size = values.length;
        return list;
    }

    private static boolean removeLast(LongList list, long id) {
        for (int p = list.size - 1; p >= 0; p--) {
            if (list.values[p] == id) {
                System.arraycopy(list.values, p + 1, list.values, p, list.size - p - 1);
                list.size--;
                return true;
            }
        }
        return false;
    }

    /** The owner's neighbour ids from its relationships as they are in this transaction. */
    private static LongList fromRelationships(Dataset d, Node owner, String heldOutProp) {
        Direction dir = switch (d.direction()) {
            case "out" -> Direction.OUTGOING;
            case "undirected" -> Direction.BOTH;
            default -> Direction.INCOMING;
        };
        LongList list = new LongList(16);
        for (Relationship r : owner.getRelationships(dir, RelationshipType.withName(d.relType()))) {
            if (heldOutProp != null && LiveSplit.isHeldOut(r.getProperty(heldOutProp, null))) {
                continue;
            }
            Node other = r.getOtherNode(owner);
            if (other.hasLabel(d.nodeLabel()) && other.getProperty(d.idProp(), null) instanceof Number id) {
                list.add(id.longValue());
            }
        }
        return list;
    }

    /** Dense ids of dataset nodes with a changed (set, removed) property or deleted, per RowChanges key. */
    private static Map<String, long[]> changedRows(List<Dataset> datasets, TransactionData data, Deleted deleted) {
        java.util.Set<Long> created = new java.util.HashSet<>();  // new nodes: no client holds their rows
        for (Node n : data.createdNodes()) {
            created.add(n.getId());
        }
        Map<String, long[]> out = new HashMap<>();
        for (Dataset d : datasets) {
            LongList ids = new LongList(16);
            for (PropertyEntry<Node> e : data.assignedNodeProperties()) {
                if (!created.contains(e.entity().getId())) {
                    add(ids, d, e, deleted);
                }
            }
            for (PropertyEntry<Node> e : data.removedNodeProperties()) {
                add(ids, d, e, deleted);
            }
            if (ids.size > 0) {
                out.merge(RowChanges.key(d.label(), d.idProp()), ids.toArray(), LiveAdjacency::concat);
            }
        }
        return out.isEmpty() ? null : out;
    }

    private static void add(LongList ids, Dataset d, PropertyEntry<Node> e, Deleted deleted) {
        if (e.key().equals(d.adjProp())) {
            return;  // the copy itself, not a row
        }
        Long id = deleted.denseId(e.entity(), d);
        if (id == null && e.key().equals(d.idProp()) && e.previouslyCommittedValue() instanceof Number old) {
            id = old.longValue();  // the id itself was removed
        }
        if (id != null) {
            ids.add(id);
        }
    }

    private static long[] concat(long[] a, long[] b) {
        long[] c = new long[a.length + b.length];
        System.arraycopy(a, 0, c, 0, a.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    static byte[] pack(long[] values) {
        ByteBuffer buf = ByteBuffer.allocate(values.length * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        buf.asLongBuffer().put(values);
        return buf.array();
    }
}
