package gnn;

import java.util.Arrays;
import java.util.Iterator;
import java.util.concurrent.ConcurrentHashMap;

import org.neo4j.exceptions.KernelException;
import org.neo4j.graphdb.Transaction;
import org.neo4j.internal.kernel.api.CursorFactory;
import org.neo4j.internal.kernel.api.IndexQueryConstraints;
import org.neo4j.internal.kernel.api.IndexReadSession;
import org.neo4j.internal.kernel.api.NodeCursor;
import org.neo4j.internal.kernel.api.NodeLabelIndexCursor;
import org.neo4j.internal.kernel.api.NodeValueIndexCursor;
import org.neo4j.internal.kernel.api.PropertyCursor;
import org.neo4j.internal.kernel.api.PropertyIndexQuery;
import org.neo4j.internal.kernel.api.QueryContext;
import org.neo4j.internal.kernel.api.Read;
import org.neo4j.internal.kernel.api.RelationshipTraversalCursor;
import org.neo4j.internal.kernel.api.TokenPredicate;
import org.neo4j.internal.kernel.api.TokenRead;
import org.neo4j.internal.kernel.api.exceptions.schema.IndexNotFoundKernelException;
import org.neo4j.internal.kernel.api.InternalIndexState;
import org.neo4j.internal.schema.IndexDescriptor;
import org.neo4j.internal.schema.IndexOrder;
import org.neo4j.internal.schema.IndexType;
import org.neo4j.internal.schema.SchemaDescriptors;
import org.neo4j.io.pagecache.context.CursorContext;
import org.neo4j.kernel.api.KernelTransaction;
import org.neo4j.kernel.api.txstate.TxStateHolder;
import org.neo4j.kernel.impl.coreapi.InternalTransaction;
import org.neo4j.memory.MemoryTracker;
import org.neo4j.storageengine.api.PropertySelection;
import org.neo4j.token.api.TokenConstants;
import org.neo4j.values.storable.IntegralValue;
import org.neo4j.values.storable.Value;
import org.neo4j.values.storable.Values;

/**
 * Kernel-level reads of one procedure call over the nodes (:label {idProp}): token ids resolved
 * once, one index read session, reused cursors. The Core API's findNode/getProperty allocate
 * cursors and resolve tokens on every call, which was a third of the server time of sampling and
 * most of the per-row cost of gnn.fetchRows (JFR profile).
 */
final class KernelGraph implements AutoCloseable {
    /** TokenRead returns this for a name no node, relationship or property has ever used. */
    static final int NO_TOKEN = TokenConstants.NO_TOKEN;
    /**
     * Node reference + 1 of each id (0 = unknown), per database/label/id property, shared by all calls:
     * an id seen once skips its index seek afterwards. Never trusted blindly: every cached reference is
     * checked (the node exists, has the label and this id) before use, and re-sought otherwise, so a
     * deleted or reloaded dataset only costs a miss. Racy updates are harmless for the same reason.
     */
    private static final ConcurrentHashMap<String, long[]> REF_CACHE = new ConcurrentHashMap<>();
    /** Ids at or above this are not cached (bounds the server heap spent: 8 bytes per id, 64 MiB max). */
    private static final int REF_CACHE_MAX_IDS = 1 << 23;

    final String database;
    final String label;
    final String idProp;
    final Read read;
    final TokenRead tokens;
    final int labelId;
    final int idKey;
    final NodeCursor nodeCursor;
    final PropertyCursor propCursor;
    final RelationshipTraversalCursor relCursor;
    private final KernelTransaction ktx;
    private final IndexReadSession idIndex;
    private final QueryContext queryContext;
    private final String cacheKey;
    private long[] refCache;
    private final NodeValueIndexCursor indexCursor;
    private final NodeCursor checkCursor;
    private final PropertyCursor checkProps;

    KernelGraph(Transaction tx, String database, String label, String idProp) {
        this.ktx = ((InternalTransaction) tx).kernelTransaction();
        this.database = database;
        this.label = label;
        this.idProp = idProp;
        this.read = ktx.dataRead();
        this.queryContext = ktx.queryContext();
        this.tokens = ktx.tokenRead();
        this.labelId = tokens.nodeLabel(label);
        this.idKey = tokens.propertyKey(idProp);
        this.cacheKey = database + "\u0000" + label + "\u0000" + idProp;
        this.refCache = REF_CACHE.getOrDefault(cacheKey, new long[0]);
        this.idIndex = idIndexSession();
        CursorFactory cursors = ktx.cursors();
        CursorContext ctx = ktx.cursorContext();
        MemoryTracker mem = ktx.memoryTracker();
        this.indexCursor = cursors.allocateNodeValueIndexCursor(ctx, mem);
        this.nodeCursor = cursors.allocateNodeCursor(ctx, mem);
        this.checkCursor = cursors.allocateNodeCursor(ctx, mem);
        this.propCursor = cursors.allocatePropertyCursor(ctx, mem);
        this.checkProps = cursors.allocatePropertyCursor(ctx, mem);
        this.relCursor = cursors.allocateRelationshipTraversalCursor(ctx, mem);
    }

    /** Whether this transaction has uncommitted writes (a projection would not show them). */
    boolean hasLocalChanges() {
        return ktx instanceof TxStateHolder && ((TxStateHolder) ktx).hasTxStateWithChanges();
    }

    /**
     * References of every (:label) node, ascending: from the label lookup index when it is online
     * (Neo4j creates it by default), else from a scan of all nodes.
     */
    long[] labelledNodes() {
        LongList refs = new LongList(1024);
        if (labelId == NO_TOKEN) {
            return refs.toArray();
        }
        Iterator<IndexDescriptor> it = ktx.schemaRead().index(SchemaDescriptors.ANY_TOKEN_NODE_SCHEMA_DESCRIPTOR);
        if (it.hasNext()) {
            IndexDescriptor index = it.next();
            try (NodeLabelIndexCursor cursor = ktx.cursors().allocateNodeLabelIndexCursor(ktx.cursorContext(),
                    ktx.memoryTracker())) {
                if (ktx.schemaRead().indexGetState(index) == InternalIndexState.ONLINE) {
                    read.nodeLabelScan(read.tokenReadSession(index), cursor, IndexQueryConstraints.ordered(
                            IndexOrder.ASCENDING), new TokenPredicate(labelId), ktx.cursorContext());
                    while (cursor.next()) {
                        refs.add(cursor.nodeReference());
                    }
                    return refs.toArray();
                }
            } catch (KernelException e) {
                refs.clear();  // dropped meanwhile: scan
            }
        }
        try (NodeCursor scan = ktx.cursors().allocateNodeCursor(ktx.cursorContext(), ktx.memoryTracker())) {
            read.allNodesScan(scan);
            while (scan.next()) {
                if (scan.hasLabel(labelId)) {
                    refs.add(scan.nodeReference());
                }
            }
        }
        return refs.toArray();
    }

    /** Node reference of (:label {idProp: id}), or -1: the checked cache, else the index. */
    long nodeRef(long id) {
        if (idKey == NO_TOKEN) {
            return -1;
        }
        if (id >= 0 && id < refCache.length && refCache[(int) id] > 0 && isNode(refCache[(int) id] - 1, id)) {
            return refCache[(int) id] - 1;
        }
        long ref = seek(id);
        if (ref >= 0 && id >= 0 && id < REF_CACHE_MAX_IDS) {
            if (id >= refCache.length) {
                refCache = Arrays.copyOf(refCache, (int) Math.min(REF_CACHE_MAX_IDS, Math.max(id + 1, 2L * refCache.length)));
            }
            refCache[(int) id] = ref + 1;
        }
        return ref;
    }

    /** Positions {@link #nodeCursor} on node {@code ref}, which must exist (it was just found). */
    NodeCursor node(long ref) {
        read.singleNode(ref, nodeCursor);
        if (!nodeCursor.next()) {
            throw new IllegalStateException("gnn: node " + ref + " vanished during the call");
        }
        return nodeCursor;
    }

    /** The value of property {@code key} of the node under {@code node}, or null. */
    Value property(NodeCursor node, int key) {
        if (key == NO_TOKEN) {
            return null;
        }
        node.properties(propCursor, PropertySelection.selection(key));
        return propCursor.next() ? propCursor.propertyValue() : null;
    }

    /** Values of {@code keys} (NO_TOKEN allowed) of the node under {@code node} into {@code out}, null if absent. */
    void properties(NodeCursor node, int[] keys, Value[] out) {
        Arrays.fill(out, null);
        node.properties(propCursor, PropertySelection.selection(keys));
        while (propCursor.next()) {
            int key = propCursor.propertyKey();
            for (int i = 0; i < keys.length; i++) {
                if (keys[i] == key) {
                    out[i] = propCursor.propertyValue();
                }
            }
        }
    }

    /** The integer {@code idProp} of the node under {@code node}, or null when it has none. */
    Long id(NodeCursor node) {
        Value v = property(node, idKey);
        return v instanceof IntegralValue ? ((IntegralValue) v).longValue() : null;
    }

    /** (version, count) of the :label nodes with an id, per database/label/id property: one index scan per write. */
    private static final ConcurrentHashMap<String, long[]> ID_COUNTS = new ConcurrentHashMap<>();

    /**
     * Whether every relType relationship joins two dataset nodes (label and id), so a relationship walk
     * needs no check per neighbour: the counts store says all of them start and end at :label nodes, and
     * every :label node is in the id index (counted once per database version, see {@link Projections#version}).
     */
    boolean onlyDatasetNodesOn(int relTypeId) {
        if (labelId == NO_TOKEN || relTypeId == NO_TOKEN) {
            return true;  // no such relationships at all
        }
        long all = read.countsForRelationship(TokenConstants.ANY_LABEL, relTypeId, TokenConstants.ANY_LABEL);
        if (read.countsForRelationship(labelId, relTypeId, TokenConstants.ANY_LABEL) != all
                || read.countsForRelationship(TokenConstants.ANY_LABEL, relTypeId, labelId) != all) {
            return false;
        }
        long version = hasLocalChanges() ? -1 : Projections.version(database);
        long[] cached = ID_COUNTS.get(cacheKey);
        long ids;
        if (version >= 0 && cached != null && cached[0] == version) {
            ids = cached[1];
        } else {
            ids = 0;
            try {
                read.nodeIndexScan(idIndex, indexCursor, IndexQueryConstraints.unconstrained());
            } catch (KernelException e) {
                return false;
            }
            while (indexCursor.next()) {
                ids++;
            }
            if (version >= 0) {
                ID_COUNTS.put(cacheKey, new long[] {version, ids});
            }
        }
        return read.countsForNode(labelId) == ids;
    }

    /** Whether {@code ref} is a live node with the label and an integer {@code idProp} (a dataset node). */
    boolean isDatasetNode(long ref) {
        read.singleNode(ref, checkCursor);
        if (!checkCursor.next() || !checkCursor.hasLabel(labelId)) {
            return false;
        }
        checkCursor.properties(checkProps, PropertySelection.selection(idKey));
        return checkProps.next() && checkProps.propertyValue() instanceof IntegralValue;
    }

    /** Value returned by {@link #datasetId} for a node that is not a dataset node. */
    static final long NO_ID = Long.MIN_VALUE;

    /** The integer {@code idProp} of node {@code ref} when it is a live node with the label, else {@link #NO_ID}. */
    long datasetId(long ref) {
        read.singleNode(ref, checkCursor);
        if (!checkCursor.next() || !checkCursor.hasLabel(labelId)) {
            return NO_ID;
        }
        checkCursor.properties(checkProps, PropertySelection.selection(idKey));
        return checkProps.next() && checkProps.propertyValue() instanceof IntegralValue v ? v.longValue() : NO_ID;
    }

    /** Whether {@code ref} is a live node with the label and {@code idProp = id}. */
    private boolean isNode(long ref, long id) {
        read.singleNode(ref, checkCursor);
        if (!checkCursor.next() || !checkCursor.hasLabel(labelId)) {
            return false;
        }
        checkCursor.properties(checkProps, PropertySelection.selection(idKey));
        if (!checkProps.next()) {
            return false;
        }
        Value v = checkProps.propertyValue();
        return v instanceof IntegralValue && ((IntegralValue) v).longValue() == id;
    }

    private long seek(long id) {
        try {
            read.nodeIndexSeek(queryContext, idIndex, indexCursor, IndexQueryConstraints.unconstrained(),
                    PropertyIndexQuery.exact(idKey, Values.longValue(id)));
        } catch (KernelException e) {
            throw new IllegalStateException("gnn: index seek on :" + label + "(" + idProp + ") failed: "
                    + e.getMessage(), e);
        }
        return indexCursor.next() ? indexCursor.nodeReference() : -1;
    }

    @Override
    public void close() {
        REF_CACHE.merge(cacheKey, refCache, (old, mine) -> mine.length >= old.length ? mine : old);
        indexCursor.close();
        nodeCursor.close();
        checkCursor.close();
        propCursor.close();
        checkProps.close();
        relCursor.close();
    }

    /** The range index behind the id uniqueness constraint; fail fast instead of a label scan per id. */
    private IndexReadSession idIndexSession() {
        if (labelId != NO_TOKEN && idKey != NO_TOKEN) {
            Iterator<IndexDescriptor> it = ktx.schemaRead().index(SchemaDescriptors.forLabel(labelId, idKey));
            while (it.hasNext()) {
                IndexDescriptor index = it.next();
                if (index.getIndexType() == IndexType.RANGE) {
                    try {
                        return read.indexReadSession(index);
                    } catch (IndexNotFoundKernelException e) {
                        break;
                    }
                }
            }
        }
        throw new IllegalArgumentException("gnn: no index on :" + label + "(" + idProp + "); create the"
                + " uniqueness constraint (CREATE CONSTRAINT FOR (n:" + label + ") REQUIRE n." + idProp
                + " IS UNIQUE) or load the dataset with loaders/load_into_neo4j.py");
    }
}
