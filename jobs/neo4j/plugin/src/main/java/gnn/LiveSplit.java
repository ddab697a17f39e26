package gnn;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.neo4j.graphdb.Direction;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Relationship;
import org.neo4j.graphdb.RelationshipType;
import org.neo4j.graphdb.Transaction;
import org.neo4j.graphdb.event.PropertyEntry;
import org.neo4j.graphdb.event.TransactionData;

/**
 * Keeps a dataset's stored edge split (src/neo4jdb/edge_split.py) equal to its relationships, inside the
 * writing transaction, as {@link LiveAdjacency} keeps the adjacency copy.
 *
 * <p>The split's truth is the relationships' mark (the record's {@code rel_prop}: "val", "test", "unused",
 * none = train). For each created or deleted relationship of the dataset's type between two of its nodes:
 * <ul>
 * <li>a created relationship between a pair that is held out (another relationship of the pair, either
 *     direction, is marked "val" or "test") gets the pair's mark, so the pair stays together; any other
 *     created relationship is a training edge;</li>
 * <li>the training copy ({@code train_adj_prop}) gains or loses the neighbour exactly as the adjacency copy
 *     does, for every relationship not marked held out (a deleted held-out relationship was never in it);</li>
 * <li>the record's pair counts ({@code num_train}, {@code num_val}, {@code num_test}: unordered pairs with at
 *     least one relationship of that part, self-loops not pairs) and {@code rel_count} follow, so the
 *     trainer's staleness check reads a current split.</li>
 * </ul>
 * Only complete splits are maintained; marks edited by hand are not (re-split with --reset).
 */
final class LiveSplit {
    static final String SPLIT_LABEL = "GnnEdgeSplit";
    private static final String TRAIN = "train";

    private LiveSplit() {
    }

    static boolean isHeldOut(Object mark) {
        return "val".equals(mark) || "test".equals(mark);
    }

    private static String part(Object mark) {
        return mark == null ? TRAIN : mark instanceof String s ? s : String.valueOf(mark);
    }

    /** Relationships of one unordered pair edited in this transaction: their ends and per-part count changes. */
    private static final class Pair {
        final Node a;
        final Node b;
        final Map<String, Integer> change = new HashMap<>();  // part -> created minus deleted

        Pair(Node a, Node b) {
            this.a = a;
            this.b = b;
        }
    }

    static void maintain(LiveAdjacency.Dataset d, TransactionData data, Transaction tx, LiveAdjacency.Deleted deleted) {
        if (d.name().isEmpty()) {
            return;
        }
        Node rec = tx.findNode(Label.label(SPLIT_LABEL), "dataset", d.name());
        if (rec == null || !Boolean.TRUE.equals(rec.getProperty("complete", false))
                || !(rec.getProperty("rel_prop", null) instanceof String mark)
                || !(rec.getProperty("train_adj_prop", null) instanceof String trainProp)) {
            return;
        }
        Map<Long, Object> deletedMarks = new HashMap<>();
        for (PropertyEntry<Relationship> e : data.removedRelationshipProperties()) {
            if (e.key().equals(mark) && data.isDeleted(e.entity())) {
                deletedMarks.put(e.entity().getId(), e.previouslyCommittedValue());
            }
        }
        TreeMap<Long, LiveAdjacency.Edit> edits = new TreeMap<>();
        Map<String, Pair> pairs = new HashMap<>();
        long relDelta = 0;
        for (boolean created : new boolean[] {false, true}) {  // removals first, as the adjacency copy
            List<Relationship> rels = new ArrayList<>();
            for (Relationship r : created ? data.createdRelationships() : data.deletedRelationships()) {
                if (r.getType().name().equals(d.relType())) {
                    rels.add(r);
                }
            }
            rels.sort(Comparator.comparingLong(Relationship::getId));
            for (Relationship r : rels) {
                relDelta += created ? 1 : -1;
                Node s = r.getStartNode();
                Node e = r.getEndNode();
                Long sid = deleted.denseId(s, d);
                Long eid = sid == null ? null : deleted.denseId(e, d);
                if (eid == null) {
                    continue;
                }
                Object m = created ? r.getProperty(mark, null) : deletedMarks.get(r.getId());
                if (created && m == null && s.getId() != e.getId()) {
                    m = heldOutMark(s, e, r, mark, d);
                    if (m != null) {
                        r.setProperty(mark, m);
                    }
                }
                if (s.getId() != e.getId()) {
                    String key = Math.min(sid, eid) + ":" + Math.max(sid, eid);
                    pairs.computeIfAbsent(key, k -> new Pair(s, e)).change.merge(part(m), created ? 1 : -1, Integer::sum);
                }
                if (isHeldOut(m)) {
                    continue;  // never in the training copy
                }
                boolean in = !d.direction().equals("out");
                boolean out = !d.direction().equals("in");
                if (in) {
                    LiveAdjacency.record(edits, e, sid, created, data);
                }
                if (out && (!in || s.getId() != e.getId())) {
                    LiveAdjacency.record(edits, s, eid, created, data);
                }
            }
        }
        for (LiveAdjacency.Edit edit : edits.values()) {
            LiveAdjacency.apply(d, trainProp, mark, edit, tx);
        }
        Map<String, Long> counts = new HashMap<>();
        for (Pair p : pairs.values()) {
            Map<String, Integer> after = partCounts(p, mark, d, data);
            for (String part : new String[] {TRAIN, "val", "test"}) {
                int now = after.getOrDefault(part, 0);
                int before = now - p.change.getOrDefault(part, 0);
                int delta = (now > 0 ? 1 : 0) - (before > 0 ? 1 : 0);
                if (delta != 0) {
                    counts.merge(part, (long) delta, Long::sum);
                }
            }
        }
        if (relDelta == 0 && counts.isEmpty()) {
            return;
        }
        tx.acquireWriteLock(rec);
        if (rec.getProperty("rel_count", null) instanceof Number n) {
            rec.setProperty("rel_count", n.longValue() + relDelta);
        }
        for (Map.Entry<String, Long> c : counts.entrySet()) {
            String key = "num_" + c.getKey();
            if (rec.getProperty(key, null) instanceof Number n) {
                rec.setProperty(key, n.longValue() + c.getValue());
            }
        }
    }

    /** The mark of a held-out relationship between {@code s} and {@code e} other than {@code r}, or null. */
    private static Object heldOutMark(Node s, Node e, Relationship r, String mark, LiveAdjacency.Dataset d) {
        for (Relationship o : s.getRelationships(Direction.BOTH, RelationshipType.withName(d.relType()))) {
            if (o.getId() != r.getId() && o.getOtherNode(s).getId() == e.getId()) {
                Object m = o.getProperty(mark, null);
                if (isHeldOut(m)) {
                    return m;
                }
            }
        }
        return null;
    }

    /** Relationships of the pair per part as the transaction leaves them. */
    private static Map<String, Integer> partCounts(Pair p, String mark, LiveAdjacency.Dataset d, TransactionData data) {
        Map<String, Integer> out = new HashMap<>();
        if (data.isDeleted(p.a) || data.isDeleted(p.b)) {
            return out;
        }
        for (Relationship o : p.a.getRelationships(Direction.BOTH, RelationshipType.withName(d.relType()))) {
            if (o.getOtherNode(p.a).getId() == p.b.getId()) {
                out.merge(part(o.getProperty(mark, null)), 1, Integer::sum);
            }
        }
        return out;
    }
}
