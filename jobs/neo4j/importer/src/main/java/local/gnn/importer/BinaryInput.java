package local.gnn.importer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import org.neo4j.batchimport.api.InputIterable;
import org.neo4j.batchimport.api.InputIterator;
import org.neo4j.batchimport.api.input.IdType;
import org.neo4j.batchimport.api.input.Input;
import org.neo4j.batchimport.api.input.InputChunk;
import org.neo4j.batchimport.api.input.InputEntityVisitor;
import org.neo4j.internal.batchimport.input.Groups;

/**
 * The graph as the batch importer's {@link Input}, read straight from the arrays of one import
 * directory (layout in src/neo4jdb/load/bulk_import.py, write_import_arrays):
 * <pre>
 *   x.bin x.ptr        feature row bytes back to back; int64 byte offsets, N+1
 *   y.i64 split.i8     label per node; split code per node (-1 none, 0 train, 1 val, 2 test)
 *   src.i64 dst.i64    relationship end points, E each
 * </pre>
 * Node ids are 0..N-1 and are used as Neo4j's node ids ({@link IdType#ACTUAL}): no id mapping
 * stage, and relationships need no lookup. Chunks are contiguous ranges handed out by an
 * atomic cursor, so every importer thread reads its own range with positional reads. The
 * {@code nbrs} property, each node's in-neighbours in relationship order, is built here from
 * src/dst by a counting sort (O(E), on the heap: 8 bytes per relationship and per node).
 */
final class BinaryInput implements Input {
    private static final String[] SPLITS = {"train", "val", "test"};
    private static final int NODE_CHUNK = 4096;
    private static final int REL_CHUNK = 1 << 16;

    /** Names that go into the store (validated by the Python side). */
    record Names(String label, String relType, String id, String x, String y, String split, String nbrs) {}

    private final Names names;
    private final long numNodes;
    private final long numRels;
    private final ArrayFile x, xPtr, y, split, src, dst;
    private final long[] nbrsPtr;  // node v's in-neighbours are nbrs[nbrsPtr[v] .. nbrsPtr[v + 1])
    private final long[] nbrs;

    BinaryInput(Path dir, Names names, long numNodes, long numRels) throws IOException {
        this.names = names;
        this.numNodes = numNodes;
        this.numRels = numRels;
        xPtr = new ArrayFile(dir.resolve("x.ptr")).expectSize((numNodes + 1) * Long.BYTES);
        x = new ArrayFile(dir.resolve("x.bin")).expectSize(xPtr.longs(numNodes, numNodes + 1)[0]);
        y = new ArrayFile(dir.resolve("y.i64")).expectSize(numNodes * Long.BYTES);
        split = new ArrayFile(dir.resolve("split.i8")).expectSize(numNodes);
        src = new ArrayFile(dir.resolve("src.i64")).expectSize(numRels * Long.BYTES);
        dst = new ArrayFile(dir.resolve("dst.i64")).expectSize(numRels * Long.BYTES);
        nbrsPtr = new long[Math.toIntExact(numNodes + 1)];
        nbrs = new long[Math.toIntExact(numRels)];
        buildInAdjacency();
    }

    /** Counting sort of the relationships by end node, stable: sources keep their relationship order. */
    private void buildInAdjacency() throws IOException {
        for (long lo = 0; lo < numRels; lo += REL_CHUNK) {
            long[] ends = dst.longs(lo, Math.min(lo + REL_CHUNK, numRels));
            for (long v : ends) {
                nbrsPtr[checkedNode(v, "dst.i64") + 1]++;
            }
        }
        for (int v = 0; v < numNodes; v++) {
            nbrsPtr[v + 1] += nbrsPtr[v];
        }
        long[] fill = java.util.Arrays.copyOf(nbrsPtr, (int) numNodes);
        for (long lo = 0; lo < numRels; lo += REL_CHUNK) {
            long hi = Math.min(lo + REL_CHUNK, numRels);
            long[] starts = src.longs(lo, hi), ends = dst.longs(lo, hi);
            for (int i = 0; i < starts.length; i++) {
                checkedNode(starts[i], "src.i64");
                nbrs[(int) fill[(int) ends[i]]++] = starts[i];
            }
        }
    }

    private int checkedNode(long id, String file) {
        if (id < 0 || id >= numNodes) {
            throw new IllegalArgumentException(file + " holds node id " + id + ", outside [0, " + numNodes + ")");
        }
        return (int) id;
    }

    @Override
    public InputIterable nodes(org.neo4j.batchimport.api.input.Collector badCollector) {
        return () -> new RangeIterator(numNodes, NODE_CHUNK, NodeChunk::new);
    }

    @Override
    public InputIterable relationships(org.neo4j.batchimport.api.input.Collector badCollector) {
        return () -> new RangeIterator(numRels, REL_CHUNK, RelChunk::new);
    }

    @Override
    public IdType idType() {
        return IdType.ACTUAL;
    }

    @Override
    public org.neo4j.batchimport.api.input.ReadableGroups groups() {
        return new Groups();
    }

    @Override
    public Estimates validateAndEstimate(org.neo4j.batchimport.api.input.PropertySizeCalculator calculator)
            throws IOException {
        long propertyBytes = x.size() + numRels * Long.BYTES + numNodes * 3L * Long.BYTES;
        return Input.knownEstimates(numNodes, numRels, numNodes * 5, 0, propertyBytes, 0, 1);
    }

    @Override
    public void close() {
        for (ArrayFile f : new ArrayFile[] {x, xPtr, y, split, src, dst}) {
            try {
                f.close();
            } catch (IOException ignored) {
                // read-only files: nothing is lost
            }
        }
    }

    /** A chunk that loads the rows [lo, hi) at once and then visits them one by one. */
    private abstract static class RangeChunk implements InputChunk {
        long lo, next, hi;

        /** Read rows [lo, hi) of the arrays this chunk visits. */
        abstract void read() throws IOException;

        abstract void visit(int row, InputEntityVisitor visitor);

        final void load(long lo, long hi) throws IOException {
            this.lo = lo;
            this.next = lo;
            this.hi = hi;
            read();
        }

        @Override
        public boolean next(InputEntityVisitor visitor) throws IOException {
            if (next >= hi) {
                return false;
            }
            visit((int) (next - lo), visitor);
            visitor.endOfEntity();
            next++;
            return true;
        }

        @Override
        public void close() {}
    }

    private final class NodeChunk extends RangeChunk {
        private final String[] labels = {names.label()};
        private long[] xOff, labelsY;
        private ByteBuffer xBytes, splits;

        @Override
        void read() throws IOException {
            xOff = xPtr.longs(lo, hi + 1);
            xBytes = x.read(xOff[0], xOff[xOff.length - 1]);
            labelsY = y.longs(lo, hi);
            splits = split.read(lo, hi);
        }

        @Override
        void visit(int row, InputEntityVisitor visitor) {
            visitor.id(lo + row);
            visitor.labels(labels);
            visitor.property(names.id(), lo + row);
            visitor.property(names.x(), slice(xBytes, xOff, row));
            visitor.property(names.y(), labelsY[row]);
            byte code = splits.get(row);
            if (code >= 0) {
                visitor.property(names.split(), SPLITS[code]);
            }
            visitor.property(names.nbrs(), inNeighbours(lo + row));
        }

        /** The nbrs property: node v's in-neighbour ids as packed little-endian int64. */
        private byte[] inNeighbours(long v) {
            int from = (int) nbrsPtr[(int) v], count = (int) (nbrsPtr[(int) v + 1] - from);
            ByteBuffer out = ByteBuffer.allocate(count * Long.BYTES).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            out.asLongBuffer().put(nbrs, from, count);
            return out.array();
        }

        private static byte[] slice(ByteBuffer bytes, long[] offsets, int row) {
            byte[] out = new byte[(int) (offsets[row + 1] - offsets[row])];
            bytes.get((int) (offsets[row] - offsets[0]), out);
            return out;
        }
    }

    private final class RelChunk extends RangeChunk {
        private long[] starts, ends;

        @Override
        void read() throws IOException {
            starts = src.longs(lo, hi);
            ends = dst.longs(lo, hi);
        }

        @Override
        void visit(int row, InputEntityVisitor visitor) {
            visitor.startId(starts[row]);
            visitor.endId(ends[row]);
            visitor.type(names.relType());
        }
    }

    /** Hands out [lo, lo + chunk) ranges of 0..total to whichever importer thread asks next. */
    private static final class RangeIterator implements InputIterator {
        private final AtomicLong cursor = new AtomicLong();
        private final long total;
        private final int chunk;
        private final java.util.function.Supplier<RangeChunk> factory;

        RangeIterator(long total, int chunk, java.util.function.Supplier<RangeChunk> factory) {
            this.total = total;
            this.chunk = chunk;
            this.factory = factory;
        }

        @Override
        public InputChunk newChunk() {
            return factory.get();
        }

        @Override
        public boolean next(InputChunk chunk) throws IOException {
            long lo = cursor.getAndAdd(this.chunk);
            if (lo >= total) {
                return false;
            }
            ((RangeChunk) chunk).load(lo, Math.min(lo + this.chunk, total));
            return true;
        }

        @Override
        public void close() {}
    }
}
