package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.ResourceIterator;
import org.neo4j.graphdb.Transaction;
import org.neo4j.graphdb.event.PropertyEntry;
import org.neo4j.graphdb.event.TransactionData;

/**
 * Re-derives a registered dataset's packed row, class index and split from the user's own properties,
 * inside the writing transaction.
 *
 * <p>A graph registered in place (loaders/register_graph.py; records with {@code method = "register"})
 * keeps the user's {@code feature_properties}, {@code target_property} and split property as the truth,
 * and the registration's {@code x_prop}/{@code y_prop}/{@code split_prop} as the copies every sampling
 * path reads. When a transaction sets or removes one of the user's properties on a node of the dataset
 * (its label and an integer dense id), the copies are written again from the node's properties as of
 * the commit, with the registration's rules (feature kind and width, the sorted class vocabulary,
 * train/val/test values, {@code missing_features}/{@code missing_target}), so they commit or roll back
 * with the edit (not while --reset removes the registration: {@code removing}). A value the registration
 * would have refused (wrong width, non-numeric or non-finite features, a class outside the vocabulary, an
 * unknown split value, a missing value the registration did not accept) fails the transaction with one
 * line naming the node, the problem and the fix: the model's class count and feature width are fixed,
 * and a silent -1 or zero row would train on wrong data. A random split is kept as drawn (a node that
 * becomes labelled later stays in no split).
 */
final class LiveRows {
    private static final Map<String, String> SPLITS = Map.of("train", "train", "val", "val", "valid", "val",
            "validation", "val", "test", "test");

    /** One registration as its record names it. */
    private record Registration(String name, Label label, String idProp, String xProp, String yProp, String splitProp,
                                String[] features, String featureKind, int width, String target, String userSplit,
                                Object[] classes, boolean zeroMissing, boolean unlabelledMissing, String command) {
        Set<String> sources() {
            Set<String> s = new HashSet<>(Arrays.asList(features));
            s.add(target);
            if (userSplit != null) {
                s.add(userSplit);
            }
            return s;
        }
    }

    private LiveRows() {
    }

    /** Writes the copies of every registered node whose own feature, target or split property changed. */
    static void derive(TransactionData data, Transaction tx) {
        List<Registration> regs = registrations(tx);
        if (regs.isEmpty()) {
            return;
        }
        for (Registration r : regs) {
            Set<String> sources = r.sources();
            Map<String, Node> touched = new HashMap<>();
            collect(data.assignedNodeProperties(), sources, touched, data);
            collect(data.removedNodeProperties(), sources, touched, data);
            for (Node n : touched.values()) {
                if (n.hasLabel(r.label()) && n.getProperty(r.idProp(), null) instanceof Number id) {
                    write(r, n, id.longValue());
                }
            }
        }
    }

    private static void collect(Iterable<PropertyEntry<Node>> entries, Set<String> sources, Map<String, Node> out,
                                TransactionData data) {
        for (PropertyEntry<Node> e : entries) {
            if (sources.contains(e.key()) && !data.isDeleted(e.entity())) {
                out.putIfAbsent(e.entity().getElementId(), e.entity());
            }
        }
    }

    private static List<Registration> registrations(Transaction tx) {
        List<Registration> out = new ArrayList<>();
        try (ResourceIterator<Node> it = tx.findNodes(Label.label(LiveAdjacency.RECORD_LABEL))) {
            while (it.hasNext()) {
                Node d = it.next();
                if (!"register".equals(d.getProperty("method", null)) || Boolean.TRUE.equals(d.getProperty("removing", null))
                        || !(d.getProperty("feature_properties", null) instanceof String[] features)
                        || !(d.getProperty("target_property", null) instanceof String target)
                        || !(d.getProperty("label", null) instanceof String label)
                        || !(d.getProperty("num_features", null) instanceof Number width)) {
                    continue;
                }
                String split = d.getProperty("split_source", "") instanceof String s && !s.startsWith("random:")
                        && !s.isEmpty() ? s : null;
                out.add(new Registration(String.valueOf(d.getProperty("name", "")), Label.label(label),
                        (String) d.getProperty("id_prop", "id"), (String) d.getProperty("x_prop", "x"),
                        (String) d.getProperty("y_prop", "y"), (String) d.getProperty("split_prop", "split"), features,
                        String.valueOf(d.getProperty("feature_kind", "list")), width.intValue(), target, split,
                        classes(d.getProperty("class_values", null)),
                        "zero".equals(d.getProperty("missing_features", null)),
                        "unlabelled".equals(d.getProperty("missing_target", null)),
                        String.valueOf(d.getProperty("register_command", "python loaders/register_graph.py ..."))));
            }
        }
        return out;
    }

    private static Object[] classes(Object v) {
        if (v instanceof long[] l) {
            return Arrays.stream(l).boxed().toArray();
        }
        if (v instanceof String[] s) {
            return s;
        }
        return new Object[0];
    }

    private static void write(Registration r, Node n, long id) {
        n.setProperty(r.xProp(), row(r, n, id));
        long y = classIndex(r, n, id);
        n.setProperty(r.yProp(), y);
        String split = y < 0 ? null : r.userSplit() != null ? split(r, n, id)
                : n.getProperty(r.splitProp(), null) instanceof String s ? s : null;  // random split: as drawn
        if (split == null) {
            n.removeProperty(r.splitProp());
        } else {
            n.setProperty(r.splitProp(), split);
        }
    }

    private static RuntimeException refuse(Registration r, long id, String problem, String fix) {
        return new IllegalArgumentException("gnn: :" + r.label().name() + " node with " + r.idProp() + " " + id
                + " of registered dataset '" + r.name() + "': " + problem + "; " + fix);
    }

    private static String reRegister(Registration r) {
        return "or register again: `" + r.command() + " --reset`";
    }

    private static byte[] row(Registration r, Node n, long id) {
        float[] x = new float[r.width()];
        String[] props = r.features();
        boolean missing = false;
        if (r.featureKind().equals("scalars")) {
            for (int k = 0; k < props.length; k++) {
                Object v = n.getProperty(props[k], null);
                if (v == null) {
                    missing = true;
                } else if (v instanceof Number num) {
                    x[k] = num.floatValue();
                } else {
                    throw refuse(r, id, "feature property " + props[k] + " holds a non-number", "set a number");
                }
            }
            if (missing) {
                x = new float[r.width()];  // the registration's zero row
            }
        } else {
            Object v = n.getProperty(props[0], null);
            missing = v == null;
            if (!missing) {
                x = r.featureKind().equals("bytes") ? fromBytes(r, id, v) : fromList(r, id, v);
            }
        }
        if (missing && !r.zeroMissing()) {
            throw refuse(r, id, "its feature property " + String.join(",", props) + " was removed",
                    "set it again, or register with --missing_features zero (" + reRegister(r) + ")");
        }
        ByteBuffer buf = ByteBuffer.allocate(x.length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : x) {
            if (!Float.isFinite(f)) {
                throw refuse(r, id, "its features hold NaN or infinite values", "set finite numbers");
            }
            buf.putFloat(f);
        }
        return buf.array();
    }

    private static float[] fromList(Registration r, long id, Object v) {
        int len = v instanceof double[] d ? d.length : v instanceof long[] l ? l.length : v instanceof float[] f
                ? f.length : v instanceof int[] i ? i.length : -1;
        if (len < 0) {
            throw refuse(r, id, "feature property " + r.features()[0] + " holds a " + v.getClass().getSimpleName()
                    + ", not a list of numbers", "set a LIST<FLOAT> or LIST<INTEGER> of " + r.width() + " numbers");
        }
        if (len != r.width()) {
            throw refuse(r, id, "feature property " + r.features()[0] + " holds " + len + " values, the dataset has "
                    + r.width() + " features", "set " + r.width() + " numbers, " + reRegister(r));
        }
        float[] x = new float[len];
        for (int k = 0; k < len; k++) {
            x[k] = v instanceof double[] d ? (float) d[k] : v instanceof long[] l ? (float) l[k]
                    : v instanceof float[] f ? f[k] : (float) ((int[]) v)[k];
        }
        return x;
    }

    private static float[] fromBytes(Registration r, long id, Object v) {
        if (!(v instanceof byte[] b) || b.length != r.width() * Float.BYTES) {
            throw refuse(r, id, "feature property " + r.features()[0] + " is not " + r.width() * Float.BYTES
                    + " bytes of float32", "set " + r.width() + " little-endian float32 values, " + reRegister(r));
        }
        float[] x = new float[r.width()];
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(x);
        return x;
    }

    private static long classIndex(Registration r, Node n, long id) {
        Object t = n.getProperty(r.target(), null);
        if (t == null) {
            if (!r.unlabelledMissing()) {
                throw refuse(r, id, "its target property " + r.target() + " was removed",
                        "set it again, or register with --missing_target unlabelled (" + reRegister(r) + ")");
            }
            return -1;
        }
        Object key = t instanceof Number num && !(t instanceof Double || t instanceof Float) ? (Object) num.longValue() : t;
        for (int k = 0; k < r.classes().length; k++) {
            if (r.classes()[k].equals(key)) {
                return k;
            }
        }
        throw refuse(r, id, "class " + (t instanceof String ? "'" + t + "'" : String.valueOf(t)) + " of " + r.target()
                + " is not one of the " + r.classes().length + " classes fixed at registration",
                "use one of them, " + reRegister(r) + " (the vocabulary and the model's outputs grow then)");
    }

    private static String split(Registration r, Node n, long id) {
        Object v = n.getProperty(r.userSplit(), null);
        if (v == null) {
            return null;
        }
        String s = v instanceof String str ? SPLITS.get(str.toLowerCase(java.util.Locale.ROOT)) : null;
        if (s == null) {
            throw refuse(r, id, "split property " + r.userSplit() + " holds " + v + ", not train/val/test",
                    "set train, val or test (or remove it: no split)");
        }
        return s;
    }
}
